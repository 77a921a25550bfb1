//! Where a sandbox container's network goes, by policy: the engine's bridge (open), nothing
//! (none), or an internal Docker network whose only way out is stigmer's proxy (allowlist).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use bollard::models::NetworkCreateRequest;
use bollard::Docker;

use super::containers::{LABEL_HOME, LABEL_MANAGED};
use super::engine_error::engine_error;
use crate::error::{Error, ErrorCode, Result};

/// The network a container is made on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Open,
    None,
    /// On `network` (internal: no route out), with `proxy` (on its gateway) as the only way.
    Allowlist {
        network: String,
        proxy: SocketAddr,
    },
}

impl Plan {
    pub fn network_mode(&self) -> String {
        match self {
            Plan::Open => "bridge".into(),
            Plan::None => "none".into(),
            Plan::Allowlist { network, .. } => network.clone(),
        }
    }

    /// The container's environment: the proxy for the allowlist (curl, pip, npm, git and
    /// most tools read these), nothing otherwise.
    pub fn env(&self) -> Vec<String> {
        let Plan::Allowlist { proxy, .. } = self else {
            return Vec::new();
        };
        let url = format!("http://{proxy}");
        let mut env = Vec::new();
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            env.push(format!("{name}={url}"));
        }
        env.push("NO_PROXY=localhost,127.0.0.1,::1".into());
        env.push("no_proxy=localhost,127.0.0.1,::1".into());
        env
    }
}

/// The name of this installation's internal network.
pub fn internal_name(home: &str) -> String {
    format!("stigmer-allowlist-{home}")
}

/// This installation's internal network (made when missing) and its gateway, the host's
/// address on it, where the proxy listens.
pub async fn internal_network(docker: &Docker, home: &str) -> Result<(String, IpAddr)> {
    let name = internal_name(home);
    let found = match docker.inspect_network(&name, None).await {
        Ok(n) => n,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            let request = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                internal: Some(true),
                labels: Some(HashMap::from([
                    (LABEL_MANAGED.to_string(), "true".to_string()),
                    (LABEL_HOME.to_string(), home.to_string()),
                ])),
                ..Default::default()
            };
            match docker.create_network(request).await {
                Ok(_) => {}
                // Made by a concurrent first run.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) => {}
                Err(e) => return Err(engine_error(e)),
            }
            tracing::info!(network = %name, "internal sandbox network created");
            docker
                .inspect_network(&name, None)
                .await
                .map_err(engine_error)?
        }
        Err(e) => return Err(engine_error(e)),
    };
    if found.internal != Some(true) {
        return Err(Error::new(
            ErrorCode::EngineUnavailable,
            format!(
                "the network {name} is not internal (made by someone else?): remove it with \
                 `docker network rm {name}` and try again"
            ),
        ));
    }
    let gateway = found
        .ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.gateway?.parse::<IpAddr>().ok())
        .find(IpAddr::is_ipv4);
    let gateway = gateway.ok_or_else(|| {
        Error::new(
            ErrorCode::EngineUnavailable,
            format!(
                "the container engine gave the network {name} no gateway address, where \
                 stigmer's proxy would listen: the allowlist policy needs Docker Engine on this \
                 computer. Choose the open or no network instead"
            ),
        )
    })?;
    Ok((name, gateway))
}

/// The container's address on `network`.
pub async fn address_on(docker: &Docker, id: &str, network: &str) -> Option<IpAddr> {
    let c = docker.inspect_container(id, None).await.ok()?;
    c.network_settings?
        .networks?
        .get(network)?
        .ip_address
        .as_deref()?
        .parse()
        .ok()
}
