"""The shop's commands: ``python -m examples.shop demo|bench|up|check``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from examples.shop.saga import Flow
from examples.shop.system import HOSTS, services
from sagakit import Mode, SagakitError, Settings
from sagakit.dev import DevStack, Fleet

MODES = [m.value for m in Mode]
FLOWS = [f.value for f in Flow]


def _services(args: argparse.Namespace) -> dict[str, str]:
    if args.orchestrator_in != "orchestrator" and args.mode != Mode.ORCHESTRATION:
        raise SagakitError(
            "--orchestrator-in order: orchestration only (choreographed, the participants"
            " drive the sagas and the orchestrator service tracks them)"
        )
    return dict(services(args.orchestrator_in))


def _ports(base: int) -> dict[str, int]:
    names = ("order", "inventory", "payment", "orchestrator")
    return {name: base + i for i, name in enumerate(names)}


def _demo(args: argparse.Namespace) -> int:
    from examples.shop.loadgen.demo import run_demo

    result = asyncio.run(
        run_demo(
            Mode(args.mode),
            Flow(args.flow),
            args.orders,
            rate=args.rate,
            keep_running=args.keep_running,
            ports=_ports(args.port_base),
            services=_services(args),
        )
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result.to_json(), out, indent=2)
    return 0 if result.ok else 1


def _bench(args: argparse.Namespace) -> int:
    from rich.console import Console

    from examples.shop.loadgen.bench import run_bench
    from examples.shop.loadgen.report import render_bench

    result = asyncio.run(
        run_bench(
            Mode(args.mode),
            Flow(args.flow),
            duration=args.duration,
            warmup=args.warmup,
            rate=args.rate,
            concurrency=args.concurrency,
            failures=args.failures,
            ports=_ports(args.port_base),
            idle=args.idle,
            services=_services(args),
        )
    )
    render_bench(result, Console())
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result.to_json(), out, indent=2)
    return 0 if result.check_clean and (result.completed > 0 or args.idle) else 1


def _up(args: argparse.Namespace) -> int:
    from sagakit.dev import run_until_stopped

    settings = Settings.from_env()
    info = DevStack(settings).up()
    fleet = Fleet(
        info,
        settings,
        _services(args),
        _ports(args.port_base),
        mode=Mode(args.mode),
        log_dir=settings.home / "logs",
        env={"SHOP_FLOW": args.flow},
        console_port=(args.port_base - 1 if args.console_port is None else args.console_port)
        or None,
    )
    asyncio.run(fleet.start())
    return run_until_stopped(fleet, keep_stack=args.keep_stack)


def _check(args: argparse.Namespace) -> int:
    from examples.shop.audit import audit

    settings = Settings.from_env()
    server = settings.database_url
    if server is None:
        info = DevStack(settings).status()
        if info is None:
            raise SagakitError("no PostgreSQL configured and no dev stack running")
        server = info.database_url
    report = asyncio.run(audit(server, settings))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.orders.items())) or "no orders"
    print(f"orders: {counts}")
    for line in report.violations:
        print(f"VIOLATION {line}")
    print("invariants hold" if report.clean else f"{len(report.violations)} violation(s)")
    return 0 if report.clean else 1


HOST_HELP = "who orchestrates the sagas: the orchestrator service, or the order service itself"
FLOW_HELP = "reserve-first (seed 000: reserve, pay, sell) or pay-first (seed 001: pay, sell)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m examples.shop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="start everything and run orders through every path")
    demo.add_argument("--mode", choices=MODES, default="orchestration")
    demo.add_argument("--flow", choices=FLOWS, default="reserve-first", help=FLOW_HELP)
    demo.add_argument("--orchestrator-in", choices=HOSTS, default="orchestrator", help=HOST_HELP)
    demo.add_argument("--orders", type=int, default=300)
    demo.add_argument("--rate", type=float, default=60.0, help="orders per second")
    demo.add_argument("--keep-running", action="store_true", help="keep everything up until Ctrl-C")
    demo.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    demo.add_argument("--port-base", type=int, default=8001, help="services get 4 ports from it")
    demo.set_defaults(func=_demo)

    bench = sub.add_parser("bench", help="measure throughput (closed loop) or latency (--rate)")
    bench.add_argument("--mode", choices=MODES, default="orchestration")
    bench.add_argument("--flow", choices=FLOWS, default="reserve-first", help=FLOW_HELP)
    bench.add_argument("--orchestrator-in", choices=HOSTS, default="orchestrator", help=HOST_HELP)
    bench.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    bench.add_argument("--warmup", type=float, default=5.0, help="seconds not counted")
    bench.add_argument("--rate", type=float, help="open loop at this many orders/s")
    bench.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    bench.add_argument("--failures", type=float, default=0.1, help="share of failing orders")
    bench.add_argument(
        "--idle", action="store_true", help="place no orders: what the stack costs at rest"
    )
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.add_argument("--port-base", type=int, default=8001, help="services get 4 ports from it")
    bench.set_defaults(func=_bench)

    up = sub.add_parser("up", help="start the stack and the shop's services; Ctrl-C stops them")
    up.add_argument("--mode", choices=MODES, default="orchestration")
    up.add_argument("--flow", choices=FLOWS, default="reserve-first", help=FLOW_HELP)
    up.add_argument("--orchestrator-in", choices=HOSTS, default="orchestrator", help=HOST_HELP)
    up.add_argument(
        "--port-base",
        type=int,
        default=8001,
        help="services get 4 ports from it; the console the one before",
    )
    up.add_argument("--keep-stack", action="store_true", help="leave PostgreSQL and Kafka up")
    up.add_argument(
        "--console-port", type=int, help="the console's port (default: the one before; 0: none)"
    )
    up.set_defaults(func=_up)

    check = sub.add_parser("check", help="audit the saga invariants across the shop's databases")
    check.set_defaults(func=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SagakitError as exc:
        print(f"shop: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
