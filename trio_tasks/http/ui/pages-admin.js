// The failed jobs (retry one, or all matching: POST /jobs/{id}/retry, POST /jobs/retry) and the
// schedules (GET /schedules, pause and resume).

import { api } from "./api.js";
import { el, fill, jobLink, when } from "./dom.js";
import { MAX_LISTED, PAGE_SIZE, failure, notice, throttle } from "./common.js";

// -- failed jobs -----------------------------------------------------------------------------

function failedRow(job, retry) {
  const button = el("button", { type: "button", class: "retry-one" }, "Retry");
  button.addEventListener("click", () => retry(job.id, button));
  return el(
    "tr",
    { dataset: { job: job.id } },
    el("td", {}, jobLink(job.id)),
    el("td", { class: "type" }, job.type),
    el("td", {}, job.error ? el("span", {}, el("strong", {}, job.error.type), ": ", job.error.message) : "—"),
    el("td", {}, `${job.attempts}/${job.max_attempts}`),
    el("td", {}, when(job.completed_at)),
    el("td", {}, button),
  );
}

export function failedPage(main, params) {
  const type = params.get("type") || "";
  const form = el(
    "form",
    { class: "filters", id: "failed-filters" },
    el("input", { name: "type", placeholder: "type", value: type, "aria-label": "type" }),
    el("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = String(new FormData(form).get("type") || "").trim();
    window.location.hash = "#/failed" + (value ? "?type=" + encodeURIComponent(value) : "");
  });
  const retryAll = el("button", { type: "button", id: "retry-all" }, "Retry all matching");
  const list = el("section", { id: "failed-list" }, el("p", { class: "muted" }, "loading…"));
  fill(main, el("h1", {}, "Failed jobs"), form, el("div", { class: "actions" }, retryAll), list);
  let stopped = false;
  let tbody = null;

  async function retryOne(id, button) {
    button.disabled = true;
    try {
      await api("POST", "/jobs/" + encodeURIComponent(id) + "/retry");
      notice(`Job ${id} queued again.`, "ok");
      const row = tbody && [...tbody.rows].find((r) => r.dataset.job === id);
      if (row) row.remove();
    } catch (error) {
      button.disabled = false;
      notice(error.message, "error");
    }
  }

  // Events that arrive while the list is read change the old table: the list is read again.
  let loading = false;
  let missed = false;

  async function load() {
    loading = true;
    missed = false;
    try {
      const listed = await api("GET", "/jobs", { status: "failed", type, limit: Math.min(MAX_LISTED, PAGE_SIZE * 4) });
      if (stopped) return;
      const table = el(
        "table",
        { class: "list", id: "failed" },
        el("thead", {}, el("tr", {}, ["id", "type", "error", "attempts", "failed", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, listed.jobs.map((job) => failedRow(job, retryOne))),
      );
      tbody = table.tBodies[0];
      fill(list, listed.jobs.length ? null : el("p", { class: "muted" }, "No failed jobs."), table);
    } catch (error) {
      if (!stopped) failure(list, error);
    } finally {
      loading = false;
      if (missed && !stopped) reload();
    }
  }

  retryAll.addEventListener("click", async () => {
    retryAll.disabled = true;
    try {
      const answer = await api("POST", "/jobs/retry", { type });
      notice(
        `${answer.requeued} job(s) queued again` + (answer.more ? " — more remain: retry again." : "."),
        "ok",
      );
      await load();
    } catch (error) {
      notice(error.message, "error");
    } finally {
      retryAll.disabled = false;
    }
  });

  const reload = throttle(load, 5000);
  load();
  return {
    onEvent(name, data) {
      if (loading) missed = true;
      if (name === "skipped") {
        reload(); // changes the stream left out (a busy node): read the list again
        return;
      }
      if (name !== "state" || !tbody || !data || typeof data !== "object") return;
      const row = [...tbody.rows].find((r) => r.dataset.job === data.id);
      if (data.status === "failed" && (!type || data.type === type)) {
        if (row) row.replaceWith(failedRow(data, retryOne));
        else tbody.prepend(failedRow(data, retryOne));
      } else if (row) {
        row.remove();
      }
    },
    stop() {
      stopped = true;
      reload.cancel();
    },
  };
}

// -- schedules -------------------------------------------------------------------------------

export function schedulesPage(main) {
  const list = el("section", { id: "schedule-list" }, el("p", { class: "muted" }, "loading…"));
  fill(main, el("h1", {}, "Schedules"), list);
  let stopped = false;

  function row(schedule) {
    const paused = schedule.paused;
    const button = el("button", { type: "button", class: "toggle" }, paused ? "Resume" : "Pause");
    const tr = el(
      "tr",
      { dataset: { schedule: schedule.name, paused: String(paused) } },
      el("td", { class: "mono" }, schedule.name),
      el("td", { class: "type" }, schedule.job_type),
      el("td", { class: "mono" }, schedule.expression),
      el("td", {}, schedule.timezone),
      el("td", {}, schedule.priority),
      el("td", {}, paused ? el("span", { class: "badge cancelled" }, "paused") : el("span", { class: "badge running" }, "active")),
      el("td", {}, paused ? "—" : when(schedule.next_run)),
      el("td", {}, when(schedule.last_run)),
      el("td", {}, schedule.last_job_id ? jobLink(schedule.last_job_id) : "—"),
      el("td", {}, button),
    );
    button.addEventListener("click", async () => {
      button.disabled = true;
      const action = paused ? "resume" : "pause";
      try {
        const answer = await api("POST", "/schedules/" + encodeURIComponent(schedule.name) + "/" + action);
        tr.replaceWith(row(answer));
        notice(`Schedule ${schedule.name} ${paused ? "resumed" : "paused"}.`, "ok");
      } catch (error) {
        button.disabled = false;
        notice(error.message, "error");
      }
    });
    return tr;
  }

  async function load() {
    try {
      const answer = await api("GET", "/schedules");
      if (stopped) return;
      if (!answer.schedules.length) {
        fill(list, el("p", { class: "muted" }, "No schedules (see docs/scheduling.md)."));
        return;
      }
      fill(
        list,
        el(
          "table",
          { class: "list", id: "schedules" },
          el(
            "thead",
            {},
            el(
              "tr",
              {},
              ["name", "job type", "when", "timezone", "priority", "state", "next run", "last run", "last job", ""].map(
                (h) => el("th", {}, h),
              ),
            ),
          ),
          el("tbody", {}, answer.schedules.map(row)),
        ),
      );
    } catch (error) {
      if (!stopped) failure(list, error);
    }
  }

  // A schedule's tick shows as a job's state event: read the list again then.
  const soon = throttle(load, 2000);
  load();
  return {
    onEvent: () => soon(),
    stop() {
      stopped = true;
      soon.cancel();
    },
  };
}
