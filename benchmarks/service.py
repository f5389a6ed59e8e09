"""Load and fault benchmark of `custseq serve` on loopback: throughput and latency, bad requests, a killed worker.

    python benchmarks/service.py --model demo-output/model [--seconds 6] [--max-requests 400]

For 1 and 2 workers: 1-customer and 100-customer requests at 1, 16 and 64 concurrent clients (each cell sends for
--seconds, at most --max-requests, then waits for the requests in flight); a stream with 10% bad requests; and,
with 2 workers, one worker killed (SIGKILL) mid-run: the other keeps serving and uvicorn starts a new one.
Only 127.0.0.1; the load generator shares the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from custseq.datasets import load_cdnow

KEY = "bench-key"
AS_OF = "1998-06-30"
BAD_BODIES = [
    {"as_of": AS_OF, "customers": []},
    {"as_of": AS_OF, "customers": [{"customer_id": "x", "transactions": [{"ts": "yesterday", "amount": 1.0}]}]},
    {"as_of": AS_OF, "customers": [{"customer_id": "x", "transactions": [{"ts": "1997-01-01", "amount": "NaN"}]}]},
    {"as_of": "1997-01-01", "customers": [{"customer_id": "x", "transactions": [{"ts": "1998-01-01", "amount": 1.0}]}]},
]


def bodies(n_customers: int, count: int) -> list[dict]:
    """``count`` request bodies of ``n_customers`` real CDNOW customers each (different customers per body)."""
    rows = load_cdnow().rename(columns={"date": "ts", "dollar_value": "amount", "number_of_cds": "quantity"})
    groups = {cid: g for cid, g in rows.groupby("customer_id", sort=True)}
    ids = list(groups)[5000:]
    out = []
    for k in range(count):
        chosen = ids[k * n_customers : (k + 1) * n_customers]
        out.append({"as_of": AS_OF, "customers": [
            {"customer_id": cid, "transactions": [
                {"ts": ts.isoformat(), "amount": float(a), "quantity": float(q)}
                for ts, a, q in zip(groups[cid]["ts"], groups[cid]["amount"], groups[cid]["quantity"], strict=True)]}
            for cid in chosen]})  # fmt: skip
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: Path, workers: int, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CUSTSEQ_API_KEYS": KEY, "CUSTSEQ_REQUEST_TIMEOUT_S": "300"}
    cmd = [sys.executable, "-m", "custseq.cli", "serve", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200 and (
                workers == 1 or len(worker_pids(proc)) >= workers
            ):
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    raise SystemExit("the server did not become ready in 180 s")


def worker_pids(proc: subprocess.Popen[bytes]) -> list[int]:
    out = subprocess.run(["ps", "--ppid", str(proc.pid), "-o", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "spawn_main" in line]


async def load(port: int, good: list[dict], clients: int, seconds: float, max_requests: int,
               bad_share: float = 0.0, during: asyncio.Future | None = None) -> dict:  # fmt: skip
    """Send requests from ``clients`` concurrent clients; latency and status of each."""
    results: list[tuple[bool, int, float]] = []  # (valid, status, seconds)
    sent = 0
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY}, limits=limits,
                                 timeout=300) as client:  # fmt: skip

        async def one_client(c: int) -> None:
            nonlocal sent
            while time.monotonic() < stop_at and sent < max_requests:
                k = sent
                sent += 1
                valid = not (bad_share and k % round(1 / bad_share) == 0)
                body = good[k % len(good)] if valid else BAD_BODIES[k % len(BAD_BODIES)]
                t = time.perf_counter()
                try:
                    status = (await client.post("/score", json=body)).status_code
                except httpx.HTTPError:
                    status = 0  # connection reset: a worker died with the request in flight
                results.append((valid, status, time.perf_counter() - t))

        started = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in range(clients)))
        wall = time.perf_counter() - started
    lat = np.array([s for v, st, s in results if v and st == 200]) * 1000
    return {
        "requests": len(results), "wall_s": wall,
        "ok": int(sum(v and st == 200 for v, st, _ in results)),
        "valid_errors": int(sum(v and st != 200 for v, st, _ in results)),
        "bad_4xx": int(sum((not v) and 400 <= st < 500 for v, st, _ in results)),
        "bad_total": int(sum(not v for v, _, _ in results)),
        "p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p95": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
        "p99": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("demo-output/model"))
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--max-requests", type=int, default=400)
    args = parser.parse_args()
    singles, batches = bodies(1, 400), bodies(100, 20)
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}")
    print("| workers | customers/request | clients | requests | ok | valid errors | req/s | customers/s | "
          "p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for workers in (1, 2):
        port = free_port()
        server = start_server(args.model, workers, port)
        try:
            for size, good in ((1, singles), (100, batches)):
                for clients in (1, 16, 64):
                    r = asyncio.run(load(port, good, clients, args.seconds, args.max_requests))
                    rps = r["ok"] / r["wall_s"]
                    print(f"| {workers} | {size} | {clients} | {r['requests']} | {r['ok']} | {r['valid_errors']} | "
                          f"{rps:.1f} | {rps * size:.0f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} |",
                          flush=True)  # fmt: skip
            r = asyncio.run(load(port, singles, 16, args.seconds, args.max_requests, bad_share=0.1))
            print(f"\n{workers} worker(s), 10% bad requests, 16 clients: {r['requests']} requests, valid ok {r['ok']}, "
                  f"valid errors {r['valid_errors']}, bad answered 4xx {r['bad_4xx']}/{r['bad_total']}, "
                  f"p99 {r['p99']:.0f} ms\n", flush=True)  # fmt: skip
            if workers == 2:
                kill_run(server, port, singles, args)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
    print(f"load average after: {os.getloadavg()}")


def kill_run(server: subprocess.Popen[bytes], port: int, singles: list[dict], args: argparse.Namespace) -> None:
    """Kill one of two workers mid-run: the other keeps answering; uvicorn starts a new worker."""
    before = worker_pids(server)

    async def run() -> dict:
        task = asyncio.create_task(load(port, singles, 16, args.seconds * 2, args.max_requests))
        await asyncio.sleep(args.seconds / 2)
        os.kill(before[0], signal.SIGKILL)
        return await task

    r = asyncio.run(run())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (set(worker_pids(server)) - set(before)):
        time.sleep(1)
    after = worker_pids(server)
    restarted = bool(set(after) - set(before))
    print(f"worker {before[0]} killed mid-run (16 clients): {r['requests']} requests, ok {r['ok']}, failed "
          f"{r['valid_errors']} (in flight on the killed worker), p99 {r['p99']:.0f} ms; workers before {before}, "
          f"after {after}: {'restarted' if restarted else 'NOT restarted'}")  # fmt: skip


if __name__ == "__main__":
    main()
