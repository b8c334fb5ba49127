"""The ``seed`` kind: a CSV or YAML file (or one table of a multi-table YAML file) loaded
aside (COPY on PostgreSQL, DuckDB's CSV reader), checked and swapped in like a table.
Column types come from ``dbluigi.seeds``; a large CSV file is typed while it loads, where
the target can. A file whose content was typed before loads with those types
(``cache.SeedTypes``)."""

from __future__ import annotations

from collections.abc import Sequence

from dbluigi.cache import seed_types
from dbluigi.config import STATE_DIR
from dbluigi.errors import ProjectError
from dbluigi.kinds.base import BuildRequest, Filled, Kind, Published, build_aside, located
from dbluigi.plan import file_hash
from dbluigi.targets.base import Column, Session


def build(session: Session, request: BuildRequest) -> Published:
    return build_aside(session, request, fill)


def fill(session: Session, request: BuildRequest, new: str) -> Filled:
    """The file's rows into ``new``, typed."""
    model, project = request.model, request.project
    path = project.root / model.path
    overrides = project.config.seed_types.get(model.relation, {})
    try:
        if model.format == "csv":
            cache = seed_types(project.root / STATE_DIR / "cache")
            content = file_hash(project, path)
            key = cache.key(content, overrides)
            known = cache.get(key)
            if known is not None:  # this content was typed before
                pairs, literal = known
                columns = tuple(Column(name, kind) for name, kind in pairs)
                with located(session, model.path, 1, ""):
                    loaded = session.load_csv(model.schema, new, path, columns, literal)
                    return Filled(loaded)
            # the seed reader loads when a file is typed, not with every command that
            # imports the kinds, nor for a file whose types are known
            from dbluigi.seeds import SeedTable, guess_csv, sniff_csv

            def typed(table: SeedTable) -> Sequence[Column]:
                # kept for the content hashed above only if the file still holds it: a
                # file saved meanwhile was typed as it is now, not as it was
                if file_hash(project, path) == content:
                    cache.put(key, [(c.name, c.type) for c in table.columns], table.literal)
                return table.columns

            guess = guess_csv(path, overrides=overrides)
            if guess is not None:  # a large file: typed while it loads, where the target can
                with located(session, model.path, 1, ""):
                    return Filled(
                        session.load_csv_typing(
                            model.schema,
                            new,
                            path,
                            guess.columns,
                            lambda: typed(sniff_csv(path, guess=guess)),
                        )
                    )
            table = sniff_csv(path, overrides=overrides)
            typed(table)
        else:
            from dbluigi.seeds import read_yaml_seed  # and YAML's parser with it

            table, rows = read_yaml_seed(path, overrides=overrides, table=model.part)
    except ProjectError as exc:
        raise exc.at(path=model.path) from exc  # as the user knows it, relative to the project
    with located(session, model.path, 1, ""):
        if model.format == "csv":
            loaded = session.load_csv(model.schema, new, path, table.columns, table.literal)
            return Filled(loaded)
        return Filled(session.load_rows(model.schema, new, table.columns, rows))


KIND = Kind("seed", build)
