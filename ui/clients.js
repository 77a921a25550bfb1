// The user's say over each agent: commands waiting for an answer (Allow once, Always allow,
// Deny), and per agent where its commands run and whether they run freely, ask first, or are
// refused. Agents cannot change any of it. The choices' names come from the model (the protocol's).
import { $, button, el, invoke, showError } from "./dom.js";
import { current } from "./state.js";
import { loadClientFilter } from "./activity.js";

// ---- commands waiting for the user's answer (from the model: the tray shows them too) ----
// Controls (but tab and newline), zero-width and bidirectional characters, shown as ⟨U+XXXX⟩:
// what the user approves is what runs. The same list as the protocol's is_hidden_char.
const HIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g;
// Runs of blank lines (which push a command's real tail out of sight) are said, not drawn.
function visibleCommand(s) {
  return s.replace(HIDDEN, (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}⟩`)
    .replace(/\n(?:[ \t]*\n){2,}/g, (run) => `\n⟨${run.split("\n").length - 2} blank lines⟩\n`);
}

export function renderWaiting(waiting) {
  const list = waiting || [];
  $("waiting").hidden = list.length === 0;
  const shown = new Set(list.map((a) => a.id));
  for (const li of [...$("waiting-list").children]) if (!shown.has(li.dataset.id)) li.remove();
  for (const a of list) {
    if ($("waiting-list").querySelector(`li[data-id="${a.id}"]`)) continue;
    const place = a.image ? `in the sandbox (${a.image})` : "on this computer";
    const left = el("span", { className: "muted left" });
    const answer = async (decision, btn) => {
      for (const b of li.querySelectorAll("button")) b.disabled = true;
      try { await invoke("answer_approval", { id: a.id, decision }); }
      catch (e) { for (const b of li.querySelectorAll("button")) b.disabled = false; showError(li.querySelector(".error"), e); }
    };
    const lines = a.command.split("\n").length;
    const li = el("li", {},
      el("p", {}, el("strong", { textContent: a.client }), " wants to run",
        lines > 1 ? el("span", { className: "muted", textContent: ` (${lines} lines, all shown)` }) : ""),
      // The whole command, never cut to a fixed height: nothing of it below a fold.
      el("pre", { className: "output small command", textContent: visibleCommand(a.command) }),
      el("p", { className: "muted" }, "in ", el("code", { textContent: a.cwd }), `, ${place}. `, left),
      el("div", { className: "row" },
        button("Allow once", () => answer("allow_once")),
        button(`Always allow ${a.client}`, () => answer("always_allow"), "secondary"),
        button("Deny", () => answer("deny"), "secondary danger")),
      el("p", { className: "error", hidden: true }));
    li.dataset.id = a.id;
    li.dataset.deadline = a.deadline_ms;
    $("waiting-list").append(li);
  }
  tickWaiting();
}

// The time left of each wait, counted down every second.
function tickWaiting() {
  for (const li of $("waiting-list").children) {
    const s = Math.max(0, Math.ceil((Number(li.dataset.deadline) - Date.now()) / 1000));
    li.querySelector(".left").textContent = `No answer within ${s} s means Deny.`;
  }
}
setInterval(tickWaiting, 1000);

// ---- where each agent's commands run, and its rule ----
function select(options, value, label) {
  const s = el("select", {}, ...options.map(([v, t]) => el("option", { value: v, textContent: t })));
  s.setAttribute("aria-label", label);
  s.value = value;
  return s;
}

function clientRow(c) {
  const labels = current().labels;
  const tier = select(labels.client_tiers, c.policy.tier, `Where ${c.name}'s commands run`);
  const rule = select(labels.rules, c.policy.rule, `${c.name}'s rule`);
  const image = el("input", { type: "text", value: c.policy.image || "", placeholder: "ghcr.io/org/image:tag", hidden: c.policy.tier !== "custom" });
  image.setAttribute("aria-label", `${c.name}'s custom image`);
  const error = el("p", { className: "error", hidden: true });
  const save = async () => {
    error.hidden = true;
    image.hidden = tier.value !== "custom";
    if (tier.value === "custom" && !image.value.trim()) { image.focus(); return; }
    const change = { name: c.name, tier: tier.value, rule: rule.value };
    if (tier.value === "custom") change.image = image.value.trim();
    try { renderClients(await invoke("set_client", { change })); }
    catch (e) { showError(error, e); }
  };
  tier.onchange = save;
  rule.onchange = save;
  image.onchange = save;
  const row = el("li", { className: "client" }, el("div", { className: "row" }, el("strong", { className: "grow", textContent: c.name }), tier, image, rule), error);
  row.dataset.client = c.name;
  return row;
}

function renderClients(view) {
  const head = el("li", { className: "row muted small client-head" }, el("span", { className: "grow", textContent: "Agent" }), el("span", { textContent: "Where its commands run · What happens to them" }));
  $("client-list").replaceChildren(...(view.clients.length ? [head] : []), ...view.clients.map(clientRow));
  $("clients-empty").hidden = view.clients.length > 0;
}

export async function loadClients() {
  if (!current()) return; // the choices' names come with the first model
  try { renderClients(await invoke("get_clients")); } catch (_) { /* no server yet */ }
  loadClientFilter();
}
