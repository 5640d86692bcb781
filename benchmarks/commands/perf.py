"""Measure speed: federated rounds vs plain training, threads, parallel jobs, DynaFed synthesis."""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="fmnist")
    parser.add_argument("--widths", default="32,128", help="ConvNet widths to measure, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per setting (after one warm-up)")
    parser.add_argument("--threads", default="1,2", help="thread counts to compare, comma-separated")
    parser.add_argument("--skip-jobs", action="store_true", help="skip the sweep --jobs 1 vs 2 comparison")
    parser.add_argument("--dynafed", action="store_true", help="measure DynaFed synthesis instead")
    parser.add_argument("--data-dir", help="data directory (default: $HETBENCH_DATA or data/)")


def run(args) -> int:
    if args.dynafed:
        from benchmarks.perf_dynafed import main as dynafed_main
        dynafed_main(widths=tuple(int(w) for w in args.widths.split(",")))
        return 0
    from benchmarks.perf import compare_jobs, measure_round_vs_plain

    widths = [int(w) for w in args.widths.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    print(f"{'width':>5} {'threads':>7} {'fed s/round':>11} {'fed train s':>11} {'plain s':>8} "
          f"{'ratio':>6} {'samples/s':>9} {'eval s':>7}")
    for width in widths:
        for n_threads in threads:
            r = measure_round_vs_plain(args.dataset, width, n_threads, args.rounds, args.data_dir)
            print(f"{width:>5} {n_threads:>7} {r['round_seconds']:>11.2f} {r['train_seconds']:>11.2f} "
                  f"{r['plain_seconds']:>8.2f} {r['ratio']:>6.2f} {r['samples_per_second']:>9.0f} "
                  f"{r['eval_seconds']:>7.2f}")
    if not args.skip_jobs:
        for line in compare_jobs(args.data_dir):
            print(line)
    return 0
