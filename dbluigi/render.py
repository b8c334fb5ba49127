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
    dialect: str | None = None,
) -> str:
    """Replace every placeholder by its value; raise VariableError for an undefined one.

    With ``dialect``, a value may not end a statement or add one (a ``;`` outside a string
    literal once substituted): a variable is SQL text within a statement, and
    ``--var cond="1; drop table t"`` must not turn a query into a DROP."""
    if "{{" not in text:
        return text
    spans: list[tuple[int, int, str, int]] = []  # (start, end, name, line) in the output
    parts: list[str] = []
    length = 0
    position = 0
    for match in PLACEHOLDER.finditer(text):
        name = match.group(1)
        line = line_offset + text.count("\n", 0, match.start()) + 1
        if name not in variables:
            known = ", ".join(sorted(variables)) or "none"
            raise VariableError(
                f"undefined variable '{name}'",
                path=path,
                line=line,
                hint=f"set it in dbluigi.toml [vars] or with --var {name}=VALUE (defined: {known})",
                variable=name,
            )
        value = _sql_text(variables[name], name, path, line)
        before = text[position : match.start()]
        parts += [before, value]
        length += len(before)
        if ";" in value:
            spans.append((length, length + len(value), name, line))
        length += len(value)
        position = match.end()
    parts.append(text[position:])
    rendered = "".join(parts)
    if spans and dialect is not None:
        _refuse_new_statements(rendered, spans, dialect, path)
    return rendered


def _sql_text(value: object, name: str, path: str, line: int) -> str:
    """A variable's value as the SQL text it stands for; a list or a mapping (a TOML array
    or table, which a Python step may read as such) has no one spelling in SQL: Python's
    ``[1, 2]`` is SQL nowhere."""
    if isinstance(value, list | tuple | Mapping):
        kind = "a table (a mapping)" if isinstance(value, Mapping) else "an array"
        example = ", ".join(map(str, value)) if isinstance(value, list | tuple) else "..."
        raise VariableError(
            f"variable '{name}' is {kind}: a placeholder is replaced by SQL text",
            path=path,
            line=line,
            hint=f'give the SQL it stands for as a string, for example {name} = "{example}" '
            "(a Python step may still read the array from ctx.variables)",
            variable=name,
        )
    return str(value)


def _refuse_new_statements(
    rendered: str, spans: list[tuple[int, int, str, int]], dialect: str, path: str
) -> None:
    """Raise VariableError when a statement separator comes from a variable's value."""
    import sqlglot
    from sqlglot.tokens import TokenType

    try:
        ends = [
            t.start
            for t in sqlglot.tokenize(rendered, read=dialect)
            if t.token_type == TokenType.SEMICOLON
        ]
    except Exception:  # cannot tell where strings end: the value's ';' may end a statement
        ends = [start for start, _, _, _ in spans]
    for start, end, name, line in spans:
        if any(start <= at < end for at in ends):
            raise VariableError(
                f"the value of variable '{name}' ends the statement (a ';' outside a string): "
                "a variable may not add statements to the file",
                path=path,
                line=line,
                hint="a variable is SQL text substituted into the file, within one statement; "
                f"remove the ';' from --var {name}=... (or [vars]), or quote the placeholder "
                f"in the file ('{{{{ {name} }}}}') when it is a string",
                variable=name,
            )
