"""`python -m benchmarks partition`: inspect a client split before spending compute on it.

Prints the split's statistics as JSON so a heterogeneity setting can be checked (and compared
across schemes) without running any training; `--plot` adds the client x class heatmap.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from benchmarks.data.partition import (
    SCHEMES, PartitionError, partition_pool, partition_stats, plot_partition, server_splits,
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="fmnist, cifar10, cifar100, cinic10 or synthetic")
    parser.add_argument("--scheme", default="balanced_dirichlet", choices=SCHEMES)
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration")
    parser.add_argument("--clients", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes-per-client", type=int, default=2, help="shards only")
    parser.add_argument("--min-size", type=int, default=0, help="minimum samples per client")
    parser.add_argument("--quantity-sizes", default="lognormal", choices=("lognormal", "dirichlet"))
    parser.add_argument("--quantity-sigma", type=float, default=1.0)
    parser.add_argument("--val-fraction", type=float, default=0.05,
                        help="share of training data held out for server validation")
    parser.add_argument("--proxy-fraction", type=float, default=0.05,
                        help="share of training data held out as the server's proxy set")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--plot", default=None, metavar="FILE", help=".png or .svg heatmap")


def run(args) -> int:
    # Imported here so that `configure` (and --help) never pays for loading torch.
    from benchmarks.data.datasets import DatasetError, load_dataset

    try:
        dataset = load_dataset(args.dataset, data_dir=args.data_dir)
        report = _describe(args, np.asarray(dataset.train_y), dataset.num_classes)
    except (PartitionError, DatasetError) as error:
        print(error, file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


def _describe(args, labels: np.ndarray, num_classes: int) -> dict:
    splits = server_splits(labels, args.val_fraction, args.proxy_fraction, args.seed)
    parts = partition_pool(
        labels, splits.client_pool, args.clients, args.scheme, seed=args.seed,
        alpha=args.alpha, classes_per_client=args.classes_per_client,
        quantity_sizes=args.quantity_sizes, quantity_sigma=args.quantity_sigma,
        min_size=args.min_size, num_classes=num_classes)
    stats = partition_stats(labels, parts, num_classes)
    if args.plot:
        plot_partition(stats, args.plot,
                       f"{args.dataset} {args.scheme} alpha={args.alpha} seed={args.seed}")
    return {"dataset": args.dataset, "scheme": args.scheme, "alpha": args.alpha,
            "seed": args.seed, "val_size": len(splits.val), "proxy_size": len(splits.proxy),
            "pool_size": len(splits.client_pool), **stats}
