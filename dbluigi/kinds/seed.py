"""The ``seed`` kind: a CSV or YAML file (or one table of a multi-table YAML file) loaded
aside (COPY on PostgreSQL, DuckDB's CSV reader), checked and swapped in like a table.
Column types come from ``dbluigi.seeds``; a large CSV file is typed while it loads, where
the target can."""

from __future__ import annotations

from dbluigi.errors import ProjectError
from dbluigi.kinds.base import BuildRequest, Filled, Kind, Published, build_aside, located
from dbluigi.targets.base import Session


def build(session: Session, request: BuildRequest) -> Published:
    return build_aside(session, request, fill)


def fill(session: Session, request: BuildRequest, new: str) -> Filled:
    """The file's rows into ``new``, typed."""
    # the seed reader (and YAML's parser with it) loads when a seed is built, not with
    # every command that imports the kinds
    from dbluigi.seeds import guess_csv, read_yaml_seed, sniff_csv

    model, project = request.model, request.project
    path = project.root / model.path
    overrides = project.config.seed_types.get(model.relation, {})
    try:
        if model.format == "csv":
            guess = guess_csv(path, overrides=overrides)
            if guess is not None:  # a large file: typed while it loads, where the target can
                with located(session, model.path, 1, ""):
                    return Filled(
                        session.load_csv_typing(
                            model.schema,
                            new,
                            path,
                            guess.columns,
                            lambda: sniff_csv(path, guess=guess).columns,
                        )
                    )
            table = sniff_csv(path, overrides=overrides)
        else:
            table, rows = read_yaml_seed(path, overrides=overrides, table=model.part)
    except ProjectError as exc:
        raise exc.at(path=model.path) from exc  # as the user knows it, relative to the project
    with located(session, model.path, 1, ""):
        if model.format == "csv":
            return Filled(session.load_csv(model.schema, new, path, table.columns))
        return Filled(session.load_rows(model.schema, new, table.columns, rows))


KIND = Kind("seed", build)
