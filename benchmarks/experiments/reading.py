"""Reading what users write: TOML files and ``--set`` values, with every way they can be unreadable
(missing, a folder, UTF-16, not UTF-8, not TOML, empty, absurdly nested) turned into one line."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from benchmarks.core.typed import ConfigError


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML literal (number, bool, string, list), else the raw text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (ValueError, RecursionError):  # not TOML, an int of more digits than Python converts, or nested deep
        return text


# Settings nest at most three deep (algorithms.<name>.<setting>); far deeper data (a hostile or broken file)
# would only exhaust the recursion of deepcopy and the validators before failing anyway.
MAX_DEPTH = 16


def depth(value: Any) -> int:
    """How deep tables and lists nest in ``value`` (0 for a plain value), without recursing."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (dict, list)) and level < MAX_DEPTH + 1:
            deepest = max(deepest, level + 1)
            stack += [(child, level + 1) for child in (node.values() if isinstance(node, dict) else node)]
    return deepest


def read_toml(path: str | Path, option: str = "--config") -> dict:
    """A TOML file's tables; a missing, unreadable, non-UTF-8, invalid or empty file is a ConfigError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{option}: {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{option}: {path} is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {path} ({exc.strerror or exc})") from None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ConfigError(f"{option}: {path} is UTF-16 text; TOML files are UTF-8 (save it as UTF-8)")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{option}: {path} is not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    try:
        data = tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer of more digits than Python converts
        raise ConfigError(f"{option}: {path} is not valid TOML ({str(exc).splitlines()[0]})") from None
    except RecursionError:  # nested past the parser's own stack
        data = None
    if data is None or depth(data) > MAX_DEPTH:
        raise ConfigError(f"{option}: {path} nests tables or lists more than {MAX_DEPTH} deep; settings are at "
                          "most 3 deep")
    if not data:
        raise ConfigError(f"{option}: {path} is empty: it sets nothing")
    return data
