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
    dynafed = get_algorithm("dynafed").Params
    assert official_deviations(dynafed(quality_models=1), "fmnist") == {}
    assert official_deviations(dynafed(distill_epochs=8), "cifar100") == {}  # the CIFAR-100 scripts' value
    assert official_deviations(dynafed(), "cifar100") == {"distill_epochs": (20, 8)}


def test_the_paper_suite_keeps_every_official_value_and_cpu_regime_explains_each_deviation():
    assert load_suite("paper").deviations == []
    rows = {(r["algorithm"], r["setting"]): r for r in load_suite("cpu_regime").deviations}
    assert rows["DynaFed", "ipc"]["ours"] == "10 (cifar10, fmnist); 2 (cifar100)"
    assert rows["DynaFed", "label_init"]["official"] == "0" and "synthesis_ablation" in rows["DynaFed", "label_init"]["why"]
    assert ("DynaFed", "distill_epochs") not in rows  # 8 on CIFAR-100 is the official scripts' value
    assert all(r["why"] for r in rows.values())


def test_a_suite_without_a_deviations_table_says_it_gives_no_reason():
    rows = load_suite("smoke").deviations
    assert rows and all(r["why"] == "no reason given: the suite file has no [deviations] table" for r in rows)
