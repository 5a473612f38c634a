"""Configuration: one YAML file, optional ``conf.d/*.yml`` beside it, environment overrides.

Load order (later wins): the file given by ``--config`` / ``TELEPHONYD_CONFIG``; every
``conf.d/*.yml`` next to it in lexical order (deep-merged: mappings merge key by key, anything else
replaces); environment variables (see `ENV_ALIASES` and the generic ``TELEPHONYD__SECTION__KEY``
form, split along the sections' field tree by pydantic-settings). The result is validated by
pydantic; an unknown key or a bad value raises `ConfigError` naming the dotted path
(``fastagi.listen.0``), which the CLI turns into exit code 78.

The package: `values` (addresses, networks, the section base), `backbone` and `edges` (the sections,
each marking its fields live or restart for SIGHUP), `model` (`Config`), `loading` (files and
environment).

Units are in the names: ``*_s`` seconds (float), ``*_bytes`` bytes.
"""

from __future__ import annotations

from ..errors import ConfigError  # what loading raises, importable from here as before
from .values import Address, AddressList, HostPort, LOOPBACK, Networks, Section, VICIDIAL_FASTAGI_PORT
from .backbone import CallLogConfig, CallLogVariables, DIDOptimizerConfig, DIDSelectConfig, DIDSelectVariables, FastAGIConfig, HTTPConfig, HTTPTLSConfig, LoggingConfig, OutboxConfig, PublicListenerConfig, StoreConfig
from .edges import AMIConfig, AMITLSConfig, AmeyoConfig, MQTTConfig, PSContactsConfig, PresenceConfig, TopsConfig, TopsTarget, VICIdialConfig
from .model import Config
from .loading import ENV_ALIASES, config_files, deep_merge, env_overrides, load_config, validate

__all__ = [
    "AMIConfig",
    "AMITLSConfig",
    "Address",
    "AddressList",
    "AmeyoConfig",
    "CallLogConfig",
    "CallLogVariables",
    "Config",
    "ConfigError",
    "DIDOptimizerConfig",
    "DIDSelectConfig",
    "DIDSelectVariables",
    "ENV_ALIASES",
    "FastAGIConfig",
    "HTTPConfig",
    "HTTPTLSConfig",
    "HostPort",
    "LOOPBACK",
    "LoggingConfig",
    "MQTTConfig",
    "Networks",
    "OutboxConfig",
    "PSContactsConfig",
    "PresenceConfig",
    "PublicListenerConfig",
    "Section",
    "StoreConfig",
    "TopsConfig",
    "TopsTarget",
    "VICIDIAL_FASTAGI_PORT",
    "VICIdialConfig",
    "config_files",
    "deep_merge",
    "env_overrides",
    "load_config",
    "validate",
]
