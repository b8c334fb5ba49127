"""Fill ``{{ name }}`` placeholders in SQL text.

Values come from ``dbluigi.toml``'s ``[vars]``, ``--var k=v``, a partition value
or the watermark. An undefined variable is an error naming the file and line,
never an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from dbluigi.errors import VariableError

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def placeholders(text: str) -> set[str]:
    """The variable names a text uses."""
    return set(PLACEHOLDER.findall(text))


def render(
    text: str,
    variables: Mapping[str, object],
    *,
    path: str,
    line_offset: int = 0,
) -> str:
    """Replace every placeholder by its value; raise VariableError for an undefined one."""
    if "{{" not in text:
        return text

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            line = line_offset + text.count("\n", 0, match.start()) + 1
            known = ", ".join(sorted(variables)) or "none"
            raise VariableError(
                f"undefined variable '{name}'",
                path=path,
                line=line,
                hint=f"set it in dbluigi.toml [vars] or with --var {name}=VALUE (defined: {known})",
            )
        return str(variables[name])

    return PLACEHOLDER.sub(substitute, text)
