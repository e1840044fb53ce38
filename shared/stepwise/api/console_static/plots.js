// Horizontal bar charts as inline SVG, with a text table equivalent for screen readers.
const NS = "http://www.w3.org/2000/svg";

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** rows: [{label, value}] -> an <svg role="img"> bar chart titled `title`, values formatted by fmt. */
export function bars(title, rows, { fmt = (v) => String(v), cls = "", width = 420 } = {}) {
  const rowH = 22, labelW = 130, valueW = 80;
  const h = Math.max(1, rows.length) * rowH + 8;
  const max = Math.max(0, ...rows.map((r) => r.value)) || 1;
  const svg = el("svg", { class: "plot", viewBox: `0 0 ${width} ${h}`, width: "100%", role: "img", "aria-label": title });
  svg.appendChild(el("title", {}, title));
  rows.forEach((r, i) => {
    const y = 4 + i * rowH;
    const w = Math.max(1, ((width - labelW - valueW) * r.value) / max);
    svg.appendChild(el("text", { x: labelW - 6, y: y + 15, "text-anchor": "end" }, r.label.length > 18 ? r.label.slice(0, 17) + "…" : r.label));
    const bar = el("rect", { class: `bar ${cls}`, x: labelW, y: y + 3, width: w, height: rowH - 8 });
    bar.appendChild(el("title", {}, `${r.label}: ${fmt(r.value)}`));
    svg.appendChild(bar);
    svg.appendChild(el("text", { x: labelW + w + 4, y: y + 15 }, fmt(r.value)));
  });
  if (!rows.length) svg.appendChild(el("text", { x: 8, y: 18 }, "no data"));
  return svg;
}
