//! Runs in the server: start, stream, cancel, and remember them.
//!
//! Each run's requester gets every output byte (a slow requester slows the command down, it
//! never loses bytes). The event bus gets a copy for the desktop app. Every run's record, with
//! the head and tail of its output and an exact count of what was left out, goes to the
//! [`History`] (on disk, it outlasts the server); the whole output is kept on disk too
//! ([`Spool`]) and can be read back by page, after a restart as well.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use base64::Engine as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use stigmer_protocol::run::{OutputSummary, RunState, RunSummary};

use crate::admission::Approved;
use crate::changes::record::Recorder;
use crate::error::{Error, ErrorCode, Result};
use crate::events::{Event, EventBus};
use crate::execute::{Chunk, Stream};
use crate::history::{History, Query};
use crate::spool::{OutputPage, Spool, SpoolWriter};
use crate::util::{now_ms, random_hex};
use stigmer_protocol::changes::RunChanges;

/// Output events on the bus carry at most this many bytes each.
mod changes;
#[cfg(target_os = "linux")]
mod undo;

const EVENT_OUTPUT_BYTES: usize = 16 * 1024;
/// How long the final `finished` message may wait for a client that does not read.
const FINISH_SEND_LIMIT: Duration = Duration::from_secs(5);

/// The largest page of `GET /v1/runs`.
pub const HISTORY_LEN: usize = crate::history::MAX_PAGE;
/// Bytes of each stream kept from the start and from the end of a run's output.
pub const HEAD_BYTES: usize = 8 * 1024;
pub const TAIL_BYTES: usize = 8 * 1024;

/// What the requester of a run receives, in order.
#[derive(Debug)]
pub enum RunEvent {
    Started(RunSummary),
    Output(Chunk),
    Finished(RunSummary),
}

pub struct StartedRun {
    pub id: String,
    pub events: mpsc::Receiver<RunEvent>,
}

#[derive(Default)]
struct Inner {
    /// Set when the server stops: no new run may start.
    closed: bool,
    active: HashMap<String, CancellationToken>,
    /// Runs the user stopped, until they end: their record says so.
    stopped: HashSet<String>,
}

pub struct RunRegistry {
    inner: Mutex<Inner>,
    bus: EventBus,
    history: Arc<History>,
    /// Where whole outputs are kept; none when the directory could not be made.
    spool: Option<Arc<Spool>>,
    /// Set while retention runs off the runs' path (one at a time).
    trimming: Arc<AtomicBool>,
    /// Records what runs change in their folders; none when the history is not on disk.
    recorder: Option<Arc<Recorder>>,
    /// One diff at a time (each may take a core for its deadline).
    diffing: Mutex<()>,
}

impl RunRegistry {
    /// The registry over `history`: runs an earlier server left running are marked
    /// interrupted (what they printed until then stays readable), and output files no run
    /// refers to any more are deleted.
    pub fn new(
        bus: EventBus,
        history: History,
        spool: Option<Spool>,
        recorder: Option<Recorder>,
    ) -> Arc<RunRegistry> {
        let registry = RunRegistry {
            inner: Mutex::default(),
            bus,
            history: Arc::new(history),
            spool: spool.map(Arc::new),
            trimming: Arc::default(),
            recorder: recorder.map(Arc::new),
            diffing: Mutex::default(),
        };
        registry.recover();
        Arc::new(registry)
    }

    fn recover(&self) {
        for mut run in self.history.interrupted_runs() {
            run.state = RunState::Interrupted;
            run.error = Some(Error::interrupted());
            if let Some(spool) = &self.spool {
                run.stdout.stored_bytes = spool.len(&run.id, Stream::Stdout);
                run.stderr.stored_bytes = spool.len(&run.id, Stream::Stderr);
                run.stdout.total_bytes = run.stdout.stored_bytes;
                run.stderr.total_bytes = run.stderr.stored_bytes;
            }
            tracing::warn!(run = %run.id, command = %run.command, "a run was interrupted by the previous server's end");
            self.history.record(&run);
            if self.recorder.is_some() {
                // What it changed was to be told at its end, which never came: said.
                self.history.put_changes(&RunChanges {
                    run_id: run.id.clone(),
                    folder: run.cwd.display().to_string(),
                    recorded: false,
                    reason: Some(
                        "the server stopped while this command ran (it crashed or was killed), \
                         so what it changed could not be told; look at its folder, and the next \
                         run there is recorded as usual"
                            .into(),
                    ),
                    files: Vec::new(),
                    overlapped: false,
                    unkept: None,
                });
            }
        }
        let gone = self.history.prune();
        self.forget_output(gone.iter().map(String::as_str));
        // Contents of runs gone (now, or before a crash) go too.
        collect_contents(&self.history, self.recorder.as_deref());
        // Output files no record refers to go: those of pruned runs, or all of them when the
        // user keeps no history on disk. A history that failed to open says nothing about them.
        if let Some(spool) = &self.spool {
            if self.history.memory_by_choice() {
                spool.retain(&HashSet::new());
            } else if let (Some(_), Ok(keep)) = (self.history.path(), self.history.with_output()) {
                spool.retain(&keep);
            }
        }
    }

    /// The history the runs are recorded in.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Start a run that passed every check ([`crate::admission`]). Nothing is started when
    /// this returns an error. Dropping the returned receiver cancels the run.
    pub fn start(self: &Arc<Self>, run: Approved) -> Result<StartedRun> {
        let (target, req, client) = (run.target(), run.req(), run.client().map(String::from));
        let id = new_run_id()?;
        let cancel = CancellationToken::new();
        let summary = RunSummary {
            id: id.clone(),
            command: req.command.display(),
            mode: target.mode(),
            image: target.image().map(str::to_string),
            cwd: req.cwd.clone(),
            client,
            state: RunState::Running,
            started_at_ms: now_ms(),
            finished_at_ms: None,
            outcome: None,
            error: None,
            stdout: OutputSummary::default(),
            stderr: OutputSummary::default(),
        };
        {
            let mut inner = self.lock();
            if inner.closed {
                return Err(Error::new(
                    ErrorCode::ServerUnavailable,
                    "the server is stopping; nothing was run",
                ));
            }
            inner.active.insert(id.clone(), cancel.clone());
        }
        // Recorded before it starts: a crash from now on leaves it marked interrupted.
        self.history.record(&summary);
        tracing::info!(run = %id, mode = %target.mode(), command = %summary.command, "run started");
        self.bus.publish(Event::RunStarted {
            run: summary.clone(),
        });
        let (tx, rx) = mpsc::channel(8);
        let _ = tx.try_send(RunEvent::Started(summary.clone()));
        tokio::spawn(self.clone().drive(summary, run, cancel, tx));
        Ok(StartedRun { id, events: rx })
    }

    async fn drive(
        self: Arc<Self>,
        mut summary: RunSummary,
        run: Approved,
        cancel: CancellationToken,
        tx: mpsc::Sender<RunEvent>,
    ) {
        // Small queues: a slow reader holds back the command, not megabytes of our memory.
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<Chunk>(4);
        // Its folder as it is before it starts (what it changes is known at its end).
        let recording = self.begin_recording(&run).await;
        let exec = run.spawn(chunk_tx, cancel.clone());
        let (mut out, mut err) = (Capture::default(), Capture::default());
        let mut spooled = self.spool.as_ref().map(|s| {
            (
                s.writer(&summary.id, Stream::Stdout),
                s.writer(&summary.id, Stream::Stderr),
            )
        });
        let mut requester = Some(tx);
        loop {
            let gone = async {
                match &requester {
                    Some(t) => t.closed().await,
                    None => std::future::pending().await,
                }
            };
            let chunk = tokio::select! {
                c = chunk_rx.recv() => c,
                _ = gone => {
                    // The client hung up: stop the command, keep the record.
                    cancel.cancel();
                    requester = None;
                    continue;
                }
            };
            let Some(chunk) = chunk else { break };
            match chunk.stream {
                Stream::Stdout => out.push(&chunk.data),
                Stream::Stderr => err.push(&chunk.data),
            }
            if let Some((o, e)) = &mut spooled {
                let w: &mut SpoolWriter = if chunk.stream == Stream::Stdout { o } else { e };
                w.push(&chunk.data);
            }
            if self.bus.has_subscribers() {
                // Small pieces: a stalled subscriber holds at most CAPACITY of them.
                for piece in chunk.data.chunks(EVENT_OUTPUT_BYTES) {
                    self.bus.publish(Event::RunOutput {
                        run_id: summary.id.clone(),
                        stream: chunk.stream,
                        data: base64::engine::general_purpose::STANDARD.encode(piece),
                    });
                }
            }
            // Once cancelled, output is no longer forwarded: the client may not be reading, and
            // waiting for it would keep the command's pipes from draining.
            if let (Some(t), false) = (&requester, cancel.is_cancelled()) {
                let hung_up = tokio::select! {
                    r = t.send(RunEvent::Output(chunk)) => r.is_err(),
                    _ = cancel.cancelled() => false,
                };
                if hung_up {
                    cancel.cancel();
                    requester = None;
                }
            }
        }
        let result = exec
            .await
            .unwrap_or_else(|e| Err(Error::internal(format!("run task failed: {e}"))));
        summary.finished_at_ms = Some(now_ms());
        summary.stdout = out.summary();
        summary.stderr = err.summary();
        if let Some((o, e)) = &spooled {
            summary.stdout.stored_bytes = o.written();
            summary.stderr.stored_bytes = e.written();
        }
        let by_user = self.lock().stopped.contains(&summary.id);
        let mut result = result;
        if let Some(changes) = self
            .end_recording(&summary.id, recording, result.is_ok())
            .await
        {
            if let Ok(o) = &mut result {
                o.changed = changes.summary_line();
                o.unrecorded = (!changes.recorded)
                    .then(|| changes.reason.clone())
                    .flatten();
            }
        }
        match result {
            Ok(outcome) => {
                summary.state = RunState::Finished;
                summary.outcome = Some(outcome);
                // The outcome stays (what it printed, how it ended); the error says why.
                summary.error = by_user.then(Error::cancelled_by_user);
            }
            Err(e) => {
                summary.state = RunState::Failed;
                summary.error = Some(e);
            }
        }
        tracing::info!(
            run = %summary.id,
            exit = ?summary.outcome.as_ref().map(|o| o.shell_exit_code()),
            duration_ms = ?summary.outcome.as_ref().map(|o| o.duration_ms.round()),
            "run finished"
        );
        // Written before anyone hears that it ended: a finished run is never lost.
        self.history.record(&summary);
        {
            // Together: a stop from now on finds the run ended.
            let mut inner = self.lock();
            inner.active.remove(&summary.id);
            inner.stopped.remove(&summary.id);
        }
        let own = summary.stdout.stored_bytes + summary.stderr.stored_bytes;
        if own > 0 && own > self.history.retention().max_output_bytes {
            // Its own output alone is over the budget: it goes (not the others'), and its
            // client is told so.
            self.history.drop_output(&summary.id);
            summary.stdout.stored_bytes = 0;
            summary.stderr.stored_bytes = 0;
            self.forget_output(std::iter::once(summary.id.as_str()));
        }
        if self.history.due() {
            self.trim_later();
        }
        self.bus.publish(Event::RunFinished {
            run: summary.clone(),
        });
        if let Some(t) = requester {
            let _ =
                tokio::time::timeout(FINISH_SEND_LIMIT, t.send(RunEvent::Finished(summary))).await;
        }
    }

    /// Stop a run for the user: its tree ends as for a timeout, and its record and its client
    /// say the user stopped it (`CANCELLED_BY_USER`). False when it had already ended.
    pub fn stop(&self, id: &str) -> Result<bool> {
        let mut inner = self.lock();
        if let Some(c) = inner.active.get(id).cloned() {
            inner.stopped.insert(id.to_string());
            c.cancel();
            return Ok(true);
        }
        drop(inner);
        match self.history.get(id)? {
            Some(_) => Ok(false),
            None => Err(Error::run_not_found(id)),
        }
    }

    /// [`RunRegistry::stop`] every running command: how many there were.
    pub fn stop_all(&self) -> usize {
        let mut inner = self.lock();
        let ids: Vec<(String, CancellationToken)> = inner
            .active
            .iter()
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        for (id, c) in &ids {
            inner.stopped.insert(id.clone());
            c.cancel();
        }
        ids.len()
    }

    /// Cancel every run and refuse new ones (server stop).
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        for c in inner.active.values() {
            c.cancel();
        }
    }

    pub fn active_count(&self) -> usize {
        self.lock().active.len()
    }

    /// Wait until no run is active, at most `limit`.
    pub async fn wait_idle(&self, limit: Duration) {
        let until = std::time::Instant::now() + limit;
        while self.active_count() > 0 && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Runs from the history, the most recent first.
    pub fn list(&self, q: &Query) -> Result<Vec<RunSummary>> {
        self.history.query(q)
    }

    pub fn get(&self, id: &str) -> Result<Option<RunSummary>> {
        self.history.get(id)
    }

    /// Read a page of a run's whole output: `limit` bytes (at most [`crate::spool::MAX_PAGE`])
    /// from `offset`. Works while the run is going on.
    pub fn read_output(
        &self,
        id: &str,
        stream: Stream,
        offset: u64,
        limit: u64,
    ) -> Result<OutputPage> {
        // Whether it runs is asked first: a run leaves `active` only after its final record
        // is written, so a record read after this is at least as new.
        let running = self.lock().active.contains_key(id);
        let run = self.get(id)?.ok_or_else(|| Error::run_not_found(id))?;
        let spool = self.spool.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::Internal,
                "this server keeps no run output (its cache directory could not be created); see the server log",
            )
        })?;
        let running = running && run.state == RunState::Running;
        let of = |s: &OutputSummary| (s.total_bytes, s.stored_bytes);
        let (total, stored) = match (running, stream) {
            (true, _) => {
                // Still being written: what is on disk is what can be read so far.
                let n = spool.len(id, stream);
                (n, n)
            }
            (false, Stream::Stdout) => of(&run.stdout),
            (false, Stream::Stderr) => of(&run.stderr),
        };
        if !running && stored == 0 && total > 0 {
            return Err(Error::new(
                ErrorCode::RunNotFound,
                format!(
                    "the whole {} output of {id} is no longer kept (history.max_output, or room for newer runs' output); its head and tail are in the run's record",
                    stream.name()
                ),
            ));
        }
        if offset > stored {
            return Err(Error::new(
                ErrorCode::InvalidRequest,
                format!(
                    "offset {offset} is past the end of the kept {} output ({stored} bytes)",
                    stream.name()
                ),
            ));
        }
        if limit == 0 || limit > crate::spool::MAX_PAGE {
            return Err(Error::new(
                ErrorCode::InvalidRequest,
                format!(
                    "limit must be between 1 and {} bytes",
                    crate::spool::MAX_PAGE
                ),
            ));
        }
        let data = spool.read(id, stream, offset, limit, stored, running)?;
        let next_offset = offset + data.len() as u64;
        Ok(OutputPage {
            run_id: id.to_string(),
            stream,
            offset,
            next_offset,
            total_bytes: total,
            stored_bytes: stored,
            eof: !running && next_offset >= stored,
            text: String::from_utf8_lossy(&data).into_owned(),
        })
    }

    /// Retention off the runs' path: on a blocking thread, one at a time; a run that ends
    /// meanwhile and finds it busy is covered by the look again at its end.
    fn trim_later(&self) {
        if self.trimming.swap(true, Ordering::SeqCst) {
            return;
        }
        let (history, spool, trimming, recorder) = (
            self.history.clone(),
            self.spool.clone(),
            self.trimming.clone(),
            self.recorder.clone(),
        );
        tokio::task::spawn_blocking(move || loop {
            let gone = history.prune();
            if let Some(spool) = &spool {
                gone.iter().for_each(|id| spool.remove(id));
            }
            if !gone.is_empty() {
                collect_contents(&history, recorder.as_deref());
            }
            trimming.store(false, Ordering::SeqCst);
            if !history.due() || trimming.swap(true, Ordering::SeqCst) {
                return;
            }
        });
    }

    /// Delete the kept output of these runs.
    fn forget_output<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        if let Some(spool) = &self.spool {
            ids.for_each(|id| spool.remove(id));
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }
}

/// Kept file contents no recorded run refers to any more go (a history that cannot be read
/// keeps them all).
fn collect_contents(history: &History, recorder: Option<&Recorder>) {
    let Some(recorder) = recorder else {
        return;
    };
    if history.path().is_none() {
        return;
    }
    if let Some((n, bytes)) = recorder.collect(|| history.referenced_contents().ok()) {
        if n > 0 {
            tracing::info!(
                contents = n,
                bytes,
                "kept contents no run refers to were removed"
            );
        }
    }
}

fn new_run_id() -> Result<String> {
    Ok(format!("run_{}", random_hex(8)?))
}

/// Keeps the first [`HEAD_BYTES`] and the last [`TAIL_BYTES`] of a stream and counts the rest.
#[derive(Debug, Default)]
pub struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
    lines: u64,
}

impl Capture {
    pub fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        self.lines += data.iter().filter(|b| **b == b'\n').count() as u64;
        let room = HEAD_BYTES - self.head.len();
        if room > 0 {
            let n = room.min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        if data.len() >= TAIL_BYTES {
            self.tail.clear();
            self.tail.extend(&data[data.len() - TAIL_BYTES..]);
        } else {
            self.tail.extend(data);
            let excess = self.tail.len().saturating_sub(TAIL_BYTES);
            self.tail.drain(..excess);
        }
    }

    pub fn summary(&self) -> OutputSummary {
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let count = |b: &[u8]| b.iter().filter(|c| **c == b'\n').count() as u64;
        OutputSummary {
            total_bytes: self.total,
            total_lines: self.lines,
            head: String::from_utf8_lossy(&self.head).into_owned(),
            tail: String::from_utf8_lossy(&tail).into_owned(),
            omitted_bytes: self.total - self.head.len() as u64 - tail.len() as u64,
            omitted_lines: self.lines - count(&self.head) - count(&tail),
            stored_bytes: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_counts_exactly_what_it_leaves_out() {
        let mut c = Capture::default();
        let line = b"0123456789abcde\n"; // 16 bytes
        for _ in 0..10_000 {
            c.push(line);
        }
        let s = c.summary();
        assert_eq!(s.total_bytes, 160_000);
        assert_eq!(s.total_lines, 10_000);
        assert_eq!(s.head.len(), HEAD_BYTES);
        assert_eq!(s.tail.len(), TAIL_BYTES);
        assert_eq!(s.omitted_bytes, 160_000 - (HEAD_BYTES + TAIL_BYTES) as u64);
        assert_eq!(
            s.omitted_lines,
            10_000 - ((HEAD_BYTES + TAIL_BYTES) / 16) as u64
        );
        assert!(s.tail.ends_with("abcde\n"));
    }

    #[test]
    fn small_output_is_all_head() {
        let mut c = Capture::default();
        c.push(b"hello\n");
        let s = c.summary();
        assert_eq!(
            (s.head.as_str(), s.tail.as_str(), s.omitted_bytes),
            ("hello\n", "", 0)
        );
    }
}
