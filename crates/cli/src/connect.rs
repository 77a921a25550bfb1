//! `stigmer connect [list] | AGENT | --remove AGENT`: the agents' MCP configurations, edited
//! the way the app's Connect buttons do.

use stigmer_agents::{AgentStatus, Entry, Places, Problem, State};
use stigmer_engine::{Error, ErrorCode, Result};

use crate::cli::ConnectArgs;

pub fn connect(args: ConnectArgs) -> Result<i32> {
    let places = Places::from_env()
        .ok_or_else(|| Error::new(ErrorCode::ConfigError, "cannot find your home folder"))?;
    let entry = Entry::stigmer(this_program()?);
    let (agent, remove) = match (args.agent.as_deref(), args.remove.as_deref()) {
        (Some(a), None) if a != "list" => (a, false),
        (None, Some(a)) => (a, true),
        _ => {
            let list = stigmer_agents::list(&places, &entry);
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else {
                print_list(&list);
            }
            return Ok(0);
        }
    };
    let agent = stigmer_agents::find(agent).map_err(error)?;
    let result = if remove {
        stigmer_agents::disconnect(&places, agent, &entry)
    } else {
        stigmer_agents::connect(&places, agent, &entry)
    };
    let change = match result {
        Ok(c) => c,
        Err(p @ Problem::Unreadable { .. }) => {
            eprintln!("stigmer: {p} [{}]", ErrorCode::AgentConfigUnreadable);
            if !remove {
                eprintln!(
                    "Paste this into {} yourself:",
                    agent.config_file(&places).display()
                );
                println!("{}", stigmer_agents::snippet(agent, &entry));
            }
            return Ok(1);
        }
        Err(p) => return Err(error(p)),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&change).unwrap_or_default()
        );
        return Ok(0);
    }
    let file = change.status.config_file.display();
    let what = match (remove, change.changed) {
        (false, true) => format!("Connected {}: stigmer added to {file}", agent.name),
        (false, false) => format!("{} was already connected ({file})", agent.name),
        (true, true) => format!("Disconnected {}: stigmer removed from {file}", agent.name),
        (true, false) => format!("{} was not connected ({file})", agent.name),
    };
    println!("{what}");
    if let Some(b) = &change.backup {
        println!("The file as it was: {}", b.display());
    }
    if change.changed && !remove {
        println!("{}", agent.restart);
    }
    Ok(0)
}

/// This `stigmer`, by the full path agents must launch.
fn this_program() -> Result<std::path::PathBuf> {
    std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| Error::internal(format!("cannot tell where this stigmer is: {e}")))
}

fn error(p: Problem) -> Error {
    let code = match p {
        Problem::UnknownAgent(..) | Problem::NotInstalled(..) => ErrorCode::InvalidRequest,
        Problem::Unreadable { .. } => ErrorCode::AgentConfigUnreadable,
        Problem::Io(..) => ErrorCode::ConfigError,
    };
    Error::new(code, p.to_string())
}

fn print_list(list: &[AgentStatus]) {
    for a in list {
        let state = match a.state {
            State::NotFound => "not installed here",
            State::NotConnected => "not connected",
            State::Connected => "connected",
            State::Outdated => "connected to another stigmer (connect again to update)",
            State::Unreadable => "its configuration does not parse",
        };
        let file = if a.state == State::NotFound {
            String::new()
        } else {
            a.config_file.display().to_string()
        };
        println!("{:<16} {:<16} {file}", a.name, state);
        if let Some(p) = &a.problem {
            println!("{:<16} {p}", "");
        }
    }
    println!("\n`stigmer connect AGENT` connects one (ids: claude-desktop, claude-code, cursor, vscode, windsurf, codex).");
}
