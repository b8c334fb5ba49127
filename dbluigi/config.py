"""Project configuration: ``dbluigi.toml`` plus command-line overrides.

Everything a run needs to know besides the SQL files: the target (from
``--target``, ``DBLUIGI_TARGET``, ``[project] target``, or ``[target] url`` in that
order; a name picks a ``[targets.NAME]`` section, ``dbluigi.environments``), the
default schema, the guards every model gets unless its header says otherwise
(``timeout``, ``max_cost``), variables, per-seed column types, and the
thresholds of the slow-task report (``[audit]``), how often ``build --watch`` looks
for stale models (``[watch] interval``), and the tables copied from
source databases (``[sources]``, parsed by ``dbluigi.sources.config``). ``${ENV}``
references in the target and source URLs are filled from the environment
(``dbluigi.configfile``) so secrets stay out of the file.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dbluigi.configfile import CONFIG_FILE, TomlLines, interpolate_env
from dbluigi.environments import NamedTarget, SchemaMap, choose, is_url, parse_targets
from dbluigi.errors import ProjectError, UsageError
from dbluigi.headers import parse_duration
from dbluigi.scan import utf8_text
from dbluigi.sources.config import SourceTable, parse_sources
from dbluigi.suggest import did_you_mean
from dbluigi.targets import sql_dialect
from dbluigi.targets.base import PORTABLE_TYPES

STATE_DIR = ".dbluigi"
SEED_TYPES = PORTABLE_TYPES  # what a seed column may be declared as

_SECTIONS: dict[str, tuple[str, ...]] = {
    "project": (
        "name",
        "default_schema",
        "output",
        "timeout",
        "max_cost",
        "max_partitions",
        "target",
        "test_before_build",
    ),
    "target": ("url", "workers"),
    "targets": (),  # [targets.NAME], validated by dbluigi.environments
    "audit": ("slow_factor", "slow_seconds"),
    "scheduler": ("url",),
    "watch": ("interval",),
    "vars": (),
    "seeds": (),
    "sources": (),  # validated by dbluigi.sources.config
    "inputs": (),  # [inputs."schema.table"] version_query = "..."
}
MAX_PARTITIONS = 10_000  # values of one partitioned model, unless [project] max_partitions says
MIN_WATCH_INTERVAL_S = 1.0  # each check is a run in dbluigi.runs: not more often than this


@dataclass(frozen=True)
class InputQuery:
    """``[inputs."raw.x"] version_query``: what stands for the version of an input table."""

    sql: str
    line: int | None = None


@dataclass(frozen=True)
class Config:
    """What ``dbluigi.toml`` and the command line say about a project."""

    root: Path
    name: str
    target_url: str | None
    default_schema: str | None
    output: str = "exports"  # where this target's dumps go
    outputs: tuple[str, ...] = ("exports",)  # every target's: none of them is the project's
    variables: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    seed_types: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    timeout: float | None = None  # seconds; a model's ``-- timeout:`` wins
    max_cost: float | None = None  # a table or view model's ``-- max_cost:`` wins
    slow_factor: float | None = None  # None: dbluigi.audit.SLOW_FACTOR
    slow_seconds: float | None = None  # None: dbluigi.audit.SLOW_SECONDS
    scheduler_url: str | None = None  # a luigid central scheduler (``[scheduler] url``)
    workers: int | None = None  # tasks run at once (``[target] workers``); ``--workers`` wins
    max_partitions: int = MAX_PARTITIONS  # values of one partitioned model, at most
    source_tables: Mapping[str, SourceTable] = field(  # [sources.NAME] tables, by relation
        default_factory=lambda: MappingProxyType({})
    )
    input_queries: Mapping[str, InputQuery] = field(  # [inputs."schema.table"], by relation
        default_factory=lambda: MappingProxyType({})
    )
    watch_interval: float | None = None  # seconds (``[watch] interval``); ``--interval`` wins
    target_name: str | None = None  # the [targets.NAME] chosen, if one was
    schema_map: SchemaMap = field(default_factory=SchemaMap)  # where its models' schemas go
    test_before_build: bool = False  # run a model's unit tests before building it

    @property
    def dialect(self) -> str:
        """The sqlglot dialect files are read in: the target's."""
        return sql_dialect(self.target_url)[0]

    @property
    def schema(self) -> str:
        """The schema of top-level files and of unqualified references (the target's
        default unless ``[project] default_schema`` says otherwise)."""
        return self.default_schema or sql_dialect(self.target_url)[1]


def parse_var_options(options: list[str] | None) -> dict[str, str]:
    """``--var k=v`` options as a dict; a malformed one is an error naming the option."""
    result: dict[str, str] = {}
    for option in options or []:
        key, sep, value = option.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UsageError(
                f"--var {option!r}: expected NAME=VALUE", hint="for example --var year=2020"
            )
        result[key] = value
    return result


def load_config(
    root: Path,
    *,
    target: str | None = None,
    variables: Mapping[str, str] | None = None,
) -> Config:
    """Read ``dbluigi.toml`` (optional) under ``root`` and apply the command-line overrides."""
    path = root / CONFIG_FILE
    data: dict[str, Any] = {}
    text = ""
    if path.exists():
        try:
            text = utf8_text(path.read_bytes(), CONFIG_FILE)  # an editor's BOM is no TOML
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            line = _toml_error_line(exc)
            raise ProjectError(f"invalid TOML: {exc}", path=CONFIG_FILE, line=line) from exc
    _validate_keys(data)
    lines = TomlLines(text)
    project = data.get("project", {})
    targets = parse_targets(data.get("targets", {}), lines)
    chosen, chosen_by = _chosen_target(target, project)
    named = None
    if chosen is not None and not is_url(chosen):
        named = choose(targets, chosen, chosen_by=chosen_by)
        url = named.filled_url() or data.get("target", {}).get("url")
    else:
        url = chosen or data.get("target", {}).get("url")
    if url is not None:
        url = interpolate_env(str(url), where="the target URL")
    default_schema = project.get("default_schema")
    if default_schema is not None and not re.fullmatch(
        r"[A-Za-z_][A-Za-z0-9_]*", str(default_schema)
    ):
        raise ProjectError(
            f"[project] default_schema {default_schema!r} is not a plain identifier",
            path=CONFIG_FILE,
        )
    audit = data.get("audit", {})
    merged_vars: dict[str, object] = dict(data.get("vars", {}))
    merged_vars.update(named.variables if named else {})
    merged_vars.update(variables or {})
    schema_map = named.schema_map if named else SchemaMap()
    seed_types = {
        schema_map.relation(relation): types
        for relation, types in _seed_types(data.get("seeds", {})).items()
    }
    workers = _workers(data.get("target", {}).get("workers"), lines)
    return Config(
        root=root,
        name=str(project.get("name", root.resolve().name)),
        target_url=url,
        default_schema=str(default_schema).lower() if default_schema else None,
        output=named.output if named and named.output else str(project.get("output", "exports")),
        outputs=_outputs(project, targets),
        variables=MappingProxyType(merged_vars),
        seed_types=MappingProxyType(seed_types),
        timeout=_timeout(project.get("timeout"), lines),
        max_cost=_positive(project, "project", "max_cost", lines, "max_cost = 1e7"),
        slow_factor=_positive(audit, "audit", "slow_factor", lines, "slow_factor = 3"),
        slow_seconds=_positive(
            audit, "audit", "slow_seconds", lines, "slow_seconds = 5", allow_zero=True
        ),
        scheduler_url=_scheduler_url(data.get("scheduler", {}).get("url")),
        workers=named.workers if named and named.workers else workers,
        max_partitions=_max_partitions(project.get("max_partitions"), lines),
        source_tables=MappingProxyType(parse_sources(data.get("sources", {}), lines)),
        input_queries=MappingProxyType(_input_queries(data.get("inputs", {}), lines)),
        watch_interval=_watch_interval(data.get("watch", {}).get("interval"), lines),
        target_name=named.name if named else None,
        schema_map=schema_map,
        test_before_build=_flag(project, "test_before_build", lines),
    )


def _outputs(project: Mapping[str, Any], targets: Mapping[str, NamedTarget]) -> tuple[str, ...]:
    """The output folder of every target, which no target reads as part of the project: a
    dev build's CSV dump is no seed of prod's."""
    found = [str(project.get("output", "exports"))]
    found += [t.output for t in targets.values() if t.output is not None]
    return tuple(dict.fromkeys(found))


def _chosen_target(option: str | None, project: Mapping[str, Any]) -> tuple[str | None, str]:
    """The target a run asks for (a name or a URL) and what asked: ``--target``,
    ``DBLUIGI_TARGET``, then ``[project] target``; (None, "") leaves it to ``[target] url``."""
    if option:
        return option, "--target"
    if os.environ.get("DBLUIGI_TARGET"):
        return os.environ["DBLUIGI_TARGET"], "DBLUIGI_TARGET"
    if project.get("target") is not None:
        return str(project["target"]), "[project] target"
    return None, ""


def _input_queries(inputs: Mapping[str, Any], lines: TomlLines) -> dict[str, InputQuery]:
    """``[inputs."raw.x"] version_query = "select max(loaded_at) from raw.x"`` (also
    ``[inputs.raw.x]``): a query whose answer is the input's version."""
    found: dict[str, InputQuery] = {}
    for relation, settings in _relation_tables(inputs, section="inputs", key="version_query"):
        section = ("inputs", *relation.split(".", 1))
        line = lines.key(("inputs", relation), "version_query") or lines.key(
            section, "version_query"
        )
        unknown = [k for k in settings if k != "version_query"]
        if unknown:
            raise ProjectError(
                f'unknown key {unknown[0]!r} in [inputs."{relation}"]',
                path=CONFIG_FILE,
                line=line,
                hint='the only key is version_query = "select ..."',
            )
        query = settings.get("version_query")
        if not isinstance(query, str) or not query.strip():
            raise ProjectError(
                f'[inputs."{relation}"] version_query must be a non-empty SQL query',
                path=CONFIG_FILE,
                line=line,
                hint='for example version_query = "select count(*), max(loaded_at) from raw.x"',
            )
        if "." not in relation:
            raise ProjectError(
                f'[inputs."{relation}"]: name the input as schema.table',
                path=CONFIG_FILE,
                line=line,
            )
        found[relation.lower()] = InputQuery(query, line)
    return found


def parse_interval(value: object) -> float:
    """Seconds between the checks of ``build --watch``: a number of seconds or a duration
    ("30s", "5m", "1h"), at least ``MIN_WATCH_INTERVAL_S``; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"bad duration {value!r}")
    seconds = float(value) if isinstance(value, int | float) else parse_duration(value)
    if not math.isfinite(seconds):
        raise ValueError(f"bad duration {value!r}")
    if seconds < MIN_WATCH_INTERVAL_S:
        raise ValueError(f"{value!r} is less than {MIN_WATCH_INTERVAL_S:g} second")
    return seconds


def _watch_interval(value: Any, lines: TomlLines) -> float | None:
    """``[watch] interval``: how often ``build --watch`` plans again (default 60 s)."""
    if value is None:
        return None
    try:
        return parse_interval(value)
    except ValueError as exc:
        raise ProjectError(
            f"[watch] interval = {value!r}: {exc}",
            path=CONFIG_FILE,
            line=lines.key(("watch",), "interval"),
            hint='use seconds or a duration, 1 second or more: interval = 30 or "5m"',
        ) from None


def _scheduler_url(value: Any) -> str | None:
    """``[scheduler] url``: where luigid listens, e.g. http://scheduler-host:8082."""
    if value is None:
        return None
    url = interpolate_env(str(value), where="[scheduler] url")
    if not re.fullmatch(r"https?://[^\s/]+(:\d+)?/?", url):
        raise ProjectError(
            f"[scheduler] url {url!r} is not an http(s) URL of a luigid scheduler",
            path=CONFIG_FILE,
            hint='for example url = "http://scheduler-host:8082"',
        )
    return url


def _workers(value: Any, lines: TomlLines) -> int | None:
    """``[target] workers``: how many models are built at once on the target (None: the
    target's default, ``Session.default_workers``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProjectError(
            f"[target] workers = {value!r}: expected a whole number, 1 or more",
            path=CONFIG_FILE,
            line=lines.key(("target",), "workers"),
            hint="for example workers = 4 (--workers on the command line wins)",
        )
    return value


def _max_partitions(value: Any, lines: TomlLines) -> int:
    """``[project] max_partitions``: how many values one partitioned model may have."""
    if value is None:
        return MAX_PARTITIONS
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProjectError(
            f"[project] max_partitions = {value!r}: expected a whole number, 1 or more",
            path=CONFIG_FILE,
            line=lines.key(("project",), "max_partitions"),
            hint=f"for example max_partitions = {MAX_PARTITIONS}",
        )
    return value


def _flag(section: Mapping[str, Any], key: str, lines: TomlLines) -> bool:
    """A true/false key of ``[project]``; off when absent."""
    value = section.get(key, False)
    if not isinstance(value, bool):
        raise ProjectError(
            f"[project] {key} = {value!r}: expected true or false",
            path=CONFIG_FILE,
            line=lines.key(("project",), key),
            hint=f"{key} = true",
        )
    return value


def _timeout(value: Any, lines: TomlLines) -> float | None:
    """``[project] timeout``: a duration ("10m", "1h30m") or a number of seconds."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError(f"bad duration {value!r}")
        if isinstance(value, int | float):
            if value <= 0:
                raise ValueError(f"bad duration {value!r}: must be more than zero")
            return float(value)
        return parse_duration(str(value))
    except ValueError as exc:
        raise ProjectError(
            f"[project] timeout: {exc}",
            path=CONFIG_FILE,
            line=lines.key(("project",), "timeout"),
            hint='use a duration such as timeout = "10m", "1h30m" or 45 (seconds)',
        ) from None


def _positive(
    section: Mapping[str, Any],
    name: str,
    key: str,
    lines: TomlLines,
    example: str,
    *,
    allow_zero: bool = False,
) -> float | None:
    """A number (or a numeric string such as "1e7") above zero (or zero, when allowed)."""
    value = section.get(key)
    if value is None:
        return None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.replace("_", ""))
        except ValueError:
            number = None
    if (
        number is None
        or not math.isfinite(number)
        or number < 0
        or (number == 0 and not allow_zero)
    ):
        expected = "a number 0 or more" if allow_zero else "a positive number"
        raise ProjectError(
            f"[{name}] {key} = {value!r}: expected {expected}",
            path=CONFIG_FILE,
            line=lines.key((name,), key),
            hint=f"for example {example}",
        )
    return number


def _validate_keys(data: Mapping[str, Any]) -> None:
    for section, value in data.items():
        if section not in _SECTIONS:
            raise ProjectError(
                f"unknown section [{section}]",
                path=CONFIG_FILE,
                hint=did_you_mean(section, _SECTIONS) or f"known sections: {', '.join(_SECTIONS)}",
            )
        if not isinstance(value, dict):
            raise ProjectError(f"[{section}] must be a table", path=CONFIG_FILE)
        allowed = _SECTIONS[section]
        if not allowed:
            continue
        for key in value:
            if key not in allowed:
                raise ProjectError(
                    f"unknown key {key!r} in [{section}]",
                    path=CONFIG_FILE,
                    hint=did_you_mean(key, allowed) or f"known keys: {', '.join(allowed)}",
                )


def _seed_types(seeds: Mapping[str, Any]) -> dict[str, Mapping[str, str]]:
    """``[seeds."raw.offenses"] column_types = {col = "bigint"}`` as {relation: {col: type}}."""
    result: dict[str, Mapping[str, str]] = {}
    for relation, settings in _relation_tables(seeds):
        for key in settings:
            if key != "column_types":
                raise ProjectError(
                    f'unknown key {key!r} in [seeds."{relation}"]',
                    path=CONFIG_FILE,
                    hint='the only key is column_types = {column = "type"}',
                )
        types = settings.get("column_types", {})
        for column, type_name in types.items():
            if type_name not in SEED_TYPES:
                raise ProjectError(
                    f'[seeds."{relation}"] column {column!r}: unknown type {type_name!r}',
                    path=CONFIG_FILE,
                    hint=did_you_mean(str(type_name), SEED_TYPES)
                    or f"types: {', '.join(SEED_TYPES)}",
                )
        result[relation.lower()] = MappingProxyType(
            {str(c).lower(): str(t) for c, t in types.items()}
        )
    return result


def _relation_tables(
    seeds: Mapping[str, Any], *, section: str = "seeds", key: str = "column_types"
) -> list[tuple[str, Mapping[str, Any]]]:
    # Both [seeds."raw.offenses"] and [seeds.raw.offenses] are accepted (and in [inputs]).
    found: list[tuple[str, Mapping[str, Any]]] = []
    for name, value in seeds.items():
        if not isinstance(value, dict):
            raise ProjectError(f"[{section}] {name!r} must be a table", path=CONFIG_FILE)
        if key in value or "." in name:
            found.append((name, value))
        else:
            found.extend(
                (f"{name}.{table}", inner)
                for table, inner in value.items()
                if isinstance(inner, dict)
            )
    return found


def _toml_error_line(exc: tomllib.TOMLDecodeError) -> int | None:
    match = re.search(r"line (\d+)", str(exc))
    return int(match.group(1)) if match else None
