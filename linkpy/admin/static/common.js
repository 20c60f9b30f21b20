// linkpy admin: helpers shared by the pages.  Every text from the server goes into
// the page through textContent (names come from requests: never parse them as HTML).
"use strict";

const L5 = {
  // el("td", {class: "num", title: "x"}, "text", child, ...)
  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, String(v));
      else e[k] = v;
    }
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  },

  async getJSON(url) {
    const r = await fetch(url, {cache: "no-store"});
    if (!r.ok) throw new Error(`${url}: ${r.status} ${(await r.text()).trim()}`);
    return r.json();
  },

  ms(v) {
    if (v === undefined || v === null) return "–";
    if (v >= 100) return v.toFixed(0);
    if (v >= 10) return v.toFixed(1);
    return v.toFixed(2);
  },

  rate(v) {
    if (v === null || !isFinite(v)) return "–";
    return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  },

  pct(ratio) {
    if (ratio === null || !isFinite(ratio)) return "–";
    return (100 * ratio).toFixed(ratio >= 0.9995 || ratio === 0 ? 0 : 2) + "%";
  },

  srClass(ratio) {
    if (ratio === null || !isFinite(ratio)) return "";
    return ratio >= 0.99 ? "good" : ratio >= 0.9 ? "warn" : "bad";
  },
};
