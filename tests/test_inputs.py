"""Hostile inputs at the command line: each one exits 2 with one line on stderr naming the field or file,
no traceback, and a run finished earlier in the same results root is left byte for byte as it was.
Then what the fixes promise for inputs that are fine: [[when]] rules on defaults, shared algorithm tables
in suites, overrides filed apart, the closing line of a run, and `hetbench config --show`."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

from benchmarks.cli.main import main
from benchmarks.core.typed import settings_info
from benchmarks.engine.settings import RunConfig
from benchmarks.experiments.config import config_from_dict
from benchmarks.experiments.suites import load_suite
from benchmarks.store.rundir import is_suite_name

TINY = """rounds = 1
[dataset]
name = "synthetic"
val_fraction = 0.1
proxy_fraction = 0.1
[partition]
alpha = 0.5
clients = 4
[model]
width = 4
depth = 2
[clients]
participation = 0.5
batch_size = 16
"""
SUITE_BASE = """[base]
rounds = 1
[base.dataset]
name = "synthetic"
[base.partition]
clients = 4
[base.model]
width = 4
depth = 2
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A results root holding one tiny finished run, and its files' bytes."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "tiny.toml").write_text(TINY)
    results = root / "results"
    assert main(["run", "--config", str(root / "tiny.toml"), "--results", str(results), "--suite", "keep",
                 "--no-progress"]) == 0
    return root, results, _snapshot(root)


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (folders as None), so a file written anywhere there, even outside the
    results root through a ``../`` suite name, shows up."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _run_file(text: str):
    return {"c.toml": text}, ["run", "--config", "{d}/c.toml", "--results", "{r}", "--no-progress"]


def _set(*items: str, args: tuple[str, ...] = ()):
    argv = ["run", "--config", "{d}/tiny.toml", "--results", "{r}", "--no-progress", *args]
    for item in items:
        argv += ["--set", item]
    return {"tiny.toml": TINY}, argv


def _with_set_file(text: str):
    return {"tiny.toml": TINY, "o.toml": text}, _set(args=("--set-file", "{d}/o.toml"))[1]


def _suite(text: str, *extra: str):
    return {"s.toml": text}, ["sweep", "{d}/s.toml", "--results", "{r}", *extra]


_AXES = '[axes]\nseed = [0, 1]\n'
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so cuda is a valid device")

HOSTILE = [
    # config files that are not configs
    ("config-empty", _run_file(""), "c.toml is empty"),
    ("config-utf16", ({"c.toml": "rounds = 1\n".encode("utf-16")}, _run_file("")[1]), "c.toml is UTF-16"),
    ("config-binary", ({"c.toml": b"\x00\xff\xfe\x80garbage"}, _run_file("")[1]), "c.toml is not UTF-8"),
    ("config-not-toml", _run_file("rounds = [\n"), "c.toml is not valid TOML"),
    ("config-directory", ({}, ["run", "--config", "{d}", "--results", "{r}"]), "is a directory"),
    ("config-missing", ({}, ["run", "--config", "{d}/nope.toml", "--results", "{r}"]), "nope.toml does not exist"),
    ("config-is-a-suite", _run_file(SUITE_BASE + _AXES), "c.toml is a suite file"),
    # shapes: a value where a table belongs and the reverse
    ("scalar-for-table", _run_file("partition = 0.5\n"), "partition: 0.5 is a value, but partition is a table"),
    ("array-of-tables", _run_file("[[model]]\nwidth = 4\n"), "model: is an array of tables"),
    ("scalar-algorithm-table", _run_file("[algorithms]\nfedprox = 3\n"), "algorithms.fedprox: 3 is a value"),
    ("scalar-algorithms", _run_file("algorithms = 3\n"), "algorithms: 3 is a value"),
    ("table-for-value", _run_file("[rounds]\nn = 3\n"), "rounds: a table must be an integer"),
    ("set-scalar-for-table", _set("partition=0.5"), "partition: 0.5 is a value"),
    ("set-dataset-name-as-table", _set("dataset=cifar10"), "dataset: 'cifar10' is a value"),
    ("set-into-a-value", _set("rounds.x=1"), "rounds.x: 'rounds' is a value"),
    ("set-no-equals", _set("nonsense"), "--set: 'nonsense' must look like key=value"),
    ("set-empty-key", _set("=3"), "--set: '=3'"),
    ("set-empty-part", _set("partition..alpha=1"), "is not a dotted setting name"),
    # silently ignored settings
    ("foreign-algorithm-table", _run_file("algorithm = \"fedavg\"\n[algorithms.fedprox]\nmu = 5\n"),
     "algorithms.fedprox: settings for fedprox, but this run's algorithm is fedavg"),
    ("unknown-algorithm-table", _run_file("[algorithms.fedprx]\nmu = 5\n"), "algorithms.fedprx: 'fedprx' is not one of"),
    ("unknown-hparam-in-foreign-table", _run_file("[algorithms.fedprox]\nmuu = 5\n"), "algorithms.fedprox.muu: unknown"),
    ("unknown-top-level-key", _set("roundz=3"), "roundz: unknown setting (allowed: aggregation, algorithm, algorithms"),
    # numbers
    ("nan", _run_file("[clients]\nlr = nan\n"), "clients.lr: nan must be a finite number"),
    ("inf", _set("clients.lr=inf"), "clients.lr: inf must be a finite number"),
    ("past-float32", _set("clients.lr=1e308"), "clients.lr: 1e+308 must be a finite number within float32"),
    ("negative-rounds", _set("rounds=-3"), "rounds: -3 must be >= 1"),
    ("negative-clients", _set("partition.clients=-1"), "partition.clients: -1 must be >= 1"),
    ("zero-batch", _set("clients.batch_size=0"), "clients.batch_size: 0 must be >= 1"),
    ("bool-for-int", _set("rounds=true"), "rounds: True must be an integer"),
    ("int-for-bool", _set("clients.persistent_state=1"), "clients.persistent_state: 1 must be true or false"),
    ("string-for-number", _set("partition.alpha='0.1'"), "partition.alpha: '0.1' must be a number"),
    ("huge-int", _set("seed=99999999999999999999"), "seed: 99999999999999999999 must be an integer below 2**63"),
    ("huge-int-for-float", _set("clients.lr=1" + "0" * 400), "clients.lr: 1000000000"),
    ("int-past-str-limit", _set("seed=1" + "0" * 5000), "seed: '1000000000"),
    ("int-past-str-limit-in-file", _run_file("seed = 1" + "0" * 5000 + "\n"), "c.toml is not valid TOML (Exceeds"),
    ("nested-past-the-parser", _run_file("seed = " + "[" * 5000 + "]" * 5000 + "\n"), "c.toml nests tables or lists"),
    ("nested-deep-keys", _run_file(".".join(["a"] * 5000) + " = 1\n"), "c.toml nests tables or lists"),
    ("set-nested-deep", _set(".".join(["a"] * 5000) + "=1"), "nested more than 16 deep"),
    ("set-value-nested-deep", _set("seed=" + "[" * 50 + "]" * 50), "--set: seed: nested more than 16 deep"),
    ("denormal-alpha", _set("partition.alpha=5e-324"), "partition.alpha: 5e-324 must be >= 1e-300"),
    ("huge-width", _set("model.width=1000000"), "model.width: 1000000 gives a convnet of"),
    ("too-deep", _set("model.depth=5"), "model.depth: 5 pools a 16x16 input to nothing"),
    ("absurdly-deep", _set("model.depth=100000000"), "model.depth: 100000000 pools"),
    ("unknown-algorithm", _set("algorithm=fedprx"), "algorithm: 'fedprx' is not one of"),
    # devices
    ("device-syntax", _set("device=cuda:x"), "device: 'cuda:x' is not one of cpu, cuda, cuda:N"),
    ("device-absent-index", _set("device=cuda:99"), "device: 'cuda:99'"),
    ("device-no-cuda", _set("device=cuda"), "device: 'cuda' needs a CUDA GPU", NO_CUDA),
    ("estimate-device-absent", ({}, ["estimate", "smoke", "--set", "device=cuda:99", "--results", "{r}"]),
     "device: 'cuda:99'"),
    # paths: a suite is a name
    ("run-suite-parent", _set(args=("--suite", "../x")), "--suite: '../x' is not a suite name"),
    ("run-suite-absolute", _set(args=("--suite", "{root}/abs")), "is not a suite name"),
    ("run-suite-hidden", _set(args=("--suite", ".x")), "--suite: '.x' is not a suite name"),
    ("suite-name-parent", _suite('[suite]\nname = "../x"\n' + SUITE_BASE), "s.toml: suite.name: '../x' is not a suite"),
    ("suite-name-absolute", _suite('[suite]\nname = "/tmp/x"\n' + SUITE_BASE), "s.toml: suite.name: '/tmp/x'"),
    ("sweep-name-parent", ({}, ["sweep", "../x", "--results", "{r}"]), "suite: '../x' is neither a path to a suite .toml file nor a suite name"),
    ("sweep-unknown-suite", ({}, ["sweep", "nosuch", "--results", "{r}"]), "suite: 'nosuch' is not one of"),
    ("report-parent", ({}, ["report", "../keep", "--results", "{r}"]), "suite: '../keep' is not a suite name"),
    # suite grammar
    ("suite-empty", _suite(""), "s.toml is empty"),
    ("suite-axes-scalar", _suite("axes = 5\n" + SUITE_BASE), "s.toml: axes: must be a table ([axes]), not the value 5"),
    ("suite-when-table", _suite(SUITE_BASE + _AXES + '[when]\nmatch = {seed = 0}\nset = {rounds = 2}\n'),
     "s.toml: when: must be [[when]] rules"),
    ("suite-suite-scalar", _suite('suite = "x"\n' + SUITE_BASE), "s.toml: suite: must be a table ([suite]), not the value x"),
    ("suite-base-array", _suite("[[base]]\nrounds = 1\n"), "s.toml: base: is an array of tables"),
    ("suite-axis-under-suite", _suite('[suite]\nname = "x"\n"partition.alpha" = [0.1, 0.2]\n' + SUITE_BASE),
     "s.toml: suite.partition.alpha: unknown key in [suite]"),
    ("suite-unknown-section", _suite(SUITE_BASE + "[axis]\nseed = [0, 1]\n"), "s.toml: unknown section 'axis'"),
    ("suite-setting-at-top", _suite("rounds = 1\n" + SUITE_BASE), "s.toml: unknown section 'rounds'"),
    ("suite-only-meta", _suite('[suite]\nname = "x"\n'), "s.toml: has no [base] and no [axes]"),
    ("when-misspelt-match", _suite(SUITE_BASE + _AXES + '[[when]]\nmatch = {"dataset.nmae" = "synthetic"}\n'
                                   'set = {rounds = 2}\n'), "s.toml: when[1].match.dataset.nmae: 'dataset.nmae' is not"),
    ("when-match-wrong-type", _suite(SUITE_BASE + _AXES + '[[when]]\nmatch = {"partition.alpha" = "0.04"}\n'
                                     'set = {rounds = 2}\n'), "s.toml: when[1].match.partition.alpha: '0.04' must be"),
    ("when-matches-nothing", _suite(SUITE_BASE + _AXES + '[[when]]\nmatch = {seed = 7}\nset = {rounds = 2}\n'),
     "s.toml: when[1]: matches no cell"),
    ("when-unknown-key", _suite(SUITE_BASE + _AXES + '[[when]]\nmatch = {seed = 0}\nsett = {rounds = 2}\n'),
     "s.toml: when[1].sett: unknown key"),
    ("when-misspelt-set", _suite(SUITE_BASE + _AXES + '[[when]]\nmatch = {seed = 0}\nset = {roundz = 2}\n'),
     "s.toml: when[1].set.roundz: 'roundz' is not a setting"),
    ("axis-unknown-algorithm", _suite(SUITE_BASE + '[axes]\nalgorithm = ["fedavg", "fedprx"]\n'),
     "s.toml: axes.algorithm[1]: 'fedprx' is not one of"),
    ("axis-unknown-setting", _suite(SUITE_BASE + '[axes]\n"partition.alpah" = [0.1]\n'),
     "s.toml: axes.partition.alpah[0]: 'partition.alpah' is not a setting"),
    ("axis-key-twice", _suite(SUITE_BASE + '[axes]\n"partition.alpha" = [0.1]\npartition.alpha = [0.2]\n'),
     "s.toml: axes.partition.alpha: written twice"),
    ("axis-value-twice", _suite(SUITE_BASE + '[axes]\nseed = [0, 0]\n'), "s.toml: axes.seed: 0 is listed twice"),
    ("axis-empty", _suite(SUITE_BASE + '[axes]\nseed = []\n'), "s.toml: axes.seed: must be a non-empty list"),
    ("axis-bad-value", _suite(SUITE_BASE + '[axes]\n"partition.alpha" = [0.1, -1]\n'),
     "s.toml: axes.partition.alpha[1]: -1 must be > 0"),
    ("axis-over-a-table", _suite(SUITE_BASE + '[axes]\npartition = [1, 2]\n'),
     "s.toml: axes.partition[0]: 'partition' is a table of settings"),
    ("if-data-present-unknown", _suite('[suite]\nif_data_present = ["imagenet"]\n' + SUITE_BASE),
     "s.toml: suite.if_data_present"),
    ("description-not-text", _suite('[suite]\ndescription = 5\n' + SUITE_BASE), "s.toml: suite.description: 5"),
    ("suite-base-bad-value", _suite(SUITE_BASE.replace("rounds = 1", "rounds = 0")), "s.toml: rounds: 0 must be >= 1"),
    ("suite-foreign-table-bad", _suite(SUITE_BASE + "[base.algorithms.fedprox]\nmu = -1\n"),
     "s.toml: algorithms.fedprox.mu: -1 must be >= 0"),
    ("sweep-set-bad", _suite(SUITE_BASE + _AXES, "--set", "partition=0.5"), "partition: 0.5 is a value"),
    # [deviations]: every algorithm hyperparameter away from the official value has a reason, and only those
    ("deviation-without-reason", _suite(SUITE_BASE + '[base.algorithms.fedprox]\nmu = 0.5\n[axes]\n'
                                        'algorithm = ["fedprox"]\n[deviations]\n'),
     "s.toml: deviations.algorithms.fedprox.mu: the cells set 0.5 (official 0.01, in synthetic cells); say why"),
    ("deviation-reason-unused", _suite(SUITE_BASE + _AXES + '[deviations]\n"algorithms.fedprox.mu" = "why"\n'),
     "s.toml: deviations.algorithms.fedprox.mu: no cell sets it away from the official value"),
    ("deviation-not-a-setting", _suite(SUITE_BASE + _AXES + '[deviations]\n"algorithms.fedprox.nu" = "why"\n'),
     "s.toml: deviations.algorithms.fedprox.nu: 'nu' is not a setting of fedprox (allowed: mu)"),
    ("deviation-not-an-algorithm-setting", _suite(SUITE_BASE + _AXES + '[deviations]\nrounds = "why"\n'),
     "s.toml: deviations.rounds: must name an algorithm hyperparameter"),
    ("deviation-of-a-diagnostic", _suite(SUITE_BASE + _AXES + '[deviations]\n"algorithms.dynafed.quality_epochs" = "x"\n'),
     "s.toml: deviations.algorithms.dynafed.quality_epochs: a diagnostic setting"),
    ("deviation-empty-reason", _suite(SUITE_BASE + _AXES + '[deviations]\n"algorithms.fedprox.mu" = " "\n'),
     "s.toml: deviations.algorithms.fedprox.mu: must be a non-empty string"),
    # set-files and arguments
    ("set-file-empty", _with_set_file(""), "o.toml is empty"),
    ("set-file-scope-only", _with_set_file('[scope]\nalgorithm = "fedprox"\n'), "o.toml has a [scope] but sets nothing"),
    ("set-file-other-scope", _with_set_file('[scope]\nalgorithm = "fedprox"\n[clients]\nlr = 0.01\n'), "--set-file: {d}/o.toml is for algorithm=fedprox"),
    ("jobs-zero", _suite(SUITE_BASE + _AXES, "--jobs", "0"), "--jobs: 0 must be >= 1"),
    ("jobs-not-a-number", _suite(SUITE_BASE + _AXES, "--jobs", "x"), "argument --jobs: invalid int value: 'x'"),
    ("unknown-flag", _set(args=("--bogus",)), "unrecognized arguments: --bogus"),
    ("config-show-unknown-algorithm", ({}, ["config", "--show", "--algorithm", "nope"]), "algorithm: 'nope' is not one of"),
]


@pytest.mark.parametrize("files,argv,needle", [pytest.param(files, argv, needle, id=name, marks=marks)
                                              for name, (files, argv), needle, *marks in HOSTILE])
def test_hostile_input_is_one_line_exit_2_and_leaves_results_alone(files, argv, needle, finished, tmp_path, capsys):
    root, results, before = finished
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    fill = {"{d}": str(tmp_path), "{r}": str(results), "{root}": str(root)}
    argv = [_fill(arg, fill) for arg in argv]
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert _fill(needle, fill) in lines[0]
    assert _snapshot(root) == before


def _fill(text: str, fill: dict[str, str]) -> str:
    for key, value in fill.items():
        text = text.replace(key, value)
    return text


def _write_suite(folder: Path, text: str, name: str = "mini") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f'[suite]\nname = "{name}"\n' + text)
    return path


def test_a_when_rule_applies_where_its_value_is_left_at_the_default(tmp_path):
    # clients.optimizer is never written: only the default says it is adam
    path = _write_suite(tmp_path, SUITE_BASE + _AXES + '[[when]]\nmatch = {"clients.optimizer" = "adam"}\n'
                                                       'set = {"clients.lr" = 0.01}\n')
    assert [cell.clients.lr for cell in load_suite(str(path)).cells] == [0.01, 0.01]


def test_a_when_rule_matches_an_int_written_for_a_float(tmp_path):
    path = _write_suite(tmp_path, SUITE_BASE + '[axes]\n"partition.alpha" = [1, 0.5]\n'
                                               '[[when]]\nmatch = {"partition.alpha" = 1}\nset = {rounds = 2}\n')
    assert [cell.rounds for cell in load_suite(str(path)).cells] == [2, 1]


def test_a_suite_base_shares_tables_of_several_algorithms(tmp_path):
    path = _write_suite(tmp_path, SUITE_BASE + '[base.algorithms.fedprox]\nmu = 0.5\n'
                                               '[axes]\nalgorithm = ["fedavg", "fedprox"]\n"algorithms.fedprox.mu" = [0.5, 1.0]\n')
    cells = load_suite(str(path)).cells
    # fedavg reads no mu, so its two cells are one run
    assert [(c.algorithm, getattr(c.hparams, "mu", None)) for c in cells] == [("fedavg", None), ("fedprox", 0.5),
                                                                              ("fedprox", 1.0)]


def test_a_run_config_of_another_algorithm_is_used_when_the_algorithm_matches():
    cfg = config_from_dict({"algorithm": "fedprox", "algorithms": {"fedprox": {"mu": 5}}}, single_run=True)
    assert cfg.hparams.mu == 5


def test_suite_names_are_names():
    assert all(is_suite_name(n) for n in ("quick", "cpu_regime", "quick@1a2b3c4d", "v1.2", "a-b"))
    assert not any(is_suite_name(n) for n in ("", "../x", "/x", ".x", "a/b", "a b", "x" * 101, None, "é"))


def test_a_finished_run_ends_with_one_line_and_a_rerun_says_it_is_complete(finished, capsys):
    root, results, before = finished
    assert main(["run", "--config", str(root / "tiny.toml"), "--results", str(results), "--suite", "keep",
                 "--no-progress", "--set", "threads=2"]) == 0  # an execution setting: the same run
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert "is already complete, not run again" in line
    for part in ("final test accuracy ", "best validation accuracy ", "wall time ", f"results: {results / 'keep'}"):
        assert part in line
    assert _snapshot(root) == before


def test_runs_made_with_overrides_file_apart_and_are_reportable(tmp_path, capsys):
    results = tmp_path / "results"
    path = _write_suite(tmp_path, SUITE_BASE + '[axes]\nseed = [0]\n')
    assert main(["sweep", str(path), "--results", str(results), "--no-progress"]) == 0
    own = sorted(p.name for p in (results / "mini").iterdir())
    capsys.readouterr()
    assert main(["sweep", str(path), "--results", str(results), "--no-progress", "--set", "clients.lr=0.01"]) == 0
    out = capsys.readouterr().out
    (derived,) = [p.name for p in results.iterdir() if p.name != "mini"]
    assert derived.startswith("mini@") and str(results / derived) in out.splitlines()[0]
    assert sorted(p.name for p in (results / "mini").iterdir()) == own
    # a setting that changes no number (threads) is the suite's own runs again, not a new folder
    assert main(["sweep", str(path), "--results", str(results), "--no-progress", "--set", "threads=2"]) == 0
    assert sorted(p.name for p in results.iterdir()) == sorted(["mini", derived])
    assert main(["report", derived, "--results", str(results), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "index.html").is_file()


def test_a_sweep_records_the_suite_s_deviations_and_their_reasons(tmp_path, capsys):
    from benchmarks.store.schema import read_deviations
    results = tmp_path / "results"
    path = _write_suite(tmp_path, SUITE_BASE + '[base.algorithms.fedprox]\nmu = 0.5\n[axes]\nalgorithm = ["fedprox"]\n'
                                               '[deviations]\n"algorithms.fedprox.mu" = "ablation X"\n')
    assert main(["sweep", str(path), "--results", str(results), "--no-progress"]) == 0
    assert read_deviations(results / "mini" / "deviations.csv") == [
        {"algorithm": "FedProx", "setting": "mu", "ours": "0.5", "official": "0.01", "why": "ablation X"}]
    assert main(["sweep", str(path), "--results", str(results), "--no-progress", "--set", "clients.lr=0.01",
                 "--set", "algorithms.fedprox.mu=0.01"]) == 0  # back to the official value: nothing to explain
    (derived,) = [p for p in results.iterdir() if p.name != "mini"]
    assert read_deviations(derived / "deviations.csv") == []
    assert main(["report", "mini", "--results", str(results), "--out", str(tmp_path / "report")]) == 0
    assert "FedProx: mu 0.5 (official 0.01)" in (tmp_path / "report" / "main_table.md").read_text()


def test_a_single_run_with_overrides_files_apart_and_says_where(finished, tmp_path, capsys):
    root, results, before = finished
    other = tmp_path / "results"
    argv = ["run", "--config", str(root / "tiny.toml"), "--results", str(other), "--suite", "keep", "--no-progress"]
    assert main(argv + ["--set", "seed=1"]) == 0
    first, estimate, last = capsys.readouterr().out.strip().splitlines()
    (derived,) = [p.name for p in other.iterdir()]
    assert derived.startswith("keep@") and derived in first and f"results: {other / derived}" in last
    assert estimate.startswith("estimated time on this machine:")


def test_config_show_lists_every_setting_with_its_default_and_doc(capsys):
    assert main(["config", "--show", "--algorithm", "fedprox"]) == 0
    text = capsys.readouterr().out
    lines, section = {}, ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]") + "."
        elif " = " in line:
            lines[section + line.lstrip("# ").split(" = ")[0]] = line
    for row in settings_info(RunConfig, skip=("hparams", "execution")):
        assert row.doc in lines[row.key] and (row.allowed in lines[row.key] or row.key == "algorithm")
    assert lines["algorithm"].startswith('algorithm = "fedprox"  # one of abavg, ')
    assert "proximal" in lines["algorithms.fedprox.mu"]
    # the listing is itself a valid config: the defaults, for that algorithm
    cfg = config_from_dict(tomllib.loads(text), single_run=True)
    assert cfg == config_from_dict({"algorithm": "fedprox"})


def test_base_starts_from_a_suite_base_keeping_only_the_chosen_algorithms_table(tmp_path, capsys):
    """`run --base SUITE` takes the suite's [base] (here with tables for two algorithms, as suites share
    them), keeps the chosen algorithm's table, says how long it will take, and ends with its result line."""
    suite = tmp_path / "tiny_suite.toml"
    suite.write_text(SUITE_BASE + "[base.algorithms.fedprox]\nmu = 0.5\n[base.algorithms.feddf]\ndistill_steps = 3\n"
                     "[axes]\nalgorithm = [\"fedprox\"]\n")
    argv = ["run", "--base", str(suite), "--set", "algorithm=fedprox", "--results", str(tmp_path / "r"), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "estimated time on this machine" in out and "final test accuracy" in out
    config = next((tmp_path / "r").rglob("config.json")).read_text()
    assert '"mu": 0.5' in config and "distill_steps" not in config
    assert main(["run", "--base", "no_such_suite", "--results", str(tmp_path / "r")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
