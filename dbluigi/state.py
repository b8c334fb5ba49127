"""The audit trail and build state, kept in schema ``dbluigi`` of the target.

- ``runs``: one row per invocation.
- ``task_runs``: one row per task attempt (status, failure class, error, timing, rows, ...).
- ``models``: the last successful build of each model (fingerprint, build id, rows).
- ``inputs``: the version of each input table (read, not built, by the project) as the
  last run that looked at it saw it (``dbluigi.versions``).
- ``meta``: the schema version, so later versions migrate the tables in place.
- ``journal``: builds published on a target with one writer process, not yet folded
  into ``models`` and ``task_runs`` (see ``StateStore.record_success``).

The models table is read once per run; a model's row is written in the same
transaction that publishes its table, so state and data never disagree.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from dbluigi import __version__
from dbluigi.errors import FailureClass, StateError, TargetError
from dbluigi.names import STATE_SCHEMA
from dbluigi.targets.base import Session

SCHEMA = STATE_SCHEMA
# A models row whose partition_key starts so keeps a build of the tables a sql model
# creates (``Model.state_variant``), so a switch back to them finds their build.
VARIANT = "@"
_NOT_VARIANT = f"substr(partition_key, 1, 1) <> '{VARIANT}'"
SCHEMA_VERSION = 5

# Each entry migrates from the previous version; never edit a released one, append.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "create table if not exists dbluigi.meta (key varchar primary key, value varchar)",
        """create table if not exists dbluigi.runs (
            run_id varchar primary key, command varchar, selector varchar, target varchar,
            started_at timestamp, finished_at timestamp, status varchar,
            version varchar, hostname varchar, pid integer, workers integer)""",
        """create table if not exists dbluigi.task_runs (
            run_id varchar, model varchar, partition_key varchar, attempt integer,
            status varchar, failure_class varchar, error varchar, path varchar, line integer,
            reason varchar, started_at timestamp, duration_s double precision, rows_affected bigint,
            fingerprint varchar, build_id varchar, explain_cost double precision, checks varchar)""",
        """create table if not exists dbluigi.models (
            model varchar, partition_key varchar, kind varchar, fingerprint varchar,
            content_fp varchar, build_id varchar, generation integer, rows_affected bigint,
            built_at timestamp, run_id varchar, primary key (model, partition_key))""",
    ),
    (  # 2: what changes outside the project (watermarks, inputs, outputs changed by hand)
        "alter table dbluigi.task_runs add column if not exists watermark_from varchar",
        "alter table dbluigi.task_runs add column if not exists watermark_to varchar",
        "alter table dbluigi.models add column if not exists output_version varchar",
        "alter table dbluigi.models add column if not exists inputs varchar",
        "alter table dbluigi.models add column if not exists watermark varchar",
        """create table if not exists dbluigi.inputs (
            relation varchar primary key, version varchar, read_at timestamp)""",
    ),
    (  # 3: which worker ran each attempt (the docs site's run timeline groups by it)
        "alter table dbluigi.task_runs add column if not exists worker varchar",
    ),
    (  # 4: builds published on a one-writer target, folded later (StateStore.record_success)
        "create table if not exists dbluigi.journal (entry_id varchar, entry varchar)",
    ),
    (  # 5: the options a run was given that a retry gives again (RUN_OPTIONS)
        "alter table dbluigi.runs add column if not exists options varchar",
    ),
)
# A run's options ``retry`` takes again, kept in ``runs.options`` (JSON) when given
RUN_OPTIONS = ("force", "full_refresh", "partitions")

# The shape of the state tables at SCHEMA_VERSION, column by column: what ``ensure``
# validates once per run and ``repair`` restores (a migration that changes it changes this).
STATE_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "meta": (("key", "varchar"), ("value", "varchar")),
    "runs": (
        ("run_id", "varchar"),
        ("command", "varchar"),
        ("selector", "varchar"),
        ("target", "varchar"),
        ("started_at", "timestamp"),
        ("finished_at", "timestamp"),
        ("status", "varchar"),
        ("version", "varchar"),
        ("hostname", "varchar"),
        ("pid", "integer"),
        ("workers", "integer"),
        ("options", "varchar"),
    ),
    "task_runs": (
        ("run_id", "varchar"),
        ("model", "varchar"),
        ("partition_key", "varchar"),
        ("attempt", "integer"),
        ("status", "varchar"),
        ("failure_class", "varchar"),
        ("error", "varchar"),
        ("path", "varchar"),
        ("line", "integer"),
        ("reason", "varchar"),
        ("started_at", "timestamp"),
        ("duration_s", "double precision"),
        ("rows_affected", "bigint"),
        ("fingerprint", "varchar"),
        ("build_id", "varchar"),
        ("explain_cost", "double precision"),
        ("checks", "varchar"),
        ("watermark_from", "varchar"),
        ("watermark_to", "varchar"),
        ("worker", "varchar"),
    ),
    "models": (
        ("model", "varchar"),
        ("partition_key", "varchar"),
        ("kind", "varchar"),
        ("fingerprint", "varchar"),
        ("content_fp", "varchar"),
        ("build_id", "varchar"),
        ("generation", "integer"),
        ("rows_affected", "bigint"),
        ("built_at", "timestamp"),
        ("run_id", "varchar"),
        ("output_version", "varchar"),
        ("inputs", "varchar"),
        ("watermark", "varchar"),
    ),
    "inputs": (("relation", "varchar"), ("version", "varchar"), ("read_at", "timestamp")),
    "journal": (("entry_id", "varchar"), ("entry", "varchar")),
}
# the state's columns, in one catalog query (information_schema reads alike on both targets)
_STATE_TABLES = ("meta", "runs", "task_runs", "models", "inputs", "journal")
# a models row a plan cannot use: the build it stands for is unknown
_UNUSABLE_MODELS = "fingerprint is null or build_id is null or generation is null"


@dataclass(frozen=True)
class ModelState:
    """The last successful build of a model, as stored in ``dbluigi.models``."""

    model: str
    fingerprint: str
    content_fp: str
    build_id: str
    generation: int
    rows: int | None = None
    built_at: object = None
    output_version: str | None = None  # the published relation's version after the build
    inputs: Mapping[str, str] = field(default_factory=dict)  # input table -> version read
    watermark: str | None = None  # the highest watermark an incremental build reached


TaskStatus = Literal["success", "failed", "skipped"]
"""How one task attempt ended, as ``task_runs`` stores it (skipped: class ``upstream``)."""
ResultStatus = Literal[TaskStatus, "up to date", "elsewhere"]
"""A selected model's outcome in a run: also up to date, or left to another worker."""
CheckStatus = Literal["passed", "failed", "not run"]
"""A check's outcome; "not run" when it reads a model that is not available."""


@dataclass(frozen=True)
class CheckResult:
    name: str  # the header expression or the check file (with statement line)
    passed: bool
    detail: str = ""
    status: CheckStatus | Literal[""] = ""  # "not run": it reads a model that is not available
    owner: str = ""  # the model whose check it is, when it runs at another model's swap
    digest: str = ""  # of the check's SQL as it ran (``check_digest``): which check it was

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", "passed" if self.passed else "failed")

    def to_json(self) -> dict[str, Any]:
        data = {"name": self.name, "passed": self.passed, "detail": self.detail}
        data["status"] = self.status
        if self.owner:
            data["owner"] = self.owner
        return data

    def to_state(self) -> dict[str, Any]:
        """As ``task_runs.checks`` keeps it: ``to_json`` and the digest of the check."""
        data = self.to_json()
        if self.digest:
            data["digest"] = self.digest
        return data


def check_digest(sql: str) -> str:
    """A short digest of a check's text, recorded with its result: a result names the
    check it came from even after the file's queries moved or changed."""
    return hashlib.sha1(sql.strip().encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class TaskRecord:
    """One task attempt, as stored in ``task_runs``."""

    run_id: str
    model: str
    status: TaskStatus
    started_at: datetime
    duration_s: float = 0.0
    attempt: int = 1
    partition: str = ""
    failure_class: FailureClass | None = None
    error: str | None = None
    path: str | None = None
    line: int | None = None
    reason: str | None = None
    rows: int | None = None
    fingerprint: str | None = None
    build_id: str | None = None
    explain_cost: float | None = None
    checks: tuple[CheckResult, ...] = field(default=())
    watermark_from: str | None = None  # incremental: the watermark the run started from
    watermark_to: str | None = None  # and the one it reached
    worker: str = field(default_factory=lambda: this_worker())  # host, process and thread


@dataclass(frozen=True)
class TaskResult:
    """A selected model's outcome in one run: its status and, when it ran, its last
    attempt (``last``, from which the attempt's facts are read) and how many there were."""

    model: str
    kind: str
    status: ResultStatus
    reason: str
    last: TaskRecord | None = None
    attempts: int = 0

    @property
    def partition(self) -> str | None:
        """The value, for one value of a partitioned model."""
        return (self.last.partition or None) if self.last else None

    @property
    def failure_class(self) -> str | None:
        return self.last.failure_class if self.last else None

    @property
    def error(self) -> str | None:
        return self.last.error if self.last else None

    @property
    def path(self) -> str | None:
        return self.last.path if self.last else None

    @property
    def line(self) -> int | None:
        return self.last.line if self.last else None

    @property
    def duration_s(self) -> float:
        return self.last.duration_s if self.last else 0.0

    @property
    def rows(self) -> int | None:
        return self.last.rows if self.last else None


class RunSummary(NamedTuple):
    """One invocation as ``dbluigi history`` lists it (a row of ``runs``)."""

    run_id: str
    command: str
    selector: str | None
    started_at: datetime
    finished_at: datetime | None
    status: str
    version: str | None
    hostname: str | None
    options: Mapping[str, Any] | None = None  # those of RUN_OPTIONS it was given (retry)

    @property
    def force(self) -> bool:
        """Whether the run forced its models: a ``rebuild``, or a retry of one (a run kept
        before its options were, by state version 4, forced when it was a rebuild)."""
        if self.options is None:
            return self.command == "rebuild"
        return bool(self.options.get("force"))

    @property
    def full_refresh(self) -> bool:
        return bool((self.options or {}).get("full_refresh"))

    @property
    def partitions(self) -> tuple[str, ...]:
        return tuple((self.options or {}).get("partitions") or ())


class RunRecord(NamedTuple):
    """One invocation, every column of its ``runs`` row."""

    run_id: str
    command: str
    selector: str | None
    target: str | None
    started_at: datetime
    finished_at: datetime | None
    status: str
    version: str | None
    hostname: str | None
    pid: int | None
    workers: int | None


def this_worker() -> str:
    """Who runs the task being recorded: host, process and luigi worker thread."""
    return f"{_HOST}:{os.getpid()}/{threading.current_thread().name}"


_HOST = socket.gethostname()


def new_run_id() -> str:
    """Sortable and unique across machines: UTC time plus randomness."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _refuse_newer(version: int) -> None:
    """A state written by a later dbluigi is not this one's to read or change."""
    if version > SCHEMA_VERSION:
        raise TargetError(
            f"the dbluigi state in this target is version {version}, newer than this "
            f"dbluigi knows ({SCHEMA_VERSION})",
            hint="upgrade dbluigi",
        )


# The journal (``StateStore.record_success``): for each target with one writer process
# (by ``Target.identity``), the entries this process committed and has not folded yet; a
# target not listed may hold entries a process that died left, so its first read looks.
_JOURNALED: dict[str, set[str]] = {}
_JOURNAL_LOCK = threading.Lock()
# entry ids order the journal: this process's start, then a count (never the wall clock
# at the write, which may step back between a build and its retry)
_ENTRY_PREFIX = f"{time.time_ns():020d}.{os.getpid():010d}"
_ENTRY_COUNT = itertools.count()


class StateStore:
    """Reads and writes the ``dbluigi`` schema through a target session.

    Every read of ``models`` and ``task_runs`` outside a transaction first folds what the
    journal holds (``settle_journal``), so readers never see the journal."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._record_columns = _RECORD_COLUMNS
        self._read_only = False

    def read_as_it_is(self) -> None:
        """Read the state without creating or migrating it (``docs`` reads a state other
        dbluigi versions share, and must not lock them out by upgrading it): a column
        added by a later version than the state's reads as NULL. A state newer than this
        dbluigi knows raises ``TargetError``; none at all, ``StateError``. What a build
        that died left in the journal is folded (the one write, and only into a state of
        this dbluigi's version, whose tables it knows)."""
        self._read_only = True
        present = self._columns()
        if "task_runs" not in present or "meta" not in present:
            raise StateError("there is no dbluigi state in this target")
        version = self._meta_version()
        _refuse_newer(version)
        self._read_only = version != SCHEMA_VERSION
        have = present["task_runs"]
        self._record_columns = ", ".join(
            c if c in have else f"null as {c}" for c in _RECORD_COLUMNS.split(", ")
        )

    def ensure(self) -> None:
        """Create or migrate the state tables to SCHEMA_VERSION, and check their shape.

        Several builds may start at once on a new target: the migration runs in one
        transaction under a lock, and re-reads the version once it holds it. A state
        schema damaged by hand (a table or column dropped) raises ``StateError``."""
        present = self._columns()
        if "meta" in present and self._meta_version() == SCHEMA_VERSION:
            problems = _shape_problems(present)
            if problems:
                raise StateError(
                    f"the dbluigi state in {self.session.target.display_url} is damaged: "
                    + "; ".join(problems)
                )
            self.settle_journal()
            return
        s = self.session
        with s.transaction():
            s.lock_in_transaction("dbluigi.migrate")
            s.ensure_schema(SCHEMA)
            current = self._version()
            _refuse_newer(current)
            for version in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[version]:
                    s.execute(statement)
            s.execute("delete from dbluigi.meta where key = %s", ["schema_version"])
            s.execute(
                "insert into dbluigi.meta values (%s, %s)", ["schema_version", str(SCHEMA_VERSION)]
            )
        self.settle_journal()

    def _version(self) -> int:
        if self.session.relation_kind(SCHEMA, "meta") is None:
            return 0
        return self._meta_version()

    def _meta_version(self) -> int:
        rows = self.session.query(
            "select value from dbluigi.meta where key = %s", ["schema_version"]
        ).rows
        try:
            return int(rows[0][0]) if rows else 0
        except (TypeError, ValueError):
            raise StateError(
                f"dbluigi.meta holds no readable schema_version ({rows[0][0]!r})"
            ) from None

    def _columns(self) -> dict[str, set[str]]:
        """The columns of each state table present, in one catalog query (PostgreSQL's
        own catalog: information_schema takes 4 ms more in a new session)."""
        found: dict[str, set[str]] = {}
        for relation, columns in self.session.column_types([SCHEMA]).items():
            table = relation.partition(".")[2]
            if table in _STATE_TABLES:
                found[table] = {str(column).lower() for column, _ in columns}
        return found

    def diagnose(self) -> list[str]:
        """What is wrong with the state schema, in words; empty when all is well (or when
        there is no state yet). Raises nothing for damage: ``dbluigi debug`` reports it."""
        present = self._columns()
        if not present:
            return []
        problems = _shape_problems(present)
        if "meta" in present:
            try:
                version = self._version()
            except StateError as exc:
                problems.append(exc.message)
            else:
                if version != SCHEMA_VERSION:
                    problems.append(
                        f"dbluigi.meta says schema version {version}, this dbluigi "
                        f"writes {SCHEMA_VERSION}"
                    )
        if "generation" in present.get("models", set()) and not any(
            "dbluigi.models" in p for p in problems
        ):
            count = self.session.query(
                f"select count(*) from dbluigi.models where {_UNUSABLE_MODELS}"
            ).rows[0][0]
            if count:
                problems.append(
                    f"{count} rows of dbluigi.models are unusable (fingerprint, build_id or "
                    "generation is NULL)"
                )
        return problems

    def repair(self) -> list[str]:
        """Recreate missing state tables and columns, and delete unusable ``models`` rows
        (those models rebuild). Touches nothing outside schema ``dbluigi``, drops nothing
        that holds data; returns what it did, in words."""
        done: list[str] = []
        s = self.session
        with s.transaction():
            s.lock_in_transaction("dbluigi.migrate")
            s.ensure_schema(SCHEMA)
            present = self._columns()
            for migration in MIGRATIONS:  # every statement is idempotent (IF NOT EXISTS)
                for statement in migration:
                    s.execute(statement)
            migrated = self._columns()  # a migration adds columns of an older state
            for table, columns in STATE_TABLES.items():
                if table not in present:
                    done.append(f"created dbluigi.{table}")
                    continue
                for column, type_name in columns:
                    if column not in present[table]:
                        if column not in migrated[table]:
                            s.execute(
                                f"alter table {SCHEMA}.{table} add column {column} {type_name}"
                            )
                        done.append(f"added column dbluigi.{table}.{column}")
            if "meta" not in present or self._stored_version() != str(SCHEMA_VERSION):
                s.execute("delete from dbluigi.meta where key = %s", ["schema_version"])
                s.execute(
                    "insert into dbluigi.meta values (%s, %s)",
                    ["schema_version", str(SCHEMA_VERSION)],
                )
                done.append(f"set the state schema version to {SCHEMA_VERSION}")
            count = s.query(f"select count(*) from dbluigi.models where {_UNUSABLE_MODELS}")
            deleted = int(count.rows[0][0])
            if deleted:
                s.execute(f"delete from dbluigi.models where {_UNUSABLE_MODELS}")
                done.append(
                    f"deleted {deleted} unusable rows of dbluigi.models (those models rebuild)"
                )
        return done

    def _stored_version(self) -> str | None:
        rows = self.session.query(
            "select value from dbluigi.meta where key = %s", ["schema_version"]
        ).rows
        return str(rows[0][0]) if rows else None

    def model_state(self, model: str, partition: str = "") -> tuple[str, int] | None:
        """(build_id, generation) of the model's published build, read inside its lock."""
        self.settle_journal()
        rows = self.session.query(
            "select build_id, generation from dbluigi.models where model = %s and partition_key = %s",
            [model, partition],
        ).rows
        return (rows[0][0], int(rows[0][1])) if rows else None

    def running_runs(self) -> list[str]:
        rows = self.session.query(
            "select run_id from dbluigi.runs where status = %s", ["running"]
        ).rows
        return [r[0] for r in rows]

    def mark_interrupted(self, run_id: str) -> None:
        self.session.execute(
            "update dbluigi.runs set status = %s where run_id = %s and status = %s",
            ["interrupted", run_id, "running"],
        )

    def read_models(self, variants: Mapping[str, str] | None = None) -> dict[str, ModelState]:
        """The whole models table, once per run. A model named in ``variants`` gets the
        build of that variant (``record_variant``) when the state keeps one."""
        self.settle_journal()
        rows = self.session.query(
            "select model, fingerprint, content_fp, build_id, generation, rows_affected, built_at, "
            "output_version, inputs, watermark, partition_key from dbluigi.models "
            f"where partition_key = '' or not ({_NOT_VARIANT})"
        ).rows
        _refuse_unusable(rows, fingerprint=1, build_id=3, generation=4)
        wanted = variants or {}
        found: dict[str, ModelState] = {}
        for r in sorted(rows, key=lambda r: r[10] != ""):  # a variant's row wins
            if r[10] == "" or wanted.get(r[0]) == r[10]:
                found[r[0]] = ModelState(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    int(r[4]),
                    r[5],
                    r[6],
                    r[7],
                    json.loads(r[8] or "{}"),
                    r[9],
                )
        return found

    def record_variant(self, model: str, variant: str) -> None:
        """Keep the build just recorded for ``model`` as that of ``variant`` too; call
        after ``record_success``, in the same transaction."""
        columns = [c for c, _ in STATE_TABLES["models"] if c != "partition_key"]
        listed = ", ".join(columns)
        self.session.defer(
            [
                (
                    "delete from dbluigi.models where model = %s and partition_key = %s",
                    [model, variant],
                ),
                (
                    f"insert into dbluigi.models (partition_key, {listed}) "
                    f"select %s, {listed} from dbluigi.models "
                    "where model = %s and partition_key = ''",
                    [variant, model],
                ),
            ]
        )

    def read_partitions(self) -> dict[tuple[str, str], ModelState]:
        """The last build of every partition of partitioned models, once per run."""
        self.settle_journal()
        rows = self.session.query(
            "select model, partition_key, fingerprint, content_fp, build_id, generation, "
            "rows_affected, built_at from dbluigi.models "
            f"where partition_key <> '' and {_NOT_VARIANT}"
        ).rows
        _refuse_unusable(rows, fingerprint=2, build_id=4, generation=5)
        return {
            (r[0], r[1]): ModelState(r[0], r[2], r[3], r[4], int(r[5]), r[6], r[7]) for r in rows
        }

    def read_inputs(self) -> dict[str, str]:
        """The version of each input table as the last run that read it saw it."""
        rows = self.session.query("select relation, version from dbluigi.inputs").rows
        return {r[0]: r[1] for r in rows if r[1] is not None}

    def record_inputs(self, versions: Mapping[str, str]) -> None:
        """Remember the versions of input tables read by this run (``read_inputs``)."""
        if not versions:
            return
        self.session.executemany(
            "insert into dbluigi.inputs (relation, version, read_at) values (%s, %s, %s) "
            "on conflict (relation) do update set version = excluded.version, "
            "read_at = excluded.read_at",
            [(relation, version, now()) for relation, version in sorted(versions.items())],
        )

    def forget_inputs(self, *, keep: Sequence[str]) -> None:
        """Delete the remembered versions of relations no longer inputs of the project."""
        stale = [r for r in self.read_inputs() if r not in set(keep)]
        if stale:
            self.session.executemany(
                "delete from dbluigi.inputs where relation = %s", [(r,) for r in stale]
            )

    def built_in(self, run_id: str) -> list[str]:
        """The models (not partitions) whose published build is run ``run_id``'s."""
        self.settle_journal()
        rows = self.session.query(
            "select model from dbluigi.models where run_id = %s and partition_key = ''", [run_id]
        ).rows
        return [r[0] for r in rows]

    def set_output_versions(self, versions: Mapping[str, str | None]) -> None:
        """Store the versions of published relations read after their build (DuckDB) or
        found changed outside dbluigi (``versions.CHANGED_MARK``): one statement."""
        if not versions:
            return
        self.settle_journal()
        rows = sorted(versions.items())
        values = ", ".join(["(%s, %s)"] * len(rows))
        self.session.execute(
            "update dbluigi.models set output_version = v.version "
            f"from (values {values}) as v (model, version) "
            "where dbluigi.models.model = v.model and (dbluigi.models.partition_key = '' "
            # and the variant row of the same build (record_variant)
            f"or (not ({_NOT_VARIANT}) and dbluigi.models.build_id = (select w.build_id "
            "from dbluigi.models w where w.model = v.model and w.partition_key = '')))",
            [p for row in rows for p in row],
        )

    def partition_keys(self, model: str) -> list[str]:
        """The partition values of a model that have a state row."""
        self.settle_journal()
        rows = self.session.query(
            "select partition_key from dbluigi.models where model = %s and partition_key <> '' "
            f"and {_NOT_VARIANT}",
            [model],
        ).rows
        return [r[0] for r in rows]

    def forget_partitions(self, model: str, *, keep: Sequence[str]) -> None:
        """Delete the state rows of a model's partition values no longer listed."""
        self.settle_journal()
        placeholders = ", ".join(["%s"] * len(keep)) or "''"
        self.session.execute(
            "delete from dbluigi.models where model = %s and partition_key <> '' "
            f"and {_NOT_VARIANT} and partition_key not in ({placeholders})",
            [model, *keep],
        )

    def start_run(
        self,
        run_id: str,
        command: str,
        selector: str,
        target: str,
        workers: int,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a run as it starts; ``options``: those of ``RUN_OPTIONS`` it was given."""
        given = {k: v for k, v in (options or {}).items() if k in RUN_OPTIONS and v}
        self.session.execute(
            f"insert into dbluigi.runs {_columns_of('runs')} "
            "values (%s, %s, %s, %s, %s, null, %s, %s, %s, %s, %s, %s)",
            [
                run_id,
                command,
                selector,
                target,
                now(),
                "running",
                __version__,
                socket.gethostname(),
                os.getpid(),
                workers,
                json.dumps(given, separators=(",", ":")) if given else None,
            ],
        )

    def finish_run(self, run_id: str, status: str) -> None:
        self.session.execute(
            "update dbluigi.runs set finished_at = %s, status = %s where run_id = %s",
            [now(), status, run_id],
        )

    def record_success(
        self,
        record: TaskRecord,
        *,
        kind: str,
        content_fp: str,
        generation: int,
        output_version: tuple[str, Sequence[Any]] | None = None,
        inputs: Mapping[str, str] | None = None,
        stored: bool | None = None,
        variant: str | None = None,
    ) -> None:
        """Record a successful build and its attempt; call inside the publishing transaction.

        No round trip of its own: the models upsert and the task_runs row travel with the
        COMMIT (``Session.defer``), and fail the commit if they fail. ``output_version`` is
        a SQL expression (with its parameters) of the published relations' version
        (``Session.output_version_sql``), evaluated there, after every write of the build.

        ``stored`` says whether the model's row was there when the run started (None: not
        known). On a target with one writer process nothing else writes it meanwhile, so
        the row is inserted or updated directly: DuckDB takes several times as long for an
        upsert as for either.

        On such a target both rows go into one journal entry instead, the one write of the
        publishing transaction (DuckDB takes about as long for each row written into the
        state tables as for building a small model, most of it a fixed cost per table
        written); readers fold the journal into the tables first (``settle_journal``).
        ``variant`` keeps the build as that variant's too (``record_variant``)."""
        version_sql, version_params = output_version or ("%s", [None])
        values = [
            record.model,
            record.partition,
            kind,
            record.fingerprint,
            content_fp,
            record.build_id,
            generation,
            record.rows,
            now(),
            record.run_id,
            *version_params,
            json.dumps(dict(sorted((inputs or {}).items()))) if inputs else None,
            record.watermark_to,
        ]
        task_run = (_INSERT_TASK_RUN, _task_run_values(record))
        insert = (
            f"insert into dbluigi.models {_columns_of('models')} "
            f"values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, {version_sql}, %s, %s)"
        )
        if self.session.target.supports_concurrent_writers:
            upsert = insert + _UPSERT_MODEL
            self.session.defer([(upsert, values), task_run])
        elif version_sql == "%s":  # a value, not an expression: the row can wait
            self._journal({"models": values, "task_run": task_run[1], "variant": variant})
            return
        else:
            self._write_model(values, version_sql, stored)
            self.session.execute(*task_run)
        if variant:
            self.record_variant(record.model, variant)

    def _write_model(self, values: list[Any], version_sql: str, stored: bool | None) -> None:
        if stored is not False:
            update = _UPDATE_MODEL.format(version=version_sql)
            key, rest = values[:2], values[2:]
            if self.session.execute(update, [*rest, *key]) > 0:
                return
        insert = (
            f"insert into dbluigi.models {_columns_of('models')} "
            f"values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, {version_sql}, %s, %s)"
        )
        self.session.execute(insert, values)

    # -- the journal ----------------------------------------------------------------

    def _journal(self, entry: dict[str, Any]) -> None:
        """Write one journal entry; it counts as pending once its transaction commits."""
        entry_id = f"{_ENTRY_PREFIX}.{next(_ENTRY_COUNT):012d}"
        self.session.execute(
            "insert into dbluigi.journal (entry_id, entry) values (%s, %s)",
            [entry_id, json.dumps(entry, default=_json_value, separators=(",", ":"))],
        )
        key = self.session.target.identity

        def committed() -> None:
            with _JOURNAL_LOCK:
                _JOURNALED.setdefault(key, set()).add(entry_id)

        self.session.after_commit(committed)

    def settle_journal(self) -> None:
        """Fold the journal into ``models`` and ``task_runs`` in one transaction, in the
        order it was written; nothing to do when this process knows it holds nothing.

        Inside a transaction it does nothing: the reads there (a partitioned model's own
        rows) need no entry of this run, and a fold must commit on its own. A process
        that died leaves its entries, which the next one folds when it first reads."""
        session = self.session
        if session.target.supports_concurrent_writers or session.in_transaction:
            return
        if self._read_only:  # a state of an older version, read as it is
            return
        key = session.target.identity
        with _JOURNAL_LOCK:
            known = _JOURNALED.get(key)
            if known is not None and not known:
                return
            if session.relation_kind(SCHEMA, "journal") is None:  # no state (yet), or older
                return
            seen = set(known or ())
            with session.transaction():  # one snapshot: entries committed meanwhile stay
                ids = [r[0] for r in session.query("select entry_id from dbluigi.journal").rows]
                if ids:
                    for statement in _FOLD:
                        session.execute(statement)
            # what was known before is folded now, or was by an earlier fold
            _JOURNALED[key] = (known or set()) - seen - set(ids)

    def record_tasks(self, records: Sequence[TaskRecord]) -> None:
        if records:
            self.session.executemany(_INSERT_TASK_RUN, [_task_run_values(r) for r in records])

    def task_records(self, run_id: str) -> list[TaskRecord]:
        """A run's task attempts, in the order they started."""
        return self.task_records_of([run_id])[run_id]

    def task_records_of(self, run_ids: Sequence[str]) -> dict[str, list[TaskRecord]]:
        """Each run's task attempts, in the order they started, in one query."""
        self.settle_journal()
        found: dict[str, list[TaskRecord]] = {run_id: [] for run_id in run_ids}
        if not found:
            return found
        marks = ", ".join(["%s"] * len(found))
        rows = self.session.query(
            f"select {self._record_columns} from dbluigi.task_runs where run_id in ({marks}) "
            "order by started_at, model, attempt",
            list(found),
        ).rows
        for record in map(_record, rows):
            found[record.run_id].append(record)
        return found

    def runs(self, last: int) -> list[RunSummary]:
        """The ``last`` invocations, newest first."""
        rows = self.session.query(
            "select run_id, command, selector, started_at, finished_at, status, version, hostname "
            "from dbluigi.runs order by started_at desc limit %s",
            [last],
        ).rows
        return [RunSummary(*r) for r in rows]

    def last_run_of(
        self, commands: Sequence[str] | None, *, target: str | None = None
    ) -> RunSummary | None:
        """The newest invocation of one of ``commands`` (any command when None), on
        ``target`` as ``start_run`` recorded it when given (``retry`` reads the last build
        of its target: two targets may share a database)."""
        where: list[str] = []
        params: list[object] = []
        if commands is not None:
            where.append(f"command in ({', '.join(['%s'] * len(commands))})")
            params.extend(commands)
        if target is not None:
            where.append("target = %s")
            params.append(target)
        rows = self.session.query(
            "select run_id, command, selector, started_at, finished_at, status, version, "
            "hostname, options from dbluigi.runs"
            + (f" where {' and '.join(where)}" if where else "")
            + " order by started_at desc limit 1",
            params,
        ).rows
        if not rows:
            return None
        run_id, command, selector, started, finished, status, version, host, options = rows[0]
        return RunSummary(
            run_id,
            command,
            selector,
            started,
            finished,
            status,
            version,
            host,
            json.loads(options) if options else None,
        )

    def run(self, run_id: str) -> RunRecord | None:
        """One invocation's ``runs`` row; None when there is none."""
        rows = self.session.query(
            "select run_id, command, selector, target, started_at, finished_at, status, version, "
            "hostname, pid, workers from dbluigi.runs where run_id = %s",
            [run_id],
        ).rows
        return RunRecord(*rows[0]) if rows else None

    def recent_durations(
        self, *, limit: int, models: Sequence[str] | None = None, exclude_run: str = ""
    ) -> dict[str, list[float]]:
        """Each model's latest ``limit`` successful build durations, newest first.

        Builds only: attempts of ``check`` runs and of run ``exclude_run`` do not count."""
        self.settle_journal()
        params: list[object] = [exclude_run]
        where = ""
        if models is not None:
            if not models:
                return {}
            where = " and t.model in (" + ", ".join(["%s"] * len(models)) + ")"
            params.extend(models)
        params.append(limit)
        rows = self.session.query(_RECENT_DURATIONS.format(models=where), params).rows
        found: dict[str, list[float]] = {}
        for model, duration in rows:
            found.setdefault(model, []).append(float(duration or 0.0))
        return found

    def history(self, *, last: int, model: str | None = None) -> list[TaskRecord]:
        self.settle_journal()
        where, params = "", []
        if model is not None:
            where, params = "where model = %s", [model]
        rows = self.session.query(
            f"select {self._record_columns} from dbluigi.task_runs {where} "
            "order by started_at desc, model limit %s",
            [*params, last],
        ).rows
        return [_record(r) for r in rows]

    def latest_attempts(self, *, per_model: int) -> dict[str, list[TaskRecord]]:
        """Each model's latest ``per_model`` task attempts, newest first, in one query."""
        self.settle_journal()
        rows = self.session.query(
            f"select {self._record_columns} from (select *, row_number() over (partition by model "
            "order by started_at desc, attempt desc) as n from dbluigi.task_runs) t "
            "where n <= %s order by model, started_at desc, attempt desc",
            [per_model],
        ).rows
        found: dict[str, list[TaskRecord]] = {}
        for row in rows:
            record = _record(row)
            found.setdefault(record.model, []).append(record)
        return found


# a TaskRecord as selected from ``task_runs`` (``_record`` reads it)
_RECORD_COLUMNS = (
    "run_id, model, status, started_at, duration_s, attempt, partition_key, failure_class, "
    "error, path, line, reason, rows_affected, fingerprint, build_id, explain_cost, checks, "
    "watermark_from, watermark_to, worker"
)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"a state value of type {type(value).__name__} cannot be journaled")


def _columns_of(table: str) -> str:
    """``(a, b, ...)``: inserts name their columns, so a column a repair added back (at the
    end of the table) takes its values all the same."""
    return "(" + ", ".join(name for name, _ in STATE_TABLES[table]) + ")"


def _journaled(table: str, key: str, *, partition_key: str | None = None) -> str:
    """The columns of ``table`` as a journal entry's list ``key`` holds them, typed."""
    return ", ".join(
        partition_key
        if partition_key and name == "partition_key"
        else f"cast(json_extract_string(entry, '$.{key}[{i}]') as {type_name}) as {name}"
        for i, (name, type_name) in enumerate(STATE_TABLES[table])
    )


# Folding the journal (DuckDB: the one target with one writer process), in one snapshot:
# the last build of each model row (and of its variant) replaces the stored one, every
# attempt is appended, the entries are deleted.
_VARIANT_OF = "json_extract_string(entry, '$.variant')"
_JOURNAL_MODELS = f"""
select {", ".join(n for n, _ in STATE_TABLES["models"])} from (
    select *, row_number() over (partition by model, partition_key order by entry_id desc) as n
    from (
        select entry_id, {_journaled("models", "models")} from dbluigi.journal
        union all
        select entry_id, {_journaled("models", "models", partition_key=_VARIANT_OF)}
        from dbluigi.journal where {_VARIANT_OF} is not null
    ) as built
) as latest where n = 1"""
_FOLD = (
    f"delete from dbluigi.models where (model, partition_key) in "
    f"(select model, partition_key from ({_JOURNAL_MODELS}) as journaled)",
    f"insert into dbluigi.models {_columns_of('models')} {_JOURNAL_MODELS}",
    f"insert into dbluigi.task_runs {_columns_of('task_runs')} "
    f"select {_journaled('task_runs', 'task_run')} from dbluigi.journal",
    "delete from dbluigi.journal",
)


def _shape_problems(present: dict[str, set[str]]) -> list[str]:
    """Missing state tables and columns, in words."""
    problems = []
    for table, columns in STATE_TABLES.items():
        if table not in present:
            problems.append(f"table dbluigi.{table} is missing")
            continue
        missing = [c for c, _ in columns if c not in present[table]]
        if missing:
            problems.append(f"dbluigi.{table} lacks column {', '.join(missing)}")
    return problems


def _refuse_unusable(rows: Sequence[Sequence[Any]], **columns: int) -> None:
    """A models row whose build is unknown (NULLs written by hand) cannot be planned on."""
    bad = [r[0] for r in rows if any(r[i] is None for i in columns.values())]
    if bad:
        shown = ", ".join(sorted(set(bad))[:5]) + (", ..." if len(set(bad)) > 5 else "")
        raise StateError(
            f"the dbluigi state is damaged: {len(bad)} rows of dbluigi.models have no "
            f"fingerprint, build_id or generation ({shown})"
        )


_RECENT_DURATIONS = """
select model, duration_s from (
    select t.model, t.duration_s,
           row_number() over (partition by t.model order by t.started_at desc) as n
    from dbluigi.task_runs as t
    join dbluigi.runs as r on r.run_id = t.run_id
    where t.status = 'success' and r.command <> 'check' and t.run_id <> %s{models}
) as recent
where n <= %s
order by model, n
"""

_UPSERT_MODEL = (
    " on conflict (model, partition_key) do update set kind = excluded.kind, "
    "fingerprint = excluded.fingerprint, content_fp = excluded.content_fp, "
    "build_id = excluded.build_id, generation = excluded.generation, "
    "rows_affected = excluded.rows_affected, built_at = excluded.built_at, "
    "run_id = excluded.run_id, output_version = excluded.output_version, "
    "inputs = excluded.inputs, watermark = excluded.watermark"
)
_UPDATE_MODEL = (
    "update dbluigi.models set kind = %s, fingerprint = %s, content_fp = %s, build_id = %s, "
    "generation = %s, rows_affected = %s, built_at = %s, run_id = %s, "
    "output_version = {version}, inputs = %s, watermark = %s "
    "where model = %s and partition_key = %s"
)

_INSERT_TASK_RUN = (
    f"insert into dbluigi.task_runs {_columns_of('task_runs')} values "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def _task_run_values(r: TaskRecord) -> list[Any]:
    return [
        r.run_id,
        r.model,
        r.partition,
        r.attempt,
        r.status,
        r.failure_class,
        r.error,
        r.path,
        r.line,
        r.reason,
        r.started_at,
        r.duration_s,
        r.rows,
        r.fingerprint,
        r.build_id,
        r.explain_cost,
        json.dumps([c.to_state() for c in r.checks]),
        r.watermark_from,
        r.watermark_to,
        r.worker,
    ]


def _record(r: Sequence[Any]) -> TaskRecord:
    checks = tuple(
        CheckResult(
            c["name"],
            c["passed"],
            c.get("detail", ""),
            c.get("status", ""),
            c.get("owner", ""),
            c.get("digest", ""),
        )
        for c in json.loads(r[16] or "[]")
    )
    return TaskRecord(
        run_id=r[0],
        model=r[1],
        status=r[2],
        started_at=r[3],
        duration_s=float(r[4] or 0),
        attempt=int(r[5] or 1),
        partition=r[6] or "",
        failure_class=r[7],
        error=r[8],
        path=r[9],
        line=r[10],
        reason=r[11],
        rows=r[12],
        fingerprint=r[13],
        build_id=r[14],
        explain_cost=r[15],
        checks=checks,
        watermark_from=r[17],
        watermark_to=r[18],
        worker=r[19] or "",
    )
