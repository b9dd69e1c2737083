// What the pages share: the API's vocabulary, notices, progress values, throttling.

import { el, fill, pretty } from "./dom.js";

export const STATUSES = ["pending", "scheduled", "running", "completed", "failed", "cancelled"];
export const FINAL = ["completed", "failed", "cancelled"];
export const PRIORITIES = ["urgent", "high", "normal", "low"];
// Rows per page of the job tables; GET /jobs lists at most MAX_LISTED of the newest jobs.
export const PAGE_SIZE = 50;
export const MAX_LISTED = 1000;

let noticeTimer = null;

// A short message at the bottom of the page (the outcome of a button), gone after a while.
export function notice(text, kind) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.dataset.kind = kind || "info";
  box.hidden = false;
  if (noticeTimer) window.clearTimeout(noticeTimer);
  noticeTimer = window.setTimeout(() => {
    box.hidden = true;
  }, 6000);
}

// An error shown in place of a page's content.
export function failure(node, error) {
  fill(node, el("p", { class: "error" }, error && error.message ? error.message : String(error)));
}

// A job's progress (any JSON value) as a fraction from 0 to 1, when it reads as one:
// 0.42, 42 (percent), {"done": 3, "total": 10}, {"current": 3, "total": 10}.
export function fraction(value) {
  if (typeof value === "number" && Number.isFinite(value)) {
    if (value >= 0 && value <= 1) return value;
    if (value > 1 && value <= 100) return value / 100;
    return null;
  }
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const total = Number(value.total);
    const done = Number(value.done ?? value.current ?? value.completed);
    if (Number.isFinite(total) && total > 0 && Number.isFinite(done)) {
      return Math.min(1, Math.max(0, done / total));
    }
  }
  return null;
}

// A progress bar with its value as text; `null` progress shows a dash.
export function progressView(value) {
  if (value === null || value === undefined) return el("span", { class: "muted" }, "—");
  const part = fraction(value);
  const label = part === null ? pretty(value) : Math.round(part * 100) + "%";
  return el(
    "span",
    { class: "progress" },
    part === null ? null : el("progress", { max: "1", value: String(part) }),
    el("span", { class: "progress-label" }, label),
  );
}

// Call `fn` at most once per `ms`, the last call winning (for refreshes driven by events).
export function throttle(fn, ms) {
  let timer = null;
  let again = false;
  const run = () => {
    timer = null;
    if (again) {
      again = false;
      fn();
      timer = window.setTimeout(run, ms);
    }
  };
  const call = () => {
    if (timer) {
      again = true;
      return;
    }
    fn();
    timer = window.setTimeout(run, ms);
  };
  call.cancel = () => {
    if (timer) window.clearTimeout(timer);
    timer = null;
    again = false;
  };
  return call;
}

// A <select> of `values` with an "any" first choice.
export function choice(name, values, selected, anyLabel) {
  return el(
    "select",
    { name, "aria-label": name },
    el("option", { value: "" }, anyLabel || "any " + name),
    values.map((value) => el("option", { value, selected: value === selected }, value)),
  );
}
