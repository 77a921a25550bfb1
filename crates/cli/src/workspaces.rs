//! `stigmer workspaces list|add|remove`: through the running server when there is one (the
//! change applies at once), else in the config file.

use std::path::{Path, PathBuf};
use stigmer_protocol::routes;

use serde_json::{json, Value};
use stigmer_engine::events::EventBus;
use stigmer_engine::execute::container::Sandbox;
use stigmer_engine::paths::Paths;
use stigmer_engine::settings::{self, Overrides};
use stigmer_engine::{Error, ErrorCode, Result};

use crate::cli::WorkspacesCommand;
use stigmer_client::Client;

pub async fn workspaces(cmd: WorkspacesCommand, paths: &Paths) -> Result<i32> {
    let client = Client::find(paths)?;
    match cmd {
        WorkspacesCommand::List { json } => {
            let view = match &client {
                Some(c) => c.get(routes::WORKSPACES).await?,
                None => from_file(paths)?,
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&view).unwrap_or_default()
                );
            } else {
                print_list(&view);
            }
            return Ok(0);
        }
        WorkspacesCommand::Add { dir } => {
            let dir = absolute(&dir)?;
            match &client {
                Some(c) => {
                    let _: Value = c.post(routes::WORKSPACES, &json!({ "path": dir })).await?;
                }
                None => {
                    let sandbox = Sandbox::new(paths, "cli", EventBus::default());
                    let real = sandbox.never_mounted().await.allowable(&dir)?;
                    settings::edit_workspaces_in_file(paths, &real, true)?;
                }
            }
            println!(
                "allowed: {} (sandboxed commands can read and write it)",
                std::fs::canonicalize(&dir).unwrap_or(dir).display()
            );
        }
        WorkspacesCommand::Remove { dir } => {
            let dir = absolute(&dir)?;
            // Folders are kept with their links resolved: remove the folder as given and as it
            // resolves now.
            let mut forms = vec![dir.clone()];
            forms.extend(std::fs::canonicalize(&dir).ok().filter(|r| *r != dir));
            for form in &forms {
                match &client {
                    Some(c) => {
                        let _: Value = c
                            .post(routes::WORKSPACES_REMOVE, &json!({ "path": form }))
                            .await?;
                    }
                    None => {
                        settings::edit_workspaces_in_file(paths, form, false)?;
                    }
                }
            }
            println!("no longer allowed: {}", dir.display());
        }
    }
    if client.is_none() {
        eprintln!(
            "stigmer: note: saved in {}; a server started later uses it",
            paths.config_file().display()
        );
    }
    Ok(0)
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    if dir.is_absolute() {
        return Ok(dir.to_path_buf());
    }
    std::env::current_dir()
        .map(|here| here.join(dir))
        .map_err(|e| {
            Error::new(
                ErrorCode::CwdNotFound,
                format!("the current directory is not usable ({e}); give an absolute path"),
            )
        })
}

/// What `GET /v1/workspaces` says, from the config file (no server runs).
fn from_file(paths: &Paths) -> Result<Value> {
    let resolved = settings::resolve(paths, &Overrides::default())?;
    Ok(json!({
        "workspaces": resolved.settings.sandbox_workspaces,
        "scratch": paths.scratch_dir(),
        "refused": [],
    }))
}

fn print_list(view: &Value) {
    let list = view["workspaces"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("No folder added yet: `stigmer workspaces add DIR` allows one.");
    } else {
        println!("Sandboxed commands may work in (read-write):");
        for w in &list {
            println!("  {}", w.as_str().unwrap_or_default());
        }
    }
    println!(
        "and in the folder an agent's session was started in, and the scratch folder {}.",
        view["scratch"].as_str().unwrap_or_default()
    );
    let refused = view["refused"].as_array().cloned().unwrap_or_default();
    if !refused.is_empty() {
        println!("Refused lately:");
        for r in &refused {
            println!(
                "  {} ({}): {}",
                r["folder"].as_str().unwrap_or_default(),
                r["client"].as_str().unwrap_or("unknown client"),
                r["reason"].as_str().unwrap_or_default()
            );
        }
    }
}
