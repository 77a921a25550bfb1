//! The full output of recent runs, kept on disk, so that what was cut from a reply (the middle
//! of a long output) can be read back by run id, page by page.
//!
//! One file per run and stream in the data directory, kept as long as the run's record in the
//! history keeps them ([`crate::history`]). Spooling never fails a run: when a file cannot be
//! written, the run goes on and its summary says how much was kept.

pub use stigmer_protocol::run::OutputPage;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorCode, Result};
use crate::paths::Paths;
use stigmer_protocol::run::Stream;

/// Bytes kept of one stream of one run; the head and tail of the summary cover the rest.
/// (Agents' commands rarely print more; writing everything would halve the throughput.)
pub const STREAM_LIMIT: u64 = 64 * 1024 * 1024;
/// The largest page one read returns.
pub const MAX_PAGE: u64 = 1024 * 1024;

/// The spool directory of one server.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Open the spool under `paths`, with what earlier servers kept.
    pub fn open(paths: &Paths) -> Result<Spool> {
        let dir = Spool::dir_of(paths);
        Paths::ensure_private_dir(&dir)?;
        Ok(Spool { dir })
    }

    /// Delete every file but those of the runs in `keep` (output no record refers to).
    pub fn retain(&self, keep: &std::collections::HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let id = name.split('.').next().unwrap_or_default();
            if !keep.contains(id) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Where the server of `paths` keeps run output.
    pub fn dir_of(paths: &Paths) -> PathBuf {
        paths.run_output_dir()
    }

    fn file(&self, run_id: &str, stream: Stream) -> PathBuf {
        self.dir.join(format!("{run_id}.{}", stream.name()))
    }

    /// A writer for one stream of a new run. The file is made with the first byte: most
    /// commands leave at least one stream empty.
    pub fn writer(&self, run_id: &str, stream: Stream) -> SpoolWriter {
        SpoolWriter {
            file: None,
            path: self.file(run_id, stream),
            written: 0,
            failed: false,
        }
    }

    /// Up to `limit` bytes of a stream from `offset`, never past `end` (the bytes kept). A
    /// page that stops before `end`, or any page of a stream still `growing`, is cut back to a
    /// UTF-8 character boundary, so the next page starts on a character; the last page, and a
    /// page too short to hold one whole character, are returned as they are, so reading always
    /// makes progress.
    pub fn read(
        &self,
        run_id: &str,
        stream: Stream,
        offset: u64,
        limit: u64,
        end: u64,
        growing: bool,
    ) -> Result<Vec<u8>> {
        let path = self.file(run_id, stream);
        let unreadable = |e: std::io::Error| {
            Error::new(
                ErrorCode::Internal,
                format!("cannot read the output kept in {}: {e}", path.display()),
            )
        };
        let want = limit.min(MAX_PAGE).min(end.saturating_sub(offset));
        if want == 0 {
            return Ok(Vec::new());
        }
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::new(
                    ErrorCode::RunNotFound,
                    format!(
                        "the output of {run_id} is no longer kept: it was dropped to make room for newer runs' output"
                    ),
                ))
            }
            Err(e) => return Err(unreadable(e)),
        };
        file.seek(SeekFrom::Start(offset)).map_err(unreadable)?;
        let mut buf = Vec::new();
        file.take(want).read_to_end(&mut buf).map_err(unreadable)?;
        if growing || offset + (buf.len() as u64) < end {
            let safe = utf8_safe_len(&buf);
            if safe > 0 {
                buf.truncate(safe);
            }
        }
        Ok(buf)
    }

    /// Bytes kept of one stream so far.
    pub fn len(&self, run_id: &str, stream: Stream) -> u64 {
        std::fs::metadata(self.file(run_id, stream)).map_or(0, |m| m.len())
    }

    /// Forget a run's output.
    pub fn remove(&self, run_id: &str) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let _ = std::fs::remove_file(self.file(run_id, stream));
        }
    }
}

/// Appends one stream's output to its file, up to [`STREAM_LIMIT`].
#[derive(Debug)]
pub struct SpoolWriter {
    file: Option<File>,
    path: PathBuf,
    written: u64,
    /// The file could not be written: stop trying.
    failed: bool,
}

impl SpoolWriter {
    /// Unbuffered on purpose: what was written can be read back while the run goes on.
    pub fn push(&mut self, data: &[u8]) {
        let room = (STREAM_LIMIT - self.written).min(data.len() as u64) as usize;
        if self.failed || room == 0 {
            return;
        }
        if self.file.is_none() {
            self.file = Some(match File::create(&self.path) {
                Ok(f) => f,
                Err(e) => return self.fail(e),
            });
        }
        if let Some(file) = &mut self.file {
            match file.write_all(&data[..room]) {
                Ok(()) => self.written += room as u64,
                Err(e) => self.fail(e),
            }
        }
        if self.written >= STREAM_LIMIT {
            self.file = None;
        }
    }

    fn fail(&mut self, e: std::io::Error) {
        tracing::warn!("stopped keeping the output in {}: {e}", self.path.display());
        self.failed = true;
        self.file = None;
    }

    /// Bytes kept so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The length of `buf` without a UTF-8 sequence cut at its end (so that the next page starts
/// on a character). Never cuts more than 3 bytes.
fn utf8_safe_len(buf: &[u8]) -> usize {
    let n = buf.len();
    for back in 1..=3.min(n) {
        let b = buf[n - back];
        if b & 0xC0 != 0x80 {
            // A lead byte (or ASCII): is its sequence complete?
            let need = match b {
                0x00..=0x7F => 1,
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => return n,
            };
            return if need > back { n - back } else { n };
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_end_on_character_boundaries() {
        let s = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        assert_eq!(utf8_safe_len(s), s.len());
        assert_eq!(utf8_safe_len(&s[..2]), 1); // half of é
        assert_eq!(utf8_safe_len(&s[..5]), 3); // two thirds of €
        assert_eq!(utf8_safe_len(&s[..9]), 6); // three quarters of 😀
        assert_eq!(utf8_safe_len(&[0x80, 0x80, 0x80, 0x80]), 4); // garbage still advances
    }

    #[test]
    fn writes_and_reads_back_pages_that_always_progress() {
        let home = tempfile::tempdir().unwrap();
        let spool = Spool::open(&Paths::under(home.path())).unwrap();
        let mut w = spool.writer("run_1", Stream::Stdout);
        w.push(b"hello ");
        w.push("wörld".as_bytes());
        assert_eq!(w.written(), 12);
        let read = |id: &str, offset, limit, end| {
            spool.read(id, Stream::Stdout, offset, limit, end, false)
        };
        assert_eq!(read("run_1", 0, 8, 12).unwrap(), b"hello w"); // the ö is not cut in half
        let rest = read("run_1", 7, 100, 12).unwrap();
        assert_eq!(String::from_utf8(rest).unwrap(), "örld");
        // A page too short for a whole character still advances.
        assert_eq!(read("run_1", 7, 1, 12).unwrap(), [0xC3]);
        // Output ending inside a character: the last page keeps its bytes.
        let mut w2 = spool.writer("run_3", Stream::Stdout);
        w2.push(b"caf\xC3");
        assert_eq!(read("run_3", 0, 4, 4).unwrap(), b"caf\xC3");
        // While the run goes on, its last byte may be half a character: not sent yet.
        assert_eq!(
            spool.read("run_3", Stream::Stdout, 0, 4, 4, true).unwrap(),
            b"caf"
        );
        assert!(read("run_2", 0, 10, 0).unwrap().is_empty());
        spool.remove("run_1");
        assert!(!w.path().exists());
        // Dropped output is an error, not an endless "nothing yet".
        assert_eq!(
            read("run_1", 0, 10, 12).unwrap_err().code,
            ErrorCode::RunNotFound
        );
    }
}
