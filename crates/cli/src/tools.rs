//! `stigmer tools`.

use std::time::Duration;
use stigmer_protocol::routes;

use stigmer_engine::paths::{write_atomic, Paths};
use stigmer_engine::tools::{detect, user_path, ToolReport};
use stigmer_engine::Result;

use crate::cli::ToolsArgs;
use stigmer_client::Client;

/// Cached detection results are reused for this long (`--refresh` detects again).
const CACHE_FOR: Duration = Duration::from_secs(600);

pub async fn tools(args: ToolsArgs, paths: &Paths) -> Result<i32> {
    let report = match Client::find(paths)? {
        Some(client) => {
            let q = if args.refresh { "?refresh=true" } else { "" };
            client
                .get::<ToolReport>(&format!("{}{q}", routes::TOOLS))
                .await?
        }
        None => in_process(paths, args.refresh).await,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_table(&report);
    }
    Ok(0)
}

async fn in_process(paths: &Paths, refresh: bool) -> ToolReport {
    let cache = paths.tools_cache_file();
    let now = stigmer_engine::util::now_secs();
    if !refresh {
        let cached = std::fs::read(&cache)
            .ok()
            .and_then(|b| serde_json::from_slice::<ToolReport>(&b).ok())
            .filter(|r| now.saturating_sub(r.detected_at) < CACHE_FOR.as_secs());
        if let Some(r) = cached {
            return r;
        }
    }
    let (path, from_login) = user_path();
    let report = detect(path, *from_login).await;
    if let Ok(json) = serde_json::to_vec(&report) {
        let _ = write_atomic(&cache, &json, false);
    }
    report
}

fn print_table(report: &ToolReport) {
    let yes_no = |b: bool| if b { "yes" } else { "-" };
    println!(
        "{:<10} {:<22} {:<6} {:<5} PATH",
        "TOOL", "LOCAL", "BASIC", "FULL"
    );
    for t in &report.tools {
        let local = match (&t.version, t.found) {
            (Some(v), _) => v.clone(),
            (None, true) => "found".to_string(),
            (None, false) => "-".to_string(),
        };
        let path = t
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        println!(
            "{:<10} {:<22} {:<6} {:<5} {path}",
            t.name,
            local,
            yes_no(t.in_basic),
            yes_no(t.in_full)
        );
    }
    let found = report.tools.iter().filter(|t| t.found).count();
    let basic_missing: Vec<&str> = report
        .tools
        .iter()
        .filter(|t| t.in_basic && !t.found)
        .map(|t| t.name.as_str())
        .collect();
    println!();
    println!(
        "{found} of {} tools found locally (detected in {:.0} ms{}).",
        report.tools.len(),
        report.duration_ms,
        if report.path_from_login_shell {
            ", PATH from your login shell"
        } else {
            ""
        }
    );
    if basic_missing.is_empty() {
        println!("Every tool of the basic sandbox is installed here: local mode is fine.");
    } else {
        println!(
            "Missing here but in the basic sandbox: {}. Install them, or use sandbox mode.",
            basic_missing.join(", ")
        );
    }
}
