"""The ``dump`` kind: write a query's result as CSV under the project's output folder.

::

    -- kind: dump
    -- path: api/agencies.csv      (optional; default <model name>.csv)
    select * from api.cde_agencies

In the model's one transaction: the checks of its ``.check.sql`` run first, then
the target streams the rows into a hidden temporary file next to the destination
(``Session.copy_out_csv``: COPY TO STDOUT on PostgreSQL, COPY TO on DuckDB; memory
does not grow with rows), the build is recorded, and the file is renamed into place
before the commit. A failure leaves the previous file as it was; a crash between the
rename and the commit only makes the next build write the file again. Which file
a dump writes, and why it must stay in the output folder: ``dbluigi.exports``.
"""

from __future__ import annotations

import errno
from pathlib import Path

from dbluigi.errors import TaskError
from dbluigi.exports import atomic_file
from dbluigi.kinds.base import BuildRequest, Kind, Published, checked, located, record, transaction
from dbluigi.targets.base import Session


def build(session: Session, request: BuildRequest) -> Published:
    """Check, write aside, record and rename into place; returns the rows written."""
    model, project = request.model, request.project
    path = project.dump_file(model)
    statement = model.statements[0]
    with transaction(session, request):
        outcome = checked(session, request, model.schema, model.name)
        try:
            with atomic_file(path) as temp:
                with located(session, model.path, statement.line, statement.sql):
                    rows = session.copy_out_csv(statement.sql, temp)
                record(session, request, rows, outcome.results)
                session.flush()  # the state writes run before the file is renamed into place
        except OSError as exc:  # the file system refused the file, or a folder on its way
            raise _unwritable(request, path, exc) from exc
    return Published(rows, outcome.results)


def _unwritable(request: BuildRequest, path: Path, exc: OSError) -> TaskError:
    """A runtime failure at the model's ``-- path:`` line saying which file or folder."""
    model, root = request.model, request.project.root.resolve()
    named = exc.filename2 or exc.filename  # os.replace names the destination second
    where = Path(named) if named else path
    shown = where.relative_to(root) if where.is_relative_to(root) else where
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        hint = f"a file stands where the dump needs a folder: move {shown} away"
    elif exc.errno in (errno.EISDIR, errno.ENOTEMPTY):
        hint = f"a folder stands where the dump writes its file: move {shown} away"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "make the output folder writable, or set another ([project] output)"
    else:
        hint = None
    return TaskError(
        f"cannot write the dump {path.name}: {exc.strerror or exc} ({shown})",
        failure_class="runtime",
        path=model.path,
        line=model.header.line_of("path"),
        hint=hint,
    )


KIND = Kind("dump", build)
