"""Write the docs site: an ``index.html`` with its script, stylesheet and data beside it,
or all of it in one HTML file (``lineage --format html``).

Nothing is fetched from the network: the script and stylesheet are dbluigi's own
(``dbluigi/docs/static``), the data is a script assigning ``window.DBLUIGI_DATA``, so the
site opens from ``file://`` as well as from ``dbluigi docs --serve``.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

ASSETS = ("docs.js", "docs.css")


def _asset(name: str) -> str:
    return resources.files("dbluigi.docs").joinpath("static", name).read_text(encoding="utf-8")


def _data_script(data: dict[str, Any]) -> str:
    """``data`` as a script; every ``<`` is written ``\\u003c``, so no value can end the
    script element or change how the HTML parser reads it (``</script>``, ``<!--``)."""
    text = json.dumps(data, separators=(",", ":"), default=str, ensure_ascii=False)
    return "window.DBLUIGI_DATA = " + text.replace("<", "\\u003c") + ";\n"


def _page(title: str, style: str, scripts: str) -> str:
    slots = {"title": html.escape(title), "style": style, "scripts": scripts}
    # one pass over the template: what fills a slot is never read for slots itself
    return re.sub(r"\{(title|style|scripts)\}", lambda m: slots[m.group(1)], _asset("index.html"))


def write_site(data: dict[str, Any], out: Path) -> Path:
    """Write the site into ``out`` (created); returns its ``index.html``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ASSETS:
        (out / name).write_text(_asset(name), encoding="utf-8")
    (out / "data.js").write_text(_data_script(data), encoding="utf-8")
    index = out / "index.html"
    index.write_text(
        _page(
            f"{data['project']['name']} · dbluigi docs",
            '<link rel="stylesheet" href="docs.css">',
            '<script src="data.js"></script>\n<script src="docs.js"></script>',
        ),
        encoding="utf-8",
    )
    return index


def single_page(data: dict[str, Any]) -> str:
    """The whole site as one HTML file: stylesheet, data and script inline."""
    script = _asset("docs.js").replace("</", "<\\/")
    return _page(
        f"{data['project']['name']} · dbluigi lineage",
        f"<style>\n{_asset('docs.css')}</style>",
        f"<script>\n{_data_script(data)}</script>\n<script>\n{script}</script>",
    )
