//! A hostile agent against the sandbox, on the real engine: it swaps folders for links while
//! runs are asked for, reads and writes the helper's channel, leaves daemons behind and spies
//! on another agent's runs. Each attack must fail; each test fails with its defence removed.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::engine::*;
use common::hostile::*;
use common::*;
use serde_json::json;

/// The attack: the agent made `proj/sub` a "project" (a `.git` in it) and swaps it for
/// a link to another folder between stigmer's check and the container's start (a test-only
/// pause makes that moment certain). Only the workspace the user allowed is ever mounted, so
/// the link leads nowhere in the container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_folder_swapped_for_a_link_is_never_what_is_mounted() {
    if !engine_or_skip("a_sub_folder_swapped_for_a_link_is_never_what_is_mounted") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    env.allow_work();
    let sub = env.path().join("proj/sub");
    std::fs::create_dir_all(env.path().join("proj/.git")).unwrap();
    std::fs::create_dir_all(sub.join(".git")).unwrap();
    let outside = secret_folder(&env);
    let server = sandbox_server(&env, &[("STIGMER_TEST_MOUNT_PAUSE_MS", "1500")]);
    let client = server.client();
    let swap = swap_in_pause(&env, &sub, &outside);
    let (out, err, fin) = run(&server, &client, "agent", &sub, "cat secret.txt; pwd").await;
    swap.join().unwrap();
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "the folder outside the workspace was mounted: {out} {err} {fin}"
    );
    assert_never_mounted(&outside);
    // The first line held: the workspace is what was to be mounted, never the sub-folder
    // (the sub-folder's own `.git`, guarded, may make the proof refuse the container).
    assert!(
        containers_for(&sub).is_empty(),
        "the sub-folder was mounted"
    );
    if fin["run"]["error"]["code"] == "WORKSPACE_CHANGED" {
        let message = fin["run"]["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{} (", env.path().display())),
            "the sub-folder was to be mounted: {message}"
        );
    } else {
        assert!(!containers_for(env.path()).is_empty(), "{fin}");
    }
    // Later runs there, in the container that was kept, see no more of it.
    let (out, err, _) = run(&server, &client, "agent", &sub, "cat secret.txt").await;
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "{out} {err}"
    );
}

/// The second line: the allowed workspace itself is replaced by a link between the check and
/// the mount (by something outside the sandbox, in a tight loop): the container's mount is
/// proved against the folder stigmer held open, and a run never starts on another folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_replaced_after_its_check_never_runs_a_command() {
    if !engine_or_skip("a_workspace_replaced_after_its_check_never_runs_a_command") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    let base = env.beside("swapped");
    let ws = base.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("mine.txt"), "mine").unwrap();
    let o = env
        .cmd()
        .args(["workspaces", "add"])
        .arg(&ws)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let outside = secret_folder(&env);
    let server = sandbox_server(&env, &[("STIGMER_TEST_MOUNT_PAUSE_MS", "1500")]);
    let client = server.client();

    // Deterministic first: swapped during the pause.
    let swap = swap_in_pause(&env, &ws, &outside);
    let (out, err, fin) = run(&server, &client, "first", &ws, "cat secret.txt").await;
    swap.join().unwrap();
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "{out} {err}"
    );
    assert_eq!(
        fin["run"]["error"]["code"], "WORKSPACE_CHANGED",
        "the run should be refused as such: {fin}"
    );
    assert_never_mounted(&outside);
    std::fs::remove_file(&ws).unwrap();
    std::fs::rename(ws.with_extension("real"), &ws).unwrap();

    assert!(run(&server, &client, "first", &ws, "cat mine.txt")
        .await
        .0
        .contains("mine"));
}

/// A workspace allowed inside another one is swapped with a link, as fast as can be (a command
/// of the outer workspace can do that), while runs in it are asked for, each by a new agent (a
/// new container each): no run ever sees the folder the link points to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_workspace_swapped_in_a_loop_never_leads_outside() {
    if !engine_or_skip("a_nested_workspace_swapped_in_a_loop_never_leads_outside") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    env.allow_work();
    let inner = env.path().join("inner");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::write(inner.join("mine.txt"), "mine").unwrap();
    let o = env
        .cmd()
        .args(["workspaces", "add"])
        .arg(&inner)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let outside = secret_folder(&env);
    let link = env.path().join("link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let server = sandbox_server(&env, &[]);
    let client = server.client();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (inner, link, stop) = (inner.clone(), link.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = |p: &Path| std::ffi::CString::new(p.to_str().unwrap()).unwrap();
            let (a, b) = (c(&inner), c(&link));
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: two valid paths; RENAME_EXCHANGE swaps them atomically.
                unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                swaps += 1;
            }
            swaps
        })
    };
    let (mut attempts, mut ran, mut refused) = (0, 0, 0);
    let until = Instant::now() + Duration::from_secs(10);
    while attempts < 200 && Instant::now() < until {
        attempts += 1;
        // A new agent every fourth attempt: new containers as well as warm ones.
        let agent = format!("agent-{}", attempts / 4);
        let (out, err, fin) =
            run(&server, &client, &agent, &inner, "cat mine.txt secret.txt").await;
        assert!(
            !out.contains(SECRET) && !err.contains(SECRET),
            "attempt {attempts}: the folder outside was reached: {out} {err} {fin}"
        );
        if out.contains("mine") {
            ran += 1;
        } else {
            refused += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("{attempts} attempts during {swaps} swaps: {ran} ran in the workspace, {refused} refused or failed");
    assert!(attempts >= 20, "too few attempts: {attempts}");
    assert_never_mounted(&outside);
}

/// A command cannot reach the helper's stream to stigmer (`/proc/1/fd`), its environment or
/// memory, nor trace it: the helper is not dumpable, and containers never have CAP_SYS_PTRACE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_cannot_reach_the_helpers_channel() {
    if !engine_or_skip("commands_cannot_reach_the_helpers_channel") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    env.allow_work();
    let server = sandbox_server(&env, &[]);
    let client = server.client();
    let probe = "readlink /proc/1/fd/1 >/dev/null 2>&1 && echo FD-READ; \
                 cat /proc/1/environ >/dev/null 2>&1 && echo ENV-READ; \
                 (echo forged > /proc/1/fd/1) 2>/dev/null && echo STDOUT-WRITTEN; \
                 (: < /proc/1/fd/0) 2>/dev/null && echo STDIN-OPENED; \
                 head -c1 /proc/1/mem >/dev/null 2>&1 && echo MEM-READ; \
                 kill -TERM 1 2>/dev/null; kill -KILL 1 2>/dev/null; echo end";
    let (out, err, fin) = run(&server, &client, "agent", env.path(), probe).await;
    assert_eq!(out, "end\n", "stderr: {err} {fin}");
    assert_eq!(fin["run"]["outcome"]["exit_code"], 0, "{fin}");
    // The helper survived the signals: the next run works in the same container.
    let (out, _, _) = run(&server, &client, "agent", env.path(), "echo still").await;
    assert_eq!(out, "still\n");
}

/// What a run leaves behind (a `setsid` daemon, a double fork) ends with the run, found by
/// something a command cannot leave: its container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_left_by_a_run_does_not_outlive_it() {
    if !engine_or_skip("a_daemon_left_by_a_run_does_not_outlive_it") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    env.allow_work();
    let server = sandbox_server(&env, &[]);
    let client = server.client();
    let (m1, m2) = (marker(), marker());
    let shell = format!("setsid sleep {m1} & (sh -c 'sleep {m2} &' &) ; sleep 0.2; echo left");
    let (out, _, fin) = run(&server, &client, "agent", env.path(), &shell).await;
    assert_eq!(out, "left\n", "{fin}");
    for m in [&m1, &m2] {
        assert!(
            wait_no_process(m, Duration::from_secs(5)).is_empty(),
            "`sleep {m}` outlived its run"
        );
    }
}

/// Runs of two agents never share a container: one cannot see, signal or trace the other's
/// processes, nor find them in `/proc`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_never_share_a_container() {
    if !engine_or_skip("two_agents_never_share_a_container") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    env.allow_work();
    let server = sandbox_server(&env, &[]);
    let client = server.client();
    let m = marker();
    let long = {
        let (server_url, token, cwd) = (
            server.url.clone(),
            server.token.clone(),
            env.path().to_path_buf(),
        );
        let m = m.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{server_url}/v1/runs"))
                .bearer_auth(token)
                .json(&json!({"shell": format!("sleep {m}; echo woke"), "cwd": cwd, "client": "victim", "timeout_secs": 4}))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        })
    };
    assert!(wait_for_processes(&m, 1, Duration::from_secs(20)));
    let spy = format!(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c 'slee[p] {m}'; \
         pkill -f 'slee[p] {m}' 2>/dev/null; kill -9 -1 2>/dev/null; echo done"
    );
    let (out, _, fin) = run(&server, &client, "attacker", env.path(), &spy).await;
    assert_eq!(out, "0\ndone\n", "{fin}");
    assert!(
        !processes_with(&m).is_empty(),
        "the other agent's run was killed"
    );
    let _ = long.await;
    let ours: Vec<String> = containers_for(env.path());
    let clients: std::collections::BTreeSet<String> = ours
        .iter()
        .map(|id| {
            inspect(id)["Config"]["Labels"]["dev.stigmer.client"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        clients.contains("victim") && clients.contains("attacker"),
        "{clients:?}"
    );
}

/// A container replaced because a run created a host-run file keeps serving the run of the
/// same agent still going in it, and goes when that run ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_container_never_cuts_short_a_run_still_going_in_it() {
    if !engine_or_skip("a_replaced_container_never_cuts_short_a_run_still_going_in_it") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    env.allow_work();
    let w = env.path().to_path_buf();
    let server = sandbox_server(&env, &[]);
    let client = server.client();
    let (out, _, fin) = run(&server, &client, "agent", &w, "echo warm").await;
    assert_eq!(out, "warm\n", "{fin}");
    let long = run(&server, &client, "agent", &w, "sleep 4; echo survived");
    let others = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let (_, _, fin) = run(&server, &client, "agent", &w, "mkdir .cursor && echo made").await;
        assert!(
            fin["run"]["outcome"]["host_files"]
                .to_string()
                .contains(".cursor"),
            "{fin}"
        );
        // A new container for this one; the old one stays for the long run.
        let (out, _, fin) = run(&server, &client, "agent", &w, "echo next").await;
        assert_eq!(out, "next\n", "{fin}");
        assert_eq!(containers_for(&w).len(), 2, "both containers are there");
    };
    let ((out, _, fin), ()) = tokio::join!(long, others);
    assert_eq!(out, "survived\n", "the long run was cut short: {fin}");
    assert!(
        wait_until(Duration::from_secs(10), || containers_for(&w).len() == 1),
        "the old container went with its last run"
    );
}
