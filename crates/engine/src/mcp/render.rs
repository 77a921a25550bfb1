//! Tool results as a model reads them: a short text, plus the same facts as structured JSON.

use std::path::PathBuf;

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{json, Value};

use crate::runs::{OutputSummary, RunState, RunSummary, HEAD_BYTES};
use crate::spool::OutputPage;

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
    let mut head = format!(
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
    });
    result(text, structured, false)
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

/// The result of `get_environment`, from `GET /v1/status` and `GET /v1/tools`.
pub fn environment(status: &Value, tools: &Value, session: Option<PathBuf>) -> CallToolResult {
    let server_default = status["default_cwd"].as_str().map(PathBuf::from);
    let default_cwd = session
        .clone()
        .or_else(|| server_default.clone())
        .unwrap_or_default();
    let mode = status["mode"].as_str().unwrap_or("local");
    let tier = status["tier"].as_str().unwrap_or("local");
    let image = status["image"].as_str().unwrap_or_default();
    let engine = &status["engine"];
    let list = tools["tools"].as_array().cloned().unwrap_or_default();
    let flag = |t: &Value, k: &str| t[k].as_bool().unwrap_or(false);
    // Host tools are what local commands see; in the sandbox the image decides.
    let (available, tools_note): (Vec<&Value>, String) = match tier {
        "local" => (
            list.iter().filter(|t| flag(t, "found")).collect(),
            "installed on this computer".to_string(),
        ),
        "basic" => (
            list.iter().filter(|t| flag(t, "in_basic")).collect(),
            format!("in the basic sandbox image {image}"),
        ),
        _ => (
            Vec::new(),
            format!("unknown: the custom image {image} decides; check with `command -v NAME`"),
        ),
    };
    let names: Vec<String> = available
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap_or_default();
            match t["version"].as_str().filter(|_| tier == "local") {
                Some(v) => format!("{name} {v}"),
                None => name.to_string(),
            }
        })
        .collect();
    let missing: Vec<&str> = if tier == "custom" {
        Vec::new()
    } else {
        list.iter()
            .filter(|t| !available.iter().any(|a| a["name"] == t["name"]))
            .filter_map(|t| t["name"].as_str())
            .collect()
    };
    let env = status["command_env"]["set"].clone();
    // What a sandboxed command can see: its workspace, nothing else of the host.
    let mut workspaces: Vec<String> = session
        .iter()
        .map(|p| {
            crate::sandbox::workspace::session_root(p)
                .display()
                .to_string()
        })
        .collect();
    workspaces.extend(
        status["workspaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::to_string)),
    );
    if mode == "sandbox" {
        workspaces.extend(server_default.map(|p| p.display().to_string()));
    }
    workspaces.dedup();
    let where_ = if mode == "sandbox" {
        format!(
            "sandbox mode: commands run in a container of image {image}. The container sees only \
             the project folder of the working directory (its .git root, else the folder itself), \
             read-write, at the same path; nothing else of the user's computer. The working \
             directory must lie in a folder the user allowed: {}. Any other folder is refused \
             with WORKSPACE_NOT_ALLOWED: do not retry elsewhere, ask the user",
            workspaces.join(", ")
        )
    } else {
        "local mode: commands run directly on the user's computer, with no confinement: they \
         can read and change whatever the user can"
            .to_string()
    };
    let mut text = format!(
        "{where_}.\ncontainer engine: {} ({})\ndefault working directory: {}\ntools {tools_note}: {}",
        engine["state"].as_str().unwrap_or("unknown"),
        engine["message"].as_str().unwrap_or_default(),
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
    let structured = json!({
        "mode": mode,
        "tier": tier,
        "image": (mode == "sandbox").then_some(image),
        "engine": engine,
        "default_cwd": default_cwd,
        "workspaces": (mode == "sandbox").then_some(workspaces),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "tools": available,
        "tools_source": tools_note,
        "default_env": env,
        "default_timeout_secs": super::AGENT_DEFAULT_TIMEOUT_SECS,
        "max_timeout_secs": super::AGENT_MAX_TIMEOUT_SECS,
        "version": status["version"],
    });
    result(text, structured, false)
}
