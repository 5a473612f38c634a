"""Reading configuration files strictly, and anchoring their relative paths.

A YAML mapping that names a key twice is an error here, not "the last one wins": an ``http:``
section written twice would otherwise silently drop the first one and its ``admin_token``. Relative
file paths in the configuration (the SQLite store, CA files) are taken relative to the directory of
the main configuration file, so the daemon and the CLI find the same store whatever their working
directory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first_line: int, second_line: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {first_line} and line {second_line}")
        self.key = key
        self.first_line = first_line
        self.second_line = second_line


class StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key repeated in one mapping (merge keys ``<<`` excepted:
    overriding a merged key is what they are for). Lines are 1-based."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(key, seen[key], line)
                seen[key] = line
            except TypeError:  # an unhashable key: SafeLoader reports it itself
                continue
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in ``path`` ({} for an empty file).

    Raises `ConfigError` naming the path and the reason when the file cannot be read (missing,
    a directory, permission denied), is not YAML, repeats a key in one mapping (both lines named),
    or does not hold a mapping at the top level.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: {exc}; a key may appear once per mapping") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data


def check_readable(path: Path) -> None:
    """Raise `ConfigError` with the path and the reason unless ``path`` is a regular file."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        reason = "does not exist" if isinstance(exc, FileNotFoundError) else (exc.strerror or str(exc))
        raise ConfigError(f"config file {path}: {reason}") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise ConfigError(f"config file {path}: {kind}")


#: Config keys holding file paths (dotted), resolved against the config file's directory.
PATH_KEYS = ("mqtt.ca_file", "tops.ca_file")
#: Config keys holding database URLs whose SQLite file path is resolved the same way.
URL_KEYS = ("store.url", "ps_contacts.url")


def anchor_paths(data: dict[str, Any], base: Path, defaults: dict[str, str] | None = None) -> dict[str, Any]:
    """``data`` with every relative file path (`PATH_KEYS`, the file of a SQLite URL in `URL_KEYS`)
    made absolute against ``base`` (the main config file's directory). ``defaults`` (dotted key ->
    built-in value) are filled in first where ``data`` has no value, so a relative default is
    anchored too. Absolute paths, ``:memory:`` and non-SQLite URLs are left alone; so are values
    that are not strings (validation reports them).
    """
    out = dict(data)
    for dotted, value in (defaults or {}).items():
        section, _, key = dotted.partition(".")
        values = out.get(section)
        if values is None:
            out[section] = {key: value}
        elif isinstance(values, dict) and key not in values:
            out[section] = {**values, key: value}
    for dotted in (*PATH_KEYS, *URL_KEYS):
        section, _, key = dotted.partition(".")
        values = out.get(section)
        if not isinstance(values, dict) or not isinstance(values.get(key), str):
            continue
        value = values[key]
        anchored = _anchor_sqlite_url(value, base) if dotted in URL_KEYS else _anchor_path(value, base)
        if anchored != value:
            out[section] = {**values, key: anchored}
    return out


def _anchor_path(value: str, base: Path) -> str:
    if not value or os.path.isabs(value):
        return value
    return str(base / value)


def _anchor_sqlite_url(url: str, base: Path) -> str:
    # sqlite+aiosqlite:///relative/file.db and sqlite+aiosqlite:////absolute/file.db (SQLAlchemy).
    scheme, sep, rest = url.partition(":///")
    if not sep or not scheme.startswith("sqlite"):
        return url
    file, q, query = rest.partition("?")
    if not file or file == ":memory:" or file.startswith("/") or file.startswith("file:"):
        return url
    return f"{scheme}:///{base / file}{q}{query}"
