"""``dbluigi.toml`` as text: its name, where its sections and keys sit, ``${ENV}`` values.

Shared by the parser of the whole file (``dbluigi.config``) and of its ``[sources]``
section (``dbluigi.sources.config``), so an error names the file and line the same way
in both, and a secret referenced as ``${NAME}`` is filled in the same way.
"""

from __future__ import annotations

import os
import re

from dbluigi.errors import ProjectError

CONFIG_FILE = "dbluigi.toml"

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECTION_RE = re.compile(r"\s*\[([^\[\]]+)\]\s*(?:#.*)?$")
_KEY_RE = re.compile(r"\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)\s*=")
_KEY_PART_RE = re.compile(r"\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)\s*(?:\.|$)")


def interpolate_env(value: str, *, where: str) -> str:
    """Fill ``${NAME}`` from the environment; an unset variable is an error naming ``where``."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ProjectError(
                f"environment variable {name} is not set (used by {where})",
                hint=f"export {name}=... before running dbluigi",
            )
        return os.environ[name]

    return _ENV.sub(substitute, value)


def unset_env(value: str) -> tuple[str, ...]:
    """The ``${NAME}`` variables ``value`` names that the environment does not set."""
    names = dict.fromkeys(m.group(1) for m in _ENV.finditer(value))
    return tuple(name for name in names if name not in os.environ)


class TomlLines:
    """Where sections and keys sit in the TOML text, for error messages.

    Only what dbluigi.toml needs: ``[a.b."c.d"]`` headers and ``key =`` lines (a key
    nested in an inline table is found at its parent's line)."""

    def __init__(self, text: str) -> None:
        self.sections: dict[tuple[str, ...], int] = {}
        self.keys: dict[tuple[tuple[str, ...], str], int] = {}
        current: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), 1):
            header = _SECTION_RE.match(line)
            if header:
                current = _split_key(header.group(1))
                self.sections.setdefault(current, number)
                continue
            key = _KEY_RE.match(line)
            if key:
                self.keys.setdefault((current, _unquote(key.group(1))), number)

    def section(self, section: tuple[str, ...]) -> int | None:
        """The line of ``[section]``, or of the nearest enclosing one that is written."""
        for end in range(len(section), 0, -1):
            if section[:end] in self.sections:
                return self.sections[section[:end]]
            if end > 1 and (section[: end - 1], section[end - 1]) in self.keys:
                return self.keys[(section[: end - 1], section[end - 1])]
        return None

    def key(self, section: tuple[str, ...], key: str) -> int | None:
        """The line of ``key = ...`` in ``[section]``; None when it is not written there."""
        return self.keys.get((section, key))


def _split_key(text: str) -> tuple[str, ...]:
    parts = []
    position = 0
    while position < len(text):
        match = _KEY_PART_RE.match(text, position)
        if match is None:
            break
        parts.append(_unquote(match.group(1)))
        position = match.end()
    return tuple(parts)


def _unquote(part: str) -> str:
    return part[1:-1] if part[:1] in ('"', "'") else part
