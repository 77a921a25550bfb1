//! Measurement helpers for the benchmarks: their runtime, the plain baseline, memory,
//! statistics and the printed table.

use std::process::Stdio;
use std::time::{Duration, Instant};

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

/// A table of four columns in Markdown, under `header` (its first line).
pub fn print_rows(header: &str, rows: Vec<(String, String, String, String)>) {
    println!();
    println!("{header}");
    println!("|---|---|---|---|");
    for (a, b, c, d) in rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
    println!();
}

/// The benchmark's table (measure, stigmer, baseline, note) in Markdown, and the machine.
pub fn print_table(rows: Vec<(String, String, String, String)>) {
    print_rows("| measure | stigmer | baseline | note |", rows);
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel()
    );
}
