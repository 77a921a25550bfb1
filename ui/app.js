// Stigmer's window. Plain JS modules on window.__TAURI__: no framework, no bundler. The app's
// state comes from the desktop shell (`stigmer://model`); this page only draws it and calls
// commands. This module wires the others; none of them imports it.
import { $, Channel, appendOutput, button, el, humanBytes, invoke, listen, showError } from "./dom.js";
import { remember } from "./state.js";
import { loadClientFilter, loadRuns, runEvent, setupActivity } from "./activity.js";
import { loadClients, renderWaiting } from "./clients.js";
import { loadNetwork, setupNetwork } from "./network.js";
import { customImageFinished, customShown, setupCustom } from "./custom.js";

const MAX_LOG_LINES = 300;
const MAX_TRY_TEXT = 64 * 1024;

let model = null;

// ---- sections ----
function showView(name) {
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${name}`;
  for (const t of document.querySelectorAll(".tab")) {
    if (t.dataset.view === name) t.setAttribute("aria-current", "page");
    else t.removeAttribute("aria-current");
  }
  if (name === "agents") { loadAgents(); loadClients(); }
  if (name === "activity") loadClientFilter();
  if (name === "sandbox") { loadWorkspaces(); loadTools(false); loadImages(); }
  if (name === "settings") loadCli();
}

// ---- the stigmer command on PATH (macOS, Windows, AppImage) ----
function renderCli(s) {
  $("cli").hidden = !s.can_install;
  $("cli-text").textContent = s.on_path
    ? `Terminals and agents find it at ${s.on_path}.`
    : "Terminals and agents' settings that name stigmer need it on your PATH.";
}

async function loadCli() {
  try { renderCli(await invoke("cli_status")); } catch (_) { /* shown as is */ }
}

// ---- errors a person can act on: words and buttons (decided by the app), the technical
// text under Details ----
const ACTIONS = {
  start: () => startServer(),
  retry: () => refresh(),
  use_local: () => setMode("local"),
  use_basic: () => setMode("basic"),
};

function act(id) {
  if (id.startsWith("help:")) return invoke("open_help", { topic: id.slice(5) });
  return ACTIONS[id] && ACTIONS[id]();
}

function showProblem(p) {
  $("problem").hidden = !p;
  if (!p) return;
  $("problem-text").textContent = p.text;
  $("problem-actions").replaceChildren(...p.actions.map(([id, label], i) => button(label, () => act(id), i ? "secondary" : "")));
  $("problem-details").hidden = !p.detail;
  $("problem-detail-text").textContent = p.detail || "";
}

// ---- the state ----
function render(m) {
  model = m;
  remember(m);
  offerProtection(m);
  for (const [tier, label] of m.labels.tiers) {
    const r = document.querySelector(`input[name=tier][value=${tier}] + span strong`);
    if (r) r.textContent = label;
  }
  const s = m.server;
  $("server-dot").className = "dot " + ({ running: m.problem ? "crashed" : "running", crashed: "crashed", starting: "starting" }[s.state] || "");
  const label = { stopped: "Server stopped", starting: "Server starting…", running: "Running", crashed: "Server stopped unexpectedly" }[s.state];
  $("server-state").textContent = label;
  $("nav-state").textContent = m.status;
  $("server-url").textContent = s.state === "running" ? s.url + (s.owned ? "" : " (started elsewhere)") : "";
  const toggle = $("server-toggle");
  toggle.textContent = s.state === "running" ? "Stop" : s.state === "crashed" ? "Restart" : "Start";
  toggle.disabled = s.state === "starting";
  $("server-detail").textContent = s.state === "running" ? "Agents' commands go through this server." : "";
  showProblem(m.problem);

  $("engine-state").textContent = m.engine_label;
  for (const r of document.querySelectorAll("input[name=tier]")) {
    r.checked = r.value === m.tier;
    r.disabled = s.state !== "running";
  }
  if (m.tier === "custom" && document.activeElement !== $("custom-image")) $("custom-image").value = m.image;
  $("custom-row").hidden = m.tier !== "custom" && !$("custom-row").dataset.open;
  if (!$("custom-row").hidden && s.state === "running") customShown();
  const d = m.download;
  $("download").hidden = !d;
  if (d) {
    const what = d.action === "build" ? "Building" : "Downloading";
    const pct = d.percent == null ? "" : ` ${d.percent.toFixed(0)}%`;
    const bytes = d.bytes_total ? ` · ${humanBytes(d.bytes_done)} of ${humanBytes(d.bytes_total)} · ${humanBytes(d.rate_bytes_per_sec)}/s` : "";
    const step = d.detail ? ` · ${d.detail.replace(/^Step (\d+)\/(\d+) : .*/, "step $1 of $2")}` : "";
    const secs = (ms) => ms < 60000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60000)} min`;
    const left = d.bytes_total && d.rate_bytes_per_sec ? ` · about ${secs(1000 * (d.bytes_total - d.bytes_done) / d.rate_bytes_per_sec)} left` : "";
    const elapsed = d.elapsed_ms ? ` · ${secs(d.elapsed_ms)} so far` : "";
    $("download-text").textContent = `${what} ${d.image} (${d.phase}${pct})${bytes}${step}${elapsed}${left}. This happens once.`;
    $("download-cancel").textContent = d.action === "build" ? "Cancel build" : "Cancel download";
    const bar = $("download-bar");
    if (d.percent == null) bar.removeAttribute("value"); else bar.value = d.percent;
  }
  $("try-run").disabled = s.state !== "running";
  renderUpdate(m.update);
  renderWaiting(s.state === "running" ? m.waiting : []);
  $("nav-running").hidden = !m.active_runs;
  $("nav-running").textContent = m.active_runs;
}

async function startServer() {
  try { render(await invoke("start_server")); } catch (e) { showError($("mode-error"), e); }
}

async function refresh() {
  try { render(await invoke("refresh_status")); } catch (e) { showError($("mode-error"), e); }
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

// ---- agents: one click to connect ----
const AGENT_STATE = {
  connected: "Connected",
  not_connected: "Not connected",
  outdated: "Connected to another copy of Stigmer",
  unreadable: "Its settings file could not be read",
  not_found: "Not found on this computer",
};

function agentItem(a, onChange) {
  const li = el("li", { className: `agent ${a.state}` });
  li.dataset.agent = a.id;
  const head = el("div", { className: "row" }, el("strong", { textContent: a.name }), el("span", { className: `badge ${a.state === "connected" ? "ok" : a.state === "unreadable" ? "bad" : ""}`, textContent: AGENT_STATE[a.state] }), el("span", { className: "grow" }));
  li.append(head);
  const act = async (remove) => {
    try {
      const change = await invoke("connect_agent", { id: a.id, remove });
      const note = remove ? `${a.name} no longer uses Stigmer.` : change.changed ? `${a.name} is connected. ${change.status.restart}` : `${a.name} was already connected.`;
      onChange(note);
    } catch (e) { onChange(null, e); }
  };
  if (a.state === "not_connected" || a.state === "outdated") head.append(button(a.state === "outdated" ? "Connect again" : "Connect", () => act(false)));
  if (a.state === "connected" || a.state === "outdated") head.append(button("Disconnect", () => act(true), "secondary"));
  if (a.state === "unreadable") {
    li.append(el("p", { className: "muted", textContent: `Stigmer leaves ${a.config_file} as it is. Add this to it yourself:` }),
      el("pre", { className: "output small", textContent: a.snippet }),
      el("details", {}, el("summary", { textContent: "Details" }), a.problem || ""));
  }
  return li;
}

async function loadAgents() {
  let list = [];
  try { list = await invoke("list_agents"); } catch (_) { return; }
  const note = $("agent-note") || el("p", { id: "agent-note", className: "note", hidden: true });
  const redraw = (text, err) => {
    if (err) { showError(note, err); } else if (text) { note.textContent = text; note.hidden = false; }
    loadAgents();
  };
  $("agent-list").replaceChildren(...list.filter((a) => a.state !== "not_found").map((a) => agentItem(a, redraw)), note);
  const missing = list.filter((a) => a.state === "not_found").map((a) => a.name);
  if (missing.length) $("agent-list").append(el("li", { className: "muted", textContent: `Not found on this computer: ${missing.join(", ")}.` }));
  return list;
}

// ---- sandbox workspaces: the folders the user allowed, and the requests refused ----
function renderWorkspaces(view) {
  $("workspace-list").replaceChildren(...view.workspaces.map((path) => {
    const remove = button("Remove", () => workspaceChange("remove_workspace", path), "secondary small");
    remove.setAttribute("aria-label", `Remove ${path}`);
    return el("li", {}, el("code", { textContent: path }), remove);
  }));
  $("workspace-empty").hidden = view.workspaces.length > 0;
  $("refused-list").replaceChildren(...view.refused.map((r) => {
    const row = el("div", { className: "row" }, el("span", { className: "muted", textContent: `${r.client || "a client"}: ${r.command}` }));
    if (r.can_allow) row.append(button("Allow this folder", () => workspaceChange("add_workspace", r.folder), "small"));
    else row.append(el("span", { className: "muted", textContent: `Never shared with a sandbox: ${r.reason}` }));
    return el("li", { className: "refused" }, el("code", { textContent: r.folder }), row);
  }));
  $("refused-box").hidden = view.refused.length === 0;
  const allowable = view.refused.filter((r) => r.can_allow).length;
  $("nav-refused").hidden = allowable === 0;
  $("nav-refused").textContent = allowable;
}

async function loadWorkspaces() {
  try { renderWorkspaces(await invoke("get_workspaces")); } catch (_) { /* no server yet */ }
}

async function workspaceChange(command, path) {
  $("workspace-error").hidden = true;
  try { renderWorkspaces(await invoke(command, { path })); }
  catch (e) { showError($("workspace-error"), e); }
}

// ---- the images Stigmer uses: size, last use, Remove and Rebuild ----
async function loadImages() {
  let view;
  try { view = await invoke("get_images"); } catch (_) { return; }
  $("images-body").replaceChildren(...view.images.map((i) => {
    const cell = (text, cls) => el("td", { textContent: text, className: cls || "" });
    const size = i.present === null ? "engine not available" : i.present ? humanBytes(i.size_bytes || 0) : "not here";
    const used = i.last_used_ms ? new Date(i.last_used_ms).toLocaleString() : "never";
    const act = async (command, btn) => {
      $("images-error").hidden = true;
      btn.disabled = true;
      try { await invoke(command, { image: i.image }); await loadImages(); }
      catch (e) { showError($("images-error"), e); btn.disabled = false; }
    };
    const actions = el("div", { className: "row" });
    if (i.present) {
      const remove = button("Remove", () => act("remove_image", remove), "secondary small");
      remove.setAttribute("aria-label", `Remove ${i.image}`);
      actions.append(remove);
    }
    const again = button(i.buildable ? (i.present ? "Rebuild" : "Build") : (i.present ? "Download again" : "Download"), () => act("remake_image", again), "secondary small");
    again.setAttribute("aria-label", `${again.textContent} ${i.image}`);
    actions.append(again);
    return el("tr", {}, el("td", {}, el("code", { textContent: i.image })), cell(i.used_for.join(", ")), cell(size, i.present ? "yes" : "no"), cell(used), el("td", {}, actions));
  }));
}

// ---- tools ----
async function loadTools(refresh) {
  try {
    const report = await invoke("get_tools", { refresh });
    $("tools-body").replaceChildren(...report.tools.map((t) => {
      const cell = (text, cls) => el("td", { textContent: text, className: cls || "" });
      return el("tr", {}, cell(t.name), cell(t.found ? (t.version || "installed") : "not installed", t.found ? "yes" : "no"),
        cell(t.in_basic ? "yes" : "—", t.in_basic ? "yes" : "no"), cell(t.in_full ? "yes" : "—", t.in_full ? "yes" : "no"));
    }));
    const missingBasic = report.tools.filter((t) => t.in_basic && !t.found).map((t) => t.name);
    $("tools-advice").textContent = missingBasic.length === 0
      ? "All the everyday tools are installed here: Local is fine."
      : `Not installed here: ${missingBasic.join(", ")}. Install them, or use the Basic sandbox.`;
  } catch (e) {
    $("tools-advice").textContent = "Tools are listed once the server runs.";
  }
}

// ---- updates ----
function renderUpdate(u) {
  if (!u) return;
  const text = $("update-text");
  $("update-install").hidden = u.state !== "available";
  $("update-bar").hidden = u.state !== "downloading";
  $("nav-update").hidden = u.state !== "available";
  $("update-notes").hidden = !u.notes;
  $("update-notes-text").textContent = u.notes || "";
  if (u.state === "downloading" && u.total) $("update-bar").value = (100 * u.done) / u.total;
  text.textContent = {
    idle: `Version ${u.current}.`,
    checking: `Version ${u.current}. Checking for updates…`,
    up_to_date: `Version ${u.current} is the latest.`,
    available: `Version ${u.version} is available (you have ${u.current}).`,
    downloading: `Downloading version ${u.version}…`,
    installing: `Installing version ${u.version}; Stigmer restarts by itself.`,
    failed: `Version ${u.current}. ${u.message || "The update did not work; nothing changed."}`,
  }[u.state] || `Version ${u.current}.`;
}

// ---- logs ----
function addLog(line) {
  const pre = $("log-lines");
  pre.append(line + "\n");
  while (pre.childNodes.length > MAX_LOG_LINES) pre.firstChild.remove();
  pre.scrollTop = pre.scrollHeight;
}

// ---- first run ----
// No container engine: the first-run page offers the protection that needs none, once the
// server said this computer can give it (the model follows the server as it starts).
function offerProtection(m) {
  if ($("view-welcome").hidden || $("welcome-protect-on").dataset.chosen) return;
  $("welcome-protect").hidden = !(m && m.tier === "local" && m.engine && m.engine !== "connected" && m.protection_available);
}

async function welcome() {
  showView("welcome");
  $("nav").hidden = true;
  const list = (await invoke("list_agents").catch(() => [])).filter((a) => a.state !== "not_found");
  const draw = async () => {
    const fresh = (await invoke("list_agents").catch(() => [])).filter((a) => a.state !== "not_found");
    $("welcome-agents").replaceChildren(...fresh.map((a) => agentItem(a, draw)));
  };
  $("welcome-agents").replaceChildren(...list.map((a) => agentItem(a, draw)));
  $("welcome-none").hidden = list.length > 0;
  offerProtection(await invoke("get_model").catch(() => null));
  $("welcome-protect-on").onclick = async () => {
    $("welcome-protect-on").dataset.chosen = "1";
    await setMode("protected");
    const on = model && model.tier === "protected";
    $("welcome-protect-on").hidden = on;
    $("welcome-protect-done").hidden = !on;
  };
  $("welcome-done").onclick = async () => {
    await invoke("set_prefs", { prefs: { ...(await invoke("get_prefs")), welcomed: true } });
    $("nav").hidden = false;
    showView("home");
  };
}

async function init() {
  for (const t of document.querySelectorAll(".tab")) t.addEventListener("click", () => showView(t.dataset.view));
  $("server-toggle").addEventListener("click", async () => {
    const running = model && model.server.state === "running";
    try { render(await invoke(running ? "stop_server" : "start_server")); }
    catch (e) { showError($("mode-error"), e); }
  });
  for (const r of document.querySelectorAll("input[name=tier]")) {
    r.addEventListener("change", () => {
      if (r.value === "custom") {
        $("custom-row").dataset.open = "1";
        $("custom-row").hidden = false;
        $("custom-image").focus();
        customShown();
      } else {
        delete $("custom-row").dataset.open;
        setMode(r.value);
      }
    });
  }
  const applyCustom = async () => {
    const image = $("custom-image").value.trim();
    const why = await invoke("check_image", { image });
    if (why) {
      $("custom-image").setAttribute("aria-invalid", "true");
      showError($("mode-error"), { code: "INVALID_SETTING", message: `"${image}" is not an image name: ${why}. Use a name like my-sandbox:latest or ghcr.io/org/image:tag` });
      return;
    }
    $("custom-image").removeAttribute("aria-invalid");
    setMode("custom", image);
  };
  $("custom-apply").addEventListener("click", applyCustom);
  $("custom-image").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); applyCustom(); } });

  $("try-form").addEventListener("submit", async (e) => {
    e.preventDefault();
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
      const run = await invoke("run_command", { shell: $("try-input").value, onOutput: channel });
      const o = run.outcome;
      const cut = skipped ? ` · ${humanBytes(skipped)} of output not shown (the full head and tail are in Activity)` : "";
      if (run.error) showError($("try-result"), run.error);
      else $("try-result").textContent = `${o.timed_out ? "timed out" : "exit code " + o.exit_code} · ${o.duration_ms.toFixed(0)} ms · ${run.mode === "local" ? "ran locally" : run.mode === "protected" ? "ran locally, protected" : "ran in " + run.image}${cut}`;
    } catch (err) {
      showError($("try-result"), err);
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
  $("cli-install").addEventListener("click", () => invoke("install_cli").then(renderCli).catch((e) => showError($("cli-text"), e)));
  $("update-check").addEventListener("click", () => invoke("check_update").then(render).catch((e) => showError($("update-text"), e)));
  $("update-install").addEventListener("click", () => invoke("install_update").catch((e) => showError($("update-text"), e)));

  const prefs = await invoke("get_prefs");
  const boxes = { "pref-start": "start_server_on_launch", "pref-login": "start_at_login", "pref-tray": "close_to_tray", "pref-updates": "check_updates" };
  for (const [id, key] of Object.entries(boxes)) {
    $(id).checked = prefs[key];
    $(id).addEventListener("change", async () => {
      const p = await invoke("get_prefs");
      p[key] = $(id).checked;
      await invoke("set_prefs", { prefs: p });
    });
  }

  await listen("stigmer://model", (e) => {
    const was = model && model.server.state;
    render(e.payload);
    if (was !== "running" && e.payload.server.state === "running") { loadWorkspaces(); loadRuns(); loadNetwork(); }
    else if (model && e.payload.network && document.querySelector("input[name=net]:checked")?.value !== e.payload.network) loadNetwork();
  });
  await listen("stigmer://events", (e) => onEvents(e.payload));
  setupActivity();
  setupNetwork();
  setupCustom(setMode);
  await listen("stigmer://log", (e) => addLog(e.payload));
  await listen("stigmer://show-view", (e) => openView(e.payload));

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
  if (model.server.state === "running") { loadWorkspaces(); loadRuns(); loadNetwork(); }
  if (!prefs.welcomed) await welcome();
  else { const v = await invoke("take_pending_view"); if (v) openView(v); }
  // Drawn: the window may show now (never a blank one).
  invoke("page_ready");
}

// The server's events: runs go to Activity, the rest reload what they change.
function onEvents(batch) {
  for (const ev of batch.events) {
    if (runEvent(ev)) continue;
    if (ev.type === "workspace_refused" || ev.type === "workspaces_changed") loadWorkspaces();
    else if (ev.type === "clients_changed") loadClients();
    else if (ev.type === "network_blocked" || ev.type === "network_changed") loadNetwork();
    else if (ev.type === "image_finished") {
      customImageFinished(ev);
      if (!$("view-sandbox").hidden) loadImages();
    }
  }
}

// A view the tray asked for; `custom-image` asks for the image name on Home.
function openView(v) {
  if (v !== "custom-image") return showView(v);
  showView("home");
  const r = document.querySelector("input[name=tier][value=custom]");
  r.checked = true;
  r.dispatchEvent(new Event("change"));
}

// The desktop benchmark times the Activity's loads through this.
window.__stigmer = { loadRuns };

init();
