//! The images Stigmer uses, as the user manages them in the window: remove one (its idle
//! containers first; never while a command runs in it), or make it again (the basic image
//! rebuilt from its Dockerfile, a custom one downloaded again).

use std::path::PathBuf;

use bollard::query_parameters::{ListImagesOptions, RemoveImageOptions};
use stigmer_protocol::status::LocalImage;

use super::engine_error::engine_error;
use super::images::BuildSource;
use super::{containers, images, Sandbox};
use crate::error::{Error, ErrorCode, Result};
use crate::settings::BASIC_IMAGE;

impl Sandbox {
    /// Remove `image` and this installation's containers made from it.
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        let docker = self.docker().await?;
        let idle: Vec<String> = {
            let mut pool = self.pool.lock();
            if pool.busy_with(image) {
                return Err(Error::new(
                    ErrorCode::InvalidRequest,
                    format!("commands are running in {image}: stop them first (Activity), then remove it"),
                ));
            }
            pool.drain_image(image)
        };
        for id in &idle {
            containers::remove(&docker, id).await;
        }
        // Stopped containers of this installation (a crashed server's) go too.
        for c in containers::list_own(&docker, &self.owner.home)
            .await
            .unwrap_or_default()
        {
            if c.image == image {
                containers::remove(&docker, &c.id).await;
            }
        }
        match docker
            .remove_image(image, None::<RemoveImageOptions>, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) => Err(Error::new(
                ErrorCode::InvalidRequest,
                format!("{image} is used by containers that are not Stigmer's, so it was kept ({message})"),
            )),
            Err(e) => Err(Error::new(
                ErrorCode::EngineUnavailable,
                format!("removing {image} failed: {e}"),
            )),
        }
    }

    /// Make `image` again: the basic image built from its Dockerfile, any other downloaded.
    pub async fn remake_image(&self, image: &str) -> Result<()> {
        if image == BASIC_IMAGE {
            self.build(image).await
        } else {
            self.pull(image).await
        }
    }

    /// Whether `image` is present, and its size: (None, None) when the engine cannot say.
    pub async fn image_facts(&self, image: &str) -> (Option<bool>, Option<u64>) {
        match self.docker().await {
            Ok(d) => (
                images::present(&d, image).await.ok(),
                images::size(&d, image).await,
            ),
            Err(_) => (None, None),
        }
    }

    /// Build `image` from a Dockerfile the user chose (its folder is the context), with
    /// progress events; runs waiting for that image wait for the build.
    pub async fn build_from(&self, image: &str, dockerfile: PathBuf) -> Result<()> {
        let docker = self.docker().await?;
        let gate = self
            .images
            .lock()
            .entry(image.to_string())
            .or_default()
            .clone();
        let mut last = gate.lock().await;
        let cancel = self.downloads.lock().clone();
        let source = BuildSource::File(dockerfile);
        let result = images::build(&docker, image, &source, &self.bus, &cancel).await;
        *last = result
            .as_ref()
            .err()
            .map(|e| (std::time::Instant::now(), e.clone()));
        result
    }

    /// Every tagged image of the engine, by name (for the custom tier's picker).
    pub async fn local_images(&self) -> Result<Vec<LocalImage>> {
        let docker = self.docker().await?;
        let list = docker
            .list_images(None::<ListImagesOptions>)
            .await
            .map_err(engine_error)?;
        let mut images: Vec<LocalImage> = list
            .into_iter()
            .flat_map(|i| {
                let (size, created) = (i.size.max(0) as u64, i.created.max(0) as u64 * 1000);
                i.repo_tags
                    .into_iter()
                    .filter(|t| !t.contains("<none>"))
                    .map(move |image| LocalImage {
                        image,
                        size_bytes: size,
                        created_ms: created,
                    })
            })
            .collect();
        images.sort_by(|a, b| a.image.cmp(&b.image));
        images.dedup_by(|a, b| a.image == b.image);
        Ok(images)
    }
}
