//! `/v1/sandbox/images`: the images Stigmer uses (the basic one, the custom one, agents'
//! custom ones), each with its size on disk and when it was last used, and the user's Remove
//! and Rebuild (or download again). Only these images: never any other image of the engine.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use stigmer_protocol::clients::ClientTier;
use stigmer_protocol::status::{ImageBody, ImageView, ImagesView};

use super::api::{ApiError, ApiJson};
use super::AppState;
use crate::error::{Error, ErrorCode};
use crate::settings::BASIC_IMAGE;

/// Each image Stigmer uses, with what for.
fn used(state: &AppState) -> BTreeMap<String, Vec<String>> {
    let s = state.settings();
    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    used.entry(BASIC_IMAGE.to_string())
        .or_default()
        .push("Basic sandbox".into());
    if s.sandbox_image != BASIC_IMAGE {
        used.entry(s.sandbox_image.clone())
            .or_default()
            .push("Custom image".into());
    }
    for (name, policy) in &s.clients {
        if let (ClientTier::Custom, Some(image)) = (policy.tier, &policy.image) {
            used.entry(image.clone())
                .or_default()
                .push(format!("Custom image of {name}"));
        }
    }
    used
}

async fn view(state: &AppState) -> ImagesView {
    let mut images = Vec::new();
    for (image, used_for) in used(state) {
        let (present, size_bytes) = state.sandbox.image_facts(&image).await;
        images.push(ImageView {
            last_used_ms: state.runs.history().last_used(&image),
            buildable: image == BASIC_IMAGE,
            image,
            used_for,
            present,
            size_bytes,
        });
    }
    ImagesView { images }
}

fn known(state: &AppState, image: &str) -> Result<(), ApiError> {
    if used(state).contains_key(image) {
        return Ok(());
    }
    Err(ApiError(Error::new(
        ErrorCode::InvalidRequest,
        format!("{image} is not an image Stigmer uses; nothing was changed"),
    )))
}

pub async fn list(State(state): State<Arc<AppState>>) -> Json<ImagesView> {
    Json(view(&state).await)
}

/// Remove one (and its idle containers); refused while a command runs in it.
pub async fn remove(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<ImageBody>,
) -> Result<Json<ImagesView>, ApiError> {
    known(&state, &body.image)?;
    state.sandbox.remove_image(&body.image).await?;
    tracing::info!(image = %body.image, "the user removed a sandbox image");
    Ok(Json(view(&state).await))
}

/// Build the basic image again, or download a custom one again, in the background: progress
/// and the outcome are events, as for any preparation.
pub async fn remake(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<ImageBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    known(&state, &body.image)?;
    let sandbox = state.sandbox.clone();
    tokio::spawn(async move {
        if let Err(e) = sandbox.remake_image(&body.image).await {
            tracing::warn!(image = %body.image, "remaking the image failed: {}", e.message);
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "started": true })),
    ))
}
