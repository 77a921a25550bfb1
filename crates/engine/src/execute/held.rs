//! A folder held open: opened from `/` one name at a time without following any link, so the
//! handle is the folder the checked path named, whatever is renamed or swapped afterwards. Its
//! identity (device and inode) is what a container's mount is proved against, and a local
//! command starts in it through the handle, not the path ([`Held::entry`]). What admission
//! checked is carried to the run as one of these.

use std::path::{Path, PathBuf};

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

/// An open handle on a folder, and the path it was reached by.
#[derive(Debug)]
pub struct Held {
    #[cfg(target_os = "linux")]
    _fd: std::os::fd::OwnedFd,
    pub identity: Option<Identity>,
    pub path: PathBuf,
}

impl Held {
    /// A path that names this very folder for a process this one starts, whatever its own
    /// path names now: on Linux the handle itself (`/proc/self/fd/N`, resolved by the child,
    /// which inherits the handle until it starts its command); elsewhere the path.
    pub fn entry(&self) -> PathBuf {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            if Path::new("/proc/self/fd").is_dir() {
                return PathBuf::from(format!("/proc/self/fd/{}", self._fd.as_raw_fd()));
            }
        }
        self.path.clone()
    }

    /// Whether `dir` is this folder now (the same device and inode, reached without links).
    pub fn is_at(&self, dir: &Path) -> bool {
        dir == self.path && hold(dir).is_ok_and(|now| now.identity == self.identity)
    }
}

/// A folder admitted and held that its path no longer names (moved, replaced, removed, or no
/// longer the workspace the rules choose).
pub fn changed(dir: &Path) -> Error {
    moved(dir, "it is not the folder that was checked any more")
}

/// Why a folder cannot be held: it changed under us (a link where a folder was).
fn moved(dir: &Path, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::WorkspaceChanged,
        format!(
            "{} changed while the run was being prepared or approved ({why}): a folder in its \
             path was moved, removed or replaced by a link, or the allowed workspaces changed. \
             Nothing was run",
            dir.display()
        ),
    )
}

#[cfg(target_os = "linux")]
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
#[cfg(target_os = "linux")]
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
        path: dir.to_path_buf(),
    })
}

/// What lies at `rel` inside a held folder, reached without following any link: `None` when
/// it is missing, `Some((identity, true))` when it is a link.
#[cfg(target_os = "linux")]
pub fn inside(held: &Held, rel: &Path) -> Option<(Identity, bool)> {
    let start = held._fd.try_clone().ok()?;
    let fd = unix::walk(start, rel, false).ok()?;
    unix::stat(&fd).ok()
}

#[cfg(not(target_os = "linux"))]
pub fn inside(_held: &Held, _rel: &Path) -> Option<(Identity, bool)> {
    None
}

/// Elsewhere the folder is checked by path only (O_PATH is Linux's; the engine runs in a VM
/// there).
#[cfg(not(target_os = "linux"))]
pub fn hold(dir: &Path) -> Result<Held> {
    if !dir.is_dir() {
        return Err(moved(dir, "not a folder"));
    }
    Ok(Held {
        identity: None,
        path: dir.to_path_buf(),
    })
}

#[cfg(all(test, target_os = "linux"))]
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
