// Statistiques: bar charts per month and per convention, drawn as SVG; CSV exports.
// Totals under the threshold arrive as "<N" from the server and are drawn as a hatched stub, never a value.
import { $, api, el } from "./common.js";

const SVG = "http://www.w3.org/2000/svg";
const MONTHS = ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."];

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function monthLabel(ym) {
  const [y, m] = ym.split("-");
  return `${MONTHS[Number(m) - 1] || m} ${y}`;
}

function hatch() {
  const defs = svg("defs", {});
  const pattern = svg("pattern", { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
  pattern.append(svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#5b616e", "stroke-width": 2 }));
  defs.append(pattern);
  return defs;
}

/** Horizontal bars (labels fit on a phone); a suppressed total is a hatched stub labelled "<N". */
export function barChart(rows, labelOf, caption, available) {
  if (!rows.length) return el("p", "Aucune alerte sur la période.", "muted");
  // Drawn at the container's own width, so that 12 px text stays 12 px on a phone.
  const width = Math.max(280, Math.round(available || 600)), barH = 22, gap = 8, valueW = 50;
  const labelW = Math.round(Math.min(220, width * 0.42));
  const chars = Math.max(10, Math.floor(labelW / 7));
  const height = rows.length * (barH + gap) + gap;
  const max = Math.max(1, ...rows.map((r) => (typeof r.alerts === "number" ? r.alerts : 0)));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": caption });
  chart.append(hatch());
  rows.forEach((r, i) => {
    const y = gap + i * (barH + gap);
    const hidden = typeof r.alerts !== "number";
    const span = width - labelW - valueW;
    const w = hidden ? 12 : Math.max(r.alerts > 0 ? 2 : 0, (r.alerts / max) * span);
    const group = svg("g", { class: "row", "data-label": r.label, "data-value": String(r.alerts) });
    const label = labelOf(r.label);
    group.append(
      svg("text", { x: labelW - 6, y: y + barH * 0.7, "text-anchor": "end" }, label.length > chars ? `${label.slice(0, chars - 1)}…` : label),
      svg("rect", { x: labelW, y, width: w, height: barH, class: hidden ? "bar hidden-count" : "bar" }),
      svg("text", { x: labelW + w + 6, y: y + barH * 0.7, class: "value" }, String(r.alerts)),
    );
    group.append(svg("title", {}, `${label} : ${r.alerts} alerte(s)`));
    chart.append(group);
  });
  return chart;
}

function range() {
  const q = new URLSearchParams();
  if ($("s-since").value) q.set("since", `${$("s-since").value}T00:00:00Z`);
  if ($("s-until").value) q.set("until", `${$("s-until").value}T23:59:59Z`);
  return q;
}

export async function showStats() {
  const q = range();
  const by = (group) => { const p = new URLSearchParams(q); p.set("by", group); return p; };
  const [months, conventions] = await Promise.all([
    api(`/api/stats/totals?${by("month")}`), api(`/api/stats/totals?${by("convention")}`),
  ]);
  const draw = (id, rows, labelOf, caption) => $(id).replaceChildren(barChart(rows, labelOf, caption, $(id).clientWidth));
  draw("chart-month", months, monthLabel, "Alertes par mois");
  draw("chart-convention", conventions, (x) => x, "Alertes par convention");
  const csv = (p) => { p.set("format", "csv"); return p; };
  $("csv-month").href = `/api/stats/totals?${csv(by("month"))}`;
  $("csv-convention").href = `/api/stats/totals?${csv(by("convention"))}`;
  $("csv-cells").href = `/api/stats?${csv(new URLSearchParams(q))}`;
}

export function initStats() {
  $("stats-filters").addEventListener("submit", (event) => { event.preventDefault(); showStats(); });
}
