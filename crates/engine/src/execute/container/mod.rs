//! Sandbox mode: commands run in containers made from the sandbox image, never on the host.
//!
//! [`Sandbox`] keeps the engine connection (re-made when the engine comes back), makes images
//! present once (concurrent first runs share one download), and keeps a long-lived container
//! per (image, workspace, network policy, agent) ([`pool`]), made by [`make`], removed after
//! `sandbox.ttl` idle seconds and on stop.

mod admit;
mod allowlist;
mod attach;
pub mod connect;
pub mod containers;
pub mod context;
mod engine;
mod engine_error;
mod executor;
pub(crate) mod folders;
pub mod helper;
pub mod hostrun;
pub mod images;
mod lifecycle;
mod make;
mod manage;
pub mod netplan;
mod pool;
mod prepare;
pub mod progress;
pub mod run;
pub mod workspace;

pub use executor::Container;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Instant;

use self::pool::{ContainerKey, Pool};

use bollard::Docker;
pub use stigmer_protocol::events::RefusedRun;
pub use stigmer_protocol::status::{ContainerView, SandboxStatus};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::connect::EngineInfo;
use self::containers::{OwnContainer, Owner};
use self::workspace::Admitted;
use crate::error::{Error, Result};
use crate::events::EventBus;
use crate::execute::{held, Chunk, ExecOutcome, ExecRequest, Place};
use crate::network::NetworkPolicy;
use crate::paths::Paths;
use crate::settings::{Settings, Tier};

/// Everything about a sandbox run that comes from settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    pub image: String,
    pub auto_pull: bool,
    pub cleanup: bool,
    pub ttl_secs: u64,
    pub memory: String,
    pub cpus: String,
    pub network: NetworkPolicy,
    /// The hosts the allowlist policy lets through (`sandbox.allow`).
    pub allow: Vec<String>,
    /// Folders a run may be in (besides the scratch folder): the user's workspaces, and the
    /// folder the client's session was started in.
    pub workspaces: Vec<PathBuf>,
    /// The agent the runs are for: runs of two agents never share a container.
    pub client: String,
    /// Host-run files the user lets sandboxed commands change (`sandbox.writable`).
    pub writable: Vec<String>,
}

impl SandboxSpec {
    pub fn from_settings(s: &Settings) -> SandboxSpec {
        SandboxSpec {
            image: s.sandbox_image.clone(),
            auto_pull: s.sandbox_auto_pull,
            cleanup: s.sandbox_cleanup,
            ttl_secs: s.sandbox_ttl_secs,
            memory: s.sandbox_memory.clone(),
            cpus: s.sandbox_cpus.clone(),
            network: s.sandbox_network,
            allow: s.sandbox_allow.clone(),
            workspaces: s.sandbox_workspaces.clone(),
            client: "other".into(),
            writable: s.sandbox_writable.clone(),
        }
    }

    /// The runs are for `client` (`other` when none is named).
    pub fn with_client(mut self, client: Option<&str>) -> SandboxSpec {
        self.client = client.unwrap_or("other").to_string();
        self
    }

    pub fn tier(&self) -> Tier {
        Tier::of(crate::settings::Mode::Sandbox, &self.image)
    }

    /// Allow, for this run, the project the client's session was started in (the user chose
    /// it by starting the agent or `stigmer run` there): its `.git` root, else the folder. A
    /// folder that is never mounted (the home folder, `/`) allows nothing.
    pub fn with_session(mut self, dir: Option<PathBuf>) -> SandboxSpec {
        let root = dir
            .filter(|d| d.is_absolute())
            .map(|d| workspace::session_root(&d));
        self.workspaces.extend(root);
        self
    }
}

/// One image's download gate: the last failure, so runs that queued behind a failed attempt
/// get its error instead of starting another download.
type ImageGate = Arc<tokio::sync::Mutex<Option<(Instant, Error)>>>;

pub struct Sandbox {
    owner: Owner,
    bus: EventBus,
    conn: tokio::sync::Mutex<Option<(Docker, EngineInfo)>>,
    images: Mutex<HashMap<String, ImageGate>>,
    /// Cancels the downloads and builds in progress (the app's Cancel button).
    downloads: Mutex<CancellationToken>,
    pool: Mutex<Pool>,
    /// Whether the connected engine runs on this kernel (mounts can be proved by inode).
    same_kernel: tokio::sync::Mutex<Option<bool>>,
    /// stigmer's config and data folders: never inside a mounted workspace.
    protected: Vec<PathBuf>,
    /// Where runs that name no folder go; always allowed.
    scratch: PathBuf,
    /// The last refused folders, newest last, for the window.
    refusals: Mutex<VecDeque<RefusedRun>>,
    /// The allowlist's refusals and the runs they come from.
    net: Arc<crate::network::NetWatch>,
    /// The allowlist's proxy process.
    proxy: Arc<crate::network::supervisor::ProxySupervisor>,
    /// Workspaces' folders between protected runs (their repositories found).
    #[cfg_attr(windows, allow(dead_code))]
    pub(crate) protected_folders: folders::FolderCache,
}

fn container_view(c: OwnContainer) -> ContainerView {
    ContainerView {
        id: containers::short(&c.id).to_string(),
        name: c.name,
        owner: c.owner,
        image: c.image,
        workspace: c.workspace,
        state: c.state,
    }
}

impl Sandbox {
    /// `owner` is `server-PID` for the server, `cli-PID` for a run without one.
    pub fn new(paths: &Paths, owner: &str, bus: EventBus) -> Arc<Sandbox> {
        let net = crate::network::NetWatch::new(bus.clone());
        let watch = net.clone();
        let proxy = crate::network::supervisor::ProxySupervisor::new(
            paths.proxy_dir(),
            Arc::new(move |b| watch.on_blocked(b)),
        );
        Arc::new(Sandbox {
            owner: Owner {
                home: home_id(&paths.data_dir),
                owner: owner.to_string(),
            },
            bus,
            conn: tokio::sync::Mutex::new(None),
            images: Mutex::default(),
            downloads: Mutex::new(CancellationToken::new()),
            pool: Mutex::default(),
            same_kernel: tokio::sync::Mutex::default(),
            protected: vec![
                paths.config_dir.clone(),
                paths.data_dir.clone(),
                paths.log_dir.clone(),
                paths.run_output_dir(),
            ],
            scratch: paths.scratch_dir(),
            refusals: Mutex::default(),
            net,
            proxy,
            protected_folders: folders::FolderCache::default(),
        })
    }

    /// stigmer's own folders (config, data, logs, run output, and the cache that holds the
    /// scratch folder): the protected tier hides them.
    pub fn own_folders(&self) -> Vec<PathBuf> {
        let mut all = self.protected.clone();
        all.extend(self.scratch.parent().map(Path::to_path_buf));
        all
    }

    /// Run `req` in the sandbox. Nothing ever runs on the host: every failure is an error.
    pub async fn run(
        &self,
        spec: &SandboxSpec,
        req: &ExecRequest,
        place: Place,
        out: mpsc::Sender<Chunk>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome> {
        // Admitted, validated and held open by the admission pipeline. The rules are applied
        // again once the image is there (a download can take minutes, the settings may have
        // changed), and the folder they name must still be the one held: a mount is made by
        // path, so a folder renamed or swapped since is refused, never mounted.
        self.ensure_image(spec).await?;
        let Admitted {
            mount: workspace,
            cwd,
        } = self
            .admit(spec, &req.cwd)
            .await
            .map_err(|r| workspace::refusal_error(&r))?;
        if cwd != place.cwd || !place.held.is_at(&workspace) {
            return Err(held::changed(&place.held.path));
        }
        // The container's mount is proved against this handle.
        let held = place.held;
        let req = &ExecRequest { cwd, ..req.clone() };
        let docker = self.docker().await?;
        if let Some((_, info)) = self.conn.lock().await.as_ref() {
            connect::mounts_can_work(info)?;
        }
        let key = ContainerKey {
            image: spec.image.clone(),
            workspace: workspace.clone(),
            network: spec.network,
            client: spec.client.clone(),
        };
        // A container (or its helper) gone behind our back is replaced once.
        for attempt in 0..2 {
            let warm = self.acquire(&docker, spec, &key, &held).await?;
            let watched = self.watch_run(
                warm.door.as_deref().map(|d| d.name.as_str()),
                &workspace,
                req,
            );
            let result = run::run(&warm.conn, req, &out, &cancel).await;
            let result = self.end_watch(watched, result).await;
            let result = hostrun::after_run(&workspace, &warm.guards, &warm.stale, result);
            self.pool.lock().leave(&key);
            if warm.leave() {
                let _ = containers::remove(&docker, &warm.id).await;
            }
            let gone = match result {
                Ok(outcome) if warm.conn.alive() => return outcome,
                Ok(outcome) => {
                    // The helper went away during the run: the next run gets a new container.
                    // If the engine is gone too, the next acquire removes this one.
                    if containers::remove(&docker, &warm.id).await {
                        self.pool.lock().forget(&key, &warm.id);
                    }
                    return outcome;
                }
                Err(run::ContainerGone) => attempt > 0,
            };
            tracing::warn!(container = %containers::short(&warm.id), "sandbox container gone ({}); making a new one", warm.conn.why_dead());
            self.pool.lock().forget(&key, &warm.id);
            let _ = containers::remove(&docker, &warm.id).await;
            if gone {
                break;
            }
        }
        Err(Error::new(
            crate::error::ErrorCode::EngineUnavailable,
            "the sandbox container disappeared twice while starting the command; nothing ran",
        ))
    }
}

/// A short, stable name for a data dir, put on containers as their owner's home.
fn home_id(data_dir: &Path) -> String {
    // FNV-1a: stable across versions and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data_dir.to_string_lossy().as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}
