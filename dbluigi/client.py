"""A command run by ``dbluigi server`` (``dbluigi/server.py``), when one serves this
installation: the client side.

``dbluigi`` starts by looking for the server's socket (one ``stat``); without one the
command runs here, as always. With one, this process hands the command over: its
arguments, working directory, environment and umask as one message, and its standard
input, output and error themselves (the descriptors, passed over the socket), so the
served command reads and writes exactly where this one would. It then waits, passing on
the signals it gets (Ctrl-C, SIGTERM, SIGHUP, SIGQUIT; Ctrl-Z stops the command with it and
``fg``/``bg`` continue both), and exits the way the served command did: its code, or the
signal that ended it. Killed, it hangs the command up.

Imports here are the standard library's, and only once a socket is found: a command with
no server pays for nothing but the ``stat``.

Messages are JSON, each after its length (4 bytes, big-endian). The server greets with
who it is; this side answers with the command; the command's process says its pid (the
signals go to it directly); the server ends with ``{"exit": n}`` or ``{"signal": n}``.
What the server says of itself decides whether it may run the command: it must be the
same installation (``sys.prefix``, ``dbluigi`` package folder and module path) and run
as the same user; otherwise, or when anything goes wrong before the command is handed
over, the command runs here. The command's process may still decline it
(``{"declined": why}``, before its pid) when it cannot run it as this process would: an
interpreter started with other options or hash seed, resource limits it may not take,
a control group it may not join, other namespaces (a container, ``unshare``, ``chroot``),
or when anything fails before the command starts. The command then runs here too.
"""

from __future__ import annotations

import os
import sys
import zlib

TYPE_CHECKING = False  # typing's costs a served command 2 ms
if TYPE_CHECKING:
    from typing import Any

SUPPORTED = sys.platform == "linux"  # the peer's user comes from SO_PEERCRED
SERVER_DIR_ENV = "DBLUIGI_SERVER_DIR"
NO_SERVER_ENV = "DBLUIGI_NO_SERVER"
FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")


def installation() -> dict[str, Any]:
    """What makes a server's code this process's code: the environment (``sys.prefix``),
    the ``dbluigi`` package's folder and the module path as Python set it up (without its
    first entry: the script's folder, or the working directory under ``python -m``)."""
    import dbluigi

    return {
        "prefix": sys.prefix,
        "package": os.path.dirname(os.path.abspath(dbluigi.__file__)),
        "path": sys.path[1:],
    }


def server_dir() -> str:
    """The folder of this user's server sockets: ``$DBLUIGI_SERVER_DIR``, else
    ``$XDG_RUNTIME_DIR/dbluigi``, else ``/tmp/dbluigi-<uid>``."""
    if os.environ.get(SERVER_DIR_ENV):
        return os.path.abspath(os.environ[SERVER_DIR_ENV])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "dbluigi")
    return f"/tmp/dbluigi-{os.getuid()}"


def socket_path(identity: dict[str, Any] | None = None) -> str:
    """The socket of the server of this installation (a name short enough for a Unix
    socket, whatever the folders' lengths)."""
    key = zlib.crc32(repr(sorted((identity or installation()).items())).encode())
    return os.path.join(server_dir(), f"server-{key:08x}.sock")


def private(folder: str) -> bool:
    """Whether ``folder`` is a real folder of this user that no one else may write: a
    socket elsewhere could be anyone's, and would be sent the environment."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    import stat

    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def run_on_server(argv: list[str]) -> dict[str, int] | None:
    """Run ``argv`` (without the program's name) on this installation's server; how it
    ended (``{"exit": n}`` or ``{"signal": n}``), or None when no server may run it (then
    nothing happened, and the caller runs the command itself)."""
    if not SUPPORTED or os.environ.get(NO_SERVER_ENV) or (argv and argv[0] == "server"):
        return None
    identity = installation()
    path = socket_path(identity)
    if not os.path.exists(path) or not private(os.path.dirname(path)):
        return None
    # A closed standard stream cannot be passed, and the socket would take its number:
    # the command would read or write the connection itself. Run here, as Python set up.
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            return None
    import socket

    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(5)
        connection.connect(path)
        if not same_user(connection):
            return None
        hello = receive(connection)
        if hello is None or hello.get("stale") or hello.get("installation") != identity:
            return None
        fds = [0, 1, 2]
        request = command_message(argv)
        import signal

        # what comes as it is handed over waits for _wait's handlers (Ctrl-Z stopping
        # this process alone now would leave the command running)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _caught())
        try:
            send(connection, request, fds)
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
    except OSError:
        connection.close()
        return None
    # handed over: from here on the command runs there, whatever happens to this side,
    # unless its process declines it before it starts (then it runs here)
    return _wait(connection, mask)


def command_message(argv: list[str]) -> dict[str, Any]:
    """What the served command takes of this process, with its standard streams (passed
    beside it): ``argv`` (without the program's name) and all that a process started here
    would have."""
    main = sys.modules.get("__main__")
    return {
        "argv0": sys.argv[0],
        "package": getattr(main, "__package__", None),
        "argv": argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "umask": _umask(),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "ignored": _ignored(),
        "path0": sys.path[0],
        "stdio": [_stdio(stream) for stream in (sys.stdin, sys.stdout, sys.stderr)],
        "interpreter": interpreter(),
        "limits": limits(),
        "cgroup": cgroup(),
    }


def _caught() -> set[int]:
    """The signals a client passes on (``_wait``): Ctrl-C, SIGTERM, ..., and Ctrl-Z."""
    import signal

    return {int(getattr(signal, name)) for name in (*FORWARDED_SIGNALS, "SIGTSTP")}


# Read by Python as it starts only, and shown neither in sys.flags nor in sys._xoptions
# (PYTHONFAULTHANDLER is -X faulthandler, PYTHONPROFILEIMPORTTIME -X importtime, ...)
STARTUP_VARIABLES = (
    "PYTHONFAULTHANDLER",
    "PYTHONTRACEMALLOC",
    "PYTHONPROFILEIMPORTTIME",
    "PYTHONPYCACHEPREFIX",
    "PYTHONNODEBUGRANGES",
    "PYTHONMALLOC",
    "PYTHONMALLOCSTATS",
    "PYTHONPERFSUPPORT",
    "PYTHON_PERF_JIT_SUPPORT",
    "PYTHON_CPU_COUNT",
    "PYTHON_PRESITE",
    "PYTHON_GIL",
    "PYTHON_JIT",
)


def interpreter() -> dict[str, Any]:
    """How this Python was started (``-X``, ``-W``, ``-O``, ``-B``, ... and the variables
    that set them): a served command has its server's, which must be the same."""
    return {
        "flags": list(sys.flags),
        "warnoptions": list(sys.warnoptions),
        "xoptions": {name: value for name, value in sys._xoptions.items()},
        "variables": {  # ignored under -E or -I (in sys.flags), and when empty
            name: os.environ[name]
            for name in STARTUP_VARIABLES
            if os.environ.get(name) and not sys.flags.ignore_environment
        },
    }


def limits() -> dict[str, list[int]]:
    """This process's resource limits (``ulimit``), soft and hard, by name."""
    import resource

    return {
        name: list(resource.getrlimit(getattr(resource, name)))
        for name in dir(resource)
        if name.startswith("RLIMIT_")
    }


def cgroup() -> str | None:
    """The control groups this process is in (``/proc/self/cgroup``), None if unknown."""
    try:
        with open("/proc/self/cgroup") as groups:
            return groups.read()
    except OSError:
        return None


def peer(connection: Any) -> tuple[int, int]:
    """The process at the other end of a Unix socket, as it connected: its pid (as this
    process's pid namespace numbers it) and user (``SO_PEERCRED``)."""
    import socket
    import struct

    size = struct.calcsize("3i")
    pid, uid, _ = struct.unpack(
        "3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
    )
    return pid, uid


def same_user(connection: Any) -> bool:
    """Whether the other end of a Unix socket runs as this user."""
    return peer(connection)[1] == os.getuid()


def _stdio(stream: Any) -> dict[str, Any] | None:
    """How Python set up one of this process's standard streams, for the served command
    to set up its own the same way (encoding, errors, buffering)."""
    if stream is None:
        return None
    return {
        "encoding": getattr(stream, "encoding", None),
        "errors": getattr(stream, "errors", None),
        "line_buffering": bool(getattr(stream, "line_buffering", False)),
        "write_through": bool(getattr(stream, "write_through", False)),
    }


def _ignored() -> list[int]:
    """The signals this process ignores (a command started with ``&`` by a script
    ignores SIGINT and SIGQUIT): the served command ignores them too."""
    import signal

    names = (*FORWARDED_SIGNALS, "SIGUSR1", "SIGUSR2")
    return [
        int(getattr(signal, name))
        for name in names
        if signal.getsignal(getattr(signal, name)) is signal.SIG_IGN
    ]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _wait(connection: Any, mask: Any = None) -> dict[str, int] | None:
    """Forward this process's signals to the served command until it ends; how it ended,
    or None when its process declined it (nothing ran; the signals that came meanwhile
    are this process's again). ``mask``: the signal mask to restore once the handlers
    are in place (the caught signals were blocked as the command was handed over)."""
    import contextlib  # loaded already: Python's start imports it
    import signal

    command: list[int] = []  # its process, once it said
    pending: list[int] = []  # signals that came before

    def forward(signum: int, frame: Any) -> None:
        if not command:
            pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):  # it has just ended
            os.kill(command[0], signum)

    def suspend(signum: int, frame: Any) -> None:
        """Ctrl-Z: stop the command (its process group: it leads one, in a session of
        its own, where SIGTSTP is discarded), then this process, as the shell expects;
        ``fg`` or ``bg`` continues this process here, and it continues the command.
        Before the command's pid, this waits for it (or for a decline)."""
        if not command:
            pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(command[0], signal.SIGSTOP)
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)
        signal.signal(signal.SIGTSTP, suspend)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(command[0], signal.SIGCONT)

    handlers = {
        **{getattr(signal, name): forward for name in FORWARDED_SIGNALS},
        signal.SIGTSTP: suspend,
    }
    before: dict[int, Any] = {}  # the handlers replaced
    for signum, handler in handlers.items():
        if signal.getsignal(signum) is not signal.SIG_IGN:
            before[signum] = signal.signal(signum, handler)
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    connection.settimeout(None)
    while True:
        try:
            message = receive(connection)
        except OSError:
            message = None
        if message is None:  # the server went away
            print(
                "dbluigi: the server running this command stopped before it ended "
                "(dbluigi server status)",
                file=sys.stderr,
            )
            return {"exit": 1}
        if isinstance(message.get("pid"), int):
            command.append(message["pid"])
            for signum in pending:
                handlers[signum](signum, None)
        elif "declined" in message and not command:
            connection.close()
            for signum, previous in before.items():
                signal.signal(signum, signal.SIG_DFL if previous is None else previous)
            for signum in pending:
                signal.raise_signal(signum)
            return None
        elif "exit" in message or "signal" in message:
            return message


def exit_like(ended: dict[str, int]) -> None:
    """Leave this process the way the served command left: its exit code, or killed by
    the same signal."""
    if sys.stdout is not None:
        sys.stdout.flush()
    if "signal" in ended:
        import signal

        signum = ended["signal"]
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        raise SystemExit(128 + signum)  # a signal that does not end a process
    raise SystemExit(ended["exit"])


# -- messages ---------------------------------------------------------------------------


def send(connection: Any, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """One message, with ``fds`` passed along (``SCM_RIGHTS``)."""
    import json
    import socket
    import struct

    body = json.dumps(message).encode()
    data = struct.pack(">I", len(body)) + body
    if fds:
        import array

        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        sent = connection.sendmsg([data], rights)
        data = data[sent:]
    connection.sendall(data)


def receive(connection: Any, fds: list[int] | None = None) -> dict[str, Any] | None:
    """The next message (None at the end of the connection); descriptors passed with it
    are appended to ``fds`` when given."""
    import json
    import struct

    header = _exactly(connection, 4, fds)
    if header is None:
        return None
    body = _exactly(connection, struct.unpack(">I", header)[0], None)
    if body is None:
        return None
    message = json.loads(body)
    return message if isinstance(message, dict) else None


def _exactly(connection: Any, size: int, fds: list[int] | None) -> bytes | None:
    import array
    import socket

    data = b""
    while len(data) < size:
        if fds is not None:
            room = socket.CMSG_SPACE(16 * array.array("i").itemsize)
            chunk, ancillary, _, _ = connection.recvmsg(size - len(data), room)
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    received = array.array("i")
                    received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
                    fds.extend(received)
        else:
            chunk = connection.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
