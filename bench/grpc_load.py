"""Load an AppCallback server with OnTopicEvent calls from asyncio gRPC clients; print JSON results.

    .venv/bin/python bench/grpc_load.py --target 127.0.0.1:PORT --duration 10 --warmup 2 \\
        --channels 8 --concurrency 64 [--processes 1]

``--processes`` client processes (spawned) share ``--channels`` channels (each its own TCP
connection, so that a server's SO_REUSEPORT workers get a share each) and ``--concurrency``
calls in flight, spread round-robin over the channels. Every process first checks the answer on
each channel (TopicEventResponse status SUCCESS), loads for ``--warmup`` seconds unmeasured, waits
for the others, then loads for ``--duration`` seconds.

The client is kept cheap, because on a small machine it shares the cores with the server: the
request is serialized once and sent as bytes, the answers are compared as bytes to the SUCCESS
answer (checked decoded at the start), and latencies are appended to a list.

Output on stdout, one line each: ``measure-start`` when every process has started its measured
load, ``measure-end`` when all have finished, then one JSON object: calls, errors, wrong answers,
elapsed, calls/s, latency percentiles (ms, over all processes' calls) and the client processes' own
CPU time (all threads) during the measured load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from typing import Any

METHOD = "/dapr.proto.runtime.v1.AppCallback/OnTopicEvent"
BARRIER_TIMEOUT = 120.0


def request_bytes() -> bytes:
    from dapr.proto import appcallback_v1

    return appcallback_v1.TopicEventRequest(
        id="bench-1", source="bench", type="com.example.bench", spec_version="1.0",
        data_content_type="application/json", data=b'{"n": 1}', topic="bench", pubsub_name="pubsub",
    ).SerializeToString()  # fmt: skip


def success_bytes() -> bytes:
    from dapr.proto import appcallback_v1

    return appcallback_v1.TopicEventResponse(
        status=appcallback_v1.TopicEventResponse.SUCCESS
    ).SerializeToString()


async def load(
    target: str, duration: float, warmup: float, channels: int, concurrency: int, barrier: Any
) -> dict[str, Any]:
    import grpc
    from dapr.proto import appcallback_v1

    payload, expected = request_bytes(), success_bytes()
    chans = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels)
    ]
    # No serializers: bytes in, bytes out.
    calls = [c.unary_unary(METHOD) for c in chans]
    for c in chans:
        await asyncio.wait_for(c.channel_ready(), 20)
    for call in calls:  # every connection answers SUCCESS
        answer = appcallback_v1.TopicEventResponse.FromString(await call(payload, timeout=20))
        if answer.status != appcallback_v1.TopicEventResponse.SUCCESS:
            raise RuntimeError(f"unexpected answer: {answer}")

    errors = wrong = 0
    latencies: list[float] = []

    async def worker(k: int, stop: float, record: bool) -> None:
        nonlocal errors, wrong
        call = calls[k % len(calls)]
        clock = time.perf_counter
        append = latencies.append
        while True:
            t0 = clock()
            if t0 >= stop:
                return
            try:
                answer = await call(payload)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            if record:
                append(clock() - t0)
            if answer != expected:
                wrong += 1

    if warmup > 0:
        stop = time.perf_counter() + warmup
        await asyncio.gather(*(worker(k, stop, False) for k in range(concurrency)))
    errors = wrong = 0
    barrier.wait(BARRIER_TIMEOUT)  # everyone warmed up: start together
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(k, t0 + duration, True) for k in range(concurrency)))
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    barrier.wait(BARRIER_TIMEOUT)
    for c in chans:
        await c.close()
    return {
        "calls": len(latencies),
        "errors": errors,
        "wrong": wrong,
        "elapsed": elapsed,
        "cpu_s": cpu,
        "latencies": latencies,
    }


def child(args: tuple[Any, ...], barrier: Any, results: Any) -> None:
    try:
        results.put(asyncio.run(load(*args, barrier)))
    except BaseException as exc:
        barrier.abort()
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port of the AppCallback server")
    parser.add_argument("--duration", type=float, default=10, help="measured seconds (default 10)")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds first (default 2)")
    parser.add_argument("--channels", type=int, default=8, help="gRPC channels in all (default 8)")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight in all (default 64)")
    parser.add_argument("--processes", type=int, default=1, help="client processes (default 1)")
    a = parser.parse_args(argv)
    n = max(1, a.processes)
    chans, conc = split(max(a.channels, n), n), split(max(a.concurrency, n), n)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=child,
            args=((a.target, a.duration, a.warmup, chans[i], conc[i]), barrier, results),
            daemon=True,
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    try:
        barrier.wait(BARRIER_TIMEOUT + a.warmup)
        print("measure-start", flush=True)
        barrier.wait(BARRIER_TIMEOUT + a.duration)
        print("measure-end", flush=True)
    except Exception:
        pass  # a child failed: its error is in the results
    parts = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    failed = [p["error"] for p in parts if "error" in p]
    if failed:
        print(json.dumps({"error": failed}), flush=True)
        return 1
    lat = sorted(x for p in parts for x in p["latencies"])
    calls = len(lat)
    elapsed = max(p["elapsed"] for p in parts)

    def pct(q: float) -> float | None:
        return round(lat[min(calls - 1, int(calls * q))] * 1000, 3) if calls else None

    print(
        json.dumps(
            {
                "calls": calls,
                "errors": sum(p["errors"] for p in parts),
                "wrong": sum(p["wrong"] for p in parts),
                "elapsed_s": round(elapsed, 3),
                "rps": round(calls / elapsed, 1) if elapsed else 0.0,
                "p50_ms": pct(0.50),
                "p90_ms": pct(0.90),
                "p99_ms": pct(0.99),
                "max_ms": round(lat[-1] * 1000, 3) if calls else None,
                "client_cpu_s": round(sum(p["cpu_s"] for p in parts), 3),
                "processes": n,
                "channels": chans,
                "concurrency": conc,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
