// What sandboxed commands may reach: the policy, the hosts the user allowed, and the
// connections refused lately, live, each with an "Allow" button. Agents cannot change any of
// it.
import { $, button, el, invoke, showError } from "./dom.js";

function renderNetwork(view) {
  for (const r of document.querySelectorAll("input[name=net]")) r.checked = r.value === view.policy;
  $("allow-list").replaceChildren(...view.allow.map((host) => {
    const remove = button("Remove", () => networkChange("disallow_host", { host }), "secondary small");
    remove.setAttribute("aria-label", `Stop allowing ${host}`);
    return el("li", {}, el("code", { textContent: host }), remove);
  }));
  $("allow-empty").hidden = view.allow.length > 0;
  $("blocked-list").replaceChildren(...view.blocked.map((b) => {
    const by = b.command ? ` (by ${b.command})` : "";
    const row = el("div", { className: "row" }, el("span", { className: "muted", textContent: `${b.reason}${by}` }));
    if (b.can_allow) row.append(button(`Allow ${b.host}`, () => networkChange("allow_host", { host: b.host }), "small"));
    const where = b.port === 80 || b.port === 443 ? b.host : `${b.host}:${b.port}`;
    return el("li", { className: "refused" }, el("code", { textContent: `blocked: ${where}` }), row);
  }));
  $("blocked-box").hidden = view.blocked.length === 0;
  const allowable = view.policy === "allowlist" ? view.blocked.filter((b) => b.can_allow).length : 0;
  $("nav-blocked").hidden = allowable === 0;
  $("nav-blocked").textContent = allowable;
}

export async function loadNetwork() {
  try { renderNetwork(await invoke("get_network")); } catch (_) { /* no server yet */ }
}

async function networkChange(command, args) {
  $("network-error").hidden = true;
  try { renderNetwork(await invoke(command, args)); }
  catch (e) { showError($("network-error"), e); loadNetwork(); }
}

export function setupNetwork() {
  for (const r of document.querySelectorAll("input[name=net]")) {
    r.addEventListener("change", () => networkChange("set_network", { policy: r.value }));
  }
  $("allow-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const host = $("allow-input").value;
    $("network-error").hidden = true;
    try {
      renderNetwork(await invoke("allow_host", { host }));
      $("allow-input").value = "";
      $("allow-input").removeAttribute("aria-invalid");
    } catch (err) {
      $("allow-input").setAttribute("aria-invalid", "true");
      showError($("network-error"), err);
    }
  });
}
