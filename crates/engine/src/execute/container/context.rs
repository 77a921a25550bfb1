//! Build contexts, as tar archives made in memory: the basic image's (embedded in stigmer, or
//! a folder of [`BUILD_CONTEXT_ENV`]) and the folder of a Dockerfile the user chose.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorCode, Result};

/// The basic image's Dockerfile and Python requirements, as shipped in `sandbox/`.
pub const BASIC_DOCKERFILE: &str = include_str!("../../../../../sandbox/Dockerfile.sandbox.basic");
pub const BASIC_REQUIREMENTS: &str = include_str!("../../../../../sandbox/requirements.txt");
/// Where the basic image's Dockerfile is taken from instead of the embedded copy (a folder
/// with `Dockerfile.sandbox.basic` and its context): mirrors, air-gapped sites, tests.
pub const BUILD_CONTEXT_ENV: &str = "STIGMER_SANDBOX_BUILD_CONTEXT";
/// A user's build folder may hold this much at most: the context is sent whole, from memory.
pub const FOLDER_LIMIT: u64 = 512 * 1024 * 1024;

fn io(e: std::io::Error) -> Error {
    Error::new(
        ErrorCode::ImageBuildFailed,
        format!("cannot make the build context: {e}"),
    )
}

fn header(size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header
}

/// The basic image's context.
pub fn basic() -> Result<Vec<u8>> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = header(data.len() as u64, 0o644);
        h.set_cksum();
        archive.append_data(&mut h, name, data)
    };
    match std::env::var_os(BUILD_CONTEXT_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => {
            for (name, data) in read_dir_files(&PathBuf::from(dir)).map_err(io)? {
                add(&name, &data).map_err(io)?;
            }
        }
        None => {
            add("Dockerfile.sandbox.basic", BASIC_DOCKERFILE.as_bytes()).map_err(io)?;
            add("requirements.txt", BASIC_REQUIREMENTS.as_bytes()).map_err(io)?;
        }
    }
    archive.into_inner().map_err(io)
}

/// The regular files directly in `dir` (the basic image's context folder).
fn read_dir_files(dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push((
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path())?,
            ));
        }
    }
    Ok(files)
}

/// What a folder holds, walked without following links: regular files, folders and links
/// (sockets and devices have no place in an image and are left out).
struct Entry {
    rel: PathBuf,
    kind: Kind,
}

enum Kind {
    Dir,
    /// A regular file, and what it was when walked (device, inode): the file read must be it.
    File(u64, u64),
    Link(PathBuf),
}

/// A file's device and inode.
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
}

/// Read the file walked as `walked`, never through a link: a file swapped for a link (or a
/// folder on its way swapped for one) since the walk is refused, not read from elsewhere.
/// Returns its bytes and permission bits.
fn read_walked(path: &Path, walked: (u64, u64)) -> std::io::Result<(Vec<u8>, u32)> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let mut file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || identity(&meta) != walked {
        return Err(std::io::Error::other(
            "it changed while the build was being prepared (replaced, or reached through a link)",
        ));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut data)?;
    Ok((data, mode_of(&meta, false)))
}

fn walk(root: &Path) -> std::io::Result<(Vec<Entry>, u64)> {
    let (mut entries, mut total, mut todo) = (Vec::new(), 0u64, vec![PathBuf::new()]);
    while let Some(rel) = todo.pop() {
        let mut names: Vec<_> = std::fs::read_dir(root.join(&rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for name in names {
            let rel = rel.join(name);
            let meta = std::fs::symlink_metadata(root.join(&rel))?;
            let kind = if meta.is_dir() {
                todo.push(rel.clone());
                Kind::Dir
            } else if meta.is_file() {
                total += meta.len();
                if total > FOLDER_LIMIT {
                    // Stop counting: the caller says how much is too much.
                    return Ok((entries, total));
                }
                let (dev, ino) = identity(&meta);
                Kind::File(dev, ino)
            } else if meta.file_type().is_symlink() {
                Kind::Link(std::fs::read_link(root.join(&rel))?)
            } else {
                continue;
            };
            entries.push(Entry { rel, kind });
        }
    }
    Ok((entries, total))
}

/// Check that the folder of a user's Dockerfile can be sent as a build context.
pub fn check_folder(dir: &Path) -> Result<()> {
    within_limit(dir).map(|_| ())
}

/// What `dir` holds, if it is readable and not over [`FOLDER_LIMIT`].
fn within_limit(dir: &Path) -> Result<Vec<Entry>> {
    let (entries, total) = walk(dir).map_err(|e| {
        Error::new(
            ErrorCode::InvalidRequest,
            format!("cannot read the Dockerfile's folder {}: {e}", dir.display()),
        )
    })?;
    if total > FOLDER_LIMIT {
        return Err(Error::new(
            ErrorCode::InvalidRequest,
            format!(
                "the Dockerfile's folder {} holds more than {} MB, all of which would be sent to \
                 the container engine: put the Dockerfile in a folder with only what the image needs",
                dir.display(),
                FOLDER_LIMIT / 1_000_000
            ),
        ));
    }
    Ok(entries)
}

/// The permission bits to record (on Windows, which has none: the usual ones).
fn mode_of(meta: &std::fs::Metadata, dir: bool) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = dir;
        meta.permissions().mode() & 0o7777
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        if dir {
            0o755
        } else {
            0o644
        }
    }
}

/// The folder `dir` as a build context, file modes kept.
pub fn folder(dir: &Path) -> Result<Vec<u8>> {
    let entries = within_limit(dir)?;
    let mut archive = tar::Builder::new(Vec::new());
    for Entry { rel, kind } in entries {
        let path = dir.join(&rel);
        match kind {
            Kind::Dir => {
                let meta = std::fs::symlink_metadata(&path).map_err(io)?;
                let mut h = header(0, mode_of(&meta, true));
                h.set_entry_type(tar::EntryType::Directory);
                h.set_cksum();
                archive.append_data(&mut h, &rel, std::io::empty())
            }
            Kind::File(dev, ino) => {
                let (data, mode) = read_walked(&path, (dev, ino)).map_err(|e| {
                    io(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", path.display()),
                    ))
                })?;
                let mut h = header(data.len() as u64, mode);
                h.set_cksum();
                archive.append_data(&mut h, &rel, &data[..])
            }
            Kind::Link(target) => {
                let mut h = header(0, 0o777);
                h.set_entry_type(tar::EntryType::Symlink);
                archive.append_link(&mut h, &rel, &target)
            }
        }
        .map_err(io)?;
    }
    archive.into_inner().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn a_file_swapped_for_a_link_after_the_walk_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(ctx.join("sub")).unwrap();
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(ctx.join("sub/data"), "data").unwrap();
        std::fs::write(dir.path().join("key"), "PRIVATE KEY").unwrap();
        let (entries, _) = walk(&ctx).unwrap();
        // The swap comes between the walk and the read, as a racing program would do it.
        std::fs::remove_file(ctx.join("Dockerfile")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("key"), ctx.join("Dockerfile")).unwrap();
        std::fs::rename(ctx.join("sub"), dir.path().join("sub-real")).unwrap();
        std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
        std::fs::write(dir.path().join("elsewhere/data"), "PRIVATE KEY").unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), ctx.join("sub")).unwrap();
        for e in entries {
            if let Kind::File(dev, ino) = e.kind {
                let r = read_walked(&ctx.join(&e.rel), (dev, ino));
                assert!(r.is_err(), "{} was read: {:?}", e.rel.display(), r);
            }
        }
    }

    #[test]
    fn the_embedded_context_has_the_dockerfile_and_requirements() {
        let tar = basic().unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile.sandbox.basic", "requirements.txt"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_context_keeps_files_folders_links_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("stigmer-context-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.join("bin/tool"), "#!/bin/sh\n").unwrap();
        for (f, mode) in [("Dockerfile", 0o644), ("bin", 0o750), ("bin/tool", 0o755)] {
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::symlink("bin/tool", dir.join("tool")).unwrap();
        let tar = folder(&dir).unwrap();
        let mut seen = Vec::new();
        for e in tar::Archive::new(&tar[..]).entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            seen.push((
                e.path().unwrap().display().to_string(),
                h.entry_type(),
                h.mode().unwrap() & 0o777,
                e.link_name().unwrap().map(|l| l.display().to_string()),
            ));
        }
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        use tar::EntryType::*;
        assert_eq!(
            seen,
            [
                ("Dockerfile".into(), Regular, 0o644, None),
                ("bin".into(), Directory, 0o750, None),
                ("bin/tool".into(), Regular, 0o755, None),
                ("tool".into(), Symlink, 0o777, Some("bin/tool".into())),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
