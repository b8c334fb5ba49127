"""``[sources.NAME]`` in dbluigi.toml: tables copied from another database into the target.

::

    [sources.shop]
    url = "${SHOP_URL}"                   # postgresql://... or mysql+pymysql://... (MariaDB)
    schema = "shop"                       # the target schema; default: the source's name
    tables = ["customers", "products"]    # short form: full copies

    [sources.crm]
    url = "postgresql://reader:${CRM_PASSWORD}@crm-db/crm"

    [sources.crm.tables.accounts]         # long form: one section per table
    mode = "incremental"                  # or "full" (the default)
    watermark = "updated_at"
    unique_key = "id"                     # or ["region", "id"]
    where = "not is_test"                 # a condition in the source's SQL
    columns = ["id", "name", "updated_at"]
    column_types = { notes = "text" }     # read a column as this type
    version_query = "select count(*), max(updated_at) from accounts"

A table key may name a schema of the source database (``"sales.orders"``); it is
published as ``<schema>.<table>`` in the target. Each declared table becomes one
``extract`` model of the project (see ``dbluigi.project``).

A source's credentials are needed only to connect to it: ``${NAME}`` in its url is
filled in at load when the environment sets it, and otherwise left for ``resolve``,
which whatever connects calls first (``dbluigi.sources.ready``). So ``lineage``,
``plan`` or ``docs`` run without them, and only a task reading that source fails,
with the error loading would have given. Until the url is known its engine may be
too (``url = "${SHOP_URL}"``): ``where`` and ``version_query`` are then checked at
load in the SQL of every engine a source can be (one that none accepts is an error
now) and in the engine's own once the url is filled in.

Pure: parsing and validation, no connection. Every error names dbluigi.toml, the
line and the option.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from dbluigi.configfile import CONFIG_FILE, TomlLines, interpolate_env, unset_env
from dbluigi.errors import ProjectError
from dbluigi.lazy import errors, exp, sqlglot
from dbluigi.suggest import did_you_mean
from dbluigi.targets.base import PORTABLE_TYPES, numeric_precision
from dbluigi.urls import mask_url, parse_url

STATE_SCHEMA = "dbluigi"
MODES = ("full", "incremental")
SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+psycopg2": "postgresql",
    "mysql": "mariadb",
    "mysql+pymysql": "mariadb",
    "mariadb": "mariadb",
    "mariadb+pymysql": "mariadb",
}
DIALECTS = {"postgresql": "postgres", "mariadb": "mysql"}  # sqlglot's name for each engine

_SOURCE_KEYS = ("url", "schema", "tables")
_TABLE_KEYS = (
    "mode",
    "watermark",
    "unique_key",
    "where",
    "columns",
    "column_types",
    "version_query",
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


@dataclass(frozen=True)
class SourceTable:
    """One table of a source database, as declared; it becomes an ``extract`` model."""

    source: str  # NAME of [sources.NAME]
    engine: str | None  # "postgresql" | "mariadb"; None while its url's scheme is unset
    url: str = field(repr=False)  # with secrets filled in ("" until resolved): never show it
    display_url: str  # the URL with its password masked (as written, until resolved)
    table: str  # as named in the source: "orders" or "sales.orders"
    schema: str  # target schema
    name: str  # target table
    mode: str = "full"
    watermark: str | None = None
    unique_key: tuple[str, ...] = ()
    where: str | None = None
    columns: tuple[str, ...] = ()  # empty: every column
    column_types: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    version_query: str | None = None
    line: int | None = None  # of its section (or of ``tables =``) in dbluigi.toml
    written_url: str = field(default="", repr=False)  # as in dbluigi.toml, ``${NAME}`` and all
    unset: tuple[str, ...] = ()  # the variables of its url the environment did not set at load
    # lines of ``url``, ``where`` and ``version_query``, for what ``resolve`` checks later
    option_lines: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def relation(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def selector(self) -> str:
        """How ``source:`` selects it: ``NAME.table``."""
        return f"{self.source}.{self.name}"

    @property
    def dialect(self) -> str:
        """sqlglot's name for its engine; only for a resolved table (``resolve``)."""
        assert self.engine is not None, f"{self.source}: its url is not resolved"
        return DIALECTS[self.engine]

    @property
    def resolved(self) -> bool:
        """Whether its url is complete: nothing left for ``resolve`` to fill in or check."""
        return not self.unset and self.engine is not None

    def definition(self) -> str:
        """What defines the copy, for its fingerprint: no password, and no version query
        (its result is what counts, so editing it is not a change of definition)."""
        return json.dumps(
            {
                "source": self.source,
                "url": self.display_url,
                "table": self.table,
                "mode": self.mode,
                "watermark": self.watermark,
                "unique_key": list(self.unique_key),
                "where": self.where,
                "columns": list(self.columns),
                "column_types": dict(sorted(self.column_types.items())),
            },
            sort_keys=True,
        )


def parse_sources(sources: Any, lines: TomlLines) -> dict[str, SourceTable]:
    """The ``[sources]`` section as {relation: SourceTable}, given where its keys sit in
    the file; raises ProjectError."""
    if not isinstance(sources, dict):
        raise ProjectError("[sources] must be a table", path=CONFIG_FILE)
    found: dict[str, SourceTable] = {}
    for source, settings in sources.items():
        where = ("sources", source)
        if not _IDENT.fullmatch(source):
            raise _error(f"[sources.{source}]: the name must be a plain identifier", lines, where)
        if not isinstance(settings, dict):
            raise _error(f"[sources] {source} must be a table", lines, ("sources",), source)
        _known_keys(settings, _SOURCE_KEYS, f"[sources.{source}]", lines, where)
        if "url" not in settings:
            raise _error(
                f"[sources.{source}] has no url",
                lines,
                where,
                hint='add url = "${SOURCE_URL}" (postgresql://... or mysql+pymysql://...)',
            )
        raw_url = _string(settings["url"], f"[sources.{source}] url", lines, where, "url")
        url_line = lines.key(where, "url") or lines.section(where)
        unset = unset_env(raw_url)
        if unset:  # connecting will need them, not loading: see resolve
            url, engine = "", _written_engine(raw_url, source, url_line)
        else:
            url = _filled_url(raw_url, source, url_line)
            engine = _engine(url, source, url_line)
        schema = str(settings.get("schema", source)).lower()
        if not _IDENT.fullmatch(schema) or schema == STATE_SCHEMA:
            raise _error(
                f"[sources.{source}] schema {schema!r} "
                + ("holds dbluigi's state" if schema == STATE_SCHEMA else "is not an identifier"),
                lines,
                where,
                "schema",
                hint="name another target schema, e.g. schema = " + json.dumps(source),
            )
        common = {
            "source": source,
            "engine": engine,
            "url": url,
            "display_url": mask_url(url or raw_url),
            "schema": schema,
            "written_url": raw_url,
            "unset": unset,
        }
        tables = settings.get("tables")
        if tables is None:
            raise _error(
                f"[sources.{source}] declares no tables",
                lines,
                where,
                hint='add tables = ["a", "b"], or a [sources.NAME.tables.TABLE] section',
            )
        if isinstance(tables, list):
            line = lines.key(where, "tables")
            for table in tables:
                if not isinstance(table, str):
                    raise _error(
                        f"[sources.{source}] tables: expected table names, got {table!r}",
                        lines,
                        where,
                        "tables",
                    )
                _add(found, _table(table, {}, common, lines, line), lines)
        elif isinstance(tables, dict):
            for table, options in tables.items():
                section = (*where, "tables", table)
                if not isinstance(options, dict):
                    raise _error(
                        f"[sources.{source}.tables] {table} must be a table",
                        lines,
                        (*where, "tables"),
                        table,
                    )
                _known_keys(options, _TABLE_KEYS, _section_name(section), lines, section)
                _add(found, _table(table, options, common, lines, lines.section(section)), lines)
        else:
            raise _error(
                f"[sources.{source}] tables must be a list of names or a table per name",
                lines,
                where,
                "tables",
            )
    return found


def _table(
    table: str,
    options: Mapping[str, Any],
    common: Mapping[str, Any],
    lines: TomlLines,
    line: int | None,
) -> SourceTable:
    source = common["source"]
    section = ("sources", source, "tables", table)
    label = _section_name(section)
    parts = table.split(".")
    if len(parts) > 2 or not all(_IDENT.fullmatch(p) for p in parts):
        raise ProjectError(
            f"{label}: {table!r} is not a table name (table or schema.table)",
            path=CONFIG_FILE,
            line=line,
        )

    def where_of(key: str) -> int | None:
        return lines.key(section, key) or line

    def fail(message: str, key: str, hint: str | None = None) -> ProjectError:
        return ProjectError(f"{label} {message}", path=CONFIG_FILE, line=where_of(key), hint=hint)

    mode = options.get("mode", "full")
    if mode not in MODES:
        raise fail(
            f"mode = {mode!r}: expected {' or '.join(json.dumps(m) for m in MODES)}",
            "mode",
            hint=did_you_mean(str(mode), MODES, quote=json.dumps),
        )
    watermark = options.get("watermark")
    if watermark is not None:
        watermark = _column_name(watermark, "watermark", fail)
    unique_key = _column_list(options.get("unique_key", ()), "unique_key", fail)
    if mode == "incremental":
        for key, value in (("watermark", watermark), ("unique_key", unique_key)):
            if not value:
                raise fail(
                    f'is mode = "incremental" and needs {key}',
                    "mode",
                    hint='e.g. watermark = "updated_at" and unique_key = "id"',
                )
    else:
        for key, value in (("watermark", watermark), ("unique_key", unique_key)):
            if value:
                raise fail(
                    f'{key}: only an incremental copy uses it, and this one is mode = "{mode}"',
                    key,
                    hint='add mode = "incremental", or remove ' + key,
                )
    # an engine not known yet (its url's scheme is unset): what one of them would accept
    engine = common["engine"]
    dialects = (DIALECTS[engine],) if engine is not None else tuple(DIALECTS.values())
    condition = options.get("where")
    if condition is not None:
        condition = _string(condition, f"{label} where", lines, section, "where")
        _require_condition(condition, dialects, fail)
    columns = _column_list(options.get("columns", ()), "columns", fail)
    lowered = [c.lower() for c in columns]
    for key, needed in (
        ("watermark", [watermark] if watermark else []),
        ("unique_key", unique_key),
    ):
        for column in needed:
            if columns and column.lower() not in lowered:
                raise fail(
                    f"{key} {column!r} is not among columns",
                    "columns",
                    hint=f"add {column} to columns",
                )
    types = options.get("column_types", {})
    if not isinstance(types, dict):
        raise fail("column_types must be a table of column = type", "column_types")
    for column, type_name in types.items():
        if not isinstance(type_name, str) or (
            type_name not in PORTABLE_TYPES and numeric_precision(type_name) is None
        ):
            close = did_you_mean(str(type_name), PORTABLE_TYPES, quote=json.dumps)
            raise fail(
                f"column_types: column {column!r} has unknown type {type_name!r}",
                "column_types",
                hint=(f"{close} " if close else "")
                + f"types: {', '.join(PORTABLE_TYPES)}, numeric(p,s)",
            )
    version_query = options.get("version_query")
    if version_query is not None:
        version_query = _string(
            version_query, f"{label} version_query", lines, section, "version_query"
        )
        _require_one_query(version_query, dialects, fail)
    url_line = lines.key(("sources", source), "url") or lines.section(("sources", source))
    option_lines = {
        "url": url_line,
        "where": where_of("where"),
        "version_query": where_of("version_query"),
    }
    return SourceTable(
        table=table,
        name=parts[-1].lower(),
        mode=mode,
        watermark=watermark,
        unique_key=unique_key,
        where=condition,
        columns=columns,
        column_types=MappingProxyType({str(k).lower(): str(v) for k, v in types.items()}),
        version_query=version_query,
        line=line,
        option_lines=MappingProxyType({k: v for k, v in option_lines.items() if v is not None}),
        **common,
    )


def resolve(table: SourceTable) -> SourceTable:
    """The table with its url's ``${NAME}`` filled in from the environment now, and checked
    as loading checks a url that needs nothing filled in (its ``where`` and
    ``version_query`` too, in its engine's SQL, when its engine was not known);
    ProjectError naming dbluigi.toml and the line when a variable is still unset or the
    url is not one dbluigi reads from."""
    if table.resolved:
        return table
    url_line = table.option_lines.get("url")
    url = _filled_url(table.written_url, table.source, url_line)
    engine = _engine(url, table.source, url_line)
    if table.engine is None:  # checked at load in every engine's SQL: now in its own
        label = _section_name(("sources", table.source, "tables", table.table))

        def fail(message: str, key: str, hint: str | None = None) -> ProjectError:
            line = table.option_lines.get(key, table.line)
            return ProjectError(f"{label} {message}", path=CONFIG_FILE, line=line, hint=hint)

        if table.where is not None:
            _require_condition(table.where, (DIALECTS[engine],), fail)
        if table.version_query is not None:
            _require_one_query(table.version_query, (DIALECTS[engine],), fail)
    return replace(table, url=url, engine=engine, display_url=mask_url(url), unset=())


def _filled_url(written: str, source: str, line: int | None) -> str:
    try:
        return interpolate_env(written, where=f"[sources.{source}] url")
    except ProjectError as exc:
        raise ProjectError(exc.message, path=CONFIG_FILE, line=line, hint=exc.hint) from None


def _require_condition(condition: str, dialects: tuple[str, ...], fail: Any) -> None:
    """``where`` is one condition in the SQL of one of ``dialects`` (its source's engine,
    or any a source can be while that is not known)."""
    problems = []
    for dialect in dialects:
        try:
            exp.maybe_parse(condition, into=exp.Condition, dialect=dialect)
            return
        except (errors.SqlglotError, ValueError) as exc:
            problems.append(_first(exc))
    raise fail(
        f"where = {condition!r} is not one condition in {' or '.join(dialects)} SQL: "
        + problems[0],
        "where",
        hint="write what follows WHERE, e.g. where = \"status <> 'test'\"",
    )


def _require_one_query(sql: str, dialects: tuple[str, ...], fail: Any) -> None:
    """A version query runs on the read-only source session: one SELECT, nothing else
    (in the SQL of one of ``dialects``)."""
    problems = []
    for dialect in dialects:
        try:
            statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
        except errors.SqlglotError as exc:
            problems.append(_first(exc))
            continue
        if len(statements) == 1 and isinstance(statements[0], exp.Query):
            return
    if len(problems) == len(dialects):
        raise fail(
            f"version_query does not parse as {' or '.join(dialects)} SQL: {problems[0]}",
            "version_query",
        )
    raise fail(
        "version_query must be one query (SELECT ...) whose result changes when the "
        "table is reloaded",
        "version_query",
        hint='e.g. version_query = "select count(*), max(updated_at) from orders"',
    )


def _engine(url: str, source: str, line: int | None) -> str:
    """The engine of a complete url, which must be a valid one."""
    engine = _scheme_engine(url, source, line)
    try:
        parse_url(url)
    except ValueError as exc:
        raise ProjectError(
            f"[sources.{source}] url {mask_url(url)!r} is not a valid URL ({_first(exc)})",
            path=CONFIG_FILE,
            line=line,
        ) from None
    return engine


def _written_engine(written: str, source: str, line: int | None) -> str | None:
    """The engine of a url still to be filled in, when its scheme is written out (the
    rest is checked once it is filled in); None when the scheme comes from a variable."""
    scheme = written.split("://", 1)[0] if "://" in written else written
    if "${" in scheme:
        return None
    return _scheme_engine(written, source, line)


def _scheme_engine(url: str, source: str, line: int | None) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    engine = SCHEMES.get(scheme)
    if engine is None:
        raise ProjectError(
            f"[sources.{source}] url {mask_url(url)!r} is not a database dbluigi reads from",
            path=CONFIG_FILE,
            line=line,
            hint="use postgresql://user:password@host:5432/db or "
            "mysql+pymysql://user:password@host:3306/db (MariaDB, MySQL)",
        )
    return engine


def _add(found: dict[str, SourceTable], table: SourceTable, lines: TomlLines) -> None:
    other = found.get(table.relation)
    if other is not None:
        raise ProjectError(
            f"[sources.{table.source}] {table.table} and [sources.{other.source}] "
            f"{other.table} both copy into {table.relation}",
            path=CONFIG_FILE,
            line=table.line,
            hint="give one of the sources another schema = ...",
        )
    found[table.relation] = table


def _column_name(value: Any, key: str, fail: Any) -> str:
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise fail(f"{key} = {value!r}: expected a column name", key)
    return value


def _column_list(value: Any, key: str, fail: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise fail(f"{key} = {value!r}: expected a column name or a list of them", key)
    return tuple(dict.fromkeys(_column_name(item, key, fail) for item in items))


def _string(value: Any, label: str, lines: TomlLines, section: tuple[str, ...], key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _error(f"{label} must be a non-empty string", lines, section, key)
    return value


def _known_keys(
    settings: Mapping[str, Any],
    allowed: tuple[str, ...],
    label: str,
    lines: TomlLines,
    section: tuple[str, ...],
) -> None:
    for key in settings:
        if key not in allowed:
            raise _error(
                f"unknown key {key!r} in {label}",
                lines,
                section,
                key,
                hint=did_you_mean(key, allowed) or f"known keys: {', '.join(allowed)}",
            )


def _error(
    message: str,
    lines: TomlLines,
    section: tuple[str, ...],
    key: str | None = None,
    *,
    hint: str | None = None,
) -> ProjectError:
    line = (lines.key(section, key) if key else None) or lines.section(section)
    return ProjectError(message, path=CONFIG_FILE, line=line, hint=hint)


def _section_name(section: tuple[str, ...]) -> str:
    return "[" + ".".join(p if _IDENT.fullmatch(p) else json.dumps(p) for p in section) + "]"


def _first(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200]
