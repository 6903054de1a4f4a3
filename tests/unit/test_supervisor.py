"""Supervised background tasks: restarted with backoff, given up on when they keep failing."""

from __future__ import annotations

import asyncio

from sagakit.supervisor import RestartPolicy, Supervisor

QUICK = RestartPolicy(initial_delay=0.001, max_delay=0.004, max_failures=4, healthy_after=10)


async def test_a_failing_task_is_restarted_until_it_runs() -> None:
    stop = asyncio.Event()
    runs = 0
    gave_up: list[str] = []

    async def flaky(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise ConnectionError("broker gone")
        await stop.wait()

    sup = Supervisor(stop, lambda name, exc: gave_up.append(name), QUICK)
    sup.start("consumer", flaky)
    async with asyncio.timeout(5):
        while runs < 3:
            await asyncio.sleep(0.001)
    stop.set()
    await sup.wait()
    assert runs == 3 and sup.restarts == {"consumer": 2} and gave_up == []


async def test_a_task_that_keeps_failing_is_given_up_once() -> None:
    stop = asyncio.Event()
    gave_up: list[tuple[str, str]] = []

    async def broken(stop: asyncio.Event) -> None:
        raise RuntimeError("no way")

    sup = Supervisor(stop, lambda name, exc: gave_up.append((name, str(exc))), QUICK)
    sup.start("relay", broken)
    async with asyncio.timeout(5):
        await sup.wait()  # ends by itself: given up
    assert gave_up == [("relay", "no way")]
    assert sup.restarts == {"relay": QUICK.max_failures - 1}


async def test_a_task_that_returns_early_is_started_again() -> None:
    stop = asyncio.Event()
    runs = 0

    async def quits(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs >= 3:
            stop.set()

    sup = Supervisor(stop, lambda name, exc: None, QUICK)
    sup.start("loop", quits)
    async with asyncio.timeout(5):
        await sup.wait()
    assert runs == 3
