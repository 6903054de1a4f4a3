"""The ``sagakit`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from sagakit.config import Settings
from sagakit.db.pool import redact
from sagakit.devstack import DevStack
from sagakit.errors import SagakitError, StackError


def _dev(args: argparse.Namespace) -> int:
    stack = DevStack()
    if args.action == "up":
        info = stack.up(timeout=args.timeout)
        embedded = " (embedded)" if info.postgres_pid else ""
        print(f"PostgreSQL  {redact(info.database_url)}{embedded}")
        print(f"Kafka       {info.kafka_bootstrap}" + (" (embedded)" if info.broker_pid else ""))
        print(f"ready in {info.started_in:.1f} s")
        return 0
    if args.action == "down":
        stopped = stack.down(wipe=args.wipe)
        print("stopped: " + (", ".join(stopped) or "nothing was running"))
        return 0
    status = stack.status()
    if args.json:
        print(json.dumps(status.to_json() if status else {"running": False}))
        return 0 if status else 1
    if status is None:
        print("dev stack is not running (sagakit dev up starts it)")
        return 1
    info = status
    pg = (
        f"embedded, pid {info.postgres_pid}, log {info.postgres_log}"
        if info.postgres_pid
        else "configured"
    )
    kafka = (
        f"embedded, pid {info.broker_pid}, log {info.broker_log}"
        if info.broker_pid
        else "configured"
    )
    print(f"PostgreSQL  {redact(info.database_url)}  ({pg})")
    print(f"Kafka       {info.kafka_bootstrap}  ({kafka})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from sagakit.loadgen.demo import run_demo
    from sagakit.services.host import Mode

    result = asyncio.run(
        run_demo(
            Mode(args.mode),
            args.orders,
            rate=args.rate,
            keep_running=args.keep_running,
            ports=_ports(args.port_base),
        )
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result.to_json(), out, indent=2)
    return 0 if result.ok else 1


def _ports(base: int) -> dict[str, int]:
    names = ("order", "inventory", "payment", "orchestrator")
    return {name: base + i for i, name in enumerate(names)}


def _bench(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from rich.console import Console

    from sagakit.loadgen.bench import run_bench
    from sagakit.loadgen.report import render_bench
    from sagakit.services.host import Mode

    result = asyncio.run(
        run_bench(
            Mode(args.mode),
            duration=args.duration,
            warmup=args.warmup,
            rate=args.rate,
            concurrency=args.concurrency,
            failures=args.failures,
            ports=_ports(args.port_base),
        )
    )
    render_bench(result, Console())
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result.to_json(), out, indent=2)
    return 0 if result.check_clean and result.completed > 0 else 1


def _up(args: argparse.Namespace) -> int:
    import asyncio
    import signal
    import time

    from sagakit.fleet import Fleet
    from sagakit.services.host import Mode

    settings = Settings.from_env()
    info = DevStack(settings).up()
    ports = {
        "order": args.order_port,
        "inventory": args.inventory_port,
        "payment": args.payment_port,
        "orchestrator": args.orchestrator_port,
    }
    fleet = Fleet(info, settings, mode=Mode(args.mode), ports=ports, log_dir=settings.home / "logs")
    asyncio.run(fleet.start())
    print(f"sagakit is up in {args.mode} mode")
    print(f"  PostgreSQL  {redact(info.database_url)}")
    print(f"  Kafka       {info.kafka_bootstrap}")
    for name, sp in fleet.processes.items():
        print(f"  {name:<13}{sp.url}  (API docs {sp.url}/docs, log {sp.log})")
    print("Ctrl-C stops everything.")
    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopped:
            time.sleep(0.5)
            for name, sp in fleet.processes.items():
                if sp.proc is not None and sp.proc.poll() is not None:
                    print(f"{name} exited with {sp.proc.returncode}; see {sp.log}")
                    stopped = True
    except KeyboardInterrupt:
        pass
    finally:
        fleet.stop()
        if not args.keep_stack:
            DevStack(settings).down()
    return 0


def _endpoints(settings: Settings) -> tuple[str, str]:
    """(PostgreSQL server URL, Kafka bootstrap): configured, or the running dev stack's."""
    if settings.database_url and settings.kafka_bootstrap:
        return settings.database_url, settings.kafka_bootstrap
    info = DevStack(settings).status()
    if info is None:
        raise StackError("no PostgreSQL/Kafka configured and no dev stack running")
    return settings.database_url or info.database_url, settings.kafka_bootstrap or (
        info.kafka_bootstrap
    )


def _dlq(args: argparse.Namespace) -> int:
    import asyncio

    import asyncpg

    from sagakit import deadletters
    from sagakit.config import database_url
    from sagakit.messaging.transport.kafka import KafkaOptions, KafkaTransport
    from sagakit.services import SERVICE_DATABASES

    settings = Settings.from_env()
    server, bootstrap = _endpoints(settings)
    transport = KafkaTransport(KafkaOptions(bootstrap=bootstrap))

    async def run() -> int:
        letters = await deadletters.read(transport, settings.namespace, limit=args.limit)
        if args.action == "list":
            for d in letters:
                print(
                    f"{d.partition}:{d.offset}  {d.group} gave up on {d.topic}"
                    f"[{d.source_partition}:{d.source_offset}] {d.message_type or '?'}"
                    f" key={d.printable_key} after {d.attempts} attempt(s): {d.error}: {d.reason}"
                )
            print(f"{len(letters)} dead letter(s)")
            return 0
        match = [d for d in letters if (d.partition, d.offset) == (args.partition, args.offset)]
        if not match:
            print(f"no dead letter at {args.partition}:{args.offset}", file=sys.stderr)
            return 1
        letter = match[0]
        service = letter.group.removeprefix(f"{settings.namespace}.")
        if service not in SERVICE_DATABASES:
            print(f"unknown consumer group {letter.group!r}", file=sys.stderr)
            return 1
        url = database_url(server, settings.database(SERVICE_DATABASES[service]))
        conn = await asyncpg.connect(url)
        try:
            async with transport.producer() as producer:
                replayed = await deadletters.replay(letter, producer=producer, consumer_db=conn)
        finally:
            await conn.close()
        if not replayed:
            print(f"{letter.message_type or 'record'} was replayed already", file=sys.stderr)
            return 1
        print(f"replayed {letter.message_type or 'record'} to {letter.topic} for {letter.group}")
        return 0

    return asyncio.run(run())


def _service_db(settings: Settings, server: str, service: str) -> str:
    from sagakit.config import database_url
    from sagakit.services import SERVICE_DATABASES

    if service not in SERVICE_DATABASES:
        raise SagakitError(f"unknown service {service!r}: one of {', '.join(SERVICE_DATABASES)}")
    return database_url(server, settings.database(SERVICE_DATABASES[service]))


def _outbox(args: argparse.Namespace) -> int:
    import asyncio

    import asyncpg

    from sagakit.messaging import outbox

    settings = Settings.from_env()
    server, _ = _endpoints(settings)
    url = _service_db(settings, server, args.service)

    async def run() -> int:
        conn = await asyncpg.connect(url)
        try:
            if args.action == "requeue":
                if args.id is None and not (args.all or args.topic):
                    raise SagakitError("name a row id, or use --topic or --all")
                moved = await outbox.requeue(conn, args.id, topic=args.topic)
                print(f"{moved} row(s) back in {args.service}'s outbox")
                return 0 if moved else 1
            rows = await outbox.parked(conn, args.limit)
            for r in rows:
                print(
                    f"{r['id']}  {r['topic']} key={r['key']!r} {r['size']} bytes,"
                    f" parked {r['parked_at']:%Y-%m-%d %H:%M:%S} after {r['attempts']}"
                    f" attempt(s): {r['error']}"
                )
            print(f"{len(rows)} parked row(s) in {args.service}")
            return 0
        finally:
            await conn.close()

    return asyncio.run(run())


def _sagas(args: argparse.Namespace) -> int:
    import asyncio

    import asyncpg

    from sagakit.flows.order_saga import ORDER_SAGA
    from sagakit.services.orchestrator import store
    from sagakit.services.orchestrator.engine_runtime import Orchestrator

    settings = Settings.from_env()
    server, _ = _endpoints(settings)
    url = _service_db(settings, server, "orchestrator")

    async def run() -> int:
        conn = await asyncpg.connect(url)
        try:
            if args.action == "parked":
                rows = await store.parked(conn, args.limit)
                for r in rows:
                    print(f"{r['saga_id']}  {r['status']} at {r['step']}: {r['parked']}")
                print(f"{len(rows)} parked saga(s)")
                return 0
            orchestrator = Orchestrator(
                ORDER_SAGA, starts_on="order.created", namespace=settings.namespace
            )
            async with conn.transaction():
                resumed = await orchestrator.resume(conn, args.saga_id)
        finally:
            await conn.close()
        if not resumed:
            print(f"saga {args.saga_id} is not parked", file=sys.stderr)
            return 1
        print(f"saga {args.saga_id} resumed: the step it is at is sent again")
        return 0

    return asyncio.run(run())


def _check(args: argparse.Namespace) -> int:
    import asyncio

    from sagakit.audit import audit

    settings = Settings.from_env()
    server, _ = _endpoints(settings)
    report = asyncio.run(audit(server, settings))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.orders.items())) or "no orders"
    print(f"orders: {counts}")
    for line in report.violations:
        print(f"VIOLATION {line}")
    print("invariants hold" if report.clean else f"{len(report.violations)} violation(s)")
    return 0 if report.clean else 1


def _diagram(args: argparse.Namespace) -> int:
    from sagakit.flows.order_saga import ORDER_SAGA
    from sagakit.saga.diagram import mermaid

    print(mermaid(ORDER_SAGA, started_by="order.created"), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sagakit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="the local PostgreSQL + Kafka stack")
    dev_sub = dev.add_subparsers(dest="action", required=True)
    dev_up = dev_sub.add_parser("up", help="start (or reuse) the stack")
    dev_up.add_argument("--timeout", type=float, default=30.0)
    down = dev_sub.add_parser("down", help="stop what the stack started")
    down.add_argument("--wipe", action="store_true", help="also delete the database files")
    status = dev_sub.add_parser("status", help="what runs where")
    status.add_argument("--json", action="store_true")
    dev.set_defaults(func=_dev)

    up = sub.add_parser("up", help="start the stack and the services; Ctrl-C stops them")
    up.add_argument("--mode", choices=["orchestration", "choreography"], default="orchestration")
    up.add_argument("--order-port", type=int, default=8001)
    up.add_argument("--inventory-port", type=int, default=8002)
    up.add_argument("--payment-port", type=int, default=8003)
    up.add_argument("--orchestrator-port", type=int, default=8004)
    up.add_argument("--keep-stack", action="store_true", help="leave PostgreSQL and Kafka up")
    up.set_defaults(func=_up)

    dlq = sub.add_parser("dlq", help="list or replay dead-lettered messages")
    dlq_sub = dlq.add_subparsers(dest="action", required=True)
    dlq_list = dlq_sub.add_parser("list", help="what was parked, by whom, and why")
    dlq_replay = dlq_sub.add_parser("replay", help="publish a parked record again")
    dlq_replay.add_argument("--partition", type=int, required=True)
    dlq_replay.add_argument("--offset", type=int, required=True)
    for p in (dlq_list, dlq_replay):
        p.add_argument("--limit", type=int, default=1000)
    dlq.set_defaults(func=_dlq)

    ob = sub.add_parser("outbox", help="rows the broker refused: list or requeue them")
    ob_sub = ob.add_subparsers(dest="action", required=True)
    ob_list = ob_sub.add_parser("parked", help="rows parked because the broker refused them")
    ob_list.add_argument("--limit", type=int, default=100)
    ob_requeue = ob_sub.add_parser("requeue", help="send a parked row again")
    ob_requeue.add_argument("id", type=int, nargs="?", help="a parked row's id")
    ob_requeue.add_argument("--topic", help="every parked row of this topic")
    ob_requeue.add_argument("--all", action="store_true", help="every parked row")
    for p in (ob_list, ob_requeue):
        p.add_argument("--service", required=True, help="whose database (order, payment, ...)")
    ob.set_defaults(func=_outbox)

    sagas = sub.add_parser("sagas", help="operator actions on sagas")
    sagas_sub = sagas.add_subparsers(dest="action", required=True)
    resume = sagas_sub.add_parser("resume", help="take a parked saga back (re-sends its step)")
    resume.add_argument("saga_id")
    parked = sagas_sub.add_parser("parked", help="sagas set aside as unprocessable, and why")
    parked.add_argument("--limit", type=int, default=100)
    sagas.set_defaults(func=_sagas)

    check = sub.add_parser("check", help="audit the saga invariants across the databases")
    check.set_defaults(func=_check)

    diagram = sub.add_parser("diagram", help="print the order saga as a Mermaid flowchart")
    diagram.set_defaults(func=_diagram)

    bench = sub.add_parser("bench", help="measure throughput (closed loop) or latency (--rate)")
    bench.add_argument("--mode", choices=["orchestration", "choreography"], default="orchestration")
    bench.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    bench.add_argument("--warmup", type=float, default=5.0, help="seconds not counted")
    bench.add_argument("--rate", type=float, help="open loop at this many orders/s")
    bench.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    bench.add_argument("--failures", type=float, default=0.1, help="share of failing orders")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.add_argument("--port-base", type=int, default=8001, help="services get 4 ports from it")
    bench.set_defaults(func=_bench)

    demo = sub.add_parser("demo", help="start everything and run orders through every path")
    demo.add_argument("--mode", choices=["orchestration", "choreography"], default="orchestration")
    demo.add_argument("--orders", type=int, default=300)
    demo.add_argument("--rate", type=float, default=60.0, help="orders per second")
    demo.add_argument("--keep-running", action="store_true", help="keep everything up until Ctrl-C")
    demo.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    demo.add_argument("--port-base", type=int, default=8001, help="services get 4 ports from it")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SagakitError as exc:
        print(f"sagakit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
