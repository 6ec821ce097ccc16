// perf-infra dashboard: polls <base>/data for new history rows and draws every chart as inline SVG.
// No library and no build step: this file is the whole client (see ARCHITECTURE.md, "The dashboard").
// Column names are "kind|group|label" (infra/server/_dashboard_source.py); counters arrive cumulative
// and rates are differences between rows, so a missed refresh loses nothing.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 360, H = 150, PAD_L = 44, PAD_R = 8, PAD_T = 8, PAD_B = 20;
  const COLORS = 8;
  const base = document.body.dataset.base || "";
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const theme = params.get("theme");  // "dark" / "light" override the editor's or OS's preference
  if (theme === "dark" || theme === "light") document.documentElement.dataset.theme = theme;
  const state = { seq: 0, epoch: null, t: [], cols: {}, current: null, window: 3600, refresh: 5, timer: null };

  // ---------------------------------------------------------------------------------- data

  function parseColumn(name) {
    const a = name.indexOf("|"), b = name.indexOf("|", a + 1);
    return { kind: name.slice(0, a), group: name.slice(a + 1, b), label: name.slice(b + 1) };
  }

  function merge(doc) {
    if (doc.reset) { state.t = []; state.cols = {}; }
    const before = state.t.length;
    for (const v of doc.t) state.t.push(v);
    for (const [name, values] of Object.entries(doc.columns)) {
      let col = state.cols[name];
      if (!col) col = state.cols[name] = new Array(before).fill(null);
      for (const v of values) col.push(v);
    }
    for (const col of Object.values(state.cols)) while (col.length < state.t.length) col.push(null);
    // keep one window of rows
    const oldest = doc.now - doc.window;
    let drop = 0;
    while (drop < state.t.length && state.t[drop] < oldest) drop++;
    if (drop) {
      state.t.splice(0, drop);
      for (const col of Object.values(state.cols)) col.splice(0, drop);
    }
    state.seq = doc.seq;
    state.window = doc.window;
    state.refresh = doc.refresh;
    state.current = doc.current;
  }

  function columns(kind, group) {
    const out = [];
    for (const name of Object.keys(state.cols).sort()) {
      const c = parseColumn(name);
      if (c.kind === kind && (group === undefined || c.group === group)) out.push({ name, ...c });
    }
    return out;
  }

  function raw(name) {
    const col = state.cols[name] || [], pts = [];
    for (let i = 0; i < col.length; i++) if (col[i] !== null) pts.push([state.t[i], col[i]]);
    return pts;
  }

  // Per-second rate of a cumulative counter between consecutive rows where both have a value.
  function rate(name) {
    const col = state.cols[name] || [], pts = [];
    for (let i = 1; i < state.t.length; i++) {
      const a = col[i - 1] ?? null, b = col[i] ?? null, dt = state.t[i] - state.t[i - 1];
      if (a === null || b === null || dt <= 0) continue;
      pts.push([state.t[i], Math.max(0, b - a) / dt]);  // a counter reset reads 0, not negative
    }
    return pts;
  }

  // Hit rate of the calls in each interval (Δhits / (Δhits + Δmisses)); no point where there were none.
  function intervalHitRate(ns) {
    const h = state.cols["hits|cache|" + ns] || [], m = state.cols["misses|cache|" + ns] || [], pts = [];
    for (let i = 1; i < state.t.length; i++) {
      const dh = (h[i] ?? 0) - (h[i - 1] ?? 0), dm = (m[i] ?? 0) - (m[i - 1] ?? 0);
      if (dh + dm > 0) pts.push([state.t[i], (100 * dh) / (dh + dm)]);
    }
    return pts;
  }

  // ---------------------------------------------------------------------------------- formatting

  function fmt(v, unit) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    if (unit === "%") return v.toFixed(1) + " %";
    if (unit === "bytes") {
      const k = ["B", "KiB", "MiB", "GiB", "TiB"];
      let i = 0;
      while (Math.abs(v) >= 1024 && i < k.length - 1) { v /= 1024; i++; }
      return (i ? v.toFixed(1) : v.toFixed(0)) + " " + k[i];
    }
    if (unit === "s" && v >= 120) return (v / 60).toFixed(1) + " min";
    const a = Math.abs(v);
    const s = Number.isInteger(v) ? String(v) : a >= 1000 ? v.toFixed(0) : a >= 100 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : a === 0 ? "0" : v.toPrecision(2);
    return unit ? s + " " + unit : s;
  }

  function clock(t) {
    const d = new Date(t * 1000);
    return d.toTimeString().slice(0, 8);
  }

  function el(tag, attrs, text) {
    const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function niceTicks(lo, hi, n) {
    if (hi <= lo) hi = lo + 1;
    const step0 = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }

  // ---------------------------------------------------------------------------------- charts

  // spec: {id, title, unit, series: [{name, points}], yMin, yMax, step}
  function chart(spec) {
    const box = el("div", { class: "chart", id: "chart-" + spec.id, "data-chart": spec.id });
    box.append(el("div", { class: "title" }, spec.title));
    const hover = el("div", { class: "hover" }, "\u00a0");
    box.append(hover);
    const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": spec.title });
    const series = spec.series.filter((s) => s.points.length > 0);
    const total = series.reduce((n, s) => n + s.points.length, 0);
    box.dataset.points = String(total);
    box.dataset.series = String(series.length);
    const now = state.t.length ? state.t[state.t.length - 1] : Date.now() / 1000;
    const t0 = Math.max(state.t.length ? state.t[0] : now, now - state.window);
    const t1 = Math.max(now, t0 + 1);
    let lo = spec.yMin ?? Infinity, hi = spec.yMax ?? -Infinity;
    for (const s of series) for (const [, v] of s.points) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (!isFinite(lo)) lo = 0;
    if (!isFinite(hi) || hi <= lo) hi = lo + 1;
    if (spec.yMax === undefined) hi += (hi - lo) * 0.05;
    const x = (t) => PAD_L + ((t - t0) / (t1 - t0)) * (W - PAD_L - PAD_R);
    const y = (v) => H - PAD_B - ((v - lo) / (hi - lo)) * (H - PAD_T - PAD_B);
    for (const v of niceTicks(lo, hi, 4)) {
      if (v < lo || v > hi) continue;
      svg.append(el("svg:line", { class: "axis", x1: PAD_L, x2: W - PAD_R, y1: y(v), y2: y(v) }));
      svg.append(el("svg:text", { class: "tick", x: PAD_L - 4, y: y(v) + 3, "text-anchor": "end" }, fmt(v, spec.unit === "%" ? "" : spec.unit === "bytes" ? "bytes" : "")));
    }
    for (const f of [0, 0.5, 1]) {
      const t = t0 + f * (t1 - t0);
      const anchor = f === 0 ? "start" : f === 1 ? "end" : "middle";
      svg.append(el("svg:text", { class: "tick", x: x(t), y: H - 6, "text-anchor": anchor }, clock(t)));
    }
    if (!series.length) {
      svg.append(el("svg:text", { class: "nodata", x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data yet"));
    }
    // drawn last-first, so the first series (p50 of p50/p95/p99) lies on top where lines coincide
    series.map((s, i) => [s, i]).reverse().forEach(([s, i]) => {
      const cls = "s" + (s.color ?? i) % COLORS;
      let d = "";
      let prev = null;
      for (const [t, v] of s.points) {
        const px = x(t).toFixed(1), py = y(v).toFixed(1);
        if (spec.step && prev !== null) d += `L${px},${prev}`;
        d += (d ? "L" : "M") + px + "," + py;
        prev = py;
      }
      svg.append(el("svg:path", { class: "line " + cls, d, "data-series": s.name, "data-points": s.points.length }));
      if (s.points.length <= 60) {  // dots where points are sparse: a single sample still shows
        for (const [t, v] of s.points) svg.append(el("svg:circle", { class: "dot " + cls, cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2 }));
      }
    });
    const cursor = el("svg:line", { class: "cursor", x1: -10, x2: -10, y1: PAD_T, y2: H - PAD_B });
    svg.append(cursor);
    svg.addEventListener("mousemove", (ev) => {
      const r = svg.getBoundingClientRect();
      const px = ((ev.clientX - r.left) / r.width) * W;
      const t = t0 + ((px - PAD_L) / (W - PAD_L - PAD_R)) * (t1 - t0);
      cursor.setAttribute("x1", px); cursor.setAttribute("x2", px);
      const parts = [clock(t)];
      for (const s of series) {
        let best = null;
        for (const p of s.points) if (best === null || Math.abs(p[0] - t) < Math.abs(best[0] - t)) best = p;
        if (best) parts.push(`${s.name}: ${fmt(best[1], spec.unit)}`);
      }
      hover.textContent = parts.join("  ·  ");
    });
    svg.addEventListener("mouseleave", () => { cursor.setAttribute("x1", -10); cursor.setAttribute("x2", -10); hover.textContent = "\u00a0"; });
    box.append(svg);
    const legend = el("div", { class: "legend" });
    series.forEach((s, i) => legend.append(el("span", { class: "s" + (s.color ?? i) % COLORS }, s.name)));
    box.append(legend);
    return box;
  }

  function latencyLabel(c) {
    return c.label;
  }

  function render() {
    const cur = state.current || { cache: {}, breakers: {}, groups: [] };
    // tiles: hit rate per namespace exactly as get_stats() reports it
    const tiles = document.getElementById("tiles");
    tiles.replaceChildren();
    const names = Object.keys(cur.cache);
    if (!names.length) tiles.append(el("p", { class: "empty" }, "no cache calls yet"));
    for (const ns of names) {
      const c = cur.cache[ns];
      const tile = el("div", { class: "tile", "data-namespace": ns });
      tile.append(el("div", { class: "name" }, "hit rate · " + ns));
      // hit_rate is get_stats()'s fraction (0.8); data-value keeps it exactly as reported
      const pct = c.hit_rate === null || c.hit_rate === undefined ? null : 100 * c.hit_rate;
      tile.append(el("div", { class: "big hit-rate", "data-value": c.hit_rate ?? "" }, fmt(pct, "%")));
      tile.append(el("div", { class: "small" }, `${c.hits} hits · ${c.misses} misses`));
      const extra = [];
      if (c.compute_seconds_saved !== null && c.compute_seconds_saved !== undefined) extra.push(fmt(c.compute_seconds_saved, "s") + " saved");
      if (c.entries !== null && c.entries !== undefined) extra.push(fmt(c.entries, "") + " entries");
      if (c.bytes !== null && c.bytes !== undefined) extra.push(fmt(c.bytes, "bytes"));
      if (extra.length) tile.append(el("div", { class: "small" }, extra.join(" · ")));
      tiles.append(tile);
    }
    const breakers = document.getElementById("breakers");
    breakers.replaceChildren();
    for (const [origin, v] of Object.entries(cur.breakers)) {
      const name = ["closed", "half-open", "open"][v] || String(v);
      const tile = el("div", { class: "tile " + name, "data-origin": origin });
      tile.append(el("div", { class: "name" }, "breaker · " + origin));
      tile.append(el("div", { class: "big" }, name));
      breakers.append(tile);
    }

    const charts = document.getElementById("charts");
    const specs = [];
    const nss = columns("hits", "cache").map((c) => c.label);
    for (const c of columns("misses", "cache")) if (!nss.includes(c.label)) nss.push(c.label);
    specs.push({ id: "hit-rate", title: "Cache hit rate per namespace (calls in each interval)", unit: "%", yMin: 0, yMax: 100,
      series: nss.map((ns) => ({ name: ns, points: intervalHitRate(ns) })) });
    const calls = columns("calls");
    specs.push({ id: "calls", title: "Calls per second", unit: "/s", yMin: 0,
      series: calls.map((c) => ({ name: c.label, points: rate(c.name) })) });
    const errs = columns("errors").concat(columns("cache_errors"));
    specs.push({ id: "errors", title: "Errors per second (operations and cache)", unit: "/s", yMin: 0,
      series: errs.map((c) => ({ name: c.kind === "cache_errors" ? "cache " + c.label : c.label, points: rate(c.name) })) });
    specs.push({ id: "saved", title: "Compute time saved by cache hits (cumulative)", unit: "s", yMin: 0,
      series: columns("saved", "cache").map((c) => ({ name: c.label, points: raw(c.name) })) });
    specs.push({ id: "entries", title: "Cache entries", unit: "", yMin: 0,
      series: columns("entries", "cache").map((c) => ({ name: c.label, points: raw(c.name) })) });
    specs.push({ id: "bytes", title: "Cache bytes", unit: "bytes", yMin: 0,
      series: columns("bytes", "cache").map((c) => ({ name: c.label, points: raw(c.name) })) });
    specs.push({ id: "breakers", title: "Circuit breakers (0 closed · 1 half-open · 2 open)", unit: "", yMin: 0, yMax: 2, step: true,
      series: columns("breaker", "http").map((c) => ({ name: c.label, points: raw(c.name) })) });
    specs.push({ id: "retry-refusals", title: "Retries refused by the retry budget, per second", unit: "/s", yMin: 0,
      series: columns("denied", "http").map((c) => ({ name: c.label, points: rate(c.name) })) });
    charts.replaceChildren(...specs.map(chart));

    const latency = document.getElementById("latency");
    latency.replaceChildren();
    for (const g of cur.groups) {
      // an operation without a call in the window has no latency to draw: no empty chart for it
      const ops = columns("calls", g.id).filter((op) => ["p50", "p95", "p99"].some((q) => raw(`${q}|${g.id}|${op.label}`).length));
      if (!ops.length) continue;
      latency.append(el("h2", {}, "Latency · " + g.title + " (p50 / p95 / p99 of the calls in each interval, ms)"));
      const grid = el("section", { class: "charts", "data-group": g.id });
      for (const op of ops) {
        grid.append(chart({ id: "latency-" + g.id + "-" + op.label.replace(/[^A-Za-z0-9_.-]+/g, "_"), title: latencyLabel(op), unit: "ms", yMin: 0,
          series: ["p50", "p95", "p99"].map((q, i) => ({ name: q, color: i, points: raw(`${q}|${g.id}|${op.label}`) })) }));
      }
      latency.append(grid);
    }
    const span = state.t.length ? `${clock(state.t[0])} – ${clock(state.t[state.t.length - 1])}` : "";
    document.getElementById("range").textContent = span;
  }

  // ---------------------------------------------------------------------------------- polling

  function setStatus(text, bad) {
    const s = document.getElementById("status");
    s.textContent = text;
    s.classList.toggle("bad", !!bad);
  }

  async function poll() {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    let doc;
    try {
      const r = await fetch(`${base}/data?since=${state.seq}`, { headers, cache: "no-store" });
      if (r.status === 401) {
        const msg = document.getElementById("message");
        msg.hidden = false;
        msg.textContent = "This endpoint needs its bearer token: open the dashboard as …/dashboard?token=<token>.";
        setStatus("unauthorized", true);
        return;
      }
      if (!r.ok) throw new Error("HTTP " + r.status);
      doc = await r.json();
    } catch (err) {
      setStatus("cannot reach the process (" + (err && err.message ? err.message : err) + "); retrying", true);
      state.timer = setTimeout(poll, state.refresh * 1000);
      return;
    }
    if (state.epoch !== null && doc.epoch !== state.epoch && state.seq !== 0) {
      // another process answers at this URL now (a restart): its rows don't continue ours
      state.seq = 0; state.epoch = null; state.t = []; state.cols = {};
      return poll();
    }
    try {
      state.epoch = doc.epoch;
      merge(doc);
      render();
      document.body.dataset.seq = String(state.seq);
      setStatus(`live · refreshed ${clock(Date.now() / 1000)} · every ${state.refresh} s`);
    } catch (err) {
      console.error("perf-infra dashboard: drawing failed", err);  // a bug here, not the network
      setStatus("drawing failed: " + (err && err.message ? err.message : err), true);
    } finally {
      state.timer = setTimeout(poll, state.refresh * 1000);
    }
  }

  poll();
})();
