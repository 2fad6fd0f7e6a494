// chart.js: values on hover and time-range zoom for report.html's line
// charts. Inlined at the end of the page by controller/src/report/mod.rs;
// no library, no network. It reads each chart's data (the JSON script
// element of class chart-data after its svg, written by data.rs) and
// changes nothing until the mouse is over a chart: the page without
// scripts is the same page.
//
// Hover: a guide line, a dot on each line and a tooltip with the x value
// and each series' value at the point nearest the pointer.
// Zoom (charts whose data names a zoom group: a stage's time charts): drag
// across a chart to show that x range in every chart of its group; the
// paths and x ticks are redrawn from the data as svg.rs draws them.
// Double-click or "reset zoom" puts back the SVG as it was written.
"use strict";
(() => {
  const NS = "http://www.w3.org/2000/svg";
  // Most series a tooltip names: client CPU has a line per agent, and the
  // ones nearest the pointer are the ones being looked at.
  const TIP_ROWS = 12;
  // A drag shorter than this (SVG units) is a click, not a zoom.
  const MIN_DRAG = 4;
  const charts = [];
  let drag = null;

  const tip = document.createElement("div");
  tip.className = "chart-tip";
  tip.style.display = "none";
  document.body.appendChild(tip);

  function svgEl(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  // As svg.rs's nice_step: 1, 2 or 5 times a power of ten, at least raw.
  function niceStep(raw) {
    if (!(raw > 0 && isFinite(raw))) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }

  // A tick label: svg.rs's short_number for steps of 1 or more; below,
  // as many decimals as the step has, so a deep zoom keeps its labels
  // apart (0.05, 0.10, 0.15).
  function tickLabel(v, step) {
    if (step < 1) return v.toFixed(Math.min(9, Math.ceil(-Math.log10(step) - 1e-9)));
    const a = Math.abs(v);
    const [x, unit] =
      a >= 1e9 ? [v / 1e9, "G"] : a >= 1e6 ? [v / 1e6, "M"] : a >= 1e3 ? [v / 1e3, "k"] : [v, ""];
    let s = Math.abs(x - Math.round(x)) < 1e-9 ? x.toFixed(0) : x.toFixed(Math.abs(x) >= 10 ? 1 : 2);
    if (s.includes(".")) s = s.replace(/0+$/, "").replace(/\.$/, "");
    return s + unit;
  }

  // A value in a tooltip: 4 significant digits, as a plain number.
  function valueText(v) {
    return String(Number(v.toPrecision(4)));
  }

  // An x value in a tooltip, as the chart's data says x reads.
  function xText(c, x) {
    if (c.d.hover === "seconds") return valueText(x) + " s";
    if (c.d.hover === "nines") {
      // x nines: the percentile 100 (1 - 10^-x), with x - 2 decimals.
      const pct = 100 * (1 - Math.pow(10, -x));
      return "p" + Number(pct.toFixed(Math.max(0, Math.ceil(x - 1e-9) - 2)));
    }
    return valueText(x);
  }

  function xRange(c) {
    return c.range || c.d.x;
  }

  function xPx(c, x) {
    const [lo, hi] = xRange(c);
    return c.x0 + ((x - lo) / (hi - lo)) * (c.x1 - c.x0);
  }

  function xData(c, px) {
    const [lo, hi] = xRange(c);
    return lo + ((px - c.x0) / (c.x1 - c.x0)) * (hi - lo);
  }

  // As svg.rs's Scale::px for the y axis, clamped to the plot.
  function yPx(c, v) {
    const [lo, hi] = c.d.y;
    const t = c.d.ylog
      ? (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))
      : (v - lo) / (hi - lo);
    return c.yBottom + Math.min(1, Math.max(0, t)) * (c.yTop - c.yBottom);
  }

  // The mouse in the SVG's own units (the chart is scaled to the page).
  function pointer(c, e) {
    const m = c.svg.getScreenCTM();
    return m ? new DOMPoint(e.clientX, e.clientY).matrixTransform(m.inverse()) : null;
  }

  function inPlot(c, p) {
    return p && p.x >= c.x0 && p.x <= c.x1 && p.y >= c.yTop && p.y <= c.yBottom;
  }

  // Index of the point nearest x in points sorted by x; -1 if none.
  function nearest(points, x) {
    let lo = 0;
    let hi = points.length - 1;
    if (hi < 0) return -1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (points[mid][0] < x) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && x - points[lo - 1][0] <= points[lo][0] - x) lo--;
    return lo;
  }

  // The part of a polyline (pixels, sorted by x) between x0 and x1, cut
  // where it crosses them, so a zoomed line runs to the plot's edges.
  function clip(pts, x0, x1) {
    const out = [];
    const at = (a, b, x) => [x, a[1] + ((b[1] - a[1]) * (x - a[0])) / (b[0] - a[0])];
    for (let k = 0; k < pts.length; k++) {
      const p = pts[k];
      const q = pts[k - 1];
      if (p[0] < x0) continue;
      if (q && q[0] < x0 && p[0] > x0) out.push(at(q, p, x0));
      if (p[0] > x1) {
        if (q && q[0] < x1) out.push(at(q, p, x1));
        break;
      }
      out.push(p);
    }
    return out;
  }

  // A series' path for the current range, written as svg.rs writes it.
  function pathD(c, points) {
    const px = points.map((p) => [xPx(c, p[0]), yPx(c, p[1])]);
    const vis = clip(px, c.x0, c.x1);
    let d = vis.map((p, k) => (k ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1)).join("");
    if (vis.length === 1) d += "h2";
    return d;
  }

  function drawTicks(c) {
    const [lo, hi] = c.range;
    const step = niceStep((hi - lo) / 5);
    c.ticks.replaceChildren();
    const y = c.yBottom;
    for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) {
      const v = k * step;
      const px = xPx(c, v).toFixed(1);
      svgEl("path", { class: "tick", d: `M${px} ${y.toFixed(1)}v5` }, c.ticks);
      const t = svgEl("text", { x: px, y: (y + 18).toFixed(1), "text-anchor": "middle" }, c.ticks);
      t.textContent = tickLabel(v, step);
    }
  }

  function zoom(c, range) {
    c.range = range;
    c.paths.forEach((p, i) => p.el.setAttribute("d", pathD(c, c.d.series[i].points)));
    drawTicks(c);
    c.reset.setAttribute("visibility", "visible");
    hideHover(c);
  }

  function unzoom(c) {
    c.range = null;
    c.paths.forEach((p) => p.el.setAttribute("d", p.d));
    c.ticks.innerHTML = c.ticksHtml;
    c.reset.setAttribute("visibility", "hidden");
    hideHover(c);
  }

  function zoomGroup(group, range) {
    for (const c of charts) if (c.d.zoom === group) zoom(c, range);
  }

  function resetGroup(group) {
    for (const c of charts) if (c.d.zoom === group) unzoom(c);
  }

  function hideHover(c) {
    c.hover.setAttribute("visibility", "hidden");
    tip.style.display = "none";
  }

  function showHover(c, e) {
    const p = pointer(c, e);
    if (drag || !inPlot(c, p)) return hideHover(c);
    const [lo, hi] = xRange(c);
    const x = xData(c, p.x);
    let rows = [];
    c.d.series.forEach((s, i) => {
      const k = nearest(s.points, x);
      if (k < 0) return;
      const pt = s.points[k];
      if (pt[0] >= lo && pt[0] <= hi) rows.push({ i, s, pt, dx: Math.abs(pt[0] - x), py: yPx(c, pt[1]) });
    });
    if (!rows.length) return hideHover(c);
    const at = rows.reduce((a, r) => (r.dx < a.dx ? r : a)).pt[0];
    if (rows.length > TIP_ROWS) {
      rows.sort((a, b) => Math.abs(a.py - p.y) - Math.abs(b.py - p.y));
      rows = rows.slice(0, TIP_ROWS).sort((a, b) => a.i - b.i);
    }

    // Marks in the chart: the guide at that x, a dot per named point.
    const gx = xPx(c, at).toFixed(1);
    c.guide.setAttribute("d", `M${gx} ${c.yTop}V${c.yBottom}`);
    while (c.dots.length < rows.length) c.dots.push(svgEl("circle", { r: 3 }, c.hover));
    c.dots.forEach((dot, k) => {
      const r = rows[k];
      dot.setAttribute("visibility", r ? "inherit" : "hidden");
      if (!r) return;
      dot.setAttribute("cx", xPx(c, r.pt[0]).toFixed(1));
      dot.setAttribute("cy", r.py.toFixed(1));
      dot.setAttribute("fill", r.s.color);
    });
    c.hover.setAttribute("visibility", "visible");

    // The tooltip, built as nodes: series names are text, never markup.
    const head = document.createElement("div");
    const strong = document.createElement("strong");
    strong.className = "tip-x";
    strong.textContent = xText(c, at);
    head.append(strong, " " + c.d.ylabel);
    const table = document.createElement("table");
    for (const r of rows) {
      const tr = table.insertRow();
      const name = tr.insertCell();
      const key = document.createElement("i");
      key.style.background = r.s.color;
      name.className = "tip-name";
      name.append(key, " " + r.s.name);
      const value = tr.insertCell();
      value.className = "tip-value";
      value.textContent = valueText(r.pt[1]);
    }
    tip.replaceChildren(head, table);
    tip.style.display = "block";
    // Beside the pointer, on the side where it fits.
    const [w, h] = [tip.offsetWidth, tip.offsetHeight];
    let left = e.clientX + 14;
    if (left + w > window.innerWidth - 4) left = Math.max(4, e.clientX - 14 - w);
    let top = e.clientY + 14;
    if (top + h > window.innerHeight - 4) top = Math.max(4, e.clientY - 14 - h);
    tip.style.left = left + "px";
    tip.style.top = top + "px";
  }

  function startDrag(c, e) {
    if (e.button !== 0 || c.reset.contains(e.target)) return;
    const p = pointer(c, e);
    if (!inPlot(c, p)) return;
    e.preventDefault(); // a drag, not a text selection
    drag = { c, from: p.x, to: p.x };
    hideHover(c);
  }

  // The drag's end, held to the plot, from a mouse event anywhere.
  function dragTo(e) {
    const p = pointer(drag.c, e);
    if (p) drag.to = Math.min(drag.c.x1, Math.max(drag.c.x0, p.x));
  }

  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    dragTo(e);
    const sel = drag.c.sel;
    sel.setAttribute("x", Math.min(drag.from, drag.to).toFixed(1));
    sel.setAttribute("width", Math.abs(drag.to - drag.from).toFixed(1));
    sel.setAttribute("visibility", "visible");
  });

  window.addEventListener("mouseup", (e) => {
    if (!drag) return;
    dragTo(e);
    const { c, from, to } = drag;
    drag = null;
    c.sel.setAttribute("visibility", "hidden");
    if (Math.abs(to - from) < MIN_DRAG) return;
    zoomGroup(c.d.zoom, [xData(c, Math.min(from, to)), xData(c, Math.max(from, to))]);
  });

  function init(script) {
    const d = JSON.parse(script.textContent);
    const svg = document.getElementById(script.dataset.for);
    if (!svg) return;
    const [x0, x1, yTop, yBottom] = d.plot;
    const c = { d, svg, x0, x1, yTop, yBottom, range: null, paths: [], dots: [] };
    // Paths as written, to put back on reset (a series drew none if it
    // had no point to draw).
    for (const p of svg.querySelectorAll("path.series")) {
      c.paths[Number(p.dataset.i)] = { el: p, d: p.getAttribute("d") };
    }
    c.hover = svgEl("g", { class: "hover", "pointer-events": "none", visibility: "hidden" }, svg);
    c.guide = svgEl("path", { stroke: "#888", "stroke-dasharray": "3 3", fill: "none" }, c.hover);
    svg.addEventListener("mousemove", (e) => showHover(c, e));
    svg.addEventListener("mouseleave", () => hideHover(c));
    const ticks = svg.querySelector("g.xticks");
    if (d.zoom && ticks) {
      c.ticks = ticks;
      c.ticksHtml = ticks.innerHTML;
      svg.classList.add("zoomable");
      c.sel = svgEl("rect", {
        class: "zoom-sel",
        y: yTop,
        height: yBottom - yTop,
        fill: "#0072B2",
        "fill-opacity": "0.15",
        visibility: "hidden",
        "pointer-events": "none",
      });
      svg.insertBefore(c.sel, c.hover);
      c.reset = svgEl("g", { class: "reset", visibility: "hidden" }, svg);
      svgEl("rect", { x: x1 - 80, y: 4, width: 80, height: 18, rx: 3 }, c.reset);
      const label = svgEl("text", { x: x1 - 40, y: 17, "text-anchor": "middle" }, c.reset);
      label.textContent = "reset zoom";
      c.reset.addEventListener("click", () => resetGroup(d.zoom));
      svg.addEventListener("mousedown", (e) => startDrag(c, e));
      svg.addEventListener("dblclick", () => resetGroup(d.zoom));
    }
    charts.push(c);
  }

  for (const s of document.querySelectorAll("script.chart-data")) init(s);
})();
