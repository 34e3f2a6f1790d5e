// The page code both dashboards share (lb-user's and alb's): fetching the
// API, polling it, building DOM nodes, number formatting and the live SVG
// charts. Served at /dashboard/common.js by both; each page's own script
// only knows its API's JSON. Plain browser JavaScript, no dependencies.
"use strict";

const Dash = (() => {
  // Text goes in as text nodes, never as HTML: backend names, addresses and
  // error messages come from the API and from config files.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  // The API's answer as JSON; a refusal throws its {"error": ...} message.
  async function api(method, path, body) {
    const init = { method, headers: {} };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    const text = await r.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (_) {
      throw new Error(`${method} ${path}: HTTP ${r.status}, not JSON`);
    }
    // alb's /api/health answers 503 with its JSON when nothing is up.
    if (!r.ok && !(json && json.pools)) {
      throw new Error((json && json.error) || `${method} ${path}: HTTP ${r.status}`);
    }
    return json;
  }

  // Shows what the last action or poll said in the status line.
  function status(text, isError) {
    const s = document.getElementById("status");
    if (!s) return;
    s.textContent = text;
    s.className = isError ? "error" : "";
  }

  // Calls `tick` now and every `ms` after the previous one finished, so a
  // slow answer never piles requests up. Errors go to the status line.
  function poll(tick, ms) {
    const run = async () => {
      try {
        await tick();
        status(`updated ${new Date().toLocaleTimeString()}`, false);
      } catch (e) {
        status(`cannot read the API: ${e.message}`, true);
      }
      setTimeout(run, ms);
    };
    run();
  }

  // An action button's work: the status line says what happened, and
  // `after` (usually the next poll) runs whatever the outcome.
  async function act(what, work, after) {
    try {
      await work();
      status(`${what}: done`, false);
    } catch (e) {
      status(`${what}: ${e.message}`, true);
    }
    if (after) {
      try {
        await after();
      } catch (e) {
        status(`${what}: done, but cannot read the API: ${e.message}`, true);
      }
    }
  }

  // 1234567 -> "1.23 M"; null (no rate yet) -> "-".
  function si(v, unit) {
    if (v === null || v === undefined || Number.isNaN(v)) return "-";
    const u = unit ? ` ${unit}` : "";
    const a = Math.abs(v);
    for (const [f, p] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
      if (a >= f) return `${(v / f).toFixed(2)} ${p}${unit || ""}`;
    }
    return `${a >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1)}${u}`;
  }

  // Seconds -> "850 µs", "12.5 ms", "1.20 s".
  function seconds(v) {
    if (v === null || v === undefined) return "-";
    if (v < 1e-3) return `${(v * 1e6).toFixed(0)} µs`;
    if (v < 1) return `${(v * 1e3).toFixed(1)} ms`;
    return `${v.toFixed(2)} s`;
  }

  // Replaces `table`'s body with `rows`: arrays of cells (text or nodes),
  // or {attrs, cells} for rows that carry attributes.
  function fill(table, rows, empty) {
    const body = table.tBodies[0] || table.appendChild(el("tbody"));
    const row = (r) => (Array.isArray(r) ? el("tr", {}, r.map(cell)) : el("tr", r.attrs, r.cells.map(cell)));
    const cell = (c) => el("td", c instanceof Element && c.classList.contains("num") ? { class: "num" } : {}, c);
    body.replaceChildren(...rows.map(row));
    if (!rows.length && empty) body.append(el("tr", {}, el("td", { colspan: table.tHead.rows[0].cells.length, class: "empty" }, empty)));
  }

  const SVG = "http://www.w3.org/2000/svg";
  const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const POINTS = 120;

  // A live line chart: push() one value per series per poll; the last
  // POINTS values are drawn, scaled to the largest shown. Series appear as
  // they are first pushed (a status code seen for the first time).
  class Chart {
    constructor(container, title, format) {
      this.format = format || ((v) => si(v));
      this.series = new Map();
      this.svg = document.createElementNS(SVG, "svg");
      this.svg.setAttribute("viewBox", "0 0 400 120");
      this.svg.setAttribute("preserveAspectRatio", "none");
      this.legend = el("div", { class: "legend" });
      container.append(el("figure", { class: "chart" }, el("figcaption", {}, title), this.svg, this.legend));
    }

    push(values) {
      const n = this.length();
      for (const name of Object.keys(values)) {
        if (!this.series.has(name)) this.series.set(name, { points: new Array(n).fill(null), colour: COLOURS[this.series.size % COLOURS.length] });
      }
      for (const [name, s] of this.series) {
        const v = values[name];
        s.points.push(v === undefined ? null : v);
        if (s.points.length > POINTS) s.points.shift();
      }
      this.draw();
    }

    length() {
      const first = this.series.values().next().value;
      return first ? first.points.length : 0;
    }

    draw() {
      let max = 0;
      for (const s of this.series.values()) for (const v of s.points) if (v !== null) max = Math.max(max, v);
      const scale = max > 0 ? 110 / max : 0;
      const lines = [];
      const legend = [];
      for (const [name, s] of this.series) {
        const d = [];
        s.points.forEach((v, i) => {
          if (v === null) return;
          // The newest point at the right edge, older ones to its left.
          const x = 400 - ((s.points.length - 1 - i) * 400) / (POINTS - 1);
          d.push(`${d.length ? "L" : "M"}${x.toFixed(1)},${(115 - v * scale).toFixed(1)}`);
        });
        const path = document.createElementNS(SVG, "path");
        path.setAttribute("d", d.join(""));
        path.setAttribute("stroke", s.colour);
        path.setAttribute("fill", "none");
        path.setAttribute("vector-effect", "non-scaling-stroke");
        lines.push(path);
        const last = s.points[s.points.length - 1];
        const item = el("span", { class: "series" }, `${name} `, el("b", {}, this.format(last)));
        // Through the CSSOM: the content security policy refuses style attributes.
        item.style.setProperty("--c", s.colour);
        legend.push(item);
      }
      this.svg.replaceChildren(...lines);
      this.legend.replaceChildren(el("span", { class: "max" }, `max ${this.format(max)}`), ...legend);
    }
  }

  // Whatever the page's scripts throw also shows in the status line (and in
  // the browser console), so a broken page does not look merely idle.
  window.addEventListener("error", (e) => status(`page error: ${e.message}`, true));
  window.addEventListener("unhandledrejection", (e) => status(`page error: ${e.reason}`, true));

  return { el, api, poll, act, status, si, seconds, fill, Chart };
})();
