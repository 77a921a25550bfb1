//! Files and folders reached through a folder's handle, never by a path alone: no link is
//! followed and nothing outside the folder is reached, whatever a command swapped in since.

use std::fs::File;
use std::path::Path;

/// Open `rel` for reading under the folder `root` (a folder when `dir`), refusing any link on
/// the way, any path that leaves `root`, and (a file) one on another mount.
pub fn open_beneath(root: &File, rel: &Path, dir: bool) -> std::io::Result<File> {
    let kind = if dir { libc::O_DIRECTORY } else { 0 };
    let xdev = if dir { 0 } else { libc::RESOLVE_NO_XDEV };
    open_how(
        root,
        rel,
        libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK | kind,
        xdev,
    )
}

fn open_how(root: &File, rel: &Path, flags: libc::c_int, resolve: u64) -> std::io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("a name with a NUL byte"))?;
    // SAFETY: open_how is plain data; zero is its empty value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve =
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS | resolve;
    // SAFETY: openat2 with a valid directory fd, a NUL-terminated path and a sized `how`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor this process owns.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

/// A folder under `root` (`root` itself for an empty path), for the calls below: a handle
/// on the folder itself (`O_PATH`: a folder the user cannot list is reached too), on the same
/// mount, no link followed.
pub fn dir(root: &File, rel: &Path) -> std::io::Result<File> {
    if rel.as_os_str().is_empty() {
        root.try_clone()
    } else {
        open_how(
            root,
            rel,
            libc::O_PATH | libc::O_DIRECTORY,
            libc::RESOLVE_NO_XDEV,
        )
    }
}

/// A path's folder and last name; a path with `..`, a root or nothing in it is refused.
pub fn split(rel: &Path) -> std::io::Result<(&Path, &std::ffi::OsStr)> {
    let plain = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    match (plain, rel.parent(), rel.file_name()) {
        (true, Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(std::io::Error::other(format!(
            "not a plain relative path: {}",
            rel.display()
        ))),
    }
}

fn cname(name: &std::ffi::OsStr) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::other("a name with a NUL byte"))
}

fn check(r: libc::c_int) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An entry of `dir` as it is (a link is itself, never followed); none when absent.
pub fn stat(dir: &File, name: &std::ffi::OsStr) -> std::io::Result<Option<libc::stat>> {
    use std::os::fd::AsRawFd;
    let n = cname(name)?;
    // SAFETY: stat is plain data, filled by the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid directory fd, a NUL-terminated name, a stat to fill.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            n.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match check(r) {
        Ok(()) => Ok(Some(st)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A link's target.
pub fn read_link(dir: &File, name: &std::ffi::OsStr) -> std::io::Result<std::ffi::OsString> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStringExt;
    let n = cname(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: a valid directory fd, a NUL-terminated name, a buffer of the size given.
    let len = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if len < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(len as usize);
    Ok(std::ffi::OsString::from_vec(buf))
}

/// Remove an entry (a folder when `folder`, which must be empty); a link is removed itself.
pub fn remove(dir: &File, name: &std::ffi::OsStr, folder: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let n = cname(name)?;
    let flags = if folder { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: a valid directory fd and a NUL-terminated name.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), n.as_ptr(), flags) })
}

/// Make a folder, private to the user.
pub fn make_dir(dir: &File, name: &std::ffi::OsStr) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let n = cname(name)?;
    // SAFETY: a valid directory fd and a NUL-terminated name.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), n.as_ptr(), 0o700) })
}

/// Move an entry, never over one that exists (`RENAME_NOREPLACE`) unless `replace`.
pub fn rename(
    from_dir: &File,
    from: &std::ffi::OsStr,
    to_dir: &File,
    to: &std::ffi::OsStr,
    replace: bool,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (f, t) = (cname(from)?, cname(to)?);
    let flags = if replace { 0 } else { libc::RENAME_NOREPLACE };
    // SAFETY: valid directory fds and NUL-terminated names.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            from_dir.as_raw_fd(),
            f.as_ptr(),
            to_dir.as_raw_fd(),
            t.as_ptr(),
            flags,
        )
    };
    check(r as libc::c_int)
}

/// Permissions an undo gives back: a file's read, write and run bits, a folder's also its
/// set-group-id and sticky bits; never set-user-id (who owned the file is not recorded).
pub fn safe_mode(mode: u32, folder: bool) -> u32 {
    mode & if folder { 0o3777 } else { 0o777 }
}

/// Set an entry's permissions: through a handle on the entry itself (`O_PATH`, no link
/// followed), so a link put in its place is refused, never followed; a file with other names
/// (hard links, maybe outside the folder) is refused too.
pub fn set_mode(dir: &File, name: &std::ffi::OsStr, mode: u32) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::PermissionsExt;
    let n = cname(name)?;
    // SAFETY: a valid directory fd and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            n.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor this process owns.
    let f = unsafe { File::from_raw_fd(fd) };
    let meta = f.metadata()?;
    let kind = meta.file_type();
    if !(kind.is_file() || kind.is_dir()) {
        return Err(std::io::Error::other("not a file or a folder"));
    }
    if kind.is_file() && std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
        return Err(std::io::Error::other(
            "it has other names (hard links): its permissions are left as they are",
        ));
    }
    // The descriptor's own entry in /proc names exactly that file (chmod on an O_PATH
    // descriptor is refused by the kernel).
    let path = format!("/proc/self/fd/{}", f.as_raw_fd());
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(safe_mode(mode, kind.is_dir())),
    )
}

/// Put `content` at `name` with `mode`: written to a new file beside it, then moved over it,
/// so a reader never sees half of it and a link at `name` is replaced, never written through.
pub fn put_file(
    dir: &File,
    name: &std::ffi::OsStr,
    content: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    let (tmp_name, tmp) = fresh_name()?;
    // SAFETY: a valid directory fd and a NUL-terminated name; O_EXCL|O_NOFOLLOW: a new file.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor this process owns.
    let mut f = unsafe { File::from_raw_fd(fd) };
    let written = f.write_all(content).and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(safe_mode(mode, false)))
    });
    drop(f);
    let done = written.and_then(|()| rename(dir, &tmp_name, dir, name, true));
    if done.is_err() {
        let _ = remove(dir, &tmp_name, false);
    }
    done
}

/// Put a link to `target` at `name` (moved over what is there).
pub fn put_link(
    dir: &File,
    name: &std::ffi::OsStr,
    target: &std::ffi::OsStr,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (tmp_name, tmp) = fresh_name()?;
    let t = cname(target)?;
    // SAFETY: a valid directory fd and NUL-terminated strings.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), tmp.as_ptr()) })?;
    let done = rename(dir, &tmp_name, dir, name, true);
    if done.is_err() {
        let _ = remove(dir, &tmp_name, false);
    }
    done
}

/// A name no one uses, for a file about to be moved into place.
fn fresh_name() -> std::io::Result<(std::ffi::OsString, std::ffi::CString)> {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).map_err(|e| std::io::Error::other(e.to_string()))?;
    let name: String = r.iter().map(|b| format!("{b:02x}")).collect();
    let name = format!(".stigmer-undo-{name}");
    let c = cname(std::ffi::OsStr::new(&name))?;
    Ok((name.into(), c))
}
