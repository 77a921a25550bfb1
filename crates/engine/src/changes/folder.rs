//! Which folder a run's changes are recorded in: the workspace it was admitted to, or for a
//! local run its project; never the home folder or a system folder as a whole.

use std::path::{Path, PathBuf};

/// The folder a run's changes are recorded in: the workspace admitted (`workspace`), or for a
/// local run its project: the git repository above `cwd`, else `cwd`. Never the home folder, a
/// folder above it, or a system folder as a whole (None).
pub fn folder_for(cwd: &Path, workspace: Option<&Path>, home: &Path) -> Option<PathBuf> {
    // The home folder as the kernel names it (`/home` may be a link, as on Fedora Silverblue).
    let real_home = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
    let home = real_home.as_path();
    let project = cwd
        .ancestors()
        .take_while(|a| *a != home && !home.starts_with(a))
        .find(|a| a.join(".git").exists())
        .filter(|r| !too_wide(r, home))
        .unwrap_or(cwd);
    let root = workspace.unwrap_or(project).to_path_buf();
    (!too_wide(&root, home)).then_some(root)
}

/// The home folder or above, a system folder as a whole, or a folder of secrets.
fn too_wide(root: &Path, home: &Path) -> bool {
    let system = [
        "/",
        "/tmp",
        "/var",
        "/usr",
        "/etc",
        "/opt",
        "/srv",
        "/private/tmp",
        "/Users",
        "/home",
        "/mnt",
        "/media",
        "/Volumes",
        "/run",
        "/proc",
        "/sys",
        "/nix",
        "/var/tmp",
    ];
    let secret = crate::execute::protected::plan::SECRET_DIRS
        .iter()
        .any(|d| root.starts_with(home.join(d)));
    home.starts_with(root)
        || system.iter().any(|s| root == Path::new(s))
        || root.components().count() < 2
        || secret
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_project_is_recorded_never_the_home_folder_or_the_system() {
        let home = Path::new("/home/u");
        let none = |cwd: &str| folder_for(Path::new(cwd), None, home);
        assert_eq!(none("/home/u"), None);
        assert_eq!(none("/home"), None);
        assert_eq!(none("/"), None);
        assert_eq!(none("/tmp"), None);
        assert_eq!(none("/etc"), None);
        assert_eq!(none("/home/u/notes"), Some("/home/u/notes".into()));
        assert_eq!(none("/home/u/.ssh"), None, "a folder of secrets");
        assert_eq!(none("/mnt"), None);
        let w = folder_for(Path::new("/x/y"), Some(Path::new("/srv/work")), home);
        assert_eq!(w, Some("/srv/work".into()));
    }
}
