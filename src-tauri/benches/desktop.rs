//! The desktop app, measured under Xvfb: launch to an interactive window, idle memory (the app
//! and its WebKit processes), how the page responds while a command prints 100 MB, side by
//! side with the same page idle, and the Activity with a short history and with 10,000 runs.
//!
//! `cargo bench -p stigmer-desktop --bench desktop` (needs what `scripts/test.sh` installs).

#[path = "../tests/desktop/mod.rs"]
mod desktop;

use std::time::{Duration, Instant};

use desktop::*;
use fantoccini::{Client, Locator};

/// Proportional memory (PSS) of `roots` and all their descendants, each counted once, in KiB,
/// without the server.
fn tree_rss_kib(roots: &[u32]) -> (u64, Vec<String>) {
    let mut total = 0;
    let mut names = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack = roots.to_vec();
    while let Some(p) = stack.pop() {
        if !seen.insert(p) {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let name = status
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("Name:")
            .trim()
            .to_string();
        // The server is not the app's; a process that ended (not yet reaped) holds nothing.
        let ended = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains("zombie"));
        if name == "stigmer" || name.is_empty() || ended {
            continue;
        }
        // PSS: shared pages (libraries, WebKit's shared memory) split between the processes.
        let rollup = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap_or_default();
        total += rollup
            .lines()
            .find(|l| l.starts_with("Pss:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        names.push(name);
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok());
            if ppid == Some(p) {
                stack.push(child);
            }
        }
    }
    (total, names)
}

/// Every process of the app: the one started, and the tray process when it is another one
/// (this build's; an older build is one process).
fn app_roots(d: &Desktop, started: u32) -> Vec<u32> {
    let tray = std::fs::read_to_string(d.home.path().join("stigmer/data/desktop.lock"))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .filter(|p| running(*p));
    std::iter::once(started).chain(tray).collect()
}

fn app_pid() -> Option<u32> {
    let o = std::process::Command::new("pgrep")
        .args(["-n", "-f", APP])
        .output()
        .ok()?;
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

/// Round trips of a tiny script through the page's event loop, `n` times: (median, max).
async fn responsiveness(c: &Client, n: usize) -> (Duration, Duration) {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.execute("return document.querySelectorAll('*').length", vec![])
            .await
            .unwrap();
        v.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    v.sort();
    (v[v.len() / 2], v[v.len() - 1])
}

/// The app at `app` (run without WebDriver), its window shown, then closed to the tray, then
/// opened again from the tray: (PSS shown, PSS in the tray, reopen time), PSS in KiB of the
/// app and its processes (not the server), each after the app settled for 3 s.
fn tray_cycle(app: &str) -> (u64, u64, Duration) {
    let d = Desktop::start("desktop benchmark, tray").expect("a desktop");
    d.skip_welcome();
    let mut child = d.command(app).spawn().unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || window_shown(&d, "Stigmer")),
        "{app}: no window"
    );
    std::thread::sleep(Duration::from_secs(3));
    let (shown, _) = tree_rss_kib(&app_roots(&d, child.id()));
    close_window(&d, "Stigmer");
    assert!(wait_for(Duration::from_secs(10), || !window_shown(
        &d, "Stigmer"
    )));
    std::thread::sleep(Duration::from_secs(3));
    let (hidden, names) = tree_rss_kib(&app_roots(&d, child.id()));
    println!("{app}: in the tray: {names:?}");
    let addr = tray_menu_address(&d);
    let t = Instant::now();
    tray_click(&d, &addr, "Open Stigmer");
    assert!(
        wait_for(Duration::from_secs(10), || window_shown(&d, "Stigmer")),
        "{app}: not reopened"
    );
    let reopen = t.elapsed();
    let roots = app_roots(&d, child.id());
    let addr = tray_menu_address(&d);
    tray_click(&d, &addr, "Quit");
    if !wait_for(Duration::from_secs(15), || {
        let _ = child.try_wait();
        roots.iter().all(|p| !running(*p))
    }) {
        let _ = child.kill();
    }
    let _ = child.wait();
    (shown, hidden, reopen)
}

/// The Activity view: how long the page takes to load its first page of runs, and to load it
/// filtered by text, as the page itself times them (median of `n` each).
async fn activity_loads(c: &Client, n: usize) -> (Duration, Duration) {
    let time = |filter: &'static str| async move {
        let script = format!(
            "const done = arguments[0]; document.getElementById('f-text').value = '{filter}'; const t = performance.now(); \
             __stigmer.loadRuns().then(() => done(performance.now() - t));"
        );
        let v = c.execute_async(&script, vec![]).await.unwrap();
        Duration::from_secs_f64(v.as_f64().unwrap() / 1000.0)
    };
    let (mut all, mut filtered) = (Vec::new(), Vec::new());
    for _ in 0..n {
        all.push(time("").await);
        filtered.push(time("run-77").await);
    }
    all.sort();
    filtered.sort();
    (all[n / 2], filtered[n / 2])
}

/// Store runs through the app's server until its history holds `total`, 4 at a time.
async fn fill_history(d: &Desktop, total: usize) {
    let api = std::sync::Arc::new(page::ServerApi::of(d).expect("the app's server"));
    let mut done = api.get("/v1/runs?limit=200").await["runs"]
        .as_array()
        .map_or(0, Vec::len);
    while done < total {
        let batch: Vec<_> = (0..4.min(total - done))
            .map(|i| {
                let api = api.clone();
                let body = serde_json::json!({"shell": format!("echo run-{}", done + i), "cwd": "/tmp", "client": format!("agent-{}", (done + i) % 3)});
                tokio::spawn(async move { api.post("/v1/runs", &body).await })
            })
            .collect();
        for b in batch {
            assert_eq!(b.await.unwrap().0, 200);
        }
        done += 4.min(total - done);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(d) = Desktop::start("desktop benchmark") else {
        return;
    };
    d.skip_welcome();
    let (mut driver, port) = d.driver(&[]);
    let t0 = Instant::now();
    let c = connect(port).await;
    let window = t0.elapsed();
    loop {
        let t = c
            .find(Locator::Id("server-state"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if t == "Running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let running = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = app_pid().expect("the app's pid");
    let roots = app_roots(&d, pid);
    let (idle_kib, procs) = tree_rss_kib(&roots);

    let (idle_med, idle_max) = responsiveness(&c, 40).await;
    // 100 MB of output through "Try a command", measured while it streams.
    let input = c.find(Locator::Id("try-input")).await.unwrap();
    input
        .send_keys("head -c 75000000 /dev/urandom | base64")
        .await
        .unwrap();
    c.find(Locator::Id("try-run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let flood_started = Instant::now();
    let (flood_med, flood_max) = responsiveness(&c, 40).await;
    let mut peak = 0;
    loop {
        peak = peak.max(tree_rss_kib(&roots).0);
        let r = c
            .find(Locator::Id("try-result"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if r.contains("exit code") || flood_started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let flood_secs = flood_started.elapsed().as_secs_f64();
    let (after_kib, _) = tree_rss_kib(&roots);

    // The Activity with a short history, then with 10,000 runs in it.
    page::view(&c, "activity").await;
    fill_history(&d, 30).await;
    let (few_med, few_max) = responsiveness(&c, 20).await;
    let (few_load, few_filtered) = activity_loads(&c, 10).await;
    let t = Instant::now();
    fill_history(&d, 10_000).await;
    let fill_secs = t.elapsed().as_secs_f64();
    page::view(&c, "home").await;
    page::view(&c, "activity").await;
    let (many_med, many_max) = responsiveness(&c, 20).await;
    let (many_load, many_filtered) = activity_loads(&c, 10).await;

    println!();
    println!("| measure (desktop, release build, Xvfb) | value | note |");
    println!("|---|---|---|");
    println!(
        "| launch to an interactive window (WebDriver session ready) | {} | goal < 1.5 s |",
        ms(window)
    );
    println!(
        "| launch to server running, shown in the window | {} | |",
        ms(running)
    );
    println!("| idle memory: app + WebKit processes ({}) | {:.0} MiB | goal < 150 MB; the server is apart |", procs.join(", "), idle_kib as f64 / 1024.0);
    println!(
        "| page script round trip, idle (median / max of 40) | {} / {} | |",
        ms(idle_med),
        ms(idle_max)
    );
    println!("| same while a command prints 100 MB (median / max of 40) | {} / {} | the page stays interactive |", ms(flood_med), ms(flood_max));
    println!("| 100 MB run, start to exit shown | {flood_secs:.1} s | |");
    println!(
        "| memory during the 100 MB run: peak / after | {:.0} MiB / {:.0} MiB | bounded buffers |",
        peak as f64 / 1024.0,
        after_kib as f64 / 1024.0
    );
    println!();
    println!("| Activity (the run history) | 10,000 runs stored | 30 runs stored |");
    println!("|---|---|---|");
    println!(
        "| page script round trip, Activity shown (median / max of 20) | {} / {} | {} / {} |",
        ms(many_med),
        ms(many_max),
        ms(few_med),
        ms(few_max)
    );
    println!(
        "| first page of 30 runs loaded and drawn (median of 10) | {} | {} |",
        ms(many_load),
        ms(few_load)
    );
    println!(
        "| same, filtered by text (median of 10) | {} | {} |",
        ms(many_filtered),
        ms(few_filtered)
    );
    println!("| (storing the 10,000 runs through the API, 4 at a time) | {fill_secs:.1} s | |");
    let _ = c.close().await;
    let _ = driver.kill();
    let _ = driver.wait();
    drop(d);

    // Shown, hidden to the tray, reopened: this build, and (side by side) another one given by
    // STIGMER_BASELINE_APP, e.g. the build before the window was destroyed in the tray.
    let mib = |k: u64| format!("{:.0} MiB", k as f64 / 1024.0);
    let (shown, hidden, reopen) = tray_cycle(APP);
    let baseline = std::env::var("STIGMER_BASELINE_APP")
        .ok()
        .filter(|p| std::path::Path::new(p).exists())
        .map(|p| tray_cycle(&p));
    println!();
    println!("| tray (PSS of the app and its WebKit processes) | this build | baseline |");
    println!("|---|---|---|");
    let base = |f: &dyn Fn(&(u64, u64, Duration)) -> String| {
        baseline
            .as_ref()
            .map(f)
            .unwrap_or_else(|| "(set STIGMER_BASELINE_APP)".into())
    };
    println!(
        "| window open, idle | {} | {} |",
        mib(shown),
        base(&|b| mib(b.0))
    );
    println!(
        "| hidden in the tray | {} | {} |",
        mib(hidden),
        base(&|b| mib(b.1))
    );
    println!(
        "| tray's Open to the window shown | {} | {} |",
        ms(reopen),
        base(&|b| ms(b.2))
    );
}
