"""Which config fields a SIGHUP applies live and which need a restart, marked on each section.

Every section class declares ``RELOAD = marks(live="...", restart="...")``: each of its fields is
named exactly once (``tests/unit/test_reload_marks.py`` walks every field). A field whose type is
a section is not marked: its own fields are. A field that holds an optional section (``http.tls``)
is marked (for turning it on or off) and its fields are marked too. A field that is a list or a
mapping (``did_select.fallback_dids``) is one key: any change inside it takes the field's mark.
"""

from __future__ import annotations

import types
from typing import Literal, Union, get_args, get_origin

from pydantic import BaseModel

Reload = Literal["live", "restart"]


def marks(live: str = "", restart: str = "") -> dict[str, Reload]:
    """``{field: "live" | "restart"}`` from two space-separated lists of field names."""
    out: dict[str, Reload] = {name: "live" for name in live.split()}
    for name in restart.split():
        if name in out:
            raise ValueError(f"{name} is marked both live and restart")
        out[name] = "restart"
    return out


def section_of(annotation: object) -> tuple[type[BaseModel] | None, bool]:
    """The section class a field holds and whether it is optional (``X | None``); (None, False)
    when the field is a plain value (number, string, list, mapping, or a model without marks such
    as a ``host:port``)."""
    if _is_section(annotation):
        return annotation, False  # type: ignore[return-value]
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and _is_section(args[0]):
            return args[0], True
    return None, False


def _is_section(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel) and "RELOAD" in annotation.__dict__


def reload_marks(model: type[BaseModel]) -> dict[str, Reload]:
    """Every marked dotted key below ``model`` (``http.admin_token``, ``http.tls``, ``http.tls.cert_file``)."""
    out: dict[str, Reload] = {}
    _walk(model, "", out)
    return out


def _walk(model: type[BaseModel], prefix: str, out: dict[str, Reload]) -> None:
    declared: dict[str, Reload] = model.__dict__.get("RELOAD", {})
    for name, field in model.model_fields.items():
        section, optional = section_of(field.annotation)
        key = prefix + name
        if section is None or optional:
            out[key] = declared[name]
        if section is not None:
            _walk(section, key + ".", out)


def mark_of(model: type[BaseModel], key: str) -> Reload:
    """The mark deciding a changed dotted ``key`` (as `telephonyd.reload.changed_keys` names them):
    the deepest marked field on its path; an unknown key needs a restart."""
    mark: Reload = "restart"
    current: type[BaseModel] | None = model
    for part in key.split("."):
        if current is None or part not in current.model_fields:
            break
        declared: dict[str, Reload] = current.__dict__.get("RELOAD", {})
        section, optional = section_of(current.model_fields[part].annotation)
        if section is None or optional:
            mark = declared.get(part, "restart")
        current = section
        if section is None:
            break
    return mark
