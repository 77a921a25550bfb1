//! The images Stigmer uses, as the user manages them in the window: remove one (its idle
//! containers first; never while a command runs in it), or make it again (the basic image
//! rebuilt from its Dockerfile, a custom one downloaded again).

use bollard::query_parameters::RemoveImageOptions;

use super::{containers, images, Sandbox};
use crate::error::{Error, ErrorCode, Result};
use crate::settings::BASIC_IMAGE;

impl Sandbox {
    /// Remove `image` and this installation's containers made from it.
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        let docker = self.docker().await?;
        let idle: Vec<String> = {
            let mut slots = self.slots.lock();
            if slots
                .iter()
                .any(|((i, _, _), s)| i == image && s.active > 0)
            {
                return Err(Error::new(
                    ErrorCode::InvalidRequest,
                    format!("commands are running in {image}: stop them first (Activity), then remove it"),
                ));
            }
            let keys: Vec<_> = slots
                .keys()
                .filter(|(i, _, _)| i == image)
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| slots.remove(&k).and_then(|s| s.id).map(|(id, _)| id))
                .collect()
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
}
