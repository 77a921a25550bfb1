// Stigmer's window. Plain JS on window.__TAURI__: no framework, no bundler.
"use strict";

const { invoke, Channel } = window.__TAURI__.core;
const { listen } = window.__TAURI__.event;

const $ = (id) => document.getElementById(id);
const MAX_RUNS = 30;            // activity entries kept on the page
const MAX_RUN_TEXT = 16 * 1024; // characters of output kept per run (the tail)
const MAX_LOG_LINES = 300;
const MAX_TRY_TEXT = 64 * 1024;

let model = null;

function humanBytes(n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GiB";
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(0) + " KiB";
  return n + " B";
}

function tierOf(m) {
  if (m.mode === "local") return "local";
  return m.image === "ghcr.io/stigmer/agent-sandbox-basic:latest" ? "basic" : "custom";
}

// A loose check, like the engine's: registry/name:tag, lower-case names, no spaces.
function validImage(s) {
  return /^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?\/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[a-z0-9]+:[0-9a-f]{32,})?$/.test(s.trim());
}

function showError(el, err) {
  const msg = err && err.message ? `${err.message}` : String(err);
  el.textContent = err && err.code ? `${msg} (${err.code})` : msg;
  el.hidden = false;
}

function render(m) {
  model = m;
  const s = m.server;
  const dot = $("server-dot");
  dot.className = "dot " + (s.state === "running" ? "running" : s.state === "crashed" ? "crashed" : s.state === "starting" ? "starting" : "");
  const label = { stopped: "Stopped", starting: "Starting…", running: "Running", crashed: "Stopped unexpectedly" }[s.state];
  $("server-state").textContent = label;
  $("server-url").textContent = s.state === "running" ? s.url + (s.owned ? "" : " (started elsewhere)") : "";
  const toggle = $("server-toggle");
  toggle.textContent = s.state === "running" ? "Stop" : s.state === "crashed" ? "Restart" : "Start";
  toggle.disabled = s.state === "starting";
  $("server-detail").textContent = s.state === "crashed" ? s.reason : s.state === "stopped" ? "Agents cannot run commands until the server runs." : "";

  $("engine-state").textContent = m.engine === "connected" ? m.engine_message
    : m.engine === "unknown" ? "not checked yet" : `${m.engine.replace(/_/g, " ")} — needed for the sandbox modes only`;
  const tier = tierOf(m);
  for (const r of document.querySelectorAll("input[name=tier]")) {
    r.checked = r.value === tier;
    r.disabled = s.state !== "running";
  }
  if (tier === "custom" && document.activeElement !== $("custom-image")) $("custom-image").value = m.image;
  $("custom-row").hidden = tier !== "custom" && !$("custom-row").dataset.open;
  const note = $("engine-note");
  if (tier !== "local" && m.engine !== "connected" && s.state === "running") {
    note.textContent = "No container engine: " + (m.engine_message || m.engine) + " Commands will fail until it is fixed — they never run on this computer instead.";
    note.hidden = false;
  } else {
    note.hidden = true;
  }
  const d = m.download;
  $("download").hidden = !d;
  if (d) {
    const what = d.action === "build" ? "Building" : "Downloading";
    const pct = d.percent == null ? "" : ` ${d.percent.toFixed(0)}%`;
    const bytes = d.bytes_total ? ` · ${humanBytes(d.bytes_done)} of ${humanBytes(d.bytes_total)} · ${humanBytes(d.rate_bytes_per_sec)}/s` : "";
    $("download-text").textContent = `${what} ${d.image} (${d.phase}${pct})${bytes}. This happens once.`;
    const bar = $("download-bar");
    if (d.percent == null) bar.removeAttribute("value"); else bar.value = d.percent;
  }
  $("try-run").disabled = s.state !== "running";
}

async function setMode(tier, image) {
  $("mode-error").hidden = true;
  try {
    render(await invoke("set_mode", { tier, image: image ?? null }));
  } catch (e) {
    showError($("mode-error"), e);
    render(model);
  }
}

// ---- activity: runs from every client, bounded ----
const runs = new Map();

function runEntry(run) {
  let entry = runs.get(run.id);
  if (!entry) {
    const li = document.createElement("li");
    li.innerHTML = `<div class="head"><code></code><span class="badge mode"></span><span class="badge client"></span><span class="badge state"></span><span class="muted cwd"></span></div><pre class="output small"></pre>`;
    $("runs").prepend(li);
    entry = { li, text: 0 };
    runs.set(run.id, entry);
    while (runs.size > MAX_RUNS) {
      const [oldest] = runs.keys();
      runs.get(oldest).li.remove();
      runs.delete(oldest);
    }
  }
  const li = entry.li;
  li.querySelector("code").textContent = run.command;
  li.querySelector(".mode").textContent = run.mode === "local" ? "local" : `sandbox · ${run.image}`;
  li.querySelector(".client").textContent = run.client || "api";
  li.querySelector(".cwd").textContent = run.cwd;
  const st = li.querySelector(".state");
  if (run.state === "running") { st.textContent = "running"; st.className = "badge state"; }
  else if (run.error) { st.textContent = run.error.code; st.className = "badge state bad"; }
  else if (run.outcome) {
    const o = run.outcome;
    const code = o.timed_out ? "timed out" : o.cancelled ? "cancelled" : `exit ${o.exit_code ?? "signal " + o.signal}`;
    st.textContent = `${code} · ${o.duration_ms.toFixed(0)} ms`;
    st.className = "badge state " + (o.exit_code === 0 ? "ok" : "bad");
  }
  return entry;
}

function appendOutput(pre, stream, text, limit) {
  const span = document.createElement("span");
  if (stream === "stderr") span.className = "err";
  span.textContent = text;
  pre.append(span);
  // Keep the tail only: the page stays fast under a flood of output.
  while (pre.textContent.length > limit && pre.firstChild) pre.firstChild.remove();
  pre.scrollTop = pre.scrollHeight;
}

function decodeBase64(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

function onEvents(batch) {
  for (const ev of batch.events) {
    if (ev.type === "run_started" || ev.type === "run_finished") runEntry(ev.run);
    else if (ev.type === "workspace_refused" || ev.type === "workspaces_changed") loadWorkspaces();
    else if (ev.type === "run_output") {
      const entry = runs.get(ev.run_id);
      if (entry) appendOutput(entry.li.querySelector("pre"), ev.stream, decodeBase64(ev.data), MAX_RUN_TEXT);
    }
  }
}

// ---- sandbox workspaces: the folders the user allowed, and the requests refused ----
function renderWorkspaces(view) {
  const list = $("workspace-list");
  list.replaceChildren();
  for (const path of view.workspaces) {
    const li = document.createElement("li");
    const code = document.createElement("code");
    code.textContent = path;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "secondary small";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${path}`);
    remove.addEventListener("click", () => workspaceChange("remove_workspace", path));
    li.append(code, remove);
    list.append(li);
  }
  $("workspace-empty").hidden = view.workspaces.length > 0;
  const refused = $("refused-list");
  refused.replaceChildren();
  for (const r of view.refused) {
    const li = document.createElement("li");
    li.className = "refused";
    const code = document.createElement("code");
    code.textContent = r.folder;
    const row = document.createElement("div");
    row.className = "row";
    const who = document.createElement("span");
    who.className = "muted";
    who.textContent = `${r.client || "a client"}: ${r.command}`;
    row.append(who);
    li.append(code, row);
    if (r.can_allow) {
      const allow = document.createElement("button");
      allow.type = "button";
      allow.className = "small";
      allow.textContent = "Allow this folder";
      allow.addEventListener("click", () => workspaceChange("add_workspace", r.folder));
      row.append(allow);
    } else {
      const why = document.createElement("span");
      why.className = "muted";
      why.textContent = `Never shared with a sandbox: ${r.reason}`;
      row.append(why);
    }
    refused.append(li);
  }
  $("refused-box").hidden = view.refused.length === 0;
}

async function loadWorkspaces() {
  try { renderWorkspaces(await invoke("get_workspaces")); } catch (_) { /* no server yet */ }
}

async function workspaceChange(command, path) {
  $("workspace-error").hidden = true;
  try { renderWorkspaces(await invoke(command, { path })); }
  catch (e) { showError($("workspace-error"), e); }
}

// ---- tools ----
async function loadTools(refresh) {
  try {
    const report = await invoke("get_tools", { refresh });
    const body = $("tools-body");
    body.replaceChildren();
    for (const t of report.tools) {
      const tr = document.createElement("tr");
      const cell = (text, cls) => { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.append(td); };
      cell(t.name);
      cell(t.found ? (t.version || "installed") : "not installed", t.found ? "yes" : "no");
      cell(t.in_basic ? "yes" : "—", t.in_basic ? "yes" : "no");
      cell(t.in_full ? "yes" : "—", t.in_full ? "yes" : "no");
      body.append(tr);
    }
    const missingBasic = report.tools.filter((t) => t.in_basic && !t.found).map((t) => t.name);
    $("tools-advice").textContent = missingBasic.length === 0
      ? "All the everyday tools are installed here: Local is fine."
      : `Not installed here: ${missingBasic.join(", ")}. Install them, or use the Basic sandbox.`;
  } catch (e) {
    $("tools-advice").textContent = "Tools are listed once the server runs.";
  }
}

// ---- logs ----
function addLog(line) {
  const pre = $("log-lines");
  pre.append(line + "\n");
  while (pre.childNodes.length > MAX_LOG_LINES) pre.firstChild.remove();
  pre.scrollTop = pre.scrollHeight;
}

async function init() {
  $("server-toggle").addEventListener("click", async () => {
    const running = model && model.server.state === "running";
    try { render(await invoke(running ? "stop_server" : "start_server")); }
    catch (e) { $("server-detail").textContent = e.message || String(e); }
  });
  for (const r of document.querySelectorAll("input[name=tier]")) {
    r.addEventListener("change", () => {
      if (r.value === "custom") {
        $("custom-row").dataset.open = "1";
        $("custom-row").hidden = false;
        $("custom-image").focus();
      } else {
        delete $("custom-row").dataset.open;
        setMode(r.value);
      }
    });
  }
  const applyCustom = () => {
    const image = $("custom-image").value.trim();
    if (!validImage(image)) {
      $("custom-image").setAttribute("aria-invalid", "true");
      showError($("mode-error"), { code: "INVALID_SETTING", message: `"${image}" is not an image reference; use a name like my-sandbox:latest or ghcr.io/org/image:tag` });
      return;
    }
    $("custom-image").removeAttribute("aria-invalid");
    setMode("custom", image);
  };
  $("custom-apply").addEventListener("click", applyCustom);
  $("custom-image").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); applyCustom(); } });

  $("try-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const shell = $("try-input").value;
    const out = $("try-output");
    out.replaceChildren();
    $("try-result").textContent = "Running…";
    const channel = new Channel();
    let skipped = 0;
    channel.onmessage = (m) => {
      if (m.skipped) { skipped += m.skipped; return; }
      if (m.text !== undefined) appendOutput(out, m.stream, m.text, MAX_TRY_TEXT);
    };
    try {
      const run = await invoke("run_command", { shell, onOutput: channel });
      const o = run.outcome;
      const cut = skipped ? ` · ${humanBytes(skipped)} of output not shown (the full head and tail are in the activity)` : "";
      $("try-result").textContent = run.error ? `${run.error.message} (${run.error.code})`
        : `${o.timed_out ? "timed out" : "exit code " + o.exit_code} · ${o.duration_ms.toFixed(0)} ms · ${run.mode === "local" ? "ran locally" : "ran in " + run.image}${cut}`;
    } catch (err) {
      $("try-result").textContent = `${err.message || err}${err.code ? " (" + err.code + ")" : ""}`;
    }
  });
  $("tools-refresh").addEventListener("click", () => loadTools(true));
  $("workspace-add").addEventListener("click", async () => {
    const path = await invoke("pick_folder");
    if (path) workspaceChange("add_workspace", path);
  });
  $("download-cancel").addEventListener("click", async () => {
    try { await invoke("cancel_download"); } catch (e) { showError($("mode-error"), e); }
  });

  const prefs = await invoke("get_prefs");
  $("pref-start").checked = prefs.start_server_on_launch;
  $("pref-login").checked = prefs.start_at_login;
  $("pref-tray").checked = prefs.close_to_tray;
  for (const id of ["pref-start", "pref-login", "pref-tray"]) {
    $(id).addEventListener("change", async () => {
      const p = await invoke("get_prefs");
      p.start_server_on_launch = $("pref-start").checked;
      p.start_at_login = $("pref-login").checked;
      p.close_to_tray = $("pref-tray").checked;
      await invoke("set_prefs", { prefs: p });
    });
  }

  await listen("stigmer://model", (e) => { const was = model && model.server.state; render(e.payload); if (was !== "running" && e.payload.server.state === "running") { loadTools(false); loadWorkspaces(); } });
  await listen("stigmer://events", (e) => onEvents(e.payload));
  await listen("stigmer://log", (e) => addLog(e.payload));
  await listen("stigmer://ask-custom-image", () => { const r = document.querySelector("input[name=tier][value=custom]"); r.checked = true; r.dispatchEvent(new Event("change")); });

  $("agent-config").textContent = await invoke("agent_config");
  $("agent-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("agent-config").textContent);
      $("agent-copied").textContent = "Copied.";
    } catch (_) {
      // No clipboard access: select the text so Ctrl+C copies it.
      const range = document.createRange();
      range.selectNodeContents($("agent-config"));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      const mac = navigator.platform.startsWith("Mac");
      $("agent-copied").textContent = `Selected: press ${mac ? "⌘C" : "Ctrl+C"} to copy.`;
    }
  });

  render(await invoke("get_model"));
  const logs = await invoke("get_logs");
  $("log-dir").textContent = logs.log_dir;
  logs.lines.forEach(addLog);
  if (model.server.state === "running") {
    loadTools(false);
    loadWorkspaces();
    try { (await invoke("get_runs")).runs.reverse().forEach(runEntry); } catch (_) { /* no server yet */ }
  }
}

init();
