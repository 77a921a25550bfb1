//! The allowlist's cost, side by side in one run: a 100 MB download from a web server of the
//! benchmark's own (a container on the default bridge) by `curl` in the basic sandbox, through
//! stigmer's proxy (allowlist) vs straight (open). curl's own `time_total` is the measure, so
//! stigmer's run overhead is not in it; the first command under the allowlist (internal
//! network, proxy start, container) is shown too.
//!
//! `cargo bench -p stigmer-cli --bench network` (`-- --quick`: 3 downloads each instead of 7).
//! Needs Docker; builds the basic image on its stand-in bases the first time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::engine;
use common::measure::*;
use common::TestEnv;

const HOST: &str = "web.stigmer.test";
const BYTES: u64 = 100_000_000;

/// An environment whose sandbox has `network`, the benchmark's host allowed.
fn setup(image: &str, network: &str) -> TestEnv {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.config_file().parent().unwrap()).unwrap();
    std::fs::write(
        env.config_file(),
        format!(
            "mode = \"sandbox\"\n[sandbox]\nimage = \"{image}\"\nnetwork = \"{network}\"\nallow = [\"{HOST}\"]\n"
        ),
    )
    .unwrap();
    env
}

/// `line` in the sandbox, in the environment's folder, through its server: its stdout, and
/// how long it took.
fn run(env: &TestEnv, line: &str) -> (String, Duration) {
    let t = Instant::now();
    let o = env
        .cmd()
        .current_dir(env.path())
        .args(["run", "-c", line])
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        o.status.success(),
        "{line}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (String::from_utf8_lossy(&o.stdout).trim().to_string(), took)
}

/// curl's time for the whole download, in seconds.
fn download(env: &TestEnv, url: &str) -> f64 {
    let (out, _) = run(
        env,
        &format!("curl -sS -o /dev/null -w '%{{size_download}} %{{time_total}}' '{url}'"),
    );
    let mut parts = out.split_whitespace();
    let size: u64 = parts.next().unwrap().parse().unwrap();
    assert_eq!(size, BYTES, "{out}");
    parts.next().unwrap().parse().unwrap()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if !std::process::Command::new("docker")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!("SKIPPED: no container engine");
        return;
    }
    let image = engine::basic_image();
    let site = tempfile::tempdir().unwrap();
    let web = engine::WebServer::start(&image, "bench", site.path());
    // The benchmark's own host name for its server (the proxy resolves it without DNS); the
    // servers started below inherit it. Set before any thread exists.
    std::env::set_var("STIGMER_PROXY_TEST_HOSTS", format!("{HOST}={}", web.ip));
    let n = if quick { 3 } else { 7 };
    let (open_env, allow_env) = (setup(&image, "open"), setup(&image, "allowlist"));
    let mut open_server = open_env.start_server();
    let mut allow_server = allow_env.start_server();

    let (_, first_open) = run(&open_env, "true");
    let (_, first_allow) = run(&allow_env, "true");
    let direct = format!("http://{}/bytes?n={BYTES}", web.ip);
    let proxied = format!("http://{HOST}/bytes?n={BYTES}");
    let (mut open, mut allow) = (Vec::new(), Vec::new());
    // Alternated, so a machine that slows down slows both.
    for _ in 0..n {
        open.push(download(&open_env, &direct));
        allow.push(download(&allow_env, &proxied));
    }
    open_server.stop();
    allow_server.stop();
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (o, a) = (med(&mut open), med(&mut allow));
    let mbps = |secs: f64| BYTES as f64 / 1e6 / secs;
    print_table(vec![
        (
            format!("100 MB download, median of {n} (curl time_total)"),
            format!("{:.0} ms ({:.0} MB/s) through the proxy", a * 1e3, mbps(a)),
            format!("{:.0} ms ({:.0} MB/s) open", o * 1e3, mbps(o)),
            format!("overhead {:+.0}%", (a / o - 1.0) * 100.0),
        ),
        (
            "first command (container made)".into(),
            format!("{} allowlist", fmt_ms(first_allow)),
            format!("{} open", fmt_ms(first_open)),
            "allowlist: + its door to the proxy, and the proxy's start".into(),
        ),
    ]);
}
