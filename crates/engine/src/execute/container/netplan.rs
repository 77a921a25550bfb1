//! Where a sandbox container's network goes, by policy: the engine's bridge (open), nothing
//! (none), or nothing but stigmer's proxy (allowlist). An allowlist container has no network
//! at all, so no resolver, no gateway and no host service is reachable from it; its only way
//! out is its own door to the proxy, a Unix socket in a folder mounted into it read-only,
//! which the helper offers to its commands on the container's loopback.

use std::sync::Arc;

use bollard::Docker;

use crate::network::supervisor::Door;

/// Where the door's folder is mounted in the container.
pub const DOOR_IN_CONTAINER: &str = "/run/stigmer-proxy";
/// Where the helper listens in the container, for the proxy.
pub const PROXY_IN_CONTAINER: &str = "127.0.0.1:3128";

/// The network a container is made on.
#[derive(Debug, Clone)]
pub enum Plan {
    Open,
    None,
    /// No network; the door to the proxy mounted in.
    Allowlist(Arc<Door>),
}

impl Plan {
    pub fn network_mode(&self) -> String {
        match self {
            Plan::Open => "bridge".into(),
            Plan::None | Plan::Allowlist(_) => "none".into(),
        }
    }

    /// The container's environment: the proxy for the allowlist (curl, pip, npm, git and
    /// most tools read these), nothing otherwise.
    pub fn env(&self) -> Vec<String> {
        let Plan::Allowlist(_) = self else {
            return Vec::new();
        };
        let url = format!("http://{PROXY_IN_CONTAINER}");
        let mut env = Vec::new();
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            env.push(format!("{name}={url}"));
        }
        env.push("NO_PROXY=localhost,127.0.0.1,::1".into());
        env.push("no_proxy=localhost,127.0.0.1,::1".into());
        env
    }

    /// The helper's arguments after `serve`: where it offers the proxy and where its door is.
    pub fn helper_args(&self) -> Vec<String> {
        let Plan::Allowlist(_) = self else {
            return Vec::new();
        };
        vec![
            "--proxy".into(),
            PROXY_IN_CONTAINER.into(),
            format!("{DOOR_IN_CONTAINER}/{}", crate::network::proxy::SOCKET_NAME),
        ]
    }

    /// The proxy door's name, for the runs' refusals.
    pub fn door(&self) -> Option<Arc<Door>> {
        match self {
            Plan::Allowlist(door) => Some(door.clone()),
            _ => None,
        }
    }
}

/// Remove the internal network that versions before the doors made (named after the
/// installation); it fails harmlessly while an old container is still on it.
pub async fn remove_old_network(docker: &Docker, home: &str) {
    let name = format!("stigmer-allowlist-{home}");
    if docker.remove_network(&name).await.is_ok() {
        tracing::info!(network = %name, "the old allowlist network was removed");
    }
}
