"""``dbluigi test``: run a model's SQL on fixture rows and compare what it produces.

By default each test runs in a fresh in-memory DuckDB: its given relations are created
under their own names, the model's SQL is transpiled from the project's dialect to
DuckDB with sqlglot and run into ``<schema>.<name>__dbluigi_new``, the model's checks run
on that table, and its rows are compared with the expected ones as multisets. A model
whose SQL does not transpile, or fails in DuckDB, is reported as such (``--on-target``
runs it on the real target instead).

On the target (``on_target=True``) the tests share one scratch schema
``dbluigi_test_<random>``: every relation is renamed into it (``raw.x`` becomes
``<scratch>.raw__x``) with sqlglot, and the schema is emptied between tests and dropped
at the end. The run holds a lock named after its schema; it first drops every other
``dbluigi_test_*`` schema whose lock nobody holds (left by a run that was killed).
"""

from __future__ import annotations

import datetime as dt
import decimal
import secrets
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from dbluigi.errors import DbluigiError, ProjectError, TaskError, UsageError
from dbluigi.lazy import exp
from dbluigi.project import Model, Project, load_project
from dbluigi.relation import Relation
from dbluigi.sqltypes import TableRef
from dbluigi.targets.base import Column, Session, Target, table_expr
from dbluigi.testfiles import Given, UnitTest, csv_rows

SCRATCH_PREFIX = "dbluigi_test_"
RUNNABLE_KINDS = ("table", "view", "incremental", "dump", "python")
ON_TARGET_HINT = "run it on the target instead: dbluigi test --on-target"


@dataclass(frozen=True)
class TestResult:
    """How one test went: ``passed``, ``failed`` (rows or checks differ) or ``error``."""

    __test__ = False  # not a pytest class

    test: UnitTest
    model: str  # the model's relation
    status: str
    message: str = ""
    columns: tuple[str, ...] = ()
    missing: tuple[tuple[Any, ...], ...] = ()  # expected, not produced
    unexpected: tuple[tuple[Any, ...], ...] = ()  # produced, not expected
    hint: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class _NotOnDuckDB(Exception):
    """The model's SQL does not transpile to DuckDB, or fails there."""


def resolve(project: Project, tests: Sequence[UnitTest]) -> list[tuple[UnitTest, str]]:
    """Each test with the relation of its model; a ProjectError for an unknown model, a
    relation the model reads that the test does not give (seeds excepted: they are empty
    then), or a kind that cannot be tested. The relations a test names as the project
    names them are those the target builds (``Project.as_built``)."""
    out = []
    by_name: dict[str, list[str]] = {}
    for relation in project.models:
        by_name.setdefault(Relation(relation).name, []).append(relation)
    for test in (project_names_as_built(project, t) for t in tests):
        matches = [test.model] if test.model in project.models else by_name.get(test.model, [])
        if len(matches) != 1:
            raise ProjectError(
                f"test {test.name}: no model {test.model}",
                path=test.path,
                line=test.line,
                hint="model: schema.table, as `dbluigi ls` lists it",
            )
        relation = matches[0]
        model = project.models[relation]
        if model.kind not in RUNNABLE_KINDS:
            raise ProjectError(
                f"test {test.name}: {relation} is a {model.kind} model; "
                f"tests run {', '.join(RUNNABLE_KINDS)} models",
                path=test.path,
                line=test.line,
            )
        test = _given_as_read(project, test, relation)
        given = {g.relation for g in test.given}
        for read in sorted({*model.reads, *model.depends} - {model.relation}):
            if read not in given and _kind(project, read) != "seed":
                named = project.as_named(read)  # as the test file names it, for every target
                raise ProjectError(
                    f"test {test.name}: {project.as_named(relation)} reads {named}, which "
                    "the test does not give",
                    path=test.path,
                    line=test.line,
                    hint=f"add {named}: [rows] under given (an empty list needs columns: ...)",
                )
        out.append((test, relation))
    return out


def _given_as_read(project: Project, test: UnitTest, relation: str) -> UnitTest:
    """``test`` with each input it names without a schema (``src``) named as the model
    reads it (``m.src``); a name the model reads in no schema, or in several, is an error
    at the test."""
    if all("." in g.relation for g in test.given):
        return test
    model = project.models[relation]
    reads = sorted({*model.reads, *model.depends} - {relation})
    given = []
    for g in test.given:
        if "." in g.relation:
            given.append(g)
            continue
        found = [r for r in reads if Relation(r).name.lower() == g.relation.lower()]
        if len(found) == 1:
            given.append(replace(g, relation=found[0]))
            continue
        model_name = project.as_named(relation)
        shown = ", ".join(project.as_named(r) for r in found or reads) or "nothing"
        raise ProjectError(
            f"test {test.name}: given {g.relation}: {model_name} reads "
            + (
                f"several relations of that name ({shown})"
                if found
                else f"none of that name (it reads {shown})"
            ),
            path=test.path,
            line=test.line,
            hint="name the relation as schema.name, as `dbluigi ls` lists it",
        )
    return replace(test, given=tuple(given))


def project_names_as_built(project: Project, test: UnitTest) -> UnitTest:
    """``test`` with its model and inputs named as the target builds them: a test file
    written for every target names ``staging.x``, which dev builds as ``staging_dev.x``."""
    if not project.config.schema_map:
        return test
    given = tuple(replace(g, relation=project.as_built(g.relation)) for g in test.given)
    model = project.as_built(test.model) if "." in test.model else test.model
    return replace(test, model=model, given=given)


def run_tests(
    project: Project,
    tests: Sequence[tuple[UnitTest, str]],
    *,
    target: Target | None = None,
    variables: Mapping[str, str] | None = None,
    published: Mapping[str, Mapping[str, str]] | None = None,
) -> list[TestResult]:
    """Run each (test, model relation); in an in-memory DuckDB, or on ``target``.
    ``published`` (``published_types``) types the inputs that are neither seeds nor CSV
    files as the target holds them."""
    typed = published or {}
    if target is None:
        return [_one(project, t, rel, None, variables, typed) for t, rel in tests]
    session = target.connect()
    scratch = f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"
    try:
        session.try_lock(scratch)
        drop_leftovers(session, keep=scratch)
        return [_one(project, t, rel, (session, scratch), variables, typed) for t, rel in tests]
    finally:
        try:
            _drop_schema(session, scratch)
            session.unlock(scratch)
        finally:
            session.close()


def published_types(
    project: Project, tests: Sequence[tuple[UnitTest, str]], target: Target
) -> dict[str, dict[str, str]]:
    """The column types, as seed types (``bigint``, ``text`` ...), of the inputs of
    ``tests`` that are published in ``target``; a column of a type no seed type stands
    for is left for its values to type. Connects; raises what connecting raises."""
    wanted: set[str] = set()
    for test, relation in tests:
        model = project.models[relation]
        wanted.update(str(r) for r in (*model.reads, *model.depends))
        wanted.update(g.relation for g in test.given)
    session = target.connect()
    try:
        found = session.column_types(sorted({r.split(".", 1)[0] for r in wanted}))
    finally:
        session.close()
    out: dict[str, dict[str, str]] = {}
    for relation, columns in found.items():
        if relation not in wanted:
            continue
        typed = {name: seed_type(t, target.dialect) for name, t in columns}
        out[relation] = {name: t for name, t in typed.items() if t is not None}
    return out


def seed_type(type_sql: str, dialect: str) -> str | None:
    """The seed type (``dbluigi.targets.base.PORTABLE_TYPES``) a column type as the target
    writes it stands for, or None (an array, an interval ...: typed by the values)."""
    from dbluigi.lazy import errors

    try:
        t = exp.DataType.build(type_sql, dialect=dialect)
    except (errors.ParseError, ValueError):
        return None
    T = exp.DataType.Type
    if t.this in exp.DataType.INTEGER_TYPES:
        return "bigint"
    if t.this in (T.DECIMAL, T.BIGDECIMAL, T.MONEY):
        return "numeric"
    if t.this in exp.DataType.REAL_TYPES:
        return "double"
    if t.this in (T.DATE, T.DATE32):
        return "date"
    if t.this in (T.TIMESTAMPTZ, T.TIMESTAMPLTZ):
        return "timestamptz"
    if t.this in (
        T.TIMESTAMP,
        T.TIMESTAMPNTZ,
        T.DATETIME,
        T.TIMESTAMP_S,
        T.TIMESTAMP_MS,
        T.TIMESTAMP_NS,
    ):
        return "timestamp"
    if t.this == T.BOOLEAN:
        return "boolean"
    if t.this in (T.JSON, T.JSONB):
        return "json"
    if t.this in exp.DataType.TEXT_TYPES:
        return "text"
    return None


def gate(project: Project, relation: str) -> None:
    """``[project] test_before_build``: run the unit tests of ``relation`` in DuckDB; a
    TaskError of class ``test`` (at the first failing test) when one does not pass."""
    from dbluigi.config import STATE_DIR
    from dbluigi.testfiles import find_test_files, read_test_file

    files = find_test_files(project.root, ignore=(STATE_DIR, *project.config.outputs))
    tests = [t for f in files for t in read_test_file(project.root, f)]
    mine = [(t, rel) for t, rel in resolve(project, tests) if rel == relation]
    failed = [r for r in run_tests(project, mine) if not r.passed]
    if failed:
        first = failed[0]
        names = ", ".join(r.test.name for r in failed)
        raise TaskError(
            f"unit tests failed before the build ({names}): {first.message}",
            failure_class="test",
            path=first.test.path,
            line=first.test.line,
            hint=f"see them with: dbluigi test {relation}",
        )


def produce_on_target(
    project: Project, test: UnitTest, relation: str, session: Session
) -> tuple[tuple[str, ...], tuple[tuple[Any, ...], ...]]:
    """The columns and rows the model produces on the test's inputs, on the target (in a
    scratch schema, dropped afterwards): what ``--generate`` expects."""
    scratch = f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"
    session.try_lock(scratch)
    try:
        drop_leftovers(session, keep=scratch)
        session.ensure_schema(scratch)
        produced = _produce(project, project.models[relation], test, session, scratch)
    finally:
        _drop_schema(session, scratch)
        session.unlock(scratch)
    return produced.columns, produced.rows


def drop_leftovers(session: Session, *, keep: str) -> list[str]:
    """Drop the ``dbluigi_test_*`` schemas (but ``keep``) no running test holds; their names."""
    query = exp.select("schema_name").from_(exp.to_table("information_schema.schemata"))
    found = session.query(query.sql(dialect=session.target.dialect))
    names = {str(name) for (name, *_) in found.rows if str(name).startswith(SCRATCH_PREFIX)}
    dropped = []
    for name in sorted(names):
        if name != keep and session.try_lock(name):
            try:
                _drop_schema(session, name)
                dropped.append(name)
            finally:
                session.unlock(name)
    return dropped


def _drop_schema(session: Session, schema: str) -> None:
    schema_name = exp.Table(db=exp.to_identifier(schema, quoted=True))
    drop = exp.Drop(tables=[schema_name], kind="SCHEMA", exists=True, cascade=True)
    session.execute(drop.sql(dialect=session.target.dialect))


def _kind(project: Project, relation: str) -> str | None:
    model = project.models.get(relation)
    return model.kind if model else None


# -- one test ---------------------------------------------------------------------------


def _one(
    project: Project,
    test: UnitTest,
    relation: str,
    on_target: tuple[Session, str] | None,
    variables: Mapping[str, str] | None,
    published: Mapping[str, Mapping[str, str]] = {},
) -> TestResult:
    if test.variables:
        project = load_project(
            project.root,
            target=project.config.target_name or project.config.target_url,
            variables={**(variables or {}), **test.variables},
            keep=False,
        )
    model = project.models[relation]
    try:
        if on_target is None:
            with _fixture_session() as session:
                produced = _produce(project, model, test, session, None, published)
        else:
            session, scratch = on_target
            _drop_schema(session, scratch)
            session.ensure_schema(scratch)
            produced = _produce(project, model, test, session, scratch, published)
    except _NotOnDuckDB as exc:
        return TestResult(test, relation, "error", f"{model.path}: {exc}", hint=ON_TARGET_HINT)
    except DbluigiError as exc:
        where = f"{exc.location}: " if exc.location else ""  # the hint goes apart
        return TestResult(test, relation, "error", where + exc.message, hint=exc.hint or "")
    except Exception as exc:  # the database refused the fixture or the query
        message = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        if on_target is None and project.dialect != "duckdb":
            message = (
                f"{model.path}: fails in DuckDB (transpiled from {project.dialect}): {message}"
            )
            return TestResult(test, relation, "error", message, hint=ON_TARGET_HINT)
        return TestResult(test, relation, "error", message)
    return _compare(test, relation, produced)


@dataclass(frozen=True)
class _Produced:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    expected_columns: tuple[str, ...] = ()
    expected_rows: tuple[tuple[Any, ...], ...] = ()
    failed_checks: tuple[str, ...] = ()
    check_names: tuple[str, ...] = ()


def _produce(
    project: Project,
    model: Model,
    test: UnitTest,
    session: Session,
    scratch: str | None,
    published: Mapping[str, Mapping[str, str]] = {},
) -> _Produced:
    new = f"{model.name}__dbluigi_new"
    names = _names(project, model, test, scratch)
    for given in _all_given(project, model, test):
        schema, name = names[given.relation]
        columns, rows = _fixture(project, given, test, published.get(given.relation, {}))
        session.ensure_schema(schema)
        session.load_rows(schema, name, columns, rows)
    out_schema = scratch or model.schema
    out_name = f"{model.schema}__{new}" if scratch else new
    session.ensure_schema(out_schema)
    mapping = _mapping(project, names, {model.relation: (out_schema, out_name)})
    if model.kind == "python":
        if scratch is not None:
            raise UsageError(
                f"{model.path}: a Python model is tested in DuckDB only",
                hint="run dbluigi test without --on-target",
            )
        from dbluigi.pystep import run_step

        with _reading(session, project.dialect):
            run_step(session, project, model, new)
    else:
        from dbluigi.preview import model_sql

        sql = _rewrite(
            project, model_sql(project, model.relation, partition=test.partition), mapping
        )
        session.create_table_as(out_schema, out_name, _runnable(sql, project, scratch))
        if model.patch is not None:  # corrections, applied before the checks as in a build
            for statement in model.patch.statements:
                patch = _rewrite(project, statement.sql, mapping)
                what = f"{model.patch.path}:{statement.line}"
                session.execute(_runnable(patch, project, scratch, what=what))
    star = exp.select(exp.Star()).from_(table_expr(out_schema, out_name))
    result = session.query(star.sql(dialect=session.target.dialect))
    failed, names_run = _checks(project, model, session, scratch, (out_schema, out_name), mapping)
    expected_columns: tuple[str, ...] = ()
    expected_rows: tuple[tuple[Any, ...], ...] = ()
    if test.query is not None:
        sql = _runnable(
            _rewrite(project, test.query, mapping), project, scratch, what="expect query"
        )
        expected = session.query(sql)
        expected_columns, expected_rows = expected.columns, expected.rows
    return _Produced(
        result.columns, result.rows, expected_columns, expected_rows, failed, names_run
    )


def _names(
    project: Project, model: Model, test: UnitTest, scratch: str | None
) -> dict[str, tuple[str, str]]:
    """Where each input relation lives in this test's database."""
    out = {}
    for given in _all_given(project, model, test):
        rel = Relation(given.relation)
        out[given.relation] = (
            (scratch, f"{rel.schema}__{rel.name}") if scratch else (rel.schema, rel.name)
        )
    return out


def _all_given(project: Project, model: Model, test: UnitTest) -> list[Given]:
    """The test's inputs, and an empty one for each seed the model reads it does not give."""
    given = list(test.given)
    named = {g.relation for g in given}
    for read in sorted({*model.reads, *model.depends} - {model.relation} - named):
        given.append(Given(read))
    return given


def _fixture(
    project: Project, given: Given, test: UnitTest, published: Mapping[str, str] = {}
) -> tuple[tuple[Column, ...], list[tuple[Any, ...]]]:
    """Typed columns and rows of one input: a seed's types from its file, else a CSV's
    sniffed ones, else the published table's (every column of it: those the test leaves
    out are NULL), with the test's ``columns:`` over any of them; else the values'."""
    from dbluigi.seeds import sniff_csv, typed_rows

    model = project.models.get(given.relation)
    named = project.as_named(given.relation)  # as the test file names it
    types: dict[str, str] = {}
    if model is not None and model.kind == "seed":
        types = {c.name: c.type for c in _seed_columns(project, model)}
    elif given.csv is not None:
        types = {c.name: c.type for c in sniff_csv(given.csv).columns}
    elif published:
        types = dict(published)
    known = set(types)
    types.update(given.types)
    items = csv_rows(given.csv) if given.csv is not None else list(given.rows)
    if known:
        for item in items:
            unknown = [k for k in item if k not in known and k not in given.types]
            if unknown:
                raise ProjectError(
                    f"test {test.name}: {named} has no column {unknown[0]}",
                    path=test.path,
                    line=test.line,
                    hint=f"its columns: {', '.join(sorted(known))}",
                )
    if not items and not types:
        raise ProjectError(
            f"test {test.name}: {named} has no rows and no columns",
            path=test.path,
            line=test.line,
            hint=f"give {named}: {{rows: [], columns: {{name: type}}}}",
        )
    try:
        return typed_rows(items, types)
    except ValueError as exc:
        raise ProjectError(
            f"test {test.name}: {named}: {exc}", path=test.path, line=test.line
        ) from None


def _seed_columns(project: Project, model: Model) -> tuple[Column, ...]:
    from dbluigi.seeds import read_yaml_seed, sniff_csv

    path = project.root / model.path
    overrides = project.config.seed_types.get(model.relation, {})
    if model.format == "csv":
        return sniff_csv(path, overrides=overrides).columns
    return read_yaml_seed(path, overrides=overrides, table=model.part)[0].columns


def _mapping(
    project: Project, names: Mapping[str, tuple[str, str]], extra: Mapping[str, tuple[str, str]]
) -> dict[TableRef, TableRef]:
    """References to rewrite: each relation (qualified, and bare in the default schema),
    as the target builds it and as the project names it (an ``expect`` query is written
    with the project's names, for every target)."""
    mapping = {}
    for relation, (schema, name) in {**names, **extra}.items():
        # a bare name is in the project's default schema, wherever the target moves it
        for written in dict.fromkeys((Relation(relation), Relation(project.as_named(relation)))):
            mapping[TableRef(written.schema, written.name)] = TableRef(schema, name)
            if written.schema == project.config.schema:
                mapping[TableRef(None, written.name)] = TableRef(schema, name)
    return mapping


def _rewrite(project: Project, sql: str, mapping: Mapping[TableRef, TableRef]) -> str:
    from dbluigi.sqlinfo import replace_relations

    return replace_relations(sql, mapping, dialect=project.dialect)


def _runnable(sql: str, project: Project, scratch: str | None, *, what: str = "its SQL") -> str:
    """``sql`` as the test's database runs it: transpiled to DuckDB unless on the target."""
    if scratch is not None or project.dialect == "duckdb":
        return sql
    try:
        return _to_duckdb(sql, project.dialect)
    except Exception as exc:
        text = " ".join(str(exc).split())
        raise _NotOnDuckDB(
            f"{what} does not transpile from {project.dialect} to DuckDB: {text}"
        ) from None


def _to_duckdb(sql: str, read: str) -> str:
    import sqlglot
    from sqlglot.errors import ErrorLevel

    return ";\n".join(
        sqlglot.transpile(sql, read=read, write="duckdb", unsupported_level=ErrorLevel.RAISE)
    )


# -- checks -----------------------------------------------------------------------------


def _checks(
    project: Project,
    model: Model,
    session: Session,
    scratch: str | None,
    out: tuple[str, str],
    mapping: Mapping[TableRef, TableRef],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names of the model's checks that failed on the produced table, and of all it ran:
    header checks by their text, ``.check.sql`` queries as ``path:line``."""
    from dbluigi.checks import CheckTarget, header_violation

    target = CheckTarget(model, out[0], out[1], previous_rows=None)
    failed, ran = [], []
    with _reading(session, project.dialect if scratch is None else None):
        for check in model.header.checks:
            ran.append(check.text)
            if header_violation(session, project, target, check) is not None:
                failed.append(check.text)
    for check_file in project.gated_checks(model.relation):
        if check_file.format != "sql":
            continue  # a .check.py is not run by unit tests
        for statement in check_file.statements:
            name = f"{check_file.path}:{statement.line}"
            ran.append(name)
            sql = _runnable(_rewrite(project, statement.sql, mapping), project, scratch, what=name)
            if session.query(sql, limit=1).rows:
                failed.append(name)
    return tuple(failed), tuple(ran)


def _check_matches(wanted: str, name: str) -> bool:
    """Whether a name in ``checks_fail`` means the check ``name``: its text (spaces aside),
    its ``path:line``, its file's path or file name, or file name and line."""
    squeeze = "".join(wanted.split()).lower()
    if squeeze == "".join(name.split()).lower():
        return True
    path, _, line = name.rpartition(":")
    if not path:
        return False
    base = path.rsplit("/", 1)[-1]
    return wanted in (path, base, f"{base}:{line}")


# -- comparing --------------------------------------------------------------------------


def _compare(test: UnitTest, relation: str, produced: _Produced) -> TestResult:
    problems = []
    for wanted in test.checks_fail:
        if not any(_check_matches(wanted, n) for n in produced.check_names):
            return TestResult(
                test,
                relation,
                "error",
                f"checks_fail names {wanted!r}, which is no check of {test.model}",
                hint="its checks: " + ", ".join(produced.check_names)
                if produced.check_names
                else "",
            )
        if not any(_check_matches(wanted, n) for n in produced.failed_checks):
            problems.append(f"check {wanted} passed; the test expects it to fail")
    for name in produced.failed_checks:
        if not any(_check_matches(w, name) for w in test.checks_fail):
            problems.append(f"check {name} failed")
    if test.rows is None and test.query is None:
        return _verdict(test, relation, problems)
    if test.query is not None:
        columns = tuple(c.lower() for c in produced.expected_columns)
        expected = [tuple(_canonical(v) for v in row) for row in produced.expected_rows]
    else:
        assert test.rows is not None
        columns = tuple(dict.fromkeys(k.lower() for row in test.rows for k in row))
        expected = [tuple(_canonical(_get(row, c)) for c in columns) for row in test.rows]
    have = {c.lower(): i for i, c in enumerate(produced.columns)}
    absent = [c for c in columns if c not in have]
    if absent:
        return TestResult(
            test,
            relation,
            "failed",
            f"the model produces no column {', '.join(absent)}",
            hint="its columns: " + ", ".join(produced.columns),
        )
    actual = [tuple(_canonical(row[have[c]]) for c in columns) for row in produced.rows]
    if test.ordered:
        if actual != expected:
            problems.append("rows differ (in order)")
            return _verdict(test, relation, problems, columns, tuple(expected), tuple(actual))
        return _verdict(test, relation, problems)
    missing = Counter(expected) - Counter(actual)
    unexpected = Counter(actual) - Counter(expected)
    if missing or unexpected:
        problems.append(f"{missing.total()} rows missing, {unexpected.total()} unexpected")
    return _verdict(
        test, relation, problems, columns, tuple(missing.elements()), tuple(unexpected.elements())
    )


def _get(row: Mapping[str, Any], column: str) -> Any:
    for key, value in row.items():
        if key.lower() == column:
            return value
    return None


def _verdict(
    test: UnitTest,
    relation: str,
    problems: list[str],
    columns: tuple[str, ...] = (),
    missing: tuple[tuple[Any, ...], ...] = (),
    unexpected: tuple[tuple[Any, ...], ...] = (),
) -> TestResult:
    if not problems:
        return TestResult(test, relation, "passed")
    return TestResult(test, relation, "failed", "; ".join(problems), columns, missing, unexpected)


def _canonical(value: Any) -> Any:
    """A value as compared: numbers by value, dates and times as ISO text."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        # a float to 12 significant digits: 0.1 + 0.2 computed is the 0.3 written
        number = decimal.Decimal(f"{value:.12g}" if isinstance(value, float) else value)
        return number.normalize() if number.is_finite() else number
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    return value


# -- the fixture database ---------------------------------------------------------------


@contextmanager
def _fixture_session() -> Iterator[Session]:
    from dbluigi.targets.fixture import fixture_session

    session = fixture_session()
    try:
        yield session
    finally:
        session.close()


@contextmanager
def _reading(session: Session, dialect: str | None) -> Iterator[None]:
    """While inside, a fixture session transpiles what it runs from ``dialect``."""
    from dbluigi.targets.fixture import FixtureSession

    if not isinstance(session, FixtureSession) or dialect in (None, "duckdb"):
        yield
        return
    session.read = dialect
    try:
        yield
    finally:
        session.read = None
