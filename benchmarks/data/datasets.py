"""Datasets for the benchmarks: one loader for every supported on-disk format, with a verified cache.

Why it looks like this:
- Machines differ in what they can reach. A user with internet gets the official files (downloaded and
  md5-checked); machines without it get Fashion-MNIST from a Debian package and CIFAR from the lossless
  WebP bundles next to the repository. All roads end in the same `Dataset`: uint8 NCHW images, int64
  labels, so algorithms never care where the data came from (`Dataset.source` / `Dataset.notes` record it).
- Parsing the originals takes seconds (gzip, pickles, WebP decoding). Runs load the data many times, so
  the decoded arrays are cached as `.npy` files. A result is only as good as its data, so the cache is
  never trusted blindly: it is tied to the sha256 of the files it came from and to checksums of its own
  arrays, and is rebuilt (with a note on stderr) whenever either no longer matches.
- Every failure a user can cause (missing, truncated or tampered files) raises `DatasetError` with one
  line that says what is wrong and how to fix it.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import sys
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from . import download as dl  # aliased: `download` is also load_dataset's flag

_REPO_ROOT = Path(__file__).resolve().parents[2]
_SHARED_DATA = _REPO_ROOT.parent / "shared" / "data"

# Places searched after the data directory. A module-level table so tests can hide this machine's copies.
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fmnist": (Path("/usr/share/datasets/fashion-mnist"),),
    "cifar10": (_SHARED_DATA,),
    "cifar100": (_SHARED_DATA,),
    "cinic10": (_SHARED_DATA,),
}

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz",
             "cinic10": "CINIC-10.tar.gz"}
_BUNDLES = {"cifar10": "cifar10_webp.npz", "cifar100": "cifar100_webp.npz"}
_FMNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# Normalisation statistics as in the DynaFed official code. DynaFed normalises CIFAR-100 with the
# CIFAR-10 statistics too, so we reuse them for both rather than "fixing" it, to stay comparable.
_CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
# CINIC-10's own statistics (the official README's cinic_mean / cinic_std), as DynaFed's get_cinic10 uses.
_CINIC10_STATS = ((0.47889522, 0.47227842, 0.43047404), (0.24205776, 0.23828046, 0.25874835))
# Class folders of the official archive, in the order ImageFolder (DynaFed's loader) numbers them.
_CINIC10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DatasetFacts(NamedTuple):
    """What a dataset is without loading it (run-time estimates need no data on disk)."""
    input_shape: tuple[int, int, int]
    num_classes: int
    train_size: int
    test_size: int


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: its title in tables, its facts, its normalisation, whether it is read from
    files (the synthetic one is generated in memory)."""
    title: str
    facts: DatasetFacts
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    from_files: bool = True


# The dataset registry: every other module (config choices, estimates, reports' titles through
# summary.json) reads names and facts from here, so a new dataset is an entry here plus its parser.
DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, info: DatasetInfo) -> None:
    if name in DATASETS and DATASETS[name] != info:
        raise RuntimeError(f"dataset {name!r} registered twice")
    DATASETS[name] = info


register_dataset("fmnist", DatasetInfo("Fashion-MNIST", DatasetFacts((1, 28, 28), 10, 60_000, 10_000),
                                       (0.1307,), (0.3081,)))
register_dataset("cifar10", DatasetInfo("CIFAR-10", DatasetFacts((3, 32, 32), 10, 50_000, 10_000), *_CIFAR10_STATS))
register_dataset("cifar100", DatasetInfo("CIFAR-100", DatasetFacts((3, 32, 32), 100, 50_000, 10_000),
                                         *_CIFAR10_STATS))
# CINIC-10: the official train split (90,000) for clients, test (90,000) for evaluation, as DynaFed;
# the official valid split is not used (our validation split is carved from train, as for every dataset).
register_dataset("cinic10", DatasetInfo("CINIC-10", DatasetFacts((3, 32, 32), 10, 90_000, 90_000), *_CINIC10_STATS))
# make_synthetic's defaults; its statistics are computed from the generated pixels.
register_dataset("synthetic", DatasetInfo("synthetic", DatasetFacts((1, 16, 16), 10, 1200, 400), from_files=False))

DATASET_NAMES = tuple(DATASETS)
REAL_DATASETS = tuple(name for name, info in DATASETS.items() if info.from_files)
DATASET_FACTS = {name: info.facts for name, info in DATASETS.items()}


class DatasetError(Exception):
    """A dataset cannot be loaded; the message is one line saying why and what to do."""


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors field by field is ambiguous
class Dataset:
    name: str
    train_x: torch.Tensor  # uint8 (N, C, H, W)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor   # uint8 (M, C, H, W)
    test_y: torch.Tensor   # int64 (M,)
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, in [0, 1] pixel units
    std: tuple[float, ...]
    source: str
    notes: str = ""

    def __post_init__(self):
        for x, y in ((self.train_x, self.train_y), (self.test_x, self.test_y)):
            if x.dtype != torch.uint8 or x.ndim != 4 or y.dtype != torch.int64 or y.shape != (len(x),):
                raise ValueError(f"{self.name}: images must be uint8 (N,C,H,W) with int64 (N,) labels")
        if not len(self.mean) == len(self.std) == self.train_x.shape[1]:
            raise ValueError(f"{self.name}: mean/std need one value per channel")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])


class _Source(NamedTuple):
    kind: str  # "idx" (four Fashion-MNIST files), "archive" (official CIFAR tar.gz) or "bundle" (WebP npz)
    files: tuple[Path, ...]

    @property
    def location(self) -> str:
        return str(self.files[0].parent if self.kind == "idx" else self.files[0])


class _Parsed(NamedTuple):
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    notes: str


# ----------------------------------------------------------------------------------------- public API

def default_data_dir() -> Path:
    env = os.environ.get("HETBENCH_DATA")
    return Path(env).expanduser() if env else _REPO_ROOT / "data"


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool | None = None) -> Dataset:
    """Load `name`, from the cache when it is current. `download=None` means: unless HETBENCH_OFFLINE=1."""
    _check_name(name)
    if name == "synthetic":
        return make_synthetic()
    data_dir = _resolve_dir(data_dir)
    source = _find_source(name, data_dir) or _download(name, data_dir, download)
    cache = _cache_dir(data_dir, name)
    parsed = _load_cached(name, cache, source)
    if parsed is None:
        fingerprints, parsed = _parse(name, source)
        _try_write_cache(cache, fingerprints, parsed, source)
    return _to_dataset(name, parsed, source)


def prepare_dataset(name: str, data_dir: str | Path | None = None) -> Path:
    """Find (or download) the sources of `name` and build its cache; return the cache directory."""
    _check_name(name)
    if name == "synthetic":
        raise DatasetError("dataset.name: 'synthetic' is generated in memory and has nothing to prepare")
    data_dir = _resolve_dir(data_dir)
    source = _find_source(name, data_dir) or _download(name, data_dir, None)
    cache = _cache_dir(data_dir, name)
    if _load_cached(name, cache, source) is None:
        fingerprints, parsed = _parse(name, source)
        try:
            _write_cache(cache, fingerprints, parsed, source)
        except OSError as e:
            raise DatasetError(f"cannot write the {name} cache in {cache}: {e}") from None
    return cache


def dataset_status(data_dir: str | Path | None = None) -> list[dict]:
    """Where each real dataset would be loaded from, whether its cache is current, how to get it."""
    data_dir = _resolve_dir(data_dir)
    rows = []
    for name in REAL_DATASETS:
        source = _find_source(name, data_dir)
        rows.append({
            "name": name,
            "ready": source is not None,
            "found_at": source.location if source else None,
            "cached": source is not None and _cache_is_current(_cache_dir(data_dir, name), source),
            "how_to_get": _how_to_get(name, data_dir),
        })
    return rows


def source_files(name: str, data_dir: str | Path | None = None) -> tuple[Path, ...]:
    """The files `name` would be loaded from here (to copy them to another machine); DatasetError when
    there are none, saying how to get them."""
    _check_name(name)
    data_dir = _resolve_dir(data_dir)
    source = _find_source(name, data_dir) if name != "synthetic" else None
    if source is None:
        raise DatasetError(f"dataset.name: {name} has no files here; {_how_to_get(name, data_dir)}")
    return tuple(source.files)


def make_synthetic(n_train: int = 1200, n_test: int = 400, num_classes: int = 10,
                   shape: tuple[int, int, int] = (1, 16, 16), seed: int = 0) -> Dataset:
    """A tiny learnable dataset: each class is a blocky random pattern, each image that pattern plus noise.

    Blocky (4x4 grid) patterns give local structure a ConvNet picks up quickly; the heavy noise keeps
    single pixels unreliable, so a small ConvNet reaches roughly 60-75% test accuracy (chance: 10%) in a
    few epochs rather than saturating at once, leaving room for algorithms to differ. Same arguments,
    same tensors.
    """
    rng = np.random.default_rng(seed)
    c, h, w = shape
    grid = rng.random((num_classes, c, 4, 4))
    block = np.ones((1, 1, -(-h // 4), -(-w // 4)))
    prototypes = np.kron(grid, block)[:, :, :h, :w]

    def draw(n):
        y = rng.permutation(np.arange(n, dtype=np.int64) % num_classes)
        x = 0.3 + 0.4 * prototypes[y] + rng.normal(0.0, 0.5, (n, c, h, w))
        return torch.from_numpy(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)), torch.from_numpy(y)

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    pixels = train_x.double().div(255).transpose(0, 1).reshape(c, -1)
    return Dataset("synthetic", train_x, train_y, test_x, test_y,
                   classes=tuple(f"class_{i}" for i in range(num_classes)),
                   mean=tuple(pixels.mean(1).tolist()), std=tuple(pixels.std(1).tolist()),
                   source=f"make_synthetic(seed={seed})", notes="generated in memory")


# ---------------------------------------------------------------------------------- finding sources

def _check_name(name: str) -> None:
    if name not in DATASET_NAMES:
        raise DatasetError(f"dataset.name: {name!r} is not one of {', '.join(DATASET_NAMES)}")


def _resolve_dir(data_dir: str | Path | None) -> Path:
    return (Path(data_dir).expanduser() if data_dir is not None else default_data_dir()).absolute()


def _find_source(name: str, data_dir: Path) -> _Source | None:
    """The first complete source: the data directory first, then this machine's known places."""
    for d in (data_dir, *SYSTEM_DIRS[name]):
        if name == "fmnist":
            files = [_first_file(d / (f + ".gz"), d / f) for f in _IDX_FILES]
            if all(files):
                return _Source("idx", tuple(files))
            continue
        for kind, file_name in (("archive", _ARCHIVES[name]), ("bundle", _BUNDLES.get(name))):
            if file_name and (d / file_name).is_file():
                return _Source(kind, (d / file_name,))
    return None


def _first_file(*paths: Path) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def _how_to_get(name: str, data_dir: Path) -> str:
    if name == "fmnist":
        return ("run `apt-get install dataset-fashion-mnist` (it installs to /usr/share/datasets/fashion-mnist), "
                f"or put the four official IDX files ({', '.join(_IDX_FILES)}; gzipped or not) in {data_dir} "
                "or in a directory named by HETBENCH_DATA")
    archive = _ARCHIVES[name]
    if name not in _BUNDLES:
        return (f"download the official {archive} ({dl.OFFICIAL[archive].url}, {dl.OFFICIAL[archive].size / 1e6:.0f} MB) "
                f"into {data_dir} or a directory named by HETBENCH_DATA (hetbench downloads it itself when the "
                "network allows)")
    return (f"put the official {archive} ({dl.OFFICIAL[archive].url}) or the WebP bundle "
            f"{_BUNDLES[name]} in {data_dir} or in a directory named by HETBENCH_DATA")


def _download(name: str, data_dir: Path, allowed: bool | None) -> _Source:
    places = ", ".join(str(d) for d in (data_dir, *SYSTEM_DIRS[name]))
    missing = f"{DATASETS[name].title} not found (looked in {places})"
    if allowed is None:
        allowed = os.environ.get("HETBENCH_OFFLINE", "") in ("", "0")
    if not allowed:
        raise DatasetError(f"{missing} and downloading is off: {_how_to_get(name, data_dir)}")
    try:
        for file_name in _files_to_download(name, data_dir):
            dl.fetch(file_name, data_dir)
    except dl.DownloadError as e:
        raise DatasetError(f"{missing} and the download failed ({e}): {_how_to_get(name, data_dir)}") from None
    return _find_source(name, data_dir)


def _files_to_download(name: str, data_dir: Path) -> list[str]:
    if name != "fmnist":
        return [_ARCHIVES[name]]
    return [f + ".gz" for f in _IDX_FILES if not _first_file(data_dir / (f + ".gz"), data_dir / f)]


# ------------------------------------------------------------------------------------------ parsing

def _parse(name: str, source: _Source) -> tuple[list[dict], _Parsed]:
    """Verify and decode a source; also return the fingerprints of its files for the cache."""
    _say(f"reading {DATASETS[name].title} from {source.location} (the cache makes later loads fast)")
    fingerprints = [_fingerprint(f) for f in source.files]
    try:
        for f in source.files:
            dl.verify_official(f)
    except dl.DownloadError as e:
        raise DatasetError(str(e)) from None
    if source.kind == "idx":
        parsed = _parse_idx_set(source.files)
    elif source.kind == "archive" and name == "cinic10":
        parsed = _parse_cinic_archive(source.files[0])
    elif source.kind == "archive":
        parsed = _parse_cifar_archive(name, source.files[0])
    else:
        parsed = _parse_webp_bundle(name, source.files[0])
    return fingerprints, _validated(parsed, DATASETS[name].facts.num_classes, source.location)


def _validated(p: _Parsed, num_classes: int, where: str) -> _Parsed:
    for split, x, y in (("train", p.train_x, p.train_y), ("test", p.test_x, p.test_y)):
        if len(x) != len(y):
            raise DatasetError(f"{where}: the {split} split has {len(x)} images but {len(y)} labels")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise DatasetError(f"{where}: {split} labels fall outside 0..{num_classes - 1}")
    if p.train_x.shape[1:] != p.test_x.shape[1:]:
        raise DatasetError(f"{where}: train images are {p.train_x.shape[1:]} but test images {p.test_x.shape[1:]}")
    if len(p.classes) != num_classes:
        raise DatasetError(f"{where}: {len(p.classes)} class names for {num_classes} classes")
    return p


def _parse_idx_set(files: tuple[Path, ...]) -> _Parsed:
    train_x, train_y, test_x, test_y = (_read_idx(f, ndim) for f, ndim in zip(files, (3, 1, 3, 1)))
    return _Parsed(train_x[:, None], train_y.astype(np.int64), test_x[:, None], test_y.astype(np.int64),
                   _FMNIST_CLASSES, "")


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes: 0x0000, type 0x08, ndim, ndim big-endian uint32 sizes, data."""
    raw = _read_maybe_gzip(path)
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:4] != bytes((0, 0, 0x08, ndim)):
        raise DatasetError(f"{path}: not an IDX file of {ndim}-d unsigned bytes (bad header)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DatasetError(f"{path}: the header promises {'x'.join(map(str, dims))} = {expected} bytes "
                           f"but {len(raw) - header} follow (truncated or corrupt)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                f.seek(0)
                return f.read()
            f.seek(0)
            with gzip.GzipFile(fileobj=f) as g:
                return g.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: cannot read it ({type(e).__name__}: {e})") from None


# (training members, test members, meta member, label key, class-name key) in the official archives
_CIFAR_LAYOUT = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                "labels", "label_names"),
    "cifar100": (["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


class _CifarUnpickler(pickle.Unpickler):
    """The official batches are pickles; allow only what numpy arrays need, so a file can't run code."""
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _parse_cifar_archive(name: str, path: Path) -> _Parsed:
    """Read the pickled batches straight from the tar (in archive order: a gzip stream only seeks forward)."""
    train_parts, test_parts, meta_name, label_key, names_key = _CIFAR_LAYOUT[name]
    wanted = {*train_parts, *test_parts, meta_name}
    members = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted:
                    members[base] = _unpickle(tar.extractfile(member).read(), f"{path}:{member.name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: cannot read the archive ({type(e).__name__}: {e})") from None
    absent = sorted(wanted - members.keys())
    if absent:
        raise DatasetError(f"{path}: not a {DATASETS[name].title} python archive (missing {', '.join(absent)})")
    try:
        train_x, train_y = _stack_batches([members[m] for m in train_parts], label_key)
        test_x, test_y = _stack_batches([members[m] for m in test_parts], label_key)
        classes = tuple(_text(c) for c in members[meta_name][names_key])
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: unexpected batch contents ({type(e).__name__}: {e})") from None
    return _Parsed(train_x, train_y, test_x, test_y, classes, "")


def _parse_cinic_archive(path: Path) -> _Parsed:
    """Read the PNGs of ``<split>/<class>/<file>.png`` (any leading folders) for the train and test splits.

    Images are ordered by (split, class, file name), not by archive order, so any repacking of the same
    files gives the same arrays. Some CINIC-10 images are greyscale; they are converted to RGB, as
    ImageFolder does.
    """
    found: dict[str, list[tuple[int, str, np.ndarray]]] = {"train": [], "test": []}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = member.name.split("/")
                if not member.isfile() or len(parts) < 3 or not parts[-1].lower().endswith(".png"):
                    continue
                split, cls = parts[-3], parts[-2]
                if split not in found or cls not in _CINIC10_CLASSES:
                    continue
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as img:
                    pixels = np.asarray(img.convert("RGB"))
                if pixels.shape != (32, 32, 3):
                    raise DatasetError(f"{path}:{member.name}: image is {pixels.shape[1]}x{pixels.shape[0]}, not 32x32")
                found[split].append((_CINIC10_CLASSES.index(cls), parts[-1], pixels))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: cannot read the archive ({type(e).__name__}: {e})") from None
    arrays = []
    for split, items in found.items():
        missing = sorted(set(_CINIC10_CLASSES) - {_CINIC10_CLASSES[label] for label, _, _ in items})
        if missing:
            raise DatasetError(f"{path}: not a CINIC-10 archive (no {split}/{missing[0]}/*.png images)")
        items.sort(key=lambda item: (item[0], item[1]))
        x = np.stack([pixels for _, _, pixels in items]).transpose(0, 3, 1, 2)
        arrays += [np.ascontiguousarray(x), np.array([label for label, _, _ in items], dtype=np.int64)]
    return _Parsed(*arrays, _CINIC10_CLASSES, "CINIC-10 train and test splits (valid unused, as DynaFed)")


def _unpickle(blob: bytes, where: str) -> dict:
    try:
        obj = _CifarUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as e:  # a malformed pickle can fail in many ways; all mean "not a CIFAR batch"
        raise DatasetError(f"{where}: not a CIFAR batch ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: not a CIFAR batch (a {type(obj).__name__}, not a dict)")
    return {_text(k): v for k, v in obj.items()}


def _text(s) -> str:
    return s.decode("utf-8") if isinstance(s, bytes) else str(s)


def _stack_batches(batches: list[dict], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 3072 bytes (1024 R, 1024 G, 1024 B, each row-major) -> (N, 3, 32, 32)."""
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"data has shape {data.shape}, expected (N, 3072)")
    return data.reshape(-1, 3, 32, 32), labels


def _parse_webp_bundle(name: str, path: Path) -> _Parsed:
    """The CIFAR WebP bundle (see shared/data/README.md): lossless strips, checked against sha256."""
    names_key = "label_names" if name == "cifar10" else "fine_label_names"
    try:
        with np.load(path, allow_pickle=False) as z:
            absent = sorted({"n_train", "n_test", "train_webp", "test_webp", "train_offsets", "test_offsets",
                             "sha256_x_train", "sha256_x_test", "y_train", "y_test", names_key} - set(z.files))
            if absent:
                raise DatasetError(f"{path}: not a {DATASETS[name].title} WebP bundle (missing {', '.join(absent)})")
            train_x, test_x = (_decode_split(z, split, path) for split in ("train", "test"))
            train_y, test_y = z["y_train"].astype(np.int64), z["y_test"].astype(np.int64)
            classes = tuple(str(c) for c in z[names_key])
            approx = [len(z[k]) if k in z.files else 0 for k in ("approx_jpeg_train_idx", "approx_jpeg_test_idx")]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DatasetError(f"{path}: cannot read the bundle ({type(e).__name__}: {e})") from None
    notes = f"{DATASETS[name].title} from the WebP bundle {path.name}"
    if sum(approx):
        notes += (f": {sum(approx)} images ({approx[0]} train, {approx[1]} test) recovered from JPEG copies, "
                  "not bit-exact")
    return _Parsed(train_x, train_y, test_x, test_y, classes, notes)


def _decode_split(z, split: str, path: Path) -> np.ndarray:
    """Decode one split's strips into NHWC, check the stored sha256, return NCHW."""
    n, blob, offsets = int(z[f"n_{split}"]), z[f"{split}_webp"].tobytes(), z[f"{split}_offsets"]
    out = np.empty((n, 32, 32, 3), np.uint8)
    pos = 0
    for start, end in zip(offsets[:-1], offsets[1:]):
        strip = np.asarray(Image.open(io.BytesIO(blob[start:end])).convert("RGB"))
        k = strip.shape[1] // 32
        if strip.shape[0] != 32 or strip.shape[1] % 32 or pos + k > n:
            raise DatasetError(f"{path}: {split} strip at byte {start} has size {strip.shape[:2]}, "
                               f"which does not fit {n} 32x32 images")
        out[pos:pos + k] = strip.reshape(32, k, 32, 3).transpose(1, 0, 2, 3)
        pos += k
    if pos != n:
        raise DatasetError(f"{path}: the {split} strips hold {pos} images, not {n}")
    digest = _sha256(out)
    if digest != str(z[f"sha256_x_{split}"]):
        raise DatasetError(f"{path}: decoded {split} images do not match the stored sha256 (corrupt bundle)")
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(arr.data).hexdigest()


def _to_dataset(name: str, p: _Parsed, source: _Source) -> Dataset:
    mean, std = DATASETS[name].mean, DATASETS[name].std
    return Dataset(name, torch.from_numpy(p.train_x), torch.from_numpy(p.train_y),
                   torch.from_numpy(p.test_x), torch.from_numpy(p.test_y),
                   classes=p.classes, mean=mean, std=std, source=source.location, notes=p.notes)


# -------------------------------------------------------------------------------------------- cache

_CACHE_VERSION = 1
_ARRAYS = ("train_x", "train_y", "test_x", "test_y")
_warned_unwritable = False


class _CacheCorrupt(Exception):
    pass


def _cache_dir(data_dir: Path, name: str) -> Path:
    return data_dir / "cache" / name


def _fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256": dl.file_digest(path, "sha256")}


def _current_sources(recorded: list[dict], source: _Source) -> list[dict] | None:
    """The recorded fingerprints, refreshed, if `source` still has the same contents; else None.

    Size and mtime are the fast path; a changed mtime alone (a copy, a `touch`) costs a sha256 but
    keeps the cache when the contents are the same.
    """
    if [r["path"] for r in recorded] != [str(f) for f in source.files]:
        return None
    current = []
    for rec, path in zip(recorded, source.files):
        st = path.stat()
        if st.st_size != rec["size"]:
            return None
        if st.st_mtime_ns != rec["mtime_ns"]:
            fresh = _fingerprint(path)
            if fresh["sha256"] != rec["sha256"]:
                return None
            rec = fresh
        current.append(rec)
    return current


def _read_meta(cache: Path, source: _Source) -> tuple[dict, list[dict]] | None:
    """The cache's meta and refreshed source fingerprints, or None if there is no cache for this source."""
    try:
        meta = json.loads((cache / "meta.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise _CacheCorrupt(f"unreadable meta.json: {e}") from None
    try:
        if meta["version"] != _CACHE_VERSION:
            return None
        current = _current_sources(meta["sources"], source)
    except (KeyError, TypeError) as e:
        raise _CacheCorrupt(f"malformed meta.json ({type(e).__name__}: {e})") from None
    return (meta, current) if current is not None else None


def _cache_is_current(cache: Path, source: _Source) -> bool:
    try:
        return _read_meta(cache, source) is not None
    except _CacheCorrupt:
        return False


def _load_cached(name: str, cache: Path, source: _Source) -> _Parsed | None:
    """The cached arrays if they belong to `source` and pass their checks; None means: rebuild."""
    try:
        found = _read_meta(cache, source)
        if found is None:
            return None
        meta, current = found
        arrays = {key: _load_array(cache / f"{key}.npy", meta["arrays"][key]) for key in _ARRAYS}
        parsed = _Parsed(**arrays, classes=tuple(meta["classes"]), notes=meta["notes"])
    except (_CacheCorrupt, OSError, ValueError, KeyError, TypeError) as e:
        _say(f"the {name} cache in {cache} is unusable ({e}); rebuilding it")
        return None
    if current != meta["sources"]:
        meta["sources"] = current
        try:
            dl.atomic_write(cache / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
        except OSError:
            pass  # only the fast path is lost: the next load hashes the source again
    return parsed


def _load_array(path: Path, expected: dict) -> np.ndarray:
    arr = np.load(path, allow_pickle=False)
    if list(arr.shape) != expected["shape"] or arr.dtype.str != expected["dtype"]:
        raise _CacheCorrupt(f"{path.name} is {arr.dtype.str}{list(arr.shape)}, "
                            f"expected {expected['dtype']}{expected['shape']}")
    if zlib.crc32(arr.data) != expected["crc32"]:
        raise _CacheCorrupt(f"{path.name} fails its checksum")
    return arr


def _write_cache(cache: Path, fingerprints: list[dict], p: _Parsed, source: _Source) -> None:
    """Arrays first, meta last; every file replaced atomically. A crash in between leaves meta and
    arrays disagreeing, which the array checksums catch on the next load."""
    cache.mkdir(parents=True, exist_ok=True)
    specs = {}
    for key in _ARRAYS:
        arr = np.ascontiguousarray(getattr(p, key))
        dl.atomic_write(cache / f"{key}.npy", lambda f: np.save(f, arr, allow_pickle=False))
        specs[key] = {"shape": list(arr.shape), "dtype": arr.dtype.str, "crc32": zlib.crc32(arr.data)}
    meta = {"version": _CACHE_VERSION, "source": source.location, "sources": fingerprints,
            "arrays": specs, "classes": list(p.classes), "notes": p.notes}
    dl.atomic_write(cache / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))


def _try_write_cache(cache: Path, fingerprints: list[dict], p: _Parsed, source: _Source) -> None:
    global _warned_unwritable
    try:
        _write_cache(cache, fingerprints, p, source)
    except OSError as e:
        if not _warned_unwritable:
            _say(f"cannot write the dataset cache in {cache} ({e.strerror or e}); loading without a cache")
            _warned_unwritable = True


def _say(message: str) -> None:
    print(f"hetbench: {message}", file=sys.stderr)
