"""Loading: the file, ``conf.d/*.yml``, environment overrides, validation, the secrets' file mode check."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource

from ..configfiles import anchor_paths, check_readable, read_yaml
from ..errors import ConfigError
from .backbone import StoreConfig
from .model import Config

# ---------------------------------------------------------------------------------------------
# Loading

#: Environment variables understood besides ``TELEPHONYD__SECTION__KEY``. The upper block keeps the
#: names of the PHP relay that the Ameyo listener replaces, so an operator moves over unchanged.
ENV_ALIASES: dict[str, str] = {
    "TELEPHONYD_NODE_ID": "node_id",
    "TELEPHONYD_STORE_URL": "store.url",
    "TELEPHONYD_ADMIN_TOKEN": "http.admin_token",
    "TELEPHONYD_DID_OPTIMIZER_API_KEY": "did_optimizer.api_key",
    "TELEPHONYD_AMI_SECRET": "ami.secret",
    "TELEPHONYD_MQTT_PASSWORD": "mqtt.password",
    "TELEPHONYD_AMEYO_TOKEN": "ameyo.token",
    "TEST_BASE_URL": "tops.test.base_url",
    "PROD_BASE_URL": "tops.prod.base_url",
    "TEST_API_KEY": "tops.test.api_key",
    "PROD_API_KEY": "tops.prod.api_key",
    "INDEX_ENV": "tops.env",
    "ENABLE_REAL_SEND": "tops.real_send",
    "PHONE1_STATE_TTL_SECONDS": "ameyo.phone1_state_ttl_s",
    "REQUEST_PROCESSING_TTL_SECONDS": "ameyo.processing_ttl_s",
    "REQUEST_DEDUPE_TTL_SECONDS": "ameyo.dedupe_ttl_s",
}

_GENERIC_PREFIX = "TELEPHONYD__"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


#: The settings class `_GenericEnvironment` walks: `Config`'s fields, so a variable's name is split
#: along the sections' own field tree (``DID_OPTIMIZER__API_KEY`` is ``did_optimizer.api_key``).
_ConfigFields = create_model(  # type: ignore[call-overload]
    "_ConfigFields",
    __base__=BaseSettings,
    **{name: (field.annotation, None) for name, field in Config.model_fields.items()},
)


class _GenericEnvironment(EnvSettingsSource):
    """``TELEPHONYD__SECTION__KEY=value`` as nested raw data, every value read as YAML.

    pydantic-settings splits the names (prefix ``TELEPHONYD__``, ``__`` between levels, any case
    after the prefix); nothing is validated here, `validate` does it once over the merged data.
    Every field counts as "complex", so each value, a scalar included, goes through
    `decode_complex_value` and is read as YAML (a superset of JSON): ``true``, ``120``, ``null``,
    ``[127.0.0.1:1, 127.0.0.1:2]`` mean what they mean in the file. An empty value stays ``""``.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(
            _ConfigFields, case_sensitive=False, env_prefix=_GENERIC_PREFIX, env_nested_delimiter="__"
        )
        # The prefix itself is matched in capitals only, as it always was; the rest in any case.
        self.env_vars = {name.lower(): value for name, value in environ.items() if name.startswith(_GENERIC_PREFIX)}

    def field_is_complex(self, field: FieldInfo) -> bool:
        return True

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        return yaml.safe_load(value) if value else value


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The part of the configuration set by environment variables, as nested data.

    `ENV_ALIASES` first (raw strings; an empty one is ignored), then ``TELEPHONYD__SECTION__KEY``
    (read as YAML), which wins over an alias naming the same key. Raises `ConfigError` naming the
    dotted path when a ``TELEPHONYD__`` value is not valid YAML.
    """
    aliased: dict[str, Any] = {}
    for name, dotted in ENV_ALIASES.items():
        if environ.get(name, "") != "":
            _set_dotted(aliased, dotted, environ[name])
    generic: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(_GENERIC_PREFIX) or len(name) == len(_GENERIC_PREFIX):
            continue
        dotted = ".".join(p.lower() for p in name[len(_GENERIC_PREFIX):].split("__"))
        try:
            yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"{name} is not valid YAML", dotted) from None
        if dotted.split(".")[0] not in Config.model_fields:
            # pydantic-settings reads only the variables that name a field; an unknown section
            # still reaches `validate`, which calls it an unknown key as it does in a file.
            _set_dotted(generic, dotted, yaml.safe_load(value) if value else value)
    generic = deep_merge(generic, _GenericEnvironment(environ)())
    return deep_merge(aliased, generic)


def config_files(path: Path) -> list[Path]:
    """The main file and the ``conf.d/*.yml`` files beside it, in merge order."""
    conf_d = path.parent / "conf.d"
    if not conf_d.is_dir():
        return [path]
    try:
        names = os.listdir(conf_d)  # glob() would skip an unreadable directory without a word
    except OSError as exc:
        raise ConfigError(f"cannot read {conf_d}: {exc.strerror}") from None
    extra = [conf_d / name for name in names if name.endswith((".yml", ".yaml"))]
    return [path, *sorted(extra, key=lambda p: p.name)]


def validate(data: dict[str, Any]) -> Config:
    """Validate raw data into a `Config`; the first error raises `ConfigError` with its dotted path."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"]) or None
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        raise ConfigError(message, path) from None


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load, merge and validate the configuration.

    ``path`` defaults to ``$TELEPHONYD_CONFIG``; with neither, the built-in defaults apply (plus the
    environment). With a file, relative file paths (the SQLite file of ``store.url`` and
    ``ps_contacts.url``, the built-in default included; ``*.ca_file``) are taken relative to that
    file's directory, not the working directory. Raises `ConfigError` (exit 78) on missing or
    unreadable files (naming the path and the reason), bad YAML, a key repeated in one mapping
    (naming both lines), unknown keys and bad values, and when the file holds secrets while others
    may read it (unless ``allow_readable_secrets: true``).
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get("TELEPHONYD_CONFIG") or None
    data: dict[str, Any] = {}
    files: list[Path] = []
    if path is not None:
        main = Path(path)
        check_readable(main)
        files = config_files(main)
        for file in files:
            data = deep_merge(data, read_yaml(file))
    data = deep_merge(data, env_overrides(environ))
    if path is not None:
        default_store = StoreConfig.model_fields["url"].default.get_secret_value()
        data = anchor_paths(data, Path(os.path.abspath(path)).parent, {"store.url": default_store})
    config = validate(data)
    if not config.allow_readable_secrets:
        for file in files:
            _refuse_world_readable_secrets(file)
    return config


_SECRET_KEYS = ("admin_token", "api_key", "secret", "password", "token")


def _refuse_world_readable_secrets(file: Path) -> None:
    mode = file.stat().st_mode
    if not mode & stat.S_IROTH:
        return
    raw = read_yaml(file)
    if _holds_secret(raw) or _holds_url_password(raw):
        raise ConfigError(
            f"{file} holds secrets and is readable by others; chmod o-r it "
            "(or set allow_readable_secrets: true)"
        )


def _holds_secret(data: Any) -> bool:
    if isinstance(data, dict):
        return any(
            (k in _SECRET_KEYS and v not in (None, "")) or _holds_secret(v) for k, v in data.items()
        )
    return False


def _holds_url_password(data: dict[str, Any]) -> bool:
    for section in ("store", "ps_contacts", "vicidial"):
        block = data.get(section) if isinstance(data.get(section), dict) else {}
        for key in ("url", "urls"):
            value = block.get(key)
            for url in value if isinstance(value, list) else [value]:
                if isinstance(url, str) and "://" in url and "@" in url.split("://", 1)[1]:
                    userinfo = url.split("://", 1)[1].split("@", 1)[0]
                    if ":" in userinfo:
                        return True
    return False
