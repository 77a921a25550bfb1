//! What a protected run sees, as bubblewrap's arguments: the whole system read-only, a private
//! /tmp, the user's secrets, session sockets and Stigmer's own folders hidden, the workspace
//! read-write with its host-run files read-only, its own PID namespace (and network namespace
//! unless the network is open), no capabilities. Pure: unit-tested without running anything.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Folders under the home folder that hold credentials, keys, browser profiles or password
/// stores: hidden (an empty folder in their place).
pub const SECRET_DIRS: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".config/gcloud",
    ".kube",
    ".docker",
    ".password-store",
    ".local/share/keyrings",
    ".mozilla",
    ".thunderbird",
    ".config/google-chrome",
    ".config/chromium",
    ".config/BraveSoftware",
    ".config/gh",
    ".config/hub",
    ".config/op",
    ".config/github-copilot",
    ".config/rclone",
    ".terraform.d",
    ".vault-token.d",
    ".1password",
    // Container engines' virtual machines and their sockets (Colima, Rancher Desktop, Lima,
    // OrbStack): a way to run anything outside the tier.
    ".colima",
    ".rd",
    ".lima",
    ".orbstack",
    // macOS: keychains, cookies, browsers' and mail profiles.
    "Library/Keychains",
    "Library/Cookies",
    "Library/Safari",
    "Library/Mail",
    "Library/Messages",
    "Library/Application Support/Google/Chrome",
    "Library/Application Support/Firefox",
    "Library/Application Support/BraveSoftware",
    "Library/Application Support/Microsoft Edge",
    "Library/Group Containers/group.com.docker",
];

/// Files under the home folder that hold credentials or shell histories: hidden (empty).
pub const SECRET_FILES: &[&str] = &[
    ".netrc",
    ".git-credentials",
    ".pgpass",
    ".pypirc",
    ".npmrc",
    ".vault-token",
    ".Xauthority",
    ".cargo/credentials.toml",
    ".cargo/credentials",
    ".claude/.credentials.json",
    ".codex/auth.json",
    ".m2/settings.xml",
    ".gradle/gradle.properties",
    ".bash_history",
    ".zsh_history",
    ".history",
    ".python_history",
    ".node_repl_history",
    ".psql_history",
    ".mysql_history",
    ".sqlite_history",
    ".lesshst",
];

/// What the resolver needs from /run when the network is open (resolv.conf's real place).
pub const RESOLVER: &[&str] = &[
    "/run/systemd/resolve",
    "/run/resolvconf",
    "/run/NetworkManager",
];

/// Sockets that would let a command act outside the tier: the container engines' (besides
/// those the engine connection knows of).
pub const ENGINE_SOCKETS: &[&str] = &[
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/podman/podman.sock",
    "/run/containerd/containerd.sock",
];

/// Variables that carry credentials or lead to the user's session: not passed to protected
/// commands. Names, then name patterns (`*` at either end).
pub const SECRET_VARS: &[&str] = &[
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "GPG_AGENT_INFO",
    "DBUS_SESSION_BUS_ADDRESS",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "DOCKER_HOST",
    "CONTAINER_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "KUBECONFIG",
    "AWS_*",
    "AZURE_*",
    "*_TOKEN",
    "*_TOKEN_*",
    "*_SECRET*",
    "*_PASSWORD*",
    "*_API_KEY",
    "*_APIKEY",
    "*_ACCESS_KEY*",
    "*_PRIVATE_KEY*",
    "*_CREDENTIALS",
    "*_AUTHTOKEN*",
    "DATABASE_URL",
];

/// Whether `name` is one of [`SECRET_VARS`], in any case (`npm_config_//host/:_authToken`).
pub fn is_secret_var(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    let name = name.as_str();
    SECRET_VARS
        .iter()
        .any(|p| match (p.strip_prefix('*'), p.strip_suffix('*')) {
            (Some(rest), _) if rest.ends_with('*') => name.contains(&rest[..rest.len() - 1]),
            (Some(suffix), _) => name.ends_with(suffix),
            (None, Some(prefix)) => name.starts_with(prefix),
            (None, None) => name == *p,
        })
}

/// A path made read-only or kept writable inside the workspace (its host-run files, its
/// `.git` folders held in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub path: PathBuf,
    pub read_only: bool,
}

/// Everything a run's confinement is made from.
#[derive(Debug, Clone)]
pub struct Plan {
    pub home: PathBuf,
    /// The user's runtime folder (`/run/user/UID`: session bus, keyring, Wayland, Podman).
    pub runtime_dir: Option<PathBuf>,
    /// Stigmer's own folders (its token, settings, history): hidden.
    pub own: Vec<PathBuf>,
    /// What the user added to hide.
    pub hidden: Vec<PathBuf>,
    /// Engine sockets to hide, besides [`ENGINE_SOCKETS`].
    pub sockets: Vec<PathBuf>,
    /// The workspace, read-write at its own path.
    pub workspace: PathBuf,
    pub guards: Vec<Guard>,
    pub cwd: PathBuf,
    /// Whether the run shares the host's network (else it has only its own loopback).
    pub network_open: bool,
    /// The allowlist: the folder of the run's door to the proxy, bound read-only at
    /// [`DOOR_IN_RUN`] (the run's only way out).
    pub proxy_door: Option<PathBuf>,
    /// The repositories found in the workspace (Seatbelt guards them by path; bubblewrap
    /// by [`Plan::guards`]).
    pub repos: Vec<PathBuf>,
}

/// Where a run's door to the allowlist's proxy is, inside (as in a container).
pub const DOOR_IN_RUN: &str = crate::execute::container::netplan::DOOR_IN_CONTAINER;

impl Plan {
    /// Everything hidden, by the path it is known by: the session's runtime folder, the
    /// engines' sockets, the secrets in the home folder, Stigmer's own folders, and what the
    /// user added. The same list for every system (bubblewrap, Seatbelt).
    pub fn hidden_paths(&self) -> Vec<PathBuf> {
        let dirs = SECRET_DIRS.iter().map(|d| self.home.join(d));
        let files = SECRET_FILES.iter().map(|f| self.home.join(f));
        let sockets = ENGINE_SOCKETS.iter().map(PathBuf::from);
        let mut hide: Vec<PathBuf> = self.runtime_dir.iter().cloned().collect();
        hide.extend(sockets.chain(self.sockets.iter().cloned()));
        hide.extend(dirs.chain(files));
        hide.extend(self.own.iter().cloned());
        hide.extend(self.hidden.iter().cloned());
        hide
    }

    /// bubblewrap's arguments, up to (not including) the program it runs. `found` says where
    /// a path really is (links followed: a mount is made on what a link leads to) and whether
    /// it is a folder; None when nothing is there.
    pub fn bwrap_args(&self, found: impl Fn(&Path) -> Option<(PathBuf, bool)>) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |parts: &[&std::ffi::OsStr]| a.extend(parts.iter().map(|p| p.into()));
        push(&[
            "--die-with-parent".as_ref(),
            "--new-session".as_ref(),
            "--unshare-pid".as_ref(),
            "--unshare-ipc".as_ref(),
            "--unshare-uts".as_ref(),
            "--unshare-cgroup-try".as_ref(),
            // No namespaces of its own inside (each is more kernel to attack from).
            "--unshare-user".as_ref(),
            "--disable-userns".as_ref(),
            "--cap-drop".as_ref(),
            "ALL".as_ref(),
        ]);
        if !self.network_open {
            push(&["--unshare-net".as_ref()]);
        }
        push(&[
            "--ro-bind".as_ref(),
            "/".as_ref(),
            "/".as_ref(),
            "--dev".as_ref(),
            "/dev".as_ref(),
            "--proc".as_ref(),
            "/proc".as_ref(),
            "--tmpfs".as_ref(),
            "/tmp".as_ref(),
            "--tmpfs".as_ref(),
            "/var/tmp".as_ref(),
            // Sockets by path: the system bus, systemd's, screen's, databases', engines'.
            "--tmpfs".as_ref(),
            "/run".as_ref(),
        ]);
        if let Some(door) = &self.proxy_door {
            push(&["--ro-bind".as_ref(), door.as_os_str(), DOOR_IN_RUN.as_ref()]);
        }
        // With the network open, names still resolve (resolv.conf often lives in /run).
        if self.network_open {
            for keep in RESOLVER {
                if let Some((real, true)) = found(Path::new(keep)) {
                    push(&["--ro-bind".as_ref(), real.as_os_str(), real.as_os_str()]);
                }
            }
        }
        let hide = self.hidden_paths();
        let mut done: Vec<PathBuf> = Vec::new();
        // What lies inside the workspace is hidden after the workspace is bound, over it.
        let mut inside: Vec<(PathBuf, bool)> = Vec::new();
        for p in &hide {
            let Some((real, dir)) = found(p) else {
                continue;
            };
            // Already replaced whole: /run and /tmp (but a workspace there is bound back).
            let replaced = !real.starts_with(&self.workspace)
                && (real.starts_with("/run") || real.starts_with("/tmp"));
            if done.contains(&real) || replaced {
                continue;
            }
            done.push(real.clone());
            if real.starts_with(&self.workspace) {
                inside.push((real, dir));
            } else if dir {
                push(&["--tmpfs".as_ref(), real.as_os_str()]);
            } else {
                push(&["--ro-bind".as_ref(), "/dev/null".as_ref(), real.as_os_str()]);
            }
        }
        push(&[
            "--bind".as_ref(),
            self.workspace.as_os_str(),
            self.workspace.as_os_str(),
        ]);
        for g in &self.guards {
            let how = if g.read_only { "--ro-bind" } else { "--bind" };
            push(&[how.as_ref(), g.path.as_os_str(), g.path.as_os_str()]);
        }
        for (real, dir) in &inside {
            if *dir {
                push(&["--tmpfs".as_ref(), real.as_os_str()]);
            } else {
                push(&["--ro-bind".as_ref(), "/dev/null".as_ref(), real.as_os_str()]);
            }
        }
        push(&["--chdir".as_ref(), self.cwd.as_os_str()]);
        a
    }
}

/// Where `p` really is (links followed) and whether it is a folder; None when nothing is.
pub fn found(p: &Path) -> Option<(PathBuf, bool)> {
    let real = std::fs::canonicalize(p).ok()?;
    let dir = std::fs::metadata(&real).ok()?.is_dir();
    Some((real, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            home: "/home/u".into(),
            runtime_dir: Some("/run/user/1000".into()),
            own: vec!["/home/u/.local/share/stigmer".into()],
            hidden: vec![],
            sockets: vec![],
            workspace: "/home/u/proj".into(),
            guards: vec![Guard {
                path: "/home/u/proj/.git/hooks".into(),
                read_only: true,
            }],
            cwd: "/home/u/proj/src".into(),
            network_open: false,
            proxy_door: None,
            repos: vec![],
        }
    }

    fn text(a: &[OsString]) -> String {
        a.iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn secrets_are_hidden_before_the_workspace_is_bound_and_guards_come_last() {
        let found = |p: &Path| match p.to_str().unwrap() {
            "/home/u/.ssh" | "/run/user/1000" | "/home/u/.local/share/stigmer" => {
                Some((p.to_path_buf(), true))
            }
            "/home/u/.netrc" => Some((p.to_path_buf(), false)),
            // A link: the mount goes on what it leads to, once.
            "/var/run/docker.sock" | "/run/docker.sock" => {
                Some((PathBuf::from("/run/docker.sock"), false))
            }
            _ => None,
        };
        let t = text(&plan().bwrap_args(found));
        for part in [
            "--unshare-net",
            "--unshare-user --disable-userns",
            "--cap-drop ALL",
            "--ro-bind / /",
            "--tmpfs /tmp",
            "--tmpfs /run",
            "--tmpfs /home/u/.ssh",
            "--ro-bind /dev/null /home/u/.netrc",
            "--tmpfs /home/u/.local/share/stigmer",
            "--bind /home/u/proj /home/u/proj",
            "--ro-bind /home/u/proj/.git/hooks /home/u/proj/.git/hooks",
            "--chdir /home/u/proj/src",
        ] {
            assert!(t.contains(part), "{part} missing from {t}");
        }
        assert!(t.find("--tmpfs /home/u/.ssh") < t.find("--bind /home/u/proj"));
        assert!(t.find("--bind /home/u/proj ") < t.find("--ro-bind /home/u/proj/.git/hooks"));
        assert!(
            !t.contains(".gnupg"),
            "what does not exist is left alone: {t}"
        );
        // /run is replaced whole: the session's, the engines' and the system's sockets go.
        assert!(!t.contains("/var/run") && !t.contains("/run/"), "{t}");
        assert!(!t.contains("resolve"), "no network, no resolver: {t}");
    }

    #[test]
    fn an_open_network_is_shared_and_keeps_its_resolver() {
        let p = Plan {
            network_open: true,
            ..plan()
        };
        let found =
            |p: &Path| (p == Path::new("/run/systemd/resolve")).then(|| (p.to_path_buf(), true));
        let t = text(&p.bwrap_args(found));
        assert!(!t.contains("--unshare-net"), "{t}");
        assert!(
            t.find("--tmpfs /run ") < t.find("--ro-bind /run/systemd/resolve /run/systemd/resolve"),
            "{t}"
        );
    }

    #[test]
    fn the_allowlist_has_no_network_but_its_door_to_the_proxy() {
        let p = Plan {
            proxy_door: Some("/home/u/.local/share/stigmer/proxy/ab12".into()),
            ..plan()
        };
        let t = text(&p.bwrap_args(|_| None));
        assert!(t.contains("--unshare-net"), "{t}");
        let door = t
            .find("--ro-bind /home/u/.local/share/stigmer/proxy/ab12 /run/stigmer-proxy")
            .unwrap_or_else(|| panic!("{t}"));
        assert!(t.find("--tmpfs /run ").unwrap() < door, "{t}");
    }

    #[test]
    fn what_the_user_hides_inside_the_workspace_is_hidden_over_it() {
        let p = Plan {
            hidden: vec!["/home/u/proj/.env".into(), "/home/u/notes".into()],
            ..plan()
        };
        let found = |p: &Path| match p.to_str().unwrap() {
            "/home/u/proj/.env" => Some((p.to_path_buf(), false)),
            "/home/u/notes" => Some((p.to_path_buf(), true)),
            _ => None,
        };
        let t = text(&p.bwrap_args(found));
        let bind = t.find("--bind /home/u/proj /home/u/proj").unwrap();
        assert!(t.find("--tmpfs /home/u/notes").unwrap() < bind, "{t}");
        assert!(
            t.find("--ro-bind /dev/null /home/u/proj/.env").unwrap() > bind,
            "{t}"
        );
    }

    #[test]
    fn credential_variables_are_known_by_name_and_pattern() {
        for v in [
            "SSH_AUTH_SOCK",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "GITHUB_TOKEN",
            "NPM_TOKEN",
            "MY_SECRET",
            "DB_PASSWORD",
            "OPENAI_API_KEY",
            "DBUS_SESSION_BUS_ADDRESS",
            "DISPLAY",
            "npm_config_//registry.npmjs.org/:_authToken",
            "github_token",
            "DATABASE_URL",
        ] {
            assert!(is_secret_var(v), "{v}");
        }
        for v in [
            "PATH",
            "HOME",
            "LANG",
            "CARGO_HOME",
            "TOKENIZERS_PARALLELISM",
        ] {
            assert!(!is_secret_var(v), "{v}");
        }
    }
}
