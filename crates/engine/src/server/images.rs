//! `/v1/sandbox/images`: the images Stigmer uses (the basic one, the custom one, agents'
//! custom ones), each with its size on disk and when it was last used, and the user's Remove
//! and Rebuild (or download again). Only these images: never any other image of the engine.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use stigmer_protocol::clients::ClientTier;
use stigmer_protocol::replies::Started;
use stigmer_protocol::status::{
    BuildBody, ImageBody, ImageView, ImagesView, LocalImagesView, ModeChange,
};

use super::reply::{ApiError, ApiJson};
use super::AppState;
use crate::error::{Error, ErrorCode};
use crate::settings::{Mode, BASIC_IMAGE};

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
) -> Result<(StatusCode, Json<Started>), ApiError> {
    known(&state, &body.image)?;
    let sandbox = state.sandbox.clone();
    tokio::spawn(async move {
        if let Err(e) = sandbox.remake_image(&body.image).await {
            tracing::warn!(image = %body.image, "remaking the image failed: {}", e.message);
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(Started {
            started: true,
            image: None,
        }),
    ))
}

/// Every tagged image of the engine: what a person can pick for the custom tier.
pub async fn local(State(state): State<Arc<AppState>>) -> Result<Json<LocalImagesView>, ApiError> {
    let images = state.sandbox.local_images().await?;
    Ok(Json(LocalImagesView { images }))
}

fn invalid(message: String) -> ApiError {
    ApiError(Error::new(ErrorCode::InvalidRequest, message))
}

/// Build an image from a Dockerfile the user chose, in the background (progress and the
/// outcome are events, as for any preparation); once built it is the custom image and the
/// mode is sandbox. Everything is checked first: a bad request builds and changes nothing.
pub async fn build(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<BuildBody>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    crate::settings::Key::SandboxImage.parse(&body.image, "image")?;
    if body.image == BASIC_IMAGE {
        return Err(invalid(format!(
            "{BASIC_IMAGE} is the basic sandbox's name: give your image a name of its own, such as my-sandbox:latest"
        )));
    }
    let given = std::path::PathBuf::from(&body.dockerfile);
    if !given.is_absolute() {
        return Err(invalid(format!(
            "{}: give the Dockerfile as an absolute path",
            body.dockerfile
        )));
    }
    let file = std::fs::canonicalize(&given)
        .map_err(|e| invalid(format!("{}: no such file ({e})", given.display())))?;
    if !file.is_file() {
        return Err(invalid(format!("{} is not a file", given.display())));
    }
    let dir = file
        .parent()
        .unwrap_or(std::path::Path::new("/"))
        .to_path_buf();
    // The folder is sent whole to the engine, and an image can copy anything of it: never
    // the home folder, its settings folders or the system's.
    if let Some(why) = state.sandbox.never_mounted().await.refuses(&dir) {
        return Err(invalid(format!(
            "{} cannot be a build folder: {why}. Put the Dockerfile in a folder with only what the image needs",
            dir.display()
        )));
    }
    let check = dir.clone();
    tokio::task::spawn_blocking(move || crate::execute::container::context::check_folder(&check))
        .await
        .map_err(|e| ApiError(Error::new(ErrorCode::Internal, e.to_string())))??;
    // The engine must be there now: a 503 is better than a build that fails later.
    state.sandbox.docker().await?;
    let image = body.image.clone();
    tokio::spawn(async move {
        match state.sandbox.build_from(&image, file).await {
            Ok(()) => {
                let change = ModeChange {
                    mode: Some(Mode::Sandbox),
                    image: Some(image.clone()),
                };
                if let Err(e) = super::api::change_mode(&state, &change).await {
                    tracing::warn!(
                        image,
                        "built, but not made the custom image: {}",
                        e.0.message
                    );
                }
            }
            Err(e) => tracing::warn!(image, "building the image failed: {}", e.message),
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(Started {
            started: true,
            image: Some(body.image),
        }),
    ))
}
