//! Turning an engine's per-layer pull messages into one progress line: phase, percent, bytes
//! done and total, rate. Pure, so it is tested without an engine.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use stigmer_protocol::events::{Phase, Progress};

#[derive(Debug, Default, Clone, Copy)]
struct Layer {
    downloaded: u64,
    size: u64,
    download_done: bool,
    /// Bytes extracted so far (extraction of a big layer can take a while).
    extracting: u64,
    extracted: bool,
}

/// Aggregates layer messages of one pull.
#[derive(Debug)]
pub struct PullProgress {
    layers: BTreeMap<String, Layer>,
    started: Instant,
    rate_window: (Instant, u64),
    rate: u64,
}

impl PullProgress {
    pub fn new(now: Instant) -> PullProgress {
        PullProgress {
            layers: BTreeMap::new(),
            started: now,
            rate_window: (now, 0),
            rate: 0,
        }
    }

    /// Take one message (`status`, layer `id`, `current`/`total` bytes).
    pub fn update(
        &mut self,
        status: &str,
        id: Option<&str>,
        current: Option<i64>,
        total: Option<i64>,
    ) {
        let Some(id) = id.filter(|i| !i.is_empty() && !i.contains(':') && status != "Pulling from")
        else {
            return;
        };
        let layer = self.layers.entry(id.to_string()).or_default();
        let (current, total) = (
            current.unwrap_or(0).max(0) as u64,
            total.unwrap_or(0).max(0) as u64,
        );
        match status {
            "Downloading" => {
                layer.downloaded = current;
                if total > 0 {
                    layer.size = total;
                }
            }
            "Verifying Checksum" | "Download complete" => {
                layer.download_done = true;
                layer.downloaded = layer.size.max(layer.downloaded);
            }
            "Extracting" => {
                layer.download_done = true;
                layer.extracting = current;
                if layer.size == 0 && total > 0 {
                    layer.size = total;
                }
                layer.downloaded = layer.size.max(layer.downloaded);
            }
            "Pull complete" | "Already exists" => {
                layer.download_done = true;
                layer.extracted = true;
                layer.downloaded = layer.size.max(layer.downloaded);
            }
            _ => {}
        }
    }

    /// Changes whenever the pull gets anywhere: bytes downloaded, layers finished.
    pub fn marker(&self) -> (u64, usize) {
        let bytes = self
            .layers
            .values()
            .map(|l| l.downloaded + l.extracting)
            .sum();
        let done = self.layers.values().filter(|l| l.download_done).count()
            + self.layers.values().filter(|l| l.extracted).count();
        (bytes, done)
    }

    pub fn snapshot(&mut self, now: Instant) -> Progress {
        let bytes_total: u64 = self.layers.values().map(|l| l.size).sum();
        let bytes_done: u64 = self
            .layers
            .values()
            .map(|l| l.downloaded.min(l.size.max(l.downloaded)))
            .sum();
        let all_downloaded =
            !self.layers.is_empty() && self.layers.values().all(|l| l.download_done);
        let phase = if self.layers.is_empty() {
            Phase::Resolving
        } else if all_downloaded {
            Phase::Extracting
        } else {
            Phase::Downloading
        };
        // Rate over the last second or more, so it does not jump with every message.
        let (since, done_then) = self.rate_window;
        let span = now.saturating_duration_since(since);
        if span >= Duration::from_secs(1) {
            self.rate = ((bytes_done.saturating_sub(done_then)) as f64 / span.as_secs_f64()) as u64;
            self.rate_window = (now, bytes_done);
        }
        let percent = match phase {
            Phase::Extracting => {
                let n = self.layers.len() as f64;
                let extracted = self.layers.values().filter(|l| l.extracted).count() as f64;
                Some(99.0_f64.min(90.0 + 10.0 * extracted / n))
            }
            _ if bytes_total > 0 => Some(90.0 * bytes_done as f64 / bytes_total as f64),
            _ => None,
        };
        Progress {
            phase,
            percent: percent.map(|p| (p * 10.0).round() / 10.0),
            bytes_done,
            bytes_total,
            rate_bytes_per_sec: self.rate,
            elapsed_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            detail: None,
        }
    }
}

/// `Step 3/9 : RUN ...` from a classic builder's output: (3, 9, the line).
pub fn build_step(line: &str) -> Option<(u32, u32, String)> {
    // Docker says `Step 1/3 : FROM x`, Podman (Buildah) `STEP 1/3: FROM x`.
    let line = line.trim();
    let rest = line
        .strip_prefix("Step ")
        .or_else(|| line.strip_prefix("STEP "))?;
    let (nums, _) = rest.split_once([' ', ':'])?;
    let (n, m) = nums.split_once('/')?;
    Some((n.parse().ok()?, m.parse().ok()?, line.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_steps_are_read_from_docker_and_podman() {
        assert_eq!(build_step("Step 2/3 : COPY a /a").unwrap().0, 2);
        let (n, m, text) = build_step("STEP 2/3: COPY a /a").unwrap();
        assert_eq!((n, m, text.as_str()), (2, 3, "STEP 2/3: COPY a /a"));
        assert!(build_step("Sending build context").is_none());
    }

    #[test]
    fn layers_add_up_into_one_progress() {
        let t0 = Instant::now();
        let mut p = PullProgress::new(t0);
        assert_eq!(p.snapshot(t0).phase, Phase::Resolving);
        p.update("Pulling from", Some("stigmer/basic"), None, None);
        p.update("Pulling fs layer", Some("aaa"), None, None);
        p.update("Pulling fs layer", Some("bbb"), None, None);
        p.update("Downloading", Some("aaa"), Some(50), Some(100));
        p.update("Downloading", Some("bbb"), Some(100), Some(300));
        let s = p.snapshot(t0 + Duration::from_secs(2));
        assert_eq!(
            (s.phase, s.bytes_done, s.bytes_total),
            (Phase::Downloading, 150, 400)
        );
        assert_eq!(s.percent, Some(33.8));
        assert_eq!(s.rate_bytes_per_sec, 75);
        p.update("Download complete", Some("aaa"), None, None);
        p.update("Download complete", Some("bbb"), None, None);
        let s = p.snapshot(t0 + Duration::from_secs(3));
        assert_eq!((s.phase, s.bytes_done), (Phase::Extracting, 400));
        p.update("Pull complete", Some("aaa"), None, None);
        let s = p.snapshot(t0 + Duration::from_secs(3));
        assert_eq!(s.percent, Some(95.0));
    }

    #[test]
    fn already_present_layers_count_as_done() {
        let t0 = Instant::now();
        let mut p = PullProgress::new(t0);
        p.update("Already exists", Some("aaa"), None, None);
        assert_eq!(p.snapshot(t0).phase, Phase::Extracting);
    }

    #[test]
    fn build_steps() {
        assert_eq!(
            build_step("Step 3/9 : RUN x").map(|s| (s.0, s.1)),
            Some((3, 9))
        );
        assert_eq!(build_step(" ---> abc"), None);
    }
}
