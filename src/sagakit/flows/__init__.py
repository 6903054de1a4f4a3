"""The sagas this project ships: the order flow, orchestrated and choreographed."""
