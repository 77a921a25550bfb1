//! Sandbox containers: long-lived containers per (image, workspace, network policy, agent), one
//! run at a time each, labelled as stigmer's, with defaults a security reviewer accepts.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountBindOptions, MountType,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use bollard::Docker;

use super::engine_error::engine_error;
use super::netplan::Plan;
use crate::error::{Error, ErrorCode, Result};
use crate::settings::parse_memory;

pub const LABEL_MANAGED: &str = "dev.stigmer.managed";
/// Which stigmer installation (data dir) made the container.
pub const LABEL_HOME: &str = "dev.stigmer.home";
/// `server-PID`, or `cli-PID` for a run without a server.
pub const LABEL_OWNER: &str = "dev.stigmer.owner";
pub const LABEL_IMAGE: &str = "dev.stigmer.image";
pub const LABEL_WORKSPACE: &str = "dev.stigmer.workspace";
/// The agent whose runs the container serves (runs of two agents never share one).
pub const LABEL_CLIENT: &str = "dev.stigmer.client";
/// How the container was made ([`LAYOUT`]): a container of another layout is never reused.
pub const LABEL_LAYOUT: &str = "dev.stigmer.layout";
/// Bumped whenever what a container is made with changes its safety (mounts, helper, users).
pub const LAYOUT: &str = "3";

/// Most processes one sandbox container may have (fork bombs stop here).
const PIDS_LIMIT: i64 = 1024;
/// Capabilities kept: what a shell and package managers need as root; everything else goes.
const CAPS: [&str; 8] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "NET_BIND_SERVICE",
];

/// Who owns the containers a process makes.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Short hash of the data dir: containers of other installations are never touched.
    pub home: String,
    pub owner: String,
}

/// The limits and image of a container.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub image: String,
    pub workspace: PathBuf,
    /// The agent, `other` when none is named.
    pub client: String,
    pub memory: String,
    pub cpus: String,
    pub plan: Plan,
    /// Host-run files and `.git` folders inside the workspace, mounted onto themselves.
    pub guards: Vec<super::hostrun::Guard>,
    /// Variables every command in it starts with (besides the network plan's).
    pub env: Vec<String>,
}

/// The user commands run as: the host user's uid:gid on Linux, so files they create are the
/// user's. Elsewhere the engine's VM maps ownership itself.
pub fn run_as_user() -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getuid/getgid cannot fail.
        Some(format!("{}:{}", unsafe { libc::getuid() }, unsafe {
            libc::getgid()
        }))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Create a container for `spec` with stigmer's helper as its init (copied in for an engine of
/// `arch`), and start it. Its stdin stays open for the helper's stream ([`super::attach`]).
pub async fn create(
    docker: &Docker,
    spec: &ContainerSpec,
    owner: &Owner,
    arch: &str,
) -> Result<String> {
    same_architecture(docker, &spec.image, arch).await?;
    let ws = spec.workspace.display().to_string();
    let labels = HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_HOME.to_string(), owner.home.clone()),
        (LABEL_OWNER.to_string(), owner.owner.clone()),
        (LABEL_IMAGE.to_string(), spec.image.clone()),
        (LABEL_WORKSPACE.to_string(), ws.clone()),
        (LABEL_CLIENT.to_string(), spec.client.clone()),
        (LABEL_LAYOUT.to_string(), LAYOUT.to_string()),
    ]);
    let memory = parse_memory(&spec.memory).unwrap_or(0) as i64;
    let nano_cpus = (spec.cpus.parse::<f64>().unwrap_or(0.0) * 1e9) as i64;
    let host = HostConfig {
        // A bind mount of the path stigmer resolved, which the engine never creates: a missing
        // folder is an error, not a new folder made as root. Proved after start ([`crate::execute::held`]).
        // Then each guard onto itself; the engine mounts parents first.
        mounts: Some(
            std::iter::once((ws.clone(), false))
                .chain(
                    spec.guards
                        .iter()
                        .map(|g| (g.path.display().to_string(), g.read_only)),
                )
                .map(|(path, read_only)| (path.clone(), path, read_only))
                // The allowlist's door: its folder, read-only (the socket can be connected to,
                // not replaced).
                .chain(spec.plan.door().map(|d| {
                    (
                        d.folder().display().to_string(),
                        super::netplan::DOOR_IN_CONTAINER.to_string(),
                        true,
                    )
                }))
                .map(|(source, target, read_only)| Mount {
                    typ: Some(MountType::BIND),
                    source: Some(source),
                    target: Some(target),
                    read_only: Some(read_only),
                    bind_options: Some(MountBindOptions {
                        create_mountpoint: Some(false),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        // The helper is the init: no engine-side init binary is needed (Podman's catatonit).
        init: Some(false),
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(CAPS.iter().map(|c| c.to_string()).collect()),
        security_opt: Some(vec!["no-new-privileges".into()]),
        pids_limit: Some(PIDS_LIMIT),
        memory: (memory > 0).then_some(memory),
        nano_cpus: (nano_cpus > 0).then_some(nano_cpus),
        network_mode: Some(spec.plan.network_mode()),
        // Runs' output goes to stigmer over the attached stream, never to the engine's logs.
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: Some(vec![
            super::helper::PATH_IN_CONTAINER.into(),
            "serve".into(),
        ]),
        cmd: Some(spec.plan.helper_args()),
        open_stdin: Some(true),
        stdin_once: Some(false),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        env: Some([spec.plan.env(), spec.env.clone()].concat()).filter(|e| !e.is_empty()),
        user: run_as_user(),
        working_dir: Some(ws),
        labels: Some(labels),
        host_config: Some(host),
        ..Default::default()
    };
    let name = format!("stigmer-{}-{}", owner.home, crate::util::random_hex(4)?);
    let options = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| container_error(&spec.image, e))?;
    if let Err(e) = super::helper::install(docker, &created.id, arch).await {
        remove(docker, &created.id).await;
        return Err(e);
    }
    if let Err(e) = docker
        .start_container(
            &created.id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
    {
        remove(docker, &created.id).await;
        return Err(container_error(&spec.image, e));
    }
    tracing::info!(container = %name, image = %spec.image, workspace = %spec.workspace.display(), "sandbox container started");
    Ok(created.id)
}

/// An image made for another architecture than the engine's is refused with both named (an
/// emulated run would be slow or fail in odd ways, and our helper would not match it).
async fn same_architecture(docker: &Docker, image: &str, engine: &str) -> Result<()> {
    let Ok(found) = docker.inspect_image(image).await else {
        return Ok(()); // made present just before; the engine says more if not
    };
    let engine = super::helper::normalize_arch(engine);
    match found
        .architecture
        .as_deref()
        .map(super::helper::normalize_arch)
    {
        Some(a) if !a.is_empty() && !engine.is_empty() && a != engine => Err(Error::new(
            ErrorCode::InvalidSetting,
            format!(
                "the sandbox image {image} is made for {a}, and this container engine runs \
                 {engine} containers: choose an image made for {engine} (or one built for \
                 several architectures)"
            ),
        )),
        _ => Ok(()),
    }
}

fn container_error(image: &str, e: bollard::errors::Error) -> Error {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } if status_code < 500 || message.contains("mount") => Error::new(
            ErrorCode::EngineUnavailable,
            format!("the container engine refused to start a sandbox from {image}: {message}"),
        )
        .with_source(bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        }),
        other => engine_error(other),
    }
}

/// Remove a container, running or not: whether it is gone. Errors are logged.
pub async fn remove(docker: &Docker, id: &str) -> bool {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => {
            tracing::info!(container = %short(id), "sandbox container removed");
            true
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => true,
        Err(e) => {
            tracing::warn!(container = %short(id), "removing a sandbox container failed: {e}");
            false
        }
    }
}

/// A container of this installation: id and owner label.
#[derive(Debug, Clone)]
pub struct OwnContainer {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub image: String,
    pub workspace: String,
    pub layout: String,
    pub state: String,
}

/// Every container made by this installation (`home`), running or not.
pub async fn list_own(docker: &Docker, home: &str) -> Result<Vec<OwnContainer>> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_HOME}={home}"),
        ],
    )]);
    let options = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let list = docker
        .list_containers(Some(options))
        .await
        .map_err(engine_error)?;
    Ok(list
        .into_iter()
        .map(|c| {
            let labels = c.labels.unwrap_or_default();
            let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
            OwnContainer {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .unwrap_or_default()
                    .first()
                    .cloned()
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                owner: label(LABEL_OWNER),
                image: label(LABEL_IMAGE),
                workspace: label(LABEL_WORKSPACE),
                layout: label(LABEL_LAYOUT),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            }
        })
        .collect())
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
