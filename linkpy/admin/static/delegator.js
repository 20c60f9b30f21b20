// linkpy delegator: posts {namespace, dtab, path} to /delegator.json and draws the
// delegation tree it answers (dtab-spec section 6.3): every rewrite with the dentry
// that made it, Alt and Union branches, Neg/Fail/Exception ends, and bound leaves with
// their addresses.  The first path that reaches bound addresses is marked "primary".
"use strict";

const el = L5.el;
let routers = [];

function $(id) { return document.getElementById(id); }

function showError(text) {
  const e = $("error");
  e.textContent = text;
  e.hidden = !text;
}

function routerByLabel(label) {
  return routers.find((r) => r.label === label) || routers[0];
}

function resetDtab() {
  const r = routerByLabel($("router").value);
  $("dtab").value = r ? r.dentries.map((d) => `${d};\n`).join("") : "";
}

function addrView(addr) {
  switch (addr.type) {
    case "bound":
      if (!addr.addrs.length) return el("div", {class: "addr-neg"}, "bound, no addresses");
      return el("ul", {class: "addrs"}, ...addr.addrs.map((a) => {
        const meta = Object.keys(a.meta || {}).length ? ` ${JSON.stringify(a.meta)}` : "";
        return el("li", {class: "mono", "data-addr": `${a.ip}:${a.port}`}, `${a.ip}:${a.port}${meta}`);
      }));
    case "neg": return el("div", {class: "addr-neg"}, "addresses: neg (none known)");
    case "failed": return el("div", {class: "addr-failed"}, `addresses failed: ${addr.cause}`);
    default: return el("div", {class: "addr-pending"}, "addresses: pending");
  }
}

function boundView(b) {
  return el("div", {class: "bound-name"},
    el("div", {}, "bound ", el("span", {class: "mono"}, b.id),
      b.path && b.path !== "/" ? el("span", {class: "muted"}, " residual ", el("span", {class: "mono"}, b.path)) : null),
    addrView(b.addr));
}

// Marks the first chain to a leaf with bound addresses (depth first, left to right).
function markPrimary(node) {
  let hit = false;
  switch (node.type) {
    case "leaf": hit = !!(node.bound && node.bound.addr.type === "bound" && node.bound.addr.addrs.length); break;
    case "delegate": hit = markPrimary(node.delegate); break;
    case "transformation": hit = markPrimary(node.tree); break;
    case "alt": hit = node.alt.some(markPrimary); break;
    case "union": hit = node.union.some((w) => markPrimary(w.tree)); break;
  }
  if (hit) node.primary = true;
  return hit;
}

function nodeView(node, weight) {
  const line = el("div", {class: "line"},
    weight !== undefined ? el("span", {class: "weight"}, `${weight} ×`) : null,
    el("span", {class: "type"}, node.type),
    el("span", {class: "path mono"}, node.path),
    node.dentry ? el("span", {class: "dentry", title: "the dentry that made this rewrite"},
      `${node.dentry.prefix} => ${node.dentry.dst}`) : null,
    node.type === "exception" ? el("span", {class: "message"}, node.message) : null,
    node.type === "transformation" ? el("span", {class: "dentry"}, `transformer ${node.name}`) : null);
  const view = el("div", {
    class: `node t-${node.type}${node.primary ? " primary" : ""}`,
    "data-type": node.type,
    "data-path": node.path,
    "data-dentry": node.dentry ? `${node.dentry.prefix}=>${node.dentry.dst}` : "",
  }, line);
  switch (node.type) {
    case "delegate": view.append(nodeView(node.delegate)); break;
    case "alt": view.append(...node.alt.map((c) => nodeView(c))); break;
    case "union": view.append(...node.union.map((w) => nodeView(w.tree, w.weight))); break;
    case "leaf": if (node.bound) view.append(boundView(node.bound)); break;
    case "transformation": view.append(boundView(node.bound), nodeView(node.tree)); break;
  }
  return view;
}

async function delegate(ev) {
  if (ev) ev.preventDefault();
  const body = {namespace: $("router").value, dtab: $("dtab").value, path: $("path").value.trim()};
  const params = new URLSearchParams({router: body.namespace, path: body.path});
  history.replaceState(null, "", `?${params}`);
  $("go").disabled = true;
  try {
    const r = await fetch("/delegator.json", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) {
      $("result").replaceChildren();
      showError(text.trim() || `${r.status} ${r.statusText}`);
      return;
    }
    const tree = JSON.parse(text);
    markPrimary(tree);
    showError("");
    $("result").replaceChildren(el("div", {class: "tree", id: "tree"}, nodeView(tree)));
  } catch (e) {
    $("result").replaceChildren();
    showError(`cannot reach /delegator.json: ${e.message}`);
  } finally {
    $("go").disabled = false;
  }
}

async function init() {
  const q = new URLSearchParams(location.search);
  try {
    routers = (await L5.getJSON("/admin/routers.json")).routers;
  } catch (e) {
    showError(`cannot list the routers: ${e.message}`);
    return;
  }
  const select = $("router");
  select.replaceChildren(...routers.map((r) => el("option", {value: r.label}, r.label)));
  if (q.get("router") && routers.some((r) => r.label === q.get("router"))) select.value = q.get("router");
  resetDtab();
  const r = routerByLabel(select.value);
  $("path").value = q.get("path") || (r ? r.dstPrefix.replace(/\/$/, "") + "/" : "/");
  select.addEventListener("change", resetDtab);
  $("reset").addEventListener("click", resetDtab);
  $("form").addEventListener("submit", delegate);
  document.body.dataset.ready = "true";
  if (q.get("path")) delegate();
}

init();
