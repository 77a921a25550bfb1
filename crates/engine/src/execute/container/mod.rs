//! Sandbox mode: commands run in containers made from the sandbox image, never on the host.
//!
//! [`Sandbox`] keeps the engine connection (re-made when the engine comes back), makes images
//! present once (concurrent first runs share one download), and keeps a long-lived container
//! per (image, workspace, network policy, agent) ([`pool`]), made by [`make`], removed after
//! `sandbox.ttl` idle seconds and on stop.

mod allowlist;
mod attach;
pub mod connect;
pub mod containers;
pub mod context;
mod engine_error;
mod executor;
mod folders;
pub mod held;
pub mod helper;
pub mod hostrun;
pub mod images;
mod make;
mod manage;
pub mod netplan;
mod pool;
pub mod progress;
pub mod run;
pub mod workspace;

pub use executor::Container;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use self::pool::{ContainerKey, Pool, Warm};

use bollard::Docker;
pub use stigmer_protocol::events::RefusedRun;
pub use stigmer_protocol::status::{ContainerView, SandboxStatus};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::connect::{EngineInfo, EngineState};
use self::containers::{OwnContainer, Owner};
use self::held::Held;
use self::workspace::{Admitted, NeverMounted, Refusal};
use crate::error::{Error, Result};
use crate::events::{Event, EventBus};
use crate::execute::{Chunk, ExecOutcome, ExecRequest};
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
}

/// How many refused requests the server remembers for the window.
const REFUSALS_KEPT: usize = 20;
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
        })
    }

    /// The folders sandbox mode never mounts, as of now: the engine sockets include the one
    /// in use, PATH is the user's.
    pub async fn never_mounted(&self) -> NeverMounted {
        let mut sockets = connect::known_sockets();
        if let Some((_, info)) = self.conn.lock().await.as_ref() {
            sockets.extend(connect::unix_socket_of(&info.endpoint));
        }
        // The first lookup may ask the login shell: off the async threads.
        let path = tokio::task::spawn_blocking(|| crate::tools::user_path().0.clone())
            .await
            .unwrap_or_default();
        NeverMounted::gather(&self.protected, &sockets, &path)
    }

    /// Where sandboxed runs that name no folder run.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// Where a run in `cwd` goes, or why it may not run there. Checked when a request comes
    /// in and again right before its container is chosen.
    pub async fn admit(
        &self,
        spec: &SandboxSpec,
        cwd: &Path,
    ) -> std::result::Result<Admitted, Refusal> {
        self.never_mounted()
            .await
            .admit(cwd, &spec.workspaces, &self.scratch)
    }

    /// [`Sandbox::admit`] for a request from `client`: a refusal is remembered and announced
    /// (the window offers to allow the folder) and becomes the client's error.
    pub async fn admit_request(
        &self,
        spec: &SandboxSpec,
        req: &ExecRequest,
        client: Option<&str>,
    ) -> Result<Admitted> {
        self.admit(spec, &req.cwd).await.map_err(|refusal| {
            tracing::warn!(folder = %refusal.folder.display(), client = client.unwrap_or("-"), "sandbox run refused: {}", refusal.reason);
            let error = workspace::refusal_error(&refusal);
            let record = RefusedRun {
                client: client.map(str::to_string),
                command: req.command.display(),
                refusal,
                time_ms: crate::util::now_ms(),
            };
            {
                let mut list = self.refusals.lock();
                list.retain(|r| r.refusal.folder != record.refusal.folder || r.client != record.client);
                list.push_back(record.clone());
                while list.len() > REFUSALS_KEPT {
                    list.pop_front();
                }
            }
            self.bus.publish(Event::WorkspaceRefused { refused: record });
            error
        })
    }

    /// The requests refused lately, newest first.
    pub fn refusals(&self) -> Vec<RefusedRun> {
        let list = self.refusals.lock();
        list.iter().rev().cloned().collect()
    }

    /// Forget the refusals of folders now allowed (the window's "Allow this folder").
    pub fn forget_refusals_in(&self, allowed: &Path) {
        let mut list = self.refusals.lock();
        list.retain(|r| !r.refusal.folder.starts_with(allowed));
    }

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

    /// Run `req` in the sandbox. Nothing ever runs on the host: every failure is an error.
    pub async fn run(
        &self,
        spec: &SandboxSpec,
        req: &ExecRequest,
        out: mpsc::Sender<Chunk>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome> {
        // Validated once, by the admission pipeline. The folder is checked again after the
        // image is there: a download can take minutes, and the folder
        // (or a link in its path) may have changed meanwhile.
        self.admit(spec, &req.cwd)
            .await
            .map_err(|r| workspace::refusal_error(&r))?;
        self.ensure_image(spec).await?;
        let Admitted {
            mount: workspace,
            cwd,
        } = self
            .admit(spec, &req.cwd)
            .await
            .map_err(|r| workspace::refusal_error(&r))?;
        // Held open without following links: the folder that was checked, whatever the path
        // names later. The container's mount is proved against it.
        let held = Arc::new(held::hold(&workspace)?);
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

    /// The engine's architecture (`amd64`...), as it said when connecting.
    pub(super) async fn engine_arch(&self) -> String {
        match self.conn.lock().await.as_ref() {
            Some((_, info)) => info.arch.clone(),
            None => std::env::consts::ARCH.to_string(),
        }
    }

    /// The container of `key`, whose mount is the `held` folder, made if needed; counts the
    /// run in until [`Pool::leave`].
    async fn acquire(
        &self,
        docker: &Docker,
        spec: &SandboxSpec,
        key: &ContainerKey,
        held: &Arc<Held>,
    ) -> Result<Warm> {
        let ttl = Duration::from_secs(spec.ttl_secs);
        let creating = self.pool.lock().enter(key, ttl, spec.cleanup);
        let _one_at_a_time = creating.lock().await;
        let warm = self.pool.lock().warm(key);
        if let Some(warm) = warm {
            // Its helper gone (killed, the engine restarted), made for a folder the path no
            // longer names, or a run created a host-run file it does not guard: start over.
            if warm.conn.alive() && warm.mounted == held.identity && !warm.is_stale() {
                warm.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return Ok(warm);
            }
            self.pool.lock().forget(key, &warm.id);
            // A run of the same agent still going in it keeps it until that run ends.
            if !warm.conn.alive() || warm.retire() {
                let _ = containers::remove(docker, &warm.id).await;
            }
        }
        match self.create(docker, spec, key, held).await {
            Ok(warm) => {
                warm.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.pool.lock().set(key, Some(warm.clone()));
                Ok(warm)
            }
            Err(e) => {
                self.pool.lock().leave(key);
                Err(e)
            }
        }
    }

    /// Remove containers idle for longer than their TTL (all idle ones with `all`, when
    /// cleanup is on for them). Returns how many were removed.
    pub async fn reap(&self, all: bool) -> usize {
        let expired = self.pool.lock().expired(all);
        if expired.is_empty() {
            return 0;
        }
        let Ok(docker) = self.docker().await else {
            return 0;
        };
        for id in &expired {
            containers::remove(&docker, id).await;
        }
        expired.len()
    }

    /// Remove this installation's containers left by a server or CLI run that is gone (a
    /// crash). Containers of other installations, and of live CLI runs, are never touched.
    pub async fn remove_orphans(&self) -> Result<usize> {
        let docker = self.docker().await?;
        let mut removed = 0;
        for c in containers::list_own(&docker, &self.owner.home).await? {
            let dead_cli = c
                .owner
                .strip_prefix("cli-")
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|pid| !process_alive(pid));
            // This installation's lock is ours: any other server of it is gone.
            let dead_server = c.owner.starts_with("server-") && c.owner != self.owner.owner;
            if dead_server || dead_cli {
                containers::remove(&docker, &c.id).await;
                removed += 1;
            }
        }
        netplan::remove_old_network(&docker, &self.owner.home).await;
        Ok(removed)
    }

    /// Remove every container of this installation (`stigmer sandbox prune`).
    pub async fn prune(&self) -> Result<usize> {
        let docker = self.docker().await?;
        let list = containers::list_own(&docker, &self.owner.home).await?;
        for c in &list {
            containers::remove(&docker, &c.id).await;
        }
        self.pool.lock().clear();
        Ok(list.len())
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

fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}
