//! The container engine connection: made when needed, noticed when lost, picked up again
//! when it returns; and what the window and `stigmer sandbox status` show of it.

use bollard::Docker;

use super::connect::{self, EngineState};
use super::containers::{self};
use super::{container_view, images, Sandbox, SandboxSpec, SandboxStatus};
use crate::error::Result;

impl Sandbox {
    /// The engine, connecting (again) when needed. A lost engine is noticed here and a
    /// returning one is picked up without restarting stigmer.
    pub async fn docker(&self) -> Result<Docker> {
        let mut conn = self.conn.lock().await;
        if let Some((docker, _)) = conn.as_ref() {
            if docker.ping().await.is_ok() {
                return Ok(docker.clone());
            }
            tracing::warn!("the container engine stopped answering; looking for it again");
            *conn = None;
        }
        let (docker, info) = connect::connect().await?;
        *self.same_kernel.lock().await = None;
        tracing::info!(kind = %info.kind, version = %info.version, endpoint = %info.endpoint, "container engine connected");
        *conn = Some((docker.clone(), info));
        Ok(docker)
    }

    pub async fn engine_state(&self) -> EngineState {
        match self.docker().await {
            Ok(_) => match self.conn.lock().await.as_ref() {
                Some((_, info)) => connect::connected_state(info.clone()),
                None => connect::unavailable_state(&connect::EngineError {
                    reason: connect::Unavailable::NotRunning,
                    message: "the container engine went away".into(),
                }),
            },
            Err(_) => match connect::connect().await {
                Ok((_, info)) => connect::connected_state(info),
                Err(e) => connect::unavailable_state(&e),
            },
        }
    }

    pub async fn status(&self, spec: &SandboxSpec) -> SandboxStatus {
        let engine = self.engine_state().await;
        let docker = if engine.engine.is_some() {
            self.docker().await.ok()
        } else {
            None
        };
        let (present, size, list) = match &docker {
            Some(d) => (
                images::present(d, &spec.image).await.ok(),
                images::size(d, &spec.image).await,
                containers::list_own(d, &self.owner.home)
                    .await
                    .unwrap_or_default(),
            ),
            None => (None, None, Vec::new()),
        };
        SandboxStatus {
            engine,
            tier: spec.tier(),
            image: spec.image.clone(),
            image_present: present,
            image_size_bytes: size,
            containers: list.into_iter().map(container_view).collect(),
        }
    }

    /// The engine's architecture (`amd64`...), as it said when connecting.
    pub(super) async fn engine_arch(&self) -> String {
        match self.conn.lock().await.as_ref() {
            Some((_, info)) => info.arch.clone(),
            None => std::env::consts::ARCH.to_string(),
        }
    }
}
