//! Stigmer's own files are the user's alone however the server was started, and the commands
//! it starts locally do not inherit how it was started: a server under `nohup` (SIGHUP ignored,
//! signals blocked) with a permissive umask, its log folder left 0755 by an earlier start.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use common::*;
use serde_json::json;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_private_and_local_commands_start_like_from_a_shell() {
    let env = TestEnv::new();
    let logs = env.home().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old_log = logs.join("stigmer.2026-01-01.log");
    std::fs::write(&old_log, "run: cat ~/.ssh/id_rsa\n").unwrap();
    std::fs::set_permissions(&old_log, std::fs::Permissions::from_mode(0o644)).unwrap();

    // As `nohup` and a careless service manager would start it.
    let mut cmd = env.cmd();
    // SAFETY: plain system calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::umask(0o022);
            Ok(())
        });
    }
    let mut server = env.start_server_cmd(cmd);
    let client = server.client();
    let body = server
        .post(&client, "/v1/runs")
        .json(&json!({"shell": "grep -E '^Sig(Ign|Blk)' /proc/self/status; umask; touch made", "cwd": env.path(), "mode": "local"}))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (out, _, fin) = decode_stream(&body);
    let out = String::from_utf8_lossy(&out).into_owned();
    server.stop();

    // Signals 1..=31 (32 and up are the C library's own, beyond what a program can reset).
    let mask = |name: &str| {
        let line = out.lines().find(|l| l.starts_with(name)).expect(name);
        u64::from_str_radix(line.split('\t').nth(1).unwrap(), 16).unwrap() & 0x7fff_ffff
    };
    assert_eq!(
        mask("SigIgn:"),
        0,
        "SIGHUP or another signal ignored: {out} {fin}"
    );
    assert_eq!(mask("SigBlk:"), 0, "a signal blocked: {out}");
    assert_eq!(out.lines().last(), Some("0022"), "{out}");
    // The command's files get the umask the server was started with, not the server's own.
    assert_eq!(mode(&env.path().join("made")), 0o644);
    // Stigmer's own: its folders 0700 (what libraries write in them, a new log file or the
    // history's WAL, is out of others' reach), and the file an earlier start left 0644 is 0600.
    assert_eq!(mode(&logs), 0o700);
    assert_eq!(mode(&old_log), 0o600);
    for dir in [
        "data",
        "config",
        "logs",
        "cache/sandbox-workspace",
        "data/output",
    ] {
        let dir = env.home().join(dir);
        if dir.exists() {
            assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        }
    }
    assert_eq!(mode(&env.home().join("data")), 0o700);
}

/// A crashed run leaves its containers' doors to the proxy behind (private folders holding a
/// socket): a starting server removes those nobody listens on, and leaves a live run's door
/// and one being opened right now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doors_left_by_a_crashed_run_are_removed_and_live_ones_kept() {
    let env = TestEnv::new();
    let proxy = env.home().join("data/proxy");
    let door = |name: &str| {
        let dir = proxy.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::net::UnixListener::bind(dir.join("proxy.sock")).unwrap()
    };
    let age = |name: &str| {
        let o = std::process::Command::new("touch")
            .args(["-d", "-5 min"])
            .arg(proxy.join(name))
            .output()
            .unwrap();
        assert!(o.status.success());
    };
    drop(door("crashed"));
    age("crashed");
    let live = door("live");
    age("live");
    drop(door("opening"));

    let _server = env.start_server();
    let gone = common::engine::wait_until(std::time::Duration::from_secs(10), || {
        !proxy.join("crashed").exists()
    });
    assert!(gone, "a crashed run's door is removed");
    assert!(
        proxy.join("live/proxy.sock").exists(),
        "a live run's door stays"
    );
    assert!(proxy.join("opening").exists(), "a door being opened stays");
    drop(live);
}
