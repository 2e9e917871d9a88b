"""Serving soak: ``wrk`` at concurrency 32 on the store path of ``trademl serve --workers 1``
for ``--minutes`` (10 by default), sampling the server's resident memory every few seconds.

The load runs in back-to-back chunks (``--chunk-s``) so that latency is seen over time, not
only summed; between chunks wrk reconnects (a few ms). Memory is the RSS of the server process
and its children, read from /proc. The baseline is the RSS after a warm-up chunk (the first
requests fill caches and the allocator's arenas); growth is (last - baseline) / baseline.
Issue 13's targets: p99 <= 50 ms at concurrency 32 and RSS growth < 5 % over 10 minutes.

Set-up as in ``bench/serve_bench.py`` (``--home`` reuses its trained home).

Run: .venv/bin/python bench/serve_soak.py [--minutes 10] [--chunk-s 60] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_bench import (  # the bench folder is not a package: found via sys.path
    PREDICT_PATH,
    WRK_SCRIPT,
    check_answers,
    free_port,
    prepare_home,
    start_trademl,
    stop,
    wait_http,
    write_bodies,
    wrk_load,
)

CONCURRENCY = 32
TARGET_P99_MS = 50.0
TARGET_RSS_GROWTH = 0.05


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children (uvicorn with one worker has none)."""
    total = 0
    for each in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # the thread ended between listing and reading
            continue
    return found


class Sampler(threading.Thread):
    """Samples the RSS of ``pid`` every ``interval_s`` seconds until stopped."""

    def __init__(self, pid: int, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()
        self._began = time.monotonic()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.monotonic() - self._began, rss_bytes(self.pid)))
            self._halt.wait(self.interval_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.samples.append((time.monotonic() - self._began, rss_bytes(self.pid)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--chunk-s", type=float, default=60.0, help="seconds per wrk run")
    parser.add_argument("--warmup-s", type=float, default=10.0)
    parser.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling interval")
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="reuse (or create) this home; remove it when trademl changed its pickled pipeline",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/serve_soak.json"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("the soak needs wrk on PATH (apt-get install wrk)")

    setup = prepare_home(args.home)
    folder = setup.home / "bench"
    bodies = write_bodies(setup, folder)
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT)
    port = free_port()
    server = start_trademl(setup, port)
    chunks: list[dict[str, Any]] = []
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", server)
        url = f"http://127.0.0.1:{port}{PREDICT_PATH}"
        check_answers(url, bodies.store)
        rss_ready = rss_bytes(server.pid)
        wrk_load(url, bodies.store, CONCURRENCY, args.warmup_s, script)
        sampler = Sampler(server.pid, args.sample_s)
        sampler.start()
        deadline = time.monotonic() + args.minutes * 60
        while (left := deadline - time.monotonic()) >= 1:
            chunk = wrk_load(url, bodies.store, CONCURRENCY, min(args.chunk_s, left), script)
            chunk["rss_mb"] = rss_bytes(server.pid) / 2**20
            chunks.append(chunk)
            print(
                f"{len(chunks):>3}: {chunk['rps']:.0f} req/s, p50 {chunk['p50_ms']:.2f} ms, "
                f"p99 {chunk['p99_ms']:.2f} ms, errors {chunk['errors']}, "
                f"RSS {chunk['rss_mb']:.1f} MB",
                file=sys.stderr,
                flush=True,
            )
        sampler.stop()
    finally:
        stop(server)

    samples = sampler.samples
    baseline, last = samples[0][1], samples[-1][1]
    peak = max(rss for _, rss in samples)
    growth = (last - baseline) / baseline
    requests = sum(c["requests"] for c in chunks)
    worst_p99 = max(c["p99_ms"] for c in chunks)
    errors = sum(c["errors"] for c in chunks)
    results = {
        "minutes": args.minutes,
        "concurrency": CONCURRENCY,
        "requests": requests,
        "errors": errors,
        "rps_mean": sum(c["rps"] for c in chunks) / len(chunks),
        "p99_ms_worst_chunk": worst_p99,
        "p99_ms_median_chunk": sorted(c["p99_ms"] for c in chunks)[len(chunks) // 2],
        "rss_mb": {
            "ready": rss_ready / 2**20,
            "baseline_after_warmup": baseline / 2**20,
            "peak": peak / 2**20,
            "last": last / 2**20,
        },
        "rss_growth": growth,
        "rss_samples": [(round(t, 1), rss) for t, rss in samples],
        "chunks": chunks,
        "cpus": len(os.sched_getaffinity(0)),
    }
    print(
        f"\nstore path, concurrency {CONCURRENCY}, {args.minutes:g} min, one worker: "
        f"{requests:,} requests, {errors} errors, {results['rps_mean']:.0f} req/s mean, "
        f"p99 {results['p99_ms_median_chunk']:.2f} ms (median chunk), {worst_p99:.2f} ms (worst)"
    )
    print(
        f"RSS: {rss_ready / 2**20:.1f} MB ready, {baseline / 2**20:.1f} MB after warm-up, "
        f"{peak / 2**20:.1f} MB peak, {last / 2**20:.1f} MB last: growth {growth:+.1%}"
    )
    print(f"{'met ' if worst_p99 <= TARGET_P99_MS else 'MISS'}  p99 <= {TARGET_P99_MS:.0f} ms")
    print(
        f"{'met ' if growth < TARGET_RSS_GROWTH else 'MISS'}  RSS growth < {TARGET_RSS_GROWTH:.0%}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
