//! Shared helpers for the integration tests and the benchmarks: the real `stigmer` binary, a
//! real server on 127.0.0.1, raw HTTP for requests a polite client would never send.

#![allow(dead_code)]

pub mod changes;
pub mod engine;
pub mod hostile;
pub mod measure;
#[cfg(target_os = "linux")]
pub mod protected;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_stigmer");

/// A private STIGMER_HOME for one test, and a folder to work in beside it (sandbox mode does
/// not mount a folder that holds stigmer's own files).
pub struct TestEnv {
    root: tempfile::TempDir,
    work: PathBuf,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let root = tempfile::tempdir().expect("temp dir");
        let work = root.path().join("work");
        std::fs::create_dir(&work).expect("work dir");
        TestEnv { root, work }
    }

    /// The test's working folder (commands' cwd, files the test makes).
    pub fn path(&self) -> &Path {
        &self.work
    }

    /// A folder of the test's own beside the working folder (not inside it), made on demand.
    pub fn beside(&self, name: &str) -> PathBuf {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).expect("folder beside the work folder");
        dir
    }

    /// The test's STIGMER_HOME.
    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    pub fn config_file(&self) -> PathBuf {
        self.home().join("config/config.toml")
    }

    pub fn discovery_file(&self) -> PathBuf {
        self.home().join("data/server.json")
    }

    /// `stigmer` with this environment and none of the user's stigmer settings.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("STIGMER_HOME", self.home());
        for v in [
            "STIGMER_EXECUTION_MODE",
            "STIGMER_SANDBOX_IMAGE",
            "STIGMER_SANDBOX_AUTO_PULL",
            "STIGMER_SANDBOX_CLEANUP",
            "STIGMER_SANDBOX_TTL",
        ] {
            c.env_remove(v);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Allow sandboxed runs in the test's working folder (`stigmer workspaces add`), as a user
    /// does for a project that API clients run in.
    pub fn allow_work(&self) {
        let o = self
            .cmd()
            .args(["workspaces", "add"])
            .arg(self.path())
            .output()
            .expect("stigmer workspaces add");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    pub fn stigmer(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run stigmer")
    }

    /// A server in the foreground, as the desktop app runs it. Stopped on drop.
    // The child is waited for by `Server`'s drop.
    pub fn start_server(&self) -> Server {
        self.start_server_env(&[])
    }

    /// [`TestEnv::start_server`] with extra environment (e.g. a DOCKER_HOST).
    pub fn start_server_env(&self, vars: &[(&str, &str)]) -> Server {
        let mut cmd = self.cmd();
        cmd.envs(vars.iter().copied());
        self.start_server_cmd(cmd)
    }

    /// A server started from `cmd` (this environment's `stigmer`, set up as a test needs:
    /// variables, signal dispositions...), once it is ready.
    #[allow(clippy::zombie_processes)]
    pub fn start_server_cmd(&self, mut cmd: Command) -> Server {
        let child = cmd
            .args(["server", "start", "--foreground", "--port", "0"])
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("TEST_SERVER_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("spawn server");
        let pid = child.id();
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(self.discovery_file()) {
                let d: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if d["pid"] == pid {
                    let url = d["url"].as_str().unwrap().to_string();
                    let token = std::fs::read_to_string(self.home().join("data/token")).unwrap();
                    let port = d["port"].as_u64().unwrap() as u16;
                    return Server {
                        child,
                        url,
                        port,
                        token: token.trim().to_string(),
                    };
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "server did not become ready"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

pub struct Server {
    pub child: Child,
    pub url: String,
    pub port: u16,
    pub token: String,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    pub fn post(&self, c: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        c.post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    pub fn get(&self, c: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        c.get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    /// Run `body` through the API (NDJSON), decoding every output byte: (bytes, exit code).
    pub async fn run_counted(&self, c: &reqwest::Client, body: serde_json::Value) -> (u64, i64) {
        use base64::Engine as _;
        let mut resp = self.post(c, "/v1/runs").json(&body).send().await.unwrap();
        let mut pending = Vec::new();
        let mut total = 0u64;
        let b64 = base64::engine::general_purpose::STANDARD;
        while let Some(chunk) = resp.chunk().await.unwrap() {
            pending.extend_from_slice(&chunk);
            while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
                match v["type"].as_str() {
                    Some("output") => {
                        total += b64.decode(v["data"].as_str().unwrap()).unwrap().len() as u64
                    }
                    Some("finished") => {
                        return (
                            total,
                            v["run"]["outcome"]["exit_code"].as_i64().unwrap_or(-1),
                        )
                    }
                    _ => {}
                }
            }
        }
        panic!("stream ended without a finished line");
    }

    /// [`Server::run_counted`] with binary frames: (bytes, exit code).
    pub async fn run_counted_frames(
        &self,
        c: &reqwest::Client,
        body: serde_json::Value,
    ) -> (u64, i64) {
        use stigmer_engine::server::frames;
        let mut resp = self
            .post(c, "/v1/runs")
            .header("Accept", frames::MEDIA_TYPE)
            .json(&body)
            .send()
            .await
            .unwrap();
        let mut decoder = frames::Decoder::default();
        let mut total = 0u64;
        while let Some(chunk) = resp.chunk().await.unwrap() {
            decoder.push(&chunk);
            while let Some((kind, payload)) = decoder.next_frame() {
                if kind == frames::KIND_JSON {
                    let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                    if v["type"] == "finished" {
                        return (
                            total,
                            v["run"]["outcome"]["exit_code"].as_i64().unwrap_or(-1),
                        );
                    }
                } else {
                    total += payload.len() as u64;
                }
            }
        }
        panic!("stream ended without a finished frame");
    }

    /// The first command waiting for the user's answer (`GET /v1/approvals`), once there is
    /// one (within 20 s).
    pub async fn pending_approval(&self, c: &reqwest::Client) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v: serde_json::Value = self
                .get(c, "/v1/approvals")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(p) = v["pending"].as_array().and_then(|p| p.first()).cloned() {
                return p;
            }
            assert!(Instant::now() < deadline, "the user was never asked");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Send raw bytes, read the whole answer: (status, body).
    pub fn raw(&self, request: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut reader = BufReader::new(s);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let mut content_length = None;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            if h == "\r\n" || h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; content_length.unwrap_or(0)];
        let _ = reader.read_exact(&mut body);
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Stop with SIGTERM and wait; SIGKILL if it does not stop within 30 s (and fail).
    pub fn stop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            panic!("the server did not stop within 30 s of SIGTERM");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        // Zombies have an empty cmdline and are gone already in all but name.
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(marker) && !text.contains("stigmer") {
            found.push(pid);
        }
    }
    found
}

/// Wait up to `limit` for no process to carry `marker`.
pub fn wait_no_process(marker: &str, limit: Duration) -> Vec<u32> {
    let until = Instant::now() + limit;
    loop {
        let left = processes_with(marker);
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A number (valid for `sleep`) unlikely to appear in any other process's command line. All
/// markers have the same width, so one is never a substring of another.
pub fn marker() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{}.{:04}{:02}",
        900 + (std::process::id() % 97),
        n % 10_000,
        c % 100
    )
}

/// Wait up to `limit` for at least `count` processes to carry `marker`.
pub fn wait_for_processes(marker: &str, count: usize, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if processes_with(marker).len() >= count {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Decode an NDJSON run stream into (stdout, stderr, finished line).
pub fn decode_stream(body: &[u8]) -> (Vec<u8>, Vec<u8>, serde_json::Value) {
    use base64::Engine as _;
    let (mut out, mut err, mut finished) = (Vec::new(), Vec::new(), serde_json::Value::Null);
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        match v["type"].as_str().unwrap() {
            "output" => {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(v["data"].as_str().unwrap())
                    .unwrap();
                if v["stream"] == "stdout" {
                    out.extend(data)
                } else {
                    err.extend(data)
                }
            }
            "finished" => finished = v,
            _ => {}
        }
    }
    (out, err, finished)
}

/// Read events until one of type `kind` arrives (at most `limit`): the events seen.
pub async fn events_until(
    events: &mut reqwest::Response,
    buf: &mut Vec<u8>,
    kind: &str,
    limit: Duration,
) -> Vec<serde_json::Value> {
    let until = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let v: serde_json::Value =
                serde_json::from_slice(&buf.drain(..=nl).collect::<Vec<u8>>()).unwrap();
            let done = v["type"] == kind;
            if v["type"] != "heartbeat" && v["type"] != "log" {
                seen.push(v);
            }
            if done {
                return seen;
            }
        }
        let left = until.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, events.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event: {seen:?}"))
            .unwrap()
            .unwrap();
        buf.extend_from_slice(&chunk);
    }
}
