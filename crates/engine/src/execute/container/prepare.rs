//! Making a sandbox's image present before its first run (pulled, or the basic one built),
//! one attempt shared by every caller, and cancelling downloads.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{images, Sandbox, SandboxSpec};
use crate::error::Result;

impl Sandbox {
    /// Make the image present (pull, or build the basic one). Concurrent callers share one
    /// attempt; callers that waited behind a failed attempt get its error.
    pub async fn ensure_image(&self, spec: &SandboxSpec) -> Result<()> {
        let docker = self.docker().await?;
        let gate = {
            let mut images = self.images.lock();
            images.entry(spec.image.clone()).or_default().clone()
        };
        let asked = Instant::now();
        let mut last = gate.lock().await;
        if let Some((when, e)) = last.as_ref() {
            if *when > asked {
                return Err(e.clone());
            }
        }
        let cancel = self.downloads.lock().clone();
        let result = images::ensure(
            &docker,
            &spec.image,
            spec.tier(),
            spec.auto_pull,
            &self.bus,
            &cancel,
        )
        .await;
        *last = result.as_ref().err().map(|e| (Instant::now(), e.clone()));
        result
    }

    /// Pull `image` now (`stigmer sandbox pull`).
    pub async fn pull(&self, image: &str) -> Result<()> {
        let docker = self.docker().await?;
        let cancel = self.downloads.lock().clone();
        images::pull(&docker, image, &self.bus, &cancel).await
    }

    /// Build the basic image from its Dockerfile now (`stigmer sandbox build`).
    pub async fn build(&self, image: &str) -> Result<()> {
        let docker = self.docker().await?;
        let cancel = self.downloads.lock().clone();
        images::build_basic(&docker, image, &self.bus, &cancel).await
    }

    /// Stop every download and build in progress; the runs waiting for them fail with a
    /// clear error and nothing runs. Later downloads are not affected.
    pub fn cancel_downloads(&self) {
        let mut token = self.downloads.lock();
        token.cancel();
        *token = CancellationToken::new();
    }
}
