"""Benchmarking of deployed models: timing loop, memory, environment, video frames. No torch unless torch runs."""

from edgekd.bench.bench import (DEFAULT_BATCH_SIZES, bench_runtime, format_bench, run_bench, run_bench_isolated,
                                time_batch, time_frames)

__all__ = ["DEFAULT_BATCH_SIZES", "bench_runtime", "format_bench", "run_bench", "run_bench_isolated", "time_batch",
           "time_frames"]
