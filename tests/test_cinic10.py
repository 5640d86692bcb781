"""CINIC-10 from a tiny archive in the official layout (<split>/<class>/<file>.png) that the test builds:
splits, labels, greyscale conversion, deterministic order, the checksum check, and `hetbench data`."""
from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.data import datasets, download
from benchmarks.data.datasets import DatasetError, dataset_status, load_dataset

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", {name: () for name in datasets.REAL_DATASETS})
    monkeypatch.delenv("HETBENCH_DATA", raising=False)
    monkeypatch.setenv("HETBENCH_OFFLINE", "1")
    path = tmp_path / "data"
    path.mkdir()
    return path


def _png(pixels: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def write_cinic(path, per_class=(2, 1, 1), reverse=False, skip=None) -> dict:
    """A CINIC-10.tar.gz with per_class (train, valid, test) images; image k of class c in a split has
    every pixel equal to 10 * c + k (one greyscale PNG per split). Returns {split: (x, y)} as expected."""
    rng_order = []
    expected = {}
    for split, count in zip(("train", "valid", "test"), per_class):
        xs, ys = [], []
        for label, cls in enumerate(CLASSES):
            if skip == (split, cls):
                continue
            for k in range(count):
                value = 10 * label + k
                grey = label == 0 and k == 0
                pixels = np.full((32, 32), value, np.uint8) if grey else np.full((32, 32, 3), value, np.uint8)
                rng_order.append((f"{split}/{cls}/img_{k:03d}.png", _png(pixels, "L" if grey else "RGB")))
                xs.append(np.full((3, 32, 32), value, np.uint8))
                ys.append(label)
        expected[split] = (np.stack(xs), np.array(ys))
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in (reversed(rng_order) if reverse else rng_order):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return expected


def test_train_and_test_splits_labels_and_greyscale(data_dir):
    expected = write_cinic(data_dir / "CINIC-10.tar.gz")
    ds = load_dataset("cinic10", data_dir)
    assert ds.classes == CLASSES and ds.input_shape == (3, 32, 32)
    assert np.array_equal(ds.train_x.numpy(), expected["train"][0])
    assert np.array_equal(ds.train_y.numpy(), expected["train"][1])
    assert np.array_equal(ds.test_x.numpy(), expected["test"][0])
    assert ds.mean == (0.47889522, 0.47227842, 0.43047404)
    assert len(ds.train_x) == 20 and len(ds.test_x) == 10  # valid is not used


def test_archive_order_does_not_change_the_arrays(data_dir, tmp_path):
    write_cinic(data_dir / "CINIC-10.tar.gz")
    other = tmp_path / "other"
    other.mkdir()
    write_cinic(other / "CINIC-10.tar.gz", reverse=True)
    a, b = load_dataset("cinic10", data_dir), load_dataset("cinic10", other)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)


def test_a_missing_class_folder_is_one_clear_error(data_dir):
    write_cinic(data_dir / "CINIC-10.tar.gz", skip=("test", "ship"))
    with pytest.raises(DatasetError, match="not a CINIC-10 archive .no test/ship/"):
        load_dataset("cinic10", data_dir)


def test_an_archive_of_the_official_size_with_another_md5_is_rejected(data_dir, monkeypatch):
    path = data_dir / "CINIC-10.tar.gz"
    write_cinic(path)
    official = download.OFFICIAL["CINIC-10.tar.gz"]
    monkeypatch.setitem(download.OFFICIAL, "CINIC-10.tar.gz", official._replace(size=path.stat().st_size))
    with pytest.raises(DatasetError, match="is not the official 6ee4d0c996905fe93221de577967a372"):
        load_dataset("cinic10", data_dir)


def test_missing_cinic_says_where_to_download_it(data_dir):
    row = {r["name"]: r for r in dataset_status(data_dir)}["cinic10"]
    assert not row["ready"] and "datashare.ed.ac.uk" in row["how_to_get"] and "CINIC-10.tar.gz" in row["how_to_get"]
    with pytest.raises(DatasetError, match="downloading is off: download the official CINIC-10.tar.gz"):
        load_dataset("cinic10", data_dir)


def test_download_from_a_file_server_checks_the_md5(data_dir, tmp_path, monkeypatch):
    served = tmp_path / "server" / "CINIC-10.tar.gz"
    served.parent.mkdir()
    write_cinic(served)
    monkeypatch.setitem(download.OFFICIAL, "CINIC-10.tar.gz",
                        download.Official(served.as_uri(), -1, download.file_digest(served, "md5")))
    assert len(load_dataset("cinic10", data_dir, download=True).train_x) == 20


def test_the_paper_suite_runs_cinic_cells_only_where_the_archive_is(data_dir):
    from benchmarks.experiments.suites import load_suite
    suite = load_suite("paper")
    cinic = [c for c in suite.cells if c.dataset.name == "cinic10"]
    assert len(cinic) == 3 * 9 * 3  # alphas x algorithms x seeds
    without, notes = suite.runnable(data_dir)
    assert len(without.cells) == len(suite.cells) - len(cinic)
    assert len(notes) == 1 and "cinic10 is not on this machine" in notes[0] and "81 cells" in notes[0]
    write_cinic(data_dir / "CINIC-10.tar.gz")
    with_data, notes = suite.runnable(data_dir)
    assert len(with_data.cells) == len(suite.cells) and not notes
