// Building the page from data that may be hostile (job types, payloads, errors): every value
// goes in as a text node or an attribute value, never parsed as markup.

const SVG = "http://www.w3.org/2000/svg";

function build(node, props, children) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

// An HTML element: el("td", {class: "id"}, "text", otherNode).
export function el(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

// An SVG element, same form.
export function svg(tag, props, ...children) {
  return build(document.createElementNS(SVG, tag), props, children);
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Replace every child of `node`.
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

// JSON as indented text, for <pre>.
export function pretty(value) {
  if (value === undefined) return "";
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

// A link to one job's page; the id is URL-encoded, and shown as text.
export function jobLink(id) {
  return el("a", { href: "#/jobs/" + encodeURIComponent(id), class: "mono" }, id);
}

// "3 s ago", "in 2 min" from an RFC 3339 time; the time itself in the title.
export function when(time) {
  if (!time) return el("span", { class: "muted" }, "—");
  const moment = Date.parse(time);
  if (Number.isNaN(moment)) return el("span", {}, String(time));
  const seconds = Math.round((moment - Date.now()) / 1000);
  const size = Math.abs(seconds);
  let text;
  if (size < 60) text = size + " s";
  else if (size < 3600) text = Math.round(size / 60) + " min";
  else if (size < 86400) text = Math.round(size / 3600) + " h";
  else text = Math.round(size / 86400) + " d";
  return el("time", { datetime: time, title: time }, seconds > 0 ? "in " + text : text + " ago");
}

// Seconds, shown with a unit that suits them.
export function seconds(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  if (value < 0.001) return (value * 1e6).toFixed(0) + " µs";
  if (value < 1) return (value * 1000).toFixed(1) + " ms";
  if (value < 120) return value.toFixed(2) + " s";
  return (value / 60).toFixed(1) + " min";
}

// A job status as a badge (the class is chosen from a fixed list, never from the data).
const STATUSES = ["pending", "scheduled", "running", "completed", "failed", "cancelled"];
export function badge(status) {
  const known = STATUSES.includes(status) ? status : "unknown";
  return el("span", { class: "badge " + known, dataset: { status: String(status) } }, status);
}
