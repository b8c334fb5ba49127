"""``dbluigi server``: a process that has dbluigi and what it uses imported already, and
runs each command in a copy of itself, so a command starts in milliseconds instead of
the 0.15-0.5 s its imports take (``dbluigi.client`` is the other side).

The server imports every module of dbluigi, luigi, sqlglot with its dialects, the
database drivers, typer and rich, then listens on a Unix socket in a folder only its user
may enter (``client.server_dir``), named for its installation. For each connection it
checks that the peer runs as the same user, says who it is, and forks: the child starts a
session of its own, takes the client's resource limits and control group, standard
input, output and error, working directory, environment, umask and arguments, tells the
client its pid (the client passes its signals on to it), and runs the command exactly as
``dbluigi`` would (``cli.run_here``). What it cannot take (``_declined``: other
namespaces or root folder, other interpreter options, another hash seed, a limit or
control group refused; or a failure of its own), it declines before anything runs, and
the client runs the command itself. The child tells the client how the command ended,
and so does the server once it reaps the child (a killed child tells nothing); a client
that goes away hangs its command up (SIGHUP).

The server holds no database connection, no thread and no state of a command: every
command starts from the same imported modules, as a new process would. It follows its
installation: when a file of the ``dbluigi`` package or a ``site-packages`` folder of the
module path (where ``pip`` installs) changed since it started, it answers that it is stale (the command runs
in the client), lets the commands it runs finish, and starts again as a new process
(``os.execv``). It stops taking commands after ``idle_minutes`` without one, on SIGTERM,
SIGINT or SIGHUP, or when its socket is taken away, and exits once the commands it runs
have ended.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import locale
import os
import pkgutil
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbluigi import __version__, client
from dbluigi.codestamp import stamp
from dbluigi.errors import ServerError

IDLE_MINUTES = 180  # as Bazel's server: a forgotten one does not stay for days
START_SECONDS = 60  # how long ``start`` waits for a new server to listen
# A socket removed (its folder deleted, say) is seen within this long, even with nothing
# else to wake the server: it would otherwise wait, unreachable, for its idle minutes.
CHECK_SECONDS = 5.0
# A server asked to stop that still runs this long after its socket went is finishing the
# commands it runs (``stop``); with none, it exits within milliseconds of the socket going.
FINISHING_SECONDS = 1.0
_EXTRA_MODULES = (
    "luigi",
    "sqlglot",
    "sqlglot.optimizer.scope",
    "sqlglot.optimizer.qualify",
    "yaml",
    "rich.console",
    "rich.live",
    "rich.table",
    "rich.markup",
    "typer.completion",
)
_DIALECTS = ("duckdb", "postgres", "mysql")


@dataclass
class _Server:
    listener: socket.socket | None
    path: str
    identity: dict[str, Any]
    fingerprint: dict[str, tuple[int, int]]
    idle_seconds: float | None
    inode: int  # of the socket this server bound
    wake: int  # the read end of the signals' wakeup pipe
    started: float = field(default_factory=time.time)
    served: int = 0
    children: dict[int, socket.socket] = field(default_factory=dict)
    last_active: float = field(default_factory=time.monotonic)
    restart: bool = False
    selector: selectors.BaseSelector | None = None
    hangups: Any = None  # the clients' connections, for their end (select.epoll)
    run_command: Callable[[], None] | None = None
    inherited: list[Any] = field(default_factory=list)  # what a child closes first

    @property
    def stopping(self) -> bool:
        return self.listener is None


# -- the server ---------------------------------------------------------------------------


def serve(run_command: Callable[[], None], idle_minutes: float | None = IDLE_MINUTES) -> None:
    """Listen for commands until stopped (see the module docstring), each run by
    ``run_command`` (``sys.argv`` as the client's); ``idle_minutes`` None (or 0) never stops
    for idleness."""
    if not client.SUPPORTED:
        raise ServerError(
            f"dbluigi server runs on Linux (it asks the kernel who connects: SO_PEERCRED), "
            f"not on {sys.platform}"
        )
    # what a server started again (exec) reads from its environment, fixed while the
    # starting folder is still the one relative names in it were meant from
    os.environ.update(_environment())
    os.chdir("/")  # the server's own folder is nobody's; each command has the client's
    identity = client.installation()
    path = client.socket_path(identity)
    code = stamp()  # before the imports: a file changed meanwhile is seen
    for name in ("LUIGI_CONFIG_PATH", "LUIGI_CONFIG_PARSER"):  # each command has its own
        os.environ.pop(name, None)
    _preload()
    from luigi import configuration

    for parser in (configuration.LuigiConfigParser, configuration.LuigiTomlParser):
        _LUIGI_CONFIG_PATHS[parser.__name__] = list(parser._config_paths)
    listener = _listen(path)
    wake, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    for signum in (signal.SIGCHLD, *_STOP_SIGNALS):
        signal.signal(signum, _noted)
    # a stop asked while the server that started this one was starting again (blocked
    # then, see below) is delivered now, to this one
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    state = _Server(
        listener,
        path,
        identity,
        code,
        idle_minutes * 60 if idle_minutes else None,
        inode=os.stat(path).st_ino,
        wake=wake,
        run_command=run_command,
    )
    gc.freeze()  # the imported modules stay shared with every child, untouched
    _log(f"dbluigi {__version__} serving on {path} (pid {os.getpid()})")
    try:
        _loop(state, wake_write)
    finally:
        _stop_listening(state)
        signal.set_wakeup_fd(-1)
    if not state.restart:
        return
    # `server stop` may come now (it finds this server stale, then signals it): the signal
    # waits, blocked, for the new server, rather than be lost with this process's handler
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)  # runs the handlers of any due
    if any(signum != signal.SIGCHLD for signum in _PENDING_SIGNALS):
        _log("stopping, not starting again")
        return
    _log("a file of the installation changed: starting again")
    with contextlib.suppress(OSError):  # see _home
        os.chdir(_home())
    os.execv(sys.executable, _command(idle_minutes))


_PENDING_SIGNALS: list[int] = []
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_LUIGI_CONFIG_PATHS: dict[str, list[str]] = {}  # luigi's own, without the server's variable


def _noted(signum: int, frame: Any) -> None:
    _PENDING_SIGNALS.append(signum)


def _loop(state: _Server, wake_write: int) -> None:
    """Accept, fork and reap until stopping and no command runs."""
    selector = state.selector = selectors.DefaultSelector()
    assert state.listener is not None
    selector.register(state.listener, selectors.EVENT_READ)
    selector.register(state.wake, selectors.EVENT_READ)
    state.hangups = select.epoll()
    selector.register(state.hangups, selectors.EVENT_READ)
    state.inherited = [selector, state.hangups, state.wake, wake_write]
    while not (state.stopping and not state.children):
        timeout = None if state.stopping else CHECK_SECONDS  # is the socket still there?
        if state.idle_seconds and not state.children and not state.stopping:
            idle_left = state.last_active + state.idle_seconds - time.monotonic()
            timeout = min(CHECK_SECONDS, max(1.0, idle_left))
        for key, _ in selector.select(timeout):
            if key.fileobj is state.listener:
                _accept(state)
            elif key.fileobj is state.hangups:
                _continue_hung_up(state)
            else:
                with contextlib.suppress(BlockingIOError):
                    os.read(state.wake, 512)
        while _PENDING_SIGNALS:
            signum = _PENDING_SIGNALS.pop()
            if signum == signal.SIGCHLD:
                continue
            if state.restart:  # stale, and asked to stop: stop, do not start again
                _log(f"{signal.Signals(signum).name}: stopping, not starting again")
                state.restart = False
            if not state.stopping:
                _log(f"{signal.Signals(signum).name}: stopping once the running commands end")
                _stop_listening(state)
        _reap(state)
        if state.restart and not state.stopping and not state.children:
            _stop_listening(state)  # stale, and its commands ended: start again
        if state.stopping:
            continue
        if not os.path.exists(state.path):  # taken away: take no more commands
            _log(f"{state.path} is gone: stopping")
            _stop_listening(state)
        elif (
            state.idle_seconds
            and not state.children
            and time.monotonic() - state.last_active >= state.idle_seconds
        ):
            _log("idle: stopping")
            _stop_listening(state)


def _stop_listening(state: _Server) -> None:
    """Take no more commands: the socket goes at once (a command started now runs in its
    client), the commands running go on."""
    if state.listener is None:
        return
    if state.selector is not None:
        state.selector.unregister(state.listener)
    state.listener.close()
    state.listener = None
    with contextlib.suppress(OSError):  # unless another server has bound the path since
        if os.stat(state.path).st_ino == state.inode:
            os.unlink(state.path)


def _accept(state: _Server) -> None:
    assert state.listener is not None
    try:
        connection, _ = state.listener.accept()
    except (BlockingIOError, InterruptedError):
        return
    connection.setblocking(True)
    connection.settimeout(5)
    state.last_active = time.monotonic()
    try:
        if not client.same_user(connection):
            connection.close()
            return
        stale = stamp() != state.fingerprint
        client.send(
            connection,
            {
                "dbluigi": __version__,
                "installation": state.identity,
                "pid": os.getpid(),
                "started": state.started,
                "served": state.served,
                "running": len(state.children),
                "idle_seconds": state.idle_seconds,
                "stale": stale,
            },
        )
    except OSError:
        connection.close()
        return
    if stale:  # the client runs the command itself; this server starts again
        connection.close()
        state.restart = True
        if not state.children:  # else it listens on until they end (_loop): unlisted,
            _stop_listening(state)  # `stop` would miss it, and it would come back later
        return
    pid = os.fork()
    if pid == 0:  # the child: never returns
        _run_command(state, connection)
    state.served += 1
    state.children[pid] = connection
    state.hangups.register(connection.fileno(), select.EPOLLRDHUP)


def _continue_hung_up(state: _Server) -> None:
    """Hang up the commands whose clients went away, continued: one stopped with its
    client (Ctrl-Z), the client then killed (``kill -9 %1``), would otherwise stay
    stopped for ever (``_hang_up_with`` runs in the command, a stopped process runs
    nothing; continued, its SIGIO may reach another thread than the one that hangs up)."""
    for fd, _ in state.hangups.poll(0):
        state.hangups.unregister(fd)
        for pid, connection in state.children.items():
            if connection.fileno() == fd:  # not reaped yet: still this command's pid
                with contextlib.suppress(OSError):  # ended already
                    os.killpg(pid, signal.SIGCONT)
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGHUP)


def _reap(state: _Server) -> None:
    """Tell the clients of the commands that ended how they ended."""
    while state.children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = state.children.pop(pid, None)
        if connection is None:
            continue
        state.last_active = time.monotonic()
        with contextlib.suppress(OSError, ValueError):  # unless its client went first
            state.hangups.unregister(connection.fileno())
        ended = (
            {"signal": os.WTERMSIG(status)}
            if os.WIFSIGNALED(status)
            else {"exit": os.waitstatus_to_exitcode(status)}
        )
        with contextlib.suppress(OSError):
            client.send(connection, ended)
        connection.close()


# -- a command, in the forked child ---------------------------------------------------------


def _run_command(state: _Server, connection: socket.socket) -> None:
    """Run the client's command in this (forked) process, then leave it."""
    code = 1
    killed_by: signal.Signals | None = None
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for inherited in [state.listener, *state.inherited, *state.children.values()]:
            with contextlib.suppress(OSError):
                os.close(inherited) if isinstance(inherited, int) else inherited.close()
        os.setsid()  # the server's signals are not the command's
        connection.settimeout(30)
        fds: list[int] = []
        request = client.receive(connection, fds)
        if request is None or len(fds) != 3:  # a status or a stop: nothing to run
            os._exit(0)
        log = os.dup(2)  # the server's log; _take_over makes 2 the client's standard error
        try:
            why = _declined(request, client.peer(connection)[0])
            if why is None:
                _take_over(request, fds)
        except Exception as exc:  # nothing of the command ran: it runs in its client
            why = f"the server failed to take it over ({type(exc).__name__}: {exc})"
            with contextlib.suppress(Exception):
                import traceback

                os.write(log, traceback.format_exc().encode())
        if why is not None:  # the client runs the command itself
            # the log may refuse this line, under the client's limits taken (`ulimit -f`):
            # the client must be told all the same
            with contextlib.suppress(Exception):
                _log(f"declined a command: {why}", log)
            client.send(connection, {"declined": why})
            os._exit(0)
        os.close(log)
        connection.settimeout(None)
        client.send(connection, {"pid": os.getpid()})  # the client signals it directly
        _hang_up_with(connection)
        assert state.run_command is not None
        try:
            state.run_command()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                print(exc.code, file=sys.stderr)
        except KeyboardInterrupt:  # as Python ends on one: a traceback, then killed by SIGINT
            import traceback

            traceback.print_exc()
            code, killed_by = 130, signal.SIGINT
    except BaseException:  # the command's own errors are the CLI's; this is the server's
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        # as Python ends: it waits for the threads that are not daemons (a Ctrl-C's stop
        # request runs on one), then runs the atexit functions
        with contextlib.suppress(BaseException):
            threading._shutdown()  # type: ignore[attr-defined]
        with contextlib.suppress(BaseException):
            import atexit

            atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        if killed_by is not None:  # a shell running a script stops it too, as it would alone
            signal.signal(killed_by, signal.SIG_DFL)
            os.kill(os.getpid(), killed_by)
        # said here as well as by the server, which may have been killed meanwhile (the
        # client would only learn that it had gone); the client leaving now is no hang-up
        signal.signal(signal.SIGIO, signal.SIG_IGN)
        with contextlib.suppress(BaseException):
            client.send(connection, {"exit": code})
        os._exit(code)


# Limits a copy of the server cannot take as a process started under them would have.
_FIXED_AT_START = {
    # the copy starts with the server's memory (its imports): it would meet the limit
    # sooner than the same command alone
    "RLIMIT_AS": "counts the server's memory too",
    "RLIMIT_DATA": "counts the server's memory too",
    # the main thread's stack, and every thread's default size, are set as a process starts
    "RLIMIT_STACK": "sizes stacks as a process starts",
}


def _declined(request: dict[str, Any], pid: int) -> str | None:
    """Why this process cannot run the command of the client (process ``pid``) as the
    client would, or None once it can: the same namespaces and root folder; the same
    interpreter options; the hash seed the client asks for, if it asks (Python drew this
    one when the server started); the client's resource limits, taken here (a hard limit
    above the server's cannot be, but by root; memory and stack limits other than the
    server's cannot be at all); its control group, joined (cgroup v2; the commands of
    another terminal tab run in another one)."""
    elsewhere = _elsewhere(pid)
    if elsewhere is not None:
        return elsewhere
    if request.get("interpreter") != client.interpreter():
        return "its Python was started with other options (-X, -W, -O, -B, PYTHON* variables)"
    seed = request["env"].get("PYTHONHASHSEED") or "random"
    if seed != "random" and seed != os.environ.get("PYTHONHASHSEED"):
        return f"it asks for PYTHONHASHSEED={seed}"
    import resource

    for name, wanted in (request.get("limits") or {}).items():
        which = getattr(resource, name)
        if list(resource.getrlimit(which)) != wanted:
            if name in _FIXED_AT_START:
                return f"its resource limit {name} {tuple(wanted)} {_FIXED_AT_START[name]}"
            try:
                resource.setrlimit(which, tuple(wanted))
            except (ValueError, OSError) as exc:
                return f"its resource limit {name} {tuple(wanted)} cannot be taken here ({exc})"
    groups = request.get("cgroup")
    if groups is not None and groups != client.cgroup():
        return _join(groups)
    return None


# What a command sees of the machine through each namespace of its process (``/proc/<pid>/ns``)
_NAMESPACES = {
    "mnt": "mount namespace (its files and folders)",
    "net": "network namespace (its localhost and its routes to the databases)",
    "pid": "process namespace (the server's pids mean nothing there)",
    "user": "user namespace",
    "uts": "host name namespace",
    "ipc": "IPC namespace",
    "cgroup": "control group namespace",
}


def _elsewhere(pid: int) -> str | None:
    """Why the process ``pid`` sees another machine than this one (a container,
    ``unshare``, ``chroot``: the same socket reached from there), or None: a copy of the
    server would read other files, reach other databases and signal other processes."""

    def identity(path: str) -> tuple[int, int]:
        found = os.stat(path)
        return found.st_dev, found.st_ino

    try:
        for name, what in _NAMESPACES.items():
            try:
                ours = identity(f"/proc/self/ns/{name}")
            except FileNotFoundError:  # a kernel without it
                continue
            if identity(f"/proc/{pid}/ns/{name}") != ours:
                return f"it runs in another {what}"
        if identity(f"/proc/{pid}/root") != identity("/"):
            return "it runs under another root folder (chroot)"
    except OSError as exc:
        return f"its namespaces cannot be compared with the server's ({exc.strerror})"
    return None


def _join(groups: str) -> str | None:
    """Move this process into the control group ``groups`` (``/proc/self/cgroup`` of the
    client) names; why it could not, or None."""
    lines = groups.splitlines()
    if len(lines) != 1 or not lines[0].startswith("0::/"):
        return "it runs in other control groups, of cgroup v1, which a served command does not join"
    group = lines[0][len("0::") :]
    try:
        with open(os.path.join("/sys/fs/cgroup", group.lstrip("/"), "cgroup.procs"), "w") as procs:
            procs.write(str(os.getpid()))
    except OSError as exc:
        return f"it runs in another control group ({group}), which the server may not join ({exc.strerror})"
    if client.cgroup() != groups:
        return f"it runs in another control group ({group}), which the server could not join"
    return None


def _take_over(request: dict[str, Any], fds: list[int]) -> None:
    """Become the client's command: its standard streams, folder, environment (time zone
    and luigi's configuration included), umask, priority, ignored signals, arguments and
    first module path entry."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()  # $TZ, read when Python started
    with contextlib.suppress(locale.Error):  # the encoding open() takes by default
        locale.setlocale(locale.LC_CTYPE, "")
    _fresh_luigi_configuration()
    os.umask(int(request["umask"]))
    with contextlib.suppress(OSError):  # lower only: `nice dbluigi build`
        os.setpriority(
            os.PRIO_PROCESS, 0, max(int(request["nice"]), os.getpriority(os.PRIO_PROCESS, 0))
        )
    for signum in request["ignored"]:  # as `dbluigi build &` in a script: SIGINT ignored
        signal.signal(signum, signal.SIG_IGN)
    sys.argv = [request["argv0"], *request["argv"]]
    sys.path[0] = request["path0"]
    # the client's __main__ (click names the program after it: dbluigi, python -m dbluigi)
    main = types.ModuleType("__main__")
    main.__file__ = request["argv0"]
    main.__package__ = request["package"]
    sys.modules["__main__"] = main
    streams = request.get("stdio") or [None, None, None]
    sys.stdin = sys.__stdin__ = _stream(0, "r", streams[0])  # type: ignore[misc]
    sys.stdout = sys.__stdout__ = _stream(1, "w", streams[1])  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = _stream(2, "w", streams[2])  # type: ignore[misc]


def _fresh_luigi_configuration() -> None:
    """luigi reads its configuration (``luigi.cfg`` in the working folder,
    ``$LUIGI_CONFIG_PATH``) once, when it is imported: read again, as the command's.

    luigi's logging setup holds the configuration it found at import
    (``BaseLogging.config``): it is pointed at the new one, or the ``no_configure_logging``
    a build sets would not reach it and luigi would log every task to stderr."""
    from luigi import configuration, setup_logging

    for parser in (configuration.LuigiConfigParser, configuration.LuigiTomlParser):
        parser._instance = None
        parser._config_paths = list(_LUIGI_CONFIG_PATHS.get(parser.__name__, parser._config_paths))
    if "LUIGI_CONFIG_PATH" in os.environ:
        configuration.add_config_path(os.environ["LUIGI_CONFIG_PATH"])
    setup_logging.BaseLogging.config = configuration.get_config()


def _stream(fd: int, mode: str, how: dict[str, Any] | None) -> io.TextIOWrapper:
    how = how or {}
    raw = io.FileIO(fd, mode, closefd=False)
    buffered: io.BufferedIOBase = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
    return io.TextIOWrapper(
        buffered,  # type: ignore[arg-type]
        encoding=how.get("encoding") or "utf-8",
        errors=how.get("errors") or ("backslashreplace" if fd == 2 else "strict"),
        newline="\n",
        line_buffering=bool(how.get("line_buffering")),
        write_through=bool(how.get("write_through", fd == 2)),  # $PYTHONUNBUFFERED's
    )


def _hang_up_with(connection: socket.socket) -> None:
    """End this command with a SIGHUP, as a closed terminal would, when the client goes
    away (killed, say): the kernel signals (SIGIO) when the connection has something to
    read, and the client sends nothing more, so that is its end. No thread: a command
    with one could not fork (``dbluigi.forked``)."""
    import fcntl

    def hung_up(signum: int, frame: Any) -> None:
        try:
            gone = connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return
        except OSError:
            gone = True
        if gone:
            os.kill(os.getpid(), signal.SIGHUP)

    signal.signal(signal.SIGIO, hung_up)
    signal.siginterrupt(signal.SIGIO, False)  # a call it comes in is resumed, not failed
    fd = connection.fileno()
    fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
    # the kernel signals what comes from now on: a client gone already (killed as it
    # handed the command over) would leave the command running for no one
    hung_up(signal.SIGIO, None)


# -- what the server loads, and when it is stale --------------------------------------------


def _preload() -> None:
    """Import every module of dbluigi and what its commands load on first use."""
    import dbluigi

    for module in pkgutil.walk_packages(dbluigi.__path__, "dbluigi."):
        if module.name == "dbluigi.__main__":
            continue
        try:
            importlib.import_module(module.name)
        except Exception as exc:  # an optional dependency missing: loaded by the command
            _log(f"not preloaded: {module.name}: {exc}")
    for name in _EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:
            _log(f"not preloaded: {name}: {exc}")
    with contextlib.suppress(Exception):
        import sqlglot

        for dialect in _DIALECTS:
            sqlglot.Dialect.get_or_raise(dialect)
    if threading.active_count() > 1:  # a fork copies only the thread that forks
        raise ServerError(
            f"{threading.active_count()} threads are running after the imports; "
            "a server must fork from a single thread",
            hint="report it: a module dbluigi imports starts a thread",
        )


# -- the socket ---------------------------------------------------------------------------


def _listen(path: str) -> socket.socket:
    """Bind the socket (its folder made private first); a socket left by a server that is
    gone is replaced, one that answers is not."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if not client.private(folder):
        raise ServerError(
            f"{folder} must be a folder of this user that no one else may write",
            hint=f"chmod 700 {folder}, or set ${client.SERVER_DIR_ENV} to another folder",
        )
    if os.path.exists(path):
        if status(path) is not None:
            raise ServerError(
                f"a server already runs for this installation ({path})",
                hint="dbluigi server status; dbluigi server stop",
            )
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(64)
    listener.setblocking(False)
    return listener


@contextlib.contextmanager
def _connected(path: str) -> Iterator[socket.socket]:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(5)
        connection.connect(path)
        yield connection
    finally:
        connection.close()


def _log(message: str, fd: int | None = None) -> None:
    """A line of the server's log (its standard error, or ``fd``)."""
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
    if fd is None:
        print(line, file=sys.stderr, flush=True)
    else:
        os.write(fd, (line + "\n").encode())


# -- start, stop, status (``dbluigi server ...``) ------------------------------------------


def status(path: str | None = None) -> dict[str, Any] | None:
    """What the server of this installation (or the one at ``path``) says of itself, or
    None when none answers."""
    path = path or client.socket_path()
    if not os.path.exists(path):
        return None
    try:
        with _connected(path) as connection:
            if not client.same_user(connection):
                return None
            hello = client.receive(connection)
    except OSError:
        return None
    if hello is None:
        return None
    return {**hello, "socket": path}


def log_path() -> Path:
    return Path(client.socket_path()).with_suffix(".log")


def start(idle_minutes: float | None = IDLE_MINUTES) -> dict[str, Any]:
    """Start a server for this installation in the background, unless one runs; what it
    says of itself once it listens."""
    running = status()
    # a stale server starts again by itself, once the commands it runs have ended
    if running is not None and running.get("stale") and not running.get("running"):
        running = _listening(int(running["pid"]))
    if running is not None:
        return running
    folder = client.server_dir()
    os.makedirs(folder, mode=0o700, exist_ok=True)
    log = log_path()
    with open(log, "ab") as out:
        process = subprocess.Popen(
            _command(idle_minutes),
            cwd=_home(),
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
        )
    answer = _listening(process.pid, process)
    if answer is not None:
        return answer
    if process.poll() is None:
        process.terminate()
        raise ServerError(
            f"the server did not listen within {START_SECONDS} s", hint=f"read its log: {log}"
        )
    raise ServerError(
        f"the server stopped as it started (exit {process.returncode}); "
        f"the end of its log ({log}):\n{_tail(log)}"
    )


def _home() -> str:
    """The folder a server starts in: ``python -m dbluigi`` puts it first on the module
    path. When the folder holding this ``dbluigi`` package is on the module path already
    (installed, or on ``$PYTHONPATH``), the server's private folder, which holds no
    module: the folder of the package, first, would put a ``site-packages`` before the
    standard library (a ``dataclasses`` backport installed there would replace Python's).
    Otherwise the command ran from that folder (``python -m dbluigi`` in a checkout) and
    the server must too: from another folder, one holding another copy of dbluigi, or
    none, could come first."""
    parent = os.path.dirname(client.installation()["package"])
    return client.server_dir() if parent in sys.path[1:] else parent


def _environment() -> dict[str, str]:
    """The environment of a server to start: this one, with the relative folders of
    ``$PYTHONPATH`` (an empty entry is the working folder) and ``$DBLUIGI_SERVER_DIR``
    made absolute, as this process read them: the server starts in another folder, and
    would otherwise import from other folders and listen on another socket than this
    installation's (``start`` waited a minute for it, in vain)."""
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        entries = env["PYTHONPATH"].split(os.pathsep)
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(entry) for entry in entries)
    if env.get(client.SERVER_DIR_ENV):
        env[client.SERVER_DIR_ENV] = client.server_dir()
    return env


def _command(idle_minutes: float | None) -> list[str]:
    """The command line of a server in the foreground (the background one's, too)."""
    minutes = str(idle_minutes or 0)
    return [
        sys.executable,
        "-m",
        "dbluigi",
        "server",
        "start",
        "--foreground",
        "--idle-minutes",
        minutes,
    ]


def _listening(pid: int, process: subprocess.Popen[bytes] | None = None) -> dict[str, Any] | None:
    """What server ``pid`` says once it listens (and is not stale), or None when it is
    gone, or still not listening after ``START_SECONDS``."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        answer = status()
        if answer is not None and answer.get("pid") == pid and not answer.get("stale"):
            return answer
        if process is not None and process.poll() is not None:
            return None
        if process is None and not _alive(pid):
            return None
        time.sleep(0.05)
    return None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs: an ended one nobody reaped yet (a zombie; its
    parent, once the starting ``dbluigi`` left, is whatever adopts orphans, which in a
    container may be a program that never reaps) has ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != b"Z"


def stop(wait_seconds: float = 30) -> dict[str, Any] | None:
    """Stop this installation's server: what it said of itself (with ``finishing`` True
    when it still runs commands: it takes no more, and exits once they end), or None when
    none was running."""
    running = status()
    if running is None:
        return None
    pid = int(running["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_seconds
    unlisted: float | None = None  # when its socket went: it takes no more commands
    while time.monotonic() < deadline:
        if not _alive(pid):
            return running
        if unlisted is None and not os.path.exists(running["socket"]):
            unlisted = time.monotonic()
        # a server with nothing to run exits as its socket goes; one still alive a moment
        # later finishes commands (those it ran when asked, or one that started since)
        if unlisted is not None and (
            running.get("running") or time.monotonic() - unlisted >= FINISHING_SECONDS
        ):
            return {**running, "finishing": True}
        time.sleep(0.05)
    raise ServerError(
        f"the server (pid {pid}) is still running {wait_seconds:.0f} s after SIGTERM",
        hint=f"read its log ({log_path()}), or kill {pid}",
    )


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""
