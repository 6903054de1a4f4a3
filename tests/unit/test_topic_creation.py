"""What the broker answers to a topic creation: "exists already" is fine, anything else names
the topic and the reason, and says whether it may pass with a retry (the bundled broker
accepts every request, so the answers are built here)."""

from __future__ import annotations

from sagakit.messaging.transport.kafka import refusals


def test_created_and_existing_topics_are_not_refusals() -> None:
    assert refusals([("a", 0, None), ("b", 36, "Topic 'b' already exists.")]) == []


def test_a_refused_topic_is_named_with_the_brokers_reason() -> None:
    answer = [
        ("ok", 0, None),
        ("orders", 38, "Replication factor: 3 larger than available brokers: 1."),
        ("bad name!", 17),
        ("moving", 41, None),
    ]
    assert refusals(answer) == [
        (
            "orders: InvalidReplicationFactorError (Replication factor: 3 larger than"
            " available brokers: 1.)",
            True,  # brokers may still be registering: retried until the wait is over
        ),
        ("bad name!: InvalidTopicError", False),
        ("moving: NotControllerError", True),
    ]
