// The overview: jobs by status and by priority, the last 15 minutes as a chart, queue wait,
// and the nodes with their workers. GET /stats and GET /workers are read again when events
// arrive (at most twice a second); the chart's history every sampling interval.

import { api } from "./api.js";
import { throughputChart } from "./chart.js";
import { el, fill, jobLink, seconds, when } from "./dom.js";
import { PRIORITIES, failure, throttle } from "./common.js";

function card(label, value, href, kind) {
  return el(
    "a",
    { class: "card" + (kind ? " " + kind : ""), href, dataset: { card: label } },
    el("span", { class: "card-value" }, value),
    el("span", { class: "card-label" }, label),
  );
}

function statusCards(stats) {
  const link = (status) => "#/jobs?status=" + status;
  return [
    el("h2", {}, "Jobs by status"),
    el(
      "div",
      { class: "cards", id: "by-status" },
      card("pending", stats.queue_size, link("pending"), "pending"),
      card("scheduled", stats.jobs_scheduled, link("scheduled"), "scheduled"),
      card("running", stats.jobs_running, link("running"), "running"),
      card("completed", stats.jobs_completed, link("completed"), "completed"),
      card("failed", stats.jobs_failed, "#/failed", "failed"),
      card("cancelled", stats.jobs_cancelled, link("cancelled"), "cancelled"),
    ),
    el(
      "p",
      { class: "hint" },
      `Pending, scheduled and running are now; the others are totals${
        stats.cluster === "available" ? " of the cluster" : " since this node started"
      } (${stats.jobs_submitted} submitted, ${stats.jobs_retried} retried).`,
    ),
  ];
}

function priorityCards(stats) {
  const sizes = stats.queue_sizes || {};
  return [
    el("h2", {}, "Pending by priority"),
    el(
      "div",
      { class: "cards", id: "by-priority" },
      PRIORITIES.map((p) => card(p, sizes[p] ?? 0, "#/jobs?status=pending&priority=" + p)),
    ),
  ];
}

function latency(stats) {
  const wait = stats.queue_wait_seconds || {};
  const run = stats.run_time_seconds || {};
  const row = (label, figures) =>
    el(
      "tr",
      {},
      el("th", {}, label),
      el("td", {}, seconds(figures.p50)),
      el("td", {}, seconds(figures.p99)),
      el("td", {}, seconds(figures.max)),
      el("td", {}, figures.count ?? 0),
    );
  return [
    el("h2", {}, "Latency (this node, recent jobs)"),
    el(
      "table",
      { class: "figures", id: "latency" },
      el(
        "thead",
        {},
        el("tr", {}, el("th"), el("th", {}, "p50"), el("th", {}, "p99"), el("th", {}, "max"), el("th", {}, "jobs")),
      ),
      el("tbody", {}, row("queue wait", wait), row("run time", run)),
    ),
  ];
}

function workersTable(stats, workers) {
  const nodes = stats.nodes || [{ id: workers.node || "this node" }];
  const rows = [];
  for (const node of nodes) {
    const mine = workers.details.filter((w) => (w.node ?? nodes[0].id) === node.id);
    rows.push(
      el(
        "tr",
        { class: "node-row" },
        el(
          "th",
          { colspan: "5" },
          "node ",
          el("span", { class: "mono" }, node.id),
          ` — ${mine.filter((w) => w.state === "busy").length}/${mine.length} busy`,
          node.seen_at ? [", seen ", when(node.seen_at)] : null,
        ),
      ),
    );
    for (const worker of mine) {
      rows.push(
        el(
          "tr",
          { dataset: { worker: String(worker.id) } },
          el("td", { class: "mono" }, worker.id),
          el("td", {}, el("span", { class: "state " + (worker.state === "busy" ? "busy" : "idle") }, worker.state)),
          el("td", {}, worker.current_job ? jobLink(worker.current_job) : el("span", { class: "muted" }, "—")),
          el("td", {}, worker.processed),
          el("td", {}, worker.failed),
        ),
      );
    }
  }
  return [
    el("h2", {}, `Nodes and workers (${workers.busy}/${workers.workers} busy)`),
    el(
      "table",
      { class: "list", id: "workers" },
      el(
        "thead",
        {},
        el("tr", {}, ["worker", "state", "running job", "processed", "failed"].map((h) => el("th", {}, h))),
      ),
      el("tbody", {}, rows),
    ),
  ];
}

export function overviewPage(main) {
  const figures = el("section", { id: "figures" }, el("p", { class: "muted" }, "loading…"));
  const chart = el("section", { id: "history" });
  const people = el("section", { id: "nodes" });
  fill(
    main,
    el("h1", {}, "Overview"),
    figures,
    el("h2", {}, "Throughput and failures"),
    chart,
    people,
  );
  let stopped = false;

  async function refresh() {
    try {
      const [stats, workers] = await Promise.all([api("GET", "/stats"), api("GET", "/workers")]);
      if (stopped) return;
      fill(figures, statusCards(stats), priorityCards(stats), latency(stats));
      fill(people, workersTable(stats, workers));
    } catch (error) {
      if (!stopped) failure(figures, error);
    }
  }

  async function refreshHistory() {
    try {
      const history = await api("GET", "/stats/history");
      if (!stopped) fill(chart, throughputChart(history));
    } catch (error) {
      if (!stopped) failure(chart, error);
    }
  }

  const soon = throttle(refresh, 500);
  refresh();
  refreshHistory();
  // The history changes once per sampling interval; workers report without events too.
  const timer = window.setInterval(() => {
    refreshHistory();
    soon();
  }, 10000);
  return {
    onEvent: () => soon(),
    stop() {
      stopped = true;
      soon.cancel();
      window.clearInterval(timer);
    },
  };
}
