// Talking to the HTTP API: JSON calls and Server-Sent Events, with the bearer token.
//
// EventSource cannot send an Authorization header, so event streams are read with fetch()
// and a ReadableStream reader, and their lines parsed here. The token lives in
// sessionStorage only: it is gone when the browser session ends.

const TOKEN_KEY = "trio-tasks-token";

// The API is served by the same app, at the root of the origin the page came from.
const BASE = window.location.pathname.replace(/\/ui(\/.*)?$/, "");

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let tokenPrompt = null; // the pending prompt, shared by every request that got a 401
let askToken = null; // set by the page: (reason) => Promise<string>

export function onTokenNeeded(callback) {
  askToken = callback;
}

export function token() {
  return window.sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  window.sessionStorage.setItem(TOKEN_KEY, value);
}

function headers() {
  const sent = { Accept: "application/json" };
  const value = token();
  if (value) sent.Authorization = "Bearer " + value;
  return sent;
}

// Ask for a token once, however many requests are waiting for one.
async function needToken(response) {
  let reason = "This server needs an API token (API_TOKEN).";
  try {
    const body = await response.json();
    if (body && typeof body.error === "string" && token()) reason = "Token refused: " + body.error;
  } catch {
    // Not JSON: keep the generic reason.
  }
  if (!tokenPrompt) {
    tokenPrompt = askToken(reason).then((value) => {
      setToken(value);
      tokenPrompt = null;
    });
  }
  return tokenPrompt;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? "?" + text : "";
}

// One JSON call. A 401 asks for a token and tries again; other errors throw ApiError.
export async function api(method, path, params) {
  for (;;) {
    const response = await fetch(BASE + path + query(params), {
      method,
      headers: headers(),
      cache: "no-store",
    });
    if (response.status === 401) {
      await needToken(response);
      continue;
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const message = body && typeof body.error === "string" ? body.error : response.statusText;
      throw new ApiError(response.status, message);
    }
    return body;
  }
}

// Read the event stream at `path` until it ends or `signal` aborts it, calling
// onEvent(name, data) for each event (data decoded from JSON). Resolves when the server
// ends the stream; rejects on a network error or an error answer.
export async function readEvents(path, params, onEvent, signal) {
  let response;
  for (;;) {
    response = await fetch(BASE + path + query(params), {
      headers: { ...headers(), Accept: "text/event-stream" },
      cache: "no-store",
      signal,
    });
    if (response.status !== 401) break;
    await needToken(response);
  }
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).error || message;
    } catch {
      // keep the status text
    }
    throw new ApiError(response.status, message);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new EventParser(onEvent);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      parser.feed(value);
    }
  } finally {
    reader.releaseLock();
  }
}

// The text/event-stream format: "event:" and "data:" lines, a blank line ends an event,
// lines starting with ":" are comments (the server's keep-alives).
export class EventParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.name = "";
    this.data = [];
  }

  feed(text) {
    this.buffer += text;
    let end;
    while ((end = this.buffer.indexOf("\n")) >= 0) {
      let line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      this.line(line);
    }
  }

  line(line) {
    if (line === "") {
      if (this.data.length) {
        let data = this.data.join("\n");
        try {
          data = JSON.parse(data);
        } catch {
          // Not JSON: hand over the text.
        }
        this.onEvent(this.name || "message", data);
      }
      this.name = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.name = value;
    else if (field === "data") this.data.push(value);
  }
}

// A stream that reconnects: after it ends or fails, wait (1 s, doubling up to 30 s; back to
// 1 s once a stream delivered an event) and connect again, until stop().
export class LiveStream {
  constructor(path, params, onEvent, onState) {
    this.path = path;
    this.params = params;
    this.onEvent = onEvent;
    this.onState = onState || (() => {});
    this.controller = null;
    this.stopped = false;
    this.delay = 1000;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
    return this;
  }

  stop() {
    this.stopped = true;
    if (this.timer) window.clearTimeout(this.timer);
    this.timer = null;
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  async connect() {
    if (this.stopped) return;
    const controller = new AbortController();
    this.controller = controller;
    this.onState("connecting");
    let reason = "ended";
    try {
      await readEvents(
        this.path,
        this.params,
        (name, data) => {
          this.delay = 1000;
          this.onState("live");
          this.onEvent(name, data);
        },
        controller.signal,
      );
    } catch (error) {
      if (controller.signal.aborted) return;
      reason = error && error.message ? error.message : "error";
    }
    if (this.stopped || controller.signal.aborted) return;
    const delay = this.delay;
    this.delay = Math.min(this.delay * 2, 30000);
    this.onState("retrying", { delay, reason });
    this.timer = window.setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }
}
