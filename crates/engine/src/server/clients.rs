//! Where the server starts runs (the HTTP API and MCP both come here), through the admission
//! pipeline with the user as the one asked; and the endpoints where the user sets each
//! client's tier and rule (`/v1/clients`) and answers approvals (`/v1/approvals`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use stigmer_protocol::clients::{
    Approval, ApprovalsView, ClientChange, ClientView, ClientsView, Decision, DecisionBody, Rule,
    OTHER_CLIENT,
};
use stigmer_protocol::run::RunRequest;

use super::reply::{ApiError, ApiJson};
use super::AppState;
use crate::admission::{self, Approver};
use crate::error::Result;
use crate::events::Event;
use crate::execute::BoxFuture;
use crate::runs::StartedRun;
use crate::settings;

/// Start the run `body` asks for, or say why not, through the one admission pipeline
/// ([`crate::admission`]): the user in the window is who is asked.
pub async fn start(state: &Arc<AppState>, body: RunRequest) -> Result<StartedRun> {
    let settings = state.settings();
    let admitted = admission::check(body, &settings, &state.sandbox)?
        .admit()
        .await?;
    let timeout = Duration::from_secs(settings.approvals_timeout_secs);
    let (approved, decision) = admitted.approve(&AskTheUser(state), timeout).await?;
    if decision == Some(Decision::AlwaysAllow) {
        let client = approved.client().unwrap_or(OTHER_CLIENT).to_string();
        // Allowed either way: a rule that could not be saved does not undo the answer.
        if let Err(e) = always_allow(state, &client).await {
            tracing::warn!(client, "\"always allow\" could not be saved: {}", e.message);
        }
    }
    state.runs.start(approved)
}

/// The user, through the window, the tray or a notification.
struct AskTheUser<'a>(&'a Arc<AppState>);

impl Approver for AskTheUser<'_> {
    fn ask(&self, approval: Approval, timeout: Duration) -> BoxFuture<'_, Result<Decision>> {
        Box::pin(self.0.approvals.ask(approval, timeout))
    }
}

/// "Always allow this agent": its rule becomes `run`, its tier stays.
async fn always_allow(state: &AppState, client: &str) -> Result<()> {
    let _write = state.settings_write_lock.lock().await;
    // Read under the lock: a change the user makes meanwhile is not overwritten.
    let mut policy = state
        .settings()
        .clients
        .get(client)
        .cloned()
        .unwrap_or_default();
    policy.rule = Rule::Run;
    save_locked(state, client, policy)
}

async fn save(
    state: &AppState,
    client: &str,
    policy: stigmer_protocol::clients::ClientPolicy,
) -> Result<()> {
    let _write = state.settings_write_lock.lock().await;
    save_locked(state, client, policy)
}

/// Save a client's policy; the caller holds the settings' write lock.
fn save_locked(
    state: &AppState,
    client: &str,
    policy: stigmer_protocol::clients::ClientPolicy,
) -> Result<()> {
    let clients = settings::set_client_in_file(&state.paths, client, policy)?;
    state.settings.write().clients = clients;
    tracing::info!(client, "the user changed a client's tier or rule");
    state.bus.publish(Event::ClientsChanged);
    Ok(())
}

fn view(state: &AppState) -> ClientsView {
    let configured = state.settings().clients;
    let seen: BTreeSet<String> = state
        .runs
        .history()
        .clients()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let names: BTreeSet<&String> = configured.keys().chain(seen.iter()).collect();
    ClientsView {
        clients: names
            .into_iter()
            .map(|name| ClientView {
                name: name.clone(),
                policy: configured.get(name).cloned().unwrap_or_default(),
                seen: seen.contains(name),
            })
            .collect(),
    }
}

/// `GET /v1/clients`: every client seen in the history or configured.
pub async fn list(State(state): State<Arc<AppState>>) -> Json<ClientsView> {
    Json(view(&state))
}

/// `POST /v1/clients`: the user sets one client's tier and rule (applies to its next command).
pub async fn set(
    State(state): State<Arc<AppState>>,
    ApiJson(change): ApiJson<ClientChange>,
) -> std::result::Result<Json<ClientsView>, ApiError> {
    save(&state, &change.name, change.policy()).await?;
    Ok(Json(view(&state)))
}

/// `GET /v1/approvals`: the commands waiting for the user.
pub async fn pending(State(state): State<Arc<AppState>>) -> Json<ApprovalsView> {
    Json(ApprovalsView {
        pending: state.approvals.pending(),
    })
}

/// `POST /v1/approvals/{id}`: the user's answer.
pub async fn answer(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> std::result::Result<Json<Approval>, ApiError> {
    let approval = state.approvals.answer(&id, body.decision)?;
    tracing::info!(approval = %id, decision = ?body.decision, "the user answered");
    Ok(Json(approval))
}
