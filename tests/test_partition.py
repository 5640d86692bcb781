"""Properties of benchmarks.data.partition that the runner and the reports rely on."""

import json
import math
import time

import numpy as np
import pytest

from benchmarks.data.partition import (
    SCHEMES, PartitionError, partition, partition_pool, partition_stats, plot_partition,
    server_splits,
)

C = 10
# Shuffled, like a real training set, so no test can pass just because labels arrive sorted.
LABELS = np.random.default_rng(123).permutation(np.repeat(np.arange(C), 600))
BIG = np.random.default_rng(7).permutation(np.repeat(np.arange(C), 6000))


def het(labels, parts):
    return partition_stats(labels, parts, C)["heterogeneity"]


# --- every scheme -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("n_clients", [10, 37])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("alpha", [0.01, 1.0])
def test_parts_are_disjoint_complete_sorted_int64(scheme, n_clients, seed, alpha):
    parts = partition(LABELS, n_clients, scheme, seed=seed, alpha=alpha)
    assert len(parts) == n_clients
    assert all(p.dtype == np.int64 and np.all(np.diff(p) > 0) for p in parts)
    union = np.concatenate(parts)
    assert len(union) == len(LABELS)
    assert np.array_equal(np.sort(union), np.arange(len(LABELS)))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_same_split_other_seed_other_split(scheme):
    first = partition(LABELS, 20, scheme, seed=3, alpha=0.3)
    again = partition(LABELS, 20, scheme, seed=3, alpha=0.3)
    other = partition(LABELS, 20, scheme, seed=4, alpha=0.3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_500_clients_at_alpha_0001_is_fast_and_complete(scheme):
    start = time.perf_counter()
    parts = partition(BIG, 500, scheme, seed=0, alpha=0.001)
    assert time.perf_counter() - start < 30  # ~0.1 s idle; the bound catches quadratic blow-ups, not drift
    assert sum(len(p) for p in parts) == len(BIG)


def test_tiny_alpha_with_many_classes_never_produces_nan():
    labels = np.repeat(np.arange(100), 50)
    parts = partition(labels, 200, "balanced_dirichlet", seed=0, alpha=0.001)
    stats = partition_stats(labels, parts, 100)
    assert stats["size_max"] - stats["size_min"] <= 4
    assert math.isfinite(stats["heterogeneity"])


# --- Dirichlet schemes ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["dirichlet", "balanced_dirichlet"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lower_alpha_is_more_heterogeneous(scheme, seed):
    scores = [het(BIG, partition(BIG, 80, scheme, seed=seed, alpha=a)) for a in (0.01, 0.16, 10)]
    assert scores[0] > scores[1] > scores[2]
    assert scores[2] < 0.2


@pytest.mark.parametrize("alpha", [0.01, 0.04, 0.16])
def test_balanced_dirichlet_sizes_are_near_equal(alpha):
    sizes = [len(p) for p in partition(BIG, 80, "balanced_dirichlet", seed=0, alpha=alpha)]
    assert max(sizes) / min(sizes) < 1.03


def test_balanced_dirichlet_at_alpha_001_mostly_gives_one_class():
    stats = partition_stats(BIG, partition(BIG, 80, "balanced_dirichlet", seed=0, alpha=0.01), C)
    dominant = np.max(stats["class_counts"], axis=1) / np.array(stats["sizes"])
    assert np.median(dominant) > 0.9


def test_hsu_dirichlet_sizes_vary():
    stats = partition_stats(BIG, partition(BIG, 80, "dirichlet", seed=0, alpha=0.1), C)
    assert stats["size_max"] > 3 * stats["size_min"]


@pytest.mark.parametrize("scheme", ["dirichlet", "quantity"])
@pytest.mark.parametrize("seed", [0, 1])
def test_min_size_is_honoured(scheme, seed):
    parts = partition(LABELS, 50, scheme, seed=seed, alpha=0.5, min_size=20)
    assert min(len(p) for p in parts) >= 20


def test_unreachable_min_size_fails_after_bounded_redraws():
    start = time.perf_counter()
    with pytest.raises(PartitionError, match=r"^partition\.min_size: 50 not reached .* 100 draw"):
        partition(LABELS, 100, "dirichlet", seed=0, alpha=0.001, min_size=50)
    # The message's draw count proves the bound; the time only catches a hang (generous: tests share 2 cores).
    assert time.perf_counter() - start < 60


@pytest.mark.parametrize("scheme", SCHEMES)
def test_impossible_min_size_fails_at_once(scheme):
    start = time.perf_counter()
    with pytest.raises(PartitionError, match=r"^partition\.min_size: 100 .*exceeds the 60000"):
        partition(BIG, 1000, scheme, seed=0, alpha=0.1, min_size=100)
    assert time.perf_counter() - start < 10  # refused before any draw; a loaded machine still does it in ms


# --- shards and quantity ----------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 10])
@pytest.mark.parametrize("n_clients", [10, 80])
def test_shards_give_exactly_k_classes_held_evenly(k, n_clients):
    stats = partition_stats(LABELS, partition(LABELS, n_clients, "shards", seed=0,
                                              classes_per_client=k), C)
    counts = np.array(stats["class_counts"])
    assert np.all((counts > 0).sum(axis=1) == k)
    holders = (counts > 0).sum(axis=0)
    assert holders.max() - holders.min() <= 1


def test_shards_vary_the_class_sets():
    counts = np.array(partition_stats(LABELS, partition(LABELS, 80, "shards", seed=0), C)
                      ["class_counts"])
    assert len({tuple(np.flatnonzero(row)) for row in counts}) > C // 2


@pytest.mark.parametrize("sizes", ["lognormal", "dirichlet"])
def test_quantity_keeps_label_mix_but_varies_sizes(sizes):
    parts = partition(BIG, 40, "quantity", seed=0, alpha=1.0, quantity_sizes=sizes)
    stats = partition_stats(BIG, parts, C)
    assert stats["size_std"] > 0.3 * stats["size_mean"]
    assert stats["heterogeneity"] < 0.15
    assert stats["size_min"] >= 1


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(scheme="foo"),
     "partition.scheme: 'foo' is not one of iid, dirichlet, balanced_dirichlet, shards, quantity"),
    (dict(scheme="dirichlet", alpha=-1), "partition.alpha: -1 must be > 0"),
    (dict(scheme="balanced_dirichlet", alpha=float("nan")), "partition.alpha: nan must be > 0"),
    (dict(scheme="shards", classes_per_client=0), "partition.classes_per_client: 0 must be >= 1"),
    (dict(scheme="shards", classes_per_client=11),
     "partition.classes_per_client: 11 exceeds the 10 classes present"),
    (dict(scheme="shards", n_clients=3, classes_per_client=2),
     "partition.classes_per_client: 2 x 3 clients cannot cover all 10 classes"),
    (dict(scheme="quantity", quantity_sizes="zipf"),
     "partition.quantity_sizes: 'zipf' is not one of lognormal, dirichlet"),
    (dict(scheme="quantity", quantity_sigma=-0.5),
     "partition.quantity_sigma: -0.5 must be a finite number >= 0"),
    (dict(scheme="iid", n_clients=0), "partition.n_clients: 0 must be >= 1"),
    (dict(scheme="iid", n_clients=6001), "partition.n_clients: 6001 exceeds the 6000 labels"),
    (dict(scheme="iid", seed=-1), "partition.seed: -1 must be >= 0"),
    (dict(scheme="iid", num_classes=5), "partition.num_classes: 5 is too small for label 9"),
])
def test_bad_requests_name_field_value_and_rule(kwargs, message):
    call = dict(labels=LABELS, n_clients=10, seed=0) | kwargs
    with pytest.raises(PartitionError) as caught:
        partition(call.pop("labels"), call.pop("n_clients"), call.pop("scheme"), **call)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_shards_refuse_classes_too_small_for_their_holders():
    labels = np.concatenate([np.zeros(100, np.int64), np.ones(3, np.int64)])
    with pytest.raises(PartitionError, match=r"^partition\.n_clients: 10 gives class 1"):
        partition(labels, 10, "shards", seed=0, classes_per_client=2)


@pytest.mark.parametrize("labels", [np.array([0.5, 1.0]), np.zeros((2, 2), int), np.array([-1, 0])])
def test_bad_labels_are_refused(labels):
    with pytest.raises(PartitionError, match=r"^partition\.labels"):
        partition(labels, 1, "iid", seed=0)


# --- server splits ----------------------------------------------------------------------------


def test_server_splits_are_disjoint_complete_stratified_deterministic():
    splits = server_splits(LABELS, 0.05, 0.1, seed=0)
    parts = [splits.client_pool, splits.val, splits.proxy]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(LABELS)))
    assert all(p.dtype == np.int64 and np.all(np.diff(p) > 0) for p in parts)
    assert np.all(np.bincount(LABELS[splits.val], minlength=C) == 30)
    assert np.all(np.bincount(LABELS[splits.proxy], minlength=C) == 60)
    again = server_splits(LABELS, 0.05, 0.1, seed=0)
    other = server_splits(LABELS, 0.05, 0.1, seed=1)
    assert np.array_equal(splits.val, again.val) and np.array_equal(splits.proxy, again.proxy)
    assert not np.array_equal(splits.val, other.val)


def test_server_splits_may_be_empty():
    splits = server_splits(LABELS, 0.0, 0.0, seed=0)
    assert len(splits.val) == len(splits.proxy) == 0
    assert len(splits.client_pool) == len(LABELS)


@pytest.mark.parametrize("val, proxy, field", [(-0.1, 0.0, "val_fraction"),
                                               (0.0, 1.0, "proxy_fraction"),
                                               (0.6, 0.5, "proxy_fraction")])
def test_server_splits_refuse_bad_fractions(val, proxy, field):
    with pytest.raises(PartitionError, match=rf"^partition\.{field}: "):
        server_splits(LABELS, val, proxy, seed=0)


def test_partition_pool_returns_positions_into_the_full_array():
    splits = server_splits(LABELS, 0.1, 0.1, seed=0)
    parts = partition_pool(LABELS, splits.client_pool, 12, "dirichlet", seed=0, alpha=0.1)
    assert np.array_equal(np.sort(np.concatenate(parts)), splits.client_pool)
    assert all(np.all(np.diff(p) > 0) for p in parts)


# --- statistics and plot ----------------------------------------------------------------------


def test_identical_mixes_have_zero_heterogeneity():
    assert het(LABELS, partition(LABELS, 10, "iid", seed=0)) < 0.05
    labels = np.tile(np.arange(C), 20)
    parts = [np.arange(i * C, (i + 1) * C) for i in range(20)]
    assert het(labels, parts) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("n_classes", [2, 10, 1000])
def test_single_class_clients_match_the_closed_form(n_classes):
    """One class per client on a balanced global mix: the JS distance has a closed form.

    It tends to 1 as the number of classes grows (0.56 at 2 classes, 0.87 at 10, ~1 at 1000).
    """
    labels = np.arange(n_classes)
    parts = [np.array([i]) for i in range(n_classes)]
    g = 1 / n_classes
    m = (1 + g) / 2
    divergence = (math.log2(1 / m) + (1 - g) + g * math.log2(g / m)) / 2
    stats = partition_stats(labels, parts, n_classes)
    assert stats["heterogeneity"] == pytest.approx(math.sqrt(divergence))
    assert stats["classes_per_client_mean"] == 1


def test_stats_are_json_and_consistent():
    parts = partition(LABELS, 15, "dirichlet", seed=0, alpha=0.05)
    stats = json.loads(json.dumps(partition_stats(LABELS, parts, C)))
    assert stats["n_clients"] == 15 and stats["heterogeneity_metric"] == "mean_js_distance"
    assert stats["sizes"] == [len(p) for p in parts]
    assert np.array_equal(np.sum(stats["class_counts"], axis=0), np.bincount(LABELS))
    assert stats["size_min"] == min(stats["sizes"]) and stats["size_max"] == max(stats["sizes"])
    assert 0 <= stats["heterogeneity"] <= 1


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_plot_writes_a_file(tmp_path, suffix, magic):
    stats = partition_stats(LABELS, partition(LABELS, 20, "dirichlet", seed=0, alpha=0.1), C)
    path = tmp_path / "sub" / f"heatmap{suffix}"
    plot_partition(stats, path, title="dirichlet 0.1")
    assert path.read_bytes().startswith(magic)


def test_plot_refuses_unknown_suffix(tmp_path):
    stats = partition_stats(LABELS, partition(LABELS, 5, "iid", seed=0), C)
    with pytest.raises(PartitionError, match=r"^partition\.plot: .* must end in \.png or \.svg"):
        plot_partition(stats, tmp_path / "heatmap.jpg")


# --- CLI: the runner's own split -----------------------------------------------------------------------


def hetbench(argv, capsys):
    from benchmarks.cli.main import main
    code = main(["partition", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_shows_exactly_the_clients_the_runner_builds(capsys, tmp_path):
    """Same seeds, subset and server splits as a run: the JSON sizes and the plotted split are the
    federation's own, not a re-derivation that could drift from it."""
    import torch

    from benchmarks.engine.federation import build_federation
    from benchmarks.experiments.config import load_config

    overrides = ["dataset.name=synthetic", "dataset.train_subset=900", "partition.scheme=dirichlet",
                 "partition.alpha=0.1", "partition.clients=12", "seed=3", "dataset.proxy_source=unused"]
    plot = tmp_path / "split.png"
    code, out, err = hetbench([*(a for o in overrides for a in ("--set", o)), "--json", "--plot", str(plot)], capsys)
    assert code == 0, err
    shown = json.loads(out)
    fed = build_federation(load_config(None, overrides).dataset, load_config(None, overrides).partition,
                           torch.device("cpu"), eval_test=False)
    assert shown["sizes"] == [len(i) for i in fed.client_indices]
    assert shown["class_counts"] == fed.stats["class_counts"]
    assert (shown["val_size"], shown["proxy_size"]) == (len(fed.val), len(fed.proxy))
    assert shown["seed"] == 3 and shown["train_subset"] == 900 and shown["proxy_source"] == "unused"
    assert plot.stat().st_size > 0


def test_cli_reads_a_suite_base_and_prints_the_local_regime(capsys):
    code, out, err = hetbench(["--base", "smoke", "--dataset", "synthetic"], capsys)
    assert code == 0, err
    from benchmarks.experiments.config import load_config
    from benchmarks.experiments.suites import suite_base
    cfg = load_config(None, ["dataset.name=synthetic"], base=suite_base("smoke"))
    lines = out.splitlines()
    assert lines[0].startswith(f"synthetic, {cfg.partition.scheme} alpha={cfg.partition.alpha:g}, seed {cfg.seed}: "
                               f"{cfg.partition.clients} clients ({cfg.clients_per_round} a round)")
    assert f"(batch {cfg.clients.batch_size})" in lines[1]


def test_cli_warns_about_clients_smaller_than_a_batch(capsys):
    code, out, _ = hetbench(["--dataset", "synthetic", "--clients", "300", "--alpha", "0.01",
                             "--set", "clients.batch_size=64"], capsys)
    assert code == 0
    warning = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "fewer images than one batch of 64" in warning[0]
    assert "local steps a round: min 1, mean 1.0, max 1" in out


def test_cli_counts_fixed_local_steps_not_epochs(capsys):
    code, out, _ = hetbench(["--dataset", "synthetic", "--clients", "300", "--alpha", "0.01",
                             "--set", "clients.local_steps=5", "--set", "clients.local_epochs=0"], capsys)
    assert code == 0 and "local steps a round: min 5, mean 5.0, max 5" in out and "warning" not in out


def test_cli_is_silent_when_every_client_takes_several_steps(capsys):
    code, out, _ = hetbench(["--dataset", "synthetic", "--clients", "4", "--scheme", "iid"], capsys)
    assert code == 0 and "warning" not in out


@pytest.mark.parametrize("argv, start", [
    (["--dataset", "synthetic", "--alpha", "-1"], "error: partition.alpha: -1 must be > 0"),
    (["--dataset", "nope"], "error: dataset.name: 'nope'"),
    (["--dataset", "synthetic", "--set", "dataset.val_fraction=2"], "error: dataset.val_fraction: 2"),
    (["--base", "no_such_suite"], "error: "),
])
def test_cli_errors_are_one_line_exit_2(capsys, argv, start):
    code, out, err = hetbench(argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith(start) and err.count("\n") == 1, err


def test_cli_on_shards(capsys):
    code, out, err = hetbench(["--dataset", "synthetic", "--scheme", "shards", "--clients", "10",
                               "--set", "partition.classes_per_client=2", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["classes_per_client_mean"] == 2
