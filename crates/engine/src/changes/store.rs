//! Where file contents are kept so a command's changes can be undone: each content once,
//! named by its SHA-256, compressed, however many runs share it. A file is read through the
//! folder's handle, never following a link (Linux: `openat2` with `RESOLVE_BENEATH` and
//! `RESOLVE_NO_SYMLINKS`): a link a command swapped in, at the file or at a folder above it,
//! makes the read fail instead of keeping (and later showing the agent) a file from
//! elsewhere.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
#[cfg(target_os = "linux")]
use std::{io::Write, path::Path};

use sha2::{Digest as _, Sha256};

#[cfg(target_os = "linux")]
use super::beneath::open_beneath;
use super::scan::Digest;

/// A content's name: its SHA-256, in hex.
pub fn name(d: &Digest) -> String {
    hex(d)
}

/// The content store under one folder.
pub struct Store {
    dir: PathBuf,
    /// Bytes it takes on disk, once counted (`u64::MAX` until then).
    bytes: std::sync::atomic::AtomicU64,
}

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store {
            dir,
            bytes: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }

    /// Bytes the store takes on disk (counted once, then kept up to date).
    pub fn kept_bytes(&self) -> u64 {
        use std::sync::atomic::Ordering::SeqCst;
        match self.bytes.load(SeqCst) {
            u64::MAX => {
                let n = self.size();
                self.bytes.store(n, SeqCst);
                n
            }
            n => n,
        }
    }

    fn count(&self, f: impl Fn(u64) -> u64) {
        use std::sync::atomic::Ordering::SeqCst;
        let _ = self
            .bytes
            .fetch_update(SeqCst, SeqCst, |b| (b != u64::MAX).then(|| f(b)));
    }

    fn object(&self, hash: &str) -> PathBuf {
        self.dir.join(&hash[..2]).join(&hash[2..])
    }

    /// Keep the content of `rel` under the folder `root` (a handle): its hash and size.
    /// Files over `max` bytes are not kept (`Ok(None)`).
    #[cfg(target_os = "linux")]
    pub fn keep(
        &self,
        root: &File,
        rel: &Path,
        max: u64,
    ) -> std::io::Result<Option<(Digest, u64)>> {
        let mut file = open_beneath(root, rel, false)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        if meta.len() > max {
            return Ok(None);
        }
        // Read once (a file changing while read is kept as read), then hashed and stored.
        let mut data = Vec::with_capacity(meta.len() as usize);
        (&mut file).take(max + 1).read_to_end(&mut data)?;
        if data.len() as u64 > max {
            return Ok(None);
        }
        let digest: Digest = Sha256::digest(&data).into();
        let hash = hex(&digest);
        let path = self.object(&hash);
        if !path.exists() {
            let dir = path.parent().expect("an object has a folder");
            crate::private::private_dir(dir).map_err(unstored)?;
            // A name of its own: two runs keeping the same content at once do not share it.
            let tmp = dir.join(format!(
                ".{}.{}",
                &hash[2..],
                crate::util::random_hex(6).map_err(|e| std::io::Error::other(e.message))?
            ));
            let written = (|| {
                let mut enc = flate2::write::GzEncoder::new(
                    File::options().write(true).create_new(true).open(&tmp)?,
                    flate2::Compression::fast(),
                );
                enc.write_all(&data)?;
                // Not synced: a content lost to a power cut is found damaged on read (its name
                // is its hash), and one sync per file would make a first record take minutes.
                let len = enc.finish()?.metadata()?.len();
                std::fs::rename(&tmp, &path)?;
                self.count(|b| b + len);
                Ok(())
            })();
            if let Err(e) = written {
                // A full disk leaves no half-written file behind.
                let _ = std::fs::remove_file(&tmp);
                return Err(unstored(e));
            }
        }
        Ok(Some((digest, data.len() as u64)))
    }

    /// Remove every content not named in `keep` (and files a keep left half-written over an
    /// hour ago). The caller makes sure nothing is being kept meanwhile. Returns how many
    /// contents went and their bytes.
    pub fn collect(&self, keep: &std::collections::HashSet<String>) -> (u64, u64) {
        let (mut n, mut bytes) = (0, 0);
        for sub in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let prefix = sub.file_name().to_string_lossy().into_owned();
            if prefix.len() != 2 || !sub.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            for e in std::fs::read_dir(sub.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let rest = e.file_name().to_string_lossy().into_owned();
                let stale = rest.starts_with('.')
                    && e.metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().is_ok_and(|a| a.as_secs() > 3600));
                let unused = !rest.starts_with('.') && !keep.contains(&format!("{prefix}{rest}"));
                if stale || unused {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    if std::fs::remove_file(e.path()).is_ok() {
                        n += u64::from(unused);
                        bytes += len;
                        self.count(|b| b.saturating_sub(len));
                    }
                }
            }
        }
        (n, bytes)
    }

    /// Whether a content is kept.
    pub fn has(&self, hash: &str) -> bool {
        hash.len() == 64
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
            && self.object(hash).is_file()
    }

    /// A kept content, checked against its name.
    pub fn get(&self, hash: &str) -> std::io::Result<Vec<u8>> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(std::io::Error::other("not a content name"));
        }
        let mut data = Vec::new();
        flate2::read::GzDecoder::new(File::open(self.object(hash))?).read_to_end(&mut data)?;
        if hex(&Sha256::digest(&data)) != hash {
            return Err(std::io::Error::other("a kept content is damaged"));
        }
        Ok(data)
    }

    /// Bytes the store takes on disk.
    pub fn size(&self) -> u64 {
        let mut total = 0;
        let mut todo = vec![self.dir.clone()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                match e.metadata() {
                    Ok(m) if m.is_dir() => todo.push(e.path()),
                    Ok(m) => total += m.len(),
                    Err(_) => {}
                }
            }
        }
        total
    }
}

/// A content read but not stored (a full disk, the data folder unwritable): the recording
/// fails, not the command, and says so.
#[derive(Debug)]
pub struct Unstored(pub std::io::Error);

impl std::fmt::Display for Unstored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Unstored {}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn unstored(e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), Unstored(e))
}

/// The store could not keep a content (as opposed to the file not being readable).
pub fn is_unstored(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<Unstored>())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn contents_are_kept_once_and_read_back_checked() {
        let d = tempfile::tempdir().unwrap();
        let (root, store_dir) = (d.path().join("w"), d.path().join("store"));
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/a.txt"), "same\n").unwrap();
        std::fs::write(root.join("b.txt"), "same\n").unwrap();
        std::fs::write(root.join("big.bin"), vec![7u8; 4096]).unwrap();
        let store = Store::new(store_dir);
        let handle = File::open(&root).unwrap();
        let (d1, n) = store
            .keep(&handle, Path::new("src/a.txt"), 1024)
            .unwrap()
            .unwrap();
        let (d2, _) = store
            .keep(&handle, Path::new("b.txt"), 1024)
            .unwrap()
            .unwrap();
        assert_eq!((d1, n), (d2, 5));
        let h1 = name(&d1);
        assert_eq!(store.get(&h1).unwrap(), b"same\n");
        assert_eq!(
            store.keep(&handle, Path::new("big.bin"), 1024).unwrap(),
            None
        );
        // A damaged object is refused, not returned.
        let object = store.object(&h1);
        std::fs::write(&object, b"not what it was").unwrap();
        assert!(store.get(&h1).is_err());
        assert!(store.get("../../etc/passwd").is_err());
    }

    #[test]
    fn a_link_swapped_in_is_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("w");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(d.path().join("outside-secret"), "SECRET").unwrap();
        std::os::unix::fs::symlink(d.path().join("outside-secret"), root.join("file")).unwrap();
        std::os::unix::fs::symlink(d.path(), root.join("up")).unwrap();
        // Even a link that stays inside is not read through: it is recorded as a link.
        std::fs::write(root.join("sub/real.txt"), "inside").unwrap();
        std::os::unix::fs::symlink("sub/real.txt", root.join("inner-link")).unwrap();
        let store = Store::new(d.path().join("store"));
        let handle = File::open(&root).unwrap();
        for rel in [
            "file",
            "up/outside-secret",
            "../outside-secret",
            "sub/../../outside-secret",
            "inner-link",
            "/etc/hostname",
        ] {
            assert!(
                store.keep(&handle, Path::new(rel), 1 << 20).is_err(),
                "{rel} was read"
            );
        }
        assert!(!d.path().join("store").exists(), "nothing kept");
    }
}
