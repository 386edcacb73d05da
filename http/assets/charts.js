// Charts of the mailroom dashboard, drawn as inline SVG strings (no library): a sparkline for a
// pool's depth and a stacked-area cumulative flow diagram. Colours come from CSS classes.
"use strict";
window.Charts = (() => {
  const fmt = (n) => (Math.round(n * 10) / 10).toString();

  // A small line chart of `values` (oldest first) in a w×h box, with the area under it.
  function sparkline(values, w = 120, h = 26) {
    if (!values || values.length === 0) return `<svg class="spark" width="${w}" height="${h}"></svg>`;
    const vs = values.length === 1 ? [values[0], values[0]] : values;
    const max = Math.max(1, ...vs);
    const step = w / (vs.length - 1);
    const pts = vs.map((v, i) => `${fmt(i * step)},${fmt(h - 2 - (v / max) * (h - 4))}`);
    return `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" aria-hidden="true">` +
      `<polygon points="0,${h} ${pts.join(" ")} ${w},${h}"/><polyline points="${pts.join(" ")}"/></svg>`;
  }

  // The bands of the cumulative flow diagram, bottom to top: what has finished (cumulative), then
  // what is in progress, queued, waiting in the backlog and blocked at each sample.
  const BANDS = ["COMPLETED", "FAILED", "CANCELLED", "IN_PROGRESS", "QUEUED", "PENDING", "BLOCKED"];
  const LABELS = { COMPLETED: "completed", FAILED: "failed", CANCELLED: "cancelled", IN_PROGRESS: "in progress",
    QUEUED: "queued", PENDING: "backlog", BLOCKED: "blocked" };

  // `series`: [{at (µs), live: {STATUS: n}, finished: {STATUS: n}, depth: {pool: n}}].
  function cfd(series, w = 800, h = 220) {
    if (!series || series.length < 2) {
      return `<div class="empty">The flow diagram fills in as samples arrive (one every few seconds).</div>`;
    }
    const rows = series.map((s) => {
      const queued = Object.values(s.depth || {}).reduce((a, b) => a + b, 0);
      const live = s.live || {}, fin = s.finished || {};
      return {
        at: s.at,
        COMPLETED: fin.COMPLETED || 0, FAILED: fin.FAILED || 0, CANCELLED: fin.CANCELLED || 0,
        IN_PROGRESS: live.IN_PROGRESS || 0, QUEUED: queued,
        PENDING: Math.max(0, (live.PENDING || 0) - queued), BLOCKED: live.BLOCKED || 0,
      };
    });
    const pad = { l: 36, r: 8, t: 8, b: 18 };
    const iw = w - pad.l - pad.r, ih = h - pad.t - pad.b;
    const t0 = rows[0].at, t1 = rows[rows.length - 1].at;
    const top = Math.max(1, ...rows.map((r) => BANDS.reduce((a, b) => a + r[b], 0)));
    const x = (t) => pad.l + ((t - t0) / Math.max(1, t1 - t0)) * iw;
    const y = (v) => pad.t + ih - (v / top) * ih;
    let under = rows.map(() => 0);
    let paths = "";
    for (const band of BANDS) {
      const over = rows.map((r, i) => under[i] + r[band]);
      if (over.some((v, i) => v !== under[i])) {
        const upper = rows.map((r, i) => `${fmt(x(r.at))},${fmt(y(over[i]))}`);
        const lower = rows.map((r, i) => `${fmt(x(r.at))},${fmt(y(under[i]))}`).reverse();
        paths += `<path class="fill-${band}" d="M${upper.join("L")}L${lower.join("L")}Z"><title>${LABELS[band]}</title></path>`;
      }
      under = over;
    }
    const mins = Math.round((t1 - t0) / 60e6);
    const axis = `<line class="axis" x1="${pad.l}" y1="${pad.t + ih}" x2="${w - pad.r}" y2="${pad.t + ih}"/>` +
      `<text x="${pad.l - 4}" y="${pad.t + 8}" text-anchor="end">${top}</text>` +
      `<text x="${pad.l - 4}" y="${pad.t + ih}" text-anchor="end">0</text>` +
      `<text x="${pad.l}" y="${h - 4}">${mins > 0 ? mins + " min ago" : "just now"}</text>` +
      `<text x="${w - pad.r}" y="${h - 4}" text-anchor="end">now</text>`;
    const legend = BANDS.map((b) => `<span><svg width="10" height="10"><rect class="fill-${b}" width="10" height="10" rx="2"/></svg>${LABELS[b]}</span>`).join("");
    return `<svg class="chart" viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" role="img" aria-label="Cumulative flow">${axis}${paths}</svg>` +
      `<div class="legend">${legend}</div>`;
  }

  return { sparkline, cfd };
})();
