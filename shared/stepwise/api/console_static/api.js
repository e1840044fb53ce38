// The API client of the console: the key lives in sessionStorage (gone when the tab closes).
const KEY = "stepwise.key";
// The API's root is the folder above this module (<root>/console/api.js): "/" under `stepwise serve`,
// "/<stage>/" behind API Gateway. Every request is relative to it, so the same files work on both.
const ROOT = new URL("..", import.meta.url);
const at = (path) => new URL(path.replace(/^\//, ""), ROOT);

export const getKey = () => sessionStorage.getItem(KEY);
export const setKey = (k) => sessionStorage.setItem(KEY, k.trim());
export const forgetKey = () => sessionStorage.removeItem(KEY);

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code;
    this.details = e.details || [];
  }
}

function headers(extra) {
  // API keys and JWTs both travel as a bearer token (x-api-key works too)
  return { authorization: `Bearer ${getKey() || ""}`, ...extra };
}

export async function api(method, path, body) {
  const res = await fetch(at(path), {
    method,
    headers: headers(body === undefined ? {} : { "content-type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

function parseFrame(frame) {
  const out = { id: null, event: "message", data: "" };
  for (const line of frame.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "id") out.id = Number(value);
    else if (field === "event") out.event = value;
    else if (field === "data") out.data += value;
  }
  return out;
}

/** Follow GET /runs/{id}/stream with fetch (EventSource cannot send the key header); reconnects
 *  with ?after=<last seen id> until the server sends `end` (behind API Gateway every response is the
 *  backlog so far, so the loop is the live view there). onEvent(type, data, id); onOpen() on each connection. */
export async function follow(runId, onEvent, signal, from = null, onOpen = () => {}) {
  let after = from;
  for (;;) {
    const q = after === null ? "" : `?after=${after}`;
    let res;
    try {
      res = await fetch(at(`/runs/${encodeURIComponent(runId)}/stream${q}`), { headers: headers(), signal });
    } catch (err) {
      if (signal && signal.aborted) return;
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
    onOpen();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (err) {
        if (signal && signal.aborted) return;
        break;
      }
      if (chunk.done) break;
      buf += chunk.value;
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const frame = parseFrame(buf.slice(0, cut));
        buf = buf.slice(cut + 2);
        if (!frame.data) continue;
        if (frame.id !== null) after = frame.id;
        const data = JSON.parse(frame.data);
        onEvent(frame.event, data, frame.id);
        if (frame.event === "end") return;
      }
    }
    if (signal && signal.aborted) return;
    window.consoleMetrics && window.consoleMetrics.reconnects.push(after);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Every event of a thread (all its runs; a fork starts with `forked`), its runs and fork origin. */
export async function threadEvents(threadId) {
  let after = 0;
  let first = null;
  const events = [];
  for (;;) {
    const page = await api("GET", `/threads/${encodeURIComponent(threadId)}/events?after=${after}&limit=1000`);
    first = first || page;
    events.push(...page.events);
    if (page.next_after === null || page.next_after === undefined) break;
    after = page.next_after;
  }
  return { events, runs: first.runs, forked_from: first.forked_from };
}
