"""Dataset loading: every on-disk format, the cache's guarantees, downloads, and the synthetic set.

All but the `realdata` test build tiny files in the real formats under tmp_path, and hide this
machine's copies of the datasets (SYSTEM_DIRS), so they run in seconds anywhere.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.data import datasets, download
from benchmarks.cli.commands import data as data_command
from benchmarks.data.datasets import DatasetError, dataset_status, load_dataset, make_synthetic, prepare_dataset

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty data directory, with no other place to find data and downloads off."""
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", {name: () for name in datasets.REAL_DATASETS})
    monkeypatch.delenv("HETBENCH_DATA", raising=False)
    monkeypatch.setenv("HETBENCH_OFFLINE", "1")
    monkeypatch.setattr(datasets, "_warned_unwritable", False)
    path = tmp_path / "data"
    path.mkdir()
    return path


# ------------------------------------------------------------------------------- writing the formats

def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes((0, 0, 0x08, arr.ndim)) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_fmnist(directory, gz=True, n_train=30, n_test=10, seed=0):
    """The four IDX files; returns (train_x, train_y, test_x, test_y) as written."""
    rng = np.random.default_rng(seed)
    arrays = (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), np.arange(n_train) % 10,
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), np.arange(n_test)[::-1] % 10)
    for name, arr in zip(IDX_NAMES, arrays):
        raw = idx_bytes(arr)
        if gz:
            (directory / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return arrays


def cifar_images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def add_pickle(tar, member, obj):
    blob = pickle.dumps(obj, protocol=2)
    info = tarfile.TarInfo(member)
    info.size = len(blob)
    tar.addfile(info, io.BytesIO(blob))


def write_cifar10_archive(path, per_batch=2, n_test=3):
    """An official-layout cifar-10-python.tar.gz; returns (train_x, train_y, test_x, test_y)."""
    train_x, test_x = cifar_images(5 * per_batch, 1), cifar_images(n_test, 2)
    train_y, test_y = np.arange(5 * per_batch) % 10, np.arange(n_test) % 10
    with tarfile.open(path, "w:gz") as tar:
        for b in range(5):
            rows = slice(b * per_batch, (b + 1) * per_batch)
            add_pickle(tar, f"cifar-10-batches-py/data_batch_{b + 1}",
                       {b"data": train_x[rows].reshape(per_batch, -1), b"labels": train_y[rows].tolist()})
        add_pickle(tar, "cifar-10-batches-py/test_batch",
                   {b"data": test_x.reshape(n_test, -1), b"labels": test_y.tolist()})
        add_pickle(tar, "cifar-10-batches-py/batches.meta",
                   {b"label_names": [f"c10_{i}".encode() for i in range(10)]})
    return train_x, train_y, test_x, test_y


def write_cifar100_archive(path, n_train=6, n_test=4):
    train_x, test_x = cifar_images(n_train, 3), cifar_images(n_test, 4)
    train_y, test_y = np.arange(n_train) * 17 % 100, np.arange(n_test) * 31 % 100
    with tarfile.open(path, "w:gz") as tar:
        for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
            batch = {b"data": x.reshape(len(x), -1), b"fine_labels": y.tolist(),
                     b"coarse_labels": (y // 5).tolist()}
            add_pickle(tar, f"cifar-100-python/{split}", batch)
        add_pickle(tar, "cifar-100-python/meta", {b"fine_label_names": [f"c100_{i}".encode() for i in range(100)],
                                                  b"coarse_label_names": [f"s{i}".encode() for i in range(20)]})
    return train_x, train_y, test_x, test_y


def webp_strips(x_nhwc, per_strip):
    """Our own encoder for the bundle layout: k images side by side per lossless WebP strip."""
    blobs = []
    for start in range(0, len(x_nhwc), per_strip):
        block = x_nhwc[start:start + per_strip]
        strip = np.ascontiguousarray(block.transpose(1, 0, 2, 3).reshape(32, 32 * len(block), 3))
        buf = io.BytesIO()
        Image.fromarray(strip).save(buf, format="WEBP", lossless=True)
        blobs.append(buf.getvalue())
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    return np.frombuffer(b"".join(blobs), np.uint8), offsets


def write_cifar10_bundle(path, n_train=7, n_test=3, approx=(1, 4), sha_train=None):
    train_x, test_x = cifar_images(n_train, 5), cifar_images(n_test, 6)
    train_y, test_y = np.arange(n_train) % 10, (np.arange(n_test) + 3) % 10
    arrays = {"label_names": np.array([f"b10_{i}" for i in range(10)]),
              "approx_jpeg_train_idx": np.array(approx, np.int32), "approx_jpeg_test_idx": np.array([], np.int32)}
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        arrays[f"{split}_webp"], arrays[f"{split}_offsets"] = webp_strips(nhwc, per_strip=3)
        arrays[f"n_{split}"] = np.int64(len(x))
        arrays[f"sha256_x_{split}"] = np.array(hashlib.sha256(nhwc.tobytes()).hexdigest())
        arrays[f"y_{split}"] = y.astype(np.uint8)
    if sha_train is not None:
        arrays["sha256_x_train"] = np.array(sha_train)
    np.savez(path, **arrays)
    return train_x, train_y, test_x, test_y


def assert_loaded(ds, expected, num_classes):
    train_x, train_y, test_x, test_y = expected
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert ds.train_x.is_contiguous()
    assert np.array_equal(ds.train_x.numpy(), train_x) and np.array_equal(ds.test_x.numpy(), test_x)
    assert np.array_equal(ds.train_y.numpy(), train_y) and np.array_equal(ds.test_y.numpy(), test_y)
    assert ds.num_classes == num_classes


# ---------------------------------------------------------------------------------------- formats

def test_unknown_name_names_field_and_choices():
    expected = r"dataset\.name: 'foo' is not one of fmnist, cifar10, cifar100, cinic10, synthetic"
    with pytest.raises(DatasetError, match=expected):
        load_dataset("foo")


@pytest.mark.parametrize("gz", [True, False])
def test_fmnist_idx_files(data_dir, gz):
    expected = write_fmnist(data_dir, gz=gz)
    ds = load_dataset("fmnist", data_dir)
    train_x, train_y, test_x, test_y = expected
    assert_loaded(ds, (train_x[:, None], train_y, test_x[:, None], test_y), 10)
    assert ds.input_shape == (1, 28, 28)
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.mean == (0.1307,) and ds.std == (0.3081,)
    assert ds.source == str(data_dir)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_is_an_error(data_dir, gz):
    write_fmnist(data_dir, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    raw = (data_dir / name).read_bytes()
    (data_dir / name).write_bytes(raw[:-100])
    with pytest.raises(DatasetError, match=name):
        load_dataset("fmnist", data_dir)


def test_idx_with_wrong_header_is_an_error(data_dir):
    write_fmnist(data_dir, gz=False)
    (data_dir / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x0d\x01" + bytes(40))  # float type code
    with pytest.raises(DatasetError, match="bad header"):
        load_dataset("fmnist", data_dir)


def test_cifar10_archive(data_dir):
    expected = write_cifar10_archive(data_dir / "cifar-10-python.tar.gz")
    ds = load_dataset("cifar10", data_dir)
    assert_loaded(ds, expected, 10)
    assert ds.classes[3] == "c10_3" and ds.input_shape == (3, 32, 32)
    assert ds.mean == (0.4914, 0.4822, 0.4465) and ds.std == (0.2023, 0.1994, 0.2010)


def test_cifar100_archive_uses_fine_labels_and_cifar10_stats(data_dir):
    expected = write_cifar100_archive(data_dir / "cifar-100-python.tar.gz")
    ds = load_dataset("cifar100", data_dir)
    assert_loaded(ds, expected, 100)
    assert ds.classes[42] == "c100_42"
    assert ds.mean == (0.4914, 0.4822, 0.4465)


def test_archive_pickle_cannot_run_code(data_dir):
    path = data_dir / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        blob = b"cos\nsystem\n(S'echo pwned'\ntR."  # a pickle that would call os.system
        for member in ("train", "test", "meta"):
            info = tarfile.TarInfo(f"cifar-100-python/{member}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(DatasetError, match="refusing to load os.system"):
        load_dataset("cifar100", data_dir)


def test_webp_bundle(data_dir):
    expected = write_cifar10_bundle(data_dir / "cifar10_webp.npz")
    ds = load_dataset("cifar10", data_dir)
    assert_loaded(ds, expected, 10)
    assert ds.classes[0] == "b10_0"
    assert "2 images (2 train, 0 test) recovered from JPEG copies" in ds.notes


def test_bundle_sha_mismatch_is_an_error(data_dir):
    write_cifar10_bundle(data_dir / "cifar10_webp.npz", sha_train="0" * 64)
    with pytest.raises(DatasetError, match="sha256"):
        load_dataset("cifar10", data_dir)


def test_search_order(data_dir, tmp_path, monkeypatch):
    system = tmp_path / "system"
    system.mkdir()
    bundle = write_cifar10_bundle(system / "cifar10_webp.npz")
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "cifar10", (system,))
    assert_loaded(load_dataset("cifar10", data_dir), bundle, 10)  # nothing in the data dir yet
    write_cifar10_bundle(data_dir / "cifar10_webp.npz", n_train=4)
    assert len(load_dataset("cifar10", data_dir).train_x) == 4  # the data dir wins
    archive = write_cifar10_archive(data_dir / "cifar-10-python.tar.gz")
    assert_loaded(load_dataset("cifar10", data_dir), archive, 10)  # the official archive before the bundle


def test_data_dir_from_environment(data_dir, monkeypatch):
    monkeypatch.setenv("HETBENCH_DATA", str(data_dir))
    assert datasets.default_data_dir() == data_dir
    write_fmnist(data_dir)
    assert load_dataset("fmnist").source == str(data_dir)


@pytest.mark.parametrize("name, hint", [("fmnist", "apt-get install dataset-fashion-mnist"),
                                        ("cifar10", "cifar-10-python.tar.gz"),
                                        ("cifar100", "cifar100_webp.npz")])
def test_missing_dataset_says_how_to_get_it(data_dir, name, hint):
    for download_arg in (False, None):  # None: HETBENCH_OFFLINE=1 decides
        with pytest.raises(DatasetError, match="downloading is off") as info:
            load_dataset(name, data_dir, download=download_arg)
        message = str(info.value)
        assert hint in message and str(data_dir) in message and "\n" not in message


# ------------------------------------------------------------------------------------------ cache

def test_second_load_comes_from_the_cache(data_dir, monkeypatch):
    write_fmnist(data_dir)
    first = load_dataset("fmnist", data_dir)
    assert (data_dir / "cache" / "fmnist" / "meta.json").is_file()
    monkeypatch.setattr(datasets, "_parse_idx_set", lambda files: pytest.fail("source parsed again"))
    second = load_dataset("fmnist", data_dir)
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)
    assert (first.classes, first.source, first.notes) == (second.classes, second.source, second.notes)


def test_changed_source_rebuilds_the_cache(data_dir):
    write_cifar10_archive(data_dir / "cifar-10-python.tar.gz")
    load_dataset("cifar10", data_dir)
    path = data_dir / "cifar-10-python.tar.gz"
    old = path.stat()
    expected = write_cifar10_archive(path, per_batch=3)
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 1))
    assert_loaded(load_dataset("cifar10", data_dir), expected, 10)


def test_same_size_change_is_caught_by_sha256(data_dir):
    write_fmnist(data_dir, gz=False)
    load_dataset("fmnist", data_dir)
    path = data_dir / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[-1] = (raw[-1] + 1) % 10
    old = path.stat()
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 1))
    assert load_dataset("fmnist", data_dir).test_y[-1].item() == raw[-1]


def test_touched_source_keeps_the_cache(data_dir, monkeypatch):
    write_fmnist(data_dir)
    load_dataset("fmnist", data_dir)
    path = data_dir / "train-images-idx3-ubyte.gz"
    os.utime(path, ns=(0, 10**18))
    monkeypatch.setattr(datasets, "_parse_idx_set", lambda files: pytest.fail("source parsed again"))
    load_dataset("fmnist", data_dir)
    assert str(10**18) in (data_dir / "cache" / "fmnist" / "meta.json").read_text()  # fast path restored


def flip_last_byte(path):
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [
    lambda cache: flip_last_byte(cache / "train_x.npy"),
    lambda cache: (cache / "test_x.npy").write_bytes((cache / "test_x.npy").read_bytes()[:-10]),
    lambda cache: (cache / "train_y.npy").unlink(),
    lambda cache: (cache / "meta.json").write_text("{not json"),
    lambda cache: (cache / "meta.json").write_text('{"version": 1}'),
], ids=["flipped-byte", "truncated", "missing-array", "bad-json", "incomplete-meta"])
def test_corrupt_cache_is_rebuilt(data_dir, capsys, damage):
    expected = write_fmnist(data_dir)
    load_dataset("fmnist", data_dir)
    damage(data_dir / "cache" / "fmnist")
    ds = load_dataset("fmnist", data_dir)
    assert np.array_equal(ds.train_x.numpy()[:, 0], expected[0])
    assert np.array_equal(ds.test_x.numpy()[:, 0], expected[2])
    assert "unusable" in capsys.readouterr().err
    load_dataset("fmnist", data_dir)
    assert "unusable" not in capsys.readouterr().err  # rebuilt for good


def test_unwritable_cache_loads_anyway_and_warns_once(data_dir, capsys):
    write_fmnist(data_dir)
    (data_dir / "cache").write_text("a file where the cache directory should be")
    for _ in range(2):
        assert len(load_dataset("fmnist", data_dir).train_x) == 30
    assert capsys.readouterr().err.count("loading without a cache") == 1


def test_status_prepare_and_data_command(data_dir, capsys):
    write_fmnist(data_dir)
    rows = {row["name"]: row for row in dataset_status(data_dir)}
    assert rows["fmnist"]["ready"] and not rows["fmnist"]["cached"]
    assert rows["fmnist"]["found_at"] == str(data_dir)
    assert not rows["cifar10"]["ready"] and rows["cifar10"]["found_at"] is None
    assert "cifar-10-python.tar.gz" in rows["cifar10"]["how_to_get"]
    assert prepare_dataset("fmnist", data_dir) == data_dir / "cache" / "fmnist"
    assert {row["name"]: row["cached"] for row in dataset_status(data_dir)}["fmnist"]

    parser = argparse.ArgumentParser()
    data_command.configure(parser)
    capsys.readouterr()
    assert data_command.run(parser.parse_args(["--data-dir", str(data_dir), "--prepare"])) == 0
    out = capsys.readouterr().out
    assert "fmnist    yes    yes" in out and "cifar100  no     no" in out
    assert "cifar100: put the official cifar-100-python.tar.gz" in out


# -------------------------------------------------------------------------------------- downloads

@pytest.fixture
def server(tmp_path, monkeypatch):
    """A file:// 'server' holding tiny Fashion-MNIST files, with their md5s as the official ones."""
    root = tmp_path / "server"
    root.mkdir()
    write_fmnist(root)
    table = {name + ".gz": download.Official((root / (name + ".gz")).as_uri(), -1,
                                             download.file_digest(root / (name + ".gz"), "md5"))
             for name in IDX_NAMES}
    monkeypatch.setattr(download, "OFFICIAL", table)
    return table


def test_download(data_dir, server):
    ds = load_dataset("fmnist", data_dir, download=True)
    assert len(ds.train_x) == 30
    assert sorted(p.name for p in data_dir.iterdir() if p.name != "cache") == sorted(server)


def test_download_with_bad_checksum_leaves_nothing(data_dir, server):
    name = "t10k-images-idx3-ubyte.gz"
    server[name] = server[name]._replace(md5="0" * 32)
    with pytest.raises(DatasetError, match=f"{name}: md5 .* is not the official 0{{32}}; download discarded"):
        load_dataset("fmnist", data_dir, download=True)
    assert name not in [p.name for p in data_dir.iterdir()]
    assert not [p for p in data_dir.iterdir() if p.name.endswith(".tmp")]


def test_download_failure_says_how_to_get_the_data(data_dir, server):
    name = "train-labels-idx1-ubyte.gz"
    server[name] = server[name]._replace(url=(data_dir / "nowhere.gz").as_uri())
    with pytest.raises(DatasetError, match="the download failed .*apt-get install dataset-fashion-mnist") as info:
        load_dataset("fmnist", data_dir, download=True)
    assert "\n" not in str(info.value)


def test_official_file_with_wrong_md5_is_rejected(data_dir, server):
    write_fmnist(data_dir)
    path = data_dir / "train-labels-idx1-ubyte.gz"
    server[path.name] = server[path.name]._replace(size=path.stat().st_size, md5="f" * 32)
    with pytest.raises(DatasetError, match="is not the official f{32}"):
        load_dataset("fmnist", data_dir)


# -------------------------------------------------------------------------------------- synthetic

def test_synthetic_is_deterministic_and_learnable():
    a, b = make_synthetic(), load_dataset("synthetic")
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert a.train_x.shape == (1200, 1, 16, 16) and a.test_x.shape == (400, 1, 16, 16)
    assert a.train_x.dtype == torch.uint8 and a.num_classes == 10
    assert torch.bincount(a.train_y).tolist() == [120] * 10
    assert 0 < a.mean[0] < 1 and 0 < a.std[0] < 1
    # A nearest-class-mean classifier, fitted on train, should be far above chance (10%) on test.
    x, xt = a.train_x.float().flatten(1), a.test_x.float().flatten(1)
    means = torch.stack([x[a.train_y == c].mean(0) for c in range(10)])
    accuracy = (torch.cdist(xt, means).argmin(1) == a.test_y).float().mean().item()
    assert accuracy > 0.5
    assert not torch.equal(make_synthetic(seed=1).train_x, a.train_x)


# --------------------------------------------------------------------------------------- real data

@pytest.mark.realdata
@pytest.mark.parametrize("name, n_train, per_class, shape", [
    ("fmnist", 60000, 6000, (1, 28, 28)),
    ("cifar10", 50000, 5000, (3, 32, 32)),
    ("cifar100", 50000, 500, (3, 32, 32)),
])
def test_real_dataset(name, n_train, per_class, shape):
    status = {row["name"]: row for row in dataset_status()}[name]
    if not status["ready"]:
        pytest.skip(f"{name} is not on this machine: {status['how_to_get']}")
    ds = load_dataset(name, download=False)
    assert (len(ds.train_x), len(ds.test_x)) == (n_train, 10000)
    assert ds.input_shape == shape and ds.train_x.dtype == torch.uint8
    assert torch.bincount(ds.train_y).tolist() == [per_class] * ds.num_classes
    assert torch.bincount(ds.test_y).tolist() == [10000 // ds.num_classes] * ds.num_classes
