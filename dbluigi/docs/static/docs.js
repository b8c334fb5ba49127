/* dbluigi docs site: renders window.DBLUIGI_DATA (written by `dbluigi docs`).
   Plain DOM and SVG, no library; every text from the project goes in through
   textContent, never as markup. Routes: #/ (graph), #/model/ID[/COLUMN], #/runs,
   #/run/RUN_ID. */
(function () {
  "use strict";
  const D = window.DBLUIGI_DATA;
  const NS = "http://www.w3.org/2000/svg";
  const KIND_COLOURS = {
    table: "#dbeafe", view: "#dcfce7", incremental: "#fef3c7", seed: "#fae8ff", sql: "#e0e7ff",
    python: "#fee2e2", dump: "#ccfbf1", extract: "#ffedd5", source: "#e5e7eb",
  };
  const STATUS_COLOURS = {
    success: "#bbf7d0", failed: "#fecaca", skipped: "#e5e7eb", running: "#fde68a", none: "#ffffff",
  };
  const NODE_W = 220, NODE_H = 34;
  const byId = new Map(D.nodes.map((n) => [n.id, n]));
  const parents = new Map(), children = new Map();
  for (const n of D.nodes) { parents.set(n.id, []); children.set(n.id, []); }
  for (const e of D.edges) {
    if (e.reason === "waits") continue;
    if (parents.has(e.to)) parents.get(e.to).push(e.from);
    if (children.has(e.from)) children.get(e.from).push(e.to);
  }

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v);
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  function put(el, ...kids) { // append, leaving out absent parts (null, undefined, false)
    for (const kid of kids.flat()) {
      if (kid !== null && kid !== undefined && kid !== false) el.append(kid);
    }
    return el;
  }
  function s(tag, attrs) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    return el;
  }
  const modelHref = (id, column) =>
    "#/model/" + encodeURIComponent(id) + (column ? "/" + encodeURIComponent(column) : "");
  const modelLink = (id, column) =>
    h("a", { href: modelHref(id, column), class: "model-link" }, column ? id + "." + column : id);
  const badge = (text, cls) => h("span", { class: "badge " + (cls || "") }, text);
  const statusBadge = (status) =>
    status ? badge(status, "status-" + status.replace(/\s+/g, "-")) : badge("never built", "muted");
  function closure(start, step) {
    const seen = new Set(), todo = [start];
    while (todo.length) {
      for (const next of step.get(todo.pop()) || []) {
        if (!seen.has(next)) { seen.add(next); todo.push(next); }
      }
    }
    return seen;
  }

  // -- the frame -----------------------------------------------------------------------
  const root = document.getElementById("app");
  function frame(active, body) {
    const nav = h("nav", {},
      h("a", { href: "#/", class: active === "graph" ? "active" : "" }, "Lineage"),
      D.models ? h("a", { href: "#/runs", class: active === "runs" ? "active" : "" }, "Runs") : null);
    const meta = h("span", { class: "meta" },
      `${D.project.name} · ${D.nodes.length} nodes · target ${D.project.target} · ` +
      `dbluigi ${D.project.dbluigi} · ${D.project.generated_at}`);
    const note = D.note ? h("div", { class: "note", id: "state-note" }, "Structure only: " + D.note) : null;
    root.replaceChildren(...[
      h("header", { class: "top" }, h("span", { class: "brand" }, "dbluigi"), nav, meta),
      note, h("main", {}, body)].filter(Boolean));
  }

  // -- the lineage graph ---------------------------------------------------------------
  let graphState = null; // kept across visits: view transform, selection, search, colours

  function graphView() {
    const st = graphState || (graphState = { k: 1, x: 40, y: 40, fitted: false, selected: null, query: "", colour: "kind" });
    const svg = s("svg", { class: "graph", id: "graph" });
    const viewport = s("g", { id: "viewport" });
    svg.append(viewport);
    const edgeEls = [];
    const edgeLayer = s("g", {}), nodeLayer = s("g", {});
    viewport.append(edgeLayer, nodeLayer);
    for (const e of D.edges) {
      const a = byId.get(e.from), b = byId.get(e.to);
      if (!a || !b) continue;
      const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
      const mid = (x1 + x2) / 2;
      const p = s("path", {
        d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`,
        class: "edge" + (e.reason === "waits" ? " waits" : ""),
      });
      p.dataset.from = e.from; p.dataset.to = e.to;
      edgeLayer.append(p); edgeEls.push(p);
    }
    const nodeEls = new Map();
    for (const n of D.nodes) {
      const g = s("g", { class: "node", transform: `translate(${n.x},${n.y})` });
      g.dataset.id = n.id;
      const rect = s("rect", { width: NODE_W, height: NODE_H });
      const title = s("title", {}); title.textContent = `${n.id} (${n.kind})`;
      const name = s("text", { x: 8, y: 15 });
      name.textContent = n.id.length > 32 ? n.id.slice(0, 31) + "…" : n.id;
      const kind = s("text", { x: 8, y: 28, class: "kind" });
      kind.textContent = n.kind + (n.status ? " · " + n.status : "");
      g.append(rect, title, name, kind);
      g.addEventListener("click", (ev) => { ev.stopPropagation(); select(n.id, false); });
      g.addEventListener("dblclick", (ev) => {
        ev.stopPropagation();
        if (D.models) location.hash = modelHref(n.id); // the lineage-only page has no model pages
      });
      nodeLayer.append(g); nodeEls.set(n.id, g);
    }

    const search = h("input", { type: "search", id: "search", placeholder: "search: name, tag:x, path:dir/, kind:view", value: st.query });
    const results = h("ul", { class: "results", id: "results" });
    const colour = h("select", { id: "colour" },
      h("option", { value: "kind" }, "colour by kind"), h("option", { value: "status" }, "colour by last status"));
    colour.value = st.colour;
    const legend = h("div", { class: "legend", id: "legend" });
    const tools = h("div", { class: "graph-tools" }, search,
      h("div", { class: "row" }, colour,
        h("button", { onclick: () => fit(), title: "fit the whole graph" }, "fit"),
        h("button", { onclick: () => zoomBy(1.25) }, "+"), h("button", { onclick: () => zoomBy(0.8) }, "−"),
        h("button", { onclick: () => select(null) }, "clear")),
      legend, results);
    const side = h("div", { class: "side", id: "side", hidden: true });
    const wrap = h("div", { class: "graph-wrap" }, svg, tools, side);
    frame("graph", wrap);

    function apply() { viewport.setAttribute("transform", `translate(${st.x},${st.y}) scale(${st.k})`); }
    function fit() {
      // the whole graph in view, right of the search panel
      const box = svg.getBoundingClientRect(), wide = box.width > 1100;
      const left = wide ? 350 : 20, right = wide ? 370 : 20; // room for the panels
      const maxX = Math.max(...D.nodes.map((n) => n.x)) + NODE_W, maxY = Math.max(...D.nodes.map((n) => n.y)) + NODE_H;
      const k = Math.min((box.width - left - right) / Math.max(maxX, 1), (box.height - 40) / Math.max(maxY, 1), 1.2);
      st.k = Math.max(k, 0.02); st.x = left; st.y = 20;
      apply();
    }
    function zoomBy(f, cx, cy) {
      const box = svg.getBoundingClientRect();
      cx = cx === undefined ? box.width / 2 : cx; cy = cy === undefined ? box.height / 2 : cy;
      const k = Math.min(Math.max(st.k * f, 0.02), 4);
      st.x = cx - (cx - st.x) * (k / st.k); st.y = cy - (cy - st.y) * (k / st.k); st.k = k;
      apply();
    }
    function centre(id) {
      const n = byId.get(id), box = svg.getBoundingClientRect();
      if (st.k < 0.6) st.k = 0.9;
      st.x = box.width / 2 - (n.x + NODE_W / 2) * st.k; st.y = box.height / 2 - (n.y + NODE_H / 2) * st.k;
      apply();
    }
    function paint() {
      const table = st.colour === "kind" ? KIND_COLOURS : STATUS_COLOURS;
      for (const n of D.nodes) {
        const key = st.colour === "kind" ? n.kind : (n.status || "none");
        nodeEls.get(n.id).querySelector("rect").setAttribute("fill", table[key] || "#f1f5f9");
      }
      const used = new Set(D.nodes.map((n) => (st.colour === "kind" ? n.kind : (n.status || "none"))));
      legend.replaceChildren(...[...used].sort().map((key) => {
        const sp = h("span", {}, key === "none" ? "never built" : key);
        sp.style.setProperty("--swatch", table[key] || "#f1f5f9");
        return sp;
      }));
    }
    function matches(n, q) {
      const terms = q.toLowerCase().split(/\s+/).filter(Boolean);
      return terms.every((t) => {
        if (t.startsWith("tag:")) return n.tags.some((x) => x.toLowerCase() === t.slice(4));
        if (t.startsWith("path:")) return (n.file || "").toLowerCase().includes(t.slice(5));
        if (t.startsWith("kind:")) return n.kind === t.slice(5);
        return n.id.toLowerCase().includes(t) || (n.file || "").toLowerCase().includes(t);
      });
    }
    function highlight() {
      const q = st.query.trim();
      const hits = q ? D.nodes.filter((n) => matches(n, q)) : [];
      const hitSet = new Set(hits.map((n) => n.id));
      let up = new Set(), down = new Set();
      if (st.selected) { up = closure(st.selected, parents); down = closure(st.selected, children); }
      const lit = st.selected ? new Set([st.selected, ...up, ...down]) : null;
      for (const [id, g] of nodeEls) {
        g.classList.toggle("selected", id === st.selected);
        g.classList.toggle("up", up.has(id));
        g.classList.toggle("down", down.has(id));
        g.classList.toggle("match", hitSet.has(id));
        g.classList.toggle("dim", (lit && !lit.has(id)) || (!lit && q !== "" && !hitSet.has(id)));
      }
      for (const p of edgeEls) {
        const on = lit && lit.has(p.dataset.from) && lit.has(p.dataset.to);
        p.classList.toggle("lit", !!on);
        p.classList.toggle("dim", (lit && !on) || (!lit && q !== "" && !(hitSet.has(p.dataset.from) && hitSet.has(p.dataset.to))));
      }
      results.replaceChildren(...hits.slice(0, 50).map((n, i) =>
        h("li", { class: i === 0 ? "current" : "", "data-id": n.id, onclick: () => select(n.id, true) },
          n.id, h("small", {}, n.kind))));
      if (hits.length > 50) results.append(h("li", { class: "muted" }, `… ${hits.length - 50} more`));
      if (q && !hits.length) results.append(h("li", { class: "muted" }, "no model matches"));
      showSide();
    }
    function showSide() {
      const id = st.selected;
      if (!id) { side.hidden = true; return; }
      const n = byId.get(id), page = D.models ? D.models[id] : null;
      const up = closure(id, parents), down = closure(id, children);
      side.hidden = false;
      side.replaceChildren(); put(side, 
        h("h3", {}, id),
        h("p", {}, badge(n.kind), statusBadge(n.status)),
        n.file ? h("p", { class: "muted" }, n.file) : null,
        page && page.description ? h("p", {}, page.description) : null,
        h("p", {}, `${parents.get(id).length} parents, ${up.size} upstream · ${children.get(id).length} children, ${down.size} downstream`),
        D.models ? h("p", {}, h("a", { href: modelHref(id), id: "open-page" }, "open the model's page →")) : null);
    }
    function select(id, andCentre) {
      st.selected = id; highlight();
      if (id && andCentre) centre(id);
    }
    search.addEventListener("input", () => { st.query = search.value; highlight(); });
    search.addEventListener("keydown", (ev) => {
      if (ev.key !== "Enter") return;
      const first = results.querySelector("li[data-id]");
      if (first && D.models) location.hash = modelHref(first.dataset.id);
      else if (first) select(first.dataset.id, true);
    });
    colour.addEventListener("change", () => { st.colour = colour.value; paint(); });
    // pan and zoom
    let drag = null;
    svg.addEventListener("pointerdown", (ev) => {
      if (ev.target.closest && ev.target.closest(".node")) return;
      drag = { x: ev.clientX, y: ev.clientY, sx: st.x, sy: st.y, moved: false };
      svg.classList.add("dragging"); svg.setPointerCapture(ev.pointerId);
    });
    svg.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      st.x = drag.sx + ev.clientX - drag.x; st.y = drag.sy + ev.clientY - drag.y;
      drag.moved = drag.moved || Math.abs(ev.clientX - drag.x) + Math.abs(ev.clientY - drag.y) > 3;
      apply();
    });
    svg.addEventListener("pointerup", () => {
      if (drag && !drag.moved) select(null);
      drag = null; svg.classList.remove("dragging");
    });
    svg.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const box = svg.getBoundingClientRect();
      zoomBy(Math.exp(-ev.deltaY * 0.0015), ev.clientX - box.left, ev.clientY - box.top);
    }, { passive: false });
    paint();
    if (st.fitted) apply(); else { fit(); st.fitted = true; }
    highlight();
    if (st.selected) showSide();
    search.focus();
  }

  // -- a model's page ------------------------------------------------------------------
  function section(title, ...body) { return [h("h2", {}, title), ...body]; }
  function table(head, rows, attrs) {
    return h("table", Object.assign({ class: "data" }, attrs || {}),
      h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
      h("tbody", {}, rows));
  }
  function fmtSeconds(x) { return x === null || x === undefined ? "" : Number(x).toFixed(2) + " s"; }

  function modelView(id, column) {
    const n = byId.get(id), page = D.models && D.models[id];
    if (!n || !page) {
      frame("graph", h("div", { class: "page" }, h("h1", {}, "not found"),
        h("p", {}, `No model or source is called ${id}.`), h("a", { href: "#/" }, "back to the graph")));
      return;
    }
    const last = page.builds[0];
    const body = h("div", { class: "page", id: "model-page", "data-id": id });
    put(body, 
      h("p", {}, h("a", { href: "#/" }, "← lineage")),
      h("h1", {}, id),
      h("p", {}, badge(n.kind), statusBadge(n.status), n.file ? h("code", {}, n.file) : null,
        ...n.tags.map((t) => badge("tag:" + t))),
      page.description ? h("p", { class: "description" }, page.description) : null);
    if (page.state) {
      put(body, h("p", { class: "muted" }, `published ${page.state.built_at || "?"}` +
        (page.state.rows !== null && page.state.rows !== undefined ? `, ${page.state.rows} rows` : "") +
        (page.state.watermark ? `, watermark ${page.state.watermark}` : "")));
    }
    // columns
    const exact = !!column && page.columns.some((c) => c.name === column);
    const colRows = page.columns.map((c) => {
      const from = c.sources.length
        ? h("span", {}, ...c.sources.flatMap((src, i) => [i ? ", " : "",
          byId.has(src.relation) ? modelLink(src.relation, src.column) : src.relation + "." + src.column]))
        : h("span", { class: "muted" }, c.note || "");
      const tr = h("tr", { id: "col-" + c.name, "data-column": c.name }, h("td", {}, h("code", {}, c.name)),
        h("td", {}, c.type || h("span", { class: "muted" }, "not published")), h("td", { class: "from" }, from));
      if (column && (c.name === column || (!exact && c.name.toLowerCase() === column.toLowerCase()))) {
        tr.classList.add("hl"); // a column traced on a case-folding target may differ in case
      }
      return tr;
    });
    put(body, ...section("Columns",
      page.columns_note ? h("p", { class: "muted" }, page.columns_note) : null,
      colRows.length ? table(["column", "type", "comes from"], colRows, { id: "columns" })
        : h("p", { class: "muted" }, "No columns known: not published in the target, and not traceable from the SQL.")));
    // checks
    if (page.checks.length) {
      const rows = page.checks.map((c) => h("tr", {},
        h("td", {}, c.kind), h("td", {}, h("code", {}, c.name)),
        h("td", {}, c.gate === id ? (c.owner === id ? "this swap" : "this swap (a check of " + c.owner + ")") : h("span", {}, "gates ", modelLink(c.gate))),
        h("td", {}, c.last ? [statusBadge(c.last.status), c.last.partition ? `[${c.last.partition}] ` : "",
          h("a", { href: "#/run/" + encodeURIComponent(c.last.run_id), class: "muted" }, c.last.when || "")]
          : h("span", { class: "muted" }, "no result yet")),
        h("td", {}, c.last && c.last.detail ? h("pre", { class: "error" }, c.last.detail) : "",
          c.kind !== "header" && c.text ? h("details", {}, h("summary", {}, "SQL"), h("pre", {}, c.text)) : null)));
      put(body, ...section("Checks", table(["kind", "check", "gates", "last result", "detail"], rows, { id: "checks" })));
    }
    // builds
    const buildRows = page.builds.map((b) => h("tr", { class: "build" },
      h("td", {}, h("a", { href: "#/run/" + encodeURIComponent(b.run_id) }, b.run_id)),
      h("td", {}, b.started_at || ""), h("td", {}, fmtSeconds(b.duration_s)),
      h("td", {}, b.rows === null || b.rows === undefined ? "" : String(b.rows)),
      h("td", {}, statusBadge(b.status)), h("td", {}, b.failure_class || ""),
      h("td", {}, b.partition || ""),
      h("td", {}, b.watermark_from || b.watermark_to ? `${b.watermark_from || ""} → ${b.watermark_to || ""}` : ""),
      h("td", {}, b.error ? h("pre", { class: "error" }, b.error) : (b.reason || ""))));
    put(body, ...section("Last builds", buildRows.length
      ? table(["run", "started", "duration", "rows", "status", "class", "partition", "watermarks", "error / why"], buildRows, { id: "builds" })
      : h("p", { class: "muted", id: "builds" }, D.recorded ? "Never built in this target." : "Not known: the target's state was not read.")));
    // neighbours and writes
    const list = (ids) => ids.length ? h("ul", { class: "plain" }, ids.map((x) => h("li", {}, modelLink(x)))) : h("p", { class: "muted" }, "none");
    put(body, h("div", { class: "cols" },
      h("div", {}, ...section("Upstream", list(page.upstream))),
      h("div", {}, ...section("Downstream", list(page.downstream)))));
    if (page.writes.length || page.producer || page.modifiers.length) {
      put(body, ...section("Producers and modifiers",
        page.producer ? h("p", {}, "produced by ", modelLink(page.producer)) : null,
        page.modifiers.length ? h("p", {}, "modified, in its build, by ", ...page.modifiers.flatMap((m, i) => [i ? " → " : "", modelLink(m)])) : null,
        h("ul", { class: "plain" }, page.writes.map((w) => h("li", {}, w)))));
    }
    if (page.headers.length) put(body, ...section("Headers", h("pre", { id: "headers" }, page.headers.join("\n"))));
    if (page.written !== null && page.written !== undefined) {
      put(body, ...section(page.format === "sql" ? "SQL as written" : "File as written", h("pre", { id: "sql" }, page.written)));
    }
    if (page.rendered && page.rendered !== page.written) {
      put(body, ...section("As rendered", h("pre", { id: "rendered" }, page.rendered)));
    }
    frame("graph", body);
    const hl = column && document.getElementById("col-" + column);
    if (hl) hl.scrollIntoView({ block: "center" }); else window.scrollTo(0, 0);
  }

  // -- run reports ---------------------------------------------------------------------
  function runReport(run, open) {
    const tasks = run.tasks;
    const count = (st) => tasks.filter((t) => t.status === st).length;
    const failed = tasks.filter((t) => t.status === "failed");
    const box = h("div", { class: "run", "data-run": run.run_id });
    put(box, h("h3", {}, h("a", { href: "#/run/" + encodeURIComponent(run.run_id) }, run.run_id), " ",
      statusBadge(run.status), h("span", { class: "muted" }, ` ${run.command}${run.selector ? " " + run.selector : ""} · ${run.started_at || ""} → ${run.finished_at || "?"} · ${run.host || ""}`)));
    put(box, h("p", { class: "counts" }, h("span", {}, `${tasks.length} task attempts`),
      h("span", {}, `${count("success")} built`), h("span", {}, `${failed.length} failed`),
      h("span", {}, `${count("skipped")} skipped`)));
    if (!open) return box;
    if (failed.length) {
      put(box, h("h4", {}, "Failures"));
      for (const t of failed) {
        put(box, h("div", { class: "failure" },
          h("p", {}, modelLink(t.model), t.partition ? ` [${t.partition}]` : "", " ", badge(t.failure_class || "failed", "status-failed"),
            t.path ? h("span", { class: "muted" }, ` ${t.path}${t.line ? ":" + t.line : ""}`) : null),
          h("pre", { class: "error" }, t.error || "(no error text)"),
          ...t.checks.filter((c) => !c.passed).map((c) => h("p", { class: "muted" }, `check ${c.name}: ${c.detail}`))));
      }
    }
    put(box, h("h4", {}, "Timeline"), timeline(tasks));
    const slow = tasks.filter((t) => t.status !== "skipped").sort((a, b) => b.duration_s - a.duration_s).slice(0, 10);
    if (slow.length) {
      put(box, h("h4", {}, "Slowest tasks"), table(["model", "duration", "rows", "status"], slow.map((t) =>
        h("tr", {}, h("td", {}, modelLink(t.model)), h("td", {}, fmtSeconds(t.duration_s)),
          h("td", {}, t.rows === null || t.rows === undefined ? "" : String(t.rows)), h("td", {}, statusBadge(t.status))))));
    }
    return box;
  }
  function timeline(tasks) {
    const timed = tasks.filter((t) => t.started_at);
    if (!timed.length) return h("p", { class: "muted" }, "no task ran");
    const t0 = Math.min(...timed.map((t) => Date.parse(t.started_at.replace(" ", "T")))),
      t1 = Math.max(...timed.map((t) => Date.parse(t.started_at.replace(" ", "T")) + t.duration_s * 1000));
    const span = Math.max(t1 - t0, 1);
    const lanes = new Map();
    for (const t of timed) {
      const who = t.status === "skipped" ? "skipped (never ran)" : (t.worker || "worker");
      if (!lanes.has(who)) lanes.set(who, []);
      lanes.get(who).push(t);
    }
    const box = h("div", { class: "timeline" });
    for (const [who, list] of [...lanes].sort()) {
      const lane = h("div", { class: "lane" }, h("span", { class: "who", title: who }, who));
      for (const t of list) {
        const start = Date.parse(t.started_at.replace(" ", "T")) - t0;
        const bar = h("a", { class: "bar " + t.status, href: modelHref(t.model), title: `${t.model} ${t.status} ${fmtSeconds(t.duration_s)}` }, t.model);
        bar.style.left = (100 * start / span).toFixed(3) + "%";
        bar.style.width = Math.max(100 * t.duration_s * 1000 / span, 0.2).toFixed(3) + "%";
        lane.append(bar);
      }
      put(box, lane);
    }
    put(box, h("p", { class: "muted" }, `${(span / 1000).toFixed(2)} s from the first task's start to the last one's end`));
    return box;
  }
  function runsView(only) {
    const body = h("div", { class: "page", id: "runs" }, h("h1", {}, only ? "Run " + only : "Latest runs"));
    const runs = (D.runs || []).filter((r) => !only || r.run_id === only);
    if (!runs.length) put(body, h("p", { class: "muted" }, D.recorded ? "No run recorded." : "Not known: the target's state was not read."));
    runs.forEach((r, i) => put(body, runReport(r, !!only || i === 0)));
    frame("runs", body);
    window.scrollTo(0, 0);
  }

  function route() {
    let parts;
    try {
      parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    } catch (e) {
      parts = []; // a malformed address: the graph
    }
    if (parts[0] === "model" && parts[1]) modelView(parts[1], parts[2]);
    else if (parts[0] === "runs") runsView(null);
    else if (parts[0] === "run" && parts[1]) runsView(parts[1]);
    else graphView();
  }
  window.addEventListener("hashchange", route);
  route();
  document.body.dataset.ready = "1";
})();
