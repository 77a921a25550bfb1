//! A folder held open: opened from `/` one name at a time without following any link, so the
//! handle is the folder the checked path named, whatever is renamed or swapped afterwards. Its
//! identity (device and inode) is what a container's mount is proved against.

use std::path::Path;

use crate::error::{Error, ErrorCode, Result};

/// A device and inode: what a folder is, whatever path names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
}

impl Identity {
    /// `"DEV INO"`, as the helper reports a mount.
    pub fn parse(s: &str) -> Option<Identity> {
        let mut it = s.split_whitespace();
        let dev = it.next()?.parse().ok()?;
        let ino = it.next()?.parse().ok()?;
        Some(Identity { dev, ino })
    }
}

/// An open handle on a folder.
#[derive(Debug)]
pub struct Held {
    #[cfg(unix)]
    _fd: std::os::fd::OwnedFd,
    pub identity: Option<Identity>,
}

/// Why a folder cannot be held: it changed under us (a link where a folder was).
fn moved(dir: &Path, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::WorkspaceChanged,
        format!(
            "{} changed while the run was being prepared ({why}): a folder in its path was \
             renamed or replaced by a link. Nothing was run",
            dir.display()
        ),
    )
}

#[cfg(unix)]
mod unix {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Component, Path};

    use super::Identity;

    /// `name` in the folder `at`, never through a link: a link itself is opened (O_PATH).
    pub fn open(at: libc::c_int, name: &[u8], dir: bool) -> std::io::Result<OwnedFd> {
        let c = CString::new(name).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let mut flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        if dir {
            flags |= libc::O_DIRECTORY;
        }
        // SAFETY: a valid C string; the fd returned is ours.
        let fd = unsafe { libc::openat(at, c.as_ptr(), flags) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: just opened, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Walk `path`'s names from `fd`, each a folder but the last, none a link.
    pub fn walk(mut fd: OwnedFd, path: &Path, last_dir: bool) -> std::io::Result<OwnedFd> {
        let names: Vec<&[u8]> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(Ok(n.as_bytes())),
                Component::RootDir | Component::CurDir => None,
                _ => Some(Err(())),
            })
            .collect::<Result<_, ()>>()
            .map_err(|_| std::io::Error::other("not a plain path"))?;
        for (i, name) in names.iter().enumerate() {
            let is_last = i + 1 == names.len();
            fd = open(fd.as_raw_fd(), name, !is_last || last_dir)?;
        }
        Ok(fd)
    }

    /// What `fd` is, and whether it is a link.
    pub fn stat(fd: &OwnedFd) -> std::io::Result<(Identity, bool)> {
        // SAFETY: a zeroed stat is valid for fstat to fill; our fd, our buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let identity = Identity {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
        };
        Ok((identity, st.st_mode & libc::S_IFMT == libc::S_IFLNK))
    }
}

/// Open `dir` (absolute, links already resolved) without following any link on the way.
#[cfg(unix)]
pub fn hold(dir: &Path) -> Result<Held> {
    let root = unix::open(libc::AT_FDCWD, b"/", true).map_err(|e| moved(dir, e))?;
    if !dir.is_absolute() {
        return Err(moved(dir, "not a resolved absolute path"));
    }
    let fd = unix::walk(root, dir, true).map_err(|e| moved(dir, e))?;
    let (identity, _) = unix::stat(&fd).map_err(|e| moved(dir, e))?;
    Ok(Held {
        _fd: fd,
        identity: Some(identity),
    })
}

/// What lies at `rel` inside a held folder, reached without following any link: `None` when
/// it is missing, `Some((identity, true))` when it is a link.
#[cfg(unix)]
pub fn inside(held: &Held, rel: &Path) -> Option<(Identity, bool)> {
    let start = held._fd.try_clone().ok()?;
    let fd = unix::walk(start, rel, false).ok()?;
    unix::stat(&fd).ok()
}

#[cfg(not(unix))]
pub fn inside(_held: &Held, _rel: &Path) -> Option<(Identity, bool)> {
    None
}

/// Elsewhere the folder is checked by path only; the engine runs in a VM there.
#[cfg(not(unix))]
pub fn hold(dir: &Path) -> Result<Held> {
    if !dir.is_dir() {
        return Err(moved(dir, "not a folder"));
    }
    Ok(Held { identity: None })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_link_anywhere_in_the_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(base.join("real/sub")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        let a = hold(&base.join("real/sub")).unwrap();
        let meta = std::fs::metadata(base.join("real/sub")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            a.identity,
            Some(Identity {
                dev: meta.dev(),
                ino: meta.ino()
            })
        );
        let e = hold(&base.join("link/sub")).unwrap_err();
        assert_eq!(e.code, ErrorCode::WorkspaceChanged);
        assert!(hold(&base.join("real/missing")).is_err());
        assert_eq!(
            Identity::parse("12 34"),
            Some(Identity { dev: 12, ino: 34 })
        );
        assert_eq!(Identity::parse("12"), None);
    }
}

/// Whether the engine runs its containers on this computer's kernel, where a mount's device and
/// inode are the host's and can be compared. Not so for an engine in a VM (Docker Desktop,
/// Colima, Podman machine) or on another computer: there the folder is checked by path and
/// held open, and the engine's own VM boundary is what confines a swap.
pub async fn engine_shares_kernel(docker: &bollard::Docker) -> bool {
    #[cfg(target_os = "linux")]
    {
        let Ok(info) = docker.info().await else {
            return false;
        };
        let ours = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let desktop = info
            .operating_system
            .as_deref()
            .is_some_and(|os| os.contains("Desktop"));
        !desktop && info.kernel_version.as_deref() == Some(ours.trim())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = docker;
        false
    }
}
