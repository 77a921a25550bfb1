//! Side-by-side benchmark of local mode: stigmer's path against the plain baseline, in one run.
//!
//! `cargo bench -p stigmer-cli --bench local` (add `-- --quick` for fewer iterations).
//! Prints a Markdown table: latency of a trivial command (through the server API, through the
//! `stigmer run` CLI, and spawned directly), output throughput (server vs a plain pipe),
//! server start-to-ready, tool detection, and the server's idle memory.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../tests/common/mod.rs"]
mod common;

use common::measure::*;
use common::TestEnv;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 60 } else { 400 };
    let env = TestEnv::new();
    let rt = runtime();
    let mut rows: Vec<(String, String, String, String)> = Vec::new();

    // Start-to-ready, foreground server (what the desktop app does), several times.
    let mut ready = Vec::new();
    for _ in 0..if quick { 5 } else { 15 } {
        let t = Instant::now();
        let mut server = env.start_server();
        ready.push(t.elapsed());
        server.stop();
    }
    let mut bg = Vec::new();
    for _ in 0..if quick { 3 } else { 8 } {
        let t = Instant::now();
        let o = env.cmd().args(["server", "start"]).output().unwrap();
        assert!(o.status.success());
        bg.push(t.elapsed());
        env.cmd().args(["server", "stop"]).output().unwrap();
    }
    rows.push((
        "server start-to-ready (`server start --foreground`, median)".into(),
        fmt_ms(median(&mut ready)),
        "-".into(),
        "goal < 100 ms".into(),
    ));
    rows.push((
        "`stigmer server start` (background, CLI included, median)".into(),
        fmt_ms(median(&mut bg)),
        "-".into(),
        String::new(),
    ));

    let mut server = env.start_server();
    let client = server.client();
    let pid = server.pid();
    let rss_idle = rss_kib(pid);

    // Trivial command: direct spawn vs through the API (keep-alive client) vs the CLI.
    let mut direct = Vec::new();
    let mut api = Vec::new();
    let mut cli = Vec::new();
    let cli_n = n / 4;
    rt.block_on(async {
        for _ in 0..20 {
            server
                .run_counted(&client, json!({"argv": ["true"], "cwd": "/tmp"}))
                .await;
        }
        for i in 0..n {
            // Interleave, so drift hits both sides alike.
            direct.push(direct_true().await);
            let t = Instant::now();
            let (_, code) = server
                .run_counted(&client, json!({"argv": ["true"], "cwd": "/tmp"}))
                .await;
            assert_eq!(code, 0);
            api.push(t.elapsed());
            if i < cli_n {
                let t = Instant::now();
                let s = env.cmd().args(["run", "--", "true"]).status().unwrap();
                assert!(s.success());
                cli.push(t.elapsed());
            }
        }
    });
    let mut plain_cli = Vec::new();
    for _ in 0..cli_n {
        let t = Instant::now();
        Command::new("true").status().unwrap();
        plain_cli.push(t.elapsed());
    }
    let (dm, d99) = (median(&mut direct), p99(&mut direct));
    let (am, a99) = (median(&mut api), p99(&mut api));
    rows.push((
        format!("trivial command `true`, through the server API vs direct spawn (median, n={n})"),
        fmt_ms(am),
        fmt_ms(dm),
        format!("added {} (goal < 2 ms)", fmt_ms(am.saturating_sub(dm))),
    ));
    rows.push((
        format!("same, p99 (n={n})"),
        fmt_ms(a99),
        fmt_ms(d99),
        format!("added {}", fmt_ms(a99.saturating_sub(d99))),
    ));
    let (cm, pm) = (median(&mut cli), median(&mut plain_cli));
    rows.push((
        format!("`stigmer run -- true` (new CLI process + server) vs `true` from a shell (median, n={cli_n})"),
        fmt_ms(cm),
        fmt_ms(pm),
        format!("added {}", fmt_ms(cm.saturating_sub(pm))),
    ));

    // Throughput: a large stream through the server vs a plain pipe.
    let mib: u64 = if quick { 100 } else { 500 };
    let produce = format!("head -c {} /dev/zero", mib * 1024 * 1024);
    let t = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&produce)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = child.stdout.take().unwrap();
    loop {
        let k = out.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        total += k as u64;
    }
    child.wait().unwrap();
    let pipe_secs = t.elapsed().as_secs_f64();
    assert_eq!(total, mib * 1024 * 1024);
    let t = Instant::now();
    let (bytes, code) =
        rt.block_on(server.run_counted(&client, json!({"shell": produce, "cwd": "/tmp"})));
    let api_secs = t.elapsed().as_secs_f64();
    assert_eq!((bytes, code), (mib * 1024 * 1024, 0));
    let t = Instant::now();
    let (bytes, code) =
        rt.block_on(server.run_counted_frames(&client, json!({"shell": produce, "cwd": "/tmp"})));
    let frames_secs = t.elapsed().as_secs_f64();
    assert_eq!((bytes, code), (mib * 1024 * 1024, 0));
    let t = Instant::now();
    let o = env
        .cmd()
        .args(["run", "-c", &produce])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(o.success());
    let cli_secs = t.elapsed().as_secs_f64();
    let rate = |s: f64| format!("{:.0} MiB/s", mib as f64 / s);
    rows.push((
        format!(
            "output throughput, {mib} MiB through the server API, binary frames, vs a plain pipe"
        ),
        rate(frames_secs),
        rate(pipe_secs),
        format!(
            "{:.0}% of the pipe (goal >= 50%)",
            100.0 * pipe_secs / frames_secs
        ),
    ));
    rows.push((
        "same, NDJSON with base64 (client decodes every byte)".to_string(),
        rate(api_secs),
        rate(pipe_secs),
        format!("{:.0}% of the pipe", 100.0 * pipe_secs / api_secs),
    ));
    rows.push((
        "same through `stigmer run` (CLI writes to /dev/null)".to_string(),
        rate(cli_secs),
        rate(pipe_secs),
        format!("{:.0}% of the pipe", 100.0 * pipe_secs / cli_secs),
    ));

    // Tool detection (all probes in parallel).
    let mut detect = Vec::new();
    for _ in 0..3 {
        let v: Value = rt.block_on(async {
            server
                .get(&client, "/v1/tools?refresh=true")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        detect.push(Duration::from_secs_f64(
            v["duration_ms"].as_f64().unwrap() / 1000.0,
        ));
    }
    rows.push((
        "tool detection, 22 tools with version probes (median of 3)".into(),
        fmt_ms(median(&mut detect)),
        "-".into(),
        String::new(),
    ));

    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss_kib(pid);
    rows.push((
        "server RSS: idle after start / idle after the runs above".into(),
        format!(
            "{:.1} MiB / {:.1} MiB",
            rss_idle as f64 / 1024.0,
            rss_after as f64 / 1024.0
        ),
        "-".into(),
        "goal < 20 MiB".into(),
    ));
    server.stop();

    print_table(rows);
}
