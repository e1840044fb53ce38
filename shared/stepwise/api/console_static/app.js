// The Stepwise console: hash routes #/ (runs), #/runs/<id> (a run, live), #/stats (agents).
import { api, ApiError, follow, forgetKey, getKey, setKey, threadEvents } from "./api.js";
import { draw, mark } from "./graph.js";
import { bars } from "./plots.js";

const main = document.getElementById("main");
const STATUSES = ["running", "waiting", "succeeded", "failed", "cancelled"];
// what tests and the docs' measurements read: event append (server ts) -> DOM updated (ms)
window.consoleMetrics = { liveLatencyMs: [], lastRender: null, reconnects: [] };
let leave = () => {};

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
const announce = (msg) => { document.getElementById("announce").textContent = msg; };
const badge = (status) => h("span", { class: `badge s-${status}`, "data-status": status }, status);
const when = (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "");
const secs = (s) => (s === null || s === undefined ? "" : s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`);
const usd = (v) => `$${v.toFixed(v < 0.01 ? 5 : 3)}`;
function problem(err) {
  const details = (err.details || []).map((d) => h("li", {}, d.message || `${d.field}: ${d.type}`));
  return h("div", { class: "error", role: "alert" }, err.message, details.length ? h("ul", {}, details) : null);
}

function page(title, ...children) {
  main.replaceChildren(h("h1", {}, title), ...children);
  document.title = `${title} · Stepwise console`;
}

// -- sign in -------------------------------------------------------------------------------------
function signIn(message) {
  const input = h("input", { id: "key", type: "password", autocomplete: "off", required: true, "aria-describedby": "key-help" });
  const form = h(
    "form",
    { class: "panel", onsubmit: async (ev) => {
      ev.preventDefault();
      setKey(input.value);
      try {
        await api("GET", "/runs?limit=1");
        route();
      } catch (err) {
        forgetKey();
        signIn(err instanceof ApiError && err.status === 401 ? "That key was refused: " + err.message : err.message);
      }
    } },
    h("label", { for: "key" }, h("span", {}, "API key"), input),
    h("p", { id: "key-help", class: "muted" }, "Create one with ", h("code", {}, "stepwise keys create --tenant default"),
      ". It is kept in this tab only (sessionStorage) and sent as a bearer token, like any API client."),
    h("button", { type: "submit" }, "Open the console"),
  );
  page("Sign in", message ? h("div", { class: "error", role: "alert" }, message) : "", form);
  input.focus();
}

// -- runs list ------------------------------------------------------------------------------------
const FILTERS = ["status", "agent", "since", "until", "min_cost", "max_cost", "tenant"];
const day = (d) => (d ? Date.parse(`${d}T00:00:00Z`) / 1000 : null); // a date field, as UTC midnight

async function runsView(params) {
  const limit = params.get("limit") || "100";
  const q = new URLSearchParams({ limit });
  for (const f of FILTERS) {
    const v = params.get(f);
    if (!v) continue;
    if (f === "since") q.set(f, day(v));
    else if (f === "until") q.set(f, day(v) + 86400); // through the end of that day
    else q.set(f, v);
  }
  if (params.get("cursor")) q.set("cursor", params.get("cursor"));
  const [list, agents] = await Promise.all([api("GET", `/runs?${q}`), api("GET", "/agents")]);
  const ctl = {};
  const go = () => {
    const p = new URLSearchParams();
    for (const f of FILTERS) if (ctl[f].value) p.set(f, ctl[f].value);
    if (limit !== "100") p.set("limit", limit);
    location.hash = `#/?${p}`;
  };
  const field = (f, label, control) => { ctl[f] = control; return h("label", { for: `f-${f}` }, h("span", {}, label), control); };
  const value = (f) => params.get(f) || "";
  const statusSel = h("select", { id: "f-status", onchange: go }, h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s, selected: s === value("status") }, s)));
  const agentSel = h("select", { id: "f-agent", onchange: go }, h("option", { value: "" }, "any"), list.agents.map((a) => h("option", { value: a, selected: a === value("agent") }, a)));
  const rows = list.runs.map((r) =>
    h("tr", { "data-run": r.run_id },
      h("td", {}, h("a", { href: `#/runs/${r.run_id}` }, r.run_id)),
      h("td", {}, r.agent),
      h("td", {}, badge(r.status)),
      h("td", { class: "hide-narrow" }, when(r.created_at)),
      h("td", { class: "num" }, secs(r.duration_s)),
      h("td", { class: "num hide-narrow" }, r.steps),
      h("td", { class: "num" }, r.cost_usd ? usd(r.cost_usd) : "–"),
      h("td", {}, r.waiting_node ? `waits at ${r.waiting_node}` : r.error || "")));
  const table = h("div", { class: "table-wrap" }, h("table", { id: "runs" },
    h("caption", { class: "sr-only" }, "Runs, newest first"),
    h("thead", {}, h("tr", {}, ["Run", "Agent", "Status"].map((t) => h("th", { scope: "col" }, t)), h("th", { scope: "col", class: "hide-narrow" }, "Started"),
      h("th", { scope: "col", class: "num" }, "Duration"), h("th", { scope: "col", class: "num hide-narrow" }, "Steps"), h("th", { scope: "col", class: "num" }, "Cost"), h("th", { scope: "col" }, "Note"))),
    h("tbody", {}, rows)));
  const older = list.next_cursor ? (() => { const p = new URLSearchParams(params); p.set("cursor", list.next_cursor); return h("a", { id: "older", href: `#/?${p}` }, "Older runs"); })() : null;
  const newest = params.get("cursor") ? (() => { const p = new URLSearchParams(params); p.delete("cursor"); return h("a", { id: "newest", href: `#/?${p}` }, "Newest runs"); })() : null;
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter runs", onsubmit: (ev) => { ev.preventDefault(); go(); } },
    h("div", { class: "row" },
      field("status", "Status", statusSel),
      field("agent", "Agent", agentSel),
      field("since", "From (UTC day)", h("input", { id: "f-since", type: "date", value: value("since") })),
      field("until", "To (UTC day)", h("input", { id: "f-until", type: "date", value: value("until") })),
      field("min_cost", "Min cost ($)", h("input", { id: "f-min_cost", type: "number", min: 0, step: "any", inputmode: "decimal", value: value("min_cost") })),
      field("max_cost", "Max cost ($)", h("input", { id: "f-max_cost", type: "number", min: 0, step: "any", inputmode: "decimal", value: value("max_cost") })),
      field("tenant", "Tenant (operators)", h("input", { id: "f-tenant", type: "text", size: 10, value: value("tenant"), autocomplete: "off" })),
      h("button", { type: "submit", id: "f-apply" }, "Apply")));
  page("Runs",
    startForm(agents.agents || []),
    filters,
    h("p", { class: "muted", id: "count" }, `${list.runs.length} run${list.runs.length === 1 ? "" : "s"}${list.next_cursor ? " on this page (older runs follow)" : ""}`),
    list.runs.length ? table : h("p", { class: "muted" }, "No runs match. Start one above, or register an agent with POST /agents (docs/console.md)."),
    h("p", { class: "pager" }, newest, newest && older ? " · " : "", older));
  window.consoleMetrics.lastRender = { view: "runs", rows: rows.length, at: performance.now() };
}

function startForm(agents) {
  if (!agents.length) return h("p", { class: "muted" }, "No agents registered yet: see docs/console.md to register one.");
  const sel = h("select", { id: "run-agent" }, agents.map((a) => h("option", { value: a.id || a.name || a.agent }, a.id || a.name || a.agent)));
  const input = h("textarea", { id: "run-input", rows: 2, cols: 40, spellcheck: "false" }, "{}");
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "panel", "aria-labelledby": "start-h", onsubmit: async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    let body;
    try { body = JSON.parse(input.value || "{}"); } catch (err) { out.append(h("div", { class: "error", role: "alert" }, `The input is not JSON: ${err.message}`)); return; }
    try {
      const run = await api("POST", `/agents/${encodeURIComponent(sel.value)}/execute`, { input: body, background: true });
      location.hash = `#/runs/${run.run_id}`;
    } catch (err) { out.append(problem(err)); }
  } },
  h("h2", { id: "start-h" }, "Start a run"),
  h("div", { class: "row" },
    h("label", { for: "run-agent" }, h("span", {}, "Agent"), sel),
    h("label", { for: "run-input" }, h("span", {}, "Input (JSON)"), input),
    h("button", { type: "submit", id: "run-start" }, "Run")), out);
  return form;
}

// -- a run -----------------------------------------------------------------------------------------
function fold(events) {
  // per node: status, visits, ms, tokens, cost, error/fix
  const nodes = new Map();
  const get = (n) => nodes.get(n) || nodes.set(n, { node: n, status: "idle", visits: 0, ms: 0, tokens: 0, cost: 0, llm: 0, tools: 0, error: null, fix: null, where: null }).get(n);
  for (const e of events) {
    if (!e.node) continue;
    const n = get(e.node);
    if (e.type === "node_update") { n.status = "done"; n.visits += 1; n.ms += Number(e.data.ms || 0); }
    else if (e.type === "interrupt") n.status = "waiting";
    else if (e.type === "node_failed") { n.status = "failed"; n.error = e.data.error; n.fix = e.data.fix; n.where = e.data.where; }
    else if (e.type === "llm_call") { n.llm += 1; n.tokens += Number(e.data.input_tokens || 0) + Number(e.data.output_tokens || 0); n.cost += Number(e.data.cost_usd || 0); }
    else if (e.type === "tool_call") n.tools += 1;
  }
  return nodes;
}

function diff(before, after) {
  const items = [];
  const keys = new Set([...Object.keys(before || {}), ...Object.keys(after || {})]);
  for (const k of [...keys].sort()) {
    const a = before ? before[k] : undefined, b = after ? after[k] : undefined;
    const ja = JSON.stringify(a), jb = JSON.stringify(b);
    if (ja === jb) continue;
    if (a === undefined) items.push(h("li", { class: "add" }, `+ ${k}: ${jb}`));
    else if (b === undefined) items.push(h("li", { class: "del" }, `- ${k}: ${ja}`));
    else items.push(h("li", { class: "chg" }, `~ ${k}: ${ja} → ${jb}`));
  }
  return items.length ? h("ul", { class: "diff", id: "state-diff", "aria-label": "Changes against the previous seq" }, items) : h("p", { class: "muted", id: "state-diff" }, "No change to the state at this seq (a journal event).");
}

// The chat transcript of a run: its input messages, then per node the LLM replies (with tool calls),
// tool results, tool refusals and guardrail decisions, in log order.
const TRANSCRIBED = new Set(["llm_call", "tool_call", "tool_denied", "guardrail", "node_failed"]);
const short = (v, n = 400) => { const t = typeof v === "string" ? v : JSON.stringify(v); return t.length > n ? t.slice(0, n - 1) + "…" : t; };
const text = (content) => (Array.isArray(content) ? content.map((b) => b.text || "").join(" ") : content || "");

function bubble(role, who, e, ...body) {
  return h("li", { class: `msg ${role}`, "data-seq": e ? e.seq : undefined, "data-node": e ? e.node : undefined },
    h("div", { class: "who" }, who, e ? h("span", { class: "muted" }, ` · #${e.seq}`) : ""), ...body);
}

function transcriptItem(e) {
  const d = e.data || {};
  if (e.type === "llm_call") {
    const m = d.response || {};
    const calls = (m.tool_calls || []).map((c) => h("div", { class: "call" }, "→ calls ", h("code", {}, `${c.name}(${short(c.arguments, 200)})`)));
    const meta = `${d.model || "model"} · ${(d.input_tokens || 0) + (d.output_tokens || 0)} tokens${d.cost_usd ? ` · ${usd(d.cost_usd)}` : ""}${d.cached ? " · cached" : ""}`;
    return bubble("assistant", `${e.node} (LLM)`, e, text(m.content) ? h("p", {}, text(m.content)) : null, calls, h("small", { class: "muted" }, meta));
  }
  if (e.type === "tool_call") {
    return bubble(d.ok ? "tool" : "tool failed", `tool ${d.tool}`, e, h("div", {}, h("code", {}, `${d.tool}(${short(d.arguments, 200)})`)),
      h("p", {}, d.ok ? "→ " : "✗ error: ", short(d.result)));
  }
  if (e.type === "tool_denied") return bubble("guard", `tool ${d.tool} refused`, e, h("p", {}, `rule ${d.rule}${d.reason ? `: ${d.reason}` : ""}`));
  if (e.type === "guardrail") {
    return bubble(`guard g-${d.action}`, `guardrail ${d.rule || d.check}`, e,
      h("p", {}, h("strong", {}, d.action), ` at ${d.stage}: ${d.check}${(d.kinds || []).length ? ` found ${d.kinds.join(", ")}` : ""}${d.score !== undefined ? ` (score ${d.score})` : ""}`),
      d.detail ? h("small", { class: "muted" }, d.detail) : null);
  }
  return bubble("failed", `${e.node} failed`, e, h("p", {}, d.error || ""), d.fix ? h("p", {}, `Fix: ${d.fix}`) : null);
}

function transcript(events, node) {
  const items = [];
  const start = events.find((e) => e.type === "run_started");
  const input = ((start && start.data.update) || {}).messages || [];
  if (!node) for (const m of input) items.push(bubble(m.role === "user" ? "user" : "system", m.role || "input", null, h("p", {}, text(m.content))));
  for (const e of events) if (TRANSCRIBED.has(e.type) && (!node || e.node === node)) items.push(transcriptItem(e));
  return items.length ? h("ol", { class: "transcript", id: "transcript-list", "aria-label": node ? `Transcript of ${node}` : "Transcript of the run" }, items)
    : h("p", { class: "muted", id: "transcript-list" }, "No LLM messages, tool calls or guardrail decisions here.");
}

function humanForm(run, spec, onDone) {
  const w = run.waiting;
  const decl = (spec.graph.nodes[w.node] || {}).input;
  const fields = [];
  const inputs = [];
  for (const [name, f] of Object.entries(decl || {})) {
    const id = `ans-${name}`;
    const req = f.required !== false;
    const hint = f.description ? h("small", { class: "muted" }, f.description) : null;
    if (f.enum) {
      const radios = f.enum.map((v, i) => h("label", { class: "choice" }, h("span", {}, String(v)),
        h("input", { type: "radio", name: id, value: JSON.stringify(v), id: `${id}-${i}`, required: req })));
      fields.push(h("fieldset", {}, h("legend", {}, name + (req ? "" : " (optional)")), hint, h("div", { class: "row" }, radios)));
      inputs.push([name, () => { const c = document.querySelector(`input[name="${id}"]:checked`); return c ? JSON.parse(c.value) : undefined; }]);
      continue;
    }
    const t = f.type || "any";
    const ctl = t === "boolean" ? h("input", { id, type: "checkbox" })
      : t === "number" || t === "integer" ? h("input", { id, type: "number", step: t === "integer" ? "1" : "any", required: req })
      : t === "string" ? h("input", { id, type: "text", required: req })
      : h("textarea", { id, rows: 2, required: req, "aria-describedby": `${id}-json` });
    fields.push(h("label", { for: id }, h("span", {}, name + (req ? "" : " (optional)")), ctl, hint, t === "any" || t === "object" || t === "array" ? h("small", { id: `${id}-json`, class: "muted" }, "JSON") : null));
    inputs.push([name, () => {
      if (t === "boolean") return ctl.checked;
      if (ctl.value === "") return undefined;
      if (t === "number" || t === "integer") return Number(ctl.value);
      if (t === "string") return ctl.value;
      return JSON.parse(ctl.value);
    }]);
  }
  let whole = null;
  if (!decl) {
    whole = h("textarea", { id: "ans-json", rows: 3 }, "{}");
    fields.push(h("label", { for: "ans-json" }, h("span", {}, "Answer (JSON object)"), whole));
  }
  const out = h("div", { "aria-live": "polite" });
  const submit = h("button", { type: "submit", id: "resume" }, "Send answer");
  return h("form", { class: "panel", id: "human-form", "aria-labelledby": "human-h", onsubmit: async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    let input = {};
    try {
      if (whole) input = JSON.parse(whole.value);
      else for (const [k, read] of inputs) { const v = read(); if (v !== undefined) input[k] = v; }
    } catch (err) { out.append(h("div", { class: "error", role: "alert" }, `Not JSON: ${err.message}`)); return; }
    submit.disabled = true;
    try {
      await api("POST", `/runs/${run.run_id}/resume`, { input, interrupt_id: w.interrupt_id });
      announce(`Answer sent to ${w.node}`);
      onDone();
    } catch (err) { submit.disabled = false; out.append(problem(err)); }
  } },
  h("h2", { id: "human-h" }, `Waiting at ${w.node}`),
  h("p", {}, w.prompt || ""), fields, submit, out);
}

function parkedPanel(run, onDone) {
  const out = h("div", { "aria-live": "polite" });
  const go = h("button", { type: "button", id: "continue-now", onclick: async () => {
    go.disabled = true;
    try {
      await api("POST", `/runs/${run.run_id}/resume`, { input: {} }); // a parked run continues now
      announce(`Run ${run.run_id} continued`);
      onDone();
    } catch (err) { go.disabled = false; out.append(problem(err)); }
  } }, "Continue now");
  return h("section", { class: "panel", id: "parked", "aria-labelledby": "parked-h" },
    h("h2", { id: "parked-h" }, `Parked at ${run.waiting.node || "a node"}`),
    h("p", {}, run.waiting.prompt || "The run waits to be continued."),
    h("p", { class: "muted" }, "It continues by itself when the wait is over (stepwise serve's scheduler), or now:"), go, out);
}

async function runView(runId) {
  let run = await api("GET", `/runs/${encodeURIComponent(runId)}`);
  const [graph, thread] = await Promise.all([
    run.version ? api("GET", `/agents/${encodeURIComponent(run.agent)}/versions/${run.version}/graph`) : null,
    threadEvents(run.thread_id),
  ]);
  const events = []; // the whole thread's timeline: this run's events and other runs' on the same thread
  const seen = new Set();
  const mine = () => events.filter((e) => e.run_id === run.run_id);
  const head = h("p", { id: "run-head" });
  const human = h("div", { id: "human" });
  const nodesBox = h("div", { id: "nodes" });
  const plots = h("div", { id: "run-plots", class: "cards" });
  const pickNode = h("select", { id: "transcript-node", onchange: () => renderTranscript() }, h("option", { value: "" }, "all nodes"));
  const transcriptBox = h("div", { id: "transcript" });
  function renderTranscript() {
    const nodes = [...new Set(mine().filter((e) => TRANSCRIBED.has(e.type)).map((e) => e.node))];
    const chosen = pickNode.value;
    pickNode.replaceChildren(h("option", { value: "" }, "all nodes"), ...nodes.map((n) => h("option", { value: n, selected: n === chosen }, n)));
    transcriptBox.replaceChildren(transcript(mine(), chosen));
  }
  const timeline = h("ol", { class: "timeline", id: "timeline", "aria-label": "Events of the thread, by seq" });
  const others = thread.runs.filter((r) => r.run_id !== run.run_id);
  const threadNote = h("p", { id: "thread-note" },
    thread.forked_from ? ["Forked from thread ", h("code", {}, thread.forked_from.forked_from), ` at seq ${thread.forked_from.at}. `] : "",
    others.length ? ["Other runs on this thread: ", others.map((r, i) => [i ? ", " : "", h("a", { href: `#/runs/${r.run_id}` }, r.run_id), ` (${r.status})`])] : "This run is the only one on its thread.");
  const at = h("div", { id: "at", "aria-live": "polite" }, h("p", { class: "muted" }, "Choose an event to see the state at its seq, what changed, and to fork from there."));
  const svg = graph ? draw(graph.asl, graph.spec) : null;
  const renderHead = () => head.replaceChildren(badge(run.status), " agent ", h("a", { href: `#/agents/${run.agent}/${run.version || ""}`.replace(/\/$/, "") }, `${run.agent}${run.version ? ` v${run.version}` : ""}`), " · thread ", h("code", {}, run.thread_id), ` · started ${when(run.created_at)}`,
    run.finished_at ? ` · took ${secs(run.finished_at - run.created_at)}` : "", run.error ? h("div", { class: "error", role: "alert" }, `${run.error.error || ""} ${run.error.cause || run.error.message || ""}`) : "");
  const renderHuman = () => human.replaceChildren(run.status !== "waiting" || !run.waiting ? ""
    : run.waiting.interrupt_id ? (graph ? humanForm(run, graph.spec, refresh) : "")
    : parkedPanel(run, refresh)); // no interrupt: parked on an LLM rate limit, not waiting for a person
  function renderNodes() {
    const folded = fold(mine());
    const rows = [...folded.values()].map((n) => h("tr", { "data-node": n.node },
      h("th", { scope: "row" }, n.node), h("td", {}, badge(n.status)), h("td", { class: "num" }, n.visits), h("td", { class: "num" }, `${n.ms.toFixed(1)} ms`),
      h("td", { class: "num" }, n.tokens || ""), h("td", { class: "num" }, n.cost ? usd(n.cost) : ""),
      h("td", {}, n.error ? h("div", {}, h("strong", {}, n.error), n.where ? h("div", {}, `at ${n.where}`) : "", n.fix ? h("div", {}, `Fix: ${n.fix}`) : "") : n.llm || n.tools ? `${n.llm} LLM, ${n.tools} tool calls` : "")));
    nodesBox.replaceChildren(h("div", { class: "table-wrap" }, h("table", {}, h("caption", { class: "sr-only" }, "Per-node timing, tokens and cost"),
      h("thead", {}, h("tr", {}, ["Node", "Status", "Visits", "Time in node", "Tokens", "Cost", "Details / error and fix"].map((t, i) => h("th", { scope: "col", class: i >= 2 && i <= 5 ? "num" : undefined }, t)))),
      h("tbody", {}, rows))));
    const list = [...folded.values()].filter((n) => n.visits || n.cost);
    plots.replaceChildren(
      h("figure", { class: "panel" }, h("figcaption", {}, "Latency by node (ms)"), bars("Latency by node in milliseconds", list.map((n) => ({ label: n.node, value: n.ms })), { fmt: (v) => `${v.toFixed(1)} ms` })),
      h("figure", { class: "panel" }, h("figcaption", {}, "Cost by node (USD)"), list.some((n) => n.cost)
        ? bars("Cost by node in US dollars", list.filter((n) => n.cost).map((n) => ({ label: n.node, value: n.cost })), { fmt: usd, cls: "cost" })
        : h("p", { class: "muted" }, "No LLM calls with a cost in this run.")));
  }
  function eventBox(seq) {
    const e = events.find((x) => x.seq === seq);
    if (!e) return "";
    const { token, payload, ...data } = e.data || {}; // the task token and resume cursor are not for display
    return h("details", { open: e.type !== "node_update" && e.type !== "run_started" ? true : undefined },
      h("summary", {}, `Event #${e.seq}: ${e.type}${e.node ? ` at ${e.node}` : ""}`), h("pre", { id: "event-json" }, JSON.stringify(data, null, 2)));
  }
  async function showAt(seq, button) {
    for (const b of timeline.querySelectorAll("button[aria-pressed]")) b.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-pressed", "true");
    try {
      const [now, prev] = await Promise.all([
        api("GET", `/threads/${run.thread_id}/state?at=${seq}`),
        seq > 1 ? api("GET", `/threads/${run.thread_id}/state?at=${seq - 1}`) : Promise.resolve({ state: {} }),
      ]);
      const out = h("div", { class: "fork-out", "aria-live": "polite" });
      const fork = h("button", { type: "button", id: "fork", onclick: async () => {
        fork.disabled = true;
        try {
          const f = await api("POST", `/threads/${run.thread_id}/fork`, { at: seq });
          const cont = h("button", { type: "button", id: "fork-run", onclick: async () => {
            try {
              const r = await api("POST", `/agents/${encodeURIComponent(run.agent)}/execute`, { thread_id: f.thread_id, input: {}, version: run.version || undefined, background: true });
              location.hash = `#/runs/${r.run_id}`;
            } catch (err) { out.append(problem(err)); }
          } }, "Run the agent on the fork");
          out.replaceChildren(h("p", { id: "forked" }, "Forked into thread ", h("code", {}, f.thread_id), ` at seq ${f.at}. `), cont);
          announce(`Forked into ${f.thread_id}`);
        } catch (err) { fork.disabled = false; out.append(problem(err)); }
      } }, `Fork from seq ${seq}`);
      at.replaceChildren(h("h3", { id: "at-h" }, `State at seq ${now.seq} of ${now.head}`), eventBox(seq), diff(prev.state, now.state),
        h("details", {}, h("summary", {}, "Whole state"), h("pre", { id: "state-json" }, JSON.stringify(now.state, null, 2))), fork, out);
    } catch (err) { at.replaceChildren(problem(err)); }
  }
  function addEvent(e) {
    if (seen.has(e.seq)) return false;
    seen.add(e.seq);
    events.push(e);
    const other = e.run_id !== run.run_id;
    const b = h("button", { type: "button", "aria-pressed": "false", "data-seq": e.seq, "data-run": e.run_id, class: other ? "other-run" : undefined, onclick: () => showAt(e.seq, b) },
      h("span", { class: "seq" }, `#${e.seq}`), h("span", {}, e.type), h("span", { class: "muted" }, e.node || (e.type === "forked" ? `from ${e.data.from}` : "")),
      other && e.run_id ? h("span", { class: "muted run-tag" }, `run …${e.run_id.slice(-6)}`) : "");
    timeline.append(h("li", {}, b));
    if (svg && e.node && !other) mark(svg, e.node, e.type === "node_update" ? "done" : e.type === "interrupt" ? "waiting" : e.type === "node_failed" ? "failed" : "running");
    return true;
  }
  const ctrl = new AbortController();
  leave = () => ctrl.abort();
  // An interrupt is logged before the run's record says "waiting" (so a crash between the two writes
  // is recoverable): a read right after the event can still say "running". Read again, backing off.
  const awaitsWait = () => { const m = mine(); return m.length > 0 && m[m.length - 1].type === "interrupt"; };
  async function refresh(tries = 0) {
    run = await api("GET", `/runs/${encodeURIComponent(runId)}`);
    renderHead();
    renderHuman();
    if (run.status === "running" && awaitsWait() && tries < 12 && !ctrl.signal.aborted)
      setTimeout(() => refresh(tries + 1).catch((err) => main.prepend(problem(err))), Math.min(100 * 2 ** tries, 2000));
  }
  page(`Run ${run.run_id}`, head, human,
    h("div", { class: "run-grid" },
      h("section", { "aria-labelledby": "graph-h" }, h("h2", { id: "graph-h" }, "Graph"),
        h("div", { class: "legend", "aria-hidden": "true" }, ["running", "waiting", "done", "failed"].map(badge)),
        h("div", { class: "graph-wrap" }, svg || h("p", { class: "muted" }, "This run's graph is not a registered agent version."))),
      h("section", { "aria-labelledby": "nodes-h" }, h("h2", { id: "nodes-h" }, "Nodes"), nodesBox, plots)),
    h("section", { "aria-labelledby": "tr-h" }, h("h2", { id: "tr-h" }, "Transcript"),
      h("div", { class: "row" }, h("label", { for: "transcript-node" }, h("span", {}, "Node"), pickNode)), transcriptBox),
    h("section", { "aria-labelledby": "tl-h" }, h("h2", { id: "tl-h" }, "Thread timeline (time travel)"), threadNote, h("div", { class: "run-grid" }, timeline, at)));
  for (const e of thread.events) addEvent(e);
  renderHead();
  renderHuman();
  if (run.status === "running" && awaitsWait()) refresh().catch((err) => main.prepend(problem(err)));
  renderNodes();
  renderTranscript();
  const last = thread.events.length ? thread.events[thread.events.length - 1].seq : null;
  follow(run.run_id, (type, data) => {
    if (type === "end") { refresh(); announce(`Run ${data.status}`); return; }
    if (data.kind === "node_started") { if (svg) mark(svg, data.node, "running"); return; }
    if (data.kind) return; // other ephemeral messages (token deltas): not drawn
    if (!addEvent(data)) return;
    renderNodes();
    if (TRANSCRIBED.has(data.type)) renderTranscript();
    if (data.type === "interrupt" || data.type === "run_finished" || data.type === "run_failed") refresh();
    if (data.ts) window.consoleMetrics.liveLatencyMs.push(Date.now() - data.ts * 1000);
  }, ctrl.signal, last, () => { timeline.dataset.live = "true"; }).catch((err) => main.prepend(problem(err)));
}

async function agentView(agent, version) {
  const rec = await api("GET", `/agents/${encodeURIComponent(agent)}`);
  const v = Number(version || rec.aliases.live || rec.versions.length);
  const graph = await api("GET", `/agents/${encodeURIComponent(agent)}/versions/${v}/graph`);
  const pick = h("select", { id: "pick-version", onchange: () => { location.hash = `#/agents/${agent}/${pick.value}`; } },
    rec.versions.map((x) => h("option", { value: x.version, selected: x.version === v }, `v${x.version}${Object.entries(rec.aliases).filter(([, n]) => n === x.version).map(([a]) => ` (${a})`).join("")}`)));
  page(`Agent ${agent}`, h("div", { class: "row" }, h("label", { for: "pick-version" }, h("span", {}, "Version"), pick), h("p", { class: "muted" }, h("code", {}, graph.ref))),
    h("section", { "aria-labelledby": "graph-h" }, h("h2", { id: "graph-h" }, "Graph (from the compiled ASL)"), h("div", { class: "graph-wrap" }, draw(graph.asl, graph.spec))),
    h("p", {}, h("a", { href: `#/?agent=${encodeURIComponent(agent)}` }, `Runs of ${agent}`)));
}

// -- agents ------------------------------------------------------------------------------------------
async function statsView() {
  const stats = await api("GET", "/stats/agents?days=14");
  const cards = stats.agents.map((a) => h("section", { class: "panel", "data-agent": a.agent, "aria-labelledby": `ag-${a.agent}` },
    h("h2", { id: `ag-${a.agent}` }, h("a", { href: `#/agents/${a.agent}` }, a.agent)),
    h("p", {}, `${a.runs} runs · p50 ${secs(a.p50_s) || "–"} · p95 ${secs(a.p95_s) || "–"} · spend ${usd(a.spend_usd)} · ${a.tokens} tokens`),
    h("p", {}, Object.entries(a.by_status).map(([s, n]) => h("span", {}, badge(s), ` ${n} `))),
    h("figure", {}, h("figcaption", {}, "Runs per day"), bars(`Runs per day of ${a.agent}`, Object.entries(a.runs_per_day).map(([d, n]) => ({ label: d, value: n })))),
    h("figure", {}, h("figcaption", {}, "Spend per day (USD)"), bars(`Spend per day of ${a.agent} in US dollars`, Object.entries(a.spend_per_day).map(([d, v]) => ({ label: d, value: v })), { fmt: usd, cls: "cost" })),
    h("figure", {}, h("figcaption", {}, "Duration (s)"), bars(`p50 and p95 duration of ${a.agent}`, [{ label: "p50", value: a.p50_s || 0 }, { label: "p95", value: a.p95_s || 0 }], { fmt: (v) => secs(v) || "0" }))));
  page("Agents", h("p", { class: "muted" }, `Last ${stats.days} days: ${stats.runs} runs${stats.truncated ? " (the newest; the window holds more)" : ""}. Spend is summed when a run waits or ends.`),
    cards.length ? h("div", { class: "cards" }, cards) : h("p", { class: "muted" }, "No runs yet."));
}

// -- routing ----------------------------------------------------------------------------------------
async function route() {
  leave();
  leave = () => {};
  const key = getKey();
  document.getElementById("signout").hidden = !key;
  if (!key) return signIn();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  for (const a of document.querySelectorAll("[data-nav]")) a.removeAttribute("aria-current");
  try {
    const m = path.match(/^\/runs\/([A-Za-z0-9_.:-]+)$/);
    const ag = path.match(/^\/agents\/([A-Za-z0-9_.-]+)(?:\/(\d+))?$/);
    if (m) await runView(m[1]);
    else if (ag) await agentView(ag[1], ag[2]);
    else if (path === "/stats") { document.querySelector('[data-nav="stats"]').setAttribute("aria-current", "page"); await statsView(); }
    else { document.querySelector('[data-nav="runs"]').setAttribute("aria-current", "page"); await runsView(new URLSearchParams(query || "")); }
    main.focus({ preventScroll: true });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) { forgetKey(); return signIn("The API refused the key: " + err.message); }
    page("Something went wrong", problem(err), h("p", {}, h("a", { href: "#/" }, "Back to the runs")));
  }
}

document.getElementById("signout").addEventListener("click", () => { forgetKey(); route(); });
window.addEventListener("hashchange", route);
route();
