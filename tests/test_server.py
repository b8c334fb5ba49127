"""``dbluigi server``: commands run in a process forked from it behave as they do run
directly (output, exit codes, folder, environment, input, signals), and the server
follows its installation, its socket and its user."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.buildkit import ROOT

pytestmark = pytest.mark.unit  # DuckDB in the test's folder; no server database

SEED = "id,name\n1,a\n2,b\n"


def _env(server_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DBLUIGI_NO_SERVER", "DBLUIGI_TARGET")}
    return {**env, "DBLUIGI_SERVER_DIR": str(server_dir), **extra}


def _run(
    *args: str, env: dict[str, str], cwd: Path = ROOT, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dbluigi", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        input=stdin,
        timeout=120,
        check=False,
    )


def _served(env: dict[str, str]) -> int:
    """How many connections the server took (each command, and each status, counts)."""
    done = _run("server", "status", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return int(done.stdout.split("; ")[1].split()[0])


def _pid(env: dict[str, str]) -> int:
    done = _run("server", "status", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return int(done.stdout.split("(pid ")[1].split(")")[0])


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A private folder for the server's socket (short: a socket's path has 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="dbls-"))
    try:
        yield folder
    finally:
        _run("server", "stop", env=_env(folder))
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def served(server_dir: Path) -> dict[str, str]:
    """The environment of commands run by a server started for the test."""
    env = _env(server_dir)
    started = _run("server", "start", "--idle-minutes", "10", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "dbluigi server running" in started.stdout
    return env


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "proj"
    (project / "raw").mkdir(parents=True)
    (project / "dbluigi.toml").write_text('[project]\nname = "p"\n')
    (project / "raw" / "people.csv").write_text(SEED)
    (project / "marts").mkdir()
    (project / "marts" / "names.sql").write_text("select id, upper(name) as name from raw.people\n")
    return project


def test_a_command_runs_in_the_server_as_it_runs_alone(
    tmp_path: Path, served: dict[str, str]
) -> None:
    project = _project(tmp_path)
    before = _served(served)
    target = f"duckdb:///{tmp_path / 'served.duckdb'}"
    built = _run("build", "-p", str(project), "-t", target, "--json", env=served)
    assert built.returncode == 0, built.stderr
    assert {t["model"]: t["status"] for t in json.loads(built.stdout)["tasks"]} == {
        "raw.people": "success",
        "marts.names": "success",
    }
    assert _served(served) == before + 2  # the build, then this status

    alone = {**served, "DBLUIGI_NO_SERVER": "1"}
    for args in (
        ["plan", "-p", str(project), "-t", target],  # up to date: the same plan
        ["lineage", "-p", str(project)],
        ["build", "-p", str(tmp_path / "missing"), "-t", target],  # a project error: exit 2
        ["no-such-command"],  # a usage error, named after the program
        ["plan", "--help"],
    ):
        here, there = _run(*args, env=alone), _run(*args, env=served)
        assert (there.returncode, there.stdout, there.stderr) == (
            here.returncode,
            here.stdout,
            here.stderr,
        ), args
    assert "Usage: python -m dbluigi" in _run("no-such-command", env=served).stderr
    assert _served(served) == before + 9  # and each of those ran there


def test_a_failed_build_exits_as_it_would_alone(tmp_path: Path, served: dict[str, str]) -> None:
    project = _project(tmp_path)
    (project / "marts" / "names.sql").write_text("select no_such_column from raw.people\n")
    target = f"duckdb:///{tmp_path / 'failing.duckdb'}"
    done = _run("build", "-p", str(project), "-t", target, env=served)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "marts.names" in done.stdout and "no_such_column" in done.stdout + done.stderr


def test_the_command_has_the_clients_folder_environment_and_input(
    tmp_path: Path, served: dict[str, str]
) -> None:
    project = _project(tmp_path)
    target = f"duckdb:///{tmp_path / 'env.duckdb'}"
    env = {**served, "DBLUIGI_TARGET": target}
    built = _run(
        "build", env=env, cwd=project
    )  # the project: the folder; the target: $DBLUIGI_TARGET
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "env.duckdb").exists()
    assert (project / ".dbluigi" / "cache").is_dir()  # written in the client's folder

    # input: clean asks before it removes the caches; "n" keeps them
    kept = _run("clean", env=env, cwd=project, stdin="n\n")
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "nothing removed" in kept.stdout
    assert (project / ".dbluigi" / "cache").is_dir()
    removed = _run("clean", env=env, cwd=project, stdin="y\n")
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert not (project / ".dbluigi" / "cache").exists()


def _watching(
    project: Path, target: str, env: dict[str, str], *, job: bool = False
) -> subprocess.Popen[str]:
    """``build --watch --json`` through the server, once its first cycle is done; in a
    process group of its own with ``job``."""
    command = ["build", "--watch", "--json", "-p", str(project), "-t", target]
    process = subprocess.Popen(
        [sys.executable, "-m", "dbluigi", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        process_group=0 if job else None,
    )
    assert process.stdout is not None
    first = process.stdout.readline()  # a cycle's line
    assert json.loads(first)["schema"], first
    return process


def test_ctrl_c_reaches_the_command(tmp_path: Path, served: dict[str, str]) -> None:
    project = _project(tmp_path)
    process = _watching(project, f"duckdb:///{tmp_path / 'watch.duckdb'}", served)
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 0, errors  # a watch stopped by Ctrl-C exits 0
    assert "stopping: running tasks finish" in errors


def test_stop_while_a_command_runs_takes_no_more_and_lets_it_end(
    tmp_path: Path, served: dict[str, str], server_dir: Path
) -> None:
    project = _project(tmp_path)
    process = _watching(project, f"duckdb:///{tmp_path / 'stopping.duckdb'}", served)
    pid = _pid(served)
    stopped = _run("server", "stop", env=served)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "takes no more commands" in stopped.stdout
    assert not list(server_dir.glob("*.sock"))
    assert _run("lineage", "-p", str(project), env=served).returncode == 0  # run alone
    process.send_signal(signal.SIGINT)  # the watch it runs ends as it would alone
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 0, errors
    deadline = time.monotonic() + 30
    while _running(pid):  # then the server exits
        assert time.monotonic() < deadline, "the server still runs"
        time.sleep(0.1)


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs (an ended one that nothing reaped yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_killed_client_hangs_its_command_up(tmp_path: Path, served: dict[str, str]) -> None:
    project = _project(tmp_path)
    process = _watching(project, f"duckdb:///{tmp_path / 'killed.duckdb'}", served)
    assert "1 running now" in _run("server", "status", env=served).stdout
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while "0 running now" not in _run("server", "status", env=served).stdout:
        assert time.monotonic() < deadline, "the command still runs"
        time.sleep(0.1)


SLOW = """
import time

def run(ctx):
    time.sleep(3)
    ctx.execute(f"create table {ctx.table} as select 1 as one")
"""


def test_a_command_ends_as_it_ended_when_its_server_was_killed_meanwhile(
    tmp_path: Path, served: dict[str, str]
) -> None:
    project = _project(tmp_path)
    (project / "marts" / "slow.py").write_text(SLOW)
    target = f"duckdb:///{tmp_path / 'slow.duckdb'}"
    server = _pid(served)
    process = subprocess.Popen(
        [sys.executable, "-m", "dbluigi", "build", "-p", str(project), "-t", target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=served,
    )
    _until(lambda: len(_children(server)) == 1, "the build is not running in the server")
    os.kill(server, signal.SIGKILL)
    out, errors = process.communicate(timeout=120)
    assert process.returncode == 0, out + errors
    assert "stopped before it ended" not in errors


@pytest.fixture
def other_installation(tmp_path: Path, server_dir: Path) -> Iterator[dict[str, str]]:
    """The environment of commands of an installation with two more module path folders:
    a ``site-packages`` (``tmp_path / "lib" / "site-packages"``, where a test "installs")
    and the project's (files come and go in it as it builds); its server is stopped at
    the end (the other fixtures stop the usual installation's only)."""
    site_packages = tmp_path / "lib" / "site-packages"
    site_packages.mkdir(parents=True)
    project = _project(tmp_path)
    module_path = [str(site_packages), str(project), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = _env(server_dir, PYTHONPATH=os.pathsep.join(module_path))
    try:
        yield env
    finally:
        _run("server", "stop", env=env)


def test_a_changed_installation_starts_the_server_again(
    tmp_path: Path, other_installation: dict[str, str]
) -> None:
    # a site-packages folder of the module path changes as pip installs into it; a project
    # folder on the path changes with every build, and is not the installation
    env, project = other_installation, tmp_path / "proj"
    assert _run("server", "start", env=env).returncode == 0
    before = _served(env)
    target = f"duckdb:///{project / 'in_the_project.duckdb'}"  # files come and go there
    assert _run("build", "-p", str(project), "-t", target, env=env).returncode == 0
    assert _run("lineage", "-p", str(project), env=env).returncode == 0
    assert _served(env) == before + 3  # the status, the build and the lineage: all served
    started = _run("server", "status", env=env).stdout

    (tmp_path / "lib" / "site-packages" / "new_distribution.py").write_text("")
    done = _run("lineage", "-p", str(project), env=env)  # run by the client itself
    assert done.returncode == 0 and "marts.names" in done.stdout
    deadline = time.monotonic() + 60
    while True:
        now = _run("server", "status", env=env).stdout
        if now.startswith("dbluigi server") and "stale" not in now and now != started:
            break
        assert time.monotonic() < deadline, now
        time.sleep(0.1)
    assert f"(pid {_pid(env)})" in started  # the same process, started again (exec)
    before = _served(env)
    assert _run("lineage", "-p", str(project), env=env).returncode == 0
    assert _served(env) == before + 2  # served again


def test_stop_while_the_server_starts_again_stops_it(
    tmp_path: Path, other_installation: dict[str, str]
) -> None:
    env = other_installation
    assert _run("server", "start", env=env).returncode == 0
    pid = _pid(env)
    (tmp_path / "lib" / "site-packages" / "new.py").write_text("")  # stale from now on
    # stop finds it stale (so it starts again) and signals it: the new one must stop
    stopped = _run("server", "stop", env=env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert f"stopped (pid {pid})" in stopped.stdout
    assert _run("server", "status", env=env).returncode == 1


def test_a_build_writes_what_it_writes_alone(tmp_path: Path, served: dict[str, str]) -> None:
    """luigi's log lines included: a build silences them, also in a process forked from
    a server that imported luigi long before."""
    project = _project(tmp_path)
    before = _served(served)
    for name, env in (("served", served), ("alone", {**served, "DBLUIGI_NO_SERVER": "1"})):
        target = f"duckdb:///{tmp_path / name}.duckdb"
        done = _run("build", "-p", str(project), "-t", target, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stderr == "", done.stderr
        assert "built 2, failed 0" in done.stdout
    assert _served(served) == before + 2  # the first build, then this status


def test_a_closed_standard_stream_runs_the_command_in_its_client(
    tmp_path: Path, served: dict[str, str]
) -> None:
    """The connection to the server would take the stream's number: the command would
    read or write the connection."""
    project = _project(tmp_path)
    before = _served(served)
    for closing, output in (("<&-", "stdout"), (">&-", None), ("2>&-", "stdout")):
        command = f'exec "$@" {closing}'
        done = subprocess.run(
            ["sh", "-c", command, "sh", sys.executable, "-m", "dbluigi", "ls", "-p", str(project)],
            capture_output=True,
            text=True,
            env=served,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (closing, done.stdout + done.stderr)
        if output:
            assert done.stdout.split() == ["raw.people", "marts.names"], closing
    assert _served(served) == before + 1  # this status only


def test_stop_and_a_server_gone_leave_commands_to_the_client(
    tmp_path: Path, served: dict[str, str], server_dir: Path
) -> None:
    project = _project(tmp_path)
    pid = _pid(served)
    socket_file = next(server_dir.glob("*.sock"))
    os.kill(pid, signal.SIGKILL)  # gone without removing its socket
    time.sleep(0.2)
    assert socket_file.exists()
    done = _run("lineage", "-p", str(project), env=served)
    assert done.returncode == 0 and "marts.names" in done.stdout
    assert _run("server", "status", env=served).returncode == 1

    assert _run("server", "start", env=served).returncode == 0  # replaces the dead socket
    stopped = _run("server", "stop", env=served)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not list(server_dir.glob("*.sock"))
    assert _run("lineage", "-p", str(project), env=served).returncode == 0
    assert "no dbluigi server" in _run("server", "stop", env=served).stdout


def test_a_folder_others_may_write_is_not_used(
    tmp_path: Path, served: dict[str, str], server_dir: Path
) -> None:
    socket_file = next(server_dir.glob("*.sock"))
    assert (server_dir.stat().st_mode & 0o777, socket_file.stat().st_mode & 0o777) == (
        0o700,
        0o600,
    )
    project = _project(tmp_path)
    before = _served(served)
    server_dir.chmod(0o777)  # a socket there could be anyone's: not talked to
    try:
        done = _run("lineage", "-p", str(project), env=served)
        assert done.returncode == 0 and "marts.names" in done.stdout
    finally:
        server_dir.chmod(0o700)
    assert _served(served) == before + 1  # this status only: the lineage ran in its client

    _run("server", "stop", env=served)
    server_dir.chmod(0o777)
    refused = _run("server", "start", env=served)
    assert refused.returncode == 2
    assert str(server_dir) in refused.stderr and "chmod 700" in refused.stderr


PROBE = """
import os, resource, signal, sys, time
from luigi.configuration import get_config

def run(ctx):
    seen = {
        "client": str(os.getpid() == int(os.environ["PROBE_PID"])),  # it ran in its client
        "cgroup": open("/proc/self/cgroup").read(),
        "nofile": str(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "tz": time.strftime("%z"),
        "home": os.environ.get("PROBE"),
        "luigi": get_config().get("probe", "value", "unset"),
        "nice": str(os.getpriority(os.PRIO_PROCESS, 0)),
        "sigint": "ignored" if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else "handled",
        "umask": oct(os.umask(0o022)),
        "unbuffered": str(sys.stdout.write_through),
    }
    ctx.execute(f"create table {ctx.table} (k text, v text)")
    ctx.executemany(f"insert into {ctx.table} values (%s, %s)", sorted(seen.items()))
"""


def _probe(
    project: Path, target: str, env: dict[str, str], *prefix: str, shell: str = "umask 027"
) -> dict[str, str]:
    """What a Python model of a build sees of its process, run as ``prefix dbluigi`` by
    a shell that runs ``shell`` first (its pid is the command's: ``exec``)."""
    command = [*prefix, sys.executable, "-m", "dbluigi", "rebuild", "marts.probe"]
    script = f'{shell}; export PROBE_PID=$$; exec "$@"'
    done = subprocess.run(
        ["sh", "-c", script, "sh", *command, "-p", str(project), "-t", target],
        capture_output=True,
        text=True,
        env=env,
        cwd=project,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    from tests.buildkit import query

    return dict(query(target, project, "select k, v from marts.probe"))


def test_the_command_has_the_clients_time_zone_configuration_priority_and_signals(
    tmp_path: Path, served: dict[str, str]
) -> None:
    project = _project(tmp_path)
    (project / "marts" / "probe.py").write_text(PROBE)
    (project / "luigi.cfg").write_text("[probe]\nvalue = from the project folder\n")
    target = f"duckdb:///{tmp_path / 'probe.duckdb'}"
    env = {**served, "TZ": "Asia/Kathmandu", "PROBE": "yes", "PYTHONUNBUFFERED": "1"}
    # as a script's `dbluigi ... &` starts it: SIGINT ignored; and a lower priority
    ignoring = [
        sys.executable,
        "-c",
        "import os, signal, sys; "
        "signal.signal(signal.SIGINT, signal.SIG_IGN); os.execvp(sys.argv[1], sys.argv[1:])",
        "nice",
        "-n",
        "5",
    ]
    # `ulimit -n`: the command has the client's limit, not the server's
    lower = min(n for n in (*resource.getrlimit(resource.RLIMIT_NOFILE), 512) if n >= 0)
    shell = f"umask 027; ulimit -n {lower}"
    before = _served(served)
    there = _probe(project, target, env, *ignoring, shell=shell)
    assert _served(served) == before + 2  # the probe ran in the server
    assert there.pop("client") == "False"
    alone = _probe(project, target, {**env, "DBLUIGI_NO_SERVER": "1"}, *ignoring, shell=shell)
    assert alone.pop("client") == "True"
    assert alone.pop("cgroup") == there.pop("cgroup")
    assert (
        there
        == alone
        == {
            "tz": "+0545",
            "home": "yes",
            "luigi": "from the project folder",
            "nice": str(os.getpriority(os.PRIO_PROCESS, 0) + 5),
            "sigint": "ignored",
            "umask": "0o27",
            "unbuffered": "True",
            "nofile": str((lower, lower)),  # dash's ulimit sets both
        }
    )

    config = tmp_path / "elsewhere.cfg"
    config.write_text("[probe]\nvalue = from LUIGI_CONFIG_PATH\n")
    (project / "luigi.cfg").unlink()
    there = _probe(project, target, {**env, "LUIGI_CONFIG_PATH": str(config)})
    assert there["luigi"] == "from LUIGI_CONFIG_PATH" and there["sigint"] == "handled"


def _log_of(server_dir: Path) -> str:
    return "".join(log.read_text() for log in server_dir.glob("*.log"))


def test_what_the_server_cannot_give_a_command_runs_it_in_its_client(
    tmp_path: Path, served: dict[str, str], server_dir: Path
) -> None:
    """An interpreter of other options or hash seed, a memory or stack limit: the
    command's process declines it before anything runs, and the client runs it, as it
    would alone."""
    project = _project(tmp_path)
    (project / "marts" / "probe.py").write_text(PROBE)
    target = f"duckdb:///{tmp_path / 'declined.duckdb'}"
    assert _probe(project, target, served)["client"] == "False"  # served, as it is
    for variable, value, why in (
        ("PYTHONHASHSEED", "123", "it asks for PYTHONHASHSEED=123"),
        ("PYTHONWARNINGS", "ignore::UserWarning", "its Python was started with other options"),
        ("PYTHONDEVMODE", "1", "its Python was started with other options"),
        # as -X faulthandler, -X importtime, -X tracemalloc: read as Python starts only
        ("PYTHONFAULTHANDLER", "1", "its Python was started with other options"),
        ("PYTHONPROFILEIMPORTTIME", "1", "its Python was started with other options"),
        ("PYTHONTRACEMALLOC", "5", "its Python was started with other options"),
    ):
        seen = _probe(project, target, {**served, variable: value})
        assert seen["client"] == "True", variable
        assert why in _log_of(server_dir)
    # limits a forked copy cannot honour: its memory starts as the server's, its stacks
    # were sized when the server started
    stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
    stack_kb = 4096 if stack == resource.RLIM_INFINITY else max(1024, stack // 2048)
    for shell, why in (
        ("ulimit -v 16000000", "RLIMIT_AS"),  # 16 GB: the command runs alone under it
        (f"ulimit -s {stack_kb}", "RLIMIT_STACK"),
    ):
        seen = _probe(project, target, served, shell=shell)
        assert seen["client"] == "True", shell
        assert why in _log_of(server_dir)


def _cgroup_to_make() -> Path | None:
    """A control group this test may make: under the cgroup v2 folder of this process
    (joined by a served command), or a cgroup v1 hierarchy's root (declined), when
    writable."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, controllers, group = line.split(":", 2)
        if number == "0" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            folder = Path("/sys/fs/cgroup") / group.lstrip("/")
        elif controllers == "pids" and group == "/":
            folder = Path("/sys/fs/cgroup/pids")
        else:
            continue
        if os.access(folder, os.W_OK):
            return folder / f"dbluigi-test-{os.getpid()}"
    return None


def test_a_served_command_runs_in_its_clients_control_group(
    tmp_path: Path, served: dict[str, str]
) -> None:
    """Its limits (memory, processes) are the client's: joined when the server may
    (cgroup v2), else the command runs in its client."""
    group = _cgroup_to_make()
    if group is None:
        pytest.skip("no control group this process may make here")
    project = _project(tmp_path)
    (project / "marts" / "probe.py").write_text(PROBE)
    target = f"duckdb:///{tmp_path / 'cgroup.duckdb'}"
    group.mkdir()
    try:
        shell = f"echo $$ > {group / 'cgroup.procs'}"
        seen = _probe(project, target, served, shell=shell)
        alone = _probe(project, target, {**served, "DBLUIGI_NO_SERVER": "1"}, shell=shell)
    finally:
        deadline = time.monotonic() + 30
        while True:  # once its processes have ended
            try:
                group.rmdir()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    assert seen["cgroup"] == alone["cgroup"] and group.name in alone["cgroup"]
    v2 = "/sys/fs/cgroup/pids" not in str(group)
    assert seen["client"] == ("False" if v2 else "True")


def test_a_command_declined_once_it_took_its_limits_runs_in_its_client(
    tmp_path: Path, served: dict[str, str], server_dir: Path
) -> None:
    """A cgroup v1 difference declines a command once it took the client's limits: a
    file size limit (``ulimit -f``) below the server log's size does not end it unrun."""
    group = _cgroup_to_make()
    if group is None or "/sys/fs/cgroup/pids" not in str(group):
        pytest.skip("no cgroup v1 group this process may make here (a v2 one is joined)")
    project = _project(tmp_path)
    for log in server_dir.glob("*.log"):
        with log.open("a") as out:
            out.write("#" * 4096 + "\n")  # more than `ulimit -f 1`: a KiB
    script = f'echo $$ > {group / "cgroup.procs"}; ulimit -f 1; exec "$@"'
    command = ["sh", "-c", script, "sh", sys.executable, "-m", "dbluigi", "lineage"]
    group.mkdir()
    try:
        there, here = (
            subprocess.run(
                [*command, "-p", str(project)],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
                check=False,
            )
            for env in (served, {**served, "DBLUIGI_NO_SERVER": "1"})
        )
    finally:
        _until(lambda: not _rmdir(group), "the group is still in use")
    assert here.returncode == 0, here.stderr
    assert (there.returncode, there.stdout, there.stderr) == (
        here.returncode,
        here.stdout,
        here.stderr,
    )


def _rmdir(folder: Path) -> bool:
    """Whether ``folder`` is still there (in use) after trying to remove it."""
    with contextlib.suppress(OSError):
        folder.rmdir()
    return folder.exists()


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started that still run."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return found


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _stopped_job(tmp_path: Path, served: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    """A served watch, stopped by Ctrl-Z: its client process, and its command's pid."""
    project = _project(tmp_path)
    # a job of its own, as a shell starts one (in an orphaned one, SIGTSTP stops nothing)
    process = _watching(project, f"duckdb:///{tmp_path / 'job.duckdb'}", served, job=True)
    server = _pid(served)
    _until(lambda: len(_children(server)) == 1, "the command is not the server's one child")
    (command,) = _children(server)
    process.send_signal(signal.SIGTSTP)
    _until(lambda: _state(process.pid) == "T" and _state(command) == "T", "not stopped")
    return process, command


def test_ctrl_z_stops_the_command_with_its_client(tmp_path: Path, served: dict[str, str]) -> None:
    process, command = _stopped_job(tmp_path, served)
    os.kill(process.pid, signal.SIGCONT)  # fg
    _until(lambda: _state(process.pid) != "T" and _state(command) != "T", "not continued")
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 0, errors


def test_a_client_killed_while_stopped_ends_its_command(
    tmp_path: Path, served: dict[str, str]
) -> None:
    """``kill -9 %1`` on a job stopped by Ctrl-Z ends it alone: the stopped command of a
    client gone ends too, rather than stay stopped for ever (holding its target)."""
    process, command = _stopped_job(tmp_path, served)
    process.kill()
    process.wait(timeout=60)
    try:
        _until(lambda: not _running(command), "the command of a killed client is still there")
    finally:
        with contextlib.suppress(ProcessLookupError):  # not left stopped by a failure
            os.kill(command, signal.SIGKILL)
        for stream in (process.stdout, process.stderr):
            assert stream is not None
            stream.close()
    assert "0 running now" in _run("server", "status", env=served).stdout


CTRL_Z_AS_IT_HANDS_OVER = """
import os, signal, socket, subprocess, time
from dbluigi import client

ours, theirs = socket.socketpair()
command = subprocess.Popen(["sleep", "120"], process_group=0)  # the served command
if os.fork() == 0:  # the server, slow to say the command's pid: Ctrl-Z comes first
    ours.close()
    time.sleep(1)
    client.send(theirs, {"pid": command.pid})
    while open(f"/proc/{command.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.05)
    client.send(theirs, {"exit": 0})
    os._exit(0)
theirs.close()
mask = signal.pthread_sigmask(signal.SIG_BLOCK, client._caught())  # as run_on_server
print(command.pid, flush=True)
print(client._wait(ours, mask), flush=True)
"""


def test_ctrl_z_as_the_command_is_handed_over_stops_it_too(tmp_path: Path) -> None:
    """Ctrl-Z before the command's process said its pid: the command stops with its
    client once it does, rather than run on while the shell says the job is stopped."""
    process = subprocess.Popen(
        [sys.executable, "-c", CTRL_Z_AS_IT_HANDS_OVER],
        stdout=subprocess.PIPE,
        text=True,
        process_group=0,  # a job of its own, as a shell starts one
    )
    assert process.stdout is not None
    command = int(process.stdout.readline())
    try:
        process.send_signal(signal.SIGTSTP)
        _until(lambda: _state(process.pid) == "T" and _state(command) == "T", "not stopped")
        os.kill(process.pid, signal.SIGCONT)  # fg
        _until(lambda: _state(command) != "T", "the command not continued")
    finally:
        os.kill(command, signal.SIGKILL)
        os.kill(process.pid, signal.SIGCONT)
    assert process.stdout.readline().strip() == "{'exit': 0}"
    assert process.wait(timeout=60) == 0


def test_the_server_runs_the_dbluigi_of_its_client(tmp_path: Path, server_dir: Path) -> None:
    """Started from a folder holding another ``dbluigi`` (a checkout, say), the server
    still imports the one its ``dbluigi`` command runs."""
    decoy = tmp_path / "checkout"
    (decoy / "dbluigi").mkdir(parents=True)
    (decoy / "dbluigi" / "__init__.py").write_text("raise ImportError('the wrong dbluigi')\n")
    script = str(Path(sys.executable).parent / "dbluigi")  # its module path starts in bin/
    env = _env(server_dir)
    started = subprocess.run(
        [script, "server", "start"], capture_output=True, text=True, cwd=decoy, env=env, timeout=120
    )
    assert started.returncode == 0, started.stdout + started.stderr
    project = _project(tmp_path)
    before = _served(env)
    done = subprocess.run(
        [script, "lineage", "-p", str(project)], capture_output=True, text=True, cwd=decoy, env=env
    )
    assert done.returncode == 0 and "marts.names" in done.stdout, done.stderr
    assert _served(env) == before + 2


def test_relative_folders_of_the_environment_are_the_clients(
    tmp_path: Path, server_dir: Path
) -> None:
    """``$PYTHONPATH=.`` and a relative ``$DBLUIGI_SERVER_DIR`` name the folder of the
    command starting the server, not the one the server starts in: it listens on the
    socket of its client's installation (``start`` waited a minute in vain)."""
    project = _project(tmp_path)
    module_path = [".", *filter(None, [os.environ.get("PYTHONPATH")])]
    env = _env(server_dir, PYTHONPATH=os.pathsep.join(module_path))
    env["DBLUIGI_SERVER_DIR"] = os.path.relpath(server_dir, project)
    try:
        started = _run("server", "start", env=env, cwd=project)
        assert started.returncode == 0, started.stdout + started.stderr
        status = _run("server", "status", env=env, cwd=project)
        before = int(status.stdout.split("; ")[1].split()[0])
        assert _run("lineage", env=env, cwd=project).returncode == 0
        status = _run("server", "status", env=env, cwd=project)
        assert int(status.stdout.split("; ")[1].split()[0]) == before + 2  # served
    finally:
        _run("server", "stop", env=env, cwd=project)


HAND_OVER_AND_LEAVE = """
import os, socket, sys
from dbluigi import client

connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
connection.connect(client.socket_path())
assert client.receive(connection)["installation"] == client.installation()
request = {"argv0": "dbluigi", "package": None, "argv": sys.argv[1:], "cwd": os.getcwd(),
           "env": dict(os.environ), "umask": 0o022, "nice": 0, "ignored": [], "path0": "",
           "stdio": None}
client.send(connection, request, [0, 1, 2])
connection.close()  # gone before the command is told its pid
"""


def test_a_client_gone_as_it_hands_over_hangs_its_command_up(
    tmp_path: Path, served: dict[str, str]
) -> None:
    project = _project(tmp_path)
    target = f"duckdb:///{tmp_path / 'left.duckdb'}"
    command = ["build", "--watch", "-p", str(project), "-t", target]
    done = subprocess.run(
        [sys.executable, "-c", HAND_OVER_AND_LEAVE, *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=served,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 30
    while "0 running now" not in _run("server", "status", env=served).stdout:
        assert time.monotonic() < deadline, "the command still runs"
        time.sleep(0.1)


def test_stop_stops_a_stale_server_that_still_runs_a_command(
    tmp_path: Path, other_installation: dict[str, str]
) -> None:
    """It used to remove its socket at once: `stop` found no server, and it came back
    once its command ended."""
    env = other_installation
    assert _run("server", "start", env=env).returncode == 0
    pid = _pid(env)
    process = _watching(tmp_path / "proj", f"duckdb:///{tmp_path / 'stale.duckdb'}", env)
    (tmp_path / "lib" / "site-packages" / "new.py").write_text("")  # stale from now on
    assert "stale" in _run("server", "status", env=env).stdout
    assert "running (pid" in _run("server", "start", env=env).stdout  # the same, waiting
    stopped = _run("server", "stop", env=env)
    assert "takes no more commands" in stopped.stdout, stopped.stdout + stopped.stderr
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 0, errors
    deadline = time.monotonic() + 30
    while _running(pid):  # it exits, and does not start again
        assert time.monotonic() < deadline, "the server still runs"
        time.sleep(0.1)
    assert _run("server", "status", env=env).returncode == 1


def test_stop_racing_a_command_that_starts_reports_the_server_finishing(
    tmp_path: Path, served: dict[str, str]
) -> None:
    """A command that starts between `stop` reading the server's status (no command
    running then) and its SIGTERM keeps the server running: it said so after 30 s, as
    an error, although the server was only finishing that command."""
    project = _project(tmp_path)
    process = _watching(project, f"duckdb:///{tmp_path / 'race.duckdb'}", served)
    # the status as `stop` read it just before the watch started
    script = (
        "from dbluigi import server\n"
        "read = server.status\n"
        "server.status = lambda path=None: {**read(path), 'running': 0}\n"
        "print(server.stop(wait_seconds=20).get('finishing'))\n"
    )
    done = subprocess.run(  # it failed after wait_seconds, the server still running
        [sys.executable, "-c", script], capture_output=True, text=True, env=served, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "True\n"), done.stderr
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 0, errors


def _unshare(*flags: str) -> bool:
    """Whether this process may start a command in new namespaces (root, or a kernel
    that lets users make them)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["unshare", *flags, "true"], timeout=30).returncode == 0
    return False


@pytest.mark.parametrize(
    ("flag", "why"),
    [
        ("--net", "another network namespace"),  # another localhost: other databases
        ("--mount", "another mount namespace"),
        ("--uts", "another host name namespace"),
        ("--ipc", "another IPC namespace"),
    ],
)
def test_a_client_in_other_namespaces_runs_its_command_itself(
    tmp_path: Path, served: dict[str, str], server_dir: Path, flag: str, why: str
) -> None:
    """A client in a container or under `unshare` that reaches the socket sees another
    machine: served, its command would read the server's files, reach the server's
    databases (127.0.0.1 is another host in another network namespace) and record the
    server's host name. It runs in its client."""
    if not _unshare(flag):
        pytest.skip(f"unshare {flag} is not permitted here")
    project = _project(tmp_path)
    (project / "marts" / "probe.py").write_text(PROBE)
    target = f"duckdb:///{tmp_path / 'namespaces.duckdb'}"
    seen = _probe(project, target, served, "unshare", flag)
    assert seen["client"] == "True", flag
    assert f"declined a command: it runs in {why}" in _log_of(server_dir)
    assert _probe(project, target, served)["client"] == "False"  # served, as it is


def test_a_failure_before_the_command_starts_runs_it_in_its_client(tmp_path: Path) -> None:
    """Anything failing in the server's copy before the command starts (a bug, the
    unforeseen) declines it: its client runs the command itself, and the traceback goes
    to the server's log. It used to end the client with exit 1 and nothing said."""
    from dbluigi import client, server

    log = tmp_path / "server.log"
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the server's copy, given a connection
        try:
            ours.close()
            with log.open("w") as out:
                os.dup2(out.fileno(), 2)

            def failing(request: dict[str, Any], fds: list[int]) -> None:
                raise RuntimeError("taking over failed")

            server._take_over = failing  # type: ignore[assignment]
            listener = socket.socket(socket.AF_UNIX)
            state = server._Server(listener, "", {}, {}, None, 0, -1, run_command=lambda: None)
            server._run_command(state, theirs)
        finally:
            os._exit(99)
    theirs.close()
    try:
        client.send(ours, client.command_message(["lineage"]), [0, 1, 2])
        assert client._wait(ours) is None  # declined: nothing ran there
    finally:
        ours.close()
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    written = log.read_text()
    assert "RuntimeError: taking over failed" in written
    assert "declined a command: the server failed to take it over" in written
