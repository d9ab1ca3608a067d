// evalkit sample viewer: renders the embedded report data; no network, no libraries.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("evalkit-data").textContent);
  const PAGE = 60;
  const $ = (id) => document.getElementById(id);
  const state = { protocol: "", cat: "", run: "", status: "", text: "", shown: PAGE };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fmt(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(Math.abs(value) >= 10 ? 2 : 3);
    return String(value);
  }

  // ------------------------------------------------------------------ summary table
  function hashFor(filter) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(filter)) if (value !== "" && value !== null) params.set(key, value);
    return "#" + params.toString();
  }

  function renderTable() {
    if (!DATA.tables.length) { $("table").append(el("p", {}, "No summary.json in these runs.")); return; }
    for (const t of DATA.tables) {
      const table = el("table", { class: "summary", "data-protocol": t.protocol });
      table.append(el("caption", {}, t.protocol));
      table.append(el("thead", {}, el("tr", {}, el("th", {}, "Run"), t.columns.map((c) => el("th", {}, c)))));
      const body = el("tbody");
      for (const row of t.rows) {
        const run = DATA.runs[row.run];
        const label = el("a", { href: hashFor({ protocol: t.protocol, run: row.run }), title: run.path }, run.label);
        body.append(el("tr", {}, el("td", {}, label), row.cells.map((value, i) => {
          if (!row.present[i]) return el("td", {}, "");
          const filter = { protocol: t.protocol, run: row.run, cat: t.cats[i] || "", q: (t.queries || [])[i] || "" };
          return el("td", {}, el("a", { href: hashFor(filter), class: "cell", title: "samples behind " + t.columns[i] }, fmt(value)));
        })));
      }
      table.append(body);
      $("table").append(el("div", { class: "scroll" }, table));
    }
  }

  // ------------------------------------------------------------------ filters
  function fillSelect(select, options, all) {
    select.replaceChildren(el("option", { value: "" }, all), ...options.map(([value, text]) => el("option", { value }, text)));
  }

  function setupFilters() {
    const protocols = [...new Set(DATA.samples.map((s) => s.p))].sort();
    fillSelect($("f-protocol"), protocols.map((p) => [p, p]), "all");
    fillSelect($("f-run"), DATA.runs.map((r, i) => [String(i), r.label + " (" + r.protocol + ")"]), "all");
    updateCategories();
    for (const [id, key] of [["f-protocol", "protocol"], ["f-cat", "cat"], ["f-run", "run"], ["f-status", "status"]]) {
      $(id).addEventListener("change", () => { state[key] = $(id).value; if (key === "protocol") { state.cat = ""; updateCategories(); } pushHash(); });
    }
    $("f-text").addEventListener("input", () => { state.text = $("f-text").value; state.shown = PAGE; renderGrid(); });
    $("f-reset").addEventListener("click", () => { Object.assign(state, { protocol: "", cat: "", run: "", status: "", text: "" }); $("f-text").value = ""; pushHash(); });
    $("f-text").addEventListener("change", pushHash);  // Enter or leaving the box keeps the search in the URL
    $("more").addEventListener("click", () => { state.shown += PAGE; renderGrid(); });
    window.addEventListener("hashchange", readHash);
  }

  function updateCategories() {
    const cats = [...new Set(DATA.samples.filter((s) => !state.protocol || s.p === state.protocol).map((s) => s.cat))].sort();
    fillSelect($("f-cat"), cats.map((c) => [c, c]), "all");
    $("f-cat").value = state.cat;
  }

  function pushHash() {
    const target = hashFor({ protocol: state.protocol, cat: state.cat, run: state.run, status: state.status, q: state.text });
    if (location.hash === target || (target === "#" && !location.hash)) { state.shown = PAGE; syncControls(); renderGrid(); }
    else location.hash = target;
  }

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    for (const key of ["protocol", "cat", "run", "status"]) state[key] = params.get(key) || "";
    state.text = params.get("q") || "";
    state.shown = PAGE;
    syncControls();
    renderGrid();
    if (location.hash.length > 1) $("filters").scrollIntoView();
  }

  function syncControls() {
    $("f-protocol").value = state.protocol;
    updateCategories();
    $("f-run").value = state.run;
    $("f-status").value = state.status;
    $("f-text").value = state.text;
  }

  function searchable(sample) {
    if (sample._text === undefined) {
      const parts = [sample.id, sample.prompt, sample.cat];
      for (const images of Object.values(sample.runs)) for (const im of images) {
        parts.push(im.why || "", im.think || "", im.how || "");
        for (const r of im.srr || []) parts.push(r.think || "");
      }
      sample._text = parts.join("\n").toLowerCase();
    }
    return sample._text;
  }

  function matches(sample) {
    if (state.protocol && sample.p !== state.protocol) return false;
    if (state.cat && sample.cat !== state.cat) return false;
    if (state.run && !(state.run in sample.runs)) return false;
    if (state.status) {
      if (state.run) {
        const images = sample.runs[state.run];
        const v = images.map((im) => im.v);
        if (state.status === "pass" && !(v.length && v.every((x) => x === "pass"))) return false;
        if (state.status === "fail" && !v.includes("fail")) return false;
        if (state.status === "err" && !v.includes("err")) return false;
        if (state.status === "disagree" && !sample.flags.disagree) return false;
      } else if (!sample.flags[state.status]) return false;
    }
    const text = state.text.trim().toLowerCase();
    return !text || searchable(sample).includes(text);
  }

  // ------------------------------------------------------------------ samples
  function overlay(boxes) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    for (const [cls, x1, y1, x2, y2, conf, colour] of boxes) {
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", x1); rect.setAttribute("y", y1);
      rect.setAttribute("width", Math.max(0, x2 - x1)); rect.setAttribute("height", Math.max(0, y2 - y1));
      const title = document.createElementNS(ns, "title");
      title.textContent = cls + (colour ? " (" + colour + ")" : "") + (conf !== null ? " " + conf : "");
      rect.append(title);
      const text = document.createElementNS(ns, "text");
      text.setAttribute("x", x1 + 2); text.setAttribute("y", y1 + 12);
      text.textContent = (colour ? colour + " " : "") + cls;
      svg.append(rect, text);
    }
    return svg;
  }

  function sizeOverlay(img, svg) {
    const fit = () => svg.setAttribute("viewBox", "0 0 " + (img.naturalWidth || 1) + " " + (img.naturalHeight || 1));
    if (img.complete && img.naturalWidth) fit(); else img.addEventListener("load", fit, { once: true });
  }

  function questionTable(rows) {
    // Columns that no row fills (P(yes) for text answers, expected where there is no key) are left out.
    const hasP = rows.some((r) => r[2] !== null && r[2] !== undefined);
    const hasGt = rows.some((r) => r[3] !== null && r[3] !== undefined);
    const head = ["question", "answer"].concat(hasP ? ["P(yes)"] : [], hasGt ? ["expected"] : []);
    return el("table", { class: "q" }, el("tr", {}, head.map((h) => el("th", {}, h))),
      rows.map(([q, a, p, gt]) => el("tr", {}, el("td", {}, q), el("td", {}, fmt(a)),
        hasP ? el("td", {}, p === null || p === undefined ? "–" : Number(p).toFixed(3)) : null,
        hasGt ? el("td", {}, fmt(gt)) : null)));
  }

  function srrStrip(rounds) {
    return el("div", { class: "srr" }, rounds.map((r) => el("div", { class: "round" },
      el("img", { src: r.src, alt: "round " + r.r, loading: "lazy" }),
      el("div", {}, "r" + r.r + " ", el("span", { class: "decision-" + (r.decision || "none") }, r.decision || "?"),
        r.reward !== null && r.reward !== undefined ? " " + Number(r.reward).toFixed(2) : "",
        r.oracle !== null && r.oracle !== undefined ? (r.oracle ? " ✓" : " ✗") : ""),
      r.note ? el("div", { class: "why" }, r.note) : null,
      r.think ? el("div", { class: "think", title: r.think }, r.think) : null)));
  }

  function figure(im) {
    const img = el("img", { src: im.src, alt: "image " + im.k, loading: "lazy" });
    const frame = el("div", { class: "frame " + im.v }, img);
    if (im.boxes && im.boxes.length) { const svg = overlay(im.boxes); frame.append(svg); sizeOverlay(img, svg); }
    const more = [];
    if (im.q && im.q.length) more.push(questionTable(im.q));
    if (im.think) more.push(el("div", {}, el("b", {}, "think "), el("pre", {}, im.think)));
    for (const r of im.srr || []) {
      more.push(el("div", {}, el("b", {}, "SRR round " + r.r + ": " + (r.decision || "?")), r.think ? el("pre", {}, r.think) : null));
      if (r.q && r.q.length) more.push(questionTable(r.q));
    }
    for (const [key, text] of im.replies || []) more.push(el("div", {}, el("b", {}, key), el("pre", {}, text)));
    if (im.extra) more.push(el("div", { class: "why" }, Object.entries(im.extra).map(([k, v]) => k + "=" + fmt(v)).join(", ")));
    if (im.seed !== null && im.seed !== undefined) more.push(el("div", { class: "why" }, "seed " + im.seed));
    return el("figure", { class: "image", "data-verdict": im.v }, frame,
      el("figcaption", {}, el("span", { class: "badge " + im.v }, { pass: "pass", fail: "fail", err: "judge failure", na: "scored" }[im.v] || im.v),
        " k=" + im.k + " ", im.how || "",
        im.why ? el("div", { class: "why" }, im.why) : null,
        im.srr && im.srr.length ? srrStrip(im.srr) : null,
        more.length ? el("details", {}, el("summary", {}, "details"), more) : null));
  }

  function card(sample) {
    const runs = Object.keys(sample.runs).filter((i) => !state.run || i === state.run);
    return el("article", { class: "sample", id: "s-" + sample.p + "-" + sample.id },
      el("div", { class: "head" }, el("span", { class: "sid" }, sample.p + " · " + sample.id), el("span", { class: "cat" }, sample.cat),
        sample.flags.disagree ? el("span", { class: "badge fail" }, "runs disagree") : null),
      el("div", { class: "prompt" }, sample.prompt),
      el("div", { class: "runs" }, runs.map((i) => el("div", { class: "run" },
        el("div", { class: "label" }, DATA.runs[i].label), el("div", { class: "images" }, sample.runs[i].map(figure))))));
  }

  function renderGrid() {
    const hits = DATA.samples.filter(matches);
    $("count").textContent = hits.length + " of " + DATA.samples.length + " samples";
    $("count").dataset.count = String(hits.length);
    $("grid").replaceChildren(...hits.slice(0, state.shown).map(card));
    $("more").hidden = hits.length <= state.shown;
  }

  renderTable();
  setupFilters();
  readHash();
})();
