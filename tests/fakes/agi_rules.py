"""Asterisk 22's string rules that the fake Asterisk (tests/fakes/agi.py) applies.

- `parse_agi_args`: how res_agi.c ``parse_args()`` splits a command line into arguments.
- `expand`: ``${...}`` substitution as pbx_substitute_variables_helper_full() does it: nested
  ``${F(${G()},x)}``, ``${VAR:offset:length}``, unknown names expand to nothing. ``$[...]``
  arithmetic is not evaluated (left as is).
"""

from __future__ import annotations

from collections.abc import Mapping


def parse_agi_args(line: str) -> list[str]:
    """Split a command line exactly like res_agi.c ``parse_args()`` (Asterisk 22).

    Double quotes group (and toggle anywhere in a word), a backslash makes the next character
    literal, spaces and tabs separate words; ``""`` is an empty argument.
    """
    args: list[list[str]] = []
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                args.append([])
                whitespace = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            args.append([])
            whitespace = False
        args[-1].append(ch)
        escaped = False
    return ["".join(a) for a in args]


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Substitute every ``${...}`` in ``text`` from ``variables`` (names as in GET VARIABLE)."""
    out: list[str] = []
    pos = 0
    while True:
        start = text.find("${", pos)
        if start < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:start])
        # Like Asterisk: every '{' opens and every '}' closes; a "${" inside means nested.
        depth, i, nested = 1, start + 2, False
        while i < len(text) and depth:
            if text.startswith("${", i):
                nested = True
            elif text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        inner = text[start + 2 : i - 1] if depth == 0 else text[start + 2 :]
        if nested:
            inner = expand(inner, variables)
        name, offset, length = split_offset(inner)
        value = variables.get(name, "")
        out.append(substring(value, offset, length) if (offset or length is not None) else value)
        pos = i


def substring(value: str, offset: int, length: int | None) -> str:
    """``${VAR:offset:length}`` as Asterisk's substring() computes it."""
    size = len(value)
    if offset < 0:
        offset = max(size + offset, 0)
    if offset >= size:
        return ""
    if length is None:
        return value[offset:]
    if length >= 0:
        return value[offset : offset + length]
    end = size + length
    return value[offset:end] if end > offset else ""


def split_offset(name: str) -> tuple[str, int, int | None]:
    """``NAME:offset:length`` -> (NAME, offset, length); a ``:`` inside parentheses does not count."""
    depth = 0
    for i, ch in enumerate(name):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == ":" and depth == 0:
            parts = name[i + 1 :].split(":", 1)
            try:
                offset = int(parts[0] or 0)
                length = int(parts[1]) if len(parts) > 1 and parts[1] != "" else None
            except ValueError:
                offset, length = 0, None
            return name[:i], offset, length
    return name, 0, None


def single_token(expr: str) -> str | None:
    """The inside of ``expr`` when it is exactly one ``${...}``, else None."""
    if not expr.startswith("${"):
        return None
    depth = 1
    for i in range(2, len(expr)):
        if expr[i] == "{":
            depth += 1
        elif expr[i] == "}":
            depth -= 1
            if depth == 0:
                return expr[2:i] if i == len(expr) - 1 else None
    return None
