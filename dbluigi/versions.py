"""What changes outside the project: input tables and published relations.

- An *input* is a relation the project reads but no model produces or writes (a table
  loaded into the target by another system). Its version is read once per run; it joins
  the fingerprint of the models reading it, so they are stale when it changed ("input
  changed: raw.x"). ``[inputs."raw.x"] version_query`` in dbluigi.toml replaces the
  target's signal by a query of your own.
- An *output* is a relation a model publishes. Its version after the build is stored
  with the build (``dbluigi.models.output_version``); when the relation answers
  differently later, it was changed outside dbluigi, and the model is rebuilt.

The signal each target offers (``Session.relation_versions``): on PostgreSQL a change
log fed by statement triggers (``dbluigi.targets.pgchanges``); on DuckDB the table's
row count and storage layout, read only when the file was written by another process
since dbluigi last closed it (``dbluigi.targets.duckdb``). A version that starts with
``none:`` says there is no signal, and why: the readers of such an input run on every
build, and such an output is never reported changed.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from dbluigi.errors import ProjectError
from dbluigi.project import Model, Project
from dbluigi.state import ModelState, StateStore
from dbluigi.suggest import did_you_mean
from dbluigi.targets.base import NO_SIGNAL, Session

CHANGED_MARK = "changed outside dbluigi"  # stored for an output found changed, until rebuilt
PENDING = "pending"  # stored at publish where versions are read after the run (DuckDB)


def has_signal(version: str | None) -> bool:
    """Whether ``version`` is a real version (not missing, not ``none: why``)."""
    return version is not None and not version.startswith(NO_SIGNAL)


def why_none(version: str | None) -> str:
    """The reason a relation has no signal, in words."""
    if version is None:
        return "its version could not be read"
    return version[len(NO_SIGNAL) :]


def changed_outside(stored: str | None, current: str | None) -> bool:
    """Whether a published relation changed since its build: marked so by an earlier run,
    or answering another version now (when both versions can tell)."""
    if stored in (CHANGED_MARK, PENDING):  # a run that never read it back: look again
        return True
    return (
        current is not None
        and output_has_signal(stored)
        and output_has_signal(current)
        and current != stored
    )


@dataclass(frozen=True)
class Versions:
    """What one run read: the version of each input (None: absent from the target) and
    the current version of each published output (by model; None: not read)."""

    inputs: Mapping[str, str | None] = field(default_factory=dict)
    outputs: Mapping[str, str | None] = field(default_factory=dict)


def input_relations(project: Project, models: Iterable[str] | None = None) -> set[str]:
    """The inputs read by ``models`` (every model when None): relations in the graph
    that no model produces or writes (they have no parent), and that are not models."""
    found: set[str] = set()
    graph = project.graph
    for relation in project.models if models is None else models:
        for parent in graph.parents(relation):
            if parent not in project.models and not graph.parents(parent):
                found.add(parent)
    return found


def model_inputs(project: Project, relation: str) -> tuple[str, ...]:
    """The inputs ``relation`` reads directly, sorted."""
    return tuple(sorted(input_relations(project, [relation])))


def output_relations(model: Model) -> tuple[str, ...]:
    """The relations a model publishes: its own (for the kinds that publish one) and the
    tables a ``sql`` script creates, sorted."""
    own = (model.relation,) if model.publishes_relation else ()
    return tuple(sorted({*own, *model.created}))


def combine(versions: Mapping[str, str | None], relations: Collection[str]) -> str | None:
    """One model's output version, ``a=<version>;b=<version>`` in the order of the names
    (what ``Session.output_version_sql`` computes in SQL): None when one is missing."""
    parts = []
    for relation in sorted(relations):
        version = versions.get(relation)
        if version is None:
            return None
        parts.append(f"{relation}={version}")
    return ";".join(parts) if parts else None


def output_has_signal(version: str | None) -> bool:
    """Whether a combined output version can tell a change (each part has a signal)."""
    return version is not None and f"={NO_SIGNAL}" not in version


def check_input_queries(project: Project) -> None:
    """``[inputs."x"]`` must name an input of the project."""
    known = input_relations(project)
    for relation, query in project.config.input_queries.items():
        if relation not in known:
            raise ProjectError(
                f'[inputs."{relation}"] names no input of the project (a relation its '
                "models read that no model produces)",
                path="dbluigi.toml",
                line=query.line,
                hint=did_you_mean(relation, sorted(known))
                or (f"its inputs: {', '.join(sorted(known))}" if known else "it has none"),
            )


def read(
    session: Session,
    project: Project,
    selected: Collection[str],
    models: Mapping[str, ModelState],
    existing: Mapping[str, str],
) -> Versions:
    """What a run needs to know of input tables and published relations, read once.

    Inputs are read for the selected models (for every model where the target reads
    versions only after another process wrote, so the unselected readers learn it too),
    through their ``version_query`` or the target's signal, and remembered in
    ``dbluigi.inputs``. Published relations are compared where the target may have been
    written elsewhere; on such a target (DuckDB), a changed relation is marked changed in
    the state, so whichever later run selects it rebuilds it."""
    target = session.target
    store = StateStore(session)
    elsewhere = target.written_elsewhere()
    everyone = elsewhere and target.versions_after_run
    wanted = sorted(
        i for i in input_relations(project, None if everyone else selected) if i in existing
    )
    known = store.read_inputs()
    queries = project.config.input_queries
    inputs: dict[str, str | None] = {
        i: _query_version(session, queries[i].sql) for i in wanted if i in queries
    }
    rest = [i for i in wanted if i not in queries]
    if not elsewhere:  # nothing else wrote the target since dbluigi last read them; a view
        # changes with what it reads, dbluigi's own tables too: read again
        trusted = [i for i in rest if i in known and existing.get(i) != "view"]
        inputs.update((i, known[i]) for i in trusted)
        rest = [i for i in rest if i not in trusted]
    inputs.update(session.input_versions(rest))
    store.record_inputs({i: v for i, v in inputs.items() if v is not None and known.get(i) != v})
    outputs: dict[str, str | None] = {}
    if elsewhere:
        compared = {
            m: output_relations(project.models[m])
            for m in (models if everyone else selected)
            if m in project.models and m in models and output_has_signal(models[m].output_version)
        }
        current = session.relation_versions(
            sorted({r for rs in compared.values() for r in rs}), track=False
        )
        outputs = {m: combine(current, rs) for m, rs in compared.items()}
        if everyone:  # remembered until rebuilt, whichever run selects it
            store.set_output_versions(
                {
                    m: CHANGED_MARK
                    for m, version in outputs.items()
                    if changed_outside(models[m].output_version, version)
                }
            )
    target.acknowledge_writes()  # compared, or nothing else wrote: this run accounts for it
    return Versions(inputs, outputs)


def settle_after_run(
    session: Session,
    project: Project,
    run_id: str,
    selected: Collection[str],
    observed: Versions,
) -> None:
    """Store how the run left what it published, as the baseline later runs compare with:

    - the models it built (on DuckDB read only now, ``Target.versions_after_run``; on
      PostgreSQL a later model of the run may have changed them since);
    - the models read by a model of the run that calls routines or runs statements
      dbluigi cannot read (a procedure writing a table it reads: the run's own change),
      when they were unchanged at the start;
    - the selected models with no baseline yet (published before versions were kept):
      the first look is all there is.

    Anything else that changed during the run stays a change outside dbluigi."""
    store = StateStore(session)
    stored = store.read_models()
    built = set(store.built_in(run_id))
    ran = [m for m in built if m in project.models and _opaque(project.models[m])]
    touched = {p for m in ran for p in project.model_parents(m)}
    candidates = {
        m: output_relations(project.models[m])
        for m in {*selected, *touched}
        if m in stored
        and m in project.models
        and (
            m in built
            or stored[m].output_version is None
            or (m in touched and observed.outputs.get(m) == stored[m].output_version)
        )
    }
    candidates = {m: rs for m, rs in candidates.items() if rs}
    if not candidates:
        return
    current = session.relation_versions(
        sorted({r for rs in candidates.values() for r in rs}), track=True
    )
    now = {m: combine(current, rs) for m, rs in candidates.items()}
    store.set_output_versions(
        {
            m: version
            for m, version in now.items()
            if version is not None and version != stored[m].output_version
        }
    )


def _opaque(model: Model) -> bool:
    """Whether a model may write what it does not declare: it calls routines, or runs
    statements sqlglot cannot read."""
    return bool(model.calls) or any(st.unparsed is not None for st in model.statements)


def _query_version(session: Session, sql: str) -> str:
    """The answer of an input's ``version_query``; ``none: ...`` when it fails."""
    try:
        rows = session.query(sql).rows
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"{NO_SIGNAL}its version_query failed: {first}"
    return "q" + json.dumps([list(row) for row in rows], default=str)
