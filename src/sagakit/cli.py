"""The ``sagakit`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from sagakit.config import Settings
from sagakit.db.pool import redact
from sagakit.devstack import DevStack
from sagakit.errors import SagakitError, StackError
from sagakit.runtime.service import Mode, Service, check_system


def _dev(args: argparse.Namespace) -> int:
    stack = DevStack()
    if args.action == "up":
        settings, mode = stack.settings, Mode(args.mode)
        services = [_service(ref) for ref in _refs(args.services)]
        info = stack.up(
            timeout=args.timeout,
            databases=[svc.database for svc in services],
            topics=[t for svc in services for t in svc.topics(mode, settings.namespace)],
        )
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
    from sagakit.messaging.transport.kafka import KafkaOptions, KafkaTransport

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
        service = _service(args.service)
        if settings.group(service.name) != letter.group:
            raise SagakitError(f"the letter is {letter.group}'s, not {service.name}'s")
        conn = await asyncpg.connect(_service_db(settings, server, args.service))
        try:
            replayed = await deadletters.replay(
                letter, consumer_db=conn, by=_operator(), note=args.note or ""
            )
        finally:
            await conn.close()
        if not replayed:
            print(f"{letter.message_type or 'record'} was replayed already", file=sys.stderr)
            return 1
        print(f"replayed {letter.message_type or 'record'} to {letter.topic} for {letter.group}")
        return 0

    return asyncio.run(run())


def _service(ref: str) -> Service:
    from sagakit.refs import load_as

    found = load_as(ref, Service)
    if len(found) != 1:
        raise SagakitError(f"{ref!r} names {len(found)} services; name one")
    return found[0]


def _service_db(settings: Settings, server: str, ref: str) -> str:
    from sagakit.config import database_url

    return database_url(server, settings.database(_service(ref).database))


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

    from sagakit import operator
    from sagakit.orchestration import store
    from sagakit.orchestration.timeline import render_list, render_timeline

    settings = Settings.from_env()
    server, _ = _endpoints(settings)
    service = _service(args.service)
    if not (service.keeps_sagas(Mode.ORCHESTRATION) or service.keeps_sagas(Mode.CHOREOGRAPHY)):
        raise SagakitError(f"{service.name} keeps no sagas: name the service orchestrating them")
    url = _service_db(settings, server, args.service)

    async def run() -> int:
        conn = await asyncpg.connect(url)
        try:
            mode = await _saga_mode(conn, service)
            if not service.keeps_sagas(mode):
                raise SagakitError(
                    f"{service.name} keeps no sagas in {mode.value}: name the service"
                    " orchestrating them"
                )
            if args.action == "list":
                print(render_list(await store.listing(conn, args.status, args.limit)))
                return 0
            if args.action == "show":
                found = await store.timeline(conn, args.saga_id)
                if found is None:
                    raise SagakitError(f"no saga {args.saga_id} in {service.name}")
                print(render_timeline(*found))
                return 0
            if args.action == "parked":
                rows = await store.parked(conn, args.limit)
                for r in rows:
                    print(f"{r['saga_id']}  {r['status']} at {r['step']}: {r['parked']}")
                print(f"{len(rows)} parked saga(s)")
                return 0
            async with conn.transaction():
                done = await operator.act(
                    conn,
                    service,
                    mode,
                    args.saga_id,
                    args.action,
                    by=_operator(),
                    note=args.note,
                    namespace=settings.namespace,
                )
        finally:
            await conn.close()
        print(f"saga {args.saga_id}: {done}")
        return 0

    return asyncio.run(run())


async def _saga_mode(conn: Any, service: Service) -> Mode:
    """The mode the service's sagas run in, as the service recorded it when it started: an
    operator's decision must take the path the copies follow. ``SAGAKIT_MODE``, when set,
    must agree."""
    from sagakit.orchestration import store
    from sagakit.runtime.host import mode_from_env

    recorded = await store.recorded_mode(conn)
    if recorded is None:
        return mode_from_env()
    if "SAGAKIT_MODE" in os.environ and mode_from_env().value != recorded:
        raise SagakitError(
            f"{service.name} runs its sagas in {recorded} mode, but SAGAKIT_MODE says"
            f" {os.environ['SAGAKIT_MODE']}"
        )
    return Mode(recorded)


def _operator() -> str:
    from sagakit.operator import local_operator

    return local_operator()


def _diagram(args: argparse.Namespace) -> int:
    from sagakit.refs import load_as
    from sagakit.saga import SagaDefinition
    from sagakit.saga.diagram import mermaid

    for definition in load_as(args.definition, SagaDefinition):
        print(mermaid(definition, started_by=definition.starts_on), end="")
    return 0


def _run(args: argparse.Namespace) -> int:
    from sagakit.runtime.host import serve

    service = _service(args.service)
    if args.port is not None:
        os.environ["SAGAKIT_PORT"] = str(args.port)
    settings = Settings.from_env()
    if not (settings.database_url and settings.kafka_bootstrap):  # the running dev stack's
        server, bootstrap = _endpoints(settings)
        os.environ["SAGAKIT_DATABASE_URL"], os.environ["SAGAKIT_KAFKA_BOOTSTRAP"] = (
            server,
            bootstrap,
        )
    service.check(Mode(os.environ.get("SAGAKIT_MODE") or Mode.ORCHESTRATION))
    serve(service)
    return 0


def _up(args: argparse.Namespace) -> int:
    """Start the dev stack and services as processes until Ctrl-C."""
    import asyncio

    from sagakit.fleet import Fleet, run_until_stopped

    settings = Settings.from_env()
    mode = Mode(args.mode)
    named = {_service(ref).name: ref for ref in _refs(args.services)}
    services = [_service(ref) for ref in named.values()]
    check_system(services, mode)  # before starting anything
    ports = {name: args.port + i for i, name in enumerate(named)}
    fleet = Fleet(
        DevStack(settings).up(),
        settings,
        named,
        ports,
        mode=mode,
        log_dir=settings.home / "logs",
        console_port=(args.console_port or None) if any(s.orchestrates for s in services) else None,
    )
    asyncio.run(fleet.start())
    return run_until_stopped(fleet, keep_stack=args.keep_stack)


def _console(args: argparse.Namespace) -> int:
    """Serve the web console for the named services until Ctrl-C."""
    import asyncio

    from sagakit.console import run
    from sagakit.messaging import logcontext

    logcontext.configure(os.environ.get("SAGAKIT_LOG_LEVEL", "INFO"), prefix="console ")
    settings = Settings.from_env()
    server, bootstrap = _endpoints(settings)
    services = [_service(ref) for ref in _refs(args.services)]
    print(f"console on http://{args.host}:{args.port}", flush=True)
    asyncio.run(
        run(
            services,
            host=args.host,
            port=args.port,
            settings=settings,
            server=server,
            bootstrap=bootstrap,
        )
    )
    return 0


def _refs(refs: Sequence[str]) -> list[str]:
    """Each ``MODULE:NAME`` naming one service, with collections of references (a dict's
    values, a list's items: ``MODULE:NAME`` strings) expanded."""
    from sagakit.refs import load

    out = []
    for ref in refs:
        obj = load(ref)
        if isinstance(obj, Service):
            out.append(ref)
            continue
        items = (
            list(obj.values() if isinstance(obj, dict) else obj)
            if isinstance(obj, dict | list | tuple)
            else None
        )
        if items is None or not all(isinstance(i, str) for i in items):
            raise SagakitError(
                f"{ref!r} is a {type(obj).__name__}: name a Service, or a dict or list of"
                " MODULE:NAME strings (each service runs as a process started from its name)"
            )
        out += _refs(items)
    return out


def build_parser() -> argparse.ArgumentParser:
    from sagakit import operator

    parser = argparse.ArgumentParser(prog="sagakit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="the local PostgreSQL + Kafka stack")
    dev_sub = dev.add_subparsers(dest="action", required=True)
    dev_up = dev_sub.add_parser("up", help="start (or reuse) the stack")
    dev_up.add_argument("--timeout", type=float, default=30.0)
    dev_up.add_argument(
        "services", nargs="*", help="MODULE:NAME of Services whose databases and topics to create"
    )
    dev_up.add_argument("--mode", choices=[m.value for m in Mode], default="orchestration")
    down = dev_sub.add_parser("down", help="stop what the stack started")
    down.add_argument("--wipe", action="store_true", help="also delete the database files")
    status = dev_sub.add_parser("status", help="what runs where")
    status.add_argument("--json", action="store_true")
    dev.set_defaults(func=_dev)

    run = sub.add_parser("run", help="run a service: sagakit run MODULE:NAME")
    run.add_argument("service", help="MODULE:NAME of a Service")
    run.add_argument("--port", type=int, help="HTTP port (default: SAGAKIT_PORT)")
    run.set_defaults(func=_run)

    up = sub.add_parser("up", help="start the dev stack and services; Ctrl-C stops them")
    up.add_argument("services", nargs="+", help="MODULE:NAME of Services (or of a dict of them)")
    up.add_argument("--mode", choices=[m.value for m in Mode], default="orchestration")
    up.add_argument("--port", type=int, default=8001, help="first HTTP port")
    up.add_argument("--keep-stack", action="store_true", help="leave PostgreSQL and Kafka up")
    up.add_argument(
        "--console-port", type=int, default=8000, help="the web console's port (0: no console)"
    )
    up.set_defaults(func=_up)

    dlq = sub.add_parser("dlq", help="list or replay dead-lettered messages")
    dlq_sub = dlq.add_subparsers(dest="action", required=True)
    dlq_list = dlq_sub.add_parser("list", help="what was parked, by whom, and why")
    dlq_replay = dlq_sub.add_parser("replay", help="publish a parked record again")
    dlq_replay.add_argument("--partition", type=int, required=True)
    dlq_replay.add_argument("--offset", type=int, required=True)
    dlq_replay.add_argument("--service", required=True, help="MODULE:NAME of the letter's service")
    dlq_replay.add_argument("--note", help="why it is replayed (kept with the replay)")
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
        p.add_argument("--service", required=True, help="MODULE:NAME of the service")
    ob.set_defaults(func=_outbox)

    sagas = sub.add_parser("sagas", help="see sagas, and operator actions on them")
    sagas_sub = sagas.add_subparsers(dest="action", required=True)
    listing = sagas_sub.add_parser("list", help="newest sagas first, with counts per status")
    listing.add_argument("--status", help="only sagas in this status")
    listing.add_argument("--limit", type=int, default=50)
    show = sagas_sub.add_parser("show", help="a saga's state, current step and timeline")
    show.add_argument("saga_id")
    parked = sagas_sub.add_parser("parked", help="sagas set aside as unprocessable, and why")
    parked.add_argument("--limit", type=int, default=100)
    acting = []
    for action in operator.ACTIONS.values():
        p = sagas_sub.add_parser(action.name, help=action.help)
        p.add_argument("saga_id")
        p.add_argument(
            "--note", required=True, help="why, or what was done by hand (kept in its log)"
        )
        acting.append(p)
    for p in (listing, show, parked, *acting):
        p.add_argument(
            "--service", required=True, help="MODULE:NAME of the service orchestrating them"
        )
    sagas.set_defaults(func=_sagas)

    console = sub.add_parser("console", help="the web console: watch sagas and act on them")
    console.add_argument(
        "services", nargs="+", help="MODULE:NAME of Services (or of a dict of them)"
    )
    console.add_argument("--host", default=os.environ.get("SAGAKIT_CONSOLE_HOST", "127.0.0.1"))
    console.add_argument(
        "--port", type=int, default=int(os.environ.get("SAGAKIT_CONSOLE_PORT", "8000"))
    )
    console.set_defaults(func=_console)

    diagram = sub.add_parser("diagram", help="print saga definitions as Mermaid flowcharts")
    diagram.add_argument("definition", help="MODULE:NAME of a SagaDefinition")
    diagram.set_defaults(func=_diagram)
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
    except Exception as exc:  # one line, not a traceback (SAGAKIT_DEBUG=1 shows it)
        if os.environ.get("SAGAKIT_DEBUG"):
            raise
        print(f"sagakit: {type(exc).__name__}: {redact(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
