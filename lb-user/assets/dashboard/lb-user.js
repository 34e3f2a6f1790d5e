// lb-user's dashboard: VIPs and backends from GET /api/state, live rates,
// drops by reason, and the control API's actions (drain, undrain, add,
// remove). The shared code (Dash) is /dashboard/common.js.
"use strict";

(() => {
  const { el, api, poll, act, si, fill, Chart } = Dash;
  const POLL_MS = 1000;
  const charts = document.getElementById("charts");
  const packets = new Chart(charts, "packets/s by VIP", (v) => si(v));
  const bytes = new Chart(charts, "bytes/s by VIP", (v) => si(v, "B"));
  const flows = new Chart(charts, "new flows/s by VIP", (v) => si(v));
  const drops = new Chart(charts, "drops/s by reason", (v) => si(v));
  const vips = document.getElementById("vips");
  const sections = new Map();

  const path = (vip, backend) => `/api/vips/${encodeURIComponent(vip)}/backends` + (backend ? `/${encodeURIComponent(backend)}` : "");

  function figure(label, value, field) {
    return el("div", { class: "figure" }, el("div", { class: "value", "data-field": field }, value), el("div", { class: "label" }, label));
  }

  // A number cell that also keeps the raw value, for scripts and tests.
  function num(value, text) {
    const td = el("span", { class: "num", "data-value": value === null || value === undefined ? "" : value }, text);
    return td;
  }

  function state(b) {
    if (b.drain === "leaving") return `leaving (${b.seconds_left ?? "?"} s left, ${b.live_flows ?? "?"} flows)`;
    if (b.drain === "draining") return `draining (${b.live_flows ?? "?"} flows)`;
    return b.drain;
  }

  function actions(vip, b, refresh) {
    const a = b.address;
    const out = [];
    if (b.drain === "active") {
      out.push(el("button", { class: "drain", onclick: () => act(`drain ${a}`, () => api("PATCH", path(vip, a), { drain: true }), refresh) }, "drain"));
    } else if (b.drain === "draining") {
      out.push(el("button", { class: "undrain", onclick: () => act(`undrain ${a}`, () => api("PATCH", path(vip, a), { drain: false }), refresh) }, "undrain"));
    }
    if (b.drain !== "leaving") {
      const remove = () => {
        if (!window.confirm(`Remove ${a} from ${vip}? Its flows carry on until they end or the drain timeout passes.`)) return;
        act(`remove ${a}`, () => api("DELETE", path(vip, a)), refresh);
      };
      out.push(el("button", { class: "remove danger", onclick: remove }, "remove"));
    }
    return el("span", {}, out);
  }

  // One section per VIP: its backends and the form that adds one.
  function section(vip, refresh) {
    if (sections.has(vip.name)) return sections.get(vip.name);
    const table = el(
      "table",
      { class: "backends" },
      el(
        "thead",
        {},
        el("tr", {}, ["backend", "id", "weight", "health", "state", "new flows", "file", "packets/s", "bytes/s", "new flows/s", ""].map((h) => el("th", {}, h))),
      ),
      el("tbody"),
    );
    const address = el("input", { name: "address", placeholder: "198.18.1.13", required: true, size: 16 });
    const port = el("input", { name: "port", type: "number", min: 1, max: 65535, value: vip.address.split(":").pop(), required: true, size: 6 });
    const weight = el("input", { name: "weight", type: "number", min: 1, max: 100, value: 1, size: 4 });
    const add = (e) => {
      e.preventDefault();
      const body = { address: address.value.trim(), port: Number(port.value), weight: Number(weight.value) };
      act(`add ${body.address}:${body.port}`, () => api("POST", path(vip.name), body), refresh);
    };
    const form = el("form", { class: "add", onsubmit: add }, "add a backend:", address, "port", port, "weight", weight, el("button", { type: "submit" }, "add"));
    const title = el("h2");
    const node = el("section", { class: "vip", "data-vip": vip.name }, title, table, form);
    vips.append(node);
    const s = { node, title, table };
    sections.set(vip.name, s);
    return s;
  }

  function render(st, refresh) {
    const seen = new Set();
    for (const vip of st.vips) {
      seen.add(vip.name);
      const s = section(vip, refresh);
      s.title.replaceChildren(`${vip.name} `, el("small", {}, `${vip.address}/${vip.protocol} · ${vip.algorithm} · ${vip.forwarding}`));
      const rows = vip.backends.map((b) => ({
        attrs: { "data-backend": b.address, "data-drain": b.drain, "data-health": b.health },
        cells: [
          b.address,
          b.id ?? "-",
          b.weight,
          el("span", { class: b.health }, b.health),
          el("span", { class: b.drain }, state(b)),
          b.in_tables ? "yes" : "no",
          b.in_file ? "yes" : "no (api)",
          num(b.rates && b.rates.packets, si(b.rates && b.rates.packets)),
          num(b.rates && b.rates.bytes, si(b.rates && b.rates.bytes, "B")),
          num(b.rates && b.rates.new_flows, si(b.rates && b.rates.new_flows)),
          actions(vip.name, b, refresh),
        ],
      }));
      fill(s.table, rows, "no backends");
    }
    for (const [name, s] of sections) {
      if (!seen.has(name)) {
        s.node.remove();
        sections.delete(name);
      }
    }

    const r = st.rates;
    const perVip = (key) => Object.fromEntries(st.vips.filter((v) => v.rates).map((v) => [v.name, v.rates[key]]));
    packets.push(perVip("packets"));
    bytes.push(perVip("bytes"));
    flows.push(perVip("new_flows"));
    const dropped = {};
    const rows = [];
    for (const [name, c] of Object.entries((st.counters && st.counters.actions) || {})) {
      if (!name.startsWith("drop_")) continue;
      const reason = name.slice("drop_".length);
      const rate = r && r.actions[name] ? r.actions[name].packets : null;
      if (rate !== null) dropped[reason] = rate;
      rows.push({ attrs: { "data-reason": reason }, cells: [reason, num(rate, si(rate)), num(c.packets, si(c.packets)), num(c.bytes, si(c.bytes, "B"))] });
    }
    drops.push(dropped);
    fill(document.getElementById("drops"), rows, st.counters_error ? `counters unavailable: ${st.counters_error}` : "no counters yet");

    const sum = (key) => (r ? st.vips.reduce((a, v) => a + (v.rates ? v.rates[key] : 0), 0) : null);
    const dropSum = r ? Object.values(dropped).reduce((a, v) => a + v, 0) : null;
    document.getElementById("figures").replaceChildren(
      figure("VIP packets/s", si(sum("packets")), "packets"),
      figure("VIP bytes/s", si(sum("bytes"), "B"), "bytes"),
      figure("new flows/s", si(sum("new_flows")), "new_flows"),
      figure("drops/s", si(dropSum), "drops"),
      figure("runtime changes", st.overrides.length, "overrides"),
    );
  }

  const refresh = async () => render(await api("GET", "/api/state"), refresh);
  poll(refresh, POLL_MS);
})();
