"""Named targets: ``[targets.NAME]`` sections of ``dbluigi.toml`` and the one a run uses.

A named target is an environment (``dev``, ``prod``): a URL, a number of workers,
variables merged over ``[vars]`` (``--var`` still wins), and where its models' schemas
go: ``schema_suffix = "_dev"`` puts ``staging.x`` in ``staging_dev.x``, ``schemas =
{staging = "dev_staging"}`` maps schemas one by one. ``--target`` (or ``DBLUIGI_TARGET``,
or ``[project] target``) holds a name or a URL: a URL has ``://`` or is ``duckdb``.
Only the chosen target's ``${ENV}`` references are filled, so a secret another target
needs may stay unset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from dbluigi.configfile import CONFIG_FILE, TomlLines, interpolate_env
from dbluigi.errors import ProjectError
from dbluigi.names import STATE_SCHEMA
from dbluigi.suggest import close_matches, did_you_mean

TARGET_KEYS = ("url", "workers", "vars", "schema_suffix", "schemas", "output")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_url(value: str) -> bool:
    """Whether ``--target`` names a database (a URL, or ``duckdb``) rather than a target."""
    value = value.strip()
    return "://" in value or value == "duckdb" or value.startswith("duckdb:")


@dataclass(frozen=True)
class SchemaMap:
    """Where a target puts the schemas of the relations the project builds."""

    suffix: str = ""
    schemas: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __bool__(self) -> bool:
        return bool(self.suffix or self.schemas)

    def rename(self, schema: str) -> str:
        """The schema models of ``schema`` are built in on this target."""
        return self.schemas.get(schema, schema + self.suffix)

    def relation(self, relation: str) -> str:
        """``schema.name`` as this target builds it (a name without a schema as it is)."""
        schema, dot, name = relation.partition(".")
        return f"{self.rename(schema)}.{name}" if dot and self else relation

    def describe(self) -> str:
        """Where this target moves schemas, in words (``staging -> dev_staging, other
        schemas + _dev``); '' when it moves none."""
        moves = [f"{source} -> {dest}" for source, dest in sorted(self.schemas.items())]
        if self.suffix:
            moves.append(f"other schemas + {self.suffix}")
        return ", ".join(moves)


@dataclass(frozen=True)
class NamedTarget:
    """One ``[targets.NAME]`` section, its URL not yet filled from the environment."""

    name: str
    url: str | None = None
    workers: int | None = None
    variables: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    schema_map: SchemaMap = field(default_factory=SchemaMap)
    output: str | None = None  # the folder its dumps are written in, over [project] output
    line: int | None = None

    def filled_url(self) -> str | None:
        """The URL with its ``${ENV}`` references filled (an unset one is an error)."""
        if self.url is None:
            return None
        return interpolate_env(self.url, where=f"[targets.{self.name}] url")


def parse_targets(section: Mapping[str, Any], lines: TomlLines) -> dict[str, NamedTarget]:
    """The ``[targets.NAME]`` sections, by name; a bad key or value names its line."""
    found: dict[str, NamedTarget] = {}
    for name, settings in section.items():
        where = ("targets", name)
        line = lines.section(where)
        if not isinstance(settings, dict):
            raise ProjectError(
                f"[targets] {name!r} must be a table",
                path=CONFIG_FILE,
                line=line,
                hint=f'write [targets.{name}] with url = "..." under it',
            )
        if is_url(name):
            raise ProjectError(
                f"[targets.{name}]: a target's name cannot look like a URL", path=CONFIG_FILE
            )
        for key in settings:
            if key not in TARGET_KEYS:
                raise ProjectError(
                    f"unknown key {key!r} in [targets.{name}]",
                    path=CONFIG_FILE,
                    line=lines.key(where, key) or line,
                    hint=did_you_mean(key, TARGET_KEYS) or f"known keys: {', '.join(TARGET_KEYS)}",
                )
        found[name] = NamedTarget(
            name=name,
            url=_text(settings, "url", where, lines),
            workers=_workers(settings.get("workers"), where, lines),
            variables=MappingProxyType(_table(settings, "vars", where, lines)),
            schema_map=_schema_map(settings, where, lines),
            output=_output(settings, where, lines),
            line=line,
        )
    return found


def choose(targets: Mapping[str, NamedTarget], name: str, *, chosen_by: str) -> NamedTarget:
    """The target called ``name``; an unknown name is an error listing the targets."""
    if name in targets:
        return targets[name]
    close = close_matches(name, targets)
    known = ", ".join(sorted(targets)) or "none"
    raise ProjectError(
        f"{chosen_by} {name!r} is neither a URL nor a target of {CONFIG_FILE} (targets: {known})",
        path=CONFIG_FILE,
        hint=f"did you mean {close[0]!r}?"
        if close
        else "add a [targets.NAME] section, or give a URL such as postgresql://host/db",
    )


def _output(settings: Mapping[str, Any], where: tuple[str, ...], lines: TomlLines) -> str | None:
    """The target's ``output`` folder, relative to the project (or absolute)."""
    output = _text(settings, "output", where, lines)
    if output is not None and not output.strip():
        raise ProjectError(
            f"[targets.{where[1]}] output is empty",
            path=CONFIG_FILE,
            line=lines.key(where, "output"),
            hint='name a folder of the project for its dumps, e.g. output = "exports_dev"',
        )
    return output


def _text(
    settings: Mapping[str, Any], key: str, where: tuple[str, ...], lines: TomlLines
) -> str | None:
    value = settings.get(key)
    if value is not None and not isinstance(value, str):
        raise ProjectError(
            f"[targets.{where[1]}] {key} = {value!r}: expected a string",
            path=CONFIG_FILE,
            line=lines.key(where, key),
        )
    return value


def _table(
    settings: Mapping[str, Any], key: str, where: tuple[str, ...], lines: TomlLines
) -> dict[str, Any]:
    value = settings.get(key, {})
    if not isinstance(value, dict):
        raise ProjectError(
            f"[targets.{where[1]}] {key} must be a table",
            path=CONFIG_FILE,
            line=lines.key(where, key),
            hint=f'for example {key} = {{ name = "value" }}',
        )
    return dict(value)


def _workers(value: Any, where: tuple[str, ...], lines: TomlLines) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProjectError(
            f"[targets.{where[1]}] workers = {value!r}: expected a whole number, 1 or more",
            path=CONFIG_FILE,
            line=lines.key(where, "workers"),
        )
    return value


def _schema_map(settings: Mapping[str, Any], where: tuple[str, ...], lines: TomlLines) -> SchemaMap:
    name = where[1]
    suffix = _text(settings, "schema_suffix", where, lines) or ""
    schemas = _table(settings, "schemas", where, lines)
    if suffix and not re.fullmatch(r"[A-Za-z0-9_]+", suffix):
        raise ProjectError(
            f"[targets.{name}] schema_suffix {suffix!r}: letters, digits and _ only",
            path=CONFIG_FILE,
            line=lines.key(where, "schema_suffix"),
            hint='for example schema_suffix = "_dev"',
        )
    for source, dest in schemas.items():
        if not (
            isinstance(dest, str) and _IDENTIFIER.fullmatch(source) and _IDENTIFIER.fullmatch(dest)
        ):
            raise ProjectError(
                f"[targets.{name}] schemas: {source} = {dest!r} is not a schema = schema pair",
                path=CONFIG_FILE,
                line=lines.key(where, "schemas"),
                hint='for example schemas = { staging = "dev_staging" }',
            )
    if STATE_SCHEMA in (str(d).lower() for d in schemas.values()):
        raise ProjectError(
            f"[targets.{name}] schemas: schema {STATE_SCHEMA} holds dbluigi's own state tables",
            path=CONFIG_FILE,
            line=lines.key(where, "schemas"),
            hint="map the schema to another name",
        )
    return SchemaMap(
        suffix.lower(),
        MappingProxyType({s.lower(): str(d).lower() for s, d in schemas.items()}),
    )
