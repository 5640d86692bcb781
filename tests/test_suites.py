"""Every shipped suite loads and every cell validates (no data is read), so a suite file cannot break
unnoticed until someone starts a multi-hour sweep."""
from __future__ import annotations

import pytest

from benchmarks.experiments.suites import load_suite, suite_names


@pytest.mark.parametrize("name", suite_names())
def test_shipped_suite_loads_and_validates(name):
    suite = load_suite(name)
    assert suite.cells and suite.name == name
    assert len({cell.run_id() for cell in suite.cells}) == len(suite.cells), "two cells share a run id"


def test_official_values_skip_diagnostics_and_follow_the_dataset():
    from benchmarks.core.typed import official_deviations
    from benchmarks.engine.api import get_algorithm
    feddf = get_algorithm("feddf").Params
    assert official_deviations(feddf()) == {"augment": (False, True)}  # our default is not the official one
    assert official_deviations(feddf(augment=True, teacher_eval_every=5)) == {}  # a diagnostic setting
    assert official_deviations(feddf(), "fmnist") == {}  # the official MNIST loader does not augment
    dynafed = get_algorithm("dynafed").Params
    assert official_deviations(dynafed(quality_models=1), "fmnist") == {}
    assert official_deviations(dynafed(distill_epochs=8), "cifar100") == {}  # the CIFAR-100 scripts' value
    assert official_deviations(dynafed(), "cifar100") == {"distill_epochs": (20, 8)}


def test_the_paper_suite_keeps_every_official_value_and_cpu_regime_explains_each_deviation():
    assert load_suite("paper").deviations == []
    rows = {(r["algorithm"], r["setting"]): r for r in load_suite("cpu_regime").deviations}
    assert rows["DynaFed", "ipc"]["ours"] == "10 (cifar10, fmnist) / 2 (cifar100)"
    assert rows["FedDF", "augment"]["ours"] == "true (fmnist)"  # the official CIFAR loaders augment too
    assert rows["DynaFed", "label_init"]["official"] == "0" and "synthesis_ablation" in rows["DynaFed", "label_init"]["why"]
    assert ("DynaFed", "distill_epochs") not in rows  # 8 on CIFAR-100 is the official scripts' value
    assert all(r["why"] for r in rows.values())


@pytest.mark.parametrize("name", suite_names())
def test_every_shipped_suite_gives_its_reasons(name):
    suite = load_suite(name)
    assert suite.reasons is not None, f"{name}.toml has no [deviations] table"
    assert all(row["why"] for row in suite.deviations)


def test_a_suite_without_a_deviations_table_says_it_gives_no_reason(tmp_path):
    path = tmp_path / "mini.toml"
    path.write_text('[base]\nalgorithm = "fedprox"\n[base.algorithms.fedprox]\nmu = 0.5\n[axes]\nseed = [0, 1]\n')
    (row,) = load_suite(str(path)).deviations
    assert row == {"algorithm": "FedProx", "setting": "mu", "ours": "0.5", "official": "0.01",
                   "why": "no reason given: the suite file has no [deviations] table"}


def test_a_value_set_by_override_keeps_no_reason_of_the_file_and_subsets_name_their_datasets():
    rows = {r["setting"]: r for r in load_suite("cpu_regime", ["algorithms.dynafed.iterations=60"]).deviations
            if r["algorithm"] == "DynaFed"}
    assert rows["iterations"]["why"].startswith("changed by --set") and "synthesis_ablation" in rows["label_init"]["why"]
    (row,) = load_suite("paper", ["algorithms.dynafed.distill_epochs=20"]).deviations
    assert (row["ours"], row["official"]) == ("20 (cifar100)", "8 (cifar100)")  # the other datasets keep 20


def test_an_ablation_axis_through_the_official_value_says_so():
    rows = {r["setting"]: r["ours"] for r in load_suite("synthesis_ablation").deviations}
    assert rows["label_init"] == "1 (and the official value in other cells)" and rows["iterations"] == "120, 30"


def test_declared_official_values_are_valid_settings_for_known_datasets():
    import dataclasses

    import algorithms
    from benchmarks.core.typed import coerce_setting
    from benchmarks.data.datasets import DATASET_NAMES
    from benchmarks.engine.api import get_algorithm
    for name in algorithms.algorithm_names():
        params = get_algorithm(name).Params
        for f in dataclasses.fields(params):
            assert set(f.metadata["official_by_dataset"]) <= set(DATASET_NAMES), (name, f.name)
            for value in [f.metadata["official"], *f.metadata["official_by_dataset"].values()]:
                assert coerce_setting(params, f.name, value, f"{name}.{f.name}") == value, (name, f.name)


def test_a_method_without_official_code_has_no_deviations():
    from benchmarks.core.typed import official_deviations
    from benchmarks.engine.api import get_algorithm
    assert official_deviations(get_algorithm("regl_proxy").Params(vae_steps=5)) == {}


def test_the_deviations_file_is_rewritten_only_when_it_changes(tmp_path):
    from benchmarks.store.schema import read_deviations, write_deviations
    rows = [{"algorithm": "FedProx", "setting": "mu", "ours": "0.5", "official": "0.01", "why": "x"}]
    path = tmp_path / "deviations.csv"
    write_deviations(path, rows)
    stamp = path.stat().st_mtime_ns
    write_deviations(path, rows)
    assert path.stat().st_mtime_ns == stamp and read_deviations(path) == rows
    assert [p.name for p in tmp_path.iterdir()] == ["deviations.csv"]  # no temporary file left behind
