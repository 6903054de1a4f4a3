"""Measure the two asyncio Kafka clients on the broker sagakit runs against.

    .venv/bin/pip install confluent-kafka
    .venv/bin/python benchmarks/kafka_clients.py [--bootstrap HOST:PORT]

Without --bootstrap it starts the dev stack (embedded broker) and stops it afterwards.
Reports, per client: keyed produce throughput (1 KB JSON, acks=all, 3 partitions, headers
on every record) and produce->consume latency of single messages (p50/p99).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

from sagakit.config import Settings
from sagakit.devstack import DevStack
from sagakit.messaging.transport.kafka import ensure_topics

N = 20_000
PAYLOAD = json.dumps({"pad": "x" * 1000}).encode()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


async def aiokafka_bench(bootstrap: str) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = f"bench-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], 3)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    began = time.perf_counter()
    futures = [
        await producer.send(topic, PAYLOAD, key=str(i % 100).encode(), headers=[("h", b"v")])
        for i in range(N)
    ]
    await asyncio.gather(*futures)
    throughput = N / (time.perf_counter() - began)

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    seen = 0
    while seen < N:
        for recs in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
            seen += len(recs)
    latencies = []
    for i in range(200):
        sent = time.perf_counter()
        await (await producer.send(topic, PAYLOAD, key=b"lat", headers=[("h", b"v")]))
        got = False
        while not got:
            got = any((await consumer.getmany(timeout_ms=200)).values())
        latencies.append((time.perf_counter() - sent) * 1000)
        del i
    await consumer.stop()
    await producer.stop()
    return {"produce_msg_s": throughput, "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99)}


async def confluent_bench(bootstrap: str) -> dict[str, float]:
    from confluent_kafka import Consumer, Producer

    topic = f"bench-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], 3)
    loop = asyncio.get_running_loop()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 2,
            "partitioner": "murmur2_random",
        }
    )
    pending: list[asyncio.Future[None]] = []

    def delivered(fut: asyncio.Future[None]):  # type: ignore[no-untyped-def]
        def callback(err, msg):  # type: ignore[no-untyped-def]
            loop.call_soon_threadsafe(
                fut.set_exception if err else fut.set_result, err if err else None
            )

        return callback

    async def poller(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await loop.run_in_executor(None, producer.poll, 0.01)

    stop = asyncio.Event()
    poll_task = asyncio.create_task(poller(stop))
    began = time.perf_counter()
    for i in range(N):
        fut: asyncio.Future[None] = loop.create_future()
        pending.append(fut)
        while True:
            try:
                producer.produce(
                    topic,
                    PAYLOAD,
                    key=str(i % 100).encode(),
                    headers=[("h", b"v")],
                    on_delivery=delivered(fut),
                )
                break
            except BufferError:
                await asyncio.sleep(0.001)
    await asyncio.gather(*pending)
    throughput = N / (time.perf_counter() - began)

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 20,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    while seen < N:
        seen += len(await loop.run_in_executor(None, consumer.consume, 5000, 0.2))
    latencies = []
    for _ in range(200):
        fut = loop.create_future()
        sent = time.perf_counter()
        producer.produce(
            topic, PAYLOAD, key=b"lat", headers=[("h", b"v")], on_delivery=delivered(fut)
        )
        await fut
        got: list[object] = []
        while not got:
            got = await loop.run_in_executor(None, consumer.consume, 1, 0.2)
        latencies.append((time.perf_counter() - sent) * 1000)
    stop.set()
    await poll_task
    consumer.close()
    return {"produce_msg_s": throughput, "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    stack = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        stack = DevStack(Settings(home=Settings.from_env().home / "bench-clients"))
        bootstrap = stack.up().kafka_bootstrap
    try:
        for name, bench in (("aiokafka", aiokafka_bench), ("confluent-kafka", confluent_bench)):
            result = asyncio.run(bench(bootstrap))
            print(f"{name:16} " + "  ".join(f"{k}={v:,.1f}" for k, v in result.items()))
    finally:
        if stack is not None:
            stack.down(wipe=True)


if __name__ == "__main__":
    main()
