"""Chaos under steady load, in both modes, with every service at two replicas: a random service
process SIGKILLed every second (sparing the last running replica of a service), PostgreSQL
crash-restarted (immediate stop) twice, 1 % of the records on the order flow's topics
re-produced unchanged, and poison records mixed in. Clients retry a failed ``POST /orders``
with the same Idempotency-Key.

Once the chaos stops, every order must settle within 60 s, and the books are checked against
what the test sent (not only against ``sagakit check``): no order lost, none doubled, stock
and money accounted for to the unit and the cent.

Two sizes: ``-m chaos`` runs a short version (CI), ``-m slow`` the full one (10,000 sagas).
Environment: SAGAKIT_CHAOS_SHORT_SAGAS / SAGAKIT_CHAOS_SHORT_RATE and SAGAKIT_CHAOS_SAGAS /
SAGAKIT_CHAOS_RATE (sagas, and sagas placed per second), SAGAKIT_CHAOS_SEED. The full
size places 10 orders/s by default: on 2 cores, with every process duplicated and one killed
each second, a backlog of re-sends built at 30/s does not drain in 60 s.
SAGAKIT_CHAOS_KEEP_A_REPLICA=0 lets a kill take down the last running replica of a service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from examples.shop.system import SERVICES

from sagakit.config import Settings, database_url
from sagakit.deadletters import read as read_dead_letters
from sagakit.devstack import StackInfo, postgres
from sagakit.errors import StackError, TransientError
from sagakit.fleet import Fleet
from sagakit.messaging.transport import OutgoingRecord
from sagakit.messaging.transport.kafka import KafkaOptions, KafkaTransport
from sagakit.runtime.host import Mode
from sagakit.topics import DEAD_LETTERS, topic_name
from tests.e2e.conftest import MODES, free_port_base
from tests.e2e.test_hostile_input import envelope
from tests.e2e.test_order_saga import assert_invariants


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


@dataclass(frozen=True)
class Size:
    sagas: int
    rate: float
    """Orders placed per second."""

    @property
    def load_seconds(self) -> float:
        return self.sagas / self.rate


SHORT = Size(int(_env("SAGAKIT_CHAOS_SHORT_SAGAS", 500)), _env("SAGAKIT_CHAOS_SHORT_RATE", 20))
FULL = Size(int(_env("SAGAKIT_CHAOS_SAGAS", 10_000)), _env("SAGAKIT_CHAOS_RATE", 0))
"""Rate 0: the mode's own (FULL_RATE)."""
FULL_RATE = {Mode.ORCHESTRATION: 10.0, Mode.CHOREOGRAPHY: 10.0}
FLOW_UNDER_CHAOS = {Mode.ORCHESTRATION: "reserve-first", Mode.CHOREOGRAPHY: "pay-first"}
SEED = int(os.environ.get("SAGAKIT_CHAOS_SEED", "1"))

SETTLE_WITHIN = 60.0
"""Seconds after the chaos stops by which every order must be settled."""
KILL_EVERY = 1.0
KEEP_A_REPLICA = os.environ.get("SAGAKIT_CHAOS_KEEP_A_REPLICA", "1") != "0"
DUPLICATE_EVERY = 100
POISON_EVERY = 0.5
PG_RESTARTS = 2
PLACE_GIVE_UP = 240.0
GIVE_UP_AFTER = 30
"""A client gives up on an order it could not place for PLACE_GIVE_UP seconds and
GIVE_UP_AFTER attempts (a failure)."""
MAX_INFLIGHT = 64
"""POSTs in flight at once; the other clients wait their turn (a pool of thousands of
waiting requests would starve the test's own event loop)."""
RESEND_RATE = 0.02
"""Share of orders a client sends again after its 202 (as if the answer had been lost)."""
POISON_HEADER = "x-chaos-poison"
SETTLED = ("CONFIRMED", "CANCELLED")


# -- the shop the test sells in ----------------------------------------------------------------
@dataclass
class Placement:
    """One order as the client sent it, and what it was answered."""

    index: int
    customer: str
    product: str
    quantity: int
    key: str
    replica: int
    resend: bool
    order_id: str | None = None
    answered: set[str] = field(default_factory=set)
    """Every order id a 202 named for this key: one, or the key made two orders."""
    attempts: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    failure: str | None = None

    @property
    def body(self) -> dict[str, object]:
        return {"customer_id": self.customer, "product_id": self.product, "quantity": self.quantity}


@dataclass
class Catalogue:
    prices: dict[str, int]
    stock: dict[str, int]
    balances: dict[str, int]
    plenty: list[str]
    scarce: str
    rich: list[str]
    poor: list[str]

    @classmethod
    def for_size(cls, sagas: int, tag: str) -> Catalogue:
        plenty = [f"p-{tag}-{n}" for n in range(3)]
        scarce = f"p-{tag}-scarce"
        prices = dict(zip(plenty, (100, 250, 75), strict=True)) | {scarce: 50}
        # Plenty of stock for the plenty products (3 units at most per order); the scarce
        # one runs out after about a quarter of its orders.
        stock = dict.fromkeys(plenty, 3 * sagas) | {scarce: max(10, sagas // 10)}
        rich = [f"c-{tag}-rich-{n}" for n in range(max(20, sagas // 25))]
        poor = [f"c-{tag}-poor-{n}" for n in range(max(5, sagas // 200))]
        balances = dict.fromkeys(rich, 10**9) | dict.fromkeys(poor, 400)
        return cls(prices, stock, balances, plenty, scarce, rich, poor)

    def plan(self, sagas: int, rng: random.Random, tag: str) -> list[Placement]:
        orders = []
        for i in range(sagas):
            customer = rng.choice(self.poor if rng.random() < 0.1 else self.rich)
            product = self.scarce if rng.random() < 0.2 else rng.choice(self.plenty)
            key = f"k-{tag}-{i:06d}"
            resend = rng.random() < RESEND_RATE
            orders.append(Placement(i, customer, product, rng.randint(1, 3), key, i % 2, resend))
        return orders


# -- the run -------------------------------------------------------------------------------------
@dataclass
class Figures:
    kills: int = 0
    pg_restarts: int = 0
    duplicates: int = 0
    records_seen: int = 0
    per_type: Counter[str] = field(default_factory=Counter)
    """Records seen on each topic while the chaos lasted (re-sent commands show here)."""
    poison: int = 0
    resent: int = 0
    spared: int = 0
    """Seconds in which no process was killed (none could be spared)."""
    restart_seconds: list[float] = field(default_factory=list)
    """How long each killed process took to be healthy again."""
    anomalies: list[str] = field(default_factory=list)
    """Service misbehaviour seen on the way (restart failures, processes that exited on
    their own, 500 answers, real messages dead-lettered)."""


class ChaosRun:
    def __init__(
        self, fleet: Fleet, http: httpx.AsyncClient, size: Size, rng: random.Random
    ) -> None:
        self.fleet = fleet
        self.http = http
        self.size = size
        self.rng = rng
        self.tag = uuid.uuid4().hex[:6]
        self.catalogue = Catalogue.for_size(size.sagas, self.tag)
        self.plan = self.catalogue.plan(size.sagas, rng, self.tag)
        self.figures = Figures()
        self.order_replicas = [n for n in fleet.processes if n.split("-")[0] == "order"]
        self.stop_chaos = asyncio.Event()
        self.down: set[str] = set()
        self.reviving: set[asyncio.Task[None]] = set()
        self.pg = _embedded_postgres(fleet.stack)
        self.pg_down = False
        self.pg_rng = random.Random(rng.random())
        """The crash-restarts' own generator (they run in a thread)."""
        self.crasher: threading.Thread | None = None
        self.crash_stop = threading.Event()
        self.inflight = asyncio.Semaphore(MAX_INFLIGHT)
        self.log: list[str] = []

    def note(self, line: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {line}")

    # -- seeding ---------------------------------------------------------------------------
    async def seed(self) -> None:
        c = self.catalogue
        for product, price in c.prices.items():
            r = await self.http.put(
                f"{self.fleet.url('inventory')}/products/{product}",
                json={"stock": c.stock[product], "price_cents": price},
            )
            r.raise_for_status()
        for customer, balance in c.balances.items():
            r = await self.http.put(
                f"{self.fleet.url('payment')}/customers/{customer}",
                json={"balance_cents": balance},
            )
            r.raise_for_status()
        async with asyncio.timeout(60):  # prices reach the order service as events
            for product in c.prices:
                while (
                    await self.http.get(f"{self.fleet.url('order')}/catalog/{product}")
                ).is_error:
                    await asyncio.sleep(0.05)

    # -- clients ---------------------------------------------------------------------------
    async def load(self) -> list[asyncio.Task[None]]:
        """Place every order of the plan at a steady rate; returns the placing tasks."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        tasks = []
        for p in self.plan:
            wait = began + p.index / self.size.rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(self.place(p)))
        return tasks

    async def place(self, p: Placement) -> None:
        await self._post_until_accepted(p, p.replica)
        if p.resend and p.failure is None:
            self.figures.resent += 1
            await self._post_until_accepted(p, p.replica + 1)

    async def _post_until_accepted(self, p: Placement, replica: int) -> None:
        """POST the order until it is answered 202, always with the same Idempotency-Key;
        retry lost connections, time-outs and 5xx with backoff, alternating replicas."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + PLACE_GIVE_UP
        delay = 0.05
        while True:
            name = self.order_replicas[replica % len(self.order_replicas)]
            replica += 1
            p.attempts += 1
            try:
                async with self.inflight:
                    r = await self.http.post(
                        f"{self.fleet.url(name)}/orders",
                        json=p.body,
                        headers={"Idempotency-Key": p.key},
                    )
            except httpx.TransportError as exc:
                p.answers[type(exc).__name__] += 1
            else:
                if r.status_code == 202:
                    oid = str(r.json()["order_id"])
                    p.answered.add(oid)
                    p.order_id = p.order_id or oid
                    return
                p.answers[str(r.status_code)] += 1
                if r.status_code == 500:
                    self.figures.anomalies.append(
                        f"POST /orders key {p.key} on {name} answered 500: {r.text[:300]}"
                    )
                elif r.status_code < 500:
                    p.failure = f"answered {r.status_code}: {r.text[:300]}"
                    return
            if loop.time() > give_up and p.attempts >= GIVE_UP_AFTER:
                p.failure = f"no 202 after {p.attempts} attempts: {dict(p.answers)}"
                return
            await asyncio.sleep(delay * self.rng.uniform(0.5, 1.5))
            delay = min(2 * delay, 2.0)

    # -- chaos -----------------------------------------------------------------------------
    async def kill_loop(self) -> None:
        """Every second, SIGKILL a random running service process; restart it after a short
        random pause. While KEEP_A_REPLICA holds, the last running replica of a service is
        spared (a restart takes several seconds: at one kill a second every process would
        be down most of the time); a second with no process to spare kills nothing."""
        loop = asyncio.get_running_loop()
        tick = loop.time()
        while not self.stop_chaos.is_set():
            self._revive_the_fallen()
            up = [n for n in sorted(self.fleet.processes) if n not in self.down]
            alive = Counter(n.split("-")[0] for n in up)
            if KEEP_A_REPLICA:
                up = [n for n in up if alive[n.split("-")[0]] > 1]
            if not up:
                self.figures.spared += 1
            else:
                victim = self.rng.choice(up)
                self.fleet.kill(victim)
                self.figures.kills += 1
                self._revive(victim, pause=self.rng.uniform(0.1, 1.5))
            tick += KILL_EVERY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_chaos.wait(), max(0.0, tick - loop.time()))

    async def all_up(self) -> None:
        self._revive_the_fallen()
        while self.reviving:
            await asyncio.gather(*list(self.reviving))
            self._revive_the_fallen()

    def _revive_the_fallen(self) -> None:
        """A process that died without being killed is a finding; restart it all the same."""
        for name, sp in self.fleet.processes.items():
            if name not in self.down and sp.proc is not None and sp.proc.poll() is not None:
                self.figures.anomalies.append(
                    f"{name} exited on its own with {sp.proc.returncode} (see {sp.log})"
                )
                self._revive(name, pause=0.0)

    def _revive(self, name: str, *, pause: float) -> None:
        self.down.add(name)
        task = asyncio.create_task(self._restart(name, pause))
        self.reviving.add(task)
        task.add_done_callback(self.reviving.discard)

    async def _restart(self, name: str, pause: float) -> None:
        await asyncio.sleep(pause)
        loop = asyncio.get_running_loop()
        for attempt in range(1, 6):
            began = loop.time()
            try:
                await self.fleet.restart(name, timeout=90)
                self.figures.restart_seconds.append(loop.time() - began)
                break
            except StackError as exc:
                self.figures.anomalies.append(f"restart {attempt} of {name} failed: {exc}")
                self.fleet.kill(name)
                await asyncio.sleep(1)
        self.down.discard(name)

    async def crash_postgres(self, length: float) -> None:
        """PG_RESTARTS times, evenly spread over the load's ``length`` seconds (one after
        the other): immediate stop, down 1-3 s, start again (crash recovery). The schedule
        runs in a thread of its own, so that a busy event loop cannot keep the server down
        longer than planned."""
        if self.pg is None:
            return
        errors: list[BaseException] = []
        self.crasher = threading.Thread(
            target=self._crash_schedule, args=(*self.pg, length, errors), daemon=True
        )
        self.crasher.start()
        while self.crasher.is_alive():
            await asyncio.sleep(0.2)
        if errors:
            raise errors[0]

    def _crash_schedule(
        self, data_dir: Path, port: int, length: float, errors: list[BaseException]
    ) -> None:
        began = time.monotonic()
        try:
            for n in range(PG_RESTARTS):
                at = began + length * (n + 1) / (PG_RESTARTS + 1)
                if self.crash_stop.wait(max(3.0, at - time.monotonic())):  # up 3 s at least
                    return
                self._crash_restart(data_dir, port)
        except BaseException as exc:
            errors.append(exc)

    def _crash_restart(self, data_dir: Path, port: int) -> None:
        self.pg_down = True
        began = time.monotonic()
        postgres.crash(data_dir)
        stopped = time.monotonic()
        time.sleep(self.pg_rng.uniform(1, 3))
        starting = time.monotonic()
        try:
            postgres.start(data_dir, port, timeout=60)
        except StackError as exc:
            tail = (data_dir / "server.log").read_text(errors="replace")[-3000:]
            raise StackError(f"{exc}; server log ends with:\n{tail}") from exc
        self.pg_down = False
        self.figures.pg_restarts += 1
        self.note(
            f"PostgreSQL crash-restarted: stopping took {stopped - began:.1f} s, down"
            f" {starting - stopped:.1f} s, starting {time.monotonic() - starting:.1f} s"
        )

    async def ensure_postgres(self) -> None:
        """After a failure mid-crash, leave the session's server running for others."""
        self.crash_stop.set()
        if self.crasher is not None:
            await asyncio.to_thread(self.crasher.join, 120)
        if self.pg is not None and self.pg_down:
            data_dir, port = self.pg
            with contextlib.suppress(StackError):
                await asyncio.to_thread(postgres.start, data_dir, port, timeout=60)

    async def duplicator(self) -> None:
        """Its own reader of the flow's topics: re-produces one record in 100 unchanged."""
        transport = _transport(self.fleet)
        async with (
            transport.consumer(None, flow_topics(self.fleet)) as reader,
            transport.producer() as producer,
        ):
            while not self.stop_chaos.is_set():
                batches = await reader.poll(max_records=500, timeout_ms=200)
                again = []
                for records in batches.values():
                    for r in records:
                        self.figures.records_seen += 1
                        self.figures.per_type[r.topic.split(".", 1)[1]] += 1
                        if self.figures.records_seen % DUPLICATE_EVERY == 0:
                            again.append(OutgoingRecord(r.topic, r.key, r.value, r.headers))
                if again:
                    try:
                        await producer.send_many(again)
                    except TransientError as exc:
                        self.note(f"duplicator: {exc!r}")
                        continue
                    self.figures.duplicates += len(again)

    async def poisoner(self) -> None:
        """Hostile records on every topic the services read: NUL keys and headers, bytes
        that are not UTF-8 or not JSON, unknown types, malformed payloads."""
        topics = flow_topics(self.fleet)
        async with _transport(self.fleet).producer() as producer:
            while not self.stop_chaos.is_set():
                try:
                    await producer.send_many([poison(self.rng.choice(topics), self.rng)])
                    self.figures.poison += 1
                except TransientError as exc:
                    self.note(f"poisoner: {exc!r}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_chaos.wait(), POISON_EVERY)

    async def unsettled(self) -> int:
        """Orders still PENDING, as the order API pages them (0 or more)."""
        total = 0
        for status in ("PENDING",):
            for name in self.order_replicas:
                try:
                    r = await self.http.get(
                        f"{self.fleet.url(name)}/orders",
                        params={"status": status, "limit": 1000},
                    )
                except httpx.TransportError:
                    continue
                if r.status_code == 200:
                    total += len(r.json()["orders"])
                    break
            else:
                return -1  # no replica answered: unknown
        return total


def flow_topics(fleet: Fleet) -> list[str]:
    dead = topic_name(fleet.settings.namespace, DEAD_LETTERS)
    return [t for t in fleet.topics() if t != dead]


def _transport(fleet: Fleet) -> KafkaTransport:
    return KafkaTransport(KafkaOptions(bootstrap=fleet.stack.kafka_bootstrap, fetch_max_wait_ms=20))


def _embedded_postgres(stack: StackInfo) -> tuple[Path, int] | None:
    """The data folder and port of the session's embedded server; None when the server is
    configured from outside (it cannot be restarted from here)."""
    if stack.postgres_pid is None or stack.postgres_log is None:
        return None
    port = urlsplit(stack.database_url).port
    return (Path(stack.postgres_log).parent, port) if port else None


def poison(topic: str, rng: random.Random) -> OutgoingRecord:
    """A record no service can handle, marked so that its dead letters can be told from
    those of real messages. None names a real order, customer or product."""
    type_ = topic.split(".", 1)[1]
    nul = b"\x00\x00\x00\x2a"
    mark = (POISON_HEADER, b"1")
    key, value, headers = rng.choice(
        [
            (nul, envelope(type_, {"order_id": ["not", "text"]}), (mark,)),
            (nul, b"\x00not json\xff", (mark,)),
            (b"k", envelope(type_, {}), (mark, ("trace\x00", b"\x00\xff"))),
            (b"\xff\xfe", b"\xff\xfe\x00", (mark,)),
            (b"", b"", (mark,)),
            (nul, envelope("no.such.type", {"order_id": "x"}), (mark,)),
            (b"k", envelope(type_, {"order_id": "\x00", "quantity": True}), (mark,)),
            (b"k", b"[1, 2, 3]", (mark,)),
            (b"k", json.dumps({"id": "not-a-uuid", "type": type_}).encode(), (mark,)),
        ]
    )
    return OutgoingRecord(topic, key, value, headers)


# -- the fleet -----------------------------------------------------------------------------------
@pytest.fixture
async def chaos_fleet(
    request: pytest.FixtureRequest, stack: StackInfo, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Fleet]:
    """Every service at two replicas, in a namespace of its own; orchestrated orders run
    reserve-first, choreographed ones pay-first (so chaos covers both flows and modes)."""
    mode: Mode = request.param
    settings = Settings(
        namespace=f"chaos{uuid.uuid4().hex[:8]}", session_timeout_ms=3000, fetch_max_wait_ms=20
    )
    names = SERVICES
    flow = FLOW_UNDER_CHAOS[mode]
    ports: dict[str, int] = {}
    for name in names:  # the second replica takes the port + 10
        taken = {q + d for q in ports.values() for d in (0, 10)}
        ports[name] = next(
            port for port in iter(lambda: free_port_base(10), None) if not {port, port + 10} & taken
        )
    fleet = Fleet(
        stack,
        settings,
        names,
        ports,
        mode=mode,
        env={"SAGAKIT_STUCK_AFTER_S": "20", "SHOP_FLOW": flow},
        replicas=dict.fromkeys(names, 2),
        log_dir=Path(tmp_path_factory.mktemp(f"chaos-logs-{mode.value}")),
    )
    await fleet.start(timeout=120)
    try:
        yield fleet
    finally:
        fleet.stop()


# -- the test ------------------------------------------------------------------------------------
def _sizes() -> list[object]:
    return [
        pytest.param(
            SHORT, id="short", marks=[pytest.mark.chaos, pytest.mark.timeout(_budget(SHORT))]
        ),
        pytest.param(FULL, id="full", marks=[pytest.mark.slow, pytest.mark.timeout(_budget(FULL))]),
    ]


def _budget(size: Size) -> int:
    rate = size.rate or min(FULL_RATE.values())
    return int(300 + 2 * size.sagas / rate + 2 * SETTLE_WITHIN)


@pytest.mark.parametrize("size", _sizes())
@pytest.mark.parametrize("chaos_fleet", MODES, indirect=True, ids=lambda m: m.value)
async def test_no_saga_lost_doubled_or_stuck_under_chaos(
    chaos_fleet: Fleet, size: Size, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = chaos_fleet
    if not size.rate:
        size = Size(size.sagas, FULL_RATE[fleet.mode])
    began = time.monotonic()
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=MAX_INFLIGHT)
    timeout = httpx.Timeout(10.0, connect=2.0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        run = ChaosRun(fleet, http, size, random.Random(SEED))
        await run.seed()
        if run.pg is None:
            with capsys.disabled():
                print(
                    "\nchaos: PostgreSQL is configured from outside (SAGAKIT_DATABASE_URL);"
                    " its crash-restarts are left out of this run"
                )
        try:
            settle_seconds, unsettled_at_deadline = await _run_chaos(run)
        finally:
            await run.ensure_postgres()
        verdict = await _verdict(run)
    verdict.unsettled = max(verdict.unsettled, unsettled_at_deadline)
    f = run.figures
    summary = (
        f"chaos[{fleet.mode.value}, {FLOW_UNDER_CHAOS[fleet.mode]}] sagas={size.sagas}"
        f" rate={size.rate:g}/s kills={f.kills}"
        f" spared={f.spared}"
        f" pg_restarts={f.pg_restarts} duplicates={f.duplicates}/{f.records_seen}"
        f" poison={f.poison} resent={f.resent} lost={verdict.lost} doubled={verdict.doubled}"
        f" unsettled={verdict.unsettled} books={len(verdict.books)}"
        f" unplaced={verdict.unplaced} refused={verdict.refused} retries={verdict.retries}"
        f" answers={dict(verdict.answers)}"
        f" outcomes={dict(verdict.outcomes)} dead_letters={verdict.dead_letters}"
        f" restart={_mean_max(f.restart_seconds)}"
        f" settled_in={settle_seconds:.1f}s duration={time.monotonic() - began:.0f}s"
        f" logs={fleet.log_dir} records={dict(sorted(f.per_type.items()))}"
    )
    with capsys.disabled():
        print(f"\n{summary}")
        for line in [*run.log, *verdict.details[:40], *f.anomalies[:40]]:
            print("  " + " ".join(line.split()))

    assert (verdict.unplaced, verdict.refused) == (0, 0), "every order was accepted"
    assert (verdict.lost, verdict.doubled, verdict.unsettled) == (0, 0, 0), summary
    assert verdict.books == [], verdict.books[:20]
    if run.pg is not None:
        assert f.pg_restarts == PG_RESTARTS
    assert f.kills > 0 and f.poison > 0
    assert f.duplicates == f.records_seen // DUPLICATE_EVERY
    if size.sagas >= 100:  # every path was taken
        assert verdict.outcomes["CONFIRMED"] > 0
        assert verdict.outcomes["insufficient funds"] > 0
        assert verdict.outcomes["out of stock"] > 0
    await assert_invariants(fleet)
    assert f.anomalies == [], f.anomalies[:20]


def _mean_max(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    return f"{sum(seconds) / len(seconds):.1f}s/{max(seconds):.1f}s"


async def _run_chaos(run: ChaosRun) -> tuple[float, int]:
    """Load and chaos together; then wait for every order to settle. Returns how long
    settling took after the chaos stopped, and how many orders were unsettled 60 s on."""
    loop = asyncio.get_running_loop()
    length = run.size.load_seconds
    crasher = asyncio.create_task(run.crash_postgres(length))
    helpers = [
        asyncio.create_task(run.kill_loop()),
        asyncio.create_task(run.duplicator()),
        asyncio.create_task(run.poisoner()),
    ]
    try:
        placing = await run.load()
        await crasher  # the crash-restarts fall within the chaos
        run.stop_chaos.set()
        stopped = loop.time()
        run.note(f"chaos stops ({run.figures.kills} kills)")
        await asyncio.gather(*helpers)
        await run.all_up()
        run.note("every process is up again")
        await asyncio.gather(*placing)
        run.note("every order is placed")
    finally:
        run.stop_chaos.set()
        for task in (crasher, *helpers):
            task.cancel()
        await asyncio.gather(crasher, *helpers, *list(run.reviving), return_exceptions=True)
    unsettled = await run.unsettled()
    while unsettled != 0 and loop.time() < stopped + SETTLE_WITHIN:
        await asyncio.sleep(0.5)
        unsettled = await run.unsettled()
    settled_in = loop.time() - stopped
    if unsettled:
        run.note(f"{unsettled} order(s) unsettled {SETTLE_WITHIN:.0f} s after the chaos stopped")
        while unsettled and loop.time() < stopped + 3 * SETTLE_WITHIN:  # slow, or stuck?
            await asyncio.sleep(1)
            unsettled = await run.unsettled()
        run.note(f"{unsettled} still unsettled after {loop.time() - stopped:.0f} s")
        return settled_in, max(unsettled, 1)
    return settled_in, 0


@dataclass
class Verdict:
    lost: int = 0
    doubled: int = 0
    unsettled: int = 0
    unplaced: int = 0
    """Orders never answered 202."""
    refused: int = 0
    """Orders whose POST was answered 4xx, or never 202 before the client gave up."""
    retries: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    """Why POSTs were retried."""
    dead_letters: str = ""
    outcomes: Counter[str] = field(default_factory=Counter)
    books: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


async def _verdict(run: ChaosRun) -> Verdict:
    """Everything checked against what the test sent."""
    fleet, c, v = run.fleet, run.catalogue, Verdict()
    conn = await asyncpg.connect(
        database_url(fleet.stack.database_url, fleet.settings.database("orders"))
    )
    try:
        rows = await conn.fetch(
            "SELECT order_id, customer_id, product_id, quantity, status, reason,"
            " amount_cents, idempotency_key FROM orders"
        )
    finally:
        await conn.close()
    by_key: dict[tuple[str, str | None], list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        by_key[(row["customer_id"], row["idempotency_key"])].append(row)

    kept: Counter[str] = Counter()  # per customer: the amounts of their CONFIRMED orders
    sold: Counter[str] = Counter()  # per product: the units of its CONFIRMED orders
    busy: set[str] = set()  # customers and products of unsettled orders
    sent = set()
    for p in run.plan:
        sent.add((p.customer, p.key))
        v.retries += p.attempts - 1 - p.resend
        v.answers.update(p.answers)
        if p.failure is not None:
            v.refused += 1
            v.details.append(f"order {p.index} (key {p.key}): {p.failure}")
        if p.order_id is None:
            v.unplaced += 1
            continue
        found = by_key.get((p.customer, p.key), [])
        if len(found) > 1 or len(p.answered) > 1:
            v.doubled += 1
            ids = sorted({r["order_id"] for r in found} | p.answered)
            v.details.append(f"key {p.key}: several orders {ids}")
        mine = [r for r in found if r["order_id"] == p.order_id]
        if not mine:
            v.lost += 1
            v.details.append(f"key {p.key}: order {p.order_id} answered but not stored")
            continue
        row = mine[0]
        if (row["product_id"], row["quantity"]) != (p.product, p.quantity):
            v.books.append(f"order {p.order_id} stored as {dict(row)}, sent {p.body}")
        if row["status"] not in SETTLED:  # their books are still moving
            busy.update((p.customer, p.product))
        if row["status"] == "CONFIRMED":
            v.outcomes["CONFIRMED"] += 1
            amount = c.prices[p.product] * p.quantity
            kept[p.customer] += amount
            sold[p.product] += p.quantity
            if row["amount_cents"] != amount:
                v.books.append(f"order {p.order_id}: amount {row['amount_cents']} != {amount}")
        else:
            v.outcomes[str(row["reason"] or row["status"])] += 1
    for (customer, key), found in by_key.items():
        if (customer, key) not in sent:
            v.doubled += len(found)
            v.details.append(f"order(s) nobody sent: {[dict(r) for r in found][:3]}")
    v.unsettled = sum(r["status"] not in SETTLED for r in rows)

    # Money and stock are conserved always; they match the settled orders to the cent and
    # the unit where no order is still moving them.
    for customer, balance in c.balances.items():
        money = (await run.http.get(f"{fleet.url('payment')}/customers/{customer}")).json()
        net = money["charged_cents"] - money["refunded_cents"]
        if money["balance_cents"] + net != balance or (
            customer not in busy and net != kept[customer]
        ):
            v.books.append(
                f"customer {customer}: {money}; their confirmed orders total {kept[customer]}"
                f" of {balance}"
            )
    for product, initial in c.stock.items():
        stock = (await run.http.get(f"{fleet.url('inventory')}/products/{product}")).json()
        held = stock["available"] + stock["reserved"] + stock["sold"]
        if held != initial or (
            product not in busy and (stock["sold"], stock["reserved"]) != (sold[product], 0)
        ):
            v.books.append(
                f"product {product}: {stock}; confirmed orders took {sold[product]} of {initial}"
            )

    letters = await read_dead_letters(
        _transport(fleet), fleet.settings.namespace, limit=1_000_000, idle=3
    )
    real = [d for d in letters if not any(k == POISON_HEADER for k, _ in d.headers)]
    v.dead_letters = f"{len(letters)}({len(real)} not poison)"
    for d in real[:10]:
        run.figures.anomalies.append(
            f"dead letter of a message a service sent: group {d.group}, {d.topic}"
            f" [{d.source_partition}@{d.source_offset}] key {d.printable_key}: {d.reason}"
            f" {d.error[:300]}; value {d.value[:300]!r}"
        )
    await _check_sagas(run, {p.order_id for p in run.plan if p.order_id})
    return v


async def _check_sagas(run: ChaosRun, orders: set[str]) -> None:
    """The orchestrator (in choreography: the tracker) holds one finished saga per order,
    and no other."""
    fleet = run.fleet
    url = database_url(fleet.stack.database_url, fleet.settings.database("orchestrator"))
    conn = await asyncpg.connect(url)
    try:
        sagas = await conn.fetch("SELECT saga_id, status, step, parked, data FROM sagas")
    finally:
        await conn.close()
    found = {s["saga_id"] for s in sagas}
    for s in sagas:
        if s["saga_id"] not in orders:
            run.figures.anomalies.append(f"saga for no order: {dict(s)}")
        elif s["status"] not in ("COMPLETED", "FAILED") or s["parked"] is not None:
            run.figures.anomalies.append(f"saga not finished: {dict(s)}")
    if missing := orders - found:
        some = sorted(missing)[:5]
        run.figures.anomalies.append(f"{len(missing)} order(s) without a saga, e.g. {some}")
