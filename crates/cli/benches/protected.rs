//! The protected tier side by side with local mode, through the same server API in one run:
//! a trivial command, `git status` in a 10,000-file repository, and output throughput.
//!
//! `cargo bench -p stigmer-cli --bench protected` (add `-- --quick` for fewer iterations).
//! Linux with bubblewrap; elsewhere it says so and measures nothing.

use std::process::Command;
use std::time::Instant;

use serde_json::json;

#[path = "../tests/common/mod.rs"]
mod common;

use common::measure::*;
use common::TestEnv;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 40 } else { 200 };
    let env = TestEnv::new();
    env.allow_work();
    let work = env.path().to_str().unwrap().to_string();
    // A repository of 10,000 files in the allowed workspace.
    let repo = env.path().join("repo");
    for d in 0..100 {
        let dir = repo.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f}.txt")), format!("{d} {f}\n")).unwrap();
        }
    }
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(["-c", "user.name=b", "-c", "user.email=b@b"])
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "files"]);

    let rt = runtime();
    let server = env.start_server();
    let client = server.client();
    let run = |body: serde_json::Value| rt.block_on(server.run_counted(&client, body));
    let (_, code) = run(json!({"argv": ["true"], "cwd": work, "mode": "protected"}));
    if code != 0 {
        println!("the protected tier cannot run here (exit {code}): nothing measured");
        return;
    }
    let mut rows = Vec::new();
    let mut side_by_side = |what: String, body: serde_json::Value, times: usize| {
        let (mut local, mut protected) = (Vec::new(), Vec::new());
        for _ in 0..times {
            // Interleaved, so drift hits both sides alike.
            for (mode, into) in [("local", &mut local), ("protected", &mut protected)] {
                let mut b = body.clone();
                b["mode"] = json!(mode);
                let t = Instant::now();
                let (_, code) = run(b);
                assert_eq!(code, 0, "{what} in {mode}");
                into.push(t.elapsed());
            }
        }
        let (p, l) = (median(&mut protected), median(&mut local));
        rows.push((
            format!("{what} (median, n={times})"),
            fmt_ms(p),
            fmt_ms(l),
            format!("added {}", fmt_ms(p.saturating_sub(l))),
        ));
    };
    side_by_side(
        "trivial command `true`, protected vs local, through the API".into(),
        json!({"argv": ["true"], "cwd": work}),
        n,
    );
    side_by_side(
        "`git status` in a 10,000-file repository, protected vs local".into(),
        json!({"argv": ["git", "status", "--short"], "cwd": repo}),
        if quick { 5 } else { 20 },
    );
    let mib: u64 = if quick { 100 } else { 500 };
    let produce = format!("head -c {} /dev/zero", mib * 1024 * 1024);
    let mut rate = Vec::new();
    for mode in ["protected", "local"] {
        let t = Instant::now();
        let (bytes, code) = rt.block_on(server.run_counted_frames(
            &client,
            json!({"shell": produce, "cwd": work, "mode": mode}),
        ));
        assert_eq!((bytes, code), (mib * 1024 * 1024, 0));
        rate.push(t.elapsed().as_secs_f64());
    }
    rows.push((
        format!("output throughput, {mib} MiB, binary frames, protected vs local"),
        format!("{:.0} MiB/s", mib as f64 / rate[0]),
        format!("{:.0} MiB/s", mib as f64 / rate[1]),
        format!("{:.0}% of local", 100.0 * rate[1] / rate[0]),
    ));
    print_rows(
        "| measure (protected tier) | protected | local | note |",
        rows,
    );
}
