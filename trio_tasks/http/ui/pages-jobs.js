// The jobs table (filters, id search, pages; rows added and updated by events) and one job's
// page (its record, a progress bar fed by GET /jobs/{id}/events, cancel and retry).

import { ApiError, LiveStream, api } from "./api.js";
import { badge, el, fill, jobLink, pretty, when } from "./dom.js";
import {
  FINAL,
  MAX_LISTED,
  PAGE_SIZE,
  PRIORITIES,
  STATUSES,
  choice,
  failure,
  notice,
  progressView,
  throttle,
} from "./common.js";

// -- the table -------------------------------------------------------------------------------

function jobRow(job) {
  return el(
    "tr",
    { dataset: { job: job.id, status: job.status } },
    el("td", {}, jobLink(job.id)),
    el("td", { class: "type" }, job.type),
    el("td", {}, job.priority),
    el("td", { class: "status" }, badge(job.status)),
    el("td", {}, `${job.attempts}/${job.max_attempts}`),
    el("td", { class: "progress-cell" }, progressView(job.progress)),
    el("td", {}, when(job.created_at)),
  );
}

function jobTable(jobs) {
  return el(
    "table",
    { class: "list", id: "jobs" },
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ["id", "type", "priority", "status", "attempts", "progress", "created"].map((h) =>
          el("th", {}, h),
        ),
      ),
    ),
    el("tbody", {}, jobs.map(jobRow)),
  );
}

function hashFor(filters) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(filters)) if (value) search.set(name, value);
  const text = search.toString();
  return "#/jobs" + (text ? "?" + text : "");
}

function filterForm(filters) {
  const form = el(
    "form",
    { class: "filters", id: "job-filters" },
    choice("status", STATUSES, filters.status),
    el("input", { name: "type", placeholder: "type", value: filters.type, "aria-label": "type" }),
    choice("priority", PRIORITIES, filters.priority),
    el("input", { name: "q", placeholder: "search by id", value: filters.q, "aria-label": "id" }),
    el("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    window.location.hash = hashFor({
      status: data.get("status"),
      type: String(data.get("type") || "").trim(),
      priority: data.get("priority"),
      q: String(data.get("q") || "").trim(),
    });
  });
  for (const select of form.querySelectorAll("select")) {
    select.addEventListener("change", () => form.requestSubmit());
  }
  return form;
}

export function jobsPage(main, params) {
  const filters = {
    status: params.get("status") || "",
    type: params.get("type") || "",
    priority: params.get("priority") || "",
    q: params.get("q") || "",
  };
  const page = Math.max(0, Number.parseInt(params.get("page") || "0", 10) || 0);
  const body = el("section", { id: "job-list" }, el("p", { class: "muted" }, "loading…"));
  fill(main, el("h1", {}, "Jobs"), filterForm(filters), body);
  let stopped = false;
  let tbody = null;

  const matches = (job) =>
    (!filters.status || job.status === filters.status) &&
    (!filters.type || job.type === filters.type) &&
    (!filters.priority || job.priority === filters.priority);

  async function search() {
    try {
      const job = await api("GET", "/jobs/" + encodeURIComponent(filters.q));
      return { jobs: [job], note: null };
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
    }
    const listed = await api("GET", "/jobs", { status: filters.status, type: filters.type, limit: MAX_LISTED });
    const found = listed.jobs.filter((job) => matches(job) && job.id.includes(filters.q));
    return { jobs: found, note: `No job has the id “${filters.q}”; the recent jobs whose id contains it:` };
  }

  // Events that arrive while the list is read change the old table: the list is read again.
  let loading = false;
  let missed = false;

  async function load() {
    loading = true;
    missed = false;
    try {
      let jobs;
      let more = false;
      let note = null;
      if (filters.q) {
        ({ jobs, note } = await search());
      } else {
        // GET /jobs has no offset: ask for the pages up to this one (plus one row, to know
        // whether an older page exists), and filter priority here.
        const wanted = filters.priority ? MAX_LISTED : Math.min(MAX_LISTED, (page + 1) * PAGE_SIZE + 1);
        const listed = await api("GET", "/jobs", { status: filters.status, type: filters.type, limit: wanted });
        const all = listed.jobs.filter(matches);
        jobs = all.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
        more = all.length > (page + 1) * PAGE_SIZE;
        if (!more && listed.count >= MAX_LISTED) note = `Only the ${MAX_LISTED} newest jobs are listed.`;
      }
      if (stopped) return;
      const table = jobTable(jobs);
      tbody = table.tBodies[0];
      const pager = el(
        "p",
        { class: "pager" },
        page > 0 ? el("a", { href: hashFor({ ...filters, page: String(page - 1) }), id: "newer" }, "← newer") : null,
        ` page ${page + 1} `,
        more ? el("a", { href: hashFor({ ...filters, page: String(page + 1) }), id: "older" }, "older →") : null,
      );
      fill(
        body,
        note ? el("p", { class: "hint" }, note) : null,
        jobs.length ? null : el("p", { class: "muted", id: "no-jobs" }, "No jobs match."),
        table,
        filters.q ? null : pager,
      );
    } catch (error) {
      if (!stopped) failure(body, error);
    } finally {
      loading = false;
      if (missed && !stopped) reload();
    }
  }

  // Changes the stream left out (a busy node): read the list again, at most every 5 s (a
  // hundred open pages must not load a busy node with lists).
  const reload = throttle(load, 5000);

  function onEvent(name, data) {
    if (loading) missed = true;
    if (name === "skipped") {
      reload();
      return;
    }
    if (!tbody || !data || typeof data !== "object") return;
    const row = [...tbody.rows].find((r) => r.dataset.job === data.job_id || r.dataset.job === data.id);
    if (name === "state") {
      if (row) {
        row.replaceWith(jobRow(data));
      } else if (page === 0 && !filters.q && matches(data)) {
        // A job new to this page: newest first, so on top.
        tbody.prepend(jobRow(data));
        while (tbody.rows.length > PAGE_SIZE) tbody.rows[tbody.rows.length - 1].remove();
        const empty = document.getElementById("no-jobs");
        if (empty) empty.remove();
      }
    } else if (name === "progress" && row) {
      fill(row.querySelector(".progress-cell"), progressView(data.progress));
    }
  }

  load();
  return {
    onEvent,
    stop() {
      stopped = true;
      reload.cancel();
    },
  };
}

// -- one job ---------------------------------------------------------------------------------

function field(label, value) {
  return [el("dt", {}, label), el("dd", {}, value ?? el("span", { class: "muted" }, "—"))];
}

function errorsTable(errors) {
  return el(
    "table",
    { class: "list", id: "earlier-errors" },
    el("thead", {}, el("tr", {}, ["attempt", "time", "type", "message"].map((h) => el("th", {}, h)))),
    el(
      "tbody",
      {},
      errors.map((entry) =>
        el(
          "tr",
          {},
          el("td", {}, entry && entry.attempt),
          el("td", {}, when(entry && entry.time)),
          el("td", { class: "mono" }, entry && entry.type),
          el("td", {}, el("pre", {}, entry && entry.message)),
        ),
      ),
    ),
  );
}

export function jobPage(main, id) {
  const cancel = el("button", { id: "cancel", type: "button", disabled: true }, "Cancel");
  const retry = el("button", { id: "retry", type: "button", disabled: true }, "Retry");
  const status = el("span", { id: "job-status" });
  const progress = el("div", { id: "job-progress" });
  const details = el("section", { id: "job-details" }, el("p", { class: "muted" }, "loading…"));
  fill(
    main,
    el("h1", {}, "Job ", el("span", { class: "mono", id: "job-id" }, id)),
    el("div", { class: "actions" }, status, cancel, retry),
    el("h2", {}, "Progress"),
    progress,
    details,
  );
  let stopped = false;
  let stream = null;
  let job = null;

  function render(record) {
    job = record;
    fill(status, badge(record.status));
    fill(progress, progressView(record.progress));
    cancel.disabled = FINAL.includes(record.status);
    retry.disabled = !(record.status === "failed" || record.status === "cancelled");
    const error = record.error;
    fill(
      details,
      el(
        "dl",
        { class: "fields" },
        field("type", record.type),
        field("priority", record.priority),
        field("attempts", `${record.attempts} of ${record.max_attempts}`),
        field("timeout", record.timeout ? record.timeout + " s" : null),
        field("created", when(record.created_at)),
        field("run at", record.run_at ? when(record.run_at) : null),
        field("started", record.started_at ? when(record.started_at) : null),
        field("completed", record.completed_at ? when(record.completed_at) : null),
        field("worker", record.worker_id),
      ),
      el("h2", {}, "Payload"),
      el("pre", { id: "payload" }, pretty(record.payload)),
      record.status === "completed" ? [el("h2", {}, "Result"), el("pre", { id: "result" }, pretty(record.result))] : null,
      error
        ? [
            el("h2", {}, "Error"),
            el("p", { class: "error", id: "error" }, el("strong", {}, error.type || "Error"), ": ", error.message),
            error.traceback ? el("pre", { class: "traceback" }, error.traceback) : null,
          ]
        : null,
      record.errors && record.errors.length ? [el("h2", {}, "Earlier errors"), errorsTable(record.errors)] : null,
    );
  }

  function follow() {
    if (stream) stream.stop();
    stream = new LiveStream("/jobs/" + encodeURIComponent(id) + "/events", {}, (name, data) => {
      if (stopped) return;
      if (name === "state") render(data);
      else if (name === "progress" && job) {
        job = { ...job, progress: data.progress };
        fill(progress, progressView(data.progress));
      } else if (name === "end") stream.stop();
    }).start();
  }

  async function act(method, path, done) {
    try {
      const answer = await api(method, path);
      if (stopped) return;
      // A running job answers "cancelling" as it was: its stream brings the cancelled state
      // (perhaps already has), which this stale record must not overwrite.
      if (answer.status !== "cancelling") render(answer.job);
      notice(done(answer), "ok");
      return answer;
    } catch (error) {
      notice(error.message, "error");
      return null;
    }
  }

  cancel.addEventListener("click", () =>
    act("DELETE", "/jobs/" + encodeURIComponent(id), (a) => `Job ${a.status}.`),
  );
  retry.addEventListener("click", async () => {
    const answer = await act("POST", "/jobs/" + encodeURIComponent(id) + "/retry", () => "Job queued again.");
    // Its stream ended with the final state: follow the new run.
    if (answer && !stopped) follow();
  });

  (async () => {
    try {
      render(await api("GET", "/jobs/" + encodeURIComponent(id)));
    } catch (error) {
      if (!stopped) failure(details, error);
      return;
    }
    if (!stopped) follow();
  })();

  return {
    stop() {
      stopped = true;
      if (stream) stream.stop();
    },
  };
}
