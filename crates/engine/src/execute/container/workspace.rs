//! Which host folders a sandbox container may see: a folder inside a workspace the user
//! allowed, and never a folder whose change reaches outside the sandbox.
//!
//! Allowed: the folders the user added (`sandbox.workspaces`), the folder an agent's session
//! was started in (`stigmer mcp`, `stigmer run`: the user chose it by starting there), and the
//! scratch folder. Never mounted, even when allowed ([`NeverMounted`]): `/` and the system
//! folders, the home folder and its dot-folders, folders on PATH, folders holding a container
//! engine's socket, stigmer's own folders and the folder of the stigmer program. Paths are
//! compared with their links resolved, at each run, for the folder that is mounted and not only
//! the requested one.
//!
//! The folder mounted is always the outermost allowed workspace holding the run's folder (or the
//! scratch folder): never a folder inside a writable workspace, which a sandboxed command could
//! rename or swap for a link between the check and the mount. It is then held open without
//! following links ([`Held`]) and the container's mount is proved to be that very folder.

use std::path::{Component, Path, PathBuf};

pub use stigmer_protocol::events::Refusal;

use crate::error::{Error, ErrorCode};

/// Top-level folders of the system: never mounted, nor anything inside them.
#[cfg(unix)]
const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/opt",
    "/proc",
    "/run",
    "/sbin",
    "/snap",
    "/srv",
    "/sys",
    "/usr",
    "/var/lib",
    "/var/log",
    "/var/cache",
    "/var/spool",
    "/var/mail",
    "/var/run",
    "/var/lock",
    "/var/backups",
    "/var/opt",
    "/var/db",
    // macOS
    "/System",
    "/Library",
    "/Applications",
    "/private/etc",
    "/private/var",
];
/// Shared folders that hold other programs' sockets (the X display's, a session bus's) and
/// mount points: never mounted themselves; a project folder inside them is fine.
#[cfg(unix)]
const SHARED_FOLDERS: &[&str] = &[
    "/tmp",
    // /var holds system trees (above) and, on Fedora's atomic desktops, the homes (/var/home,
    // where /home links) and a second temporary folder.
    "/var",
    "/var/tmp",
    "/var/home",
    "/mnt",
    "/media",
    "/Volumes",
    "/private/tmp",
    "/home",
    "/Users",
];
/// Folders of a home that hold settings, credentials, programs on PATH or autostart entries
/// without a leading dot.
const HOME_SETTINGS: &[&str] = &["Library", "AppData", "Application Data"];

/// How a never-mounted folder refuses a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(unix), allow(dead_code))]
enum Scope {
    /// The folder, everything inside it, and every folder that contains it.
    Tree,
    /// The folder itself and every folder that contains it; folders inside it are fine.
    Exact,
    /// The home folder: itself, every folder containing it, and its dot-folders.
    Home,
}

/// The folders sandbox mode never mounts, and why, in words the user reads.
#[derive(Debug, Clone, Default)]
pub struct NeverMounted {
    entries: Vec<(PathBuf, Scope, String)>,
}

/// The error a client gets for a refusal: the code, what happened, and what to do.
pub fn refusal_error(r: &Refusal) -> Error {
    let folder = r.folder.display();
    let message = if r.can_allow {
        format!(
            "{folder} is outside the folders the user allowed for sandboxed commands ({}). \
                 Nothing was run. Only the user can allow a folder: in the Stigmer window \
                 (Sandbox, Allow this folder) or with `stigmer workspaces add {folder}`. An agent \
                 should not retry in another folder: ask the user, or run the command in the \
                 default working directory",
            r.reason
        )
    } else {
        format!(
            "sandbox mode never mounts {folder}: {}. Nothing was run. An agent should not \
                 retry in another folder: ask the user, or run the command in a project folder \
                 the user allowed",
            r.reason
        )
    };
    Error::new(ErrorCode::WorkspaceNotAllowed, message)
}

/// Where a sandboxed run goes: the folder to mount and the working directory in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The folder mounted read-write at the same path: the outermost allowed workspace holding
    /// the cwd, or the scratch folder. No sandboxed command can rename it or replace it.
    pub mount: PathBuf,
    /// The run's working directory, links resolved (it exists in the container as on the host).
    pub cwd: PathBuf,
}

impl NeverMounted {
    /// The list for this machine and this user: `protected` are stigmer's own folders,
    /// `sockets` every engine socket stigmer knows of (and the one it uses), `path` the user's
    /// PATH.
    pub fn gather(protected: &[PathBuf], sockets: &[PathBuf], path: &std::ffi::OsStr) -> Self {
        let mut list = NeverMounted::default();
        #[cfg(unix)]
        {
            for s in SYSTEM_TREES {
                list.push(Path::new(s), Scope::Tree, format!("{s} is a system folder"));
            }
            for s in SHARED_FOLDERS {
                list.push(
                    Path::new(s),
                    Scope::Exact,
                    format!("{s} is shared with other programs and users (use a project folder inside it)"),
                );
            }
        }
        #[cfg(windows)]
        for var in [
            "SystemRoot",
            "ProgramFiles",
            "ProgramFiles(x86)",
            "ProgramData",
        ] {
            if let Some(dir) = std::env::var_os(var) {
                let dir = PathBuf::from(dir);
                let why = format!("{} is a system folder", dir.display());
                list.push(&dir, Scope::Tree, why);
            }
        }
        let home = crate::paths::user_home();
        list.push(
            &home,
            Scope::Home,
            format!(
                "{} is your home folder (or holds it): its dot-folders keep credentials (.ssh, \
                 .aws, .kube, .docker), programs on PATH (.local/bin) and autostart entries",
                home.display()
            ),
        );
        for dir in std::env::split_paths(path).filter(|d| d.is_absolute()) {
            let why = format!(
                "{} is on PATH: a program written there would run outside the sandbox",
                dir.display()
            );
            list.push(&dir, Scope::Tree, why);
        }
        for socket in sockets {
            if let Some(dir) = socket.parent() {
                let why = format!(
                    "{} holds a container engine's socket ({}): whoever reaches it controls this computer",
                    dir.display(),
                    socket.display()
                );
                list.push(dir, Scope::Tree, why);
            }
        }
        for dir in protected {
            let why = format!(
                "{} holds stigmer's own files (settings, token, logs), which a sandboxed command could change",
                dir.display()
            );
            list.push(dir, Scope::Tree, why);
        }
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            let why = format!(
                "{} holds the stigmer program, which a sandboxed command could replace",
                dir.display()
            );
            list.push(&dir, Scope::Tree, why);
        }
        list
    }

    fn push(&mut self, dir: &Path, scope: Scope, why: String) {
        let dir = resolved(dir);
        if !self
            .entries
            .iter()
            .any(|(d, s, _)| *d == dir && *s == scope)
        {
            self.entries.push((dir, scope, why));
        }
    }

    /// Why `dir` (resolved) is never mounted, if it is not.
    pub fn refuses(&self, dir: &Path) -> Option<String> {
        self.refuses_but(dir, None, false)
    }

    /// [`NeverMounted::refuses`], except that the dot-folders of the home folder do not count
    /// for `exempt` and below (stigmer's scratch folder lives in its cache). With `as_bound`,
    /// for an allowed folder that bounds where a run may be: holding a refused folder deeper
    /// down is fine (the folder mounted is checked itself), holding the home folder is not.
    fn refuses_but(&self, dir: &Path, exempt: Option<&Path>, as_bound: bool) -> Option<String> {
        if dir.parent().is_none() {
            return Some("it is the root of the filesystem".into());
        }
        let exempt = exempt.is_some_and(|e| dir.starts_with(e));
        let listed = self.entries.iter().find_map(|(d, scope, why)| {
            let holds_it = d.starts_with(dir);
            match scope {
                Scope::Tree => ((holds_it && !as_bound) || dir.starts_with(d)).then(|| why.clone()),
                Scope::Exact => holds_it.then(|| why.clone()),
                Scope::Home if holds_it => Some(why.clone()),
                Scope::Home if !exempt && in_home_settings(d, dir) => Some(format!(
                    "{} is a settings folder of your home: credentials (.ssh, .aws, .kube, \
                     .docker), programs on PATH (.local/bin) and autostart entries live in such folders",
                    dir.display()
                )),
                Scope::Home => None,
            }
        });
        listed.or_else(|| {
            dir.parent().is_some_and(|p| p.parent().is_none()).then(|| {
                "it is a top-level folder of the system (use a project folder inside it)".into()
            })
        })
    }

    /// The folders of the list, for the README and `get_environment`.
    pub fn folders(&self) -> Vec<PathBuf> {
        self.entries.iter().map(|(d, _, _)| d.clone()).collect()
    }

    /// Check a folder the user wants to allow: it must exist and may not be never-mounted.
    /// Returns it with links resolved.
    pub fn allowable(&self, dir: &Path) -> Result<PathBuf, Error> {
        if !dir.is_absolute() {
            return Err(Error::new(
                ErrorCode::InvalidRequest,
                format!("{}: give the folder as an absolute path", dir.display()),
            ));
        }
        let real = std::fs::canonicalize(dir).map_err(|e| {
            Error::new(
                ErrorCode::CwdNotFound,
                format!("{}: no such folder ({e})", dir.display()),
            )
        })?;
        if !real.is_dir() {
            return Err(Error::new(
                ErrorCode::CwdNotFound,
                format!("{} is not a folder", dir.display()),
            ));
        }
        match self.refuses(&real) {
            Some(why) => Err(Error::new(
                ErrorCode::WorkspaceNotAllowed,
                format!(
                    "{} cannot be a sandbox workspace: {why}. Choose a project folder",
                    real.display()
                ),
            )),
            None => Ok(real),
        }
    }

    /// Where a run in `cwd` goes: inside one of the `allowed` workspaces or the `scratch`
    /// folder, mounting the outermost of them that holds it (nested workspaces share the outer
    /// one's mount: a command there could swap the inner one). A `.git` never picks the mount:
    /// a command can create one anywhere it writes. An allowed folder that is never mounted
    /// itself (the home folder, `/`) allows nothing.
    pub fn admit(
        &self,
        cwd: &Path,
        allowed: &[PathBuf],
        scratch: &Path,
    ) -> Result<Admitted, Refusal> {
        let real = resolved(cwd);
        let scratch = resolved(scratch);
        let (bound, exempt) = if real.starts_with(&scratch) {
            (scratch.clone(), Some(scratch.as_path()))
        } else {
            if let Some(why) = self.refuses(&real) {
                return Err(Refusal {
                    folder: real,
                    reason: why,
                    can_allow: false,
                });
            }
            let usable: Vec<PathBuf> = trusted(allowed, &scratch)
                .into_iter()
                .filter(|w| self.refuses_but(w, None, true).is_none())
                .collect();
            // The outermost allowed folder holding the cwd bounds the project-root search.
            let bound = usable
                .iter()
                .filter(|w| real.starts_with(w))
                .min_by_key(|w| w.components().count());
            match bound {
                Some(b) => (b.clone(), None),
                None => {
                    let list: Vec<String> =
                        usable.iter().map(|w| w.display().to_string()).collect();
                    return Err(Refusal {
                        folder: real,
                        reason: if list.is_empty() {
                            "none is allowed yet".to_string()
                        } else {
                            format!("allowed: {}", list.join(", "))
                        },
                        can_allow: true,
                    });
                }
            }
        };
        let mount = bound;
        if let Some(why) = self.refuses_but(&mount, exempt, false) {
            return Err(Refusal {
                reason: format!("{why} (the workspace {} would be mounted)", mount.display()),
                folder: mount,
                can_allow: false,
            });
        }
        Ok(Admitted { mount, cwd: real })
    }
}

/// The allowed folders, links resolved, except those whose path now leads through a link that
/// lies inside another allowed folder or the scratch folder: a sandboxed command working there
/// could have made that link, to have whatever it points at allowed (a workspace allowed inside
/// another one, swapped for a link to the home folder's documents).
fn trusted(allowed: &[PathBuf], scratch: &Path) -> Vec<PathBuf> {
    let real: Vec<(PathBuf, PathBuf)> = allowed.iter().map(|w| (w.clone(), resolved(w))).collect();
    real.iter()
        .filter(|(w, r)| {
            let moved = !same_path(w, r);
            let inside_other = |w: &Path| {
                w.starts_with(scratch)
                    || real
                        .iter()
                        .any(|(w2, r2)| !same_path(w2, w) && w.starts_with(r2) && !same_path(r2, w))
            };
            !(moved && inside_other(w))
        })
        .map(|(_, r)| r.clone())
        .collect()
}

/// `a` and `b` name the same path, `.` and trailing separators aside.
fn same_path(a: &Path, b: &Path) -> bool {
    a.components().eq(b.components())
}

/// The project a session started in `dir` works on: the nearest folder with `.git` holding
/// it, below the home folder (a dotfiles repository in the home is no project), else `dir`.
pub fn session_root(dir: &Path) -> PathBuf {
    let dir = resolved(dir);
    let home = resolved(&crate::paths::user_home());
    dir.ancestors()
        .take_while(|d| *d != home && d.parent().is_some())
        .find(|d| d.join(".git").exists())
        .unwrap_or(&dir)
        .to_path_buf()
}

/// Whether `dir` lies in a dot-folder (or a settings folder) of `home`.
fn in_home_settings(home: &Path, dir: &Path) -> bool {
    let Ok(rest) = dir.strip_prefix(home) else {
        return false;
    };
    match rest.components().next() {
        Some(Component::Normal(first)) => {
            let first = first.to_string_lossy();
            first.starts_with('.') || HOME_SETTINGS.contains(&first.as_ref())
        }
        _ => false,
    }
}

/// `path` with symbolic links and `..` resolved, as far as it exists (the rest appended as it
/// is, `..` applied).
pub fn resolved(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest
                .iter()
                .rev()
                .fold(real, |acc: PathBuf, part: &std::ffi::OsString| {
                    if part == ".." {
                        acc.parent().map(Path::to_path_buf).unwrap_or(acc)
                    } else {
                        acc.join(part)
                    }
                });
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            // `..` or `.` at the end: file_name() is None; take the component as it is.
            (Some(parent), None) => {
                rest.push(
                    existing
                        .components()
                        .next_back()
                        .map(|c| c.as_os_str().to_os_string())
                        .unwrap_or_default(),
                );
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
#[path = "workspace_tests.rs"]
mod tests;
