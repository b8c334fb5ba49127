"""The loaded project kept between commands (``dbluigi.snapshot``): read back only while
nothing it was loaded from changed; otherwise the project is loaded from its files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import dbluigi.cache
import dbluigi.project
from dbluigi import snapshot
from dbluigi.errors import ProjectError
from dbluigi.project import Project, load_project

pytestmark = pytest.mark.unit

DUCKDB = "duckdb:///t.duckdb"


def _project(root: Path) -> Path:
    (root / "raw").mkdir(parents=True)
    (root / "marts").mkdir()
    (root / "dbluigi.toml").write_text('[project]\nname = "p"\n\n[vars]\nlow = 1\n')
    (root / "raw" / "people.csv").write_text("id,name\n1,a\n2,b\n")
    (root / "marts" / "names.sql").write_text("select id, upper(name) as name from raw.people\n")
    (root / "marts" / "totals.sql").write_text("select count(*) as n from marts.names\n")
    return root


class Loads:
    """``load_project``, telling whether the files were scanned (not read back)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.scans = 0
        scan = dbluigi.project.scan_files

        def counted(*args: object, **kwargs: object) -> object:
            self.scans += 1
            return scan(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(dbluigi.project, "scan_files", counted)

    def __call__(self, root: Path, **options: object) -> tuple[Project, bool]:
        """The project, and whether it was read back."""
        before = self.scans
        project = load_project(root, target=options.pop("target", DUCKDB), **options)  # type: ignore[arg-type]
        return project, self.scans == before

    def twice(self, root: Path, **options: object) -> Project:
        """Load twice from the files: the second load, which saw what the first did,
        keeps the project."""
        first, read_back = self(root, **dict(options))
        assert not read_back
        second, read_back = self(root, **dict(options))
        assert not read_back
        _same(second, first)
        return second


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Loads:
    # files written by the test a moment ago are kept (the racy rule has its own test);
    # each change below comes a clock tick after the load it follows
    monkeypatch.setattr(dbluigi.cache, "RACY_NS", 0)
    return Loads(monkeypatch)


def _same(kept: Project, loaded: Project) -> None:
    assert kept.models == loaded.models
    assert kept.graph.order == loaded.graph.order
    assert kept.checks == loaded.checks
    assert kept.config == loaded.config
    assert kept.root == loaded.root


def _tick() -> None:
    time.sleep(0.05)  # past the file system clock's tick


def _kept(root: Path) -> list[Path]:
    return list((root / ".dbluigi" / "cache").glob("project-*.pickle"))


def test_an_unchanged_project_is_read_back_as_it_was_loaded(tmp_path: Path, loads: Loads) -> None:
    root = _project(tmp_path / "p")
    first, read_back = loads(root)
    assert not read_back
    (noted,) = _kept(root)  # what the load looked at, without the project
    size = noted.stat().st_size
    _, read_back = loads(root)  # it saw the same: this one keeps the project
    assert not read_back and noted.stat().st_size > size
    again, read_back = loads(root)
    assert read_back
    _same(again, first)
    assert again.model_parents("marts.totals") == ("marts.names",)


def test_a_project_changed_before_each_load_is_never_kept(tmp_path: Path, loads: Loads) -> None:
    root = _project(tmp_path / "p")
    for n in range(3):
        loads(root)
        (noted,) = _kept(root)
        assert b'kept":false' in noted.read_bytes() and noted.stat().st_size < 4096
        _tick()
        (root / "marts" / "names.sql").write_text(f"select {n} as id\n")


def _edit(root: Path) -> None:  # the same size
    (root / "marts" / "names.sql").write_text("select id, lower(name) as name from raw.people\n")


def _edit_keeping_times(root: Path) -> None:  # size and modification time as they were
    path = root / "marts" / "names.sql"
    st = path.stat()
    path.write_text("select id, lower(name) as name from raw.people\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _add(root: Path) -> None:
    (root / "marts" / "extra.sql").write_text("select n + 1 as m from marts.totals\n")


def _remove(root: Path) -> None:
    (root / "marts" / "totals.sql").unlink()


def _rename(root: Path) -> None:
    (root / "marts" / "totals.sql").rename(root / "marts" / "sums.sql")


def _new_folder(root: Path) -> None:
    (root / "staging").mkdir()
    (root / "staging" / "people.sql").write_text("select * from raw.people\n")


def _new_deeper_folder(root: Path) -> None:
    (root / "marts" / "deeper").mkdir()
    (root / "marts" / "deeper" / "more.sql").write_text("select 1 as one\n")


def _companion(root: Path) -> None:
    (root / "marts" / "names.check.sql").write_text("select * from marts.names where id is null\n")


def _configuration(root: Path) -> None:
    (root / "dbluigi.toml").write_text('[project]\nname = "p"\n\n[vars]\nlow = 2\n')


def _seed_replaced(root: Path) -> None:  # an editor's save: a new file renamed over it
    new = root / "raw" / "people.new"
    new.write_text("id,name\n1,a\n2,b\n")
    new.rename(root / "raw" / "people.csv")


@pytest.mark.parametrize(
    "change",
    [
        _edit,
        _edit_keeping_times,
        _add,
        _remove,
        _rename,
        _new_folder,
        _new_deeper_folder,
        _companion,
        _configuration,
        _seed_replaced,
    ],
)
def test_every_change_is_seen(tmp_path: Path, loads: Loads, change: Callable[[Path], None]) -> None:
    root = _project(tmp_path / "p")
    loads.twice(root)
    assert loads(root)[1]
    _tick()
    change(root)
    changed, read_back = loads(root)
    assert not read_back
    _same(changed, load_project(root, target=DUCKDB, use_cache=False))
    _tick()
    assert not loads(root)[1]  # the new state is kept in turn
    again, read_back = loads(root)
    assert read_back
    _same(again, changed)


def test_files_a_scan_does_not_take_change_nothing(tmp_path: Path, loads: Loads) -> None:
    root = _project(tmp_path / "p")
    loads.twice(root)
    _tick()
    (root / "marts" / ".names.sql.swp").write_text("an editor's")
    (root / "marts" / "notes.md").write_text("what the marts are")
    (root / "data").mkdir()
    loads.twice(root)  # a new folder is looked into
    _tick()
    (root / "data" / "today.log").write_text("the data an -- inputs: glob reads\n")
    (root / "marts" / "notes.md").unlink()
    assert loads(root)[1]


def test_a_folder_the_scan_could_not_list_is_not_taken_as_unchanged(
    tmp_path: Path, loads: Loads, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder os.walk cannot list (no permission, gone while walked) is passed over;
    once it can be, its models load: the project kept without them is not read back."""
    root = _project(tmp_path / "p")
    (root / "locked").mkdir()
    (root / "locked" / "hidden.sql").write_text("select 1 as one\n")
    locked = {str(root / "locked")}
    scandir = os.scandir

    def refused(path: str = ".") -> object:
        if os.fspath(path).rstrip("/") in locked:  # as chmod 0 does, but for root too
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refused)
    without = loads(root)[0]
    assert "locked.hidden" not in without.models
    _tick()
    loads(root)
    _tick()
    locked.clear()  # chmod 755
    project, read_back = loads(root)
    assert not read_back and "locked.hidden" in project.models


def test_a_folder_made_a_symbolic_link_or_back_is_a_change(tmp_path: Path, loads: Loads) -> None:
    """The scan does not walk into a symbolic link to a folder: a folder moved elsewhere
    and linked back (its files the same inodes, times and all) leaves the project, and
    comes back into it when the link is replaced by the folder."""
    root = _project(tmp_path / "p")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "staging").mkdir()
    (root / "staging" / "people.sql").write_text("select * from raw.people\n")
    loads.twice(root)
    assert loads(root)[1]
    _tick()
    (root / "staging").rename(elsewhere / "staging")
    (root / "staging").symlink_to(elsewhere / "staging")
    linked, read_back = loads(root)
    assert not read_back and "staging.people" not in linked.models
    _tick()
    assert not loads(root)[1]  # kept in turn
    assert loads(root)[1]
    _tick()
    (root / "staging").unlink()
    (elsewhere / "staging").rename(root / "staging")
    moved_back, read_back = loads(root)
    assert not read_back and "staging.people" in moved_back.models


def test_dumps_are_checked_again_when_read_back(tmp_path: Path, loads: Loads) -> None:
    """Where a dump writes is resolved through the output folder's symlinks, which the
    scan does not look at: two dumps that came to write one file are refused as in a load."""
    root = _project(tmp_path / "p")
    for name in ("a", "b"):
        (root / "marts" / f"dump_{name}.sql").write_text(
            f"-- kind: dump\n-- path: {name}.csv\nselect * from marts.names\n"
        )
    (root / "exports").mkdir()
    loads.twice(root)
    assert loads(root)[1]
    (root / "exports" / "b.csv").symlink_to("a.csv")
    with pytest.raises(ProjectError, match="both write"):
        load_project(root, target=DUCKDB, use_cache=False)
    with pytest.raises(ProjectError, match="both write"):
        loads(root)


def test_variables_targets_and_the_environment_each_have_their_own(
    tmp_path: Path, loads: Loads, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path / "p")
    (root / "dbluigi.toml").write_text(
        '[project]\nname = "p"\ntarget = "duckdb:///${SNAPSHOT_DB}.duckdb"\n\n[vars]\nlow = 1\n'
    )
    monkeypatch.setenv("SNAPSHOT_DB", "one")
    one = loads.twice(root, target=None)
    monkeypatch.setenv("SNAPSHOT_DB", "two")  # the target the environment names
    two = loads.twice(root, target=None)
    assert two.config.target_url != one.config.target_url
    given = loads.twice(root, target=None, variables={"low": "3"})
    assert given.config.variables["low"] == "3"
    postgres = loads.twice(root, target="postgresql://root@127.0.0.1:5432/test")
    assert postgres.dialect == "postgres"
    for variables, target, expected in (
        (None, None, two),
        ({"low": "3"}, None, given),
        (None, "postgresql://root@127.0.0.1:5432/test", postgres),
    ):  # each configuration's own, side by side
        kept, read_back = loads(root, variables=variables, target=target)
        assert read_back
        _same(kept, expected)


def test_no_password_is_kept(tmp_path: Path, loads: Loads, monkeypatch: pytest.MonkeyPatch) -> None:
    """The configuration holds the target's URL, its password from the environment
    included: a kept project leaves it out, and is read back with this command's."""
    root = _project(tmp_path / "p")
    (root / "dbluigi.toml").write_text(
        '[project]\nname = "p"\ntarget = "postgresql://u:${SNAPSHOT_PW}@127.0.0.1:5432/db"\n\n'
        # a source's URL, and its client key's passphrase (libpq's sslpassword)
        '[sources.crm]\nschema = "crm"\ntables = ["accounts"]\n'
        'url = "postgresql://r:${SNAPSHOT_PW}@crm-db/crm?sslmode=require&sslpassword=${KEY_PW}"\n'
    )
    monkeypatch.setenv("SNAPSHOT_PW", "hunter2-kept-nowhere")
    monkeypatch.setenv("KEY_PW", "passphrase-kept-nowhere")
    loaded = loads.twice(root, target=None)
    (kept,) = _kept(root)
    assert b"hunter2" not in kept.read_bytes()
    assert b"passphrase-kept" not in kept.read_bytes()
    assert "sslpassword=***" in loaded.models["crm.accounts"].text  # what lineage shows
    again, read_back = loads(root, target=None)
    assert read_back and again.config.target_url == loaded.config.target_url
    assert "hunter2-kept-nowhere" in (again.config.target_url or "")
    # nor a hash of it: another password reads the same project back
    monkeypatch.setenv("SNAPSHOT_PW", "another")
    again, read_back = loads(root, target=None)
    assert read_back and "another" in (again.config.target_url or "")


def test_a_file_changed_just_before_the_load_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path / "p")  # its files changed a moment ago: within the racy time
    loads = Loads(monkeypatch)
    loads(root)
    assert not _kept(root)
    loads(root)
    assert not _kept(root) and not loads(root)[1]


def test_a_snapshot_from_elsewhere_or_damaged_is_not_read(tmp_path: Path, loads: Loads) -> None:
    root = _project(tmp_path / "p")
    loads.twice(root)
    copy = tmp_path / "copy"  # a checkout with .dbluigi/ committed, say
    shutil.copytree(root, copy)
    project, read_back = loads(copy)
    assert not read_back and project.root == copy
    (kept,) = _kept(root)
    for damaged in (b"", b"not a snapshot\n", kept.read_bytes()[:-100], snapshot.MAGIC + b"{\n"):
        kept.write_bytes(damaged)
        project, read_back = loads(root)
        assert not read_back
        _same(project, load_project(root, target=DUCKDB, use_cache=False))


def test_another_dbluigi_does_not_read_it(
    tmp_path: Path, loads: Loads, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path / "p")
    loads.twice(root)
    assert loads(root)[1]
    monkeypatch.setattr(snapshot, "stamp", lambda: {"dbluigi/project.py": (1, 1)})
    assert not loads(root)[1]


def test_without_the_cache_nothing_is_read_or_kept(tmp_path: Path, loads: Loads) -> None:
    root = _project(tmp_path / "p")
    loads(root, use_cache=False)
    assert not (root / ".dbluigi").exists()


def test_a_unit_tests_variables_keep_nothing(tmp_path: Path, loads: Loads) -> None:
    """``dbluigi test`` loads the project again with each test's variables: those loads
    neither note nor keep it, so the project of the commands stays kept."""
    root = _project(tmp_path / "p")
    loads.twice(root)
    for n in range(5):
        for _ in range(2):
            loads(root, variables={"low": str(n)}, keep=False)
    assert len(_kept(root)) == 1
    assert loads(root)[1]


def _lineage(root: Path) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "dbluigi", "lineage", "--format", "json", "-p", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    graph = json.loads(done.stdout)
    parents: dict[str, list[str]] = {node["id"]: [] for node in graph["nodes"]}
    for edge in graph["edges"]:
        parents[edge["to"]].append(edge["from"])
    return {node: sorted(found) for node, found in parents.items()}


def test_commands_read_it_back_and_see_an_edit(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    time.sleep(2.1)  # the files stood still long enough to be kept
    first = _lineage(root)
    assert _lineage(root) == first  # kept
    assert _lineage(root) == first  # read back
    (kept,) = _kept(root)
    assert b'kept":true' in kept.read_bytes()[:200_000]
    (root / "marts" / "totals.sql").write_text("select count(*) as n from raw.people\n")
    edited = _lineage(root)
    assert edited != first and edited["marts.totals"] == ["raw.people"]
