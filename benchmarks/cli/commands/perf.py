"""Measure speed: rounds per executor vs plain training, threads, parallel jobs, DynaFed synthesis,
training-step options (channels_last, bf16, torch.compile); the one-shot GPU check and its bundle."""
from __future__ import annotations

import argparse
import itertools
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="fmnist", help="dataset whose rounds are timed")
    parser.add_argument("--widths", default="32", help="ConvNet widths to measure, comma-separated (the paper's is 128)")
    parser.add_argument("--scale", default="regime", choices=("regime", "paper"),
                        help="rounds as in suite cpu_regime (16 clients of ~712 images, 6 a round; the default takes "
                             "a couple of minutes) or as in the paper (80 clients of the whole set, 32 a round)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per setting (after one warm-up)")
    parser.add_argument("--threads", default=None,
                        help="thread counts to compare, comma-separated (default: 1,2; with --steps, 1)")
    parser.add_argument("--executor", default="sequential", choices=("all", "sequential", "vectorised"),
                        help="client executor(s) to time, on the CPU and on CUDA when present")
    parser.add_argument("--compare-jobs", action="store_true",
                        help="also time a 4-run sweep with --jobs 1 and 2 and 1 or 2 threads (several minutes more)")
    parser.add_argument("--dynafed", action="store_true", help="measure DynaFed synthesis instead")
    parser.add_argument("--settings", default=None,
                        help="DynaFed: classes x images-per-class cases, e.g. 10x15,100x15 (default: 10x15 on "
                             "CPU, where 100x15 at 20 steps needs tens of GiB; both on CUDA)")
    parser.add_argument("--syn-steps", type=int, default=20, help="DynaFed: unrolled steps per iteration")
    parser.add_argument("--iterations", type=int, default=2, help="DynaFed: timed outer iterations per case")
    parser.add_argument("--compare-pooling", action="store_true",
                        help="DynaFed: time synthesis with AvgPool2's hand-written gradient against plain autograd "
                             "(first width, first setting; one thread)")
    parser.add_argument("--norm-bound", action="store_true",
                        help="DynaFed: time synthesis with and without the ConvNet's instance norms, the most a "
                             "faster norm could save (first width, first setting; one thread)")
    parser.add_argument("--steps", action="store_true",
                        help="measure one training step's options (eager, channels_last, bf16, torch.compile) "
                             "on the CPU instead")
    parser.add_argument("--step-repeats", type=int, default=20, help="steps: timed steps per variant")
    parser.add_argument("--portability", action="store_true",
                        help="final accuracy of one suite cell per algorithm under other CPU kernel sets "
                             "(ATEN_CPU_CAPABILITY) beside the spread over seeds")
    parser.add_argument("--suite", default="quick", help="portability: the suite whose cells are run")
    parser.add_argument("--alpha", type=float, default=0.04, help="portability: the cell's partition.alpha")
    parser.add_argument("--capabilities", default="default",
                        help="portability: kernel sets to compare with the machine's own (default, avx2, ...)")
    parser.add_argument("--seeds", default="1,2", help="portability: seeds besides 0 for the spread")
    parser.add_argument("--algorithms", default=None, help="portability: algorithms (default: the suite's)")
    parser.add_argument("--gpu-check", metavar="OUT", default=None,
                        help="the GPU check (issue G): executors and the paper-setting FedAvg/DynaFed runs, written "
                             "to the folder OUT; see benchmarks/perf/gpu_check.py")
    parser.add_argument("--gpu-scale", default="full", choices=("full", "tiny"),
                        help="GPU check: the issue's setting, or a tiny one that rehearses it on any device")
    parser.add_argument("--budget-seconds", type=float, default=420.0,
                        help="GPU check: time for the whole check; the paper runs get as many rounds as fit")
    parser.add_argument("--device", default=None, help="GPU check: cpu, cuda, cuda:N (default: cuda if available)")
    parser.add_argument("--gpu-bundle", metavar="DIR", default=None,
                        help="fill DIR (git-ignored, e.g. .gpu) with what the GPU machine lacks (Fashion-MNIST, the "
                             "git revision), check what travels fits, and print the device command")
    parser.add_argument("--data-dir", help="data directory (default: $HETBENCH_DATA or data/)")


def run(args) -> int:
    if args.gpu_bundle:
        from pathlib import Path
        from benchmarks.perf.gpu_check import TRAVEL_LIMIT_MIB, device_command, make_bundle
        size = make_bundle(Path(args.gpu_bundle), args.data_dir)
        print(f"{size['folder']}: {size['carried_mib']:.1f} MiB carried + {size['tree_mib']:.1f} MiB of the checkout = "
              f"{size['total_mib']:.1f} MiB to send (limit {TRAVEL_LIMIT_MIB} MiB)")
        if not size["fits"]:
            print(f"error: --gpu-bundle: {size['total_mib']:.1f} MiB would travel, over the {TRAVEL_LIMIT_MIB} MiB limit; ignore "
                  "or remove untracked files", file=sys.stderr)
            return 2
        print(f"device run: carry [\"{args.gpu_bundle}\"], timeout_s 570, command:\n{device_command(args.gpu_bundle, args.budget_seconds)}")
        return 0
    if args.gpu_check:
        from pathlib import Path
        from benchmarks.perf.gpu_check import gpu_check
        data = gpu_check(Path(args.gpu_check), args.gpu_scale, args.device, args.data_dir, args.budget_seconds)
        print((Path(args.gpu_check) / "summary.md").read_text())
        return 0 if (data.get("equality") or {}).get("equal") else 1  # None when the comparison failed
    if args.portability:
        import torch
        from benchmarks.perf.portability import format_rows, measure
        capabilities = tuple(c for c in args.capabilities.split(",") if c)
        rows = measure(args.suite, args.alpha, capabilities, tuple(int(s) for s in args.seeds.split(",") if s),
                       tuple(args.algorithms.split(",")) if args.algorithms else None)
        print(f"final test accuracy (%), suite {args.suite}, alpha {args.alpha}, seed 0 under each kernel set; "
              f"seed std over seeds 0,{args.seeds} under the machine's own")
        print("\n".join(format_rows(rows, capabilities, torch.backends.cpu.get_cpu_capability())))
        return 0
    if args.steps:
        from benchmarks.perf.steps import format_table, measure_steps
        cells = itertools.product(args.widths.split(","), (args.threads or "1").split(","))
        for index, (width, n_threads) in enumerate(cells):
            lines = format_table(measure_steps(args.dataset, int(width), int(n_threads), args.step_repeats))
            print("\n".join(lines[1:] if index else lines), flush=True)  # one table: header once, rows as they come
        return 0
    if args.dynafed:
        import torch
        from benchmarks.perf.dynafed import main as dynafed_main
        default = "10x15,100x15" if torch.cuda.is_available() else "10x15"
        settings = tuple(tuple(int(v) for v in case.split("x")) for case in (args.settings or default).split(","))
        if args.compare_pooling and args.norm_bound:
            from benchmarks.core.typed import ConfigError
            raise ConfigError("--compare-pooling, --norm-bound: one comparison a run; give one of them")
        if args.compare_pooling or args.norm_bound:
            from benchmarks.perf.dynafed import compare_pooling, norm_bound
            torch.set_num_threads(1)
            (classes, ipc), = settings[:1]
            compare = compare_pooling if args.compare_pooling else norm_bound
            compare(int(args.widths.split(",")[0]), classes, ipc, args.iterations, args.syn_steps)
            return 0
        dynafed_main(widths=tuple(int(w) for w in args.widths.split(",")), settings=settings,
                     iterations=args.iterations, syn_steps=args.syn_steps)
        return 0
    import torch

    from benchmarks.perf.executors import compare_jobs, measure_round_vs_plain

    widths = [int(w) for w in args.widths.split(",")]
    threads = [int(t) for t in (args.threads or "1,2").split(",")]
    executors = ("sequential", "vectorised") if args.executor == "all" else (args.executor,)
    devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    print(f"{'device':>6} {'executor':>10} {'width':>5} {'threads':>7} {'1st round s':>11} {'fed s/round':>11} "
          f"{'fed train s':>11} {'plain s':>8} {'ratio':>6} {'samples/s':>9} {'eval s':>7}")
    for device, width, n_threads, executor in itertools.product(devices, widths, threads, executors):
        r = measure_round_vs_plain(args.dataset, width, n_threads, args.rounds, args.data_dir, executor=executor,
                                   device=device, scale=args.scale)
        print(f"{device:>6} {executor:>10} {width:>5} {n_threads:>7} {r['first_round_seconds']:>11.2f} "
              f"{r['round_seconds']:>11.2f} {r['train_seconds']:>11.2f} {r['plain_seconds']:>8.2f} "
              f"{r['ratio']:>6.2f} {r['samples_per_second']:>9.0f} {r['eval_seconds']:>7.2f}", flush=True)
    if args.compare_jobs:
        for line in compare_jobs(args.data_dir):
            print(line)
    return 0
