// Draw a compiled ASL document as a flowchart: what is drawn is what runs.
// Choice states become labelled edges (labels from the graph's conditions), Parallel and Map
// states open regions whose branches rejoin at the state's Next; human nodes are dashed.
const NS = "http://www.w3.org/2000/svg";
const HIDDEN = new Set(["Succeeded", "Failed", "Continued", "__failed__"]); // Continued: a continuation's handover
const W = 150, H = 40, GAPX = 30, GAPY = 56;

function nodeName(state) {
  const p = state.Parameters && state.Parameters.Payload;
  return (p && p.node) || null;
}

/** The nodes and edges of an ASL document (nested branches flattened). */
export function flatten(asl, spec) {
  const nodes = new Map(); // id -> {id, label, kind, region}
  const edges = [];
  const choices = new Map(); // choice state name -> state
  const specNodes = (spec && spec.graph && spec.graph.nodes) || {};
  const labels = new Map(); // "from>to" -> condition text
  for (const ce of (spec && spec.graph && spec.graph.conditional_edges) || []) {
    for (const c of ce.conditions || []) {
      const to = c.then || c.else;
      if (to) labels.set(`${ce.from}>${to}`, c.if ? `if ${c.if}` : "else");
    }
  }
  const regions = [];

  function walk(states, region) {
    for (const [name, st] of Object.entries(states)) {
      if (st.Type === "Choice") { choices.set(name, st); continue; }
      if (HIDDEN.has(name)) continue;
      const label = nodeName(st) || name;
      let kind = (specNodes[label] && specNodes[label].kind) || st.Type.toLowerCase();
      if (name === "__end__") kind = "end";
      if (st.Type === "Parallel") kind = "parallel";
      if (st.Type === "Map") kind = "map";
      nodes.set(name, { id: name, label: name === "__end__" ? "end" : label, kind, region });
    }
    for (const [name, st] of Object.entries(states)) {
      if (st.Type === "Parallel") {
        const r = { id: name, kind: "parallel", members: [] };
        regions.push(r);
        for (const b of st.Branches || []) {
          walk(b.States, r);
          edges.push({ from: name, to: b.StartAt });
          for (const [bn, bs] of Object.entries(b.States)) if (!bs.Next && bs.Type !== "Choice" && st.Next) edges.push({ from: bn, to: st.Next, join: true });
        }
      }
      const it = st.Type === "Map" && (st.ItemProcessor || st.Iterator);
      if (it) {
        const r = { id: name, kind: "map", members: [] };
        regions.push(r);
        walk(it.States, r);
        edges.push({ from: name, to: it.StartAt, label: "each item" });
        for (const [bn, bs] of Object.entries(it.States)) if (!bs.Next && bs.Type !== "Choice" && st.Next) edges.push({ from: bn, to: st.Next, join: true });
      }
    }
  }
  walk(asl.States, null);
  for (const n of nodes.values()) if (n.region) n.region.members.push(n.id);

  function targets(next, seen = new Set()) {
    if (!next || seen.has(next)) return [];
    seen.add(next);
    const ch = choices.get(next);
    if (!ch) return [{ to: next }];
    const out = [];
    for (const c of ch.Choices || []) for (const t of targets(c.Next, seen)) out.push(t);
    if (ch.Default) for (const t of targets(ch.Default, seen)) out.push({ ...t, isDefault: true });
    return out;
  }
  const ends = [];
  for (const [name, st] of Object.entries(asl.States)) if (HIDDEN.has(name)) ends.push(name);
  function addFrom(states) {
    for (const [name, st] of Object.entries(states)) {
      if (st.Type === "Choice" || !nodes.has(name)) continue;
      for (const t of targets(st.Next)) {
        if (!nodes.has(t.to)) continue;
        const from = nodes.get(name).label;
        const lbl = labels.get(`${from}>${nodes.get(t.to).label}`) || (t.isDefault ? "else" : undefined);
        edges.push({ from: name, to: t.to, label: lbl });
      }
      for (const b of st.Branches || []) addFrom(b.States);
      const it = st.ItemProcessor || st.Iterator;
      if (it) addFrom(it.States);
    }
  }
  addFrom(asl.States);
  const seen = new Set();
  const unique = edges.filter((e) => nodes.has(e.from) && nodes.has(e.to) && !seen.has(`${e.from}>${e.to}`) && seen.add(`${e.from}>${e.to}`));
  // The compiled StartAt is a routing Choice (__start__: continuations, fork and redrive start mid-graph);
  // a fresh run takes its Default, the graph's entry.
  let start = asl.StartAt;
  for (let hops = 0; choices.has(start) && choices.get(start).Default && hops < 8; hops++) start = choices.get(start).Default;
  return { start, nodes, edges: unique, regions };
}

/** Layers by longest path from the start over forward edges (back edges found by DFS). */
export function layout(g) {
  const out = new Map();
  for (const e of g.edges) (out.get(e.from) || out.set(e.from, []).get(e.from)).push(e);
  const state = new Map();
  const order = [];
  function dfs(id) {
    state.set(id, 1);
    for (const e of out.get(id) || []) {
      const s = state.get(e.to);
      if (s === 1) e.back = true;
      else if (!s) dfs(e.to);
    }
    state.set(id, 2);
    order.push(id);
  }
  if (g.nodes.has(g.start)) dfs(g.start);
  for (const id of g.nodes.keys()) if (!state.has(id)) dfs(id);
  order.reverse();
  const layer = new Map(order.map((id) => [id, 0]));
  for (const id of order) for (const e of out.get(id) || []) if (!e.back) layer.set(e.to, Math.max(layer.get(e.to), layer.get(id) + 1));
  const rows = [];
  for (const id of order) (rows[layer.get(id)] ||= []).push(id);
  const widest = Math.max(...rows.map((r) => r.length));
  const width = Math.max(widest * (W + GAPX) + GAPX, 320);
  const pos = new Map();
  rows.forEach((row, y) => {
    const span = row.length * (W + GAPX) - GAPX;
    row.forEach((id, x) => pos.set(id, { x: (width - span) / 2 + x * (W + GAPX), y: 20 + y * (H + GAPY) }));
  });
  return { pos, width: width + 60, height: rows.length * (H + GAPY) + 20 };
}

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** An <svg> of the graph; each node is <g class="node" data-node="<graph node>"> for live status. */
export function draw(asl, spec) {
  const g = flatten(asl, spec);
  const { pos, width, height } = layout(g);
  const svg = el("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "group", "aria-label": "Graph of the run's nodes" });
  const defs = el("defs");
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6b6b6b" }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  for (const r of g.regions) {
    const ps = r.members.map((m) => pos.get(m)).filter(Boolean);
    if (!ps.length) continue;
    const x0 = Math.min(...ps.map((p) => p.x)) - 10, y0 = Math.min(...ps.map((p) => p.y)) - 16;
    const x1 = Math.max(...ps.map((p) => p.x)) + W + 10, y1 = Math.max(...ps.map((p) => p.y)) + H + 8;
    svg.appendChild(el("rect", { class: "region", x: x0, y: y0, width: x1 - x0, height: y1 - y0, rx: 8 }));
    svg.appendChild(el("text", { class: "region-label", x: x0 + 6, y: y0 + 11 }, `${r.kind} ${r.id.replace(/\.fanout$/, "")}`));
  }
  for (const e of g.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    let d, lx, ly;
    if (e.back || b.y <= a.y) {
      const side = Math.max(a.x, b.x) + W + 24;
      d = `M${a.x + W},${a.y + H / 2} C${side},${a.y + H / 2} ${side},${b.y + H / 2} ${b.x + W},${b.y + H / 2}`;
      lx = side - 4; ly = (a.y + b.y) / 2 + H / 2;
    } else {
      const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y;
      d = `M${x1},${y1} C${x1},${(y1 + y2) / 2} ${x2},${(y1 + y2) / 2} ${x2},${y2}`;
      lx = (x1 + x2) / 2 + 4; ly = (y1 + y2) / 2;
    }
    svg.appendChild(el("path", { class: `edge${e.back ? " back" : ""}`, d, "marker-end": "url(#arrow)", "data-from": e.from, "data-to": e.to }));
    if (e.label) {
      const t = e.label.length > 34 ? e.label.slice(0, 33) + "…" : e.label;
      const txt = el("text", { class: "edge-label", x: lx, y: ly }, t);
      txt.appendChild(el("title", {}, e.label));
      svg.appendChild(txt);
    }
  }
  for (const n of g.nodes.values()) {
    const p = pos.get(n.id);
    const grp = el("g", { class: `node k-${n.kind} st-idle`, "data-node": n.label, "data-state": n.id, transform: `translate(${p.x},${p.y})`, role: "img", "aria-label": `${n.label} (${n.kind}): not started` });
    grp.appendChild(el("rect", { width: W, height: H, rx: n.kind === "end" ? 18 : 5 }));
    grp.appendChild(el("text", { x: 8, y: 17 }, n.label.length > 20 ? n.label.slice(0, 19) + "…" : n.label));
    grp.appendChild(el("text", { class: "kind", x: 8, y: 32 }, n.kind));
    svg.appendChild(grp);
  }
  return svg;
}

/** Set a node's live status (idle | running | waiting | done | failed) on every box drawn for it. */
export function mark(svg, node, status) {
  for (const g of svg.querySelectorAll(`g.node[data-node="${CSS.escape(node)}"]`)) {
    g.setAttribute("class", g.getAttribute("class").replace(/st-\w+/, `st-${status}`));
    const kind = g.getAttribute("class").match(/k-(\w+)/);
    g.setAttribute("aria-label", `${node} (${kind ? kind[1] : "node"}): ${status}`);
  }
}
