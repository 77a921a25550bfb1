// The page's ground level: Tauri's API and the small helpers every module uses. Imports
// nothing of the page's own.

export const { invoke, Channel } = window.__TAURI__.core;
export const { listen } = window.__TAURI__.event;

export const $ = (id) => document.getElementById(id);
export function humanBytes(n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GiB";
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(0) + " KiB";
  return n + " B";
}

export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  e.append(...children);
  return e;
}

export function button(text, onclick, cls = "") {
  return el("button", { type: "button", className: cls, textContent: text, onclick });
}

// A failed command or request, in plain words; the message itself goes under Details.
export function plainError(e) {
  const words = {
    ENGINE_UNAVAILABLE: "The sandbox's container engine (Docker or Podman) is not available.",
    IMAGE_NOT_FOUND: "The sandbox image is not available on this computer.",
    IMAGE_PULL_FAILED: "The sandbox image could not be downloaded.",
    IMAGE_BUILD_FAILED: "The sandbox image could not be built.",
    WORKSPACE_NOT_ALLOWED: "This folder is not one the sandbox may use: see Sandbox, Workspaces.",
    WORKSPACE_CHANGED: "The command's folder was moved, removed or replaced while it was being prepared or waited for your answer; nothing ran. Try again.",
    SERVER_UNAVAILABLE: "The Stigmer server is not answering.",
    CWD_NOT_FOUND: "That folder does not exist.",
  };
  return words[e && e.code] || (e && e.message) || String(e);
}

export function showError(target, e) {
  target.replaceChildren(plainError(e));
  if (e && e.code && plainError(e) !== e.message) {
    target.append(" ", el("details", {}, el("summary", { textContent: "Details" }), `${e.message} (${e.code})`));
  }
  target.hidden = false;
}

export function appendOutput(pre, stream, text, limit) {
  const span = document.createElement("span");
  if (stream === "stderr") span.className = "err";
  span.textContent = text;
  pre.append(span);
  // Keep the tail only: the page stays fast under a flood of output.
  while (pre.textContent.length > limit && pre.firstChild) pre.firstChild.remove();
  pre.scrollTop = pre.scrollHeight;
}

export function decodeBase64(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}
