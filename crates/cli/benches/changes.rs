//! What recording a run's changes costs, side by side in one run: a command that changes one
//! file, through a server recording changes (`history.changes`, the default) and through one
//! that does not, in projects of 10,000 files and (full mode) 100,000 files; the first record
//! of a new folder in seconds and MB; the store's size after an edit loop (1,000 runs in full
//! mode).
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
    let mut projects = vec![("10,000-file project", on_env.path().join("p10k"), 10_000)];
    if !quick {
        projects.push(("100,000-file project", on_env.path().join("p100k"), 100_000));
    }
    for (_, dir, files) in &projects {
        project(dir, *files);
    }
    let on = on_env.start_server();
    let off = off_env.start_server();
    let client = on.client();
    let edit = |cwd: &Path, i: usize| json!({"shell": format!("echo {i} >> d0/f0.txt"), "cwd": cwd, "client": "bench"});
    let run = |server: &Server, body: serde_json::Value| {
        let (_, code) = rt.block_on(server.run_counted(&client, body));
        assert_eq!(code, 0);
    };
    let store = on_env.home().join("data/changes");
    let mut rows = Vec::new();
    let mut runs = 0;

    for (what, cwd, _) in &projects {
        // The first record of a new folder: every file's content kept.
        let before = dir_bytes(&store);
        let t = Instant::now();
        run(&on, edit(cwd, 0));
        runs += 1;
        rows.push((
            format!("first run in a new {what} (first record of its contents)"),
            fmt_ms(t.elapsed()),
            "-".to_string(),
            format!(
                "store +{:.2} MiB for {:.2} MiB of files",
                (dir_bytes(&store) - before) as f64 / (1 << 20) as f64,
                dir_bytes(cwd) as f64 / (1 << 20) as f64
            ),
        ));
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for i in 0..n {
            let t = Instant::now();
            run(&on, edit(cwd, i));
            with.push(t.elapsed());
            let t = Instant::now();
            run(&off, edit(cwd, i));
            without.push(t.elapsed());
        }
        runs += n;
        let (w, wo) = (median(&mut with), median(&mut without));
        rows.push((
            format!("a command that changes one file, {what}: recording on vs off (median, n={n})"),
            fmt_ms(w),
            fmt_ms(wo),
            format!("added {}", fmt_ms(w.saturating_sub(wo))),
        ));
    }
    // A typical edit loop: one file changed per run, in the 10,000-file project.
    let total = if quick { runs } else { runs.max(1_000) };
    for i in runs..total {
        run(&on, edit(&projects[0].1, i));
    }
    rows.push((
        format!("store after {total} runs of an edit loop (each content once, compressed)"),
        format!("{:.2} MiB", dir_bytes(&store) as f64 / (1 << 20) as f64),
        "-".into(),
        "the first records included".into(),
    ));
    print_table(rows);
}
