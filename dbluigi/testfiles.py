"""Unit-test files: fixture rows for a model's inputs and the rows it should produce.

A test file is YAML named ``<anything>.test.yml`` or ``<anything>.tests.yml`` (``.yaml``
too), next to its model or under the project's ``tests/`` folder; the scanner never
takes such a file for a seed (its stem holds a dot). Each top-level key is a test::

    reports_all_twelve_months:
      model: reporting.agency_reporting
      given:
        raw.offense_monthly: [{agency_id: 1, data_year: 2020, month_num: 1}]
        staging.agencies: {csv: fixtures/agencies.csv}       # relative to this file
        raw.other: {rows: [], columns: {id: bigint}}           # explicit types
      vars: {year: "2020"}
      partition: 2020
      expect: [{agency_id: 1, months_reported: 1}]           # or {rows: [...], ordered: true}
                                                              # or {query: "select ..."}
                                                              # and/or {checks_fail: [...]}

Only the columns a test gives exist in an input (with the types of a seed's file for
seeds, else the narrowest type of the values); only the columns the expected rows name
are compared.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dbluigi import yamlstrict
from dbluigi.errors import ProjectError
from dbluigi.scan import utf8_text
from dbluigi.suggest import did_you_mean

TEST_SUFFIXES = (".test.yml", ".test.yaml", ".tests.yml", ".tests.yaml")
_TEST_KEYS = ("model", "given", "expect", "vars", "partition", "ordered", "description")
_GIVEN_KEYS = ("rows", "csv", "columns")
_EXPECT_KEYS = ("rows", "query", "ordered", "checks_fail")
_IGNORED_DIRS = {"__pycache__", "node_modules", "venv"}


@dataclass(frozen=True)
class Given:
    """The rows of one input relation: from the test file, or a CSV file's path."""

    relation: str
    rows: tuple[Mapping[str, Any], ...] = ()
    csv: Path | None = None
    types: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitTest:
    """One test: a model, its inputs' rows, and what it should produce."""

    name: str
    path: str  # the test file, relative to the project
    line: int
    model: str  # as written; resolved against the project when run
    given: tuple[Given, ...]
    rows: tuple[Mapping[str, Any], ...] | None = None  # expected rows
    query: str | None = None  # or a query giving them
    ordered: bool = False
    checks_fail: tuple[str, ...] = ()
    variables: Mapping[str, str] = field(default_factory=dict)
    partition: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def is_test_file(filename: str) -> bool:
    return filename.lower().endswith(TEST_SUFFIXES)


def find_test_files(root: Path, *, ignore: tuple[str, ...] = ()) -> list[str]:
    """Every test file under ``root`` (hidden folders and ``ignore`` left out), sorted."""
    ignored = {part.strip("/") for part in ignore}
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel = "" if rel == "." else rel
        dirnames[:] = [
            d
            for d in dirnames
            if not d.startswith(".")
            and d not in _IGNORED_DIRS
            and (f"{rel}/{d}" if rel else d) not in ignored
        ]
        found.extend(f"{rel}/{f}" if rel else f for f in filenames if is_test_file(f))
    return sorted(found)


def read_test_file(root: Path, path: str) -> list[UnitTest]:
    """The tests of one file; a ProjectError naming the file and line when it is wrong."""
    text = utf8_text((root / path).read_bytes(), path)
    try:
        # a test (or a row's column) written twice is refused
        node, data = yamlstrict.read(text, yamlstrict.loader())
    except yaml.YAMLError as exc:
        raise ProjectError(
            f"not valid YAML: {yamlstrict.problem(exc)}",
            path=path,
            line=yamlstrict.error_line(text, exc),
            hint="a test file is a mapping of test names to tests; see README, Unit tests",
        ) from None
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise ProjectError(
            "a test file must be a mapping of test names to tests",
            path=path,
            line=1,
            hint="name: {model: schema.table, given: {...}, expect: [...]}",
        )
    lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    return [
        _test(root, path, str(name), lines.get(str(name), 1), body) for name, body in data.items()
    ]


def _test(root: Path, path: str, name: str, line: int, body: Any) -> UnitTest:
    def error(message: str, hint: str | None = None) -> ProjectError:
        return ProjectError(f"test {name}: {message}", path=path, line=line, hint=hint)

    if not isinstance(body, dict):
        raise error("must be a mapping with model, given and expect")
    for key in body:
        if key not in _TEST_KEYS:
            raise error(f"unknown key {key!r}", hint=did_you_mean(str(key), _TEST_KEYS))
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise error("names no model", hint="model: schema.table")
    given_raw = body.get("given") or {}
    if not isinstance(given_raw, dict):
        raise error("given must map relations to rows")
    given = tuple(_given(root, path, str(rel), value, error) for rel, value in given_raw.items())
    if "expect" not in body:
        raise error("has no expect", hint="expect: [rows], {query: ...} or {checks_fail: [...]}")
    expect = body["expect"]
    ordered = bool(body.get("ordered", False))
    rows: tuple[Mapping[str, Any], ...] | None = None
    query: str | None = None
    checks_fail: tuple[str, ...] = ()
    if isinstance(expect, list):
        rows = _rows(expect, error, "expect")
    elif isinstance(expect, dict):
        for key in expect:
            if key not in _EXPECT_KEYS:
                raise error(
                    f"unknown expect key {key!r}", hint=did_you_mean(str(key), _EXPECT_KEYS)
                )
        if "rows" in expect and "query" in expect:
            raise error("expect takes rows or a query, not both")
        if "rows" in expect:
            rows = _rows(expect["rows"] or [], error, "expect")
        if "query" in expect:
            query = str(expect["query"])
        ordered = bool(expect.get("ordered", ordered))
        failing = expect.get("checks_fail") or []
        if not isinstance(failing, list):
            failing = [failing]
        checks_fail = tuple(str(c) for c in failing)
        if rows is None and query is None and not checks_fail:
            raise error("expect names no rows, query or checks_fail")
    else:
        raise error("expect must be a list of rows or a mapping")
    variables = body.get("vars") or {}
    if not isinstance(variables, dict):
        raise error("vars must be a mapping of names to values")
    partition = body.get("partition")
    return UnitTest(
        name=name,
        path=path,
        line=line,
        model=model.lower(),
        given=given,
        rows=rows,
        query=query,
        ordered=ordered,
        checks_fail=checks_fail,
        variables={str(k): str(v) for k, v in variables.items()},
        partition=None if partition is None else str(partition),
    )


def _given(root: Path, path: str, relation: str, value: Any, error: Any) -> Given:
    relation = relation.lower()
    if isinstance(value, list):
        return Given(relation, _rows(value, error, relation))
    if not isinstance(value, dict):
        raise error(f"given {relation}: expected a list of rows, or {{csv: path}} or {{rows: ...}}")
    for key in value:
        if key not in _GIVEN_KEYS:
            raise error(
                f"given {relation}: unknown key {key!r}", hint=did_you_mean(str(key), _GIVEN_KEYS)
            )
    types = value.get("columns") or {}
    if not isinstance(types, dict):
        raise error(f"given {relation}: columns must map names to types (bigint, text, date...)")
    types = {str(k): str(v).lower() for k, v in types.items()}
    if "csv" in value:
        file = (root / path).parent / str(value["csv"])
        if not file.is_file():
            raise error(f"given {relation}: no CSV file {value['csv']} next to the test file")
        return Given(relation, csv=file, types=types)
    return Given(relation, _rows(value.get("rows") or [], error, relation), types=types)


def _rows(value: Any, error: Any, what: str) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise error(f"{what}: rows must be a list of mappings (column: value)")
    return tuple({str(k): v for k, v in row.items()} for row in value)


def csv_rows(file: Path) -> list[dict[str, Any]]:
    """A CSV file's rows as mappings; an empty field is NULL."""
    text = utf8_text(file.read_bytes(), file)
    stream = io.StringIO(text, newline="")
    return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(stream)]
