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
