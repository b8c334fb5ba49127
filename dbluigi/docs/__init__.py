"""The docs site (``dbluigi docs``) and the lineage graph as one HTML file.

``collect`` gathers what the site shows (from the project and, when reachable, the
target), ``layout`` places the graph's nodes, ``site`` writes the files; the page's
script and stylesheet are in ``static/``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dbluigi.project import Project


def build_docs(project: Project, out: Path, *, read_target: bool = True) -> tuple[Path, str | None]:
    """Write the site for ``project`` into ``out``; returns its ``index.html`` and, when
    the target's record could not be read, why (the site then shows structure only)."""
    from dbluigi.columns import project_columns
    from dbluigi.docs.collect import Recorded, read_recorded, site_data
    from dbluigi.docs.site import write_site

    recorded = read_recorded(project) if read_target else Recorded(note="the target was not read")
    known = {rel: [name for name, _ in cols] for rel, cols in recorded.columns.items()}
    data = site_data(project, recorded, project_columns(project, known))
    return write_site(data, out), recorded.note


def lineage_html(project: Project, nodes: Iterable[str]) -> str:
    """The lineage graph of ``nodes`` as one HTML file (``lineage --format html``)."""
    from dbluigi.docs.collect import Recorded, site_data
    from dbluigi.docs.site import single_page

    data = site_data(project, Recorded(note=None), {}, pages=False, only=list(nodes))
    return single_page(data)
