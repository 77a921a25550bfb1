//! Files that programs on the host run or obey, kept read-only for sandboxed commands even
//! inside the workspace they may write: git's configuration and hooks (the host's next `git
//! status` runs `core.fsmonitor`, the next commit runs `pre-commit`), editor tasks run when a
//! folder opens, `.envrc`, agents' settings and hooks, shell start-up files.
//!
//! When a container is made, the workspace root and every repository found in it get these
//! names mounted read-only onto themselves, and each `.git` folder mounted onto itself (a
//! mount point cannot be renamed: `mv .git x; mkdir .git` fails). Each is first reached from
//! the held workspace without following a link ([`crate::execute::held::inside`]) and proved after the
//! container starts, like the workspace itself. What does not exist then cannot be mounted
//! without leaving a placeholder in the project: a run that creates one is reported
//! ([`created`]) and its container replaced, so the next run has it read-only.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::folders::Folders;
use crate::execute::held::{self, Held, Identity};

/// Read-only at the workspace root and at the root of every repository in it.
pub const NAMES: &[&str] = &[
    ".gitmodules",
    ".gitconfig",
    ".vscode",
    ".idea",
    ".envrc",
    ".claude",
    ".cursor",
    ".mcp.json",
    ".husky",
    ".ripgreprc",
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".profile",
    ".zshrc",
    ".zprofile",
    ".zshenv",
    ".zlogin",
];
/// Read-only inside a repository's `.git` folder (and each `.git/modules/NAME`).
/// `commondir` and `worktrees` would point git at another configuration.
pub const GIT_NAMES: &[&str] = &["config", "hooks", "info", "commondir", "worktrees"];
/// One path mounted onto itself: read-only, or (a `.git` folder) read-write as an anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub path: PathBuf,
    pub read_only: bool,
    pub identity: Option<Identity>,
}

/// What a container is made with: the guards, the repositories they were found in, and what
/// could not be guarded (a link at a guarded name); the workspace's folders, to find the
/// repositories its runs create.
#[derive(Debug, Default)]
pub struct Guards {
    pub mounts: Vec<Guard>,
    pub repos: Vec<PathBuf>,
    pub unguarded: Vec<PathBuf>,
    /// The user's exceptions (`sandbox.writable`).
    pub writable: Vec<String>,
    pub folders: parking_lot::Mutex<Folders>,
}

/// Whether the user lets sandboxed commands change `path`, a host-run path of repository (or
/// workspace root) `repo` in workspace `root`: `sandbox.writable` names it relative to either
/// (`.vscode`, `.git/config`), or gives it in full (that workspace only).
fn writable_by_user(allowed: &[String], root: &Path, repo: &Path, path: &Path) -> bool {
    let forms = [
        path.strip_prefix(repo).ok(),
        path.strip_prefix(root).ok(),
        Some(path),
    ];
    allowed
        .iter()
        .any(|a| forms.iter().flatten().any(|f| Path::new(a) == *f))
}

/// The guards of the workspace `root`, held as `held`; `allowed` names the user's exceptions
/// (`sandbox.writable`, paths relative to a repository or the workspace).
pub fn plan(root: &Path, held: &Held, allowed: &[String]) -> Guards {
    plan_from(root, held, allowed, None)
}

/// [`plan`], from the folders an earlier run in `root` left (looked at again where entries
/// changed since), or walked anew.
pub fn plan_from(root: &Path, held: &Held, allowed: &[String], seen: Option<Folders>) -> Guards {
    let mut g = Guards::default();
    let folders = match seen {
        Some(mut f) => {
            f.rescan();
            f
        }
        None => Folders::scan(root),
    };
    let repos = folders.repos();
    let mut roots: Vec<PathBuf> = vec![root.to_path_buf()];
    roots.extend(repos.iter().filter(|r| *r != root).cloned());
    for r in &roots {
        let rel = r.strip_prefix(root).unwrap_or(Path::new("")).to_path_buf();
        let add = |name: PathBuf, read_only: bool, g: &mut Guards| {
            let rel_name = rel.join(&name);
            if writable_by_user(allowed, root, r, &root.join(&rel_name)) {
                return;
            }
            if g.mounts.iter().any(|m| m.path == root.join(&rel_name)) {
                return;
            }
            match held::inside(held, &rel_name) {
                None => {}
                Some((_, true)) => g.unguarded.push(root.join(&rel_name)),
                Some((identity, false)) => g.mounts.push(Guard {
                    path: root.join(&rel_name),
                    read_only,
                    identity: Some(identity),
                }),
            }
        };
        for name in NAMES {
            add(PathBuf::from(name), true, &mut g);
        }
        let git = r.join(".git");
        let Ok(meta) = std::fs::symlink_metadata(&git) else {
            // A bare repository: git obeys its own `config` and `hooks`.
            if super::folders::is_bare(r) {
                for name in GIT_NAMES {
                    add(PathBuf::from(name), true, &mut g);
                }
            }
            continue;
        };
        if meta.is_file() {
            // A worktree or submodule: the file says where its repository is.
            add(PathBuf::from(".git"), true, &mut g);
            continue;
        }
        if !meta.is_dir() {
            continue;
        }
        add(PathBuf::from(".git"), false, &mut g);
        let mut gitdirs = vec![PathBuf::from(".git")];
        gitdirs.extend(modules(&git).into_iter().map(|m| Path::new(".git").join(m)));
        for (i, d) in gitdirs.iter().enumerate() {
            if i > 0 {
                add(d.clone(), false, &mut g);
            }
            for name in GIT_NAMES {
                add(d.join(name), true, &mut g);
            }
        }
        if let Some(hooks) = hooks_path(&git.join("config")) {
            add(hooks, true, &mut g);
        }
    }
    g.repos = repos;
    g.writable = allowed.to_vec();
    g.folders = parking_lot::Mutex::new(folders);
    g
}

/// The `.git/modules/...` folders of a repository (submodules' repositories), relative to it.
fn modules(git: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![PathBuf::from("modules")];
    while let Some(rel) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(git.join(&rel)) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let sub = rel.join(e.file_name());
            if git.join(&sub).join("HEAD").exists() {
                found.push(sub.clone());
                todo.push(sub.join("modules"));
            } else if found.len() + todo.len() < 1000 {
                todo.push(sub);
            }
        }
    }
    found
}

/// `core.hooksPath` of a repository's config, when it names a folder inside the repository.
fn hooks_path(config: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(config).ok()?;
    let mut in_core = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_core = line.to_ascii_lowercase().starts_with("[core");
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if in_core && key.trim().eq_ignore_ascii_case("hookspath") {
            let value = PathBuf::from(value.trim().trim_matches('"'));
            if value.is_relative()
                && value
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            {
                return Some(value);
            }
        }
    }
    None
}

/// Host-run names that exist now at the roots a container was made for (the workspace and
/// its repositories then) but were not guarded: a run made them. Cheap: a few stats.
pub fn created(root: &Path, guards: &Guards) -> Vec<PathBuf> {
    let guarded: BTreeSet<&Path> = guards.mounts.iter().map(|g| g.path.as_path()).collect();
    let mut roots: Vec<&Path> = vec![root];
    roots.extend(guards.repos.iter().map(PathBuf::as_path));
    let mut made = Vec::new();
    for r in roots {
        let in_git = GIT_NAMES.iter().map(|n| Path::new(".git").join(n));
        for name in NAMES
            .iter()
            .map(PathBuf::from)
            .chain(std::iter::once(PathBuf::from(".git")))
            .chain(in_git)
        {
            let p = r.join(name);
            if !guarded.contains(p.as_path())
                && !guards.unguarded.contains(&p)
                && !writable_by_user(&guards.writable, root, r, &p)
                && std::fs::symlink_metadata(&p).is_ok()
            {
                made.push(p);
            }
        }
    }
    made.sort();
    made.dedup();
    made
}

/// Guarded paths that are not what was guarded any more: a folder holding mounts can be
/// renamed, its mounts going with it, and a copy put in its place (`mv sub x; cp -a x sub`
/// leaves `sub/.git/hooks` writable and unguarded). Told like a created one; the next run
/// guards what is there now.
fn replaced(guards: &Guards) -> Vec<PathBuf> {
    guards
        .mounts
        .iter()
        .filter(|g| g.identity.is_some_and(|id| !still(&g.path, id)))
        .map(|g| g.path.clone())
        .collect()
}

/// Whether `path` is still the file or folder `id` (not followed if a link).
#[cfg(unix)]
fn still(path: &Path, id: Identity) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == id.dev && m.ino() == id.ino)
}

#[cfg(not(unix))]
fn still(_path: &Path, _id: Identity) -> bool {
    true
}

/// Repositories a run created anywhere in the workspace since the last look: their `.git`.
fn new_repositories(guards: &Guards) -> Vec<PathBuf> {
    guards
        .folders
        .lock()
        .rescan()
        .into_iter()
        .map(|r| {
            let git = r.join(".git");
            if std::fs::symlink_metadata(&git).is_ok() {
                git
            } else {
                r // bare
            }
        })
        .collect()
}

/// Host-run files and repositories a run created that `guards` did not guard (a sandbox's
/// or a protected run's): the agent and the user are told, the next run has them read-only.
pub fn made_by_run(root: &Path, guards: &Guards) -> Vec<PathBuf> {
    let mut made = created(root, guards);
    made.extend(replaced(guards));
    made.extend(new_repositories(guards));
    made.sort();
    made.dedup();
    made
}

/// After a run: host-run files it created that the container does not guard go into its
/// outcome (the agent's reply and the window say so), and the container is replaced before
/// the next run, which then has them read-only.
pub(super) fn after_run<E>(
    root: &Path,
    guards: &Guards,
    stale: &std::sync::atomic::AtomicBool,
    result: std::result::Result<crate::error::Result<crate::execute::ExecOutcome>, E>,
) -> std::result::Result<crate::error::Result<crate::execute::ExecOutcome>, E> {
    let made = made_by_run(root, guards);
    if made.is_empty() {
        return result;
    }
    stale.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(
        ?made,
        "a sandboxed command created files that programs on the host run"
    );
    result.map(|r| {
        r.map(|mut o| {
            o.host_files = made.iter().map(|p| p.display().to_string()).collect();
            o
        })
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn the_plan_guards_what_exists_at_every_repository_and_names_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for d in [
            ".git/hooks",
            ".git/info",
            ".git/modules/lib/hooks",
            ".vscode",
            "sub/.git/hooks",
            "node_modules/x/.git",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join(".git/config"), "[core]\n\thooksPath = .husky\n").unwrap();
        std::fs::write(root.join(".git/modules/lib/HEAD"), "ref: x\n").unwrap();
        std::fs::write(root.join(".git/modules/lib/config"), "").unwrap();
        std::fs::create_dir_all(root.join(".husky")).unwrap();
        std::fs::write(root.join(".envrc"), "").unwrap();
        std::fs::write(root.join("sub/.gitmodules"), "").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("sub/.claude")).unwrap();
        let held = held::hold(&root).unwrap();
        let g = plan(&root, &held, &[]);
        let ro: BTreeSet<String> = g
            .mounts
            .iter()
            .filter(|m| m.read_only)
            .map(|m| m.path.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        let anchors: BTreeSet<String> = g
            .mounts
            .iter()
            .filter(|m| !m.read_only)
            .map(|m| m.path.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        for want in [
            ".git/config",
            ".git/hooks",
            ".git/info",
            ".git/modules/lib/config",
            ".git/modules/lib/hooks",
            ".husky",
            ".vscode",
            ".envrc",
            "sub/.gitmodules",
            "sub/.git/hooks",
        ] {
            assert!(ro.contains(want), "{want} not read-only: {ro:?}");
        }
        assert_eq!(
            anchors,
            [".git", ".git/modules/lib", "sub/.git"]
                .into_iter()
                .map(String::from)
                .collect()
        );
        assert!(!ro.iter().any(|p| p.starts_with("node_modules")));
        assert_eq!(
            g.mounts
                .iter()
                .filter(|m| m.path.ends_with(".husky"))
                .count(),
            1
        );
        assert_eq!(g.unguarded, [root.join("sub/.claude")]);
        // The user's exception, and what a run creates afterwards.
        let g2 = plan(&root, &held, &[".vscode".into()]);
        assert!(!g2.mounts.iter().any(|m| m.path.ends_with(".vscode")));
        assert!(created(&root, &g2).is_empty(), "an exception is not new");
        // In full: that workspace's only.
        let full = root.join(".git/hooks").display().to_string();
        let g3 = plan(&root, &held, &[full]);
        assert!(!g3.mounts.iter().any(|m| m.path == root.join(".git/hooks")));
        assert!(g3
            .mounts
            .iter()
            .any(|m| m.path == root.join("sub/.git/hooks")));
        let other = plan(&root, &held, &["/elsewhere/.vscode".into()]);
        assert!(other.mounts.iter().any(|m| m.path == root.join(".vscode")));
        std::fs::write(root.join(".mcp.json"), "{}").unwrap();
        std::fs::create_dir_all(root.join("sub/.vscode")).unwrap();
        assert_eq!(
            created(&root, &g),
            [root.join(".mcp.json"), root.join("sub/.vscode")]
        );
    }
}
