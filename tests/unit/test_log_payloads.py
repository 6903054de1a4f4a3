"""Keeping a transition's payloads in the saga log never fails the transition: what
PostgreSQL's json would refuse, or what is too large, is noted instead."""

from __future__ import annotations

import json

from sagakit.orchestration.store import MAX_LOGGED, loggable


def test_plain_payloads_are_kept() -> None:
    messages = {"received": {"amount": 5, "note": "é\u2028"}, "sent": []}
    assert json.loads(loggable(messages)) == messages


def test_what_postgresql_refuses_is_noted_not_raised() -> None:
    for bad in (float("nan"), float("inf"), -float("inf")):
        kept = json.loads(loggable({"received": {"amount": bad}, "sent": []}))
        assert "payloads not kept" in kept["unrecorded"]


def test_too_large_is_noted() -> None:
    messages = {"received": {"blob": "x" * (MAX_LOGGED + 1)}, "sent": []}
    kept = json.loads(loggable(messages))
    assert kept == {"unrecorded": f"payloads not kept: {len(json.dumps(messages))} characters"}


def test_objects_json_does_not_know_are_kept_as_text() -> None:
    kept = json.loads(loggable({"received": {"at": object}, "sent": []}))
    assert kept["received"]["at"] == str(object)
