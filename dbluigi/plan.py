"""What a build would do, and why: fingerprints against the stored state.

Pure: it takes the project, the selection, the state read once at the start
of the run and the relations that exist (for a dump: whether its file exists),
and decides for each selected model whether it runs and why. A model's fingerprint hashes its own definition
(rendered SQL with its header, patch and check files, seed contents) and the
build ids of the models upstream of it, so an edit or a rebuild upstream makes
it stale. Build ids of models that will run are derived here too, from their
fingerprint and build generation, so every worker of a run (and every machine
reading the same state) agrees on them without talking to each other.

Files a model reads (``-- inputs:`` globs), the versions of the input tables it reads
and of source tables are part of the fingerprint too: they are read afresh at every
plan, and kept with the build, so plan can say which one changed. A source whose url names
an unset environment variable is not read: its copies run (their tasks fail, saying so),
and plan says why first ("source version unknown: SHOP_URL is not set").

Incremental models and incremental source copies run on every build, for the rows
that arrived since the last one; whether they change anything is known only once
they ran. Their decision is *tentative*: it keeps the stored build id, which the run
replaces only when it changed rows (``after_run``). What reads them is planned
*conditional*: it runs as a task, after them, and ``settle`` decides then, from its
parents' actual build ids, whether it builds at all (see ``runs_each_build``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from dbluigi.cache import FileHashes
from dbluigi.config import STATE_DIR
from dbluigi.configfile import unset_env
from dbluigi.project import Model, Project
from dbluigi.state import ModelState
from dbluigi.versions import (
    Versions,
    changed_outside,
    has_signal,
    model_inputs,
    why_none,
)

FINGERPRINT_VERSION = "1"

# reasons, in the words plan prints
NEW = "new"
CHANGED = "definition changed"
UPSTREAM = "upstream rebuilt"
MISSING = "relation missing"
OUTPUT_MISSING = "output missing"
FORCED = "forced"
FULL_REFRESH = "full refresh"
SOURCE_CHANGED = "source changed"  # a source table's version query answers differently
SOURCE_UNREADABLE = "source version unreadable"  # its version query failed: run, and see
SOURCE_UNKNOWN = "source version unknown"  # "...: X is not set": its url needs X to connect
UP_TO_DATE = "up to date"
PARTITIONS = "partitions rebuilt"
INPUT_CHANGED = "input changed"  # "input changed: raw.x": an input table's version moved
NO_INPUT_SIGNAL = "no change signal for input"  # "...: raw.x (why)": it runs every build
CHANGED_OUTSIDE = "changed outside dbluigi"  # its published relation changed since its build
NEW_ROWS = "new rows"  # an incremental model or copy looking for rows since its last build
CONDITIONAL = "if upstream changes"  # downstream of one: decided once its parents ran
UPSTREAM_UNCHANGED = "upstream unchanged"  # ... and they changed nothing


@dataclass(frozen=True)
class PartitionBasis:
    """What every value of a partitioned model shares: what its fingerprint hashes besides
    the value, and the reasons its input tables give it to run."""

    digest: str = ""
    moved: str = ""  # "input changed: raw.x": why a value whose fingerprint moved runs
    rerun: str = ""  # "no change signal for input: ...": every value runs, every build


@dataclass(frozen=True)
class Decision:
    model: str
    run: bool
    reason: str
    fingerprint: str
    content_fp: str
    build_id: str  # the build id after this run (the new one when it runs)
    generation: int
    missing_parents: tuple[str, ...] = ()  # unselected parents never built, and absent sources
    full_refresh: bool = False  # an incremental model rebuilt from scratch (--full-refresh)
    partitions: tuple[PartitionDecision, ...] = ()  # a partitioned model's values, in order
    partitions_deferred: bool = False  # its values come from a query on tables this run builds
    partition_basis: PartitionBasis = PartitionBasis()  # what its values share
    inputs: tuple[tuple[str, str], ...] = ()  # the input tables it reads, with their versions
    input_files: tuple[tuple[str, str], ...] = ()  # (path, content hash) of its input files
    # keeps the stored build id and generation unless its run changes rows (``after_run``)
    tentative: bool = False
    conditional: bool = False  # builds only if its fingerprint changes once parents ran
    pending: tuple[str, ...] = ()  # parents whose build id is known only once they ran
    upstream: tuple[tuple[str, str], ...] = ()  # (parent, build id) as the fingerprint hashed
    source_version: str | None = None  # what its source's version query answered
    # a tentative decision's build id is the last build's: this tells its run from the last
    # one's, to every worker alike (part of its luigi task's identity)
    round: str = ""


class Unversioned(str):
    """A source table's version that pins nothing down (its source gives no signal it can
    trust now): unique to this read, so the table is copied again, and ``reason`` is what
    plan says why."""

    reason: str

    def __new__(cls, reason: str) -> Unversioned:
        version = super().__new__(cls, f"unversioned {secrets.token_hex(8)}")
        version.reason = reason
        return version


@dataclass(frozen=True)
class PartitionDecision:
    """One value of a partitioned model: its own task, state row and fingerprint."""

    value: str
    run: bool
    reason: str
    fingerprint: str
    content_fp: str
    build_id: str
    generation: int


@dataclass(frozen=True)
class Plan:
    decisions: Mapping[str, Decision]  # selected models, in run order
    selected: tuple[str, ...]

    @property
    def to_run(self) -> tuple[str, ...]:
        return tuple(m for m in self.selected if self.decisions[m].run)


def content_fingerprint(project: Project, model: Model) -> str:
    """Hash of everything in the project that defines ``model`` by itself."""
    h = hashlib.sha256()
    for part in (FINGERPRINT_VERSION, project.dialect, model.kind, model.text):
        h.update(part.encode())
        h.update(b"\0")
    if model.format == "csv":
        h.update(_file_hashes(project).hash(project.root / model.path).encode())
    if model.kind == "seed":
        types = project.config.seed_types.get(model.relation, {})
        h.update(repr(sorted(types.items())).encode())
    if model.kind == "python":  # a step reads ctx.variables at run time
        h.update(repr(sorted((k, str(v)) for k, v in project.config.variables.items())).encode())
    if model.patch is not None:
        h.update(model.patch.text.encode())
    for modifier in project.chains.modifiers.get(model.relation, ()):  # in the order they run
        member = project.models[modifier]
        h.update(f"modifier {member.path}\0{member.kind}\0{member.text}\0".encode())
    hashed: set[str] = set()
    for check in project.gated_checks(model.relation):
        if check.whole:  # the file gates this model alone: hash it once, as written
            if check.path not in hashed:
                hashed.add(check.path)
                h.update(check.path.encode() + b"\0" + check.text.encode())
        else:  # its queries gate several models: each hashes its own
            h.update(f"{check.name}\0{check.statements[0].sql}".encode())
    return h.hexdigest()[:32]


def input_file_hashes(project: Project, model: Model) -> tuple[tuple[str, str], ...]:
    """(path, content hash) of each file the ``-- inputs:`` globs of ``model`` and of its
    modifiers (replayed with it) match now, sorted by path."""
    members = (
        model,
        *(project.models[m] for m in project.chains.modifiers.get(model.relation, ())),
    )
    if not any(member.header.inputs for member in members):
        return ()
    paths = sorted({path for member in members for path in project.input_files(member)})
    hashes = []
    for path in paths:
        try:
            hashes.append((path, _file_hashes(project).hash(project.root / path)))
        except FileNotFoundError:  # deleted since the glob matched it: as if never matched
            continue
    return tuple(hashes)


def make_plan(
    project: Project,
    selected: Collection[str],
    state: Mapping[str, ModelState],
    relations: Collection[tuple[str, str]],
    *,
    forced: Collection[str] = (),
    full_refresh: Collection[str] = (),
    source_versions: Mapping[str, str | None] | None = None,
    partition_values: Mapping[str, tuple[str, ...]] | None = None,
    partition_state: Mapping[tuple[str, str], ModelState] | None = None,
    forced_partitions: Collection[str] = (),
    max_identifier_bytes: int | None = None,
    observed: Versions | None = None,
) -> Plan:
    """Decide, in run order, which selected models run and why.

    ``source_versions`` holds, for the source tables that have one, what their version
    query answered this run (None: it failed); it is part of their fingerprint.
    ``max_identifier_bytes`` is the target's (``Target.max_identifier_bytes``), which
    the names of partition tables are fitted into. ``observed`` holds what the run read
    of input tables and published relations (``dbluigi.versions``)."""
    read = observed or Versions()
    versions = source_versions or {}
    existing = {f"{s}.{n}" for s, n in relations}
    modified = project.chains.modifiers  # producers with modifiers
    # a relation's build is its whole chain: selecting one member selects them all
    selected_set = _whole_chains(project, selected)
    forced = _whole_chains(project, forced)
    full_refresh = _whole_chains(project, full_refresh)
    build_ids: dict[str, str | None] = {}
    decisions: dict[str, Decision] = {}
    for relation in project.order:
        model = project.models[relation]
        stored = state.get(relation)
        parents = project.model_parents(relation)
        producer = project.chains.owner.get(relation)
        if producer is not None:  # built by its producer's task, with it
            build_ids[relation] = build_ids.get(producer)
            if relation in selected_set:
                decisions[relation] = replace(decisions[producer], model=relation)
            continue
        if relation not in selected_set:
            build_ids[relation] = stored.build_id if stored else None
            continue
        content = content_fingerprint(project, model)
        upstream = [(p, build_ids.get(p) or "") for p in parents]
        version = versions.get(relation)
        inputs = {i: read.inputs.get(i) for i in model_inputs(project, relation)}
        tracked = tuple((i, v) for i, v in inputs.items() if v is not None and has_signal(v))
        files = input_file_hashes(project, model)
        fingerprint = _fingerprint(content, upstream, version, tracked, files)
        missing = tuple(
            p
            for p in parents
            if p not in selected_set and not _available(project, p, state, existing)
        )
        missing += tuple(
            s
            for s in sorted(project.graph.parents(relation))
            if s not in project.models and s not in existing and not project.graph.parents(s)
        )
        values = (partition_values or {}).get(relation)
        spec = model.header.partition
        # values from a query over tables this run rebuilds are known only once they are
        deferred = spec is not None and (
            values is None
            or (spec.query is not None and any(decisions[p].run for p in parents if p in decisions))
        )
        moved = [i for i, v in tracked if stored.inputs.get(i) != v] if stored else []
        silent = [(i, v) for i, v in inputs.items() if v is not None and not has_signal(v)]
        no_signal = (
            f"{NO_INPUT_SIGNAL}: {', '.join(f'{i} ({why_none(v)})' for i, v in silent)}"
            if silent
            else ""
        )
        basis = PartitionBasis(
            _partition_basis(project, model, upstream, tracked, files) if spec is not None else "",
            f"{INPUT_CHANGED}: {', '.join(moved)}" if moved else "",
            no_signal,
        )
        parts = partition_decisions(
            model,
            () if deferred else values or (),
            partition_query_fp(model) if spec is not None else content,
            basis,
            partition_state or {},
            existing,
            forced=relation in forced,
            only=forced_partitions,
            max_identifier_bytes=max_identifier_bytes,
        )
        stored_values = {v for (m, v) in (partition_state or {}) if m == relation}
        values_changed = not deferred and values is not None and stored_values != set(values)
        refresh = relation in full_refresh and model.kind in ("incremental", "extract")
        if unknown := unknown_source(project, relation):  # first: nothing else can be told
            reason = unknown
        elif refresh and stored is not None:
            reason = FULL_REFRESH
        elif relation in forced:
            reason = FORCED
        elif stored is None:
            reason = NEW
        elif (model.publishes_relation and relation not in existing) or any(
            c not in existing for c in model.created
        ):
            reason = MISSING
        elif model.kind == "dump" and not project.dump_file(model).is_file():
            reason = OUTPUT_MISSING
        elif stored.content_fp != content:
            reason = CHANGED
        elif changed_outside(stored.output_version, read.outputs.get(relation)):
            reason = CHANGED_OUTSIDE
        elif moved:
            reason = basis.moved
        elif silent:
            reason = no_signal
        elif relation in versions and version is None:
            reason = SOURCE_UNREADABLE
        elif isinstance(version, Unversioned):
            reason = version.reason
        elif edited := _changed_files(stored, files):
            reason = edited
        elif stored.fingerprint != fingerprint:
            reason = SOURCE_CHANGED if relation in versions else UPSTREAM
        elif any(p.run for p in parts) or values_changed or deferred:
            reason = PARTITIONS
        else:
            reason = UP_TO_DATE
        if reason == CHANGED_OUTSIDE and model.kind in ("incremental", "extract"):
            refresh = True  # rows merged into a table changed by hand: start again
        if reason == CHANGED and model.kind == "incremental" and model.relation in modified:
            # its modifiers (or its query) changed: rows merged before were changed by the
            # old ones, so the chain replays from scratch
            refresh = True
        each = runs_each_build(project, model, reason, stored, decisions, parents)
        reason, tentative = each.reason, each.tentative
        run = reason != UP_TO_DATE
        fresh = run and not tentative  # a tentative run keeps the stored build until it changes
        generation = (stored.generation if stored else 0) + (1 if fresh else 0)
        build_id = _hash(fingerprint, str(generation)) if fresh else stored.build_id  # type: ignore[union-attr]
        build_ids[relation] = build_id
        decisions[relation] = Decision(
            relation,
            run,
            reason,
            fingerprint,
            content,
            build_id,
            generation,
            missing,
            refresh,
            parts,
            deferred,
            basis,
            tracked,
            files,
            tentative,
            each.conditional,
            each.pending,
            tuple(upstream),
            version,
            each.round,
        )
    order = tuple(m for m in project.order if m in selected_set)
    _file_hashes(project).save()
    return Plan(decisions={m: decisions[m] for m in order}, selected=order)


class EachBuild(NamedTuple):
    """What ``runs_each_build`` makes of a model's reason (see ``Decision``)."""

    reason: str
    tentative: bool = False
    conditional: bool = False
    pending: tuple[str, ...] = ()
    round: str = ""


def runs_each_build(
    project: Project,
    model: Model,
    reason: str,
    stored: ModelState | None,
    decisions: Mapping[str, Decision],
    parents: Sequence[str] | None = None,
) -> EachBuild:
    """How a model that ``make_plan`` found with ``reason`` runs, given the decisions of
    the models before it.

    A model with a reason of its own to run keeps it. Otherwise an incremental model or
    incremental source copy runs all the same, for new rows, tentatively (the stored build
    id stays unless rows change); and a model reading one is conditional: its task decides
    (``settle``). ``pending`` are its parents whose build id is known once they ran (a
    partitioned model hashes its parents into each value's fingerprint when planned: it
    sees a tentative parent's new build id at the next build)."""
    pending = tuple(
        p
        for p in (project.model_parents(model.relation) if parents is None else parents)
        if model.header.partition is None
        and p in decisions
        and decisions[p].run
        and (decisions[p].tentative or decisions[p].pending)
    )
    # new rows in the input tables an incremental model reads are what it runs for anyway:
    # it merges them tentatively, and its readers follow only if it changed rows
    read_more = reason.startswith((INPUT_CHANGED, NO_INPUT_SIGNAL))
    if (reason != UP_TO_DATE and not (read_more and incremental(project, model))) or (
        stored is None
    ):
        return EachBuild(reason, pending=pending)
    # an incremental run rewrites its state row (built_at) even when it changes nothing
    rounds = [decisions[p].round for p in pending]
    if incremental(project, model) and model.header.partition is None:
        since = f" since {stored.watermark}" if stored.watermark is not None else ""
        why = f" ({reason})" if read_more else ""
        return EachBuild(
            NEW_ROWS + since + why, True, False, pending, _hash(str(stored.built_at), *rounds)
        )
    if read_more:
        return EachBuild(reason, pending=pending)
    if pending:
        return EachBuild(CONDITIONAL, True, True, pending, _hash("", *rounds))
    return EachBuild(reason)


def incremental(project: Project, model: Model) -> bool:
    """Whether ``model`` merges new rows into what it published: an incremental model, or
    an incremental copy of a source table."""
    if model.kind == "incremental":
        return True
    table = project.config.source_tables.get(model.relation)
    return model.kind == "extract" and table is not None and table.mode == "incremental"


def unknown_source(project: Project, relation: str) -> str | None:
    """Why the version of the source table ``relation`` copies is unknown: its source's url
    names environment variables that are unset ("source version unknown: X is not set");
    None for any other model. Its definition (its url) is unknown too, so this comes
    before any other reason."""
    table = project.config.source_tables.get(relation)
    unset = unset_env(table.written_url) if table is not None else ()
    if not unset:
        return None
    verb = "is" if len(unset) == 1 else "are"
    return f"{SOURCE_UNKNOWN}: {', '.join(unset)} {verb} not set"


def settle(decision: Decision, actual: Mapping[str, str]) -> Decision:
    """The decision of a model whose parents' build ids were pending, once they ran
    (``actual``: their build ids now, as the state in the target says).

    Its fingerprint is hashed again with them. A conditional model whose fingerprint is
    unchanged does not run; one whose fingerprint changed builds, with a new build id, as
    does a tentative one; a model that runs anyway gets the build id of its new fingerprint."""
    if not decision.pending:
        return decision
    upstream = tuple((p, actual.get(p, b)) for p, b in decision.upstream)
    fingerprint = _fingerprint(
        decision.content_fp,
        upstream,
        decision.source_version,
        decision.inputs,
        decision.input_files,
    )
    if fingerprint == decision.fingerprint:
        if decision.conditional:
            return replace(decision, run=False, reason=UPSTREAM_UNCHANGED, pending=())
        return replace(decision, pending=())
    generation = decision.generation + (1 if decision.tentative else 0)
    return replace(
        decision,
        run=True,
        reason=UPSTREAM if decision.tentative else decision.reason,
        fingerprint=fingerprint,
        build_id=_hash(fingerprint, str(generation)),
        generation=generation,
        tentative=False,
        conditional=False,
        pending=(),
        upstream=upstream,
    )


def after_run(decision: Decision, *, changed: bool) -> Decision:
    """The build a tentative run records: the stored one when it changed nothing, else
    the next generation (its build id derived as every build's is)."""
    if not decision.tentative or not changed:
        return decision
    generation = decision.generation + 1
    build_id = _hash(decision.fingerprint, str(generation))
    return replace(decision, build_id=build_id, generation=generation, tentative=False)


def _fingerprint(
    content: str,
    upstream: Sequence[tuple[str, str]],
    version: str | None,
    inputs: Sequence[tuple[str, str]] = (),
    files: Sequence[tuple[str, str]] = (),
) -> str:
    """A model's fingerprint: its definition, its parents' build ids, its source's version,
    the versions of the input tables it reads and the hashes of its input files. A source
    version that pins nothing down (``Unversioned``) forces the run instead, and stays out:
    every worker of a shared scheduler derives the same build id."""
    pinned = version is not None and not isinstance(version, Unversioned)
    return _hash(
        content,
        *(f"{p}={b}" for p, b in upstream),
        *((f"source version={version}",) if pinned else ()),
        *(f"input table {i}={v}" for i, v in inputs),
        *(f"input {path}={digest}" for path, digest in files),
    )


def _whole_chains(project: Project, models: Collection[str]) -> set[str]:
    """``models`` with every member of the chains they belong to (``dbluigi.writes``)."""
    result = set(models)
    for model in models:
        result.update(project.chains.members(model))
    return result


def partition_query_fp(model: Model) -> str:
    """What "definition changed" means for a partition: its query, without the header
    comments (where the value list and the checks live)."""
    return _hash(_body(model.query))


def _body(sql: str) -> str:
    lines = sql.splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines)


def _changed_files(stored: ModelState, files: tuple[tuple[str, str], ...]) -> str | None:
    """The reason when the input files differ from those of the stored build (one added,
    deleted or edited): ``input file changed: data/a.log``; None when they do not."""
    before = {k[5:]: v for k, v in stored.inputs.items() if k.startswith("file:")}
    now = dict(files)
    changed = [
        path + (" (added)" if path not in before else " (deleted)" if path not in now else "")
        for path in sorted(before.keys() | now.keys())
        if before.get(path) != now.get(path)
    ]
    if not changed:
        return None
    return f"input file{'s' if len(changed) > 1 else ''} changed: {', '.join(changed)}"


def stored_inputs(decision: Decision) -> dict[str, str]:
    """What the state keeps of a build's input files (``ModelState.inputs``): their
    hashes, under ``file:PATH`` (relation names have no colon)."""
    return {f"file:{path}": digest for path, digest in decision.input_files}


def _partition_basis(
    project: Project,
    model: Model,
    upstream: Sequence[tuple[str, str]],
    inputs: Sequence[tuple[str, str]] = (),
    files: Sequence[tuple[str, str]] = (),
) -> str:
    """A partition depends on the query (variables rendered), the partition variable, the
    upstream build ids, the versions of the input tables and the input files; not on the
    value list, checks or patch, which only the gathered table depends on: adding a year
    builds that year alone. An input table or file that changed cannot tell which values
    it touched: every value is built again."""
    spec = model.header.partition
    assert spec is not None
    return _hash(
        FINGERPRINT_VERSION,
        project.dialect,
        _body(model.query),
        spec.name,
        *(f"{p}={b}" for p, b in upstream),
        *(f"input table {i}={v}" for i, v in inputs),
        *(f"input {path}={digest}" for path, digest in files),
    )


def partition_decisions(
    model: Model,
    values: Sequence[str],
    content: str,
    basis: PartitionBasis,
    state: Mapping[tuple[str, str], ModelState],
    existing: Collection[str],
    *,
    forced: bool,
    only: Collection[str] = (),
    max_identifier_bytes: int | None,
) -> tuple[PartitionDecision, ...]:
    """Each value's decision: its fingerprint is the basis's (definition, upstream build ids
    and inputs) and the value, so a new value leaves the others alone and an edit or a
    changed input redoes them all; an input without a change signal reruns them all."""
    from dbluigi.partitions import partition_table

    decisions = []
    for value in values:
        fingerprint = _hash(basis.digest, f"partition={value}")
        stored = state.get((model.relation, value))
        if forced and (not only or value in only):
            reason = FORCED
        elif stored is None:
            reason = NEW
        elif (
            f"{model.schema}.{partition_table(model, value, max_identifier_bytes)}" not in existing
        ):
            reason = MISSING
        elif stored.content_fp != content:
            reason = CHANGED
        elif stored.fingerprint != fingerprint:
            reason = basis.moved or UPSTREAM
        elif basis.rerun:
            reason = basis.rerun
        else:
            reason = UP_TO_DATE
        run = reason != UP_TO_DATE
        generation = (stored.generation if stored else 0) + (1 if run else 0)
        build_id = _hash(fingerprint, str(generation)) if run else stored.build_id  # type: ignore[union-attr]
        decisions.append(
            PartitionDecision(value, run, reason, fingerprint, content, build_id, generation)
        )
    return tuple(decisions)


def _available(
    project: Project, relation: str, state: Mapping[str, ModelState], existing: set[str]
) -> bool:
    """Whether an unselected parent can be read: its relation exists (or, for a model
    that publishes none, it was built once)."""
    if project.models[relation].publishes_relation:
        return relation in existing
    return relation in state


def _hash(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


_FILE_HASHES: dict[Path, FileHashes] = {}  # by project folder, for the process's life


def file_hash(project: Project, path: Path) -> str:
    """The sha256 of a file of the project, kept while the file stands still."""
    return _file_hashes(project).hash(path)


def _file_hashes(project: Project) -> FileHashes:
    """The project's file hashes (``cache.FileHashes``): a long-lived process, such as
    ``build --watch``, reads the stored ones once and sees every write."""
    found = _FILE_HASHES.get(project.root)
    if found is None:
        found = _FILE_HASHES[project.root] = FileHashes(project.root / STATE_DIR / "cache")
    return found
