// alb's dashboard: requests/s by status, latency p50/p95/p99, TLS handshake
// failures and active connections from GET /api/stats; pools and backends
// from GET /api/health, with the admin API's actions (add, remove). The
// shared code (Dash) is /dashboard/common.js.
"use strict";

(() => {
  const { el, api, poll, act, si, seconds, fill, Chart } = Dash;
  const POLL_MS = 1000;
  const charts = document.getElementById("charts");
  const byStatus = new Chart(charts, "requests/s by status", (v) => si(v));
  const latency = new Chart(charts, "latency (time to response headers)", seconds);
  const conns = new Chart(charts, "active connections", (v) => si(v));
  const tlsChart = new Chart(charts, "TLS handshake failures/s", (v) => si(v));
  const pools = document.getElementById("pools");
  const sections = new Map();

  function figure(label, value, field, raw) {
    return el("div", { class: "figure" }, el("div", { class: "value", "data-field": field, "data-value": raw ?? "" }, value), el("div", { class: "label" }, label));
  }

  // alb matches the id in the path as written (no percent-decoding), and
  // ids are often host:port: keep the colon.
  const idPath = (id) => encodeURIComponent(id).replace(/%3A/gi, ":");

  const num = (value, text) => el("span", { class: "num", "data-value": value ?? "" }, text);

  function renderStats(s) {
    const r = s.rates;
    const l = s.latency;
    byStatus.push(r ? r.requests : {});
    latency.push(l && l.count ? { p50: l.p50, p95: l.p95, p99: l.p99 } : {});
    conns.push({ open: s.active_connections });
    tlsChart.push(r ? r.tls_handshake_failures : {});
    const errors = r ? Object.entries(r.requests).filter(([code]) => code >= "500").reduce((a, [, v]) => a + v, 0) : null;
    document.getElementById("figures").replaceChildren(
      figure("requests/s", si(r && r.requests_total), "requests", r && r.requests_total),
      figure("5xx/s", si(errors), "errors", errors),
      figure("p50", seconds(l && l.p50), "p50", l && l.p50),
      figure("p95", seconds(l && l.p95), "p95", l && l.p95),
      figure("p99", seconds(l && l.p99), "p99", l && l.p99),
      figure("active connections", si(s.active_connections), "active_connections", s.active_connections),
    );
    const reasons = Object.entries(s.counters.tls_handshake_failures);
    fill(
      document.getElementById("tls"),
      reasons.map(([reason, n]) => {
        const rate = r ? r.tls_handshake_failures[reason] : null;
        return { attrs: { "data-reason": reason }, cells: [reason, num(rate, si(rate)), num(n, si(n))] };
      }),
      "none since start",
    );
  }

  function state(b) {
    if (b.draining) return ["draining", "draining"];
    if (b.ejected) return ["ejected", "down"];
    return b.healthy ? ["up", "up"] : ["down", "down"];
  }

  function section(pool, refresh) {
    if (sections.has(pool.name)) return sections.get(pool.name);
    const table = el(
      "table",
      { class: "backends" },
      el("thead", {}, el("tr", {}, ["backend", "url", "weight", "health", "available", "in flight", ""].map((h) => el("th", {}, h)))),
      el("tbody"),
    );
    const url = el("input", { name: "url", placeholder: "http://198.18.1.14:8080", required: true, size: 26 });
    const id = el("input", { name: "id", placeholder: "id (optional)", size: 12 });
    const weight = el("input", { name: "weight", type: "number", min: 1, value: 1, size: 4 });
    const add = (e) => {
      e.preventDefault();
      const body = { url: url.value.trim(), pool: pool.name, weight: Number(weight.value) };
      if (id.value.trim()) body.id = id.value.trim();
      act(`add ${body.url}`, () => api("POST", "/api/backends", body), refresh);
    };
    const form = el("form", { class: "add", onsubmit: add }, "add a backend:", url, id, "weight", weight, el("button", { type: "submit" }, "add"));
    const title = el("h2");
    const node = el("section", { class: "pool", "data-pool": pool.name }, title, table, form);
    pools.append(node);
    const s = { node, title, table };
    sections.set(pool.name, s);
    return s;
  }

  function renderHealth(h, refresh) {
    const seen = new Set();
    for (const pool of h.pools) {
      seen.add(pool.name);
      const s = section(pool, refresh);
      s.title.replaceChildren(`pool ${pool.name} `, el("small", {}, `${pool.algorithm} · ${pool.available} of ${pool.backends.length} available`));
      const rows = pool.backends.map((b) => {
        const [text, cls] = state(b);
        const remove = () => {
          if (!window.confirm(`Remove ${b.id}? It drains first: requests in flight finish.`)) return;
          act(`remove ${b.id}`, () => api("DELETE", `/api/backends/${idPath(b.id)}`), refresh);
        };
        return {
          attrs: { "data-backend": b.id, "data-health": text },
          cells: [
            b.id,
            b.url,
            b.weight,
            el("span", { class: cls }, text),
            b.available ? "yes" : "no",
            num(b.in_flight, b.in_flight),
            b.draining ? "" : el("button", { class: "remove danger", onclick: remove }, "remove"),
          ],
        };
      });
      fill(s.table, rows, "no backends");
    }
    for (const [name, s] of sections) {
      if (!seen.has(name)) {
        s.node.remove();
        sections.delete(name);
      }
    }
  }

  const refresh = async () => {
    const [s, h] = await Promise.all([api("GET", "/api/stats"), api("GET", "/api/health")]);
    renderStats(s);
    renderHealth(h, refresh);
  };
  poll(refresh, POLL_MS);
})();
