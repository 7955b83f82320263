// Palisade UI: service graph, events, alerts, explain. Plain DOM and SVG, no libraries.
"use strict";
const $ = (s) => document.querySelector(s);
const SVGNS = "http://www.w3.org/2000/svg";
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

// The admin token, when the server wants one: opened as /ui/#token=TOKEN, kept for this tab
// only and taken out of the address bar (and so out of history and bookmarks).
const TOKEN = (() => {
  const m = /^#token=(.+)$/.exec(location.hash);
  if (m) {
    sessionStorage.setItem("palisade-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("palisade-token");
})();

async function api(path) {
  const r = await fetch(path, { headers: TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {}, credentials: "omit" });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) throw new Error("this server needs the admin token: open the UI as /ui/#token=<token>");
  if (!r.ok) throw new Error(`${r.status} ${r.statusText}: ${body.error ? body.error.message : ""}`);
  return body;
}

function el(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function endpoint(ep) {
  if (!ep) return "-";
  if (ep.kind === "pod" && ep.namespace && ep.name) return `${ep.namespace}/${ep.name}`;
  return ep.fqdn || ep.ip || ep.name || ep.kind;
}

function human(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(1) + " GB";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + " MB";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + " kB";
  return n + " B";
}

// ---- service graph ----
let graphData = null;

function layout(g) {
  // Layers by longest path from where traffic starts (cycles cut after one pass per node),
  // names and addresses outside the cluster last; within a layer, grouped by namespace.
  const layer = new Map(g.nodes.map((n) => [n.id, 0]));
  const ext = new Set(g.nodes.filter((n) => n.kind !== "workload").map((n) => n.id));
  for (let i = 0; i < g.nodes.length; i++) {
    let changed = false;
    for (const e of g.edges) {
      if (e.source === e.target || ext.has(e.target)) continue;
      const want = Math.min(layer.get(e.source) + 1, g.nodes.length);
      if (want > layer.get(e.target)) { layer.set(e.target, want); changed = true; }
    }
    if (!changed) break;
  }
  const maxL = Math.max(0, ...[...layer.entries()].filter(([id]) => !ext.has(id)).map(([, l]) => l));
  for (const id of ext) layer.set(id, maxL + 1);
  const colW = 330, rowH = 40, groupGap = 26, top = 16, left = 16, boxW = 160, boxH = 28;
  const pos = new Map(), labels = [];
  let height = 0;
  const nLayers = maxL + (ext.size ? 2 : 1);
  for (let l = 0; l < nLayers; l++) {
    const here = g.nodes.filter((n) => layer.get(n.id) === l);
    const groups = new Map();
    for (const n of here) {
      const k = n.kind === "workload" ? n.namespace : "outside";
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(n);
    }
    let y = top;
    for (const k of [...groups.keys()].sort()) {
      labels.push({ x: left + l * colW, y: y + 10, text: k });
      y += groupGap - 8;
      for (const n of groups.get(k).sort((a, b) => a.id.localeCompare(b.id))) {
        pos.set(n.id, { x: left + l * colW, y, w: boxW, h: boxH, col: l });
        y += rowH;
      }
      y += 8;
    }
    height = Math.max(height, y);
  }
  return { pos, labels, width: left * 2 + (nLayers - 1) * colW + boxW + 40, height: height + 40 };
}

function drawGraph(g) {
  const svg = $("#graph");
  svg.innerHTML = "";
  const L = layout(g);
  const W = Math.max(L.width, 500), H = Math.max(L.height, 200);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", "100%");
  svg.style.maxHeight = "75vh";
  const defs = el("defs");
  for (const v of ["allow", "deny", "audit"]) {
    const m = el("marker", { id: "arrow-" + v, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" });
    m.appendChild(el("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: `var(--${v})` }));
    defs.appendChild(m);
  }
  svg.appendChild(defs);
  for (const lb of L.labels) svg.appendChild(el("text", { x: lb.x, y: lb.y, class: "ns-label" }, lb.text));
  const maxVol = Math.max(1, ...g.edges.map((e) => e.allow + e.deny + e.audit));
  // Edges under nodes; pairs with several ports fan out a little.
  const seen = new Map();
  const edgeLayer = el("g", { id: "edges" });
  svg.appendChild(edgeLayer);
  for (const e of g.edges) {
    const a = L.pos.get(e.source), b = L.pos.get(e.target);
    if (!a || !b) continue;
    const pair = e.source + ">" + e.target;
    const k = seen.get(pair) || 0;
    seen.set(pair, k + 1);
    const x1 = a.x + a.w, y1 = a.y + a.h / 2 + k * 4;
    let x2 = b.x, y2 = b.y + b.h / 2 + k * 4;
    let d;
    if (a.col === b.col) {
      x2 = b.x + b.w;
      const bend = 40 + 12 * k;
      d = `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 + bend} ${y2}, ${x2} ${y2}`;
    } else if (b.x < a.x) {
      // Backwards: leave from the bottom, arrive at the bottom, below the rows.
      const sx = a.x + a.w / 2, tx = b.x + b.w / 2, low = Math.max(a.y, b.y) + a.h + 30 + 10 * k;
      d = `M ${sx} ${a.y + a.h} C ${sx} ${low}, ${tx} ${low}, ${tx} ${b.y + b.h}`;
    } else {
      const mx = (x1 + x2) / 2;
      d = `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`;
    }
    const n = e.allow + e.deny + e.audit;
    const w = 1.5 + 4 * Math.log1p(n) / Math.log1p(maxVol);
    const p = el("path", { d, class: `edge ${e.verdict}`, "stroke-width": w.toFixed(1), "marker-end": `url(#arrow-${e.verdict})`,
      "data-source": e.source, "data-target": e.target, "data-port": e.port });
    p.appendChild(el("title", {}, `${e.source} → ${e.target}:${e.port}/${e.protocol}\nallowed ${e.allow}, denied ${e.deny}, audit ${e.audit}, ${human(e.bytes)}`));
    p.addEventListener("click", () => selectEdge(e, p));
    edgeLayer.appendChild(p);
    // Port and volume at the middle of the curve.
    const mid = p.getTotalLength ? p.getPointAtLength(p.getTotalLength() / 2) : { x: (x1 + x2) / 2, y: (y1 + y2) / 2 };
    const t = el("text", { x: mid.x, y: mid.y - 4, class: `edge-label ${e.verdict}`, "text-anchor": "middle" }, `${e.port}/${e.protocol} ×${n}`);
    edgeLayer.appendChild(t);
  }
  for (const n of g.nodes) {
    const p = L.pos.get(n.id);
    const silent = n.kind === "workload" && !g.edges.some((e) => e.source === n.id || e.target === n.id);
    const grp = el("g", { class: `node ${n.kind}${silent ? " silent" : ""}`, "data-id": n.id, transform: `translate(${p.x},${p.y})` });
    grp.appendChild(el("rect", { width: p.w, height: p.h, rx: 6 }));
    const label = n.kind === "workload" ? n.id.split("/").slice(1).join("/") : n.id;
    grp.appendChild(el("text", { x: 8, y: 19 }, label.length > 24 ? label.slice(0, 23) + "…" : label));
    grp.appendChild(el("title", {}, n.id + (n.pods && n.pods.length ? "\npods: " + n.pods.join(", ") : "")));
    svg.appendChild(grp);
  }
}

function selectEdge(e, path) {
  document.querySelectorAll(".edge.selected").forEach((x) => x.classList.remove("selected"));
  path.classList.add("selected");
  const src = graphData.nodes.find((n) => n.id === e.source);
  const dst = graphData.nodes.find((n) => n.id === e.target);
  const from = src && src.kind === "workload" && src.pods.length ? `${src.namespace}/${src.pods[0]}` : e.source;
  const to = dst && dst.kind === "workload" && dst.pods.length ? `${dst.namespace}/${dst.pods[0]}` : e.target;
  $("#side").innerHTML = `
    <h3>${esc(e.source)} → ${esc(e.target)}</h3>
    <p>port ${e.port}/${esc(e.protocol)} · <span class="v-allow">${e.allow} allowed</span> · <span class="v-deny">${e.deny} denied</span> · <span class="v-audit">${e.audit} audit</span> · ${human(e.bytes)}</p>
    <p class="muted">latest event ${esc(e.lastEvent)}</p>
    <button class="act" id="explain-btn">Explain ${esc(from)} → ${esc(to)}:${e.port}</button>
    <button class="act" id="edge-events">Events</button>
    <div id="explain"></div>`;
  $("#explain-btn").onclick = () => explain(from, to, e.port, e.protocol);
  $("#edge-events").onclick = () => { $("#e-workload").value = e.source; showTab("events"); loadEvents(); };
}

async function explain(from, to, port, protocol) {
  const out = $("#explain");
  out.textContent = "…";
  try {
    const r = await api(`/api/v1/explain?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}&port=${port}&protocol=${protocol}`);
    const x = r.explanation;
    out.innerHTML = `<h4 class="v-${esc(x.verdict)}">${esc(String(x.verdict).toUpperCase())}</h4><ol class="steps">${(x.steps || [])
      .map((s) => `<li><b>${esc(s.direction)} ${esc(s.stage)}</b>: ${esc(s.text)}</li>`).join("")}</ol><p>${esc(x.summary)}</p>`;
  } catch (err) {
    out.innerHTML = `<p class="v-deny">${esc(err.message)}</p>`;
  }
}

async function loadGraph() {
  try {
    graphData = await api(`/api/v1/graph?since=${$("#g-since").value}`);
    drawGraph(graphData);
    $("#status").textContent = `${graphData.nodes.length} nodes · ${graphData.edges.length} edges · ${graphData.events} events`
      + (graphData.truncated ? " (the newest only)" : "") + (graphData.folded ? ` · ${graphData.folded} names folded` : "");
  } catch (err) {
    $("#status").textContent = err.message;
  }
}

// ---- events ----
function detail(e) {
  if (e.flow) return `${e.flow.state}${e.flow.bytesSent !== undefined ? " " + human(e.flow.bytesSent + (e.flow.bytesReceived || 0)) : ""}`;
  if (e.dns) return `${e.dns.qtype || ""} ${e.dns.query} ${e.dns.rcode || ""}`;
  if (e.http) return `${e.http.method || ""} ${e.http.host || ""}${e.http.path || ""} ${e.http.status || ""}`;
  if (e.alert) return `${e.alert.kind} (${e.alert.severity}): ${e.alert.summary}`;
  return "";
}

async function loadEvents() {
  const q = new URLSearchParams({ since: $("#e-since").value, limit: "500" });
  for (const [k, id] of [["type", "#e-type"], ["verdict", "#e-verdict"], ["workload", "#e-workload"]]) if ($(id).value) q.set(k, $(id).value);
  const body = $("#events tbody");
  try {
    const r = await api(`/api/v1/ui/events?${q}`);
    body.innerHTML = r.events.map((e) => `<tr><td>${esc(e.time)}</td><td>${esc(e.type)}</td><td>${esc(endpoint(e.source))}</td><td>${esc(endpoint(e.destination))}${e.destination && e.destination.port ? ":" + e.destination.port : ""}</td>
      <td class="v-${esc(e.verdict)}">${esc(e.verdict || "")}</td><td>${e.policy ? esc(`${e.policy.kind} ${e.policy.namespace ? e.policy.namespace + "/" : ""}${e.policy.name} ${e.policy.rule || ""}`) : ""}</td><td>${esc(detail(e))}</td></tr>`).join("")
      || `<tr><td colspan="7" class="muted">no events match</td></tr>`;
  } catch (err) {
    body.innerHTML = `<tr><td colspan="7" class="v-deny">${esc(err.message)}</td></tr>`;
  }
}

// ---- alerts ----
async function loadAlerts() {
  const box = $("#alerts");
  try {
    const r = await api(`/api/v1/alerts?since=${$("#a-since").value}&limit=200`);
    box.innerHTML = r.alerts.map(({ alert, evidence }) => `<div class="alert ${esc(alert.alert.severity)}">
      <b>${esc(alert.alert.kind)}</b> · ${esc(alert.alert.severity)} · ${esc(alert.alert.subject)} · <span class="muted">${esc(alert.time)}</span>
      <div>${esc(alert.alert.summary)}</div>
      <details><summary>evidence (${(alert.alert.evidence || []).length} ids, ${evidence.length} found)</summary>
      <table><tbody>${evidence.map((e) => `<tr><td>${esc(e.time)}</td><td>${esc(e.type)}</td><td>${esc(endpoint(e.source))} → ${esc(endpoint(e.destination))}</td><td class="v-${esc(e.verdict)}">${esc(e.verdict || "")}</td><td>${esc(detail(e))}</td></tr>`).join("")}</tbody></table>
      </details></div>`).join("") || `<p class="muted">no alerts</p>`;
  } catch (err) {
    box.innerHTML = `<p class="v-deny">${esc(err.message)}</p>`;
  }
}

function showTab(name) {
  for (const t of ["graph", "events", "alerts"]) {
    $("#tab-" + t).classList.toggle("hidden", t !== name);
    document.querySelector(`nav button[data-tab=${t}]`).classList.toggle("active", t === name);
  }
}

document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => {
  showTab(b.dataset.tab);
  if (b.dataset.tab === "events") loadEvents();
  if (b.dataset.tab === "alerts") loadAlerts();
}));
$("#g-reload").onclick = loadGraph;
$("#g-since").onchange = loadGraph;
$("#e-go").onclick = loadEvents;
$("#a-go").onclick = loadAlerts;
loadGraph();
// `/ui/?tab=events` or `?tab=alerts` opens on that tab (links, and the browser tests).
const startTab = new URLSearchParams(location.search).get("tab");
if (startTab === "events") { showTab("events"); loadEvents(); }
if (startTab === "alerts") { showTab("alerts"); loadAlerts(); }
