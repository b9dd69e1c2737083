// The overview's chart: jobs completed and failed per sampling interval over the history the
// server keeps (GET /stats/history), drawn as stacked SVG bars. Hand-written: a small chart
// does not need a library.

import { el, svg } from "./dom.js";

const WIDTH = 720;
const HEIGHT = 200;
const LEFT = 44;
const BOTTOM = 24;
const TOP = 10;

// Per-interval differences of the counters; a counter that went down (a node restarted on a
// broker of its own) counts from zero again.
export function rates(samples) {
  const out = [];
  for (let i = 1; i < samples.length; i += 1) {
    const before = samples[i - 1];
    const after = samples[i];
    const diff = (name) => {
      const value = after[name] - before[name];
      return value >= 0 ? value : after[name];
    };
    out.push({
      time: after.time,
      completed: diff("completed"),
      failed: diff("failed"),
      submitted: diff("submitted"),
    });
  }
  return out;
}

function niceMax(value) {
  if (value <= 5) return 5;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function clock(time) {
  const moment = new Date(time);
  return moment.toISOString().slice(11, 16);
}

// The chart for `history` (the body of GET /stats/history).
export function throughputChart(history) {
  const points = rates(history.samples || []);
  const slots = Math.max(1, Math.round(history.window_seconds / history.interval_seconds));
  const shown = points.slice(-slots);
  const max = niceMax(Math.max(0, ...shown.map((p) => p.completed + p.failed)));
  const plotWidth = WIDTH - LEFT - 8;
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const slot = plotWidth / slots;
  const y = (value) => TOP + plotHeight - (value / max) * plotHeight;
  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    class: "chart",
    role: "img",
    "aria-label": "jobs completed and failed per interval",
  });
  for (const fraction of [0, 0.5, 1]) {
    const value = max * fraction;
    chart.append(
      svg("line", { x1: LEFT, x2: WIDTH - 8, y1: y(value), y2: y(value), class: "grid" }),
      svg("text", { x: LEFT - 6, y: y(value) + 4, class: "axis", "text-anchor": "end" }, value),
    );
  }
  // Bars fill from the right: the newest interval is the rightmost slot.
  const offset = slots - shown.length;
  shown.forEach((point, index) => {
    const x = LEFT + (offset + index) * slot + 1;
    const width = Math.max(1, slot - 2);
    const tip = `${point.time}: ${point.completed} completed, ${point.failed} failed`;
    const done = svg("rect", {
      x,
      width,
      y: y(point.completed),
      height: y(0) - y(point.completed),
      class: "bar completed",
    });
    done.append(svg("title", {}, tip));
    const failed = svg("rect", {
      x,
      width,
      y: y(point.completed + point.failed),
      height: y(point.completed) - y(point.completed + point.failed),
      class: "bar failed",
    });
    failed.append(svg("title", {}, tip));
    chart.append(done, failed);
  });
  if (shown.length) {
    // The window's ends: from the newest sample back to the start of the window.
    const last = shown[shown.length - 1];
    const start = new Date(Date.parse(last.time) - history.window_seconds * 1000).toISOString();
    chart.append(
      svg("text", { x: LEFT, y: HEIGHT - 6, class: "axis" }, clock(start)),
      svg(
        "text",
        { x: WIDTH - 8, y: HEIGHT - 6, class: "axis", "text-anchor": "end" },
        clock(last.time),
      ),
    );
  } else {
    chart.append(
      svg(
        "text",
        { x: LEFT + plotWidth / 2, y: TOP + plotHeight / 2, class: "axis", "text-anchor": "middle" },
        "collecting: a sample every " + history.interval_seconds + " s",
      ),
    );
  }
  const total = shown.reduce(
    (sum, p) => ({ completed: sum.completed + p.completed, failed: sum.failed + p.failed }),
    { completed: 0, failed: 0 },
  );
  const minutes = Math.round(history.window_seconds / 60);
  const legend = el(
    "p",
    { class: "legend" },
    el("span", { class: "key completed" }),
    ` completed ${total.completed}  `,
    el("span", { class: "key failed" }),
    ` failed ${total.failed}`,
    ` — the last ${minutes} min, per ${history.interval_seconds} s`,
  );
  return el("figure", { class: "chart-box" }, chart, legend);
}
