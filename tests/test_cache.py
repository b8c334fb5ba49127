"""The parse cache: dbluigi.cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from dbluigi import __version__
from dbluigi.cache import CACHE_FILE, SqlInfoCache
from dbluigi.sqlinfo import TableRef, analyze_sql

pytestmark = pytest.mark.unit

SQL = "create table s.t (id int references raw.p (id));\ninsert into raw.log select stg.f(1)"


def test_a_warm_cache_gives_the_same_analysis_without_parsing(tmp_path: Path) -> None:
    cold = SqlInfoCache(tmp_path)
    info = cold.analyze(SQL, dialect="postgres", path="m.sql")
    cold.save()
    warm = SqlInfoCache(tmp_path)
    assert warm.analyze(SQL, dialect="postgres", path="m.sql") == info
    assert (warm.hits, warm.misses) == (1, 0)
    assert info == analyze_sql(SQL, dialect="postgres", path="m.sql")
    assert info.references == (TableRef("raw", "p"),)
    assert info.line_of(TableRef("raw", "log")) == 2


def test_an_entry_of_an_older_shape_is_analyzed_again(tmp_path: Path) -> None:
    cache = SqlInfoCache(tmp_path)
    cache.analyze(SQL, dialect="postgres", path="m.sql")
    cache.save()
    path = tmp_path / CACHE_FILE
    entries = json.loads(path.read_text())
    for entry in entries.values():  # an entry of a shape this version does not read
        entry["statements"] = [["select 1", 1]]
    path.write_text(json.dumps(entries))
    again = SqlInfoCache(tmp_path)
    info = again.analyze(SQL, dialect="postgres", path="m.sql")
    assert (again.hits, again.misses) == (0, 1)
    assert info.modifies == (TableRef("raw", "log"),)


def test_a_cache_written_before_the_entry_format_changed_is_not_read(tmp_path: Path) -> None:
    # the key of the same text before the format was part of it, holding a stale answer
    old_key = hashlib.sha1(f"{__version__}\0postgres\0{SQL}".encode()).hexdigest()
    stale = {"statements": [], "reads": [], "writes": []}
    (tmp_path / CACHE_FILE).write_text(json.dumps({old_key: stale}))
    cache = SqlInfoCache(tmp_path)
    info = cache.analyze(SQL, dialect="postgres", path="m.sql")
    assert cache.misses == 1
    assert [s.kind for s in info.statements] == ["create_table", "insert"]
