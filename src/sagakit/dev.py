"""Running services locally and in tests: the development stack (PostgreSQL and a Kafka
broker, embedded when none is configured) and fleets of service processes."""

from sagakit.config import database_url
from sagakit.devstack import DevStack, StackInfo
from sagakit.fleet import CONSOLE, Fleet, run_until_stopped

__all__ = ["CONSOLE", "DevStack", "Fleet", "StackInfo", "database_url", "run_until_stopped"]
