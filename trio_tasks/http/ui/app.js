// The dashboard: a single page with hash routes (#/, #/jobs, #/jobs/<id>, #/failed,
// #/schedules), kept up to date by the server's events (GET /events), never by reloading.
// docs/dashboard.md describes the pages.

import { LiveStream, onTokenNeeded } from "./api.js";
import { el, fill } from "./dom.js";
import { failedPage, schedulesPage } from "./pages-admin.js";
import { jobPage, jobsPage } from "./pages-jobs.js";
import { overviewPage } from "./pages-overview.js";

const main = document.getElementById("main");
const live = document.getElementById("live");
let current = null; // the page shown: { stop(), onEvent(name, data) }

// -- the token prompt ------------------------------------------------------------------------

const dialog = document.getElementById("token-dialog");
const form = document.getElementById("token-form");
const input = document.getElementById("token-input");
const reasonText = document.getElementById("token-reason");
let resolveToken = null;

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const value = input.value.trim();
  if (!value || !resolveToken) return;
  input.value = "";
  dialog.close();
  const resolve = resolveToken;
  resolveToken = null;
  resolve(value);
});
// Escape would close the dialog and leave every request waiting: keep it open.
dialog.addEventListener("cancel", (event) => event.preventDefault());

onTokenNeeded(
  (reason) =>
    new Promise((resolve) => {
      reasonText.textContent = reason;
      resolveToken = resolve;
      if (!dialog.open) dialog.showModal();
      input.focus();
    }),
);

// -- live events -----------------------------------------------------------------------------

const LIVE_TEXT = { connecting: "connecting…", live: "live", retrying: "reconnecting" };

const events = new LiveStream(
  "/events",
  {},
  (name, data) => {
    if (name === "hello") {
      live.title = data && data.node ? "live updates from node " + data.node : "live updates";
      return;
    }
    if (current && current.onEvent) current.onEvent(name, data);
  },
  (state, detail) => {
    live.dataset.state = state;
    live.textContent =
      state === "retrying"
        ? `reconnecting in ${Math.round(detail.delay / 1000)} s`
        : LIVE_TEXT[state] || state;
  },
);

// -- routing ---------------------------------------------------------------------------------

function notFound(path) {
  fill(main, el("h1", {}, "Not found"), el("p", {}, "No page ", el("code", {}, path), "."));
  return {};
}

function route() {
  if (current && current.stop) current.stop();
  current = null;
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [path, search] = hash.split("?", 2);
  const params = new URLSearchParams(search || "");
  let section;
  if (path === "/" || path === "") {
    section = "overview";
    current = overviewPage(main);
  } else if (path === "/jobs") {
    section = "jobs";
    current = jobsPage(main, params);
  } else if (path.startsWith("/jobs/")) {
    section = "jobs";
    let id;
    try {
      id = decodeURIComponent(path.slice("/jobs/".length));
    } catch {
      id = path.slice("/jobs/".length);
    }
    current = jobPage(main, id);
  } else if (path === "/failed") {
    section = "failed";
    current = failedPage(main, params);
  } else if (path === "/schedules") {
    section = "schedules";
    current = schedulesPage(main);
  } else {
    current = notFound(path);
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === section);
  }
}

window.addEventListener("hashchange", route);
route();
events.start();
