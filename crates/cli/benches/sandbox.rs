//! Side-by-side benchmark of sandbox mode against the Docker CLI on the same engine, in one run.
//!
//! `cargo bench -p stigmer-cli --bench sandbox` (add `-- --quick` for fewer iterations). Needs
//! a running Docker Engine and busybox-static (the test image is made from it). Prints a
//! Markdown table: warm exec through stigmer vs `docker exec` on the same container, the first
//! command with the image cached (container create + start + exec) vs `docker run --rm`, and
//! output throughput from a container vs `docker exec ... cat`.

// The integration tests' helpers: environments, servers, engine images, process markers.
#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::engine;
use common::measure::*;
use common::{marker, processes_with, TestEnv};
use serde_json::json;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if !Command::new("docker")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!("SKIPPED: no container engine");
        return;
    }
    engine::ensure_busybox();
    let image = engine::BUSYBOX;
    let n = if quick { 30 } else { 150 };
    let firsts = if quick { 5 } else { 20 };
    let env = TestEnv::new();
    let ws = env.path();
    let rt = runtime();
    let mut server = env.start_server();
    let client = server.client();
    // As a client started in the folder (`stigmer run` there): the folder is the workspace.
    let body = |cwd: &std::path::Path, shell: &str| json!({"shell": shell, "cwd": cwd, "workspace": cwd, "mode": "sandbox", "image": image});
    let mut rows: Vec<(String, String, String, String)> = Vec::new();

    // Warm exec: the container exists; stigmer's exec vs `docker exec` on that same container.
    rt.block_on(server.run_counted_frames(&client, body(ws, "true")));
    let id = engine::containers_for(ws)
        .pop()
        .expect("stigmer's container");
    let (mut ours, mut cli) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        let (_, code) = rt.block_on(server.run_counted_frames(&client, body(ws, "true")));
        assert_eq!(code, 0);
        ours.push(t.elapsed());
        let t = Instant::now();
        assert!(Command::new("docker")
            .args(["exec", &id, "true"])
            .status()
            .unwrap()
            .success());
        cli.push(t.elapsed());
    }
    rows.push((
        format!("warm exec of `true` (median, n={n}), stigmer API vs `docker exec`"),
        fmt_ms(median(&mut ours)),
        fmt_ms(median(&mut cli)),
        "goal: faster than the docker CLI".into(),
    ));
    rows.push((
        format!("same, p99 (n={n})"),
        fmt_ms(p99(&mut ours)),
        fmt_ms(p99(&mut cli)),
        String::new(),
    ));

    // The same API in local mode, for reference: what a sandboxed run costs on top.
    let local = json!({"shell": "true", "cwd": ws, "mode": "local"});
    let mut on_host = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let (_, code) = rt.block_on(server.run_counted_frames(&client, local.clone()));
        assert_eq!(code, 0);
        on_host.push(t.elapsed());
    }
    let sandboxed = median(&mut ours);
    let host = median(&mut on_host);
    rows.push((
        format!("warm sandbox run vs a local run of `true`, same API (median, n={n})"),
        format!("{} vs {} local", fmt_ms(sandboxed), fmt_ms(host)),
        "—".into(),
        format!(
            "sandbox = {:.2}x docker exec; goal: at most 5 ms, under 0.15x",
            sandboxed.as_secs_f64() / median(&mut cli).as_secs_f64()
        ),
    ));

    // Timeout to the end reported: the helper's TERM reaches the tree, which ends at once.
    let limit = 0.2;
    let mut ends = Vec::new();
    for _ in 0..firsts {
        let mark = marker();
        let mut b = body(ws, &format!("sleep 30 & sleep 30; : {mark}"));
        b["timeout_secs"] = json!(limit);
        let t = Instant::now();
        rt.block_on(server.run_counted_frames(&client, b));
        ends.push(
            t.elapsed()
                .saturating_sub(std::time::Duration::from_secs_f64(limit)),
        );
        assert!(processes_with(&mark).is_empty(), "the tree is gone");
    }
    rows.push((
        format!("timeout to the run's end, whole tree gone (median, n={firsts})"),
        fmt_ms(median(&mut ends)),
        "—".into(),
        "goal: under 100 ms".into(),
    ));

    // First command with the image cached: a new workspace means a new container.
    let (mut ours, mut cli) = (Vec::new(), Vec::new());
    for i in 0..firsts {
        let fresh = env.beside(&format!("fresh-{i}"));
        let t = Instant::now();
        let (_, code) = rt.block_on(server.run_counted_frames(&client, body(&fresh, "true")));
        assert_eq!(code, 0);
        ours.push(t.elapsed());
        let t = Instant::now();
        assert!(Command::new("docker")
            .args(["run", "--rm", image, "true"])
            .status()
            .unwrap()
            .success());
        cli.push(t.elapsed());
    }
    rows.push((
        format!("first command, image cached: create + start + exec (median, n={firsts}) vs `docker run --rm IMAGE true`"),
        fmt_ms(median(&mut ours)),
        fmt_ms(median(&mut cli)),
        "goal: no slower than docker run".into(),
    ));

    // Throughput out of the container.
    let mib: u64 = if quick { 100 } else { 400 };
    let produce = format!("head -c {} /dev/zero", mib << 20);
    let t = Instant::now();
    let (bytes, _) = rt.block_on(server.run_counted_frames(&client, body(ws, &produce)));
    let ours_secs = t.elapsed().as_secs_f64();
    assert_eq!(bytes, mib << 20);
    let t = Instant::now();
    let mut child = Command::new("docker")
        .args(["exec", &id, "sh", "-c", &produce])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (mut total, mut buf) = (0u64, vec![0u8; 1 << 16]);
    loop {
        let k = out.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        total += k as u64;
    }
    child.wait().unwrap();
    let cli_secs = t.elapsed().as_secs_f64();
    assert_eq!(total, mib << 20);
    let rate = |s: f64| format!("{:.0} MiB/s", mib as f64 / s);
    rows.push((
        format!("output throughput, {mib} MiB from the container, stigmer API (frames) vs `docker exec ... head`"),
        rate(ours_secs),
        rate(cli_secs),
        format!("{:.0}% of docker exec", 100.0 * cli_secs / ours_secs),
    ));

    server.stop();
    print_rows("| measure (sandbox) | stigmer | docker CLI | note |", rows);
    let v = Command::new("docker")
        .args([
            "version",
            "--format",
            "{{.Server.Platform.Name}} {{.Server.Version}}",
        ])
        .output()
        .unwrap();
    println!(
        "engine: {} (DOCKER_HOST={}), {}",
        String::from_utf8_lossy(&v.stdout).trim(),
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "the default socket".into()),
        kernel()
    );
}
