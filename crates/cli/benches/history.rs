//! Side-by-side benchmark of the run history, in one run: the added latency of recording each
//! run on disk (SQLite, WAL) against the same build keeping it in memory only
//! (`history.keep = false`), runs interleaved; the database's size per 1,000 runs; the server's
//! memory with 10,000 runs stored, and how fast a page of them is listed. Then a run's
//! bookkeeping at scale: runs with real output (200 KB each) while the kept output is at its
//! budget, so retention works after every few runs, through the server holding 10,000 runs
//! and through one holding a handful, side by side: one at a time, and 64 at a time.
//!
//! `cargo bench -p stigmer-cli --bench history` (add `-- --quick` for fewer latency samples;
//! the 10,000 runs are stored either way).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

#[path = "../tests/common/mod.rs"]
mod common;

use common::measure::*;
use common::TestEnv;

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// The database and its WAL, as they are on disk.
fn db_bytes(home: &Path) -> u64 {
    let db = home.join("data/history.sqlite3");
    file_size(&db) + file_size(&db.with_extension("sqlite3-wal"))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 300 } else { 2000 };
    let rt = runtime();
    let (disk_env, mem_env) = (TestEnv::new(), TestEnv::new());
    std::fs::create_dir_all(mem_env.config_file().parent().unwrap()).unwrap();
    std::fs::write(mem_env.config_file(), "[history]\nkeep = false\n").unwrap();
    // A small output budget, so the runs with output below fill it and retention works.
    let budget = [("STIGMER_HISTORY_MAX_OUTPUT", "8m")];
    let mut disk = disk_env.start_server_env(&budget);
    let mut mem = mem_env.start_server();
    let client = disk.client();
    let body = json!({"argv": ["true"], "cwd": "/tmp", "client": "bench"});

    // Latency of a trivial run, interleaved so drift hits both alike.
    let (mut on_disk, mut in_memory) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..20 {
            disk.run_counted(&client, body.clone()).await;
            mem.run_counted(&client, body.clone()).await;
        }
        for _ in 0..n {
            let t = Instant::now();
            disk.run_counted(&client, body.clone()).await;
            on_disk.push(t.elapsed());
            let t = Instant::now();
            mem.run_counted(&client, body.clone()).await;
            in_memory.push(t.elapsed());
        }
    });
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    let (d50, m50) = (median(&mut on_disk), median(&mut in_memory));
    let (d99, m99) = (p99(&mut on_disk), p99(&mut in_memory));
    let added = |a: Duration, b: Duration| {
        format!("{:+.3} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1000.0)
    };
    rows.push((
        format!("trivial run through the API, history on disk vs in memory only, median of {n}"),
        fmt_ms(d50),
        fmt_ms(m50),
        format!("{} per run", added(d50, m50)),
    ));
    rows.push((
        "same, p99".into(),
        fmt_ms(d99),
        fmt_ms(m99),
        added(d99, m99),
    ));
    mem.stop();

    // Size per 1,000 runs, and memory and listing with 10,000 stored.
    let target = 10_000usize;
    let stored_before = 20 + n;
    let per_thousand_at = 1_000usize.max(stored_before);
    let (mut at_1000, mut size_1000) = (0usize, 0u64);
    let mut done = stored_before;
    let t = Instant::now();
    rt.block_on(async {
        while done < target {
            // Four at a time, as several agents would.
            let batch = 4.min(target - done);
            let runs: Vec<_> = (0..batch)
                .map(|_| {
                    disk.run_counted(
                        &client,
                        json!({"shell": "echo stored", "cwd": "/tmp", "client": "bench"}),
                    )
                })
                .collect();
            futures_util::future::join_all(runs).await;
            done += batch;
            if at_1000 == 0 && done >= per_thousand_at + 1000 {
                at_1000 = done;
                size_1000 = db_bytes(&disk_env.home());
            }
        }
    });
    let fill = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let size_all = db_bytes(&disk_env.home());
    let rss = rss_kib(disk.pid());
    let mut list = Vec::new();
    rt.block_on(async {
        for _ in 0..20 {
            let t = Instant::now();
            let r = disk
                .get(&client, "/v1/runs?limit=30&q=stored&client=bench")
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            r.bytes().await.unwrap();
            list.push(t.elapsed());
        }
    });
    // Bookkeeping at scale: the same runs through the server with 10,000 stored and through
    // a new one with a handful, interleaved; each prints 200 KB, the budget holds 40 of them.
    let few_env = TestEnv::new();
    let mut few = few_env.start_server_env(&budget);
    let output =
        json!({"shell": "head -c 200000 /dev/zero | tr '\\0' x", "cwd": "/tmp", "client": "bench"});
    let m = if quick { 60 } else { 300 };
    let (mut at_scale, mut at_start) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..m {
            let t = Instant::now();
            disk.run_counted(&client, output.clone()).await;
            at_scale.push(t.elapsed());
            let t = Instant::now();
            few.run_counted(&client, output.clone()).await;
            at_start.push(t.elapsed());
        }
    });
    rows.push((
        format!("run printing 200 KB with the output budget full, {target} runs stored vs a handful (median of {m})"),
        fmt_ms(median(&mut at_scale)),
        fmt_ms(median(&mut at_start)),
        format!(
            "p99 {} vs {}",
            fmt_ms(p99(&mut at_scale)),
            fmt_ms(p99(&mut at_start))
        ),
    ));
    let batch = |server: &common::Server| {
        let t = Instant::now();
        rt.block_on(async {
            for _ in 0..4 {
                let runs: Vec<_> = (0..64)
                    .map(|_| server.run_counted(&client, output.clone()))
                    .collect();
                futures_util::future::join_all(runs).await;
            }
        });
        t.elapsed()
    };
    let (wide_scale, wide_start) = (batch(&disk), batch(&few));
    rows.push((
        format!("256 such runs, 64 at a time, {target} runs stored vs a handful (wall time)"),
        format!("{:.2} s", wide_scale.as_secs_f64()),
        format!("{:.2} s", wide_start.as_secs_f64()),
        format!(
            "{:.0}% of the time with a handful",
            100.0 * wide_scale.as_secs_f64() / wide_start.as_secs_f64()
        ),
    ));
    few.stop();
    disk.stop();
    rows.push((
        format!("database on disk with {target} runs (`echo`, 6 bytes of output each; WAL included)"),
        format!("{:.2} MiB", size_all as f64 / (1 << 20) as f64),
        "-".into(),
        format!(
            "about {:.0} KiB per 1,000 runs (measured at {} runs: {:.2} MiB); stored at {:.0} runs/s, 4 at a time",
            size_all as f64 / 1024.0 / (target as f64 / 1000.0),
            at_1000,
            size_1000 as f64 / (1 << 20) as f64,
            (target - stored_before) as f64 / fill.as_secs_f64()
        ),
    ));
    rows.push((
        format!("server RSS with {target} runs stored"),
        format!("{:.1} MiB", rss as f64 / 1024.0),
        "-".into(),
        "the history is on disk, not in memory".into(),
    ));
    rows.push((
        format!("one page of 30 runs, filtered by client and text, of {target} (median of 20)"),
        fmt_ms(median(&mut list)),
        "-".into(),
        "what the window's Activity asks".into(),
    ));

    print_table(rows);
}
