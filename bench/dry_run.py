"""Dry-run growth: a 10-row and a 10,000-row CSV planned by content_to_video (dry_run=True), in one process
after Prefect's start-up, so the difference is what the rows cost. Prints wall and CPU seconds of each,
the cost per extra row, and peak RSS. Target (issue 10): 9,990 more rows add at most 5 s (0.5 ms a row),
under 500 MB.

    .venv/bin/python -m bench.dry_run [--rows 10000] [--small 10] [--profile FILE]

--profile writes a cProfile of the big run (read it with `python -m pstats FILE`, or snakeviz).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import tempfile
import time
from pathlib import Path

from bench.common import peak_rss_mb, quiet_prefect_env, start_prefect_api, write_rows_csv


def write_rows(folder: Path, count: int) -> Path:
    text = "Row number {i} of the dry-run benchmark: one short line to plan."
    return write_rows_csv(folder / f"rows-{count}.csv", count, text)


def dry_run(content: Path, out: Path, profile: Path | None = None) -> tuple[float, float, dict]:
    """(wall s, CPU s, the summary's counts) of one dry run."""
    from flows.content_to_video import content_to_video

    profiler = cProfile.Profile() if profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    summary = asyncio.run(content_to_video([str(content)], output=str(out), dry_run=True))
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    return time.perf_counter() - wall, time.process_time() - cpu, summary.counts


def main() -> None:
    quiet_prefect_env()
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        startup = start_prefect_api()
        small, big = write_rows(folder, args.small), write_rows(folder, args.rows)
        dry_run(small, folder / "warm")  # imports and first-run caches, apart
        small_wall, small_cpu, small_counts = dry_run(small, folder / "small")
        big_wall, big_cpu, big_counts = dry_run(big, folder / "big", args.profile)
    extra = args.rows - args.small
    print(f"prefect start-up (apart):  {startup:.2f} s")
    print(f"{args.small:>6} rows:  {small_wall:6.2f} s wall  {small_cpu:6.2f} s CPU   {small_counts}")
    print(f"{args.rows:>6} rows:  {big_wall:6.2f} s wall  {big_cpu:6.2f} s CPU   {big_counts}")
    print(f"{extra} more rows add {big_wall - small_wall:.2f} s wall ({(big_wall - small_wall) / extra * 1000:.2f} ms "
          f"a row; target <= 5 s, 0.5 ms), {(big_cpu - small_cpu) / extra * 1000:.2f} ms CPU a row")
    print(f"peak RSS:  {peak_rss_mb():.0f} MB (target < 500)")


if __name__ == "__main__":
    main()
