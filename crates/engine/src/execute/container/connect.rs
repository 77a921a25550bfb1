//! Finding the container engine the way users have it, and saying clearly why when it is not
//! there: not installed, not running and permission denied are different problems with
//! different fixes.
//!
//! Order: `DOCKER_HOST` (unix, tcp, with `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH` where set) when
//! given, else the usual sockets: Docker Engine, Docker Desktop's user socket, rootless Docker,
//! Podman (rootful and rootless), Colima, Rancher Desktop, OrbStack; the named pipe on Windows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
pub use stigmer_protocol::status::{EngineInfo, EngineState, EngineStatus, Unavailable};

use crate::error::{Error, ErrorCode};

/// Seconds bollard waits for one API call.
const API_TIMEOUT_SECS: u64 = 600;
/// How long the reachability check of an endpoint may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The state of an engine that answered.
pub fn connected_state(info: EngineInfo) -> EngineState {
    EngineState {
        state: EngineStatus::Connected,
        message: format!(
            "{} {} (API {}) at {}",
            info.kind, info.version, info.api_version, info.endpoint
        ),
        engine: Some(info),
    }
}

/// The state of an engine that did not, and why.
pub fn unavailable_state(e: &EngineError) -> EngineState {
    EngineState {
        state: e.reason.into(),
        message: e.message.clone(),
        engine: None,
    }
}

/// No engine, and what to do about it.
#[derive(Debug, Clone)]
pub struct EngineError {
    pub reason: Unavailable,
    pub message: String,
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Error {
        Error::new(ErrorCode::EngineUnavailable, e.message)
    }
}

/// One place an engine may listen.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Unix(PathBuf),
    Tcp {
        url: String,
        tls: Option<PathBuf>,
    },
    #[cfg_attr(not(windows), allow(dead_code))]
    Pipe(String),
}

impl Endpoint {
    fn display(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("unix://{}", p.display()),
            Endpoint::Tcp { url, .. } => url.clone(),
            Endpoint::Pipe(p) => p.clone(),
        }
    }
}

/// Connect to the first engine that answers. A failure says why in the user's terms.
pub async fn connect() -> std::result::Result<(Docker, EngineInfo), EngineError> {
    let explicit = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
    let candidates = match &explicit {
        Some(host) => vec![parse_docker_host(host)?],
        None => default_endpoints(),
    };
    let mut first_problem: Option<EngineError> = None;
    for endpoint in &candidates {
        match try_endpoint(endpoint).await {
            Ok(found) => return Ok(found),
            Err(Some(problem)) => {
                // Permission denied is the most useful thing to report; keep the first of it.
                let better = match &first_problem {
                    None => true,
                    Some(p) => {
                        p.reason != Unavailable::PermissionDenied
                            && problem.reason == Unavailable::PermissionDenied
                    }
                };
                if better {
                    first_problem = Some(problem);
                }
            }
            Err(None) => {}
        }
    }
    if let Some(p) = first_problem {
        return Err(p);
    }
    if let Some(host) = explicit {
        return Err(not_running(&host));
    }
    Err(if engine_installed() {
        not_running("/var/run/docker.sock")
    } else {
        EngineError {
            reason: Unavailable::NotInstalled,
            message: "no container engine is installed: sandbox mode needs Docker \
                (https://docs.docker.com/engine/install/) or Podman (https://podman.io). \
                Install one, or switch to local mode: `stigmer config set mode local`"
                .into(),
        }
    })
}

fn not_running(where_: &str) -> EngineError {
    EngineError {
        reason: Unavailable::NotRunning,
        message: format!(
            "the container engine is not running (nothing answers at {where_}). Start it \
             (`sudo systemctl start docker`, or open Docker Desktop; for Podman \
             `systemctl --user start podman.socket`), or switch to local mode: \
             `stigmer config set mode local`"
        ),
    }
}

#[cfg_attr(not(unix), allow(dead_code))]
fn permission_denied(where_: &str) -> EngineError {
    EngineError {
        reason: Unavailable::PermissionDenied,
        message: format!(
            "permission denied on the container engine's socket {where_}. Add yourself to the \
             `docker` group (`sudo usermod -aG docker $USER`, then log out and in again), use \
             rootless Docker or Podman, or switch to local mode: `stigmer config set mode local`"
        ),
    }
}

/// The host of a TCP engine on another computer (not a loopback address), if it is one.
pub fn remote_host(endpoint: &str) -> Option<&str> {
    let rest = ["tcp://", "http://", "https://"]
        .iter()
        .find_map(|p| endpoint.strip_prefix(p))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then_some(host)
}

/// Sandbox mode mounts the user's project at its own path: an engine on another computer would
/// mount a folder of that computer instead (or nothing), so it is refused, never half-used.
pub fn mounts_can_work(info: &EngineInfo) -> crate::error::Result<()> {
    match remote_host(&info.endpoint) {
        None => Ok(()),
        Some(host) => Err(crate::error::Error::new(
            crate::error::ErrorCode::EngineUnavailable,
            format!(
                "the container engine at {} runs on another computer ({host}): sandbox mode \
                 mounts your project folder into the container, and that engine cannot see \
                 this computer's folders. Use an engine on this computer (unset DOCKER_HOST), \
                 or local mode: `stigmer config set mode local`",
                info.endpoint
            ),
        )),
    }
}

fn tls_refused(where_: &str, e: &bollard::errors::Error) -> EngineError {
    let dir = std::env::var("DOCKER_CERT_PATH").unwrap_or_else(|_| "~/.docker".into());
    EngineError {
        reason: Unavailable::PermissionDenied,
        message: format!(
            "the container engine at {where_} answers, but the TLS connection to it failed \
             ({e}). Check that {dir} holds the ca.pem, cert.pem and key.pem this engine \
             trusts (DOCKER_CERT_PATH), or switch to local mode: `stigmer config set mode local`"
        ),
    }
}

/// `Err(None)`: nothing there at all (try the next candidate).
async fn try_endpoint(
    endpoint: &Endpoint,
) -> std::result::Result<(Docker, EngineInfo), Option<EngineError>> {
    let shown = endpoint.display();
    let docker = match endpoint {
        Endpoint::Unix(path) => {
            reachable_unix(path).await?;
            #[cfg(unix)]
            {
                Docker::connect_with_unix(
                    &format!("unix://{}", path.display()),
                    API_TIMEOUT_SECS,
                    bollard::API_DEFAULT_VERSION,
                )
            }
            // Never reached: no socket is reachable there.
            #[cfg(not(unix))]
            {
                return Err(None);
            }
        }
        Endpoint::Tcp { url, tls } => {
            reachable_tcp(url).await?;
            match tls {
                Some(dir) => Docker::connect_with_ssl(
                    url,
                    &dir.join("key.pem"),
                    &dir.join("cert.pem"),
                    &dir.join("ca.pem"),
                    API_TIMEOUT_SECS,
                    bollard::API_DEFAULT_VERSION,
                ),
                None => {
                    Docker::connect_with_http(url, API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                }
            }
        }
        Endpoint::Pipe(name) => {
            #[cfg(windows)]
            {
                Docker::connect_with_named_pipe(
                    name,
                    API_TIMEOUT_SECS,
                    bollard::API_DEFAULT_VERSION,
                )
            }
            #[cfg(not(windows))]
            {
                let _ = name;
                return Err(None);
            }
        }
    }
    .map_err(|e| {
        Some(EngineError {
            reason: Unavailable::NotRunning,
            message: format!("cannot connect to the container engine at {shown}: {e}"),
        })
    })?;
    // Something listens there (checked above): over TLS, a failure now is the handshake.
    let tls = matches!(endpoint, Endpoint::Tcp { tls: Some(_), .. });
    let docker = tokio::time::timeout(PROBE_TIMEOUT * 2, docker.negotiate_version())
        .await
        .map_err(|_| Some(not_running(&shown)))?
        .map_err(|e| {
            Some(if tls {
                tls_refused(&shown, &e)
            } else {
                not_running(&shown)
            })
        })?;
    let version = tokio::time::timeout(PROBE_TIMEOUT * 2, docker.version())
        .await
        .map_err(|_| Some(not_running(&shown)))?
        .map_err(|e| {
            Some(EngineError {
                reason: Unavailable::NotRunning,
                message: format!("the container engine at {shown} does not answer properly: {e}"),
            })
        })?;
    let podman = version.components.as_ref().is_some_and(|c| {
        c.iter()
            .any(|c| c.name.to_ascii_lowercase().contains("podman"))
    }) || version
        .platform
        .as_ref()
        .is_some_and(|p| p.name.to_ascii_lowercase().contains("podman"));
    let info = EngineInfo {
        kind: if podman { "podman" } else { "docker" }.into(),
        endpoint: shown,
        version: version.version.unwrap_or_default(),
        api_version: version.api_version.unwrap_or_default(),
        os: version.os.unwrap_or_default(),
        arch: version.arch.unwrap_or_default(),
    };
    Ok((docker, info))
}

/// Check a socket before handing it to bollard, to tell "nobody listens" from "not allowed".
async fn reachable_unix(path: &Path) -> std::result::Result<(), Option<EngineError>> {
    #[cfg(unix)]
    {
        let shown = format!("unix://{}", path.display());
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::UnixStream::connect(path)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => match e.kind() {
                std::io::ErrorKind::NotFound => Err(None),
                std::io::ErrorKind::PermissionDenied => {
                    Err(Some(permission_denied(&path.display().to_string())))
                }
                _ => Err(Some(not_running(&shown))),
            },
            Err(_) => Err(Some(not_running(&shown))),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Err(None)
    }
}

async fn reachable_tcp(url: &str) -> std::result::Result<(), Option<EngineError>> {
    let addr = url
        .trim_start_matches("tcp://")
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(Some(not_running(url))),
    }
}

/// `DOCKER_HOST` as an endpoint; an unusable value is an error naming it.
fn parse_docker_host(host: &str) -> std::result::Result<Endpoint, EngineError> {
    if let Some(path) = host.strip_prefix("unix://") {
        return Ok(Endpoint::Unix(PathBuf::from(path)));
    }
    if let Some(pipe) = host.strip_prefix("npipe://") {
        return Ok(Endpoint::Pipe(format!("npipe://{pipe}")));
    }
    if host.starts_with("tcp://") || host.starts_with("http://") || host.starts_with("https://") {
        let tls_wanted = host.starts_with("https://")
            || std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty() && v != "0");
        let tls = tls_wanted.then(|| {
            std::env::var_os("DOCKER_CERT_PATH")
                .map(PathBuf::from)
                .or_else(|| directories::BaseDirs::new().map(|b| b.home_dir().join(".docker")))
                .unwrap_or_else(|| PathBuf::from(".docker"))
        });
        return Ok(Endpoint::Tcp {
            url: host.to_string(),
            tls,
        });
    }
    Err(EngineError {
        reason: Unavailable::NotRunning,
        message: format!(
            "DOCKER_HOST=`{host}` is not supported: use unix:///path/to.sock, tcp://HOST:PORT \
             (with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH for TLS) or npipe:// on Windows"
        ),
    })
}

fn default_endpoints() -> Vec<Endpoint> {
    #[cfg(windows)]
    {
        vec![
            Endpoint::Pipe("npipe:////./pipe/docker_engine".into()),
            Endpoint::Pipe("npipe:////./pipe/podman-machine-default".into()),
        ]
    }
    #[cfg(not(windows))]
    {
        let mut paths = vec![PathBuf::from("/var/run/docker.sock")];
        let home = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf());
        let runtime = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                #[cfg(unix)]
                {
                    // SAFETY: getuid has no failure mode.
                    Some(PathBuf::from(format!("/run/user/{}", unsafe {
                        libc::getuid()
                    })))
                }
                #[cfg(not(unix))]
                None
            });
        if let Some(h) = &home {
            paths.push(h.join(".docker/run/docker.sock")); // Docker Desktop
        }
        if let Some(r) = &runtime {
            paths.push(r.join("docker.sock")); // rootless Docker
            paths.push(r.join("podman/podman.sock")); // rootless Podman
        }
        paths.push(PathBuf::from("/run/podman/podman.sock")); // rootful Podman
        if let Some(h) = &home {
            paths.push(h.join(".colima/default/docker.sock"));
            paths.push(h.join(".colima/docker.sock"));
            paths.push(h.join(".rd/docker.sock")); // Rancher Desktop
            paths.push(h.join(".orbstack/run/docker.sock"));
            paths.push(h.join(".local/share/containers/podman/machine/podman.sock"));
        }
        paths.dedup();
        paths.into_iter().map(Endpoint::Unix).collect()
    }
}

/// Every engine socket stigmer knows how to find, `DOCKER_HOST`'s and `CONTAINER_HOST`'s
/// included: sandbox mode never mounts a folder that holds one.
pub fn known_sockets() -> Vec<PathBuf> {
    let mut list: Vec<PathBuf> = default_endpoints()
        .into_iter()
        .filter_map(|e| match e {
            Endpoint::Unix(p) => Some(p),
            _ => None,
        })
        .collect();
    for var in ["DOCKER_HOST", "CONTAINER_HOST"] {
        if let Some(path) = std::env::var(var).ok().as_deref().and_then(unix_socket_of) {
            list.push(path);
        }
    }
    list
}

/// The socket path of a `unix://` endpoint.
pub fn unix_socket_of(endpoint: &str) -> Option<PathBuf> {
    endpoint.strip_prefix("unix://").map(PathBuf::from)
}

/// Whether an engine seems installed (its CLI or daemon on PATH), to tell "install it" from
/// "start it".
fn engine_installed() -> bool {
    ["docker", "dockerd", "podman", "colima"]
        .iter()
        .any(|b| which::which(b).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_on_other_computers_are_told_apart_from_this_one() {
        for local in [
            "unix:///var/run/docker.sock",
            "tcp://127.0.0.1:2376",
            "tcp://127.9.9.9:2375",
            "tcp://localhost:2376",
            "https://[::1]:2376",
            "npipe:////./pipe/docker_engine",
        ] {
            assert_eq!(remote_host(local), None, "{local}");
        }
        assert_eq!(remote_host("tcp://10.1.2.3:2376"), Some("10.1.2.3"));
        assert_eq!(
            remote_host("tcp://build-box.lan:2376"),
            Some("build-box.lan")
        );
        assert_eq!(
            remote_host("https://[2001:db8::1]:2376"),
            Some("2001:db8::1")
        );
    }

    #[test]
    fn docker_host_forms() {
        assert_eq!(
            parse_docker_host("unix:///tmp/x.sock").unwrap(),
            Endpoint::Unix(PathBuf::from("/tmp/x.sock"))
        );
        assert!(matches!(
            parse_docker_host("tcp://127.0.0.1:2375").unwrap(),
            Endpoint::Tcp { tls: None, .. }
        ));
        assert!(matches!(
            parse_docker_host("https://h:2376").unwrap(),
            Endpoint::Tcp { tls: Some(_), .. }
        ));
        let e = parse_docker_host("ftp://nope").unwrap_err();
        assert!(e.message.contains("DOCKER_HOST"));
    }
}
