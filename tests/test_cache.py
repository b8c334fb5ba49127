"""The parse cache: dbluigi.cache."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from dbluigi import __version__
from dbluigi.cache import (
    CACHE_FILE,
    HASHES_FILE,
    RACY_NS,
    TYPES_FILE,
    TYPES_KEPT,
    FileHashes,
    SeedTypes,
    SqlInfoCache,
)
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


def _age(path: Path, seconds: float) -> None:
    """Set the file's modification time back (its change time moves to now)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_file_hashes_are_kept_across_processes_and_never_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / ".dbluigi" / "cache"
    seed = tmp_path / "big.csv"
    seed.write_text("id\n1\n")
    expected = hashlib.sha256(seed.read_bytes()).hexdigest()
    hashes = FileHashes(folder)
    assert hashes.hash(seed) == expected
    hashes.save()
    # just written: its change time is too recent to trust a stored hash (racy)
    assert json.loads((folder / HASHES_FILE).read_text()) == []

    # once it has stood still, the next process reads the stored hash, not the file
    monkeypatch.setattr(time, "time_ns", lambda: os.stat(seed).st_ctime_ns + RACY_NS + 1)
    hashes = FileHashes(folder)
    hashes.hash(seed)
    hashes.save()
    assert len(json.loads((folder / HASHES_FILE).read_text())) == 1
    opened: list[Path] = []
    original_open = Path.open
    monkeypatch.setattr(
        Path, "open", lambda self, *a, **k: opened.append(self) or original_open(self, *a, **k)
    )
    assert FileHashes(folder).hash(seed) == expected
    assert seed not in opened

    # any write, even one that keeps the size and puts the modification time back, is seen
    stat = os.stat(seed)
    seed.write_text("id\n2\n")
    os.utime(seed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert FileHashes(folder).hash(seed) == hashlib.sha256(b"id\n2\n").hexdigest()


def test_file_hashes_of_files_not_looked_at_are_kept_until_they_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build of a few models keeps the stored hashes of the others' files; the entries
    of a file deleted or changed since are dropped."""
    folder = tmp_path / "cache"
    files = [tmp_path / f"f{i}.csv" for i in range(3)]
    for i, f in enumerate(files):
        f.write_text(f"x\n{i}\n")
    monkeypatch.setattr(time, "time_ns", lambda: 10**30)  # everything has stood still
    hashes = FileHashes(folder)
    for f in files:
        hashes.hash(f)
    hashes.save()

    def stored() -> list[str]:
        return sorted(e[0] for e in json.loads((folder / HASHES_FILE).read_text()))

    assert stored() == sorted(map(str, files))
    hashes = FileHashes(folder)
    hashes.hash(files[0])
    hashes.save()
    assert stored() == sorted(map(str, files))  # the other two were not looked at: kept

    files[1].unlink()
    files[0].write_text("x\nchanged\n")
    hashes = FileHashes(folder)
    assert hashes.hash(files[0]) == hashlib.sha256(b"x\nchanged\n").hexdigest()
    hashes.save()
    entries = json.loads((folder / HASHES_FILE).read_text())
    assert sorted(e[0] for e in entries) == [str(files[0]), str(files[2])]
    assert len(entries) == 2  # the old entry of the changed file is gone


def test_a_corrupted_parse_cache_entry_is_a_miss(tmp_path: Path) -> None:
    cache = SqlInfoCache(tmp_path)
    key_text = "select 1 as id"
    cache.analyze(key_text, dialect="duckdb", path="m.sql")
    cache.save()
    data = json.loads((tmp_path / CACHE_FILE).read_text())
    for bad in ([], "x", 5, {"statements": "nope"}):
        (tmp_path / CACHE_FILE).write_text(json.dumps({k: bad for k in data}))
        again = SqlInfoCache(tmp_path)
        assert again.analyze(key_text, dialect="duckdb", path="m.sql").is_query
        assert again.misses == 1


def test_seed_types_are_kept_by_content_and_overrides_and_bounded(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    types = SeedTypes(folder)
    plain, overridden = types.key("abc", {}), types.key("abc", {"id": "text"})
    assert plain != overridden and plain != types.key("abd", {})
    types.put(plain, [("id", "bigint"), ("name", "text")], literal=True)
    types.put(overridden, [("id", "text"), ("name", "text")])
    again = SeedTypes(folder)  # read back from the file
    assert again.get(plain) == ([("id", "bigint"), ("name", "text")], True)
    assert again.get(overridden) == ([("id", "text"), ("name", "text")], None)
    (folder / TYPES_FILE).write_text(json.dumps({plain: [["id", "bigint"]]}))  # no literal
    again = SeedTypes(folder)  # an entry written before dbluigi kept ``literal``
    assert again.get(plain) == ([("id", "bigint")], None)
    assert again.get(overridden) is None
    again.put(plain, [("id", "bigint")], literal=False)  # over the entry of the old shape
    assert SeedTypes(folder).get(plain) == ([("id", "bigint")], False)
    stored = json.loads((folder / TYPES_FILE).read_text())[plain]
    assert stored == {"columns": [["id", "bigint"]], "literal": False}
    for n in range(TYPES_KEPT + 5):
        again.put(again.key(str(n), {}), [("c", "text")])
    kept = json.loads((folder / TYPES_FILE).read_text())
    assert len(kept) == TYPES_KEPT and plain not in kept  # the oldest went first
    (folder / TYPES_FILE).write_text("[1, 2")  # damaged: nothing known, nothing raised
    assert SeedTypes(folder).get(plain) is None
    foreign = {
        "j": 3,
        "k": [["a"]],
        "l": {"columns": [["a", 1]]},
        "m": {"literal": True},
        "n": {"columns": [["a", "text"]], "literal": 1},
    }
    (folder / TYPES_FILE).write_text(json.dumps(foreign))  # foreign shapes: skipped
    assert all(SeedTypes(folder).get(key) is None for key in foreign)
