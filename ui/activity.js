// Activity: the run history from every client (it lasts across restarts), newest first, a page
// at a time, filtered by agent, state and text; live runs update in place, each with Stop, and
// a run's whole output is one click away.
import { toggleChanges } from "./changes.js";
import { $, appendOutput, button, decodeBase64, el, humanBytes, invoke, showError } from "./dom.js";

const RUNS_PAGE = 30;            // runs per page
const MAX_RUN_ENTRIES = 500;     // entries kept on the page (older ones: "Show older")
const MAX_RUN_TEXT = 16 * 1024;  // characters of live output kept per run (the tail)
const FULL_OUTPUT_CHARS = 4 << 20; // characters of a run's whole output shown at once

const runs = new Map();          // id -> { li, running }
const toldUnrecorded = new Map(); // folder and reason -> the run that says it
let olderBefore = null;          // `before` of the next older page

function runFilters() {
  const v = (id) => $(id).value.trim() || null;
  return { client: v("f-client"), state: v("f-state"), q: v("f-text") };
}

function runMatches(run) {
  const f = runFilters();
  if (f.client && (run.client || "other") !== f.client) return false;
  if (f.state && run.state !== f.state) return false;
  if (f.q) {
    const q = f.q.toLowerCase();
    if (!run.command.toLowerCase().includes(q) && !String(run.cwd).toLowerCase().includes(q)) return false;
  }
  return true;
}

function runState(run) {
  if (run.state === "running") return ["running", ""];
  if (run.state === "interrupted") return ["interrupted (the server stopped)", "bad"];
  if (run.error && run.error.code === "CANCELLED_BY_USER") return ["stopped by you", ""];
  if (run.error) return [run.error.code, "bad"];
  const o = run.outcome;
  if (!o) return ["ended", ""];
  const code = o.timed_out ? "timed out" : o.cancelled ? "cancelled" : `exit ${o.exit_code ?? "signal " + o.signal}`;
  return [`${code} · ${o.duration_ms.toFixed(0)} ms`, o.exit_code === 0 ? "ok" : "bad"];
}

function when(ms) {
  const d = new Date(ms);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

// Draw (or update) a run's entry; new ones go on top (`prepend`) or at the bottom (a page).
function runEntry(run, where = "prepend") {
  let entry = runs.get(run.id);
  if (!entry) {
    const li = document.createElement("li");
    li.innerHTML = `<div class="head"><code></code><span class="badge mode"></span><span class="badge client"></span><span class="badge state"></span><span class="muted cwd"></span><span class="muted when"></span><button class="changes-toggle secondary small" type="button" hidden>Changes</button><button class="full-toggle secondary small" type="button">Full output</button><button class="stop small" hidden>Stop</button></div><p class="error host-files" hidden></p><p class="muted changed" hidden></p><div class="changes" hidden></div><pre class="output small live"></pre><div class="full" hidden></div>`;
    li.dataset.run = run.id;
    // Stop: the command's whole tree ends, and its agent is told the user stopped it.
    const stop = li.querySelector(".stop");
    stop.onclick = async () => {
      stop.disabled = true;
      try { await invoke("cancel_run", { id: run.id }); } catch (e) { stop.disabled = false; stop.title = e.message || String(e); }
    };
    li.querySelector(".full-toggle").onclick = () => toggleFullOutput(li, run.id);
    li.querySelector(".changes-toggle").onclick = () => toggleChanges(li, run.id);
    if (where === "prepend") $("runs").prepend(li); else $("runs").append(li);
    entry = { li };
    runs.set(run.id, entry);
    trimRuns();
  }
  const li = entry.li;
  li.querySelector("code").textContent = run.command;
  li.querySelector(".mode").textContent = run.mode === "sandbox" ? `sandbox · ${run.image}` : run.mode;
  li.querySelector(".client").textContent = run.client || "other";
  li.querySelector(".cwd").textContent = run.cwd;
  li.querySelector(".when").textContent = when(run.started_at_ms);
  entry.running = run.state === "running";
  li.querySelector(".stop").hidden = !entry.running;
  const [text, cls] = runState(run);
  const st = li.querySelector(".state");
  st.textContent = text;
  st.className = `badge state ${cls}`;
  // Files the host runs or obeys that a sandboxed command made: the user should look first.
  const made = (run.outcome && run.outcome.host_files) || [];
  const warn = li.querySelector(".host-files");
  warn.hidden = made.length === 0;
  warn.textContent = made.length ? `Made files your computer runs or obeys (look at them before opening the folder): ${made.join(", ")}` : "";
  // What it changed in its folder, in one line; "Changes" opens the list, the diffs and Undo.
  const changed = (run.outcome && run.outcome.changed) || "";
  const line = li.querySelector(".changed");
  line.hidden = !changed;
  li.querySelector(".changes-toggle").hidden = !changed;
  // Not recorded (a folder too large...): said once per folder and reason on the page.
  const why = run.outcome && run.outcome.unrecorded;
  const key = why ? `${run.cwd}\n${why}` : "";
  if (why && (!toldUnrecorded.has(key) || toldUnrecorded.get(key) === run.id)) {
    toldUnrecorded.set(key, run.id);
    line.hidden = false;
    line.textContent = `What this command changed was not recorded: ${why}.`;
  }
  line.textContent = changed ? changed.charAt(0).toUpperCase() + changed.slice(1) : "";
  // A finished run from the history: the end of what it printed (live ones stream in).
  const live = li.querySelector(".live");
  if (!entry.running && !live.textContent) {
    const tail = (s) => s.tail || s.head;
    if (run.stdout.total_bytes) appendOutput(live, "stdout", tail(run.stdout), MAX_RUN_TEXT);
    if (run.stderr.total_bytes) appendOutput(live, "stderr", tail(run.stderr), MAX_RUN_TEXT);
  }
  $("runs-empty").hidden = runs.size > 0;
  return entry;
}

// Keep the page bounded: the oldest entries go, and "Show older" brings them back.
function trimRuns() {
  while (runs.size > MAX_RUN_ENTRIES) {
    const last = $("runs").lastElementChild;
    runs.delete(last.dataset.run);
    last.remove();
    olderBefore = $("runs").lastElementChild.dataset.run;
    $("runs-more").hidden = false;
  }
}

// The first page (`older` false) or the next older one.
export async function loadRuns(older = false) {
  let list;
  try {
    list = await invoke("get_runs", { query: { limit: RUNS_PAGE, before: older ? olderBefore : null, ...runFilters() } });
  } catch (_) { return; /* no server yet */ }
  if (!older) { runs.clear(); $("runs").replaceChildren(); }
  list.runs.forEach((r) => runEntry(r, "append"));
  olderBefore = list.next_before || null;
  $("runs-more").hidden = !olderBefore;
  const filtered = Object.values(runFilters()).some((v) => v);
  $("runs-empty").textContent = filtered ? "No run matches." : "Nothing has run yet.";
  $("runs-empty").hidden = runs.size > 0;
  if (!older) showHistoryUse();
}

// What the history's kept file contents (for Undo) take on this computer.
async function showHistoryUse() {
  let status;
  try { status = await invoke("get_status"); } catch (_) { return; }
  const bytes = status.kept_contents_bytes;
  $("history-use").hidden = bytes == null;
  if (bytes != null) $("history-use").textContent = `File contents kept so that commands can be undone: ${humanBytes(bytes)} (they go with the runs the history lets go).`;
}

// The agents in the history, for the filter.
export async function loadClientFilter() {
  let view;
  try { view = await invoke("get_clients"); } catch (_) { return; }
  const select = $("f-client");
  const chosen = select.value;
  const names = view.clients.filter((c) => c.seen).map((c) => c.name);
  select.replaceChildren(el("option", { value: "", textContent: "All agents" }), ...names.map((n) => el("option", { value: n, textContent: n })));
  select.value = names.includes(chosen) ? chosen : "";
}

async function toggleFullOutput(li, id) {
  const box = li.querySelector(".full");
  const toggle = li.querySelector(".full-toggle");
  box.hidden = !box.hidden;
  // The whole output replaces the preview of its end.
  li.querySelector(".live").hidden = !box.hidden;
  toggle.textContent = box.hidden ? "Full output" : "Hide full output";
  if (box.hidden) return;
  box.replaceChildren(el("p", { className: "muted", textContent: "Loading…" }));
  const pre = el("pre", { className: "output whole" });
  let shown = 0, cut = false;
  try {
    for (const stream of ["stdout", "stderr"]) {
      let offset = 0;
      for (;;) {
        const page = await invoke("get_run_output", { id, stream, offset });
        if (page.text) {
          const span = el("span", { className: stream === "stderr" ? "err" : "", textContent: page.text });
          pre.append(span);
          shown += page.text.length;
        }
        if (page.eof || page.next_offset === offset) break;
        if (shown >= FULL_OUTPUT_CHARS) { cut = true; break; }
        offset = page.next_offset;
      }
      if (cut) break;
    }
  } catch (e) {
    box.replaceChildren();
    showError(box.appendChild(el("p", { className: "error" })), e);
    return;
  }
  const note = shown === 0 ? "No output was kept for this run (it printed nothing, or its output made room for newer runs')."
    : cut ? `The first ${humanBytes(FULL_OUTPUT_CHARS)} are shown; \`stigmer runs output ${id}\` prints it all.` : "";
  box.replaceChildren(...(shown ? [pre] : []), ...(note ? [el("p", { className: "muted", textContent: note })] : []));
}

// A run's event: drawn here (true), or not a run's (false).
export function runEvent(ev) {
  if (ev.type === "run_started" || ev.type === "run_finished") {
    if (runs.has(ev.run.id) || runMatches(ev.run)) runEntry(ev.run);
    if (ev.type === "run_started" && !$("f-client").querySelector(`option[value="${CSS.escape(ev.run.client || "other")}"]`)) loadClientFilter();
    return true;
  }
  if (ev.type === "run_output") {
    const entry = runs.get(ev.run_id);
    if (entry) appendOutput(entry.li.querySelector(".live"), ev.stream, decodeBase64(ev.data), MAX_RUN_TEXT);
    return true;
  }
  return false;
}

export function setupActivity() {
  let typing = null;
  $("f-text").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => loadRuns(), 250); });
  $("f-client").addEventListener("change", () => loadRuns());
  $("f-state").addEventListener("change", () => loadRuns());
  $("runs-more").addEventListener("click", () => loadRuns(true));
}
