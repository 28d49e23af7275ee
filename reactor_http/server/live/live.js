// The live page's script: listen to the feed, keep the last five minutes, draw each chart.
//
// The feed (Server-Sent Events) sends one "history" event, the ticks of the last
// minutes, then a "tick" a second. A tick is a list with one snapshot per worker
// process. Counters (responses, bytes, busy time) only grow, so a rate is the
// difference between two ticks of the same worker over the time between them.
"use strict";

(function () {
  const KEEP = 300;  // ticks kept: five minutes
  const SHORTEST_SPAN = 60;  // the charts' width, in ticks, while fewer are kept
  const SWATCH = 14, LEGEND_GAP = 12;  // a legend entry's line sample, and the space after its text
  const ticks = [];
  const STATE_COLOURS = {
    "idle": "#4e79a7", "reading-request": "#f28e2b", "waiting-executor": "#e15759",
    "writing": "#76b7b2", "waiting-chunk": "#59a14f", "streaming": "#edc948",
    "lingering": "#b07aa1", "handshake-want-read": "#ff9da7", "handshake-want-write": "#9c755f",
  };
  const WORKER_COLOURS = ["#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#9c755f"];

  // -- from ticks to series -------------------------------------------------------------

  function workersOf(tick) { return tick.map((snapshot) => snapshot.worker); }

  function allWorkers() {
    const seen = new Set();
    for (const tick of ticks) for (const worker of workersOf(tick)) seen.add(worker);
    return [...seen].sort((a, b) => a - b);
  }

  function find(tick, worker) { return tick.find((snapshot) => snapshot.worker === worker); }

  // A value per tick for each worker: pick(snapshot) or, with a previous tick,
  // rate(snapshot, previous, seconds). null where it cannot be known.
  function perWorker(pick, label) {
    return allWorkers().map((worker, index) => ({
      label: label ? label(worker) : "worker " + worker,
      colour: WORKER_COLOURS[index % WORKER_COLOURS.length],
      values: ticks.map((tick) => { const s = find(tick, worker); return s ? pick(s) : null; }),
    }));
  }

  function ratePerWorker(counter, scale, label) {
    return allWorkers().map((worker, index) => ({
      label: label ? label(worker) : "worker " + worker,
      colour: WORKER_COLOURS[index % WORKER_COLOURS.length],
      values: ticks.map((tick, i) => {
        const now = find(tick, worker), before = i > 0 ? find(ticks[i - 1], worker) : null;
        if (!now || !before || now.pid !== before.pid || now.time <= before.time) return null;
        return (counter(now) - counter(before)) / (now.time - before.time) * (scale || 1);
      }),
    }));
  }

  function openConnections(snapshot) {
    return Object.values(snapshot.connections).reduce((a, b) => a + b, 0);
  }

  const CHARTS = {
    states: () => Object.keys(STATE_COLOURS).map((state) => ({
      label: state, colour: STATE_COLOURS[state],
      values: ticks.map((tick) => tick.reduce((sum, s) => sum + (s.connections[state] || 0), 0)),
    })).filter((series) => series.values.some((v) => v > 0)),
    open: () => perWorker(openConnections),
    requests: () => ratePerWorker((s) => s.responses),
    bytes: () => ratePerWorker((s) => s.body_bytes),
    lag: () => [...perWorker((s) => s.loop.worst_lag * 1000, (w) => "lag, worker " + w),
                ...perWorker((s) => s.loop.busiest_turn * 1000, (w) => "busiest turn, worker " + w)
                  .map((series) => Object.assign(series, { dashed: true }))],
    load: () => ratePerWorker((s) => s.loop.busy_seconds, 100),
    executor: () => [
      { label: "running", colour: "#e15759",
        values: ticks.map((t) => t.reduce((n, s) => n + Math.max(0, s.executor.running - s.executor.queued), 0)) },
      { label: "queued", colour: "#f28e2b", values: ticks.map((t) => t.reduce((n, s) => n + s.executor.queued, 0)) },
    ],
    hits: () => allWorkers().map((worker, index) => ({
      label: "worker " + worker, colour: WORKER_COLOURS[index % WORKER_COLOURS.length],
      values: ticks.map((tick, i) => {
        const now = find(tick, worker), before = i > 0 ? find(ticks[i - 1], worker) : null;
        if (!now || !before || now.pid !== before.pid) return null;
        const hits = now.cache.hits - before.cache.hits, misses = now.cache.misses - before.cache.misses;
        return hits + misses > 0 ? 100 * hits / (hits + misses) : null;
      }),
    })),
    threads: () => perWorker((s) => s.process.threads),
    memory: () => perWorker((s) => s.process.resident_bytes / 1048576),
    fds: () => perWorker((s) => s.process.open_fds),
  };

  // -- drawing ----------------------------------------------------------------------------

  function niceCeiling(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
    return 10 * power;
  }

  function formatNumber(value) {
    if (value >= 1e9) return (value / 1e9).toFixed(1) + "G";
    if (value >= 1e6) return (value / 1e6).toFixed(1) + "M";
    if (value >= 1e4) return (value / 1e3).toFixed(0) + "k";
    return Number.isInteger(value) ? String(value) : value.toFixed(1);
  }

  function draw(canvas, series) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    const g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    const style = getComputedStyle(document.documentElement);
    const ink = style.getPropertyValue("--muted") || "#555", grid = style.getPropertyValue("--grid") || "#ddd";
    const left = 4, right = width - 4;
    g.font = "11px system-ui, sans-serif";
    const legend = legendLayout(g, series, left, right);
    const top = 14, bottom = height - 16 * legend.rows - 4;
    let max = 0;
    for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
    max = niceCeiling(max);
    g.strokeStyle = grid;
    g.lineWidth = 1;
    for (const fraction of [0, 0.5, 1]) {
      const y = bottom - (bottom - top) * fraction;
      g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
    }
    g.fillStyle = ink;
    g.fillText(formatNumber(max), left + 2, top - 3);
    // The width spans at least a minute, and grows to the five minutes kept,
    // so that a page opened a moment ago does not draw in a sliver at the right.
    const span = Math.min(KEEP, Math.max(SHORTEST_SPAN, ticks.length));
    const step = (right - left) / Math.max(1, span - 1);
    const offset = span - ticks.length;  // new points enter at the right
    for (const s of series) {
      g.strokeStyle = s.colour;
      g.lineWidth = 1.6;
      g.setLineDash(s.dashed ? [4, 3] : []);
      g.beginPath();
      let drawing = false;
      g.fillStyle = s.colour;
      s.values.forEach((v, i) => {
        if (v === null) { drawing = false; return; }
        const x = left + (offset + i) * step, y = bottom - (bottom - top) * (v / max);
        if (drawing) g.lineTo(x, y); else g.moveTo(x, y);
        drawing = true;
        // A value with no neighbour (a lone second of cache hits) makes no
        // segment: mark it with a dot, or it would not show at all.
        const next = i + 1 < s.values.length ? s.values[i + 1] : null;
        if ((i === 0 || s.values[i - 1] === null) && next === null) g.fillRect(x - 1.5, y - 1.5, 3, 3);
      });
      g.stroke();
    }
    for (const entry of legend.entries) {
      const s = entry.series, y = bottom + 14 + 16 * entry.row;
      // The swatch is a short stretch of the line itself, dashes included:
      // the lag chart's two lines per worker share a colour.
      g.strokeStyle = s.colour;
      g.lineWidth = 3;
      g.setLineDash(s.dashed ? [4, 3] : []);
      g.beginPath(); g.moveTo(entry.x, y - 6.5); g.lineTo(entry.x + SWATCH, y - 6.5); g.stroke();
      g.fillStyle = ink;
      g.fillText(entry.text, entry.x + SWATCH + 4, y - 3, Math.max(1, right - entry.x - SWATCH - 4));
    }
    g.setLineDash([]);
  }

  // Where each legend entry goes: one after another, as wide as its text,
  // onto a new row when the next would not fit (long labels never overlap).
  function legendLayout(g, series, left, right) {
    const entries = [];
    let x = left, row = 0;
    for (const s of series) {
      const last = s.values.length ? s.values[s.values.length - 1] : null;
      const text = s.label + (last === null ? "" : ": " + formatNumber(last));
      const width = SWATCH + 4 + g.measureText(text).width;
      if (x > left && x + width > right) { x = left; row += 1; }
      entries.push({ series: s, text: text, x: x, row: row });
      x += width + LEGEND_GAP;
    }
    return { entries: entries, rows: entries.length ? row + 1 : 0 };
  }

  function redraw() {
    for (const figure of document.querySelectorAll("figure[data-chart]")) {
      draw(figure.querySelector("canvas"), CHARTS[figure.dataset.chart]());
    }
    const last = ticks[ticks.length - 1];
    if (last) {
      const open = last.reduce((n, s) => n + openConnections(s), 0);
      const threads = last.reduce((n, s) => n + s.process.threads, 0);
      document.getElementById("summary").textContent =
        `${last.length} worker${last.length === 1 ? "" : "s"}, ${open} open connection${open === 1 ? "" : "s"}, ` +
        `${threads} thread${threads === 1 ? "" : "s"}` + (last.some((s) => s.stopping) ? ", stopping" : "") +
        `; updated ${new Date(last[0].time * 1000).toLocaleTimeString()}`;
    }
  }

  // -- the feed ---------------------------------------------------------------------------

  function add(tick) {
    ticks.push(tick);
    while (ticks.length > KEEP) ticks.shift();
  }

  // The feed is "events" beside this script: /_reactor/live.js -> /_reactor/events.
  const feed = new EventSource(new URL("events", document.currentScript.src));
  feed.addEventListener("history", (event) => { ticks.length = 0; JSON.parse(event.data).forEach(add); redraw(); });
  feed.addEventListener("tick", (event) => { add(JSON.parse(event.data)); redraw(); });
  feed.addEventListener("error", () => {
    document.getElementById("summary").textContent = "the feed is interrupted; the browser tries again every 2 s";
  });
  window.addEventListener("resize", redraw);

  // For people at the console, and for the test that drives this page.
  window.reactorLive = { ticks, series: (name) => CHARTS[name](), feed };
})();
