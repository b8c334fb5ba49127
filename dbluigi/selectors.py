"""Selectors: which models a command acts on.

``name``, ``schema.name``, ``name+`` (and downstream), ``+name`` (and upstream),
``+name+``, ``tag:x``, ``path:dir/``, ``source:x`` (``source:NAME.table``: the task
copying a table of ``[sources.NAME]``); several at once are a union, ``--exclude``
takes the same forms away. The result is in run order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dbluigi.errors import SelectorError
from dbluigi.project import Project
from dbluigi.relation import Relation
from dbluigi.suggest import close_matches


def select(
    project: Project, selectors: Sequence[str] = (), exclude: Sequence[str] = ()
) -> tuple[str, ...]:
    """Models matched by the union of ``selectors`` (all when empty) minus ``exclude``, in run order."""
    chosen = set(project.models) if not selectors else _union(project, selectors)
    chosen -= _union(project, exclude)
    return tuple(n for n in project.order if n in chosen)


def _union(project: Project, selectors: Iterable[str]) -> set[str]:
    result: set[str] = set()
    for selector in selectors:
        result |= _one(project, selector.strip())
    return result


def _one(project: Project, selector: str) -> set[str]:
    if not selector or selector in ("+", "++"):
        raise SelectorError(
            f"empty selector {selector!r}",
            hint="for example: agency_reporting+, tag:nightly, path:staging/",
        )
    up = selector.startswith("+")
    down = selector.endswith("+")
    core = selector.strip("+")
    graph = project.graph
    if core.startswith("tag:"):
        base = _by_tag(project, core[4:], selector)
    elif core.startswith("path:"):
        base = _by_path(project, core[5:], selector)
    elif core.startswith("source:"):
        base = _by_source(project, core[7:], selector)
    else:
        base = {_resolve(project, core, selector, nodes=tuple(project.models))}
    nodes = set(base)
    if up:
        nodes |= graph.upstream(base)
    if down:
        nodes |= graph.downstream(base)
    return {n for n in nodes if n in project.models}


def _by_tag(project: Project, tag: str, selector: str) -> set[str]:
    found: set[str] = {m.relation for m in project.models.values() if tag in m.tags}
    if not found:
        tags = sorted({t for m in project.models.values() for t in m.tags})
        raise SelectorError(
            f"selector {selector!r}: no model has tag {tag!r}", hint=_hint(tag, tags, "tags")
        )
    return found


def _by_source(project: Project, name: str, selector: str) -> set[str]:
    """``source:NAME.table`` (or its relation) selects the task copying that table from
    the source database ``[sources.NAME]``, ``source:NAME`` all of them; any other name
    is a source relation, a table no model produces."""
    name = name.lower()
    tables = project.config.source_tables.values()
    found = {t.relation for t in tables if name in (t.selector, t.source, t.relation)}
    if found:
        return found
    if not tables:
        return {_resolve(project, name, selector, nodes=project.sources)}
    try:
        return {_resolve(project, name, selector, nodes=project.sources)}
    except SelectorError:
        choices = sorted({*project.sources, *(t.selector for t in tables)})
        raise SelectorError(
            f"selector {selector!r} matches no source table",
            hint=_hint(name, choices, "source tables"),
        ) from None


def _by_path(project: Project, prefix: str, selector: str) -> set[str]:
    prefix = prefix.lstrip("./")
    found: set[str] = {
        m.relation for m in project.models.values() if m.path == prefix or m.path.startswith(prefix)
    }
    if not found:
        folders = sorted(
            {m.path.rsplit("/", 1)[0] + "/" for m in project.models.values() if "/" in m.path}
        )
        raise SelectorError(
            f"selector {selector!r}: no model file under {prefix!r}",
            hint=_hint(prefix, folders, "folders"),
        )
    return found


def _resolve(project: Project, name: str, selector: str, *, nodes: Sequence[str]) -> str:
    name = name.lower()
    if name in nodes:
        return name
    if "." not in name:
        matches = [n for n in nodes if Relation(n).name == name]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise SelectorError(
                f"selector {selector!r} is ambiguous: it matches {', '.join(sorted(matches))}",
                hint="qualify it with its schema, for example " + sorted(matches)[0],
            )
    candidates = sorted(set(nodes) | {Relation(n).name for n in nodes})
    what = "source" if nodes is project.sources else "model"
    raise SelectorError(
        f"selector {selector!r} matches no {what}", hint=_hint(name, candidates, f"{what}s")
    )


def _hint(word: str, choices: Sequence[str], what: str) -> str:
    close = close_matches(word, choices, n=3, cutoff=0.5)
    if close:
        return "closest matches: " + ", ".join(close)
    shown = ", ".join(choices[:10]) + (" ..." if len(choices) > 10 else "")
    return f"known {what}: {shown}" if choices else f"the project has no {what}"
