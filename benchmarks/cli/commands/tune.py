"""Search an algorithm's declared hyperparameter ranges with Optuna, scored on validation accuracy."""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algorithm", required=True, help="registered algorithm name")
    parser.add_argument("--dataset", required=True, help="dataset name")
    parser.add_argument("--alpha", type=float, required=True, help="partition.alpha of the study")
    parser.add_argument("--trials", type=int, default=20,
                        help="trial budget; trials already in the study's storage count towards it")
    parser.add_argument("--base", default="quick", help="suite whose [base] config the trials start from")
    parser.add_argument("--rounds", type=int, help="rounds per trial (default: the base suite's)")
    parser.add_argument("--storage", help="journal:PATH (a journal file, e.g. on a file system several machines "
                                          "share) or a database URL (sqlite:///..., postgresql://...): every "
                                          "worker pointing at it joins one study (default: journal file "
                                          "<results>/tuning/<study>.journal, or <study>.db where one exists)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes running this study's trials at once (default 1)")
    parser.add_argument("--study", help="study name (default: <algorithm>_<dataset>_a<alpha>_<base>)")
    parser.add_argument("--pruner", default="median", choices=("median", "halving", "none"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of every trial; a searched key set here is not searched")
    parser.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler")
    parser.add_argument("--results", help="results root (default: $HETBENCH_RESULTS or results/)")
    parser.add_argument("--data-dir", help="data directory (default: $HETBENCH_DATA or data/)")
    parser.add_argument("--no-progress", action="store_true", help="no line per finished trial")


def run(args) -> int:
    import optuna

    from benchmarks.cli.kernels import ensure_kernels
    from benchmarks.experiments.config import config_from_dict
    from benchmarks.experiments.tune import OBJECTIVE, StudyRequest, base_config
    from benchmarks.experiments.tune_pool import tune_with_workers

    # Our own line per trial says what Optuna's log would, without a traceback for every diverged trial.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    req = StudyRequest(algorithm=args.algorithm, dataset=args.dataset, alpha=args.alpha, trials=args.trials,
                       base=args.base, rounds=args.rounds, storage=args.storage, study=args.study,
                       pruner=args.pruner, overrides=tuple(args.overrides), seed=args.seed, results=args.results)
    ensure_kernels([config_from_dict(base_config(req))], getattr(args, "as_program", False))
    outcome = tune_with_workers(req, args.workers, data_dir=args.data_dir, progress=not args.no_progress)
    print(f"trials: {outcome.trials_csv}")
    if outcome.best_toml is None:
        print(f"study {req.name}: no trial completed, so there is no best.toml")
        return 1
    best = outcome.best
    print(f"study {req.name}: best {OBJECTIVE} {best.value:.4f} (trial {best.number})")
    print(f"best: {outcome.best_toml}")
    return 0
