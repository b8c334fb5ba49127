"""The ``python`` kind: a table whose new table the model's ``run(ctx)`` creates
(``dbluigi.pystep``). The step may change more than its table, so a failed check
rolls everything back instead of keeping the new table."""

from __future__ import annotations

from dbluigi import pystep
from dbluigi.kinds.base import BuildRequest, Filled, Kind, Published, build_aside
from dbluigi.targets.base import Session


def build(session: Session, request: BuildRequest) -> Published:
    return build_aside(session, request, fill, keep_failed=False)


def fill(session: Session, request: BuildRequest, new: str) -> Filled:
    return Filled(pystep.run_step(session, request.project, request.model, new))


KIND = Kind("python", build)
