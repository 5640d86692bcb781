"""TensorBoard export: every rounds.csv point becomes a scalar a reader gets back, with the run's
settings in the HParams view; unfinished runs are skipped with their reason."""
from __future__ import annotations

import pytest

from benchmarks.engine.runner import run
from benchmarks.experiments.config import config_from_dict
from benchmarks.experiments.export import export_suite
from benchmarks.store.schema import read_long_csv

pytest.importorskip("tensorboard")


def test_scalars_and_hparams_read_back(tiny, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = run(config_from_dict(tiny(algorithm="fedprox", rounds=2)), suite="t", results=tmp_path / "results",
              progress=False)
    (tmp_path / "results" / "t" / ".tmp-unfinished").mkdir()
    (tmp_path / "results" / "t" / "half_done").mkdir()
    exported, skipped = export_suite(tmp_path / "results" / "t", tmp_path / "tb")
    assert exported == [out.name] and skipped == ["half_done: unfinished"]
    events = EventAccumulator(str(tmp_path / "tb" / out.name), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    rows = read_long_csv(out / "rounds.csv")
    accuracy = [(r.round, r.value) for r in rows if (r.split, r.metric) == ("test", "accuracy")]
    got = [(e.step, e.value) for e in events.Scalars("test/accuracy")]
    assert got == [(rnd, pytest.approx(value, rel=1e-6)) for rnd, value in accuracy]
    assert "_hparams_/session_start_info" in events.Tags()["tensors"]
    assert {"hparam/final_test_accuracy", "hparam/best_val_accuracy"} <= set(events.Tags()["scalars"])


def test_the_export_command_writes_and_refuses_bad_targets_in_one_line(tiny, tmp_path, capsys):
    from benchmarks.cli.main import main
    run(config_from_dict(tiny(rounds=1)), suite="t", results=tmp_path / "results", progress=False)
    assert main(["export", "t", "--tensorboard", str(tmp_path / "tb"), "--results", str(tmp_path / "results")]) == 0
    assert "exported 1 runs of t" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    for argv in (["export", "t", "--tensorboard", str(tmp_path / "file")], ["export", "nothere", "--tensorboard",
                                                                          str(tmp_path / "tb2")]):
        assert main([*argv, "--results", str(tmp_path / "results")]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
