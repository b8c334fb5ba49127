"""The ``dbluigi`` command line: the only place that prints errors and picks exit codes.

Exit codes: 0 all built, 1 a task failed, 2 usage or project error.
"""

from __future__ import annotations

import copy
import functools
import gc
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
import typer.core

from dbluigi import __version__
from dbluigi.documents import (
    COLUMN_LINEAGE,
    HISTORY,
    LS,
    PLAN,
    SHOW,
    SLOW_MODELS,
    document,
    target_fields,
    with_iso_times,
)
from dbluigi.errors import DbluigiError, ProjectError, UsageError
from dbluigi.lineage import FORMATS, render_lineage
from dbluigi.project import Project, load_project
from dbluigi.selectors import TargetState, select

if TYPE_CHECKING:
    from rich.console import Console

    from dbluigi.plan import Plan
    from dbluigi.runner import RunOptions, RunResult
    from dbluigi.state import TaskRecord, TaskResult
    from dbluigi.watch import Cycle

app = typer.Typer(
    name="dbluigi",
    help="A folder of SQL files as a reliable, resumable ETL pipeline.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,  # --install-completion, --show-completion (typer, click)
)


class _LazyConsole:
    """A rich ``Console`` made when first used: a command that prints nothing through
    rich (a build with ``--json``) does not import it (0.04 s)."""

    def __init__(self, **options: Any) -> None:
        self._options = options

    @functools.cached_property
    def _console(self) -> Console:
        from rich.console import Console

        return Console(**self._options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._console, name)

    def __enter__(self) -> Console:  # rich's Live holds its console while it draws
        return self._console.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._console.__exit__(*exc)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_options":
            object.__setattr__(self, name, value)
        else:  # console.width = 250
            setattr(self._console, name, value)


# names like :x: print as written (and rich skips its emoji table)
console = cast("Console", _LazyConsole(emoji=False))
err_console = cast("Console", _LazyConsole(stderr=True, soft_wrap=True, emoji=False))

ProjectOpt = Annotated[
    Path,
    typer.Option(
        "--project",
        "-p",
        help="The project folder.",
        envvar="DBLUIGI_PROJECT",
        file_okay=False,  # a file is refused as the option is read, naming it (exit 2)
    ),
]
TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target",
        "-t",
        help="Target URL, or the name of a \\[targets.NAME] of dbluigi.toml (default: "
        "$DBLUIGI_TARGET, else \\[project] target, else DuckDB under .dbluigi/).",
        show_default=False,
    ),
]
VarOpt = Annotated[
    list[str] | None, typer.Option("--var", help="A variable, NAME=VALUE; repeatable.")
]
SELECTOR_HELP = (
    "Selectors, as dbt writes them: name, schema.name, a schema, wildcards (raw.*, *agencies), "
    "tag:x, path:dir/, source:x, kind:view, stale (what build would run now), "
    "result:error|fail|skipped|success (the last run); +x and N+x (upstream), x+ and x+N "
    "(downstream), @x; a,b intersects, spaces and repeats unite."
)
SelectorArg = Annotated[list[str] | None, typer.Argument(help=SELECTOR_HELP, show_default=False)]
SelectOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--select", "-s", help="Selectors, as the arguments; repeatable.", show_default=False
    ),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude", "-x", help="Selectors to leave out (the same forms).", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-w",
        min=1,
        help="Tasks run at once (default: \\[target] workers in dbluigi.toml, else 1 on "
        "DuckDB and 4 per core, 4 to 16, on PostgreSQL).",
        show_default=False,
    ),
]
FailFastOpt = Annotated[
    bool, typer.Option("--fail-fast", help="Stop starting tasks after the first failure.")
]
FullRefreshOpt = Annotated[
    bool,
    typer.Option("--full-refresh", help="Rebuild selected incremental models from scratch."),
]
WatchOpt = Annotated[
    bool,
    typer.Option(
        "--watch",
        help="After building, keep watching: build what is stale on every file change "
        "and every --interval, until Ctrl-C or SIGTERM.",
    ),
]
IntervalOpt = Annotated[
    str | None,
    typer.Option(
        "--interval",
        help="With --watch: seconds (or 30s, 5m) between checks for stale models "
        "(default: \\[watch] interval in dbluigi.toml, else 60).",
        show_default=False,
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler-url",
        help="A luigid central scheduler (http://host:8082) shared with workers on other machines.",
        show_default=False,
    ),
]


def run_here() -> None:
    """The command of ``sys.argv``, in this process (``dbluigi``, or a process of ``dbluigi
    server``)."""
    # A project of 10,000 models is a few hundred thousand small objects that live for the
    # whole command: collecting the youngest generation every 700 allocations (Python's
    # default) rescans them for nothing, 10% of a `plan` of 10,000 models. Cyclic garbage
    # is still collected, every 100,000 allocations; peak memory does not change.
    gc.set_threshold(100_000, 50, 100)
    main()


def main() -> None:
    # sqlglot warns on statements it keeps as commands; dbluigi reports what matters itself
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    _app_for(sys.argv[1:])()


def _app_for(args: list[str]) -> typer.Typer:
    """``app`` with only the command ``args`` start with, when they do: typer makes a click
    command of every registered command each time it runs (inspecting their signatures,
    about 25 ms), where one is used. Anything else (no command, an option first, shell
    completion) runs the whole ``app``."""
    if not args:
        return app
    chosen = [
        info
        for info in app.registered_commands
        if args[0]
        == (info.name or typer.main.get_command_name(getattr(info.callback, "__name__", "")))
    ]
    if not chosen:
        return app
    narrowed = copy.copy(app)
    narrowed.registered_commands = chosen
    return narrowed


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        console.print(f"dbluigi {__version__}")
        raise typer.Exit(0)


ERROR_EXIT = 2  # an error that stops a command; a failed task exits 1 through its run
PLAN_LINES = 200  # a longer selection is summarized (``plan --all`` lists it whole)
PLAN_SHOWN = 50  # models that would run, listed under the summary


@contextmanager
def _errors() -> Iterator[None]:
    """Print a dbluigi error that stops the command (it says where and what to do next)
    and exit 2; on stdout as well, as ``dbluigi/error/v1``, when the command was asked
    for JSON (``_Command``)."""
    try:
        yield
    except DbluigiError as exc:
        err_console.print(f"[bold red]error:[/] {_escape(str(exc))}")
        command = _json_errors.get()
        if command is not None:
            _print_error_json(command, _error_json(exc))
        raise typer.Exit(ERROR_EXIT) from None


def _error_json(error: DbluigiError) -> dict[str, Any]:
    """An error as JSON documents carry it (``error`` of ``dbluigi/error/v1`` and of a
    watch cycle)."""
    return {
        "message": error.message,
        "file": error.path,
        "line": error.line,
        "hint": error.hint,
        "kind": type(error).__name__,
    }


def _print_error_json(command: str, error: dict[str, Any]) -> None:
    """``dbluigi/error/v1`` on one line: a document alone, or the last line of a stream of
    them (``build --watch --json``)."""
    from dbluigi.documents import ERROR, document

    payload = document(ERROR, {"command": command, "exit_code": ERROR_EXIT, "error": error})
    typer.echo(json.dumps(payload, separators=(",", ":")))


# the command being run, while it runs, when it was asked for JSON
_json_errors: ContextVar[str | None] = ContextVar("dbluigi_json_errors", default=None)
# click's UsageError, which typer vendors from 0.28 on (and re-exports only a subclass of)
_ClickUsageError = cast(
    "type[Exception]", next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
)
# the parameters that ask a command for JSON (as _Command.invoke reads them): a flag
# (None), or an option and its value
_JSON_PARAMS: dict[str, str | None] = {"as_json": None, "fmt": "json", "output": "json"}


class _Command(typer.core.TyperCommand):
    """A command that, asked for JSON, says why it stopped in JSON on stdout too
    (``dbluigi/error/v1``): a usage error as its options are read, or a dbluigi error as it
    runs (``_errors``). A script reading stdout then reads a document either way."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        given = list(args)  # click's parser consumes the list
        try:
            return super().parse_args(ctx, args)
        except _ClickUsageError as exc:
            if _asks_json(given, self.params):
                _print_error_json(
                    ctx.info_name,
                    {
                        "message": exc.format_message(),  # type: ignore[attr-defined]
                        "file": None,
                        "line": None,
                        "hint": f"dbluigi {ctx.info_name} --help lists its options",
                        "kind": "UsageError",
                    },
                )
            raise

    def invoke(self, ctx: Any) -> Any:
        params = ctx.params
        asked = (
            params.get("as_json") is True
            or params.get("fmt") == "json"
            or params.get("output") == "json"
        )
        token = _json_errors.set(ctx.info_name if asked else None)
        try:
            return super().invoke(ctx)
        finally:
            _json_errors.reset(token)


def _asks_json(args: list[str], params: list[Any]) -> bool:
    """Whether command-line ``args`` (not yet read) ask for JSON with the options of the
    command (``params``): ``--json``, ``--format json`` or ``--output json`` (``-f json``,
    ``-ojson``, ``--output=json``), before a ``--``. Another command's ``-o`` (``docs
    --out``) asks for nothing."""
    args = args[: args.index("--")] if "--" in args else args
    flags = {
        o for p in params if p.name in _JSON_PARAMS and _JSON_PARAMS[p.name] is None for o in p.opts
    }
    valued = {o: _JSON_PARAMS[p.name] for p in params if _JSON_PARAMS.get(p.name) for o in p.opts}
    for i, arg in enumerate(args):
        if arg in flags or (arg in valued and args[i + 1 : i + 2] == [valued[arg]]):
            return True
        name, _, value = arg.partition("=") if arg.startswith("--") else (arg[:2], "", arg[2:])
        if name in valued and value == valued[name]:
            return True
    return False


def _escape(text: object) -> str:
    """``text`` as rich prints it literally: user text (names, partition values, paths,
    errors, rows) may hold brackets that rich would otherwise read as markup."""
    from rich.markup import escape

    return escape(str(text))


def _load(project_dir: Path, target: str | None, var: list[str] | None) -> Project:
    from dbluigi.config import parse_var_options

    project = load_project(project_dir, target=target, variables=parse_var_options(var))
    for warning in project.warnings:
        err_console.print(f"[yellow]warning:[/] {_escape(str(warning))}", highlight=False)
    return project


UNSET_VALUE = "dbluigi_unset_{name}"  # what an unset variable reads as where no SQL runs


def _load_unset_vars(
    project_dir: Path, target: str | None, var: list[str] | None, *, use_cache: bool = True
) -> tuple[Project, frozenset[str]]:
    """The project for commands that run none of its model SQL (``history``, ``check``):
    a variable with no value reads as a plain name (``dbluigi_unset_NAME``, which parses
    wherever a value or a name may stand) instead of stopping the command; returns the
    names so filled. When the project does not load that way, the undefined variable's
    own error is raised."""
    from dbluigi.config import parse_var_options
    from dbluigi.errors import VariableError

    given: dict[str, str] = parse_var_options(var)
    unset: set[str] = set()
    first: VariableError | None = None
    while True:
        try:
            project = load_project(project_dir, target=target, variables=given, use_cache=use_cache)
        except VariableError as exc:
            name = exc.variable
            if name is None or name in given:  # not an undefined one: a real error
                raise
            first = first or exc
            given[name] = UNSET_VALUE.format(name=name)
            unset.add(name)
        except ProjectError:
            if first is not None:
                raise first from None
            raise
        else:
            break
    for warning in project.warnings:
        err_console.print(f"[yellow]warning:[/] {_escape(str(warning))}", highlight=False)
    return project, frozenset(unset)


def _refuse_unset_checks(proj: Project, selected: tuple[str, ...], unset: frozenset[str]) -> None:
    """``check`` runs check files: one using a variable with no value cannot run."""
    from dbluigi.errors import VariableError
    from dbluigi.render import PLACEHOLDER

    if not unset:
        return
    for relation in selected:
        for check_file in proj.gated_checks(relation):
            if check_file.format != "sql":
                continue
            text = (proj.root / check_file.path).read_text(encoding="utf-8")
            for match in PLACEHOLDER.finditer(text):
                if match.group(1) in unset:
                    name = match.group(1)
                    raise VariableError(
                        f"the check file uses variable '{name}', which has no value",
                        path=check_file.path,
                        line=text.count("\n", 0, match.start()) + 1,
                        hint=f"pass --var {name}=VALUE (as the build did), or set it in "
                        "dbluigi.toml [vars]",
                        variable=name,
                    )


def _target_state(proj: Project) -> TargetState:
    """``stale`` and ``result:`` for commands without a run of their own: the target is
    opened (and the runner imported) only when a selector uses them."""

    def reader() -> TargetState:
        from dbluigi.runner import target_state
        from dbluigi.targets import open_target

        return target_state(proj, open_target(proj.config.target_url, project_dir=proj.root))

    return TargetState(stale=lambda: reader().stale(), last_run=lambda: reader().last_run())


@app.command(cls=_Command)
def init(folder: Annotated[Path, typer.Argument(help="The folder to create.")]) -> None:
    """Create a starter project that `dbluigi build` runs as it is."""
    from dbluigi.scaffold import init_project

    with _errors():
        written = init_project(folder)
    console.print(f"created {len(written)} files in {_escape(folder)}")
    console.print(f"next: [bold]dbluigi build --project {_escape(folder)}[/]")


@app.command(cls=_Command)
def lineage(
    selectors: SelectorArg = None,
    select_opt: SelectOpt = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.")
    ] = "text",
    exclude: ExcludeOpt = None,
    project: ProjectOpt = Path("."),
    target: TargetOpt = None,
    var: VarOpt = None,
) -> None:
    """Show the dependency graph; a selector without + shows its whole lineage.
    MODEL.COLUMN shows where a column comes from, across models (text or json)."""
    with _errors():
        if fmt not in FORMATS:
            raise UsageError(
                f"--format {fmt!r} is not one of {', '.join(FORMATS)}",
                hint="for example --format mermaid",
            )
        proj = _load(project, target, var)
        wanted = [*(selectors or ()), *(select_opt or ())]
        column = _column_selector(proj, wanted) if not exclude else None
        if column is not None:
            text = _column_lineage(proj, *column, fmt)
            typer.echo(text)
            return
        # a selector without + or @: its whole lineage, upstream and downstream
        models = (
            select(proj, wanted, exclude or (), state=_target_state(proj), whole_lineage=True)
            if wanted or exclude
            else None
        )
        text = render_lineage(proj, models, fmt)
    typer.echo(text)


def _column_selector(proj: Project, selectors: list[str]) -> tuple[str, str] | None:
    """(model, column) when the one selector is ``schema.table.column`` or
    ``table.column`` naming a model and a column; a selector naming a model stays one."""
    if len(selectors) != 1 or re.search(r"[+@:*,\s]", selectors[0]):
        return None
    selector = selectors[0]
    if _model_named(proj, selector) is not None:
        return None
    head, _, column = selector.rpartition(".")
    relation = _model_named(proj, head) if head and column else None
    return (relation, column) if relation else None


def _model_named(proj: Project, name: str) -> str | None:
    if name in proj.models:
        return name
    found = [r for r, m in proj.models.items() if m.name == name]
    if len(found) == 1:
        return found[0]
    # the project's name of a relation the target builds elsewhere, as selectors take it
    moved = proj.config.schema_map.relation(name)
    return moved if moved != name and moved in proj.models else None


def _column_lineage(proj: Project, relation: str, column: str, fmt: str) -> str:
    """``lineage MODEL.COLUMN``: the column's upstream tree, with the target's published
    columns of the relations upstream when the target can be read without building."""
    from dbluigi.columns import FORMATS as COLUMN_FORMATS
    from dbluigi.columns import render_trace, trace

    if fmt not in COLUMN_FORMATS:
        raise UsageError(
            f"--format {fmt!r} does not show a column's lineage; use {' or '.join(COLUMN_FORMATS)}",
            hint=f"dbluigi lineage {relation}.{column} --format json",
        )
    known, unread = _published_columns(proj, relation)
    found = trace(proj, relation, column, known)
    # said only when a relation upstream needs the target to know its columns
    note = unread if any(node.kind == "source" for node in found.walk()) else None
    if fmt == "json":
        payload = document(
            COLUMN_LINEAGE,
            {"column": found.to_json(), "target_read": unread is None, "note": note},
        )
        return json.dumps(payload, indent=2)
    text = render_trace(found, fmt)
    return text if note is None else f"{text}\n({note})"


def _published_columns(
    proj: Project, relation: str
) -> tuple[dict[str, tuple[str, ...]], str | None]:
    """The published columns of ``relation`` and everything upstream of it, read from the
    target when it exists (nothing is created, built or locked), and None; else nothing
    and why the columns of sources are unknown."""
    from dbluigi.columns import upstream_of
    from dbluigi.targets import open_target

    upstream = upstream_of(proj, relation)
    tgt = open_target(proj.config.target_url, project_dir=proj.root)
    if not tgt.exists():
        return {}, "the target was not built yet: the columns of sources are unknown"
    known: dict[str, tuple[str, ...]] = {}
    try:
        session = tgt.connect()
    except Exception:  # any driver's error: the lineage is the project's, the target an extra
        return {}, "the target cannot be read: the columns of sources are unknown"
    try:  # one catalog query for every schema upstream, not a query per relation
        found = session.column_types(sorted({name.split(".", 1)[0] for name in upstream}))
    finally:
        session.close()
    for name in upstream:
        if name in found:
            known[name] = tuple(column for column, _ in found[name])
    return known, None


@app.command(cls=_Command)
def docs(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="The folder to write the site into (its index.html at the root). "
            "[default: .dbluigi/docs in the project]",
            show_default=False,
        ),
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve the site on 127.0.0.1 once written.")
    ] = False,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="The port --serve listens on (0: any).")
    ] = 8080,
    project: ProjectOpt = Path("."),
    target: TargetOpt = None,
    var: VarOpt = None,
) -> None:
    """Write a static docs site: the lineage graph, a page per model (SQL, columns and
    where they come from, checks, last builds) and reports of the latest runs."""
    from dbluigi.docs import build_docs

    with _errors():
        proj, unset = _load_unset_vars(project, target, var)
        folder = out if out is not None else proj.root / ".dbluigi" / "docs"
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"--out {folder} is a file", hint="name a folder")
        try:
            index, note = build_docs(proj, folder)
        except OSError as exc:
            written = Path(exc.filename) if exc.filename is not None else None
            # the folder, a parent it made, or a file in it; anything else is no --out's
            if written is None or not (
                written.is_relative_to(folder) or folder.is_relative_to(written)
            ):
                raise
            named = f"--out {folder}" if out is not None else f"the docs folder {folder}"
            raise UsageError(
                f"{named}: cannot write there: {exc.strerror} ({written})",
                hint="name a folder you may write to with --out",
            ) from None
    if unset:
        err_console.print(
            "[yellow]note:[/] variables without a value are shown by name: "
            + _escape(", ".join(sorted(unset))),
            highlight=False,
        )
    if note:
        err_console.print(f"[yellow]structure only:[/] {_escape(note)}", highlight=False)
    console.print(f"wrote {_escape(str(index))}", highlight=False)
    if serve:
        _serve(folder, port)


def _serve(folder: Path, port: int) -> None:
    """Serve ``folder`` on 127.0.0.1 until interrupted."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        err_console.print(f"[bold red]error:[/] --port {port}: {_escape(exc.strerror or str(exc))}")
        raise typer.Exit(ERROR_EXIT) from None
    console.print(f"serving http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command(cls=_Command)
def plan(
    selectors: SelectorArg = None,
    select_opt: SelectOpt = None,
    exclude: ExcludeOpt = None,
    project: ProjectOpt = Path("."),
    target: TargetOpt = None,
    var: VarOpt = None,
    as_json: JsonOpt = False,
    show_all: Annotated[
        bool,
        typer.Option(
            "--all", help=f"List every model, also when more than {PLAN_LINES} are selected."
        ),
    ] = False,
) -> None:
    """List what a build would run, in order, and why (a summary when the selection is
    long: the reasons counted, then the first models that would run)."""
    from dbluigi.runner import RunOptions, prepare
    from dbluigi.targets import open_target

    with _errors():
        proj = _load(project, target, var)
        tgt = open_target(proj.config.target_url, project_dir=proj.root)
        prepared = prepare(
            proj,
            tgt,
            RunOptions(
                command="plan",
                selectors=(*(selectors or ()), *(select_opt or ())),
                exclude=tuple(exclude or ()),
            ),
        )
        prepared.session.close()
        decided = prepared.plan
    if as_json:
        rows = [_plan_row(proj, decided, model) for model in decided.selected]
        payload = document(PLAN, {**target_fields(proj, tgt), "models": rows})
        typer.echo(json.dumps(payload, indent=2))
        return
    console.print(f"plan on {_escape(tgt.display_url)}", soft_wrap=True)
    selected = decided.selected
    width = max((len(model) for model in selected), default=0)
    shown = list(enumerate(selected, 1))
    if len(selected) > PLAN_LINES and not show_all:
        shown = _plan_summary(decided)
    for i, model in shown:
        _print_plan_row(i, _plan_row(proj, decided, model), width)
    if len(shown) < len(selected):
        console.print(
            f"[dim]... {len(selected) - len(shown)} more not listed: dbluigi plan --all lists "
            "every model, --json gives them all to a program[/]",
            soft_wrap=True,
            highlight=False,
        )
    decisions = [decided.decisions[model] for model in selected]
    to_run = sum(1 for d in decisions if d.run and not d.conditional)
    maybe = sum(1 for d in decisions if d.conditional)
    also = f" ({maybe} more if their upstream changes)" if maybe else ""
    console.print(f"{to_run} of {len(selected)} selected models would run{also}")


def _plan_summary(decided: Plan) -> list[tuple[int, str]]:
    """Print how many models would run for each reason; return the first ones that run
    (blocked ones first), numbered as in the whole plan."""
    reasons: dict[str, int] = {}
    numbered = [(i, m, decided.decisions[m]) for i, m in enumerate(decided.selected, 1)]
    for _, _, d in numbered:
        key = d.reason if d.run else "up to date"
        reasons[key] = reasons.get(key, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        console.print(f"{count:>7}  {_escape(reason)}", soft_wrap=True, highlight=False)
    blocked = [(i, m) for i, m, d in numbered if d.missing_parents]
    running = [(i, m) for i, m, d in numbered if d.run and not d.missing_parents]
    return (blocked + running)[:PLAN_SHOWN]


def _print_plan_row(i: int, row: dict[str, Any], width: int) -> None:
    action = "[green]run    [/]" if row["run"] else "[dim]skip   [/]"
    if row["conditional"]:
        action = "[cyan]maybe  [/]"
    why = row["reason"]
    if row["missing_parents"]:
        action = "[red]blocked[/]"
        why += f" (missing: {', '.join(row['missing_parents'])})"
    model, kind = _escape(f"{row['model']:<{width}}"), _escape(f"{row['kind']:<6}")
    line = f"{i:>4}  {action}  {model}  {kind} {_escape(why)}"
    if row["depends_on"]:
        line += f"  [dim]<- {_escape(', '.join(row['depends_on']))}[/]"
    console.print(line, soft_wrap=True, highlight=False)
    for note in row["writes"]:
        console.print(f"{'':>15}[dim]{_escape(note)}[/]", soft_wrap=True, highlight=False)
    if row["checks"]:
        console.print(
            f"{'':>15}[dim]checks: {_escape(' · '.join(row['checks']))}[/]",
            soft_wrap=True,
            highlight=False,
        )
    if row["inputs"] is not None:
        files = ", ".join(row["inputs"]) or "no file matches " + ", ".join(row["input_globs"])
        console.print(f"{'':>15}[dim]inputs: {_escape(files)}[/]", soft_wrap=True, highlight=False)


def _plan_row(proj: Project, decided: Plan, model: str) -> dict[str, Any]:
    """One model of the plan, as ``plan`` prints it and ``plan --json`` gives it."""
    d = decided.decisions[model]
    m = proj.models[model]
    return {
        "model": model,
        "kind": m.kind,
        "file": m.path,
        "run": d.run,
        "conditional": d.conditional,  # runs only if its upstream changes
        "reason": d.reason,
        "depends_on": sorted(proj.graph.parents(model)),
        "waits_for": sorted(proj.graph.waits_for(model)),
        "missing_parents": list(d.missing_parents),
        "checks": proj.check_notes(model),
        "writes": proj.write_notes(model),
        "inputs": [path for path, _ in d.input_files] if m.header.inputs else None,
        "input_globs": list(m.header.inputs),
    }


def _build(
    command: str,
    selectors: list[str] | None,
    exclude: list[str] | None,
    project: Path,
    target: str | None,
    var: list[str] | None,
    workers: int | None,
    fail_fast: bool,
    as_json: bool,
    force: bool,
    scheduler_url: str | None = None,
    full_refresh: bool = False,
    partitions: list[str] | None = None,
    watch: bool = False,
    interval: str | None = None,
) -> None:
    from dbluigi.api import execute
    from dbluigi.runner import RunOptions

    if watch or interval is not None:
        with _errors():
            seconds = _interval(interval, watch)
            options = RunOptions(
                command=command,
                selectors=tuple(selectors or ()),
                exclude=tuple(exclude or ()),
                fail_fast=fail_fast,
                force=force,
                full_refresh=full_refresh,
                partitions=tuple(partitions or ()),
            )
        _watch(options, project, target, var, workers, scheduler_url, seconds, as_json)
    started = time.perf_counter()
    with _errors():
        proj = _load(project, target, var)
        options = RunOptions(
            command=command,
            selectors=tuple(selectors or ()),
            exclude=tuple(exclude or ()),
            workers=workers,
            fail_fast=fail_fast,
            force=force,
            full_refresh=full_refresh,
            scheduler_url=scheduler_url,
            partitions=tuple(partitions or ()),
        )
        with _progress(as_json) as (on_plan, on_event):
            result = execute(  # what the Python API runs (dbluigi.api)
                proj,
                options,
                on_event=on_event,
                on_plan=on_plan,
                on_note=None if as_json else _print_note,  # --json: notes are in its payload
            )
    elapsed = time.perf_counter() - started
    if as_json:
        from dbluigi.artifact import json_text

        typer.echo(json_text(_result_json(result)), nl=False)
    else:
        _print_summary(result, elapsed)
    raise typer.Exit(result.exit_code)


def _interval(value: str | None, watch: bool) -> float | None:
    """``--interval``: only with ``--watch``; seconds or a duration, 1 second or more."""
    from dbluigi.config import parse_interval

    if value is None:
        return None
    if not watch:
        raise UsageError(
            "--interval is for --watch", hint=f"add --watch, or leave out --interval {value}"
        )
    try:
        return parse_interval(value)
    except ValueError as exc:
        raise UsageError(
            f"--interval: {exc}",
            hint="pass seconds or a duration, 1 second or more: --interval 30, --interval 5m",
        ) from None


def _watch(
    options: RunOptions,
    project: Path,
    target: str | None,
    var: list[str] | None,
    workers: int | None,
    scheduler_url: str | None,
    interval: float | None,
    as_json: bool,
) -> None:
    """``build --watch``: the loop is ``dbluigi.watch``; this prints what each cycle did.
    Stopped by Ctrl-C or SIGTERM it exits 0; a second one exits at once (128 + signal)."""
    from dbluigi.config import parse_var_options
    from dbluigi.watch import StopRequest, WatchOptions, watch

    def first(signum: int) -> None:
        err_console.print(
            "stopping: running tasks finish, no new task starts (Ctrl-C again to stop at once)",
            highlight=False,
        )

    stop = StopRequest(_stop_at_once, on_first=first)
    report = _CycleReport(as_json)
    with _errors():
        watch_options = WatchOptions(
            project_dir=project,
            run=options,
            target=target,
            variables=parse_var_options(var),
            workers=workers,
            scheduler_url=_scheduler(scheduler_url),
            interval=interval,
        )
        if not as_json:
            err_console.print(
                f"watching {_escape(project.resolve())} (Ctrl-C to stop)",
                soft_wrap=True,
                highlight=False,
            )
        with stop.handling_signals():
            cycles = watch(
                watch_options, _dispatch, stop, report, progress=lambda: _progress(as_json)
            )
    if not as_json:
        err_console.print(f"stopped after {cycles} cycles", highlight=False)
    raise typer.Exit(0)


def _stop_at_once(signum: int) -> None:
    """A second Ctrl-C or SIGTERM: leave now. The server rolls back what was in flight
    (every publish is one transaction); the next build marks the run interrupted. Written
    straight to the file descriptor: a stream may be locked by a thread blocked in a write."""
    try:
        os.write(2, b"stopped at once\n")
    finally:
        os._exit(128 + signum)


class _CycleReport:
    """What ``build --watch`` shows after each cycle: one line (one JSON document with
    ``--json``), failures with file and line, and notes and warnings when they change.
    On a terminal, the line of a cycle that found nothing stale replaces the line of the
    one before when that found nothing either, so an idle watch does not scroll."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.shown: set[str] = set()  # notes and warnings already shown
        self.idle_line = False  # the last thing on the terminal is an idle cycle's line

    def __call__(self, cycle: Cycle) -> None:
        if self.as_json:
            typer.echo(json.dumps(_cycle_json(cycle), separators=(",", ":"), default=str))
            return
        idle = cycle.result is not None and all(
            r.status == "up to date" for r in cycle.result.results
        )
        if idle and self.idle_line and console.is_terminal:
            from rich.control import Control
            from rich.segment import ControlType

            console.control(Control.move(0, -1), Control((ControlType.ERASE_IN_LINE, 2)))
        self.idle_line = idle and not cycle.trigger.changed and not self._news(cycle)
        stamp = cycle.started_at.strftime("%H:%M:%S")
        if cycle.trigger.changed:
            shown = _escape(", ".join(cycle.trigger.changed[:3]))
            more = len(cycle.trigger.changed) - 3
            console.print(
                f"[dim]{stamp} changed: {shown}{f' and {more} more' if more > 0 else ''}[/]",
                soft_wrap=True,
                highlight=False,
            )
        for text in self._news(cycle):
            self.shown.add(text)
            err_console.print(f"[yellow]note:[/] {_escape(text)}", highlight=False)
        if cycle.result is not None:
            _print_task_errors(cycle.result)
        then = (
            f"next check at {cycle.next_check_at:%H:%M:%S} or on file change"
            if cycle.next_check_at is not None
            else "waiting for a file change"
        )
        if cycle.error is not None:
            err_console.print(
                f"{stamp} [bold red]error:[/] {_escape(str(cycle.error))}",
                soft_wrap=True,
                highlight=False,
            )
            console.print(f"{stamp} nothing built; {then}", soft_wrap=True, highlight=False)
            return
        assert cycle.result is not None
        line = f"{stamp} {_escape(_cycle_line(cycle.result))}; {then}"
        console.print(line, soft_wrap=True, highlight=False)

    def _news(self, cycle: Cycle) -> list[str]:
        """The warnings and notes of ``cycle`` not shown before."""
        texts = (*cycle.warnings, *(cycle.result.notes if cycle.result else ()))
        return [t for t in dict.fromkeys(texts) if t not in self.shown]


def _cycle_line(result: RunResult) -> str:
    """``built 2 (a, b), 0 failed``, with the skipped and those left to other workers."""

    def named(models: list[str]) -> str:
        if not models:
            return ""
        shown = ", ".join(models[:5])
        return f" ({shown}{f' and {len(models) - 5} more' if len(models) > 5 else ''})"

    from dbluigi.runner import STOPPED

    by_status: dict[str, list[str]] = {}
    for r in result.results:
        name = r.model if r.partition is None else f"{r.model}[{r.partition}]"
        status = "not started" if r.error == STOPPED else r.status
        by_status.setdefault(status, []).append(name)
    built, failed = by_status.get("success", []), by_status.get("failed", [])
    if set(by_status) <= {"up to date"}:
        return f"nothing stale ({len(by_status.get('up to date', []))} up to date)"
    line = f"built {len(built)}{named(built)}, {len(failed)} failed{named(failed)}"
    if by_status.get("up to date"):
        line += f", {len(by_status['up to date'])} up to date"
    if by_status.get("skipped"):
        line += f", {len(by_status['skipped'])} skipped"
    if by_status.get("elsewhere"):
        line += f", {len(by_status['elsewhere'])} left to other workers"
    if by_status.get("not started"):
        line += f", {len(by_status['not started'])} not started (stopping)"
    return line


def _cycle_json(cycle: Cycle) -> dict[str, Any]:
    """One line of ``build --watch --json`` (``dbluigi/watch-cycle/v1``): the cycle, and
    its run as ``build --json`` prints it, or the error that kept it from running."""
    from dbluigi.documents import WATCH_CYCLE, document, iso_utc

    error = cycle.error
    return document(
        WATCH_CYCLE,
        {
            "cycle": cycle.trigger.number,
            "trigger": cycle.trigger.reason,
            "changed": list(cycle.trigger.changed),
            "started_at": iso_utc(cycle.started_at),
            "next_check_at": iso_utc(cycle.next_check_at),
            "exit_code": cycle.exit_code,
            "warnings": list(cycle.warnings),
            "error": None if error is None else _error_json(error),
            "run": _result_json(cycle.result) if cycle.result is not None else None,
        },
    )


def _scheduler(url: str | None) -> str | None:
    from dbluigi.api import scheduler_url

    return scheduler_url(url)


def _dispatch(run: Any) -> None:
    """luigi is imported only when something is to be built (it costs 0.15 s to import)."""
    from dbluigi.luigi_tasks import dispatch

    dispatch(run)


@contextmanager
def _progress(quiet: bool) -> Iterator[tuple[Callable[[Plan], None], Callable[[str, str], None]]]:
    """A live display: done / total, what is running, elapsed."""
    if quiet or (not console.is_terminal and not os.environ.get("DBLUIGI_PROGRESS")):
        yield (lambda plan: None), _log_event if not quiet else (lambda m, e: None)
        return
    from rich.progress import (  # a live display only on a terminal
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[running]}"),
        console=console,
        transient=True,
    )
    running: list[str] = []
    task_id = progress.add_task("building", total=0, running="")

    def on_plan(plan: Plan) -> None:
        progress.update(task_id, total=len(plan.to_run))

    def on_event(model: str, event: str) -> None:
        if event == "start":
            running.append(model)
        else:
            if model in running:
                running.remove(model)
            progress.advance(task_id)
        progress.update(task_id, running=_escape(", ".join(running[-3:])))

    with progress:
        yield on_plan, on_event


_LOG_LOCK = threading.Lock()


def _log_event(model: str, event: str) -> None:
    """One plain line per finished task, for logs (not a terminal: no colours to render;
    rich's markup rendering cost more per line than building a trivial model)."""
    if event != "start":
        with _LOG_LOCK:
            console.file.write(f"{event:>7} {model}\n")
            console.file.flush()


def _result_json(result: RunResult) -> dict[str, Any]:
    """The run document (``dbluigi/run/v1``): what the run's artifact holds."""
    assert result.document is not None, "a finished run has its document"
    return result.document


def _print_note(text: str) -> None:
    """A note of a run, printed when it is made (most before the run starts)."""
    console.print(f"[yellow]note:[/] {_escape(text)}", soft_wrap=True, highlight=False)


def _print_summary(result: RunResult, elapsed: float) -> None:
    """The table of the tasks that ran, their errors and the counts (the run's notes
    were printed as they were made)."""
    ran = [r for r in result.results if r.status != "up to date"]
    shown = _summary_rows(ran)
    if shown:
        from rich.table import Table

        table = Table(title=f"run {result.run_id}", title_justify="left")
        for column in ("model", "kind", "status", "why", "rows", "seconds"):
            table.add_column(column, justify="right" if column in ("rows", "seconds") else "left")
        if len(shown) < len(ran):
            table.caption = (
                f"{len(ran) - len(shown)} more tasks: "
                "the run artifact and `dbluigi history` list them all"
            )
        for r in shown:
            colour = {"success": "green", "failed": "red", "skipped": "yellow"}.get(
                r.status, "cyan"
            )
            status = r.status if not r.failure_class else f"{r.status} ({r.failure_class})"
            table.add_row(
                _escape(r.model if r.partition is None else f"{r.model} [{r.partition}]"),
                _escape(r.kind),
                f"[{colour}]{_escape(status)}[/]",
                _escape(r.reason),
                "" if r.rows is None else str(r.rows),
                f"{r.duration_s:.2f}",
            )
        if console.is_terminal:
            console.print(table)
        else:  # a log: the table as wide as its longest row, so no model name is cut
            from rich.console import Console

            Console(file=console.file, width=LOG_WIDTH, emoji=False).print(table)
    _print_task_errors(result)
    up_to_date = len(result.results) - len(ran)
    failed = len([r for r in ran if r.status == "failed"])
    skipped = len([r for r in ran if r.status == "skipped"])
    built = len([r for r in ran if r.status == "success"])
    elsewhere = len([r for r in ran if r.status == "elsewhere"])
    for slow in result.slow:
        console.print(
            f"[yellow]slow:[/] {_escape(slow.describe())}", soft_wrap=True, highlight=False
        )
    others = f", left to other workers {elsewhere}" if elsewhere else ""
    console.print(
        f"built {built}, failed {failed}, skipped {skipped}, up to date {up_to_date}{others} "
        f"in {elapsed:.1f}s"
    )
    _print_artifact(result)


def _print_task_errors(result: RunResult) -> None:
    """Each failed task's error (and a skipped one's reason), with file and line."""
    from dbluigi.runner import STOPPED

    for r in result.results:
        if r.status == "failed" or (r.status == "skipped" and r.error and r.error != STOPPED):
            where = f"{r.path}:{r.line}" if r.path and r.line else (r.path or r.model)
            text = r.error or ""
            if not text.startswith(where):
                text = f"{where}: {text}"
            err_console.print(
                f"[bold red]{r.failure_class} error[/] in {_escape(r.model)}:\n{_escape(text)}\n"
            )


SUMMARY_ROWS = 40
LOG_WIDTH = 100_000  # a table takes the width its cells need, never more


def _summary_rows(ran: list[TaskResult]) -> list[TaskResult]:
    """Every task when few ran; else the failures, the first skipped ones and the slowest
    successes, in run order (a table of thousands of rows helps nobody)."""
    if len(ran) <= SUMMARY_ROWS:
        return ran
    successes = [r for r in ran if r.status == "success"]
    slowest = sorted(successes, key=lambda r: r.duration_s, reverse=True)[: SUMMARY_ROWS // 2]
    skipped = [r for r in ran if r.status == "skipped"][: SUMMARY_ROWS // 4]
    others = [r for r in ran if r.status not in ("success", "skipped")]
    keep = {id(r) for r in (*slowest, *skipped, *others)}
    return [r for r in ran if id(r) in keep]


def _print_artifact(result: RunResult) -> None:
    if result.artifact is not None:
        console.print(f"run artifact: {_escape(result.artifact)}", soft_wrap=True, highlight=False)


@app.command(cls=_Command)
def build(
    selectors: SelectorArg = None,
    select_opt: SelectOpt = None,
    exclude: ExcludeOpt = None,
    project: ProjectOpt = Path("."),
    target: TargetOpt = None,
    var: VarOpt = None,
    workers: WorkersOpt = None,
    fail_fast: FailFastOpt = False,
    as_json: JsonOpt = False,
    scheduler_url: SchedulerOpt = None,
    full_refresh: FullRefreshOpt = False,
    watch: WatchOpt = False,
    interval: IntervalOpt = None,
) -> None:
    """Build what is stale in the selection (everything by default); --watch: and keep
    building what becomes stale."""
    _build(
        "build",
        [*(selectors or ()), *(select_opt or ())],
        exclude,
        project,
        target,
        var,
        workers,
        fail_fast,
        as_json,
        force=False,
        scheduler_url=scheduler_url,
        full_refresh=full_refresh,
        watch=watch,
        interval=interval,
    )


@app.command(cls=_Command)
def rebuild(
    selectors: SelectorArg = None,
    select_opt: SelectOpt = None,
    exclude: ExcludeOpt = None,
    project: ProjectOpt = Path("."),
    target: TargetOpt = None,
    var: VarOpt = None,
    workers: WorkersOpt = None,
    fail_fast: FailFastOpt = False,
    as_json: JsonOpt = False,
    scheduler_url: SchedulerOpt = None,
    full_refresh: FullRefreshOpt = False,
    partition: Annotated[
        list[str] | None,
        typer.Option(
            "--partition",
            help="Only this value of a partitioned model (repeatable).",
            show_default=False,
        ),
    ] = None,
    watch: WatchOpt = False,
    interval: IntervalOpt = None,
) -> None:
    """Rebuild the selection now, with new build ids (its downstream becomes stale);
    --watch: then keep building what becomes stale."""
    wanted = [*(selectors or ()), *(select_opt or ())]
    if not wanted:
        with _errors():
            raise UsageError(
                "rebuild needs a selector", hint="for example: dbluigi rebuild agencies+"
            )
    _build(
        "rebuild",
        wanted,
        exclude,
        project,
        target,
        var,
        workers,
        fail_fast,
        as_json,
        force=True,
        scheduler_url=scheduler_url,
        full_refresh=full_refresh,
        partitions=partition,
        watch=watch,
        interval=interval,
    )


@app.command(cls=_Command)
def history(
    last: Annotated[
        int,
        typer.Option("--last", "-n", min=1, help="How many runs (or task attempts with --model)."),
    ] = 10,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="One model's task attempts.")
    ] = None,
    slow: Annotated[
        bool,
        typer.Option(
            "--slow", help="The slowest models (--last of them) and those that got slower."
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    target: TargetOpt = None,
    var: VarOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recent runs and task attempts from the audit tables."""
    if slow:
        _slow_history(last, project, target, var, as_json)
        return
    from dbluigi.state import StateStore
    from dbluigi.targets import open_target

    with _errors():
        root, url, relation = _history_target(project, target, var, model)
        tgt = open_target(url, project_dir=root)
        session = tgt.connect()
        try:
            store = StateStore(session)
            store.ensure()
            runs = store.runs(last) if relation is None else []
            records = store.history(last=last if relation else 200, model=relation)
        finally:
            session.close()
    if relation is None:
        wanted = {r.run_id for r in runs}
        records = [r for r in records if r.run_id in wanted]
    if as_json:
        payload = document(
            HISTORY,
            {
                "runs": [
                    with_iso_times(
                        {"host" if k == "hostname" else k: v for k, v in r._asdict().items()}
                    )
                    for r in runs
                ],
                "tasks": [
                    with_iso_times(r.__dict__ | {"checks": [c.to_json() for c in r.checks]})
                    for r in records
                ],
            },
        )
        typer.echo(json.dumps(payload, indent=2, default=str))
        return
    from rich.table import Table

    if runs:
        table = Table(title="runs", title_justify="left")
        for column in ("run", "command", "selector", "started", "finished", "status"):
            table.add_column(column)
        for r in runs:
            table.add_row(
                _escape(r.run_id),
                _escape(r.command),
                _escape(r.selector or ""),
                str(r.started_at)[:19],
                str(r.finished_at or "")[:19],
                _escape(r.status),
            )
        console.print(table)
    table = Table(
        title="task attempts" + (f" of {_escape(relation)}" if relation else ""),
        title_justify="left",
    )
    columns = ("run", "model", "attempt", "status", "class", "why", "rows", "seconds", "cost")
    marks = any(t.watermark_from is not None or t.watermark_to is not None for t in records)
    for column in (*columns, *(("watermark",) if marks else ()), "error"):
        table.add_column(column)
    for t in records:
        watermark = (_escape(_watermarks(t)),) if marks else ()
        model = f"{t.model} [{t.partition}]" if t.partition else t.model
        table.add_row(
            _escape(t.run_id),
            _escape(model),
            str(t.attempt),
            _escape(t.status),
            _escape(t.failure_class or ""),
            _escape(t.reason or ""),
            "" if t.rows is None else str(t.rows),
            f"{t.duration_s:.2f}",
            "" if t.explain_cost is None else f"{t.explain_cost:.6g}",
            *watermark,
            _escape(t.error.splitlines()[0][:80]) if t.error else "",
        )
    console.print(table)


def _watermarks(t: TaskRecord) -> str:
    """An incremental run's watermarks: ``from -> to`` (``-> to`` on a full build)."""
    if t.watermark_from is None and t.watermark_to is None:
        return ""
    return f"{t.watermark_from or ''} -> {t.watermark_to or ''}".strip()


def _history_target(
    project: Path, target: str | None, var: list[str] | None, model: str | None
) -> tuple[Path, str | None, str | None]:
    """(project root, target URL, the --model relation) for ``history``, which reads the
    state only: without --model, ``dbluigi.toml`` alone; no variable needs a value."""
    from dbluigi.config import load_config, parse_var_options

    if model is None:
        config = load_config(project, target=target, variables=parse_var_options(var))
        return project, config.target_url, None
    proj, _ = _load_unset_vars(project, target, var)
    return proj.root, proj.config.target_url, _one_model(proj, model)


def _slow_history(
    last: int, project: Path, target: str | None, var: list[str] | None, as_json: bool
) -> None:
    """`history --slow`: median and last duration of each model's recent successful builds."""
    from dbluigi.audit import RECENT_BUILDS, SLOWER_FACTOR, model_speeds
    from dbluigi.state import StateStore
    from dbluigi.targets import open_target

    with _errors():
        root, url, _ = _history_target(project, target, var, None)
        tgt = open_target(url, project_dir=root)
        session = tgt.connect()
        try:
            StateStore(session).ensure()
            speeds = model_speeds(session)
        finally:
            session.close()
    slower = [s for s in speeds if s.got_slower]
    if as_json:
        payload = document(
            SLOW_MODELS,
            {
                "slowest": [s.to_json() for s in speeds[:last]],
                "got_slower": [s.to_json() for s in slower],
            },
        )
        typer.echo(json.dumps(payload, indent=2))
        return
    from rich.table import Table

    table = Table(
        title=f"slowest models (their last {RECENT_BUILDS} successful builds)", title_justify="left"
    )
    for column in ("model", "builds", "median s", "last s", "last vs before"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for s in speeds[:last]:
        change = s.change
        table.add_row(
            _escape(s.model),
            str(s.builds),
            f"{s.median_s:.2f}",
            f"{s.last_s:.2f}",
            "" if change is None else f"{change:.1f}x",
        )
    console.print(table)
    if not slower:
        console.print(f"no model got slower (last build over {SLOWER_FACTOR:g}x its median before)")
    for s in slower:
        console.print(
            f"[yellow]got slower:[/] {_escape(s.model)}: last build {s.last_s:.2f}s, "
            f"{s.change or 0:.1f}x its median of {s.earlier_median_s or 0:.2f}s before",
            soft_wrap=True,
            highlight=False,
        )


@app.command(cls=_Command)
def check(
    selectors: SelectorArg = None,
    select_opt: SelectOpt = None,
    exclude: ExcludeOpt = None,
    project: ProjectOpt = Path("."),
    target: TargetOpt = None,
    var: VarOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the checks against the published tables, without building."""
    from dbluigi.runner import check_published
    from dbluigi.targets import open_target

    with _errors():
        proj, unset = _load_unset_vars(project, target, var)
        wanted = [*(selectors or ()), *(select_opt or ())]
        selected = select(proj, wanted, exclude or (), state=_target_state(proj))
        _refuse_unset_checks(proj, selected, unset)
        tgt = open_target(proj.config.target_url, project_dir=proj.root)
        run = check_published(proj, tgt, selected)
    results = run.results
    failed = [r for r in results if r.status != "success"]
    if as_json:
        from dbluigi.artifact import json_text

        typer.echo(json_text(_result_json(run)), nl=False)
    else:
        for r in results:
            colour = "green" if r.status == "success" else "red"
            reason = f" ({r.reason})" if r.reason else ""
            console.print(
                f"[{colour}]{r.status:>8}[/] {_escape(r.model + reason)}",
                soft_wrap=True,
                highlight=False,
            )
            if r.error:
                err_console.print(_escape(r.error))
        console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
        _print_artifact(run)
    raise typer.Exit(1 if failed else 0)


@app.command(cls=_Command)
def debug(
    repair_state: Annotated[
        bool,
        typer.Option(
            "--repair-state",
            help="Recreate missing state tables and columns and forget unusable model rows "
            "(those models rebuild); published tables are never touched.",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    target: TargetOpt = None,
) -> None:
    """Show the configuration and versions, and check the target (and the dbluigi state
    schema in it) and each source database; passwords are masked."""
    from dbluigi.config import load_config
    from dbluigi.diagnostics import check_sources, versions
    from dbluigi.errors import REPAIR_HINT
    from dbluigi.state import SCHEMA_VERSION, StateStore
    from dbluigi.targets import open_target

    with _errors():
        config = load_config(project, target=target)
        config_file = project / "dbluigi.toml"
        console.print(
            f"project: {_escape(str(project.resolve()))}", soft_wrap=True, highlight=False
        )
        shown_file = str(config_file.resolve()) if config_file.exists() else "none"
        console.print(f"config file: {_escape(shown_file)}", soft_wrap=True, highlight=False)
        console.print(
            "versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
            soft_wrap=True,
            highlight=False,
        )
        tgt = open_target(config.target_url, project_dir=project)
        console.print(f"target: {_escape(tgt.display_url)}", soft_wrap=True, highlight=False)
        workers = config.workers if config.workers is not None else "target default"
        console.print(f"workers: {workers}", highlight=False)
        console.print(f"default schema: {_escape(config.schema)}", highlight=False)
        names = ", ".join(sorted(config.variables)) or "none"
        console.print(f"vars: {_escape(names)}", soft_wrap=True, highlight=False)
        session = tgt.connect()
        try:
            console.print("connection: ok")
            store = StateStore(session)
            problems = store.diagnose()
            repaired: list[str] = []
            if problems and repair_state:
                repaired = store.repair()
                problems = store.diagnose()
        finally:
            session.close()
    for action in repaired:
        console.print(f"[green]repaired:[/] {_escape(action)}", soft_wrap=True, highlight=False)
    if problems:
        for problem in problems:
            err_console.print(f"[bold red]state:[/] {_escape(problem)}", highlight=False)
        if not repair_state:
            err_console.print(f"  hint: {REPAIR_HINT.removeprefix('run ')}", highlight=False)
    else:
        console.print(f"state: ok (schema dbluigi, version {SCHEMA_VERSION})")
    unreachable = 0
    for source in check_sources(project):
        where = f"source {source.name} ({source.url or 'no url'})"
        if source.error is None:
            console.print(f"{_escape(where)}: ok", soft_wrap=True, highlight=False)
        else:
            unreachable += 1
            err_console.print(
                f"[bold red]{_escape(where)}:[/] {_escape(source.error)}", highlight=False
            )
    if problems or unreachable:
        raise typer.Exit(ERROR_EXIT)


@app.command(cls=_Command)
def retry(
    project: ProjectOpt = Path("."),
    target: TargetOpt = None,
    var: VarOpt = None,
    workers: WorkersOpt = None,
    fail_fast: FailFastOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build again what failed or was skipped in the last build (like `dbt retry`):
    exactly those models, as `dbluigi build` would, with the options that run was given
    (forced when it was a rebuild; its --full-refresh and --partition)."""
    from dataclasses import replace

    from dbluigi.retry import last_unbuilt
    from dbluigi.runner import run_target
    from dbluigi.state import StateStore
    from dbluigi.targets import open_target

    with _errors():
        proj = _load(project, target, var)
        tgt = open_target(proj.config.target_url, project_dir=proj.root)
        session = tgt.connect()
        try:
            store = StateStore(session)
            store.ensure()
            last = last_unbuilt(store, run_target(proj, tgt))
        finally:
            session.close()
    gone = [m for m in last.models if m not in proj.models] if last else []
    models = [m for m in last.models if m in proj.models] if last else []
    if last is None or not models:
        what = "no build has run" if last is None else f"nothing failed in run {last.run_id}"
        if as_json:
            from dbluigi.artifact import json_text, no_run

            typer.echo(json_text(no_run("retry", target_fields(proj, tgt))), nl=False)
        else:
            console.print(f"nothing to retry: {what}", soft_wrap=True, highlight=False)
        raise typer.Exit(0)
    if not any(proj.models[m].header.partition is not None for m in models):
        # --partition was for a partitioned model that built: its readers are retried
        # without it (a build refuses --partition when no selected model is partitioned)
        last = replace(last, partitions=())
    for model in gone:
        err_console.print(
            f"[yellow]warning:[/] {_escape(model)} failed in run {last.run_id} but is no longer "
            "a model of the project: not retried",
            highlight=False,
        )
    if not as_json:
        given = f" ({' '.join(last.options)})" if last.options else ""
        console.print(
            f"retrying {len(models)} models of {last.command} run {last.run_id}{given}: "
            f"{_escape(', '.join(models))}",
            soft_wrap=True,
            highlight=False,
        )
    _build(
        "retry",
        models,
        None,
        project,
        target,
        var,
        workers,
        fail_fast,
        as_json,
        force=last.force,
        full_refresh=last.full_refresh,
        partitions=list(last.partitions),
    )


ModelArg = Annotated[str, typer.Argument(help="The model: name or schema.name.")]
DialectOpt = Annotated[
    str | None,
    typer.Option(
        "--dialect", help="Transpile to this SQL dialect (sqlglot's names).", show_default=False
    ),
]
PartitionOpt = Annotated[
    str | None,
    typer.Option("--partition", help="A partitioned model's value to fill in.", show_default=False),
]


def _one_model(proj: Project, selector: str) -> str:
    """The one model ``selector`` names (a did-you-mean when none)."""
    from dbluigi.errors import SelectorError

    models = select(proj, [selector])
    if len(models) != 1:
        raise SelectorError(
            f"{selector!r} selects {len(models)} models; this command takes one",
            hint=f"name one of them: {', '.join(models[:5])}",
        )
    return models[0]


@app.command(cls=_Command)
def render(
    model: ModelArg,
    dialect: DialectOpt = None,
    partition: PartitionOpt = None,
    project: ProjectOpt = Path("."),
    target: TargetOpt = None,
    var: VarOpt = None,
) -> None:
    """Print the SQL a build runs for a model, variables (and a --partition) filled in."""
    from dbluigi.preview import model_sql, transpile

    with _errors():
        proj = _load(project, target, var)
        sql = model_sql(proj, _one_model(proj, model), partition=partition)
        if dialect is not None:
            sql = transpile(sql, proj.dialect, dialect)
    typer.echo(sql)


# dbt users type `dbt compile`: the same command under that name
app.command("compile", help="The same as `dbluigi render` (for dbt users: `dbt compile`).")(render)


SHOW_LIMIT = 5  # rows, as dbt show


@app.command(cls=_Command)
def show(
    model: Annotated[str | None, typer.Argument(help="The model: name or schema.name.")] = None,
    sql: Annotated[
        str | None, typer.Option("--sql", help="Run this SELECT instead.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Rows to show.")] = SHOW_LIMIT,
    published: Annotated[
        bool,
        typer.Option("--published", help="Show the published table, not the model's query."),
    ] = False,
    partition: PartitionOpt = None,
    project: ProjectOpt = Path("."),
    target: TargetOpt = None,
    var: VarOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Preview rows: of a model's query run as a SELECT (as `dbt show`; nothing is
    published), of its published table (--published; seeds, sql and python models), or
    of --sql "select ...", against the target."""
    from dbluigi.preview import model_sql, preview, published_query, query_model
    from dbluigi.targets import open_target

    with _errors():
        if (model is None) == (sql is None):
            raise UsageError(
                "show takes a model or --sql, one of them",
                hint='for example: dbluigi show agency_reporting, or --sql "select 1"',
            )
        if sql is not None and (published or partition):
            raise UsageError("--published and --partition go with a model, not --sql")
        proj = _load(project, target, var)
        relation = _one_model(proj, model) if model is not None else None
        session = open_target(proj.config.target_url, project_dir=proj.root).connect()
        try:
            path = line = None
            if relation is None:
                assert sql is not None
                query, what = sql, "--sql"
            elif published or not query_model(proj.models[relation]):
                m = proj.models[relation]
                query, what = published_query(session, m, proj.dialect), relation
            else:
                m = proj.models[relation]
                query, what = model_sql(proj, relation, partition=partition), relation
                # where the query starts: its statement begins with the header's comments
                path, line = m.path, max(m.header.body_line, *(s.line for s in m.statements[:1]))
            result = preview(
                session, query, dialect=proj.dialect, limit=limit, what=what, path=path, line=line
            )
        finally:
            session.close()
    if as_json:
        keys = _distinct_names(result.columns)
        rows = [dict(zip(keys, row, strict=True)) for row in result.rows]
        payload = document(SHOW, {"columns": keys, "rows": rows})
        typer.echo(json.dumps(payload, default=str))
        return
    from rich.table import Table

    table = Table(title=_escape(relation or "--sql"), title_justify="left")
    for column in result.columns:
        table.add_column(_escape(column))
    for row in result.rows:
        table.add_row(*("" if v is None else _escape(str(v)) for v in row))
    console.print(table)
    console.print(f"{len(result.rows)} rows (at most {limit})", highlight=False)


def _distinct_names(columns: tuple[str, ...] | list[str]) -> list[str]:
    """Column names as keys of one object: a name given again becomes ``name_1``,
    ``name_2``... (the first that no column has), as DuckDB names them."""
    taken = set(columns)
    keys: list[str] = []
    for name in columns:
        key, n = name, 0
        while key in keys or (key != name and key in taken):
            n += 1
            key = f"{name}_{n}"
        taken.add(key)
        keys.append(key)
    return keys


LS_OUTPUTS = ("name", "path", "json")
OutputOpt = Annotated[str, typer.Option("--output", "-o", help=f"One of {', '.join(LS_OUTPUTS)}.")]


@app.command("ls", cls=_Command)
def ls(
    selectors: SelectorArg = None,
    exclude: ExcludeOpt = None,
    output: OutputOpt = "name",
    project: ProjectOpt = Path("."),
    target: TargetOpt = None,
    var: VarOpt = None,
) -> None:
    """List the selected models in run order (relation, file, or one JSON line each)."""
    with _errors():
        if output not in LS_OUTPUTS:
            raise UsageError(
                f"--output {output!r} is not one of {', '.join(LS_OUTPUTS)}",
                hint="for example --output path",
            )
        proj, _ = _load_unset_vars(project, target, var)
        models = select(proj, selectors or (), exclude or ())
    for relation in models:
        m = proj.models[relation]
        if output == "name":
            typer.echo(relation)
        elif output == "path":
            typer.echo(m.path)
        else:
            row = document(
                LS,
                {
                    "relation": relation,
                    "kind": m.kind,
                    "file": m.path,
                    "tags": list(m.tags),
                    "depends": sorted(proj.graph.parents(relation)),
                },
            )
            typer.echo(json.dumps(row))


app.command("list", cls=_Command, help="The same as `dbluigi ls`.")(ls)


@app.command("test", cls=_Command)
def test_(
    selectors: SelectorArg = None,
    exclude: ExcludeOpt = None,
    on_target: Annotated[
        bool,
        typer.Option(
            "--on-target",
            help="Run the tests in a scratch schema of the target (dropped afterwards), "
            "not in an in-memory DuckDB: for SQL that does not transpile to DuckDB.",
        ),
    ] = False,
    generate: Annotated[
        str | None,
        typer.Option(
            "--generate",
            help="Write a starting test of this model from the target's current data "
            "(a sample of its inputs that keeps joins matching, its output as expected).",
            show_default=False,
        ),
    ] = None,
    rows: Annotated[
        int, typer.Option("--rows", min=1, help="With --generate: rows sampled per input.")
    ] = 5,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="With --generate: the file to write (default: <model>.test.yml next to it).",
            show_default=False,
        ),
    ] = None,
    project: ProjectOpt = Path("."),
    target: TargetOpt = None,
    var: VarOpt = None,
) -> None:
    """Unit tests: run models on the fixture rows of their *.test.yml files and compare
    the rows they produce (in an in-memory DuckDB unless --on-target)."""
    from dbluigi.config import STATE_DIR, parse_var_options
    from dbluigi.targets import open_target
    from dbluigi.testfiles import find_test_files, read_test_file
    from dbluigi.unittests import resolve, run_tests

    with _errors():
        proj = _load(project, target, var)
        if generate is not None:
            written = _generate_test(proj, generate, rows, out)
            console.print(f"wrote {_escape(written)}", highlight=False)
            raise typer.Exit(0)
        files = find_test_files(proj.root, ignore=(STATE_DIR, *proj.config.outputs))
        tests = [t for f in files for t in read_test_file(proj.root, f)]
        resolved = resolve(proj, tests)
        if selectors or exclude:
            chosen = set(select(proj, selectors or (), exclude or ()))
            resolved = [(t, rel) for t, rel in resolved if rel in chosen]
        if not resolved:
            console.print("no unit tests found (files named *.test.yml)", highlight=False)
            raise typer.Exit(0)
        published, unread = _published_types(proj, resolved)
        tgt = open_target(proj.config.target_url, project_dir=proj.root) if on_target else None
        results = run_tests(
            proj, resolved, target=tgt, variables=parse_var_options(var), published=published
        )
    if unread:
        err_console.print(f"[dim]note: {_escape(unread)}[/]", highlight=False)
    _print_test_results(results)
    raise typer.Exit(0 if all(r.passed for r in results) else 1)


def _published_types(
    proj: Project, resolved: list[Any]
) -> tuple[dict[str, dict[str, str]], str | None]:
    """The column types of the tests' inputs as the target publishes them, when it can be
    read (a DuckDB file is never created for it); else nothing, and why, in words."""
    from dbluigi.targets import open_target
    from dbluigi.unittests import published_types

    tgt = open_target(proj.config.target_url, project_dir=proj.root)
    if not tgt.exists():
        return {}, None  # never built: nothing published to type the inputs by
    try:
        return published_types(proj, resolved, tgt), None
    except Exception as exc:  # any driver's error: the tests run all the same
        reason = exc.message if isinstance(exc, DbluigiError) else str(exc).strip()
        return {}, (
            "inputs typed by the test files and their values: the target cannot be read "
            f"({reason.splitlines()[0] if reason else type(exc).__name__})"
        )


def _generate_test(proj: Project, selector: str, rows: int, out: Path | None) -> Path:
    from dbluigi.targets import open_target
    from dbluigi.testgen import generate

    relation = _one_model(proj, selector)
    model = proj.models[relation]
    path = out or (proj.root / model.path).with_name(f"{model.name}.test.yml")
    if path.exists():
        raise UsageError(
            f"--generate: {path} exists; dbluigi does not overwrite a test file",
            hint="pass --out FILE (a name ending in .test.yml) or move the file aside",
        )
    try:
        relative = path.resolve().relative_to(proj.root.resolve()).as_posix()
    except ValueError:
        relative = str(path)
    tgt = open_target(proj.config.target_url, project_dir=proj.root)
    text = generate(proj, tgt, relation, rows=rows, path=relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _print_test_results(results: list[Any]) -> None:
    from rich.table import Table

    table = Table(title="unit tests", title_justify="left")
    for column in ("result", "test", "model", "file"):
        table.add_column(column, overflow="fold")
    colours = {"passed": "green", "failed": "red", "error": "red"}
    for r in results:
        table.add_row(
            f"[{colours[r.status]}]{r.status}[/]",
            _escape(r.test.name),
            _escape(r.model),
            _escape(r.test.where),
        )
    console.print(table)
    for r in results:
        if r.passed:
            continue
        console.print(
            f"[red]{r.status}[/] {_escape(r.test.name)}: {_escape(r.message)}", highlight=False
        )
        if r.hint:
            console.print(f"  hint: {_escape(r.hint)}", highlight=False)
        if r.missing or r.unexpected:
            diff = Table(show_lines=False)
            diff.add_column("missing (expected, not produced)")
            diff.add_column("unexpected (produced, not expected)")
            left = [_row_text(r.columns, row) for row in r.missing]
            right = [_row_text(r.columns, row) for row in r.unexpected]
            for i in range(max(len(left), len(right))):
                diff.add_row(
                    _escape(left[i]) if i < len(left) else "",
                    _escape(right[i]) if i < len(right) else "",
                )
            console.print(diff)
    passed = sum(r.passed for r in results)
    console.print(f"{passed} passed, {len(results) - passed} failed", highlight=False)


def _row_text(columns: tuple[str, ...], row: tuple[Any, ...]) -> str:
    return ", ".join(f"{c}={'NULL' if v is None else v}" for c, v in zip(columns, row, strict=True))


@app.command(cls=_Command)
def clean(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    project: ProjectOpt = Path("."),
    target: TargetOpt = None,
    var: VarOpt = None,
) -> None:
    """Remove the caches under .dbluigi/ (cache/, docs/) and the tables builds left aside
    (__dbluigi_new, __dbluigi_failed); never a published table, the state or the DuckDB file."""
    from dbluigi import clean as cleaning
    from dbluigi.errors import TargetError
    from dbluigi.targets import open_target

    with _errors():
        # loaded without the parse cache: the load would write the cache clean removes
        proj, _ = _load_unset_vars(project, target, var, use_cache=False)
        session = open_target(proj.config.target_url, project_dir=proj.root).connect()
        try:
            found = cleaning.find(session, proj)
            if found.running and found.tables:
                raise TargetError(
                    f"a build is running on the target (run {', '.join(found.running)}): "
                    "its aside tables may be in use",
                    hint="run dbluigi clean again when it has finished",
                )
            if found.empty:
                console.print("nothing to clean", highlight=False)
                return
            console.print("to remove:", highlight=False)
            for line in cleaning.describe(found):
                console.print(f"  {_escape(line)}", soft_wrap=True, highlight=False)
            if not yes and not typer.confirm("remove these?", default=False):
                console.print("nothing removed", highlight=False)
                return
            cleaning.remove(session, found)
        finally:
            session.close()
    console.print(f"removed {len(found.folders) + len(found.tables)}", highlight=False)


server_app = typer.Typer(
    help="Keep dbluigi loaded in a process of its own, so that commands start in "
    "milliseconds: while it runs, each dbluigi command of this user and installation runs "
    "in a copy of it (same folder, environment, input and output, exit code, signals). "
    "It follows upgrades and edits of dbluigi by starting again, and stops after "
    "--idle-minutes without a command. $DBLUIGI_NO_SERVER=1 runs a command without it.",
    no_args_is_help=True,
)
app.add_typer(server_app, name="server")


@server_app.command("start")
def server_start(
    idle_minutes: Annotated[
        float,
        typer.Option(
            "--idle-minutes", help="Stop after this long without a command; 0: never.", min=0
        ),
    ] = 180,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Serve in this process, logging to stderr.")
    ] = False,
) -> None:
    """Start the server (in the background unless --foreground)."""
    from dbluigi import server

    with _errors():
        if foreground:
            server.serve(run_here, idle_minutes)
            return
        started = server.start(idle_minutes)
    console.print(
        f"dbluigi server running (pid {started['pid']}), socket {_escape(started['socket'])}",
        highlight=False,
    )


@server_app.command("stop")
def server_stop() -> None:
    """Stop the server: it takes no more commands, and exits once those it runs end."""
    from dbluigi import server

    with _errors():
        stopped = server.stop()
    if stopped is None:
        console.print("no dbluigi server was running", highlight=False)
    elif stopped.get("finishing"):
        console.print(
            f"dbluigi server (pid {stopped['pid']}) takes no more commands; it exits when "
            "the ones it runs end",
            highlight=False,
        )
    else:
        console.print(f"dbluigi server stopped (pid {stopped['pid']})", highlight=False)


@server_app.command("status")
def server_status() -> None:
    """Whether a server runs for this installation (exit 0) or not (exit 1)."""
    from dbluigi import server

    found = server.status()
    if found is None:
        console.print("no dbluigi server is running", highlight=False)
        raise typer.Exit(1)
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(found["started"]))
    idle = found.get("idle_seconds")
    console.print(
        f"dbluigi server {found['dbluigi']} running (pid {found['pid']}) since {since}; "
        f"{found['served']} connections, {found['running']} running now; "
        + (f"stops after {idle / 60:g} idle minutes" if idle else "never stops when idle")
        + (" (stale: starting again now)" if found.get("stale") else "")
        + f"\nsocket {_escape(found['socket'])}\nlog {_escape(server.log_path())}",
        highlight=False,
        soft_wrap=True,
    )


if __name__ == "__main__":  # pragma: no cover
    main()
