//! What recording a run's changes costs, side by side in one run: a command that changes one
//! file, through a server recording changes (`history.changes`, the default) and through one
//! that does not, in projects of 1,000 files (recorded) and of 10,000 files (over the limit:
//! what deciding not to record costs); the first record of a new folder in seconds and MB; the
//! store's size after an edit loop.
//!
//! `cargo bench -p stigmer-cli --bench changes` (add `-- --quick` for fewer runs).

use std::path::Path;
use std::time::Instant;

use serde_json::json;

#[path = "../tests/common/mod.rs"]
mod common;

use common::measure::*;
use common::{Server, TestEnv};

fn project(dir: &Path, files: usize) {
    for i in 0..files {
        let sub = dir.join(format!("d{}", i / 100));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{i}.txt")),
            format!("line {i}\n").repeat(20),
        )
        .unwrap();
    }
}

fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![p.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 30 } else { 200 };
    let rt = runtime();
    let (on_env, off_env) = (TestEnv::new(), TestEnv::new());
    std::fs::create_dir_all(off_env.config_file().parent().unwrap()).unwrap();
    std::fs::write(off_env.config_file(), "[history]\nchanges = false\n").unwrap();
    let (small, large) = (on_env.path().join("small"), on_env.path().join("large"));
    project(&small, 1_000);
    project(&large, 10_000);
    let on = on_env.start_server();
    let off = off_env.start_server();
    let client = on.client();
    let edit = |cwd: &Path, i: usize| json!({"shell": format!("echo {i} >> d0/f0.txt"), "cwd": cwd, "client": "bench"});
    let run = |server: &Server, body: serde_json::Value| {
        let (_, code) = rt.block_on(server.run_counted(&client, body));
        assert_eq!(code, 0);
    };
    let mut rows = Vec::new();

    // The first record of a new folder: every file's content kept.
    let t = Instant::now();
    run(&on, edit(&small, 0));
    let first = t.elapsed();
    let store = on_env.home().join("data/changes");
    rows.push((
        "first run in a new 1,000-file project (first record of its contents)".to_string(),
        fmt_ms(first),
        "-".to_string(),
        format!(
            "store {:.2} MiB for {:.2} MiB of files",
            dir_bytes(&store) as f64 / (1 << 20) as f64,
            dir_bytes(&small) as f64 / (1 << 20) as f64
        ),
    ));
    run(&on, edit(&large, 0));

    for (what, cwd) in [
        ("1,000-file project, recorded", &small),
        ("10,000-file project, over the limit: not recorded", &large),
    ] {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for i in 0..n {
            let t = Instant::now();
            run(&on, edit(cwd, i));
            with.push(t.elapsed());
            let t = Instant::now();
            run(&off, edit(cwd, i));
            without.push(t.elapsed());
        }
        let (w, wo) = (median(&mut with), median(&mut without));
        rows.push((
            format!("a command that changes one file, {what}: recording on vs off (median, n={n})"),
            fmt_ms(w),
            fmt_ms(wo),
            format!("added {}", fmt_ms(w.saturating_sub(wo))),
        ));
    }
    rows.push((
        format!(
            "store after {} more edit runs (each content once, compressed)",
            2 * n + 1
        ),
        format!("{:.2} MiB", dir_bytes(&store) as f64 / (1 << 20) as f64),
        "-".into(),
        "the first record included".into(),
    ));
    print_table(rows);
}
