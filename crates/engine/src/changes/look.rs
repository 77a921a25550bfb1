//! Looking at a folder: read again where its watch told of changes (and, at a run's end,
//! every entry looked at), or walked whole and watched from then on.

use std::fs::File;
use std::path::Path;

use super::scan::{self, Manifest, NotRecorded};

/// Entries a folder that cannot be watched may hold: it is walked before and after each run
/// (about 3 ms per 1,000 entries on the 2-core test machine, `find` itself included).
pub const MOST_WALKED: usize = 2_000;
/// A folder as last recorded: its manifest, each file's kept content in its entry, and its
/// watch (Linux), which tells what changed since.
pub struct Baseline {
    pub manifest: Manifest,
    pub watch: Option<Watch>,
    /// The folder's (device, inode).
    pub root_id: (u64, u64),
}

#[cfg(target_os = "linux")]
use super::watch::{self, Dirty, Touched, Watch};

/// Elsewhere folders are walked.
#[cfg(not(target_os = "linux"))]
pub struct Watch;

/// How a folder was looked at: read again where its watch told of changes (what changed), or
/// walked whole (the manifest before, if any).
pub enum Seen {
    #[cfg(target_os = "linux")]
    Relisted(Touched),
    Walked(Option<Manifest>),
}

/// The folder now, from `last` looked at again where its watch told of changes, or walked.
/// With `sweep` (a run's end) every entry is also looked at (not read): what a watch cannot
/// tell is found by what a command cannot forge.
pub fn look(
    handle: &File,
    root: &Path,
    last: Option<Baseline>,
    most: usize,
    sweep: bool,
) -> Result<(Baseline, Seen), NotRecorded> {
    let id = identity(handle);
    // The record of another folder now at this path (the folder was moved and another put
    // there): not this one's.
    let last = last.filter(|b| b.root_id == id);
    #[cfg(target_os = "linux")]
    if let Some(Baseline {
        mut manifest,
        watch: Some(mut w),
        ..
    }) = last
    {
        return match w.drain() {
            Dirty::Dirs(d) => {
                let mut touched = Touched::new();
                watch::relist(handle, root, &mut manifest, &d, &mut w, most, &mut touched)?;
                if sweep {
                    let more = watch::sweep(handle, &manifest);
                    watch::relist(
                        handle,
                        root,
                        &mut manifest,
                        &more,
                        &mut w,
                        most,
                        &mut touched,
                    )?;
                }
                Ok((
                    Baseline {
                        manifest,
                        watch: Some(w),
                        root_id: id,
                    },
                    Seen::Relisted(touched),
                ))
            }
            Dirty::All => {
                // Its watches go before the walk sets new ones (the user's limit is shared).
                drop(w);
                walk(handle, root, Some(manifest), most)
            }
        };
    }
    let _ = sweep;
    walk(handle, root, last.map(|b| b.manifest), most)
}

/// A folder's identity (device, inode), told from its handle.
fn identity(handle: &File) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        handle
            .metadata()
            .map(|m| (m.dev(), m.ino()))
            .unwrap_or_default()
    }
    #[cfg(not(unix))]
    {
        let _ = handle;
        (0, 0)
    }
}

/// The folder walked whole, watched from now on where it can be.
fn walk(
    handle: &File,
    root: &Path,
    previous: Option<Manifest>,
    most: usize,
) -> Result<(Baseline, Seen), NotRecorded> {
    #[cfg(target_os = "linux")]
    if let Ok(mut w) = Watch::new() {
        let manifest = scan::scan_with(handle, root, most, &mut |d, rel, walked| {
            // One that cannot be set (the user's limit of watches): walked from now on.
            let _ = w.add(d, rel, walked);
            Ok(())
        })?;
        if w.complete() {
            let b = Baseline {
                manifest,
                watch: Some(w),
                root_id: identity(handle),
            };
            return Ok((b, Seen::Walked(previous)));
        }
        if manifest.len() > MOST_WALKED.min(most) {
            return Err(NotRecorded::TooLarge {
                limit: MOST_WALKED.min(most),
            });
        }
        let b = Baseline {
            manifest,
            watch: None,
            root_id: identity(handle),
        };
        return Ok((b, Seen::Walked(previous)));
    }
    let manifest = scan::scan(handle, root, MOST_WALKED.min(most))?;
    Ok((
        Baseline {
            manifest,
            watch: None,
            root_id: identity(handle),
        },
        Seen::Walked(previous),
    ))
}
