// A run's changes in Activity: the files it changed, a readable diff of each text file, and
// "Undo this command". A file changed again since stops the undo: the user chooses to undo
// the later commands too (newest first), to keep their changes, or to put the files back
// anyway. File contents are shown as text, never as markup.
import { button, el, humanBytes, invoke, showError } from "./dom.js";

const WORDS = { added: "added", removed: "removed", modified: "changed", mode: "permissions changed", renamed: "renamed", replaced: "replaced" };
const PROBLEMS = {
  changed_since: "changed again since",
  not_kept: "its earlier content was not kept",
  generated: "a generated folder, left as it is",
  overlapped: "another command, or you, worked in the folder meanwhile",
  failed: "could not be put back",
};

// Open (or close) the changes of the run drawn in `li`.
export async function toggleChanges(li, id) {
  const box = li.querySelector(".changes");
  const toggle = li.querySelector(".changes-toggle");
  box.hidden = !box.hidden;
  toggle.textContent = box.hidden ? "Changes" : "Hide changes";
  if (box.hidden) return;
  box.replaceChildren(el("p", { className: "muted", textContent: "Loading…" }));
  let d;
  try {
    d = await invoke("get_run_diff", { id });
  } catch (e) {
    box.replaceChildren();
    showError(box.appendChild(el("p", { className: "error" })), e);
    return;
  }
  if (!d.recorded) {
    box.replaceChildren(el("p", { className: "muted", textContent: `Not recorded: ${d.reason || "no reason kept"}.` }));
    return;
  }
  const list = el("ul", { className: "files" });
  for (const f of d.files) list.append(fileItem(f));
  const status = el("p", { className: "muted undo-status", hidden: true });
  const undo = button("Undo this command", () => undoRun(id, "refuse", status, undo), "small undo");
  undo.title = "Put every file this command changed back as it was before it ran";
  const notes = [];
  if (d.overlapped) notes.push("Another command, or you, worked in this folder while it ran: their changes are listed too.");
  if (d.unkept) notes.push(d.unkept.charAt(0).toUpperCase() + d.unkept.slice(1) + ".");
  box.replaceChildren(
    el("p", { className: "muted", textContent: `In ${d.folder}:` }),
    ...notes.map((n) => el("p", { className: "muted", textContent: n })),
    list,
    el("div", { className: "actions" }, undo),
    status,
  );
}

function fileItem(f) {
  const how = WORDS[f.change] || f.change;
  const name = f.from ? `${f.from} → ${f.path}` : f.path;
  const counts = f.diff ? ` (+${f.added_lines} −${f.removed_lines})` : "";
  const sizes = [f.before_size, f.after_size].filter((n) => n != null).map(humanBytes).join(" → ");
  const label = `${name}: ${how}${counts}${!f.diff && sizes ? ", " + sizes : ""}`;
  if (!f.diff) {
    return el("li", {}, el("span", { textContent: label }), f.note ? el("span", { className: "muted", textContent: ` · ${f.note}` }) : "");
  }
  const pre = el("pre", { className: "output diff" });
  for (const line of f.diff.split("\n")) {
    const cls = line.startsWith("+++") || line.startsWith("---") ? "meta" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "meta" : "";
    pre.append(el("span", { className: cls, textContent: line + "\n" }));
  }
  return el("li", {}, el("details", {}, el("summary", { textContent: label }), pre));
}

// Undo `id`; with files changed since, say which and offer the choices.
async function undoRun(id, later, status, undoButton) {
  undoButton.disabled = true;
  status.hidden = false;
  status.className = "muted undo-status";
  status.replaceChildren("Undoing…");
  let r;
  try {
    r = await invoke("undo_run", { id, later });
  } catch (e) {
    undoButton.disabled = false;
    status.className = "error undo-status";
    showError(status, e);
    return;
  }
  // Empty lists are left out on the wire.
  const [left, conflicts, laterRuns] = [r.left || [], r.conflicts || [], r.later_runs || []];
  if (r.undone) {
    const n = r.restored;
    const leftAs = left.map((f) => `${f.path} (${PROBLEMS[f.problem] || f.problem}${f.detail ? ": " + f.detail : ""})`);
    status.replaceChildren(`Undone: ${n} file${n === 1 ? "" : "s"} put back.` + (leftAs.length ? ` Left as they are: ${leftAs.join(", ")}.` : "") + " The undo is in Activity; undo it to bring the command's changes back.");
    return;
  }
  undoButton.disabled = false;
  status.className = "error undo-status";
  const overlapped = conflicts.some((f) => f.problem === "overlapped");
  const changedSince = conflicts.filter((f) => f.problem === "changed_since").map((f) => f.path);
  const notKept = conflicts.filter((f) => f.problem === "not_kept").map((f) => f.path);
  const choices = el("div", { className: "actions" });
  if (laterRuns.length) {
    choices.append(button(`Undo the ${laterRuns.length} later command${laterRuns.length === 1 ? "" : "s"} too`, () => undoLaterFirst(id, laterRuns, status, undoButton), "small"));
  }
  choices.append(
    button("Keep those files as they are", () => undoRun(id, "keep", status, undoButton), "small secondary"),
    button("Put them back anyway", () => undoRun(id, "overwrite", status, undoButton), "small secondary"),
  );
  const why = overlapped
    ? "Another command, or you, changed files in this folder while this command ran, so which changes were its own cannot be told."
    : [changedSince.length ? `${changedSince.join(", ")} changed after this command.` : "",
       notKept.length ? `What ${notKept.join(", ")} held before was not kept, so it cannot be put back.` : ""].filter(Boolean).join(" ");
  status.replaceChildren(`Nothing was undone. ${why}`, choices);
}

// The later commands first, newest first, then this one: each undo is then clean.
async function undoLaterFirst(id, later, status, undoButton) {
  for (const other of later) {
    let r;
    try {
      r = await invoke("undo_run", { id: other, later: "refuse" });
    } catch (e) {
      status.className = "error undo-status";
      showError(status, e);
      return;
    }
    if (!r.undone) {
      status.replaceChildren(`A later command (${other}) could not be undone cleanly: open it in Activity to choose.`);
      return;
    }
  }
  await undoRun(id, "refuse", status, undoButton);
}
