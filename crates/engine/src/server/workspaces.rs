//! `/v1/workspaces`: the folders sandboxed commands may work in, as the user allowed them,
//! and the requests refused lately (the window offers to allow their folder).

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use stigmer_protocol::status::{FolderBody, WorkspacesView};

use super::reply::{ApiError, ApiJson};
use super::AppState;
use crate::error::{Error, ErrorCode};
use crate::events::Event;
use crate::settings;

fn view(state: &AppState) -> WorkspacesView {
    WorkspacesView {
        workspaces: state.settings().sandbox_workspaces,
        scratch: state.sandbox.scratch().to_path_buf(),
        refused: state.sandbox.refusals(),
    }
}

pub async fn list(State(state): State<Arc<AppState>>) -> Json<WorkspacesView> {
    Json(view(&state))
}

/// Allow a folder: it must exist and not be one sandbox mode never mounts. Saved in the
/// config file and applied at once; the next run in it works.
pub async fn add(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<FolderBody>,
) -> Result<Json<WorkspacesView>, ApiError> {
    let dir = state.sandbox.never_mounted().await.allowable(&body.path)?;
    edit(&state, &dir, true).await?;
    state.sandbox.forget_refusals_in(&dir);
    Ok(Json(view(&state)))
}

/// Stop allowing a folder; the next run in it is refused. Removing one that is not in the
/// list changes nothing.
pub async fn remove(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<FolderBody>,
) -> Result<Json<WorkspacesView>, ApiError> {
    if !body.path.is_absolute() {
        return Err(ApiError(Error::new(
            ErrorCode::InvalidRequest,
            format!(
                "{}: give the folder as an absolute path",
                body.path.display()
            ),
        )));
    }
    edit(&state, &body.path, false).await?;
    Ok(Json(view(&state)))
}

/// Save the change (serialized with other settings writes), then apply it and announce it.
async fn edit(state: &AppState, dir: &Path, add: bool) -> Result<(), Error> {
    let list = {
        let _write = state.settings_write_lock.lock().await;
        let list = settings::edit_workspaces_in_file(&state.paths, dir, add)?;
        state.settings.write().sandbox_workspaces = list.clone();
        list
    };
    tracing::info!(folder = %dir.display(), add, "sandbox workspaces changed");
    state
        .bus
        .publish(Event::WorkspacesChanged { workspaces: list });
    Ok(())
}
