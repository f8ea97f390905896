"""Load an AppCallback server with OnTopicEvent calls from asyncio gRPC clients; print JSON results.

python bench/grpc_load.py --target 127.0.0.1:PORT --duration 10 --channels 8 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time

import grpc
from dapr.proto import appcallback_service_v1, appcallback_v1

SUCCESS = appcallback_v1.TopicEventResponse.SUCCESS


def request(i: int) -> appcallback_v1.TopicEventRequest:
    return appcallback_v1.TopicEventRequest(
        id=f"bench-{i}", source="bench", type="com.example.bench", spec_version="1.0",
        data_content_type="application/json", data=b'{"n": 1}', topic="bench", pubsub_name="pubsub",
    )  # fmt: skip


async def load(target: str, duration: float, channels: int, concurrency: int) -> dict[str, object]:
    chans = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
             for _ in range(channels)]  # fmt: skip
    stubs = [appcallback_service_v1.AppCallbackStub(c) for c in chans]
    for c in chans:
        await asyncio.wait_for(c.channel_ready(), 10)
    for s in stubs:  # warm up every connection
        await s.OnTopicEvent(request(0))
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    stop = time.perf_counter() + duration

    async def worker(k: int) -> None:
        nonlocal errors
        stub = stubs[k % len(stubs)]
        i = 0
        req = request(k)
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                resp = await stub.OnTopicEvent(req)
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - started
    for c in chans:
        await c.close()
    latencies.sort()
    n = len(latencies)
    return {
        "calls": n,
        "errors": errors,
        "success": statuses.get(SUCCESS, 0),
        "elapsed": elapsed,
        "p50_ms": latencies[n // 2] * 1000 if n else None,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else None,
    }


def one(args: tuple[str, float, int, int]) -> dict[str, object]:
    return asyncio.run(load(*args))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    a = parser.parse_args()
    per = (a.target, a.duration, max(1, a.channels // a.processes), max(1, a.concurrency // a.processes))
    if a.processes == 1:
        parts = [one(per)]
    else:
        with multiprocessing.get_context("spawn").Pool(a.processes) as pool:
            parts = pool.map(one, [per] * a.processes)
    calls = sum(int(p["calls"]) for p in parts)  # type: ignore[call-overload]
    elapsed = max(float(p["elapsed"]) for p in parts)  # type: ignore[arg-type]
    print(json.dumps({
        "calls": calls,
        "errors": sum(int(p["errors"]) for p in parts),  # type: ignore[call-overload]
        "success": sum(int(p["success"]) for p in parts),  # type: ignore[call-overload]
        "rps": calls / elapsed if elapsed else 0.0,
        "p50_ms": max(float(p["p50_ms"] or 0) for p in parts),  # type: ignore[arg-type]
        "p99_ms": max(float(p["p99_ms"] or 0) for p in parts),  # type: ignore[arg-type]
    }))  # fmt: skip


if __name__ == "__main__":
    main()
