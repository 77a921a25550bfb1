//! Tool results as a model reads them: a short text, plus the same facts as structured JSON.

use std::path::PathBuf;

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{json, Value};

use crate::runs::{OutputSummary, RunState, RunSummary, HEAD_BYTES};
use stigmer_protocol::mode::Tier;
use stigmer_protocol::run::OutputPage;
use stigmer_protocol::status::{Status, ToolInfo, ToolReport};

fn result(text: String, structured: Value, is_error: bool) -> CallToolResult {
    let mut r = if is_error {
        CallToolResult::error(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    };
    r.structured_content = Some(structured);
    r
}

/// The result of `run_command`. A command that failed or timed out is still a successful
/// call (the agent reads the exit code); a run that could not start is an error.
pub fn run_result(run: &RunSummary) -> CallToolResult {
    let (RunState::Finished, Some(o)) = (run.state, &run.outcome) else {
        let e = run.error.clone().unwrap_or_else(|| {
            crate::Error::internal("the run ended without an outcome; see the server log")
        });
        let text = format!("{}: {}", e.code, e.message);
        return result(text, json!({ "run_id": run.id, "error": e }), true);
    };
    let where_ = match &run.image {
        Some(image) => format!("sandbox mode, image {image}"),
        None => format!("{} mode", run.mode),
    };
    // Stopped by the user: the call is an error the model reads first, with what it printed.
    let stopped = run
        .error
        .as_ref()
        .filter(|e| e.code == crate::ErrorCode::CancelledByUser);
    let mut head = stopped
        .map(|e| format!("{}: {}\n", e.code, e.message))
        .unwrap_or_default();
    head += &format!(
        "exit code {} · {:.2} s · {where_} · run id {}",
        o.shell_exit_code(),
        o.duration_ms / 1000.0,
        run.id
    );
    if o.timed_out {
        head.push_str("\nTIMED OUT: the command was stopped; below is what it printed until then");
    } else if let Some(sig) = o.signal {
        head.push_str(&format!("\nkilled by signal {sig}"));
    } else if o.cancelled {
        head.push_str("\ncancelled");
    }
    head.push_str(&network_note(o));
    head.push_str(&protection_note(run, o));
    let mut text = head;
    for (name, s) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        if s.total_bytes == 0 {
            text.push_str(&format!("\n--- {name}: (empty)"));
            continue;
        }
        text.push_str(&format!("\n--- {name} ---\n"));
        text.push_str(&stream_text(s, &run.id, name));
    }
    let stream_json = |s: &OutputSummary, name: &str| {
        json!({
            "text": stream_text(s, &run.id, name),
            "total_bytes": s.total_bytes,
            "total_lines": s.total_lines,
            "omitted_bytes": s.omitted_bytes,
            "omitted_lines": s.omitted_lines,
            "stored_bytes": s.stored_bytes,
        })
    };
    let structured = json!({
        "run_id": run.id,
        "exit_code": o.shell_exit_code(),
        "signal": o.signal,
        "timed_out": o.timed_out,
        "cancelled": o.cancelled,
        "duration_ms": o.duration_ms,
        "mode": run.mode,
        "image": run.image,
        "cwd": run.cwd,
        "stdout": stream_json(&run.stdout, "stdout"),
        "stderr": stream_json(&run.stderr, "stderr"),
        "error": stopped,
        "network_blocked": o.network_blocked,
        "network_interrupted": o.network_interrupted,
        "host_files": o.host_files,
    });
    result(text, structured, stopped.is_some())
}

/// A protected command that failed on what the confinement refuses (a read-only file system,
/// a permission): one line saying so, so the model asks the user instead of working around it.
fn protection_note(run: &RunSummary, o: &crate::execute::ExecOutcome) -> String {
    const REFUSALS: [&str; 4] = [
        "Read-only file system",
        "Permission denied",
        "Operation not permitted",
        "Network is unreachable",
    ];
    let refused = run.mode == crate::settings::Mode::Protected
        && o.shell_exit_code() != 0
        && REFUSALS
            .iter()
            .any(|r| run.stderr.head.contains(r) || run.stderr.tail.contains(r));
    if !refused {
        return String::new();
    }
    "\nPROTECTION: Stigmer's protected tier refused what the command tried (writes outside the \
     workspace and to its host-run files, secrets, the user's session, the network when off). \
     Do not work around it: if the task needs it, ask the user to allow it in Stigmer (a \
     workspace, the network) or to choose another tier."
        .into()
}

/// What the sandbox's network policy did during the run, so the model stops retrying a host
/// it will never reach (and knows a failure during a proxy restart was not its fault).
pub fn network_note(o: &crate::execute::ExecOutcome) -> String {
    let mut note = String::new();
    if !o.network_blocked.is_empty() {
        note.push_str(&format!(
            "\nNETWORK POLICY: the user's sandbox network policy blocked {}. Retrying will not help; \
             if the task needs it, ask the user to allow it in Stigmer.",
            o.network_blocked.join(", ")
        ));
    }
    if !o.host_files.is_empty() {
        note.push_str(&format!(
            "\nHOST FILES: this command created {}, which programs on the user's computer run or \
             obey; Stigmer told the user. Do not create such files unless the user asked for it.",
            o.host_files.join(", ")
        ));
    }
    if let Some(changed) = &o.changed {
        note.push_str(&format!("\nFILES: this command {changed}."));
    }
    if o.network_interrupted {
        note.push_str(
            "\nNETWORK: the sandbox's network proxy restarted during this command; network calls made \
             meanwhile failed (nothing went out unfiltered). Running it again should work.",
        );
    }
    note
}

/// One stream: all of it, or its head, a marker with exact counts, and its tail.
fn stream_text(s: &OutputSummary, run_id: &str, name: &str) -> String {
    if s.omitted_bytes == 0 {
        return format!("{}{}", s.head, s.tail);
    }
    let readable = if s.stored_bytes == s.total_bytes {
        format!(
            "read them with get_run_output(run_id=\"{run_id}\", stream=\"{name}\", offset={HEAD_BYTES})"
        )
    } else {
        format!(
            "{} of the {} bytes are kept for get_run_output(run_id=\"{run_id}\", stream=\"{name}\")",
            s.stored_bytes, s.total_bytes
        )
    };
    let mut out = s.head.clone();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!(
        "[... {} bytes / {} lines omitted; {readable} ...]\n",
        s.omitted_bytes, s.omitted_lines
    ));
    out.push_str(&s.tail);
    out
}

/// The result of `get_run_output`.
pub fn output_page(page: &OutputPage) -> CallToolResult {
    let more = if page.eof && page.stored_bytes < page.total_bytes {
        format!(
            "end of what is kept: the last {} bytes were not kept",
            page.total_bytes - page.stored_bytes
        )
    } else if page.eof {
        "end of output".to_string()
    } else if page.next_offset == page.offset {
        "nothing more yet: the run is still going".to_string()
    } else {
        format!("next page: offset={}", page.next_offset)
    };
    let text = format!(
        "{} of run {}, bytes {}..{} of {} ({more})\n{}",
        page.stream.name(),
        page.run_id,
        page.offset,
        page.next_offset,
        page.total_bytes,
        page.text
    );
    result(
        text,
        serde_json::to_value(page).unwrap_or(Value::Null),
        false,
    )
}

/// Diff text an agent gets in one answer, at most.
const AGENT_DIFF_TEXT: usize = 64 * 1024;

/// The result of `get_run_changes`: each file the run changed, text files with their diff.
pub fn run_diff(d: &stigmer_protocol::changes::RunDiff) -> CallToolResult {
    use stigmer_protocol::changes::printable;
    let mut text = if !d.recorded {
        format!(
            "what run {} changed was not recorded: {}",
            d.run_id,
            d.reason.as_deref().unwrap_or("no reason kept")
        )
    } else {
        format!(
            "run {} changed {} file{} in {}",
            d.run_id,
            d.files.len(),
            if d.files.len() == 1 { "" } else { "s" },
            d.folder
        )
    };
    let mut cut = 0usize;
    for f in &d.files {
        let head = match (&f.diff, &f.note) {
            (Some(_), _) => format!(
                "\n{} ({}, +{} -{})",
                printable(&f.path),
                f.change.word(),
                f.added_lines,
                f.removed_lines
            ),
            (None, Some(note)) => {
                format!("\n{} ({}): {note}", printable(&f.path), f.change.word())
            }
            (None, None) => format!("\n{} ({})", printable(&f.path), f.change.word()),
        };
        text.push_str(&head);
        if let Some(diff) = &f.diff {
            if text.len() + diff.len() > AGENT_DIFF_TEXT {
                cut += 1;
                continue;
            }
            text.push('\n');
            text.push_str(diff.trim_end_matches('\n'));
        }
    }
    if cut > 0 {
        text.push_str(&format!(
            "\n({cut} diff{} left out: over {} KiB in one answer)",
            if cut == 1 { "" } else { "s" },
            AGENT_DIFF_TEXT / 1024
        ));
    }
    result(text, serde_json::to_value(d).unwrap_or(Value::Null), false)
}

/// The result of `get_environment`, from `GET /v1/status` and `GET /v1/tools`; `session` is
/// the folder the agent's session was started in, if it has one.
pub fn environment(
    status: &Status,
    tools: &ToolReport,
    session: Option<PathBuf>,
) -> CallToolResult {
    let default_cwd = session
        .clone()
        .unwrap_or_else(|| status.default_cwd.clone());
    let image = &status.image;
    // Host tools are what local commands see; in the sandbox the image decides.
    let (available, tools_note): (Vec<&ToolInfo>, String) = match status.tier {
        Tier::Local | Tier::Protected => (
            tools.tools.iter().filter(|t| t.found).collect(),
            "installed on this computer".to_string(),
        ),
        Tier::Basic => (
            tools.tools.iter().filter(|t| t.in_basic).collect(),
            format!("in the basic sandbox image {image}"),
        ),
        Tier::Custom => (
            Vec::new(),
            format!("unknown: the custom image {image} decides; check with `command -v NAME`"),
        ),
    };
    let names: Vec<String> = available
        .iter()
        .map(|t| {
            match t
                .version
                .as_ref()
                .filter(|_| matches!(status.tier, Tier::Local | Tier::Protected))
            {
                Some(v) => format!("{} {v}", t.name),
                None => t.name.clone(),
            }
        })
        .collect();
    let missing: Vec<&str> = if status.tier == Tier::Custom {
        Vec::new()
    } else {
        tools
            .tools
            .iter()
            .filter(|t| !available.iter().any(|a| a.name == t.name))
            .map(|t| t.name.as_str())
            .collect()
    };
    // What a command can see: the server says it; a session's own folder comes on top.
    let mut confinement = status.confinement.clone();
    let mut workspaces = status.allowed_folders.clone();
    if let (Some(dir), false) = (&session, workspaces.is_empty()) {
        let root = crate::execute::container::workspace::session_root(dir);
        confinement.push_str(&format!(
            " This session may also use the folder it was started in: {}.",
            root.display()
        ));
        workspaces.insert(0, root);
    }
    let mut text = format!(
        "{confinement}\ncontainer engine: {} ({})\ndefault working directory: {}\ntools {tools_note}: {}",
        status.engine.state,
        status.engine.message,
        default_cwd.display(),
        if names.is_empty() { "-".to_string() } else { names.join(", ") }
    );
    if !missing.is_empty() {
        text.push_str(&format!("\nnot available: {}", missing.join(", ")));
    }
    text.push_str(&format!(
        "\nstdin is closed and there is no terminal; default timeout {} s. The mode and image are the user's choice (the stigmer app, tray or CLI); agents cannot change them.",
        super::AGENT_DEFAULT_TIMEOUT_SECS
    ));
    let sandboxed = !workspaces.is_empty();
    let structured = json!({
        "mode": status.mode,
        "tier": status.tier,
        "image": sandboxed.then_some(image),
        "engine": status.engine,
        "default_cwd": default_cwd,
        "workspaces": sandboxed.then_some(workspaces),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "tools": available,
        "tools_source": tools_note,
        "default_env": status.command_env.set,
        "default_timeout_secs": super::AGENT_DEFAULT_TIMEOUT_SECS,
        "max_timeout_secs": super::AGENT_MAX_TIMEOUT_SECS,
        "version": status.version,
    });
    result(text, structured, false)
}

#[cfg(test)]
mod network_tests {
    use super::network_note;
    use crate::execute::ExecOutcome;

    #[test]
    fn the_reply_names_blocked_hosts_and_a_proxy_restart() {
        let mut o = ExecOutcome::default();
        assert_eq!(network_note(&o), "");
        o.network_blocked = vec!["pypi.org".into(), "evil.example".into()];
        let note = network_note(&o);
        assert!(
            note.contains("policy blocked pypi.org, evil.example"),
            "{note}"
        );
        assert!(note.contains("Retrying will not help"), "{note}");
        o.network_interrupted = true;
        assert!(network_note(&o).contains("proxy restarted"));
    }
}
