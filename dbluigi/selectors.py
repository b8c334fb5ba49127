"""Selectors: which models a command acts on, written as dbt writes them.

Several selectors (separate arguments, ``--select/-s`` options, or words of one argument
split at spaces) are a union; ``--exclude`` takes the same forms away. A word joins parts
with ``,`` into an intersection: ``tag:api,path:api/`` is the models tagged ``api`` AND
under ``api/``. The result is in run order.

A part is a method with graph operators around it. Methods:

- ``x``: the model whose relation (``schema.x``) or bare name (when one schema has it) is
  ``x``. When no model is named ``x`` and ``x`` is a schema (``raw``), every model in that
  schema: a model name wins over a schema name.
- wildcards, fnmatch's ``*``, ``?`` and character sets, on relation names (``raw.*``,
  ``*agencies``, ``staging.agenc?es``); a pattern without a dot also matches bare names.
- ``tag:x``; ``path:dir/`` (files under it, or a glob such as ``path:staging/*.sql``);
  ``source:x`` (``source:NAME.table``: the task copying a table of ``[sources.NAME]``,
  ``source:NAME`` all of them; otherwise the models reading the relation ``x`` that no
  model produces); ``kind:x`` (table, view, incremental, sql, seed, dump, python,
  extract). Values of these may hold wildcards too (``tag:api_*``).
- ``stale``: what ``build`` would run now, the models ``dbluigi plan`` says would run
  (edited, upstream rebuilt, missing, changed outside dbluigi, incremental); the keyword
  wins over a model named ``stale`` (select that one as ``schema.stale``).
- ``result:error|fail|skipped|success``: the models that ended so in the last run recorded
  in the target (``dbluigi.runs``, whatever its command): ``error`` failed for any class
  but ``check``, ``fail`` failed a check, ``skipped`` had a failed upstream. A partitioned
  model ends as its worst value did (error, fail, skipped, success, in that order).

Graph operators, on any method: ``+x`` (and all its ancestors), ``N+x`` (and its ancestors
up to N generations), ``x+`` and ``x+N`` (descendants likewise), ``@x`` (x, its
descendants and every ancestor of those, as dbt). ``+tag:x``, ``path:api/+1``,
``2+raw.*`` and ``stale+`` work alike.

``stale`` and ``result:`` read the target through a ``TargetState`` the caller passes; it
is asked only when such a selector is used. Other methods that match nothing are an
error with the closest names; ``stale`` and ``result:`` may match nothing.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dbluigi.errors import SelectorError
from dbluigi.project import Project
from dbluigi.relation import Relation
from dbluigi.suggest import close_matches

if TYPE_CHECKING:
    from dbluigi.state import TaskRecord

METHODS = ("tag", "path", "source", "kind", "result")
RESULTS = ("error", "fail", "skipped", "success")  # worst first
KINDS = ("table", "view", "incremental", "sql", "seed", "dump", "python", "extract")
EXAMPLES = "for example: agency_reporting+, tag:nightly, path:staging/, raw.*, stale+"
_PART = re.compile(r"(?P<at>@)?(?:(?P<up>\d*)\+)?(?P<core>.*?)(?:\+(?P<down>\d*))?")
_WILDCARD = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class TargetState:
    """What ``stale`` and ``result:`` read from the target, each asked only when used:
    ``stale`` the models a build would run now, ``last_run`` the task attempts of the
    last run (None when no run is recorded)."""

    stale: Callable[[], Collection[str]]
    last_run: Callable[[], Sequence[TaskRecord] | None]


def select(
    project: Project,
    selectors: Sequence[str] = (),
    exclude: Sequence[str] = (),
    *,
    state: TargetState | None = None,
    whole_lineage: bool = False,
) -> tuple[str, ...]:
    """Models matched by the union of ``selectors`` (all when empty) minus ``exclude``, in
    run order. ``whole_lineage``: a word with no graph operator stands for its whole
    lineage, upstream and downstream (``lineage``)."""
    selection = _Selection(project, state)
    words = _words(selectors)
    chosen = set(project.models) if not words else selection.union(words, whole_lineage)
    chosen -= selection.union(_words(exclude), False)
    return tuple(n for n in project.order if n in chosen)


def _words(selectors: Iterable[str]) -> list[str]:
    """The words of each selector (split at spaces); a blank one is kept, to be refused."""
    return [word for selector in selectors for word in (selector.split() or [selector.strip()])]


class _Selection:
    """One call's selection: the target's state is read at most once."""

    def __init__(self, project: Project, state: TargetState | None) -> None:
        self.project = project
        self.state = state
        self._stale: set[str] | None = None
        self._results: dict[str, str] | None = None

    def union(self, words: Sequence[str], whole_lineage: bool) -> set[str]:
        result: set[str] = set()
        for word in words:
            result |= self.word(word, whole_lineage)
        return result

    def word(self, word: str, whole_lineage: bool) -> set[str]:
        parts = word.split(",")
        found = self.part(parts[0], word)
        for part in parts[1:]:
            found &= self.part(part, word)
        if whole_lineage and not any(c in word for c in "+@"):
            graph = self.project.graph
            found |= graph.upstream(found) | graph.downstream(found)
        return {n for n in found if n in self.project.models}

    def part(self, part: str, word: str) -> set[str]:
        shown = repr(part) if part == word else f"{part!r} (in {word!r})"  # as typed
        match = _PART.fullmatch(part)
        if not part or match is None or not match["core"]:
            raise SelectorError(f"empty selector {shown}", hint=EXAMPLES)
        if match["at"] and match["up"] is not None:
            raise SelectorError(
                f"selector {shown}: @ and a leading + do not go together",
                hint=f"@ already takes every ancestor of the descendants: write @{match['core']}",
            )
        base = self.method(match["core"], shown)
        return self.grow(base, match["at"], match["up"], match["down"])

    def grow(self, base: set[str], at: str | None, up: str | None, down: str | None) -> set[str]:
        graph = self.project.graph
        nodes = set(base)
        if at:
            nodes |= graph.downstream(base)
            nodes |= graph.upstream(nodes)
            return nodes
        if up is not None:
            nodes |= _within(base, graph.parents, up)
        if down is not None:
            nodes |= _within(base, graph.children, down)
        return nodes

    def method(self, core: str, shown: str) -> set[str]:
        project = self.project
        if core == "stale":
            return self.stale(shown)
        method, colon, value = core.partition(":")
        if not colon:
            return _by_name(project, core, shown)
        method = method.lower()
        if not value:
            raise SelectorError(f"selector {shown} has no value after {method}:", hint=EXAMPLES)
        if method == "tag":
            return _by_tag(project, value, shown)
        if method == "path":
            return _by_path(project, value, shown)
        if method == "source":
            return _by_source(project, value, shown)
        if method == "kind":
            return _by_kind(project, value, shown)
        if method == "result":
            return self.result(value, shown)
        close = close_matches(method, METHODS)
        maybe = f"did you mean {close[0]}:? " if close else ""
        raise SelectorError(
            f"selector {shown}: unknown method {method!r}",
            hint=f"{maybe}methods: {', '.join(m + ':' for m in METHODS)}, and the keyword "
            "stale; without a method a selector names models (schema.name, name, raw.*)",
        )

    def _target(self, shown: str) -> TargetState:
        if self.state is None:
            raise SelectorError(
                f"selector {shown} reads the target's state, which this command does not",
                hint="use it with build, rebuild, plan, check or lineage",
            )
        return self.state

    def stale(self, shown: str) -> set[str]:
        if self._stale is None:
            self._stale = set(self._target(shown).stale())
        return set(self._stale)

    def result(self, value: str, shown: str) -> set[str]:
        wanted = value.lower()
        if wanted not in RESULTS:
            raise SelectorError(
                f"selector {shown}: {value!r} is not a result",
                hint=_hint(wanted, RESULTS, "results") + f"; one of {', '.join(RESULTS)}",
            )
        if self._results is None:
            records = self._target(shown).last_run()
            if records is None:
                raise SelectorError(
                    f"selector {shown}: the target has no run recorded yet",
                    hint="run dbluigi build first; result: selects by how the last run ended",
                )
            self._results = last_results(records)
        return {m for m, r in self._results.items() if r == wanted and m in self.project.models}


def last_results(records: Iterable[TaskRecord]) -> dict[str, str]:
    """Each model's result in one run (``RESULTS``) from its task attempts: the last
    attempt of each partition counts, and a model ends as its worst partition."""
    last: dict[tuple[str, str], TaskRecord] = {}
    for r in records:
        key = (r.model, r.partition)
        seen = last.get(key)
        if seen is None or (r.attempt, r.started_at) >= (seen.attempt, seen.started_at):
            last[key] = r
    results: dict[str, str] = {}
    for (model, _), r in last.items():
        if r.status == "failed":
            result = "fail" if r.failure_class == "check" else "error"
        else:
            result = r.status
        before = results.get(model)
        if before is None or RESULTS.index(result) < RESULTS.index(before):
            results[model] = result
    return results


def _within(base: set[str], step: Callable[[str], Collection[str]], depth: str) -> set[str]:
    """Nodes reached from ``base`` by ``step`` (parents or children), at most ``depth``
    generations away (every generation when ``depth`` is empty)."""
    limit = int(depth) if depth else None
    seen: set[str] = set()
    frontier = set(base)
    generation = 0
    while frontier and (limit is None or generation < limit):
        frontier = {n for node in frontier for n in step(node)} - seen
        seen |= frontier
        generation += 1
    return seen


def _names_a_model(name: str, models: Iterable[str]) -> bool:
    """Whether ``name`` is a model's relation or bare name as written: a model named
    ``[gb]m`` is that model, not a wildcard's character set."""
    return any(name in (m, Relation(m).name) for m in models)


def _matches(pattern: str, values: Iterable[str]) -> set[str]:
    return {v for v in values if fnmatch.fnmatchcase(v, pattern)}


def _by_name(project: Project, name: str, shown: str) -> set[str]:
    """A relation or bare name, a wildcard, or a schema when no model has that name; on a
    target that builds a schema elsewhere (``schema_suffix``, ``schemas``), the name as
    the project has it too (``staging.x`` selects ``staging_dev.x``), so one command line
    serves every target."""
    name = name.lower()
    schema_map, dot = project.config.schema_map, "." in name
    moved = schema_map.relation(name) if dot else schema_map.rename(name)  # or a schema
    try:
        found = _by_name_as_built(project, name, shown)
    except SelectorError as as_typed:
        if moved == name:
            raise
        try:
            return _by_name_as_built(project, moved, shown)
        except SelectorError:
            raise as_typed from None  # what the name as typed matched: nothing
    if dot and moved != name:  # the project's name of other models too?
        try:
            also = _by_name_as_built(project, moved, shown)
        except SelectorError:
            also = found
        if also != found:
            raise SelectorError(
                f"selector {shown} names {', '.join(sorted(found))} as this target builds "
                f"them, and {', '.join(sorted(also))} by the project's names",
                hint=f"name them as built: {sorted(found)[0]} or {sorted(also)[0]}",
            )
    return found


def _by_name_as_built(project: Project, name: str, shown: str) -> set[str]:
    """``_by_name`` of the relations as the target builds them."""
    models = project.models
    if _WILDCARD.search(name) and not _names_a_model(name, models):
        found = _matches(name, models)
        if "." not in name:
            found |= {m for m in models if fnmatch.fnmatchcase(Relation(m).name, name)}
        if not found:
            raise SelectorError(
                f"selector {shown} matches no model",
                hint=_hint(name, sorted(models), "models"),
            )
        return found
    if "." not in name and name not in {Relation(m).name for m in models}:
        in_schema = {m for m in models if Relation(m).schema == name}
        if in_schema:
            return in_schema
    return {_resolve(project, name, shown, nodes=tuple(models))}


def _by_tag(project: Project, tag: str, shown: str) -> set[str]:
    tags = sorted({t for m in project.models.values() for t in m.tags})
    wanted = _matches(tag, tags) if _WILDCARD.search(tag) else {tag}
    found: set[str] = {m.relation for m in project.models.values() if wanted & set(m.tags)}
    if not found:
        raise SelectorError(
            f"selector {shown}: no model has tag {tag!r}", hint=_hint(tag, tags, "tags")
        )
    return found


def _by_kind(project: Project, kind: str, shown: str) -> set[str]:
    kind = kind.lower()
    found: set[str] = {
        m.relation
        for m in project.models.values()
        if (fnmatch.fnmatchcase(m.kind, kind) if _WILDCARD.search(kind) else m.kind == kind)
    }
    if found:
        return found
    present = sorted({m.kind for m in project.models.values()})
    if kind in KINDS:
        raise SelectorError(
            f"selector {shown}: no model is of kind {kind!r}",
            hint=f"the project's kinds: {', '.join(present)}",
        )
    raise SelectorError(
        f"selector {shown}: {kind!r} is not a kind",
        hint=_hint(kind, KINDS, "kinds") + f"; kinds: {', '.join(KINDS)}",
    )


def _by_source(project: Project, name: str, shown: str) -> set[str]:
    """``source:NAME.table`` (or its relation) selects the task copying that table from
    the source database ``[sources.NAME]``, ``source:NAME`` all of them; any other name
    is a source relation, a table no model produces. On a target that builds a schema
    elsewhere, a relation the project's scripts create is named as the project has it
    too (``source:staging.x`` is ``staging_dev.x``), as ``_by_name`` takes it."""
    name = name.lower()
    found: set[str] = set()
    for candidate in dict.fromkeys((name, project.config.schema_map.relation(name))):
        with contextlib.suppress(SelectorError):
            found |= _by_source_as_built(project, candidate, shown)
        if found and not _WILDCARD.search(name):  # a name as typed wins; a pattern takes both
            return found
    return found or _by_source_as_built(project, name, shown)  # raises as the name is typed


def _by_source_as_built(project: Project, name: str, shown: str) -> set[str]:
    """``_by_source`` of the relations as the target builds them."""
    tables = project.config.source_tables.values()
    if _WILDCARD.search(name):
        found = {
            t.relation for t in tables if _matches(name, (t.selector, t.source, t.relation))
        } | _matches(name, project.sources)
        if not found:
            raise SelectorError(
                f"selector {shown} matches no source table",
                hint=_hint(
                    name, sorted({*project.sources, *(t.selector for t in tables)}), "source tables"
                ),
            )
        return found
    found = {t.relation for t in tables if name in (t.selector, t.source, t.relation)}
    if found:
        return found
    if not tables:
        return {_resolve(project, name, shown, nodes=project.sources)}
    try:
        return {_resolve(project, name, shown, nodes=project.sources)}
    except SelectorError:
        choices = sorted({*project.sources, *(t.selector for t in tables)})
        raise SelectorError(
            f"selector {shown} matches no source table",
            hint=_hint(name, choices, "source tables"),
        ) from None


def _by_path(project: Project, prefix: str, shown: str) -> set[str]:
    prefix = prefix.lstrip("./")
    models = project.models.values()
    found: set[str]
    if _WILDCARD.search(prefix):
        found = {m.relation for m in models if fnmatch.fnmatchcase(m.path, prefix)}
    else:
        found = {m.relation for m in models if m.path == prefix or m.path.startswith(prefix)}
    if not found:
        folders = sorted({m.path.rsplit("/", 1)[0] + "/" for m in models if "/" in m.path})
        raise SelectorError(
            f"selector {shown}: no model file under {prefix!r}",
            hint=_hint(prefix, folders, "folders"),
        )
    return found


def _resolve(project: Project, name: str, shown: str, *, nodes: Sequence[str]) -> str:
    if name in nodes:
        return name
    if "." not in name:
        matches = [n for n in nodes if Relation(n).name == name]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise SelectorError(
                f"selector {shown} is ambiguous: it matches {', '.join(sorted(matches))}",
                hint="qualify it with its schema, for example " + sorted(matches)[0],
            )
    candidates = sorted(
        {*nodes, *(Relation(n).name for n in nodes), *(Relation(n).schema for n in nodes)}
    )
    what = "source" if nodes is project.sources else "model"
    raise SelectorError(
        f"selector {shown} matches no {what}", hint=_hint(name, candidates, f"{what}s")
    )


def _hint(word: str, choices: Sequence[str], what: str) -> str:
    close = close_matches(word, choices, n=3, cutoff=0.5)
    if close:
        return "closest matches: " + ", ".join(close)
    shown = ", ".join(choices[:10]) + (" ..." if len(choices) > 10 else "")
    return f"known {what}: {shown}" if choices else f"the project has no {what}"
