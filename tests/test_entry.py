"""The command's entry point: ``dbluigi --version`` before anything heavy is imported,
and ``python -m dbluigi`` as the ``dbluigi`` script."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dbluigi import __version__
from tests.buildkit import ROOT

pytestmark = pytest.mark.unit


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_version_imports_nothing_heavy() -> None:
    probe = (
        "import sys; sys.argv = ['dbluigi', '--version']; import dbluigi.__main__ as m; "
        "m.main(); print(sorted(n for n in ('typer', 'rich', 'sqlglot', 'luigi', 'duckdb') "
        "if n in sys.modules))"
    )
    done = _run("-c", probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"dbluigi {__version__}", "[]"]


def test_python_dash_m_runs_the_command_line() -> None:
    version = _run("-m", "dbluigi", "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"dbluigi {__version__}"
    usage = _run("-m", "dbluigi", "plan", "--help")
    assert usage.returncode == 0 and "plan" in usage.stdout
    wrong = _run("-m", "dbluigi", "--no-such-option")
    assert wrong.returncode == 2


def test_shell_completion_is_offered() -> None:
    usage = _run("-m", "dbluigi", "--help")
    assert "--install-completion" in usage.stdout and "--show-completion" in usage.stdout
    # the shell named, not detected from the processes above pytest (there may be none)
    script = _run(
        "-m",
        "dbluigi",
        "--show-completion",
        "bash",
        env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
    )
    assert script.returncode == 0 and "complete" in script.stdout, script.stderr


def test_a_command_runs_as_it_does_in_the_whole_app() -> None:
    """``main`` gives typer only the command named first (typer makes a click command of
    every registered one each time it runs): each command's help, and its errors, are the
    same as the whole app's; anything else runs the whole app."""
    from typer.main import get_command_name
    from typer.testing import CliRunner

    from dbluigi.cli import _app_for, app

    runner = CliRunner()
    names = [
        info.name or get_command_name(getattr(info.callback, "__name__", ""))
        for info in app.registered_commands
    ]
    assert {"build", "rebuild", "ls", "list", "render", "compile", "test"} <= set(names)
    for name in names:
        for args in ([name, "--help"], [name, "--no-such-option"]):
            narrowed = runner.invoke(_app_for(args), args)
            whole = runner.invoke(app, args)
            assert (narrowed.exit_code, narrowed.output) == (whole.exit_code, whole.output), args
        assert _app_for([name]).registered_commands != app.registered_commands
    for args in ([], ["--help"], ["--version"], ["no-such-command"], ["--project", "build"]):
        assert _app_for(args) is app


@pytest.mark.parametrize("shown", ["terminal", "DBLUIGI_PROGRESS"])
def test_the_live_display_of_a_build(tmp_path: Path, shown: str) -> None:
    """On a terminal (or with DBLUIGI_PROGRESS set) a build shows its progress live, as
    rich draws it, and builds; the summary follows."""
    (tmp_path / "dbluigi.toml").write_text('[project]\nname = "live"\n')
    (tmp_path / "a.sql").write_text("select 1 as x\n")
    (tmp_path / "b.sql").write_text("select x from a\n")
    args = ["-m", "dbluigi", "build", "-p", str(tmp_path)]
    if shown == "terminal":
        import pty

        main, replica = pty.openpty()
        with os.fdopen(main, "rb", buffering=0) as screen:
            done = subprocess.Popen(
                [sys.executable, *args], stdout=replica, stderr=replica, cwd=ROOT
            )
            os.close(replica)
            output = b""
            with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
                while chunk := screen.read(4096):
                    output += chunk
            code = done.wait(timeout=120)
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))
    else:
        finished = _run(*args, env={"DBLUIGI_PROGRESS": "1"})
        code, text = finished.returncode, finished.stdout + finished.stderr
    assert code == 0, text
    assert "built 2, failed 0" in text and "Traceback" not in text


def test_a_command_ends_as_python_ends_it(tmp_path: Path) -> None:
    """``dbluigi`` freezes what is alive before Python finalizes (its collections then
    skip it): the end is otherwise Python's own. The build's output is all there, its exit
    status is the command's, and the DuckDB file is closed cleanly (checkpointed, no WAL
    left), on success and on failure."""
    project = tmp_path / "p"
    project.mkdir()
    (project / "one.sql").write_text("select 1 as id\n")
    db = tmp_path / "t.duckdb"
    args = ["-m", "dbluigi", "build", "--project", str(project), "--target", f"duckdb:///{db}"]
    alone = {"DBLUIGI_NO_SERVER": "1"}
    built = _run(*args, "--json", env=alone)
    assert built.returncode == 0, built.stderr
    assert '"status": "success"' in built.stdout and built.stdout.rstrip().endswith("}")
    assert db.exists() and not db.with_name(db.name + ".wal").exists()
    (project / "two.sql").write_text("select id / 0 as broken from one where nonsense\n")
    failed = _run(*args, env=alone)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "two" in failed.stdout + failed.stderr
    assert not db.with_name(db.name + ".wal").exists()
