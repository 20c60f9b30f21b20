// linkpy dashboard: polls /admin/routers.json every second and draws every router,
// its servers, services, clients and their endpoints.  Rates and success rates are
// deltas between two polls; latencies are the server's histograms (last 1-2 minutes).
"use strict";

const REFRESH_MS = 1000;
const HISTORY = 60;
const el = L5.el;

let previous = null;          // the last /admin/routers.json
const history = new Map();    // router label -> recent req/s

function delta(now, before, key) {
  if (!before) return null;
  return Math.max(0, now[key] - before[key]);
}

function byKey(list, key) {
  const m = new Map();
  for (const x of list || []) m.set(x[key], x);
  return m;
}

function rates(now, before, dt) {
  // [req/s, success rate] over the last interval; null when unknown
  const dr = delta(now, before, "requests");
  if (dr === null || dt <= 0) return [null, null];
  const ds = delta(now, before, "success");
  return [dr / dt, dr > 0 ? Math.min(1, ds / dr) : null];
}

function stat(value, label, cls) {
  return el("div", {class: "stat"}, el("span", {class: "v " + (cls || "")}, value), el("span", {class: "k"}, label));
}

function sparkline(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${HISTORY} 36`);
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...values);
  const points = values.map((v, i) => `${i + HISTORY - values.length},${34 - (32 * v) / max}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.join(" "));
  svg.append(line);
  const title = document.createElementNS(ns, "title");
  title.textContent = `requests/s, last ${values.length} s (max ${L5.rate(max)})`;
  svg.append(title);
  return svg;
}

function table(headers, rows, empty) {
  if (!rows.length) return el("p", {class: "empty"}, empty);
  const head = el("tr", {}, ...headers.map(([h, cls]) => el("th", {class: cls}, h)));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows));
}

function serversTable(router, before, dt) {
  const old = byKey(before && before.servers, "port");
  const rows = router.servers.map((s) => {
    const [rps, sr] = rates(s, old.get(s.port), dt);
    const l = s.latency_ms;
    return el("tr", {"data-server": `${s.ip}:${s.port}`},
      el("td", {class: "mono"}, `${s.ip}:${s.port}`),
      el("td", {class: "num"}, L5.rate(rps)),
      el("td", {class: "num " + L5.srClass(sr)}, L5.pct(sr)),
      el("td", {class: "num"}, s.requests),
      el("td", {class: "num"}, s.failures),
      el("td", {class: "num"}, l.count ? L5.ms(l.p50) : "–"),
      el("td", {class: "num"}, l.count ? L5.ms(l.p90) : "–"),
      el("td", {class: "num"}, l.count ? L5.ms(l.p99) : "–"),
      el("td", {class: "num"}, l.count ? L5.ms(l.max) : "–"),
      el("td", {class: "num"}, s.connections),
      el("td", {class: "num"}, s.pending));
  });
  return table([["address"], ["req/s", "num"], ["success", "num"], ["requests", "num"], ["failures", "num"],
    ["p50 ms", "num"], ["p90 ms", "num"], ["p99 ms", "num"], ["max ms", "num"], ["connections", "num"], ["pending", "num"]],
    rows, "no servers");
}

function servicesTable(router, before, dt) {
  const old = byKey(before && before.services, "name");
  const rows = router.services.map((s) => {
    const [rps, sr] = rates(s, old.get(s.name), dt);
    const l = s.latency_ms;
    return el("tr", {"data-service": s.name},
      el("td", {class: "mono"}, s.name),
      el("td", {class: "num"}, L5.rate(rps)),
      el("td", {class: "num " + L5.srClass(sr)}, L5.pct(sr)),
      el("td", {class: "num"}, s.requests),
      el("td", {class: "num"}, s.failures),
      el("td", {class: "num"}, l.count ? L5.ms(l.p50) : "–"),
      el("td", {class: "num"}, l.count ? L5.ms(l.p99) : "–"));
  });
  return table([["name"], ["req/s", "num"], ["success", "num"], ["requests", "num"], ["failures", "num"],
    ["p50 ms", "num"], ["p99 ms", "num"]], rows, "no requests yet");
}

function clientBlock(c, before, dt) {
  const dr = delta(c, before, "requests");
  const rps = dr === null || dt <= 0 ? null : dr / dt;
  const rows = c.endpoints.map((e) => el("tr", {"data-endpoint": e.address, "data-state": e.state},
    el("td", {class: "mono"}, e.address),
    el("td", {}, el("span", {class: "dot " + e.state}), e.state),
    el("td", {class: "num"}, e.weight),
    el("td", {class: "num"}, e.load),
    el("td", {class: "num"}, e.requests),
    el("td", {class: "num"}, e.failures),
    el("td", {class: "num"}, `${e.connections} (${e.idle} idle)`)));
  return el("div", {class: "client", "data-client": c.id},
    el("h4", {}, el("span", {class: "dot " + c.state, title: c.state}), c.id),
    el("div", {class: "meta"},
      el("span", {}, `addresses: ${c.state}`),
      c.error ? el("span", {class: "bad"}, c.error) : null,
      el("span", {}, `req/s: ${L5.rate(rps)}`),
      el("span", {}, `requests: ${c.requests}`),
      el("span", {}, `load: ${c.load}`),
      el("span", {}, `connections: ${c.connections}`),
      el("span", {}, `balancer: ${c.balancer}`)),
    table([["endpoint"], ["state"], ["weight", "num"], ["load", "num"], ["requests", "num"], ["failures (5xx)", "num"], ["connections", "num"]],
      rows, "no endpoints"));
}

function routerSection(r, before, dt) {
  const [rps, sr] = rates(r, before, dt);
  const h = history.get(r.label) || [];
  if (rps !== null) {
    h.push(rps);
    if (h.length > HISTORY) h.shift();
  }
  history.set(r.label, h);
  const oldClients = byKey(before && before.clients, "id");
  const clients = r.clients.map((c) => clientBlock(c, oldClients.get(c.id), dt));
  return el("section", {class: "router", "data-router": r.label},
    el("header", {},
      el("h2", {}, r.label),
      el("span", {class: "badge"}, r.protocol),
      el("div", {class: "stats"},
        stat(L5.rate(rps), "req/s", "rps"),
        stat(L5.pct(sr), "success rate", L5.srClass(sr)),
        stat(r.requests, "requests", "requests"),
        stat(r.failures, "failures", r.failures ? "bad" : ""),
        stat(r.clients.length, "clients")),
      sparkline(h)),
    el("h3", {}, "Servers"), serversTable(r, before, dt),
    el("h3", {}, "Services"), servicesTable(r, before, dt),
    el("h3", {}, "Clients"),
    clients.length ? el("div", {}, ...clients) : el("p", {class: "empty"}, "no clients yet"));
}

async function refresh() {
  const status = document.getElementById("status");
  const error = document.getElementById("error");
  try {
    const now = await L5.getJSON("/admin/routers.json");
    const dt = previous ? now.time - previous.time : 0;
    const old = byKey(previous && previous.routers, "label");
    const sections = now.routers.map((r) => routerSection(r, old.get(r.label), dt));
    document.getElementById("routers").replaceChildren(...sections);
    previous = now;
    error.hidden = true;
    status.textContent = `${now.routers.length} router(s) · updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    error.textContent = `cannot read /admin/routers.json: ${e.message}`;
    error.hidden = false;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
