"""Load a project: files -> headers -> SQL facts -> models, checks and the graph.

This is the first layer of dbluigi and touches no database and no luigi. The
result, ``Project``, is everything later stages need: each model with its
kind, rendered SQL, statements, resolved reads and writes, header, patch and
checks, and the dependency graph in a deterministic order.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbluigi import forked
from dbluigi.cache import SqlInfoCache
from dbluigi.config import CONFIG_FILE, STATE_DIR, Config, load_config
from dbluigi.environments import SchemaMap
from dbluigi.errors import DuplicateRelationError, ProjectError
from dbluigi.exports import dump_file
from dbluigi.graph import WAITS, Edge, Graph
from dbluigi.headers import Header, IndexSpec, ModelKind, parse_header
from dbluigi.names import RESERVED, STATE_SCHEMA, reserved_name
from dbluigi.relation import Relation
from dbluigi.render import PLACEHOLDER, placeholders, render
from dbluigi.scan import ProjectFile, scan_files, utf8_text
from dbluigi.snapshot import ProjectSnapshot
from dbluigi.sqltypes import SqlInfo, Statement, TableRef
from dbluigi.suggest import did_you_mean
from dbluigi.writes import Chains, find_chains, order_chains, replay_edges

if TYPE_CHECKING:
    from dbluigi.seeds import YamlTable

QUERY_KINDS = ("table", "view", "incremental", "dump")
TABLE_CHECK_KINDS = ("table", "view", "incremental", "seed", "python")
PATCH_KINDS = ("table", "incremental", "seed")
_INFERENCE_VALUE = "NULL"  # what runtime placeholders read as while inferring dependencies
# A load parses the rest of its files on all cores once this many were not in the parse
# cache and at least PARALLEL_REST are left (a pool takes 10-30 ms to start).
PARALLEL_AFTER = 32
PARALLEL_REST = 256


@dataclass(frozen=True)
class Patch:
    """A model's ``.patch.sql``: corrections applied to the new table before its checks."""

    path: str
    text: str
    statements: tuple[Statement, ...]
    refs: tuple[TableRef, ...] = ()  # what it reads, as written (resolved into the model's reads)
    writes: tuple[TableRef, ...] = ()  # what it changes, as written: the model's table


@dataclass(frozen=True)
class CheckFile:
    """One query of a ``.check.sql`` (or a whole ``.check.py``), placed in the graph.

    It belongs to ``owner`` and gates ``gate``'s swap: the owner's, unless the query
    reads a model downstream of the owner, which it then gates (the owner is published
    by then). Models it reads that are neither upstream of the gate nor the gate itself
    are ``waits``: the gate runs after them when they are in the run (ordering only), and
    the query is not run when one of them is not available (failed, skipped, never built).
    """

    path: str
    format: str  # "sql" | "python"
    owner: Relation
    gate: Relation
    text: str  # the whole file, rendered
    statements: tuple[Statement, ...] = ()  # the one query of a .check.sql
    reads: tuple[Relation, ...] = ()
    waits: tuple[Relation, ...] = ()
    whole: bool = True  # every query of the file gates the same model

    @property
    def line(self) -> int | None:
        return self.statements[0].line if self.statements else None

    @property
    def sql(self) -> str:
        """What it runs: its query (of a ``.check.sql``), or the whole ``.check.py``."""
        return self.statements[0].sql if self.statements else self.text

    @property
    def name(self) -> str:
        """How results and messages call it: ``path:line`` of a query, or the file."""
        return f"{self.path}:{self.line}" if self.line is not None else self.path

    @property
    def moved(self) -> bool:
        return self.gate != self.owner

    def describe(self) -> str:
        """The check's name and, when it runs elsewhere than at its owner, why."""
        if self.moved:
            return (
                f"{self.name} (a check of {self.owner}, run at {self.gate}: it reads {self.gate})"
            )
        return self.name


@dataclass(frozen=True)
class Model:
    """One model or seed: a file that produces (or, for ``sql``, modifies) relations."""

    relation: Relation
    path: str
    format: str  # "sql" | "csv" | "yaml" | "python"
    kind: ModelKind
    header: Header
    text: str  # the file as rendered with the project's variables
    statements: tuple[Statement, ...] = ()
    reads: tuple[Relation, ...] = ()
    writes: tuple[Relation, ...] = ()  # creates and modifies
    depends: tuple[Relation, ...] = ()
    patch: Patch | None = None
    creates: tuple[Relation, ...] = ()  # relations a sql model CREATEs: it produces them
    creates_itself: bool = False  # a sql model that CREATEs the table of its own name
    modifies: tuple[Relation, ...] = ()  # relations it changes in place (dbluigi.writes)
    write_lines: tuple[tuple[Relation, int], ...] = ()  # where each write is first made
    defines: tuple[Relation, ...] = ()  # functions, procedures and macros it creates
    calls: tuple[Relation, ...] = ()  # routines it uses that it does not define
    schemas: tuple[str, ...] = ()  # schemas it creates
    part: str | None = None  # one table of a multi-table YAML file: its key there

    @property
    def schema(self) -> str:
        return self.relation.schema

    @property
    def name(self) -> str:
        return self.relation.name

    @property
    def tags(self) -> tuple[str, ...]:
        return self.header.tags

    @property
    def unmanaged(self) -> bool:
        """Whether it writes relations no model produces, run once per change of its file."""
        return self.header.unmanaged

    def line_of_write(self, relation: str) -> int | None:
        """The line of the first statement that creates or modifies ``relation``."""
        lines: dict[str, int] = dict(self.write_lines)
        return lines.get(relation) or self.header.line_of("modifies")

    @property
    def publishes_relation(self) -> bool:
        """Whether the model's own relation is a table or view it publishes (a Python step
        that modifies other relations publishes none: it is applied in their builds)."""
        if self.kind == "python":
            return not self.modifies
        return self.kind in ("table", "view", "incremental", "seed", "extract")

    @property
    def created(self) -> tuple[Relation, ...]:
        """Every table a ``sql`` model's statements CREATE, its own name's included."""
        return (*((self.relation,) if self.creates_itself else ()), *self.creates)

    @property
    def state_variant(self) -> str:
        """For a ``sql`` model that creates tables other than its own name's (they may
        move with a variable or a target's schemas), the key its build of them is also
        kept under in the state (``StateStore.record_variant``); else ''."""
        if not self.creates or self.header.partition is not None:
            return ""
        return "@" + ",".join(sorted(self.created))

    @property
    def query(self) -> str:
        """The single query of a query kind."""
        return self.statements[0].sql


@dataclass(frozen=True)
class ProjectWarning:
    """Something a command should tell the user about a file that still loads."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Project:
    root: Path
    config: Config
    models: Mapping[str, Model]
    sources: tuple[str, ...]
    checks: tuple[CheckFile, ...]
    graph: Graph
    readers_of: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    chains: Chains = field(default_factory=Chains)  # producers and modifiers (dbluigi.writes)
    moved: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """Each relation the target builds in another schema than the project names it
    (``[targets.NAME] schemas``): ``(schema, name)`` as written -> the schema it is in."""

    @property
    def dialect(self) -> str:
        return self.config.dialect

    @cached_property
    def state_variants(self) -> Mapping[str, str]:
        """``Model.state_variant`` of the models that have one."""
        return {r: m.state_variant for r, m in self.models.items() if m.state_variant}

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Models (not sources) in run order."""
        return tuple(n for n in self.graph.order if n in self.models)

    @cached_property
    def checks_by_gate(self) -> Mapping[str, tuple[CheckFile, ...]]:
        grouped: dict[str, list[CheckFile]] = defaultdict(list)
        for check in self.checks:
            grouped[check.gate].append(check)
        return {k: tuple(v) for k, v in grouped.items()}

    @cached_property
    def view_queries(self) -> Mapping[tuple[str, str], str]:
        """The query of every view model, by (schema, name)."""
        return {(m.schema, m.name): m.query for m in self.models.values() if m.kind == "view"}

    @cached_property
    def warnings(self) -> tuple[ProjectWarning, ...]:
        """Statements that run as written because sqlglot cannot parse them, by file."""
        found = [
            ProjectWarning(
                m.path,
                st.unparsed.line,
                f"sqlglot cannot parse this statement ({st.unparsed.reason}); it runs as "
                "written: dbluigi infers no dependencies from it (only -- depends: counts) "
                "and does not qualify its bare table names",
            )
            for m in self.models.values()
            for st in m.statements
            if st.unparsed is not None
        ]
        return tuple(sorted(found, key=lambda w: (w.path, w.line)))

    def as_built(self, relation: str) -> str:
        """The relation this target builds for ``relation`` as the project names it
        (``staging.x`` is ``staging_dev.x`` under ``schema_suffix = "_dev"``); a relation
        the target does not move (an input, a source's copy) as it is."""
        moved = self.config.schema_map.relation(relation)
        if moved != relation and moved in self.graph.position:
            return moved
        return relation

    def as_named(self, relation: str) -> str:
        """The project's name of ``relation`` as this target builds it (``as_built``
        undone); a relation the target does not move as it is. Read from what the target
        moves, not from its schema map, which two schemas may share (``schemas = { a =
        "dev", b = "dev" }``)."""
        schema, dot, name = relation.partition(".")
        original = self._unmoved.get((schema, name)) if dot else None
        return relation if original is None else f"{original}.{name}"

    @cached_property
    def _unmoved(self) -> Mapping[tuple[str, str], str]:
        """``moved`` undone: ``(schema, name)`` as built -> the schema the project names."""
        return {(to, name): schema for (schema, name), to in self.moved.items()}

    @cached_property
    def moved_schemas(self) -> Mapping[str, str]:
        """Each schema of the project whose relations this target builds elsewhere, and
        where (``{"staging": "dev_staging"}``); empty when it moves none."""
        return {schema: to for (schema, _), to in sorted(self.moved.items())}

    def gated_checks(self, relation: str) -> tuple[CheckFile, ...]:
        """The check queries (and ``.check.py`` files) that gate ``relation``'s swap."""
        return self.checks_by_gate.get(relation, ())

    def write_notes(self, relation: str) -> list[str]:
        """What ``relation``'s model produces and modifies, in words, for ``plan`` and
        ``lineage`` (``dbluigi.writes``)."""
        model = self.models.get(relation)
        if model is None:
            return []
        notes = []
        if model.creates:
            notes.append(f"produces {', '.join(model.creates)}")
        modifiers = self.chains.modifiers.get(relation, ())
        if modifiers:
            notes.append(f"then, in its build: {' -> '.join(modifiers)}")
        producer = self.chains.owner.get(relation)
        if producer is not None:
            chain = self.chains.modifiers[producer]
            step = chain.index(relation) + 1
            notes.append(
                f"modifies {', '.join(model.modifies)}: step {step} of {len(chain)} of "
                f"{producer}'s build"
            )
        if model.unmanaged and model.modifies:
            notes.append(
                f"unmanaged: writes {', '.join(model.modifies)}; runs once per change of "
                "its file, never replayed"
            )
        return notes

    def check_notes(self, relation: str) -> list[str]:
        """How ``relation``'s checks gate swaps, in words, for ``plan`` and ``lineage``:
        its header checks, the check queries gating its swap (and what they wait for),
        and its own check queries that gate another model's swap."""
        model = self.models.get(relation)
        notes = [c.text for c in model.header.checks] if model else []
        for check in self.gated_checks(relation):
            note = check.describe()
            if check.waits:
                note += f", reads {', '.join(check.waits)} as published (waits for it)"
            notes.append(note)
        for check in self.moved_checks.get(relation, ()):
            notes.append(f"{check.name} gates {check.gate}'s swap (it reads {check.gate})")
        return notes

    @cached_property
    def moved_checks(self) -> Mapping[str, tuple[CheckFile, ...]]:
        """By owner, its check queries that gate another model's swap."""
        grouped: dict[str, list[CheckFile]] = defaultdict(list)
        for check in self.checks:
            if check.moved:
                grouped[check.owner].append(check)
        return {k: tuple(v) for k, v in grouped.items()}

    def check_waits(self, relation: str) -> tuple[str, ...]:
        """Models the checks gating ``relation`` read without depending on them."""
        return tuple(dict.fromkeys(w for c in self.gated_checks(relation) for w in c.waits))

    def dump_file(self, model: Model) -> Path:
        """The file a dump model writes (``dbluigi.exports``)."""
        return dump_file(
            self.config,
            model.name,
            model.header.path,
            path=model.path,
            line=model.header.line_of("path"),
        )

    def input_files(self, model: Model) -> tuple[str, ...]:
        """The files its ``-- inputs:`` globs match now, relative to the project folder
        (``/``-separated), sorted; read at every call, never cached: they change outside
        the project's files."""
        found: set[str] = set()
        for pattern in model.header.inputs:
            found.update(
                path.relative_to(self.root).as_posix()
                for path in self.root.glob(pattern)
                if path.is_file()
            )
        return tuple(sorted(found))

    def model_parents(self, relation: str) -> tuple[str, ...]:
        """Models (not sources) that must be built before ``relation``, through sources too.

        A modifier is built by its producer's task (``dbluigi.writes``): it stands for
        its producer here, and a chain's members are never each other's parents."""
        result: set[str] = set()
        stack = list(self.graph.parents(relation))
        seen: set[str] = set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            if node in self.models:
                result.add(node)
            else:
                stack.extend(self.graph.parents(node))
        owner = self.chains.owner
        members = set(self.chains.members(relation))
        result = {owner.get(m, m) for m in result} - members
        return tuple(sorted(result, key=self.graph.position.__getitem__))


def load_project(
    root: Path | str,
    *,
    target: str | None = None,
    variables: Mapping[str, str] | None = None,
    use_cache: bool = True,
    keep: bool = True,
) -> Project:
    """Scan ``root`` and build the validated project; raises ProjectError on any bad input.
    ``use_cache`` off, no cache is read or written; ``keep`` off, the project is not kept
    for (nor read back from) another command (``dbluigi.snapshot``), as the loads of a
    unit test's variables: they would push the project the commands load out."""
    root = Path(root)
    config = load_config(root, target=target, variables=variables)
    keeping = use_cache and keep
    snapshot = ProjectSnapshot(root / STATE_DIR / "cache", root, config) if keeping else None
    kept = snapshot.read() if snapshot is not None else None
    if isinstance(kept, Project):  # nothing changed since it was loaded
        # where dumps write depends on the output folder's symlinks, outside the files
        _check_dump_paths(kept)
        return kept
    folders: dict[str, list[str]] = {}
    files = scan_files(
        root, default_schema=config.schema, ignore=(STATE_DIR, *config.outputs), folders=folders
    )
    if snapshot is not None:
        snapshot.look_at(files)
    cache = SqlInfoCache(root / STATE_DIR / "cache", enabled=use_cache)
    loader = _Loader(root, config, cache)
    project = loader.load(files)
    _check_dump_paths(project)
    cache.save()
    if snapshot is not None:
        snapshot.write(project, folders)
    return project


class _Loader:
    def __init__(self, root: Path, config: Config, cache: SqlInfoCache) -> None:
        self.root = root
        self.config = config
        self.cache = cache
        self.dialect = config.dialect
        self.texts: dict[str, str] = {}  # YAML files, read once
        self.parts: dict[tuple[str, Relation], YamlTable] = {}  # of multi-table YAML files

    def load(self, files: list[ProjectFile]) -> Project:
        model_files = self._split_yaml_tables([f for f in files if f.role == "model"])
        extracts = _extract_models(self.config)
        if not model_files and not extracts:
            raise ProjectError(
                f"no models found in {self.root}",
                hint="add .sql models or .csv/.yml seeds, or run dbluigi init DIR for a starter project",
            )
        companions: dict[str, dict[str, ProjectFile]] = defaultdict(dict)
        for f in files:
            if f.role != "model":
                companions[f.relation][f.role] = f
        by_relation: dict[str, ProjectFile] = {f.relation: f for f in model_files}
        for relation, extract in extracts.items():
            if relation in by_relation:
                raise DuplicateRelationError(
                    f"{by_relation[relation].path} and the source table declared in "
                    f"{CONFIG_FILE} both map to relation {relation}",
                    path=CONFIG_FILE,
                    line=extract.header.line_of("kind"),
                    hint="remove one of them, or give the source another schema = ...",
                )
            if "patch" in companions.get(relation, {}):
                raise ProjectError(
                    f"{relation} is copied from a source database, and a patch applies to "
                    "models built from files",
                    path=companions[relation]["patch"].path,
                    hint=f"correct the data in a model that reads {relation}",
                )
        for relation, roles in companions.items():
            if relation not in by_relation and relation not in extracts:
                orphan = next(iter(roles.values()))
                raise ProjectError(
                    f"no model {relation} for this {orphan.role.replace('_', ' ')} file",
                    path=orphan.path,
                    hint=did_you_mean(relation, by_relation, quote=str)
                    or "name it after the model it belongs to",
                )

        for f in model_files:
            part = self._part(f)
            _refuse_reserved(f.relation, f.path, part.line if part else None)
        for extract in extracts.values():
            _refuse_reserved(extract.relation, extract.path, extract.header.line_of("kind"))

        raw: dict[str, tuple[Model, SqlInfo | None]] = {}
        for f, loaded in zip(model_files, self._models(model_files, companions), strict=True):
            raw[f.relation] = loaded
        raw.update((relation, (model, None)) for relation, model in extracts.items())
        check_files = [
            (file, *self._read_check(file))
            for relation in sorted(companions)
            for role, file in sorted(companions[relation].items())
            if role in ("check_sql", "check_py")
        ]
        names = _NameResolver(self.config.schema, raw)
        if self.config.schema_map:
            names.rename_built(self.config.schema_map, raw, extracts)
            self._refuse_landings(names, raw)
            check_reads = [(f.path, info.reads) for f, _, info in check_files if info]
            self._refuse_moves_onto_inputs(names, raw, check_reads)

        models: dict[str, Model] = {}
        for original, (model, info) in raw.items():
            relation = names.built(original)
            refs = (*info.reads, *info.references) if info else ()
            patch_refs = model.patch.refs if model.patch else ()
            reads = names.resolve_all((*refs, *patch_refs), model.path)
            creates = names.resolve_all(info.creates if info else (), model.path)
            declared = [
                names.resolve(
                    _to_ref(render(m, self.config.variables, path=model.path)), model.path
                )
                for m in model.header.modifies
            ]
            modifies = tuple(
                dict.fromkeys(
                    w
                    for w in (
                        *names.resolve_all(info.modifies if info else (), model.path),
                        *declared,
                    )
                    if w not in creates
                )
            )
            writes = (*creates, *modifies)
            for written in writes:
                _refuse_reserved(written, model.path, None, written=True)
            write_lines = (
                tuple(
                    (w, line)
                    for ref in (*info.creates, *info.modifies)
                    if (w := names.resolve(ref, model.path)) and (line := info.line_of(ref))
                )
                if info
                else ()
            )
            depends = tuple(names.resolve(_to_ref(d), model.path) for d in model.header.depends)
            if relation in depends:
                itself = model.header.depends[depends.index(relation)]
                raise ProjectError(
                    f"-- depends: {itself} is this model itself",
                    path=model.path,
                    line=model.header.line_of("depends"),
                    hint="-- depends: names what must be built before this model; remove it",
                )
            own = {relation}
            models[relation] = Model(  # made anew, not replace()d: twice as fast at 10,000
                relation=relation,
                path=model.path,
                format=model.format,
                kind=model.kind,
                header=self._moved_header(model.header, names, info, model.path),
                text=model.text,
                part=model.part,
                statements=self._qualify(
                    model.statements, names, (*refs, *(info.writes if info else ())), model.path
                ),
                patch=model.patch
                and replace(
                    model.patch,
                    statements=self._qualify(  # what it updates moves too (SchemaMap)
                        model.patch.statements,
                        names,
                        (*patch_refs, *model.patch.writes),
                        model.patch.path,
                    ),
                ),
                reads=tuple(r for r in reads if r not in own and r not in writes),
                writes=tuple(w for w in writes if w not in own),
                creates=tuple(w for w in creates if w not in own),
                creates_itself=relation in creates,
                modifies=tuple(w for w in modifies if w not in own),
                write_lines=write_lines,
                defines=names.resolve_all(info.defines if info else (), model.path),
                calls=names.resolve_all(info.calls if info else (), model.path),
                schemas=tuple(s.lower() for s in (info.schemas if info else ())),
                depends=tuple(d for d in dict.fromkeys(depends) if d not in own),
            )

        checks = [
            query
            for file, text, info in check_files
            for query in self._checks(file, text, info, names)
        ]
        return _assemble(self.root, self.config, models, checks, names.moved_relations())

    def _refuse_landings(
        self, names: _NameResolver, raw: Mapping[str, tuple[Model, SqlInfo | None]]
    ) -> None:
        """Two relations of the project the target builds as one (``staging.x`` moved to
        ``dev_staging.x``, which ``dev_staging/x.sql`` builds as it is) are an error
        naming both files: one would silently replace the other."""
        built: dict[Relation, tuple[Relation, str]] = {}  # as built: the project's name, a file
        for original, path in _built_by_project(names, raw):
            moved = names.built(original)
            first = built.setdefault(moved, (original, path))
            if first[0] == original:
                continue
            first_name, first_path = first
            if original != moved:  # point at the file the target moves
                (first_name, first_path), (original, path) = (original, path), first
            schema, target = Relation(first_name).schema, self.config.target_name
            raise DuplicateRelationError(
                f"{path} ({original}) and {first_path} ({first_name}) both map to "
                f"relation {moved} on target {target}: {self._moving(schema)}",
                path=first_path,
                hint=f"in [targets.{target}], move {schema} to a schema the project does not use",
            )

    def _refuse_moves_onto_inputs(
        self,
        names: _NameResolver,
        raw: Mapping[str, tuple[Model, SqlInfo | None]],
        check_reads: Sequence[tuple[str, tuple[TableRef, ...]]],
    ) -> None:
        """A relation the target moves onto a table the project only reads (an input: a
        model or a check file (``check_reads``: path, references) reads it, or
        ``[inputs."x"]`` declares it) is an error naming the moved model's file and the
        option moving it: its build would replace the input, and its readers read the
        model."""
        moved_by: dict[Relation, tuple[Relation, str]] = {}  # moved name: original, file
        for original, path in _built_by_project(names, raw):
            if names.built(original) != original:
                moved_by.setdefault(names.built(original), (original, path))
        if not moved_by:
            return
        project = {original for original, _ in moved_by.values()} | set(map(Relation, raw))
        target = self.config.target_name

        def refuse(input_: Relation, reader: str) -> None:
            original, path = moved_by[input_]
            raise ProjectError(
                f"{original} is built as {input_} on target {target} "
                f"({self._moving(original.schema)}), a table the project only reads "
                f"({reader}): the build would replace it",
                path=path,
                hint=f"in [targets.{target}], move {original.schema} to a schema that holds "
                "no input of the project",
            )

        for _, (model, info) in sorted(raw.items()):
            reads = (*info.reads, *info.references) if info else ()
            reads += model.patch.refs if model.patch else ()
            reads += tuple(_to_ref(d) for d in model.header.depends)
            uses = [(r, "reads") for r in names.unmoved(reads, model.path)]
            writes = info.modifies if info else ()  # a script's writes no model produces
            uses += [(r, "writes") for r in names.unmoved(writes, model.path)]
            for relation, verb in uses:
                if relation in moved_by and relation not in project:
                    refuse(relation, f"{model.path} {verb} it")
        for path, refs in check_reads:
            for relation in names.unmoved(refs, path):
                if relation in moved_by and relation not in project:
                    refuse(relation, f"{path} reads it")
        for declared in sorted(self.config.input_queries):
            if declared in moved_by:
                refuse(Relation(declared), f'{CONFIG_FILE} declares [inputs."{declared}"]')

    def _moving(self, schema: str) -> str:
        """The option that moves ``schema``, in words: ``[targets.dev] schemas moves
        schema staging to dev_staging``."""
        schema_map = self.config.schema_map
        option = "schemas" if schema in schema_map.schemas else "schema_suffix"
        return (
            f"[targets.{self.config.target_name}] {option} moves schema {schema} to "
            f"{schema_map.rename(schema)}"
        )

    def _split_yaml_tables(self, model_files: list[ProjectFile]) -> list[ProjectFile]:
        """Model files with each multi-table YAML file replaced by one file per table
        (``seeds.yaml_tables``); a table may not take another model's relation."""
        result: list[ProjectFile] = []
        for file in model_files:
            if file.format != "yaml":
                result.append(file)
                continue
            from dbluigi.seeds import yaml_tables  # YAML's parser, only for projects with YAML

            text = self.texts[file.path] = self._read(file)
            tables = yaml_tables(file.path, text)
            if tables is None:
                result.append(file)
                continue
            for table in tables:
                relation = Relation.of(file.schema, table.name)
                self.parts[file.path, relation] = table
                result.append(replace(file, relation=relation))
        seen: dict[Relation, ProjectFile] = {}
        for file in result:
            first = seen.setdefault(file.relation, file)
            if first is not file:
                # point at the YAML key (the later one when both are keys)
                key_of = file if self._part(file) else first
                part = self._part(key_of)
                raise DuplicateRelationError(
                    f"{first.path} and {file.path} both map to relation {file.relation}",
                    path=key_of.path,
                    line=part.line if part else None,
                    hint="rename the table (its YAML key) or move one of the files",
                )
        return result

    def _part(self, file: ProjectFile) -> YamlTable | None:
        """The table ``file`` stands for when it is one of a multi-table YAML file."""
        return self.parts.get((file.path, file.relation))

    def _read(self, file: ProjectFile) -> str:
        with open(os.path.join(self.root, file.path), "rb") as handle:  # no Path: 10,000 files
            return utf8_text(handle.read(), file.path)

    def _models(
        self, files: list[ProjectFile], companions: Mapping[str, Mapping[str, ProjectFile]]
    ) -> Iterator[tuple[Model, SqlInfo | None]]:
        """``_model`` of each file, in order. Once ``PARALLEL_AFTER`` files were not in the
        parse cache (a cold scan) and at least ``PARALLEL_REST`` are left, forked workers
        on all cores (``dbluigi.forked``) load the rest ahead of this process, a range of
        files at a time, and hand back only what they added to the parse cache: each
        file is then loaded here as in a warm scan. A file that fails in a worker adds
        nothing and is analyzed here again, so errors are raised as in a sequential load,
        in file order."""
        done = 0
        for file in files:
            left = len(files) - done
            if self.cache.misses >= PARALLEL_AFTER and left >= PARALLEL_REST and forked.available():
                break
            yield self._model(file, companions.get(file.relation, {}))
            done += 1
        else:
            return
        rest = files[done:]

        def load_range(start: int, end: int) -> tuple[dict[str, Any], int]:
            self.cache.take_used()  # the parent's, copied by the fork
            for file in rest[start:end]:
                try:
                    self._model(file, companions.get(file.relation, {}))
                except Exception:
                    break  # analyzed again by the parent, which raises the error
            return self.cache.take_used()

        chunk = max(16, min(256, len(rest) // (8 * forked.cores())))
        for used, misses in forked.map_ranges(load_range, len(rest), chunk=chunk):
            self.cache.add_used(used, misses)
            for file in files[done : done + chunk]:
                yield self._model(file, companions.get(file.relation, {}))
            done += chunk
        for file in files[done:]:  # left by a worker that died
            yield self._model(file, companions.get(file.relation, {}))

    def _model(
        self, file: ProjectFile, companions: Mapping[str, ProjectFile]
    ) -> tuple[Model, SqlInfo | None]:
        if file.format == "csv":
            text = ""
        else:
            text = self.texts[file.path] if file.path in self.texts else self._read(file)
        comment = "#" if file.format in ("python", "yaml") else "--"
        header = parse_header(text, file.path, comment=comment) if text else Header()
        kind = _kind_by_format(file, header)
        info: SqlInfo | None = None
        statements: tuple[Statement, ...] = ()
        if file.format == "sql":
            text = self._render(text, header, file.path)
            # with its dependencies declared, SQL sqlglot cannot parse runs as written
            as_written = bool(header.depends)
            info = self._analyze(text, header, file.path, as_written=as_written)
            if header.partition is not None and header.partition.query is not None:
                # the tables a partition query reads are dependencies too
                values_info = self._analyze(
                    header.partition.query, Header(), file.path, as_written=as_written
                )
                info = replace(
                    info, reads=tuple(sorted({*info.reads, *values_info.reads}, key=str))
                )
            statements = _restore_placeholders(info.statements, text)
            kind = header.kind or ("table" if info.is_query else "sql")
            _validate_sql_kind(file, header, kind, info)
            _validate_partition_used(file, header, text)
        _validate_header_for_kind(file, header, kind)
        patch = None
        if "patch" in companions:
            patch_file = companions["patch"]
            if kind not in PATCH_KINDS:
                raise ProjectError(
                    f"a patch applies to a new table, and {file.relation} is of kind {kind}",
                    path=patch_file.path,
                    hint=f"patches go with kinds {', '.join(PATCH_KINDS)}",
                )
            patch_text = self._render(self._read(patch_file), Header(), patch_file.path)
            patch_info = self._analyze_companion(patch_text, patch_file.path)
            patch = Patch(
                patch_file.path,
                patch_text,
                patch_info.statements,
                patch_info.reads,
                patch_info.writes,
            )
        part = self._part(file)
        model = Model(
            relation=file.relation,
            path=file.path,
            format=file.format,
            kind=kind,
            header=header,
            text=part.text if part else text,  # a table's own part: edits elsewhere spare it
            statements=statements,
            patch=patch,
            part=part.key if part else None,
        )
        return model, info

    def _read_check(self, file: ProjectFile) -> tuple[str, SqlInfo | None]:
        """A check file's text, rendered, and what its queries read (None for a
        ``.check.py``), read before the target moves names: what it reads that no model
        builds is an input, which no model may be moved onto."""
        text = self._read(file)
        if file.format == "python":
            return text, None
        text = self._render(text, Header(), file.path)
        return text, self._analyze_companion(text, file.path)

    def _checks(
        self, file: ProjectFile, text: str, info: SqlInfo | None, names: _NameResolver
    ) -> list[CheckFile]:
        """A check file (``_read_check``), one ``CheckFile`` per query (each is placed on
        its own)."""
        if info is None:
            owner = names.built(file.relation)
            return [CheckFile(file.path, "python", owner, owner, text)]
        for statement in info.statements:
            if statement.kind != "query":
                raise ProjectError(
                    f"a check must be a query returning violating rows; this statement is {statement.kind.replace('_', ' ').upper()}",
                    path=file.path,
                    line=statement.line,
                    hint="write SELECT ... that returns the rows breaking the rule; put corrections in a .patch.sql",
                )
        if not info.statements:
            raise ProjectError("check file holds no query", path=file.path)
        names.resolve_all(info.reads, file.path)  # an ambiguous name is an error of the file
        queries = []
        for statement in info.statements:
            refs = (
                info.reads
                if len(info.statements) == 1
                else self._analyze_companion(statement.sql, file.path).reads
            )
            (qualified,) = self._qualify((statement,), names, refs, file.path)
            queries.append(
                CheckFile(
                    file.path,
                    "sql",
                    names.built(file.relation),
                    names.built(file.relation),
                    text,
                    (qualified,),
                    names.resolve_all(refs, file.path),
                )
            )
        return queries

    def _qualify(
        self,
        statements: tuple[Statement, ...],
        names: _NameResolver,
        refs: tuple[TableRef, ...] | list[TableRef],
        path: str,
    ) -> tuple[Statement, ...]:
        """Qualify bare names that resolve to a model outside the default schema, and
        point names of relations the target builds elsewhere (``SchemaMap``) there.

        The graph resolves ``from agencies`` to the only model named agencies; the
        database would look in the default schema, so the SQL says it explicitly."""
        mapping = {}
        for ref in refs:
            if ref.schema is not None and not names.renamed:
                continue
            relation = names.resolve(ref, path)
            if relation.schema != (ref.schema or names.default_schema):
                mapping[ref] = TableRef(relation.schema, relation.name)
        # and CREATE SCHEMA or DROP SCHEMA of a schema whose relations the target moves
        of_schema = [_names_a_schema(st) for st in statements]
        schemas = names.moved_schemas()
        if not mapping and not schemas:
            return statements
        moved = []
        for i, st in enumerate(statements):
            sql = st.sql
            if not st.unparsed and (mapping or of_schema[i]):
                sql = _requalify(sql, mapping, self.dialect, schemas if of_schema[i] else None)
            if schemas and _kept_as_written(st) and _mentions(sql, schemas):
                from dbluigi.sqlinfo import move_by_tokens

                sql = move_by_tokens(sql, names.moved_relations(), schemas, dialect=self.dialect)
            moved.append(st if sql == st.sql else replace(st, sql=sql))
        return tuple(moved)

    def _moved_header(
        self, header: Header, names: _NameResolver, info: SqlInfo | None, path: str
    ) -> Header:
        """``header`` with its partition query's names read as the model's query reads
        them: a bare name of a model outside the default schema qualified, and names of
        relations this target builds elsewhere (``SchemaMap``) pointed there."""
        spec = header.partition
        if spec is None or spec.query is None:
            return header
        refs = self._analyze(spec.query, Header(), path).reads
        (moved,) = self._qualify((Statement(spec.query, 1, "query"),), names, refs, path)
        return replace(header, partition=replace(spec, query=moved.sql))

    def _render(self, text: str, header: Header, path: str) -> str:
        runtime = _runtime_placeholders(header)
        variables = {**self.config.variables, **{n: "{{ " + n + " }}" for n in runtime}}
        return render(text, variables, path=path, dialect=self.dialect)

    def _analyze(
        self,
        text: str,
        header: Header,
        path: str,
        *,
        as_written: bool = False,
        hint: str | None = None,
    ) -> SqlInfo:
        runtime = _runtime_placeholders(header)
        if runtime:
            text = render(text, dict.fromkeys(runtime, _INFERENCE_VALUE), path=path)
        return self.cache.analyze(
            text, dialect=self.dialect, path=path, as_written=as_written, hint=hint
        )

    def _analyze_companion(self, text: str, path: str) -> SqlInfo:
        """A check or patch file, which must parse: it is rewritten to read the new table."""
        hint = (
            f"check and patch files are rewritten with sqlglot (dialect {self.dialect}) to "
            "read the new table, so they must be SQL it reads; SQL it cannot read goes in a "
            "model with a -- depends: header, which runs as written"
        )
        return self._analyze(text, Header(), path, hint=hint)


def _refuse_reserved(
    relation: Relation, path: str, line: int | None, *, written: bool = False
) -> None:
    """A model may not take (or write) a name dbluigi gives its own tables (``dbluigi.names``)."""
    schema = relation.schema
    why = reserved_name(schema, relation.name)
    if why is not None:
        in_state = schema == STATE_SCHEMA
        raise ProjectError(
            f"a model may not write {relation}: {why}"
            if written
            else f"{relation} cannot be a model: {why}",
            path=path,
            line=line,
            hint=(
                "write to a table of your own"
                if written
                else "move it to another folder (or set [project] schema in dbluigi.toml)"
                if in_state
                else f"rename it so that it does not contain {RESERVED}"
            ),
        )


def _check_dump_paths(project: Project) -> None:
    """Every dump writes inside the output folder, and no two dumps write the same file."""
    seen: dict[Path, Model] = {}
    for model in project.models.values():
        if model.kind != "dump":
            continue
        path = project.dump_file(model)
        first = seen.setdefault(path, model)
        if first is not model:
            raise ProjectError(
                f"{first.path} and {model.path} both write {path}",
                path=model.path,
                line=model.header.line_of("path"),
                hint="give one of them another -- path:",
            )


def _extract_models(config: Config) -> dict[str, Model]:
    """One ``extract`` model per table of ``[sources]`` (``dbluigi.sources.config``): it
    lives at the table's line of dbluigi.toml, and its text is its definition."""
    models: dict[str, Model] = {}
    for name, table in config.source_tables.items():
        relation = Relation(name)
        unique_key = tuple(k.lower() for k in table.unique_key)  # the target's column names
        key = (IndexSpec(unique_key, unique=True),) if unique_key else ()
        header = Header(
            unique_key=unique_key,
            watermark=table.watermark.lower() if table.watermark else None,
            indexes=key,  # the unique index an upsert needs
            lines=(("kind", table.line),) if table.line else (),
        )
        models[relation] = Model(
            relation=relation,
            path=CONFIG_FILE,
            format="toml",
            kind="extract",
            header=header,
            text=table.definition(),
        )
    return models


def _built_by_project(
    names: _NameResolver, raw: Mapping[str, tuple[Model, SqlInfo | None]]
) -> Iterator[tuple[Relation, str]]:
    """Each relation the project builds (a model's, a table a script creates), as the
    project names it, with the file building it; in the order of the models' names."""
    for relation, (model, info) in sorted(raw.items()):
        creates = names.unmoved(info.creates, model.path) if info else ()
        for original in dict.fromkeys((Relation(relation), *creates)):
            yield original, model.path


def _validate_partition_used(file: ProjectFile, header: Header, text: str) -> None:
    """A partitioned model's SQL uses its value: without ``{{ NAME }}`` every value's task
    would build the same rows, and the table would hold them once per value."""
    spec = header.partition
    if spec is None or spec.name in placeholders(text):
        return
    raise ProjectError(
        f"-- partition: {spec.name}: the file never uses {{{{ {spec.name} }}}}, so every "
        "value would build the same rows",
        path=file.path,
        line=spec.line or header.line_of("partition"),
        hint=f"filter on it (where {spec.name} = {{{{ {spec.name} }}}}), or remove -- partition:",
    )


def _runtime_placeholders(header: Header) -> tuple[str, ...]:
    names = []
    if header.partition is not None:
        names.append(header.partition.name)
    if header.watermark is not None or header.kind == "incremental":
        names.append("watermark")
    return tuple(names)


_DROP_SCHEMA = re.compile(r"\bdrop\s+schema\b", re.IGNORECASE)


def _kept_as_written(statement: Statement) -> bool:
    """Whether sqlglot keeps a statement's names as written: it cannot parse it, or keeps
    it as a command (``GRANT``, ``COMMENT ON``, ``DO``, ``CREATE SCHEMA ...
    AUTHORIZATION``). Routines keep their names (``sqlinfo.move_by_tokens``)."""
    return statement.unparsed is not None or statement.kind == "other"


def _mentions(sql: str, schemas: Mapping[str, str]) -> bool:
    """Whether ``sql`` may name one of ``schemas`` (a quick look before tokenizing)."""
    lowered = sql.lower()
    return any(schema.lower() in lowered for schema in schemas)


def _names_a_schema(statement: Statement) -> bool:
    """Whether a statement may be a CREATE SCHEMA or a DROP SCHEMA (``sqlinfo._kind``)."""
    kind = statement.kind
    return kind == "create_schema" or (kind == "drop" and bool(_DROP_SCHEMA.search(statement.sql)))


def _requalify(
    sql: str,
    mapping: Mapping[TableRef, TableRef],
    dialect: str,
    schemas: Mapping[str, str] | None = None,
) -> str:
    """``replace_relations`` on SQL that may hold runtime ``{{ name }}`` placeholders,
    which cross sqlglot as plain identifiers and come back as they were written."""
    hidden: dict[str, str] = {}

    def hide(match: re.Match[str]) -> str:
        token = f"__dbluigi_placeholder_{len(hidden)}__"
        hidden[token] = match.group(0)
        return token

    from dbluigi.sqlinfo import replace_relations  # sqlglot loads only when SQL is rewritten

    result = replace_relations(
        PLACEHOLDER.sub(hide, sql), mapping, dialect=dialect, schemas=schemas
    )
    for token, placeholder in hidden.items():
        result = result.replace(token, placeholder)
    return result


def _restore_placeholders(
    statements: tuple[Statement, ...], rendered: str
) -> tuple[Statement, ...]:
    """Statements as analyzed had runtime placeholders replaced; re-split the real text."""
    if "{{" not in rendered:
        return statements
    lines = rendered.splitlines(keepends=True)
    result = []
    for i, st in enumerate(statements):
        start = st.line - 1
        end = statements[i + 1].line - 1 if i + 1 < len(statements) else len(lines)
        chunk = "".join(lines[start:end]).strip().rstrip(";").strip()
        result.append(replace(st, sql=chunk))
    return tuple(result)


def _kind_by_format(file: ProjectFile, header: Header) -> ModelKind:
    by_format: dict[str, ModelKind] = {"csv": "seed", "yaml": "seed", "python": "python"}
    expected = by_format.get(file.format)
    if expected is None:
        return header.kind or "table"
    if header.kind not in (None, expected):
        raise ProjectError(
            f"kind {header.kind} does not fit a .{file.path.rsplit('.', 1)[1]} file (it is a {expected})",
            path=file.path,
            line=header.line_of("kind"),
        )
    return expected


def _validate_sql_kind(file: ProjectFile, header: Header, kind: str, info: SqlInfo) -> None:
    line = header.line_of("kind")
    if kind in ("seed", "python"):
        raise ProjectError(f"kind {kind} does not fit a .sql file", path=file.path, line=line)
    if not info.statements:
        raise ProjectError(
            "file holds no SQL statement", path=file.path, hint="write a SELECT, or delete the file"
        )
    # a statement run as written is what the header (or its first word) says it is
    as_written = len(info.statements) == 1 and info.statements[0].unparsed is not None
    if kind in QUERY_KINDS and not info.is_query and not as_written:
        found = ", ".join(s.kind.replace("_", " ") for s in info.statements[:3])
        raise ProjectError(
            f"kind {kind} needs exactly one query (SELECT ...); found {len(info.statements)} statement(s): {found}",
            path=file.path,
            line=line or info.statements[0].line,
            hint="use -- kind: sql for files of arbitrary statements",
        )


def _validate_header_for_kind(file: ProjectFile, header: Header, kind: str) -> None:
    if header.checks and kind not in TABLE_CHECK_KINDS:
        check = header.checks[0]
        raise ProjectError(
            f"header check '{check.text}' needs a table or view, and this model is of kind {kind}",
            path=file.path,
            line=check.line,
            hint=f"put the rule in {file.path.rsplit('.', 1)[0]}.check.sql as a query returning violating rows",
        )
    if header.indexes and kind not in ("table", "incremental", "seed", "python"):
        raise ProjectError(
            f"indexes need a table; this model is of kind {kind}",
            path=file.path,
            line=header.line_of("index"),
        )
    if header.max_cost is not None and kind not in QUERY_KINDS:
        raise ProjectError(
            f"max_cost bounds the estimated cost of a query, and this model is of kind {kind}",
            path=file.path,
            line=header.line_of("max_cost"),
            hint=f"max_cost goes with kinds {', '.join(QUERY_KINDS)}; -- timeout: works for every kind",
        )
    if kind == "incremental" and not header.unique_key:
        raise ProjectError(
            "an incremental model needs -- unique_key: to upsert its rows",
            path=file.path,
            line=header.line_of("kind"),
            hint="add a line such as -- unique_key: id",
        )
    for key, given in (("unique_key", header.unique_key), ("watermark", header.watermark)):
        if given and kind != "incremental":  # a table is rebuilt whole: nothing would use it
            raise ProjectError(
                f"{key} goes with kind incremental, and this model is of kind {kind}",
                path=file.path,
                line=header.line_of(key),
                hint=f"add -- kind: incremental to upsert its rows, or remove the {key}"
                if file.format == "sql" and kind != "sql"
                else f"remove the {key}: only a query (a SELECT) can be incremental",
            )
    if header.path is not None and kind != "dump":
        raise ProjectError(
            f"path names the file a dump writes, and this model is of kind {kind}",
            path=file.path,
            line=header.line_of("path"),
            hint="add -- kind: dump to write the query's result as CSV, or remove the path",
        )


class _NameResolver:
    """Turns table references into relation names the way the database would read them."""

    def __init__(self, default_schema: str, models: Mapping[str, object]) -> None:
        self.default_schema = default_schema
        self.models = models
        self.bare: dict[str, list[Relation]] = defaultdict(list)
        self._resolved: dict[TableRef, Relation] = {}  # the same reference, resolved once
        self.renamed: dict[Relation, Relation] = {}  # what the target builds elsewhere
        self._moved_schemas: dict[str, str] | None = None
        self._moved_relations: dict[tuple[str, str], str] | None = None
        for relation in sorted(models):
            self.bare[Relation(relation).name].append(Relation(relation))

    def resolve(self, ref: TableRef, path: str) -> Relation:
        """The relation ``ref`` names, as the target builds it."""
        found = self.original(ref, path)
        return self.renamed.get(found, found)

    def original(self, ref: TableRef, path: str) -> Relation:
        """The relation ``ref`` names, as the project names it (before a target moves it)."""
        found = self._resolved.get(ref)
        if found is None:
            found = self._resolved[ref] = self._resolve(ref, path)
        return found

    def built(self, relation: str) -> Relation:
        """The relation the target builds for the project's ``relation``."""
        return self.renamed.get(Relation(relation), Relation(relation))

    def moved_schemas(self) -> Mapping[str, str]:
        """Each schema the target builds elsewhere, and where."""
        if self._moved_schemas is None:
            self._moved_schemas = {o.schema: m.schema for o, m in self.renamed.items() if o.schema}
        return self._moved_schemas

    def moved_relations(self) -> Mapping[tuple[str, str], str]:
        """Each relation the target builds elsewhere, as ``(schema, name)``, and the schema
        it builds it in."""
        if self._moved_relations is None:
            self._moved_relations = {
                (o.schema, o.name): m.schema for o, m in self.renamed.items() if o.schema
            }
        return self._moved_relations

    def unmoved(self, refs: tuple[TableRef, ...], path: str) -> tuple[Relation, ...]:
        """The relations ``refs`` name, as the project names them (``resolve`` before a
        target moves them)."""
        return tuple(dict.fromkeys(self.original(r, path) for r in refs))

    def rename_built(
        self,
        schema_map: SchemaMap,
        raw: Mapping[str, tuple[Model, SqlInfo | None]],
        extracts: Mapping[str, Model],
    ) -> None:
        """Move every relation the project builds (models, and tables ``sql`` models
        create) to the schema the target's ``schema_map`` gives it: resolved references
        name the moved relation from now on. Copies of source tables stay put."""
        built = {Relation(r) for r in raw if r not in extracts}
        for model, info in raw.values():
            if info is not None:
                built.update(self.resolve_all(info.creates, model.path))
        self.renamed = {
            r: Relation.of(schema_map.rename(r.schema), r.name)
            for r in built
            if schema_map.rename(r.schema) != r.schema
        }
        self._moved_schemas = self._moved_relations = None

    def _resolve(self, ref: TableRef, path: str) -> Relation:
        if ref.schema is not None:
            return Relation.of(ref.schema, ref.name)
        default = Relation.of(self.default_schema, ref.name)
        if default in self.models:
            return default
        candidates = self.bare.get(ref.name, [])
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise ProjectError(
                f"ambiguous reference '{ref.name}': it could be {', '.join(candidates)}",
                path=path,
                hint="qualify it with its schema",
            )
        return default

    def resolve_all(
        self, refs: tuple[TableRef, ...] | list[TableRef], path: str
    ) -> tuple[Relation, ...]:
        if not refs:
            return ()
        return tuple(dict.fromkeys(self.resolve(r, path) for r in refs))


def _to_ref(name: str) -> TableRef:
    schema, _, bare = name.lower().rpartition(".")
    return TableRef(schema or None, bare)


def _assemble(
    root: Path,
    config: Config,
    models: dict[str, Model],
    checks: list[CheckFile],
    moved: Mapping[tuple[str, str], str],
) -> Project:
    edges: set[Edge] = set()
    sources: set[str] = set()
    readers: dict[str, set[str]] = defaultdict(set)
    for m in models.values():
        for r in m.reads:
            readers[r].add(m.relation)
            edges.add(Edge(r, m.relation, "reads"))
        for d in m.depends:
            edges.add(Edge(d, m.relation, "depends"))
        sources.update(r for r in (*m.reads, *m.depends) if r not in models)
    chains, write_edges, written = find_chains(models)
    routines = _routine_edges(models)
    edges |= write_edges | replay_edges(models, chains, routines) | routines
    relations = set(written)  # created by a sql model, or written by an unmanaged one
    sources = (sources | relations) - set(models)

    files: dict[str, str] = {m.relation: m.path for m in models.values()}
    nodes = tuple(sorted(set(models) | sources))
    graph = Graph(nodes, tuple(sorted(edges)), files)
    if any(m.schemas for m in models.values()):
        edges |= _schema_edges(models, graph)
        graph = Graph(nodes, tuple(sorted(edges)), files)
    graph.order  # noqa: B018 - raises CycleError before checks are placed
    chains = order_chains(chains, graph.position)

    placed = _place_checks(graph, models, checks, chains)
    for check in placed:
        sources.update(r for r in check.reads if r not in models)
    waits = [(w, c.gate) for c in placed for w in c.waits]
    if waits:
        edges.update(_ordering_edges(graph, waits))
    if placed:
        nodes = tuple(sorted(set(models) | sources))
        graph = Graph(nodes, tuple(sorted(edges)), files)
        graph.order  # noqa: B018
    return Project(
        root=root,
        config=config,
        models=models,
        sources=tuple(sorted(sources)),
        checks=tuple(placed),
        graph=graph,
        readers_of={k: tuple(sorted(v)) for k, v in readers.items()},
        chains=chains,
        moved=moved,
    )


def _routine_edges(models: Mapping[str, Model]) -> set[Edge]:
    """A model calling a function or procedure another model defines runs after it."""
    definer = {routine: m.relation for m in models.values() for routine in m.defines}
    return {
        Edge(definer[called], m.relation, "calls")
        for m in models.values()
        for called in m.calls
        if called in definer and definer[called] != m.relation
    }


def _schema_edges(models: Mapping[str, Model], graph: Graph) -> set[Edge]:
    """A model that creates a schema runs before every model that builds or writes in it
    (but those it depends on itself)."""
    edges = set()
    for creator in models.values():
        if not creator.schemas:
            continue
        before = graph.upstream([creator.relation])
        for m in models.values():
            if m.relation == creator.relation or m.relation in before:
                continue
            used = {Relation(w).schema for w in m.writes}
            if m.publishes_relation:
                used.add(m.schema)
            if used & set(creator.schemas):
                edges.add(Edge(creator.relation, m.relation, "schema"))
    return edges


def _place_checks(
    graph: Graph, models: Mapping[str, Model], checks: list[CheckFile], chains: Chains
) -> list[CheckFile]:
    """Give each check query its gate and the models it waits for (see ``CheckFile``).

    A query that reads models downstream of its owner gates the one of them that all
    the others feed (or the last in run order when none does); the owner and its
    upstream are published before it runs either way."""
    position = graph.position
    placed = []
    for check in checks:
        read = [r for r in check.reads if r in models and r != check.owner]
        later = {Relation(r) for r in graph.downstream([check.owner]).intersection(read)}
        gate = check.owner
        if later:
            gate = max(later, key=position.__getitem__)
            for candidate in sorted(later, key=position.__getitem__, reverse=True):
                if later - {candidate} <= graph.upstream([candidate]):
                    gate = candidate
                    break
        # a modifier is built by its producer's task: its checks gate that swap
        gate = Relation(chains.owner.get(gate, gate))
        before = graph.upstream([gate]) | set(chains.members(gate))
        waits = tuple(r for r in read if r != gate and r not in before)
        placed.append(replace(check, gate=gate, waits=waits))
    gates: dict[str, set[str]] = defaultdict(set)
    for check in placed:
        gates[check.path].add(check.gate)
    return [replace(c, whole=len(gates[c.path]) == 1) for c in placed]


def _ordering_edges(graph: Graph, waits: Sequence[tuple[str, str]]) -> set[Edge]:
    """``waits`` edges for (model, gate) pairs, in order, leaving out any that would
    close a cycle: that gate runs without waiting, and its query runs only when the
    model it reads is available by then (see ``CheckFile``)."""
    added: dict[str, set[str]] = defaultdict(set)  # parent -> gates waiting for it

    def reaches(start: str, goal: str) -> bool:
        seen, stack = {start}, [start]
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            for nxt in (*graph.children(node), *graph.waited_by(node), *added[node]):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    edges = set()
    for parent, gate in waits:
        if parent in added and gate in added[parent]:
            continue
        if not reaches(gate, parent):
            added[parent].add(gate)
            edges.add(Edge(parent, gate, WAITS))
    return edges
