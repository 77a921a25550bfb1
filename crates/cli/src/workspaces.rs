//! `stigmer workspaces list|add|remove`: through the running server when there is one (the
//! change applies at once), else in the config file.

use std::path::{Path, PathBuf};
use stigmer_protocol::routes;
use stigmer_protocol::status::{FolderBody, WorkspacesView};

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
            let view: WorkspacesView = match &client {
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
                    let body = FolderBody { path: dir.clone() };
                    let _: WorkspacesView = c.post(routes::WORKSPACES, &body).await?;
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
                        let body = FolderBody { path: form.clone() };
                        let _: WorkspacesView = c.post(routes::WORKSPACES_REMOVE, &body).await?;
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
fn from_file(paths: &Paths) -> Result<WorkspacesView> {
    let resolved = settings::resolve(paths, &Overrides::default())?;
    Ok(WorkspacesView {
        workspaces: resolved.settings.sandbox_workspaces,
        scratch: paths.scratch_dir(),
        refused: Vec::new(),
    })
}

fn print_list(view: &WorkspacesView) {
    if view.workspaces.is_empty() {
        println!("No folder added yet: `stigmer workspaces add DIR` allows one.");
    } else {
        println!("Sandboxed commands may work in (read-write):");
        for w in &view.workspaces {
            println!("  {}", w.display());
        }
    }
    println!(
        "and in the folder an agent's session was started in, and the scratch folder {}.",
        view.scratch.display()
    );
    if !view.refused.is_empty() {
        println!("Refused lately:");
        for r in &view.refused {
            println!(
                "  {} ({}): {}",
                r.refusal.folder.display(),
                r.client.as_deref().unwrap_or("unknown client"),
                r.refusal.reason
            );
        }
    }
}
