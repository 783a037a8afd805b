"use strict";
// The pixgate admin panel: plain DOM, text only (never innerHTML), same-origin JSON calls.

let csrf = null;
let timer = null;
let logSource = null;
const main = document.getElementById("main");

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, options) {
  const opts = Object.assign({credentials: "same-origin", headers: {}}, options || {});
  if (opts.method && opts.method !== "GET") {
    if (csrf === null) await loadSession();
    opts.headers["X-CSRF-Token"] = csrf;
    if (opts.json !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.json);
    }
  }
  const response = await fetch(path, opts);
  if (response.status === 401) {
    location.reload();  // the session ended: the page shows the sign-in form
    throw new Error("signed out");
  }
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  return {ok: response.ok, status: response.status, body, headers: response.headers};
}

async function loadSession() {
  const r = await fetch("/admin/api/session", {credentials: "same-origin"});
  if (r.status === 401) { location.reload(); return; }
  csrf = (await r.json()).csrf || null;
}

function errorText(result) {
  return (result.body && result.body.error && result.body.error.message) || `HTTP ${result.status}`;
}

function fmt(value, digits, unit) {
  if (value === null || value === undefined) return "–";
  return Number(value).toFixed(digits) + (unit || "");
}

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))));
}

function chart(timeline) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 600 130");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const peak = Math.max(1, ...timeline.map((m) => m.requests));
  const width = 600 / timeline.length;
  timeline.forEach((m, i) => {
    for (const [cls, count] of [["requests", m.requests], ["errors", m.errors]]) {
      if (!count) continue;
      const rect = document.createElementNS(ns, "rect");
      const h = (count / peak) * 120;
      rect.setAttribute("class", cls);
      rect.setAttribute("x", String(i * width + 1));
      rect.setAttribute("y", String(125 - h));
      rect.setAttribute("width", String(Math.max(1, width - 2)));
      rect.setAttribute("height", String(h));
      svg.append(rect);
    }
  });
  return el("figure", {}, svg,
    el("figcaption", {class: "muted"}, `Requests per minute over the last hour (peak ${peak}); red: errors.`));
}

function routeTable(rows) {
  return table(["route", "provider", "requests", "req/s", "success", "p50", "p99", "overhead p50"],
    rows.map((r) => [r.route, r.provider, r.requests, fmt(r.per_second, 3),
      r.success_rate === null ? "–" : fmt(r.success_rate * 100, 1, "%"),
      fmt(r.p50_s, 3, " s"), fmt(r.p99_s, 3, " s"), fmt(r.overhead_p50_ms, 2, " ms")]));
}

async function overview() {
  const r = await api("/admin/api/overview");
  const o = r.body;
  const sum = (rows, k) => rows.reduce((a, x) => a + x[k], 0);
  const five = o.last_5m;
  const total = sum(five, "requests");
  const ok = five.reduce((a, x) => a + (x.success_rate || 0) * x.requests, 0);
  const view = el("div", {},
    el("section", {}, el("h2", {}, "Last 5 minutes"), scopeLine(o),
      el("div", {class: "cards"},
        card("requests", total, "requests-5m"),
        card("success", total ? fmt((ok / total) * 100, 1, "%") : "–", "success-5m"),
        card("errors (last 50)", o.errors.length, "errors-count"),
        card("config", o.config_version, "config-version"))),
    el("section", {}, el("h2", {}, "Requests"), chart(o.timeline)),
    el("section", {}, el("h2", {}, "Routes and providers, last 5 minutes"), routeTable(five)),
    el("section", {}, el("h2", {}, "Routes and providers, last 60 minutes"), routeTable(o.last_60m)),
    el("section", {}, el("h2", {}, "Provider health"),
      table(["provider", "available", "circuit", "keys"],
        Object.entries(o.providers).map(([pid, p]) => [pid, p.available ? "yes" : "no",
          el("span", {class: `state-${p.circuit}`}, p.circuit), p.keys.join(", ") || "–"]))),
    el("section", {}, el("h2", {}, "Recent errors"),
      table(["time", "replica", "route", "provider", "status", "reason"],
        o.errors.map((e) => [new Date(e.at * 1000).toLocaleTimeString(), e.replica, e.route,
          e.provider, e.status, e.message]))),
    el("section", {}, el("h2", {}, "Replicas in these figures"),
      el("div", {id: "replicas"}, table(["replica", "host", "pid", "config", "last seen", "requests (60 min)"],
        o.replicas.map((p) => [p.replica + (p.self ? " (this one)" : ""), p.host, p.pid ?? "–",
          p.config_version, p.live ? "live" : `${fmt(o.now - p.last_seen, 0, " s")} ago`,
          p.requests_60m])))));
  return view;
}

function scopeLine(o) {
  const count = o.replicas.length;
  const text = o.scope === "fleet"
    ? `Fleet-wide: ${count} replica${count === 1 ? "" : "s"} (shared through Redis).`
    : "This replica only.";
  return el("div", {},
    el("p", {id: "scope", "data-scope": o.scope, class: "muted"}, text),
    o.notice ? el("p", {id: "scope-notice", class: "error"}, o.notice) : null);
}

function card(label, value, id) {
  return el("div", {class: "card"}, el("div", {class: "value", id}, value),
    el("div", {class: "label"}, label));
}

async function config() {
  const r = await api("/admin/config");
  const c = r.body;
  const result = el("div", {id: "reload-result"});
  const rejected = c.last_rejected;
  const explainOut = el("pre", {id: "explain-output"});
  const models = [...Object.keys(c.routes), ...Object.keys(c.aliases)];
  const explainForm = el("form", {class: "inline", id: "explain-form", onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const x = await api("/admin/api/explain", {method: "POST", json: {
      model: f.get("model"), prompt: f.get("prompt"), size: f.get("size"), n: Number(f.get("n"))}});
    explainOut.textContent = x.ok ? JSON.stringify(x.body, null, 2) : errorText(x);
  }},
    el("label", {}, "model", el("select", {name: "model"}, models.map((m) => el("option", {}, m)))),
    el("label", {}, "prompt", el("input", {name: "prompt", value: "a lighthouse at dusk"})),
    el("label", {}, "size", el("input", {name: "size", value: "1024x1024", size: "9"})),
    el("label", {}, "n", el("input", {name: "n", type: "number", min: "1", max: "10", value: "1"})),
    el("button", {type: "submit"}, "Explain"));
  return el("div", {},
    el("section", {}, el("h2", {}, "Live config"),
      el("p", {}, "version ", el("code", {id: "live-version"}, c.version), " from ", c.directory),
      el("button", {id: "reload", onclick: async () => {
        result.textContent = "reloading…";
        const x = await api("/admin/reload", {method: "POST"});
        result.replaceChildren(el("p", {class: x.ok ? "ok" : "bad"},
          x.body ? `${x.body.status} (version ${x.body.version})` : errorText(x)),
          el("ul", {id: "reload-diagnostics"}, ((x.body && x.body.diagnostics) || []).map((d) => el("li", {}, d))));
      }}, "Reload config"), result,
      table(["file", "sha256"], Object.entries(c.files).map(([f, h]) => [f, el("code", {}, h)]))),
    el("section", {}, el("h2", {}, "Last rejected config"),
      rejected ? el("div", {id: "rejected"}, el("p", {class: "bad"}, rejected.reason),
        el("ul", {}, rejected.diagnostics.map((d) =>
          el("li", {}, `${d.file}:${d.line}:${d.column} ${d.code} ${d.path || ""}: ${d.message}`))))
        : el("p", {class: "muted"}, "none")),
    el("section", {}, el("h2", {}, "Routes"),
      table(["route", "strategy", "targets", "fallbacks"], Object.entries(c.routes).map(([n, rt]) =>
        [n, rt.strategy, rt.targets.map((t) => `${t.provider}:${t.model}`).join(", "),
          rt.fallbacks.join(", ") || "–"]))),
    el("section", {}, el("h2", {}, "Providers"),
      table(["provider", "available", "base URL", "keys", "models"], Object.entries(c.providers).map(([pid, p]) =>
        [pid, p.available ? "yes" : "no", p.base_url, p.keys.join(", ") || "–", p.models.join(", ")]))),
    el("section", {}, el("h2", {}, "Explain a request (dry run, nothing is sent)"), explainForm, explainOut));
}

async function keys() {
  const r = await api("/admin/keys");
  const rows = [];
  for (const [pid, p] of Object.entries(r.body.providers)) {
    for (const [index, k] of p.keys.entries()) {
      const until = Date.now() + k.cooldown_remaining_s * 1000;
      const countdown = el("span", {class: "countdown", "data-until": String(until)},
        k.cooldown_remaining_s ? fmt(k.cooldown_remaining_s, 0, " s") : "–");
      const reprobe = k.state === "healthy" ? "–" : el("button", {class: "secondary reprobe",
        "data-provider": pid, "data-index": String(index), onclick: async () => {
          const x = await api("/admin/keys/reprobe", {method: "POST", json: {provider: pid, index}});
          if (x.ok) render(); else alert(errorText(x));
        }}, "Re-probe now");
      rows.push([pid, el("code", {}, k.key), el("span", {class: `state-${k.state}`}, k.state),
        countdown, k.successes, k.failures, k.in_flight, k.last_error || "–", reprobe]);
    }
  }
  const state = r.body.state || {};
  const scope = state.backend !== "redis" ? "This replica only (memory state)."
    : state.status === "ok" ? "Fleet-wide (shared through Redis)."
    : "Redis is unreachable: this is this replica's own view, not the fleet's.";
  return el("section", {}, el("h2", {}, "Keys (masked)"),
    el("p", {id: "keys-scope", class: state.status === "ok" ? "muted" : "error"}, scope),
    table(["provider", "key", "state", "cooldown", "ok", "failed", "in flight", "last error", ""], rows));
}

function tickCountdowns() {
  for (const node of document.querySelectorAll(".countdown[data-until]")) {
    const left = (Number(node.dataset.until) - Date.now()) / 1000;
    node.textContent = left > 0 ? fmt(left, 0, " s") : "–";
  }
}

function logs() {
  const list = el("ol", {class: "log", id: "log-lines"});
  const level = el("select", {id: "log-level"},
    ["DEBUG", "INFO", "WARNING", "ERROR"].map((l) => el("option", {selected: l === "INFO" ? "" : null}, l)));
  const open = () => {
    if (logSource) logSource.close();
    list.replaceChildren();
    logSource = new EventSource(`/admin/api/logs?replay=200&level=${encodeURIComponent(level.value)}`);
    logSource.onmessage = (event) => {
      const line = JSON.parse(event.data);
      const time = new Date(line.at * 1000).toLocaleTimeString();
      list.append(el("li", {class: line.level}, `${time} ${line.level} ${line.logger}: ${line.message}`));
      while (list.childElementCount > 1000) list.firstElementChild.remove();
      list.scrollTop = list.scrollHeight;
    };
  };
  level.addEventListener("change", open);
  open();
  return el("section", {}, el("h2", {}, "Live log"), el("label", {}, "level", level), list);
}

async function gallery() {
  const page = await api("/admin/files?limit=60");
  if (!page.ok) {
    return el("section", {}, el("h2", {}, "Gallery"), el("p", {class: "error"}, errorText(page)));
  }
  const selected = new Set();
  const tile = (item) => {
    const box = el("input", {type: "checkbox", "aria-label": "select", onchange: (e) => {
      if (e.target.checked) selected.add(item.id); else selected.delete(item.id);
    }});
    const meta = [item.model, item.provider, item.size].filter(Boolean).join(" · ");
    return el("div", {class: "tile", "data-id": item.id},
      el("a", {href: item.url, target: "_blank", rel: "noopener"},
        el("img", {src: `/admin/api/thumbs/${encodeURIComponent(item.id)}`,
          alt: item.prompt || item.id, loading: "lazy"})),
      el("div", {}, box, " ", meta),
      item.created ? el("div", {class: "muted"}, new Date(item.created * 1000).toLocaleString()) : null,
      el("div", {class: "muted prompt"}, item.prompt || ""),
      el("button", {class: "danger", onclick: async () => {
        const x = await api(`/admin/files/${encodeURIComponent(item.id)}`, {method: "DELETE"});
        if (x.ok) render(); else alert(errorText(x));
      }}, "Delete"));
  };
  const grid = el("div", {class: "grid", id: "gallery-grid"}, page.body.data.map(tile));
  const more = page.body.next_cursor ? el("button", {class: "secondary", id: "gallery-more",
    onclick: async (e) => {
      const next = await api(`/admin/files?limit=60&cursor=${encodeURIComponent(page.body.next_cursor)}`);
      if (next.ok) { next.body.data.forEach((i) => grid.append(tile(i))); }
      e.target.remove();
    }}, "More") : null;
  return el("section", {}, el("h2", {}, "Gallery"),
    el("button", {class: "danger", id: "delete-selected", onclick: async () => {
      if (!selected.size) return;
      const x = await api("/admin/files/delete", {method: "POST", json: {ids: [...selected]}});
      if (x.ok) render(); else alert(errorText(x));
    }}, "Delete selected"),
    page.body.data.length ? grid : el("p", {class: "muted"}, "No images yet."), more);
}

async function playground() {
  const c = await api("/admin/config");
  const models = [...Object.keys(c.body.routes), ...Object.keys(c.body.aliases)];
  const out = el("div", {id: "playground-result"});
  const form = el("form", {class: "inline", id: "playground-form", onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    out.replaceChildren(el("p", {class: "muted"}, "generating…"));
    const x = await api("/admin/api/playground", {method: "POST", json: {
      model: f.get("model"), prompt: f.get("prompt"), size: f.get("size") || undefined,
      n: Number(f.get("n"))}});
    if (!x.ok) { out.replaceChildren(el("p", {class: "error"}, errorText(x))); return; }
    const b = x.body;
    out.replaceChildren(
      el("p", {id: "playground-meta"}, `provider ${b.provider} · route ${b.route} · model ${b.model} · `
        + `attempts ${b.attempts} · overhead ${b.overhead_ms} ms` + (b.failed ? ` · failed ${b.failed}` : "")),
      el("div", {class: "grid"}, b.data.map((d) => el("div", {class: "tile"},
        el("img", {src: d.url || `data:image/png;base64,${d.b64_json}`, alt: f.get("prompt")}),
        d.revised_prompt ? el("div", {class: "muted"}, d.revised_prompt) : null))));
  }},
    el("label", {}, "model", el("select", {name: "model"}, models.map((m) => el("option", {}, m)))),
    el("label", {}, "prompt", el("textarea", {name: "prompt", required: ""})),
    el("label", {}, "size", el("input", {name: "size", value: "512x512", size: "9"})),
    el("label", {}, "n", el("input", {name: "n", type: "number", min: "1", max: "10", value: "1"})),
    el("button", {type: "submit"}, "Generate"));
  return el("section", {}, el("h2", {}, "Playground"), form, out);
}

async function usage() {
  const today = new Date().toISOString().slice(0, 10);
  const from = sessionStorage.getItem("usage-from") || today.slice(0, 8) + "01";
  const to = sessionStorage.getItem("usage-to") || today;
  const group = sessionStorage.getItem("usage-group") || "client,model";
  const q = new URLSearchParams({from, to, group_by: group});
  const r = await api(`/admin/usage?${q}`);
  const form = el("form", {class: "inline", id: "usage-form", onsubmit: (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    for (const k of ["from", "to", "group"]) sessionStorage.setItem(`usage-${k}`, f.get(k));
    render();
  }},
    el("label", {}, "from", el("input", {name: "from", type: "date", value: from})),
    el("label", {}, "to", el("input", {name: "to", type: "date", value: to})),
    el("label", {}, "group by", el("input", {name: "group", value: group, size: "24"})),
    el("button", {type: "submit"}, "Show"),
    el("a", {href: `/admin/usage?${q}&format=csv`, download: "usage.csv"}, "CSV"));
  if (!r.ok) return el("section", {}, el("h2", {}, "Usage"), form, el("p", {class: "error"}, errorText(r)));
  const u = r.body;
  const measures = ["requests", "images", "failures", "cost_usd", "upstream_seconds"];
  const rows = [...u.data, Object.assign(Object.fromEntries(u.group_by.map((g, i) => [g, i ? "" : "total"])), u.totals)];
  const budgets = Object.entries(u.budgets).map(([name, b]) => [name,
    b.usd_per_day === null ? "–" : `$${fmt(b.spent_today_usd, 2)} of $${b.usd_per_day}`,
    b.usd_per_month === null ? "–" : `$${fmt(b.spent_this_month_usd, 2)} of $${b.usd_per_month}`]);
  return el("section", {}, el("h2", {}, "Usage"), form,
    table([...u.group_by, ...measures], rows.map((row) => [...u.group_by, ...measures].map((k) => String(row[k])))),
    budgets.length ? el("h3", {}, "Budgets (UTC day, month)") : null,
    budgets.length ? table(["client", "today", "this month"], budgets) : null);
}

const PAGES = {overview, config, keys, logs, gallery, playground, usage};
const REFRESH = {overview: 5000, keys: 5000};

let generation = 0;  // only the latest navigation may fill the page

async function render() {
  const mine = ++generation;
  const name = (location.hash || "#overview").slice(1);
  const view = PAGES[name] ? name : "overview";
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.getAttribute("href") === `#${view}`);
  }
  if (timer) { clearInterval(timer); timer = null; }
  if (logSource) { logSource.close(); logSource = null; }
  let content;
  try {
    content = await PAGES[view]();
  } catch (err) {
    content = el("p", {class: "error"}, String(err));
  }
  // A slower page (an overview still loading) must not replace the one asked for since.
  if (mine !== generation) return;
  main.replaceChildren(content);
  main.dataset.page = view;
  if (REFRESH[view]) {
    timer = setInterval(async () => {
      if (document.activeElement && main.contains(document.activeElement)) return;
      try {
        const fresh = await PAGES[view]();
        if (mine === generation) main.replaceChildren(fresh);
      } catch (err) { /* next tick */ }
    }, REFRESH[view]);
  }
}

document.getElementById("logout").addEventListener("click", async () => {
  await api("/admin/logout", {method: "POST"});
  location.reload();
});
setInterval(tickCountdowns, 1000);
window.addEventListener("hashchange", render);
loadSession().then(render);
