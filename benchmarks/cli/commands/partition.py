"""`hetbench partition`: the clients a run would get, before spending compute on it.

The config is read exactly as `hetbench run` reads it (`--base`, `--config`, `--set`, `--set-file`), and
the split comes from the runner's own code path (`engine.federation.plan_split`: same seeds, same
`train_subset`, same server splits and defaults), so what this prints is what a run of that config
trains on. It prints a short human summary and warns about clients too small for the local regime;
`--json` prints the full statistics instead, and `--plot` adds the client x class heatmap.
"""
from __future__ import annotations

import argparse
import json

# Shorthand flags, each the `--set` of one setting (kept so that the common questions need no dotted names).
SHORTHANDS = {"dataset": "dataset.name", "scheme": "partition.scheme", "alpha": "partition.alpha",
              "clients": "partition.clients", "seed": "seed"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", metavar="SUITE", help="start from a suite's [base] settings, as `run --base`")
    parser.add_argument("--config", help="a run config TOML file, as `run --config`")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, as in `run` (repeatable)")
    parser.add_argument("--set-file", dest="set_files", action="append", default=[], metavar="FILE")
    parser.add_argument("--dataset", help="shorthand for --set dataset.name=...")
    parser.add_argument("--scheme", help="shorthand for --set partition.scheme=...")
    parser.add_argument("--alpha", help="shorthand for --set partition.alpha=...")
    parser.add_argument("--clients", help="shorthand for --set partition.clients=...")
    parser.add_argument("--seed", help="shorthand for --set seed=... (the partition follows the run seed)")
    parser.add_argument("--data-dir", help="data directory (default: $HETBENCH_DATA or data/)")
    parser.add_argument("--json", action="store_true", help="print the full statistics as one JSON object")
    parser.add_argument("--plot", default=None, metavar="FILE", help=".png or .svg heatmap")


def run(args) -> int:
    # Imported here so that `configure` (and --help) never pays for loading torch.
    from benchmarks.data.datasets import load_dataset
    from benchmarks.data.partition import plot_partition
    from benchmarks.engine.federation import plan_split
    from benchmarks.experiments.config import load_config
    from benchmarks.experiments.suites import suite_base

    shorthand = [f"{key}={getattr(args, flag)}" for flag, key in SHORTHANDS.items() if getattr(args, flag) is not None]
    base = suite_base(args.base) if args.base else None
    cfg = load_config(args.config, args.overrides + shorthand, args.set_files, base=base)
    dataset = load_dataset(cfg.dataset.name, data_dir=args.data_dir)
    plan = plan_split(cfg.dataset, cfg.partition, dataset.train_y.numpy(), dataset.num_classes)
    report = describe(cfg, plan)
    if args.plot:
        p = cfg.partition
        plot_partition(plan.stats, args.plot, f"{cfg.dataset.name} {p.scheme} alpha={p.alpha:g} seed={p.seed}")
    print(json.dumps(report) if args.json else "\n".join(summary_lines(report)))
    return 0


def describe(cfg, plan) -> dict:
    """The split's statistics, with the local regime they give under the config's client settings."""
    c = cfg.clients
    steps = [0 if not size else c.local_steps or c.local_epochs * -(-int(size) // c.batch_size)
             for size in plan.stats["sizes"]]
    p = cfg.partition
    return {"dataset": cfg.dataset.name, "scheme": p.scheme, "alpha": p.alpha, "seed": p.seed,
            "train_subset": cfg.dataset.train_subset, "val_size": len(plan.val), "proxy_size": len(plan.proxy),
            "proxy_source": cfg.dataset.proxy_source, "pool_size": len(plan.client_pool),
            "clients_per_round": cfg.clients_per_round, "batch_size": c.batch_size,
            "local_steps": steps, **plan.stats}


def summary_lines(report: dict) -> list[str]:
    sizes, steps = report["sizes"], report["local_steps"]
    lines = [
        f"{report['dataset']}, {report['scheme']} alpha={report['alpha']:g}, seed {report['seed']}: "
        f"{report['n_clients']} clients ({report['clients_per_round']} a round) share {report['pool_size']} images"
        + (f" of a {report['train_subset']}-image subset" if report["train_subset"] else ""),
        f"client sizes: min {report['size_min']}, mean {report['size_mean']:.1f}, max {report['size_max']}; "
        f"local steps a round: min {min(steps)}, mean {sum(steps) / len(steps):.1f}, max {max(steps)} "
        f"(batch {report['batch_size']})",
        f"classes per client: mean {report['classes_per_client_mean']:.2f}; heterogeneity "
        f"({report['heterogeneity_metric']}) {report['heterogeneity']:.3f}",
        f"server: {report['val_size']} validation images, {report['proxy_size']} proxy images "
        f"(source {report['proxy_source']})",
    ]
    return lines + tiny_client_warnings(sizes, steps, report["batch_size"])


def tiny_client_warnings(sizes: list[int], steps: list[int], batch_size: int) -> list[str]:
    """Clients that cannot drift: empty ones, and ones smaller than a batch (a single local step)."""
    warnings = []
    empty = [i for i, n in enumerate(sizes) if n == 0]
    if empty:
        warnings.append(f"warning: {len(empty)} client(s) hold no images (clients {_few(empty)}); "
                        "they train nothing when sampled")
    one_step = [i for i, (n, s) in enumerate(zip(sizes, steps)) if n and s <= 1]
    if one_step:
        warnings.append(f"warning: {len(one_step)} client(s) hold fewer images than one batch of {batch_size} "
                        f"(clients {_few(one_step)}), so they take one local step a round: little drift for "
                        "FedProx, SCAFFOLD or DynaFed to act on")
    return warnings


def _few(ids: list[int], shown: int = 8) -> str:
    return ", ".join(map(str, ids[:shown])) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")
