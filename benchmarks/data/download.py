"""Fetching and checking the official dataset files.

Kept apart from `benchmarks.data.datasets` so that the network code is small and can be tested without a
network: `OFFICIAL` is a plain module-level table, so a test can point a file name at a `file://` URL
and give it the checksum it wants (or a wrong one).

The md5 sums are the ones published with the datasets (CINIC-10's: see its entry). They identify the *official* files, so they are
applied only to a file with an official name and the official size: a plain, un-gzipped IDX file has no
published sum, and a recompressed copy (as in Debian's package) holds the same data in other bytes.
A download is written to a temporary file next to its destination and only renamed into place once its
md5 matches, so a failed or interrupted download never leaves a file that looks complete (the dataset
cache uses the same `atomic_write`).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import urllib.request
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

_FMNIST_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_CIFAR_BASE = "https://www.cs.toronto.edu/~kriz/"
# Edinburgh DataShare, the host the official repository (BayesWatch/cinic-10) links to.
_CINIC_URL = "https://datashare.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz"


class Official(NamedTuple):
    url: str
    size: int  # bytes; tells the published file from a repacked copy under the same name
    md5: str


OFFICIAL = {
    "train-images-idx3-ubyte.gz": Official(_FMNIST_BASE + "train-images-idx3-ubyte.gz", 26421880,
                                           "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train-labels-idx1-ubyte.gz": Official(_FMNIST_BASE + "train-labels-idx1-ubyte.gz", 29515,
                                           "25c81989df183df01b3e8a0aad5dffbe"),
    "t10k-images-idx3-ubyte.gz": Official(_FMNIST_BASE + "t10k-images-idx3-ubyte.gz", 4422102,
                                          "bef4ecab320f06d8554ea6380940ec79"),
    "t10k-labels-idx1-ubyte.gz": Official(_FMNIST_BASE + "t10k-labels-idx1-ubyte.gz", 5148,
                                          "bb300cfdad3c16e7a12a480ee83cd310"),
    "cifar-10-python.tar.gz": Official(_CIFAR_BASE + "cifar-10-python.tar.gz", 170498071,
                                       "c58f30108f718f92721af3b95e74349a"),
    "cifar-100-python.tar.gz": Official(_CIFAR_BASE + "cifar-100-python.tar.gz", 169001437,
                                        "eb9058c3a382ffc7106e4002c42a8d85"),
    # DataShare publishes no checksum page; this md5 (the file's ETag there) and size are the ones that
    # independent CINIC-10 loaders pin. Not verified from here: no network reaches the archive.
    "CINIC-10.tar.gz": Official(_CINIC_URL, 687544992, "6ee4d0c996905fe93221de577967a372"),
}

_CHUNK = 1 << 20
_TIMEOUT_S = 60


class DownloadError(Exception):
    """A download failed or a file does not match its official checksum (one-line message)."""


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file's contents, read in chunks so large archives do not fill memory."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_official(path: Path) -> None:
    """Check `path` against the published md5 if it is the official file: official name and size.

    Same-named files of another size are repacked copies (Debian's Fashion-MNIST is recompressed, for
    one) or test fixtures; the published md5 cannot apply to them, so they are left to the parsers.
    """
    official = OFFICIAL.get(path.name)
    if official is None or path.stat().st_size != official.size:
        return
    got = file_digest(path, "md5")
    if got != official.md5:
        raise DownloadError(f"{path}: md5 {got} is not the official {official.md5} "
                            "(corrupt copy?); delete it and get the file again")


def fetch(file_name: str, dest_dir: Path) -> Path:
    """Download the official file `file_name` into `dest_dir`, check its md5, return its path."""
    url, expected = OFFICIAL[file_name].url, OFFICIAL[file_name].md5

    def write_checked(out):
        got = _copy_url(url, out, file_name)
        if got != expected:
            raise DownloadError(f"{url}: md5 {got} is not the official {expected}; download discarded")

    dest = dest_dir / file_name
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(dest, write_checked)
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise DownloadError(f"{url}: {type(e).__name__}: {e}") from e
    return dest


def atomic_write(path: Path, write) -> None:
    """Call `write(binary_file)` on a temporary file beside `path`, then rename it to `path`.

    Readers see the old file or the complete new one, never a partial one; if `write` raises, the
    temporary file is removed. Created with mode 0666 & ~umask, like an ordinary file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_url(url: str, out, label: str) -> str:
    """Stream `url` into the open file `out` with a progress bar; return the md5 of what was read."""
    h = hashlib.md5()
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:
        size = resp.headers.get("Content-Length")
        with tqdm(total=int(size) if size else None, unit="B", unit_scale=True, desc=label) as bar:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                h.update(chunk)
                bar.update(len(chunk))
    return h.hexdigest()
