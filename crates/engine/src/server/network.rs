//! `/v1/sandbox/network`: the sandbox's network policy, its allowlist and the connections it
//! refused lately (the window offers to allow their host). Only the user changes these: an
//! agent's request never names a network.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use stigmer_protocol::network::{HostBody, NetworkChange, NetworkView};

use super::reply::{ApiError, ApiJson};
use super::AppState;
use crate::error::{Error, ErrorCode};
use crate::events::Event;
use crate::settings::{self, Value};

async fn view(state: &AppState) -> NetworkView {
    let s = state.settings();
    let mut view = state
        .sandbox
        .network_view(s.sandbox_network, &s.sandbox_allow);
    view.proxy_pid = state.sandbox.proxy_pid().await;
    view
}

pub async fn get(State(state): State<Arc<AppState>>) -> Json<NetworkView> {
    Json(view(&state).await)
}

/// Change the policy: saved, then applied to the next command (containers made under the old
/// policy are removed once idle).
pub async fn set(
    State(state): State<Arc<AppState>>,
    ApiJson(change): ApiJson<NetworkChange>,
) -> Result<Json<NetworkView>, ApiError> {
    let policy = change.policy;
    let value = Value::Network(policy);
    {
        let _write = state.settings_write_lock.lock().await;
        let (mut file, _) = settings::ConfigFile::load(&state.paths.config_file())?;
        file.set(&value);
        file.save()?;
        state.settings.write().sandbox_network = policy;
    }
    let removed = state.sandbox.retire_other_networks(policy).await;
    tracing::info!(%policy, removed, "sandbox network policy changed");
    announce(&state);
    Ok(Json(view(&state).await))
}

pub async fn allow(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<HostBody>,
) -> Result<Json<NetworkView>, ApiError> {
    edit(&state, &body.host, true).await?;
    Ok(Json(view(&state).await))
}

pub async fn disallow(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<HostBody>,
) -> Result<Json<NetworkView>, ApiError> {
    edit(&state, &body.host, false).await?;
    Ok(Json(view(&state).await))
}

/// Validate, save (serialized with other settings writes), give the proxy the new list.
async fn edit(state: &AppState, host: &str, add: bool) -> Result<(), Error> {
    if !add && host.trim().is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidRequest,
            "name the host to remove from the allowlist",
        ));
    }
    let list = {
        let _write = state.settings_write_lock.lock().await;
        let list = settings::edit_allowlist_in_file(&state.paths, host, add)?;
        state.settings.write().sandbox_allow = list.clone();
        list
    };
    state.sandbox.set_allowlist(&list).await;
    tracing::info!(host, add, "sandbox allowlist changed");
    announce(state);
    Ok(())
}

fn announce(state: &AppState) {
    let s = state.settings();
    state.bus.publish(Event::NetworkChanged {
        policy: s.sandbox_network,
        allow: s.sandbox_allow,
    });
}
