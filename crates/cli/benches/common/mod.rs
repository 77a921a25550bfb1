//! Helpers shared by the benchmarks: the real binary, a real server, API clients, statistics.

#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_stigmer");

pub fn cmd(home: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.env("STIGMER_HOME", home).stdin(Stdio::null());
    c
}

// The caller waits for the child in `stop`.
#[allow(clippy::zombie_processes)]
pub fn start_server(home: &std::path::Path) -> (std::process::Child, Duration) {
    let disc = home.join("data/server.json");
    let _ = std::fs::remove_file(&disc);
    let t = Instant::now();
    let child = cmd(home)
        .args([
            "server",
            "start",
            "--foreground",
            "--port",
            "0",
            "--detached",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    loop {
        if let Ok(text) = std::fs::read(&disc) {
            if serde_json::from_slice::<Value>(&text).is_ok_and(|v| v["pid"] == child.id()) {
                return (child, t.elapsed());
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The benchmarks' runtime: two workers, like the server's.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The baseline: spawn `true` directly, with piped output as the server does; its duration.
pub async fn direct_true() -> Duration {
    let t = Instant::now();
    let status = tokio::process::Command::new("true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .status()
        .await
        .unwrap();
    assert!(status.success());
    t.elapsed()
}

pub fn stop(child: &mut std::process::Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    child.wait().unwrap();
}

pub fn discovery(home: &std::path::Path) -> (String, String) {
    let d: Value =
        serde_json::from_slice(&std::fs::read(home.join("data/server.json")).unwrap()).unwrap();
    let token = std::fs::read_to_string(home.join("data/token")).unwrap();
    (
        d["url"].as_str().unwrap().to_string(),
        token.trim().to_string(),
    )
}

/// Run through the API, decode every output byte; returns (bytes, exit code).
pub async fn api_run(client: &reqwest::Client, url: &str, token: &str, body: Value) -> (u64, i64) {
    let mut resp = client
        .post(format!("{url}/v1/runs"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut pending = Vec::new();
    let mut total = 0u64;
    let b64 = base64::engine::general_purpose::STANDARD;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        pending.extend_from_slice(&chunk);
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let v: Value = serde_json::from_slice(&line).unwrap();
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

/// Run through the API with binary frames; returns (bytes, exit code).
pub async fn api_run_frames(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
) -> (u64, i64) {
    use stigmer_engine::server::frames;
    let mut resp = client
        .post(format!("{url}/v1/runs"))
        .bearer_auth(token)
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
                let v: Value = serde_json::from_slice(&payload).unwrap();
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

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn p99(v: &mut [Duration]) -> Duration {
    v.sort();
    v[((v.len() as f64 * 0.99).ceil() as usize).min(v.len()) - 1]
}

pub fn fmt_ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_default()
}

/// The benchmark's table (measure, stigmer, baseline, note) in Markdown, and the machine.
pub fn print_table(rows: Vec<(String, String, String, String)>) {
    println!();
    println!("| measure | stigmer | baseline | note |");
    println!("|---|---|---|---|");
    for (a, b, c, d) in rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
    println!();
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel()
    );
}
