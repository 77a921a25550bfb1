//! The protected tier on Linux (bubblewrap), run as a normal user whose home holds fake
//! secrets. Each attack is first shown to work in local mode (so the protected refusal proves
//! the confinement, not an attack that fails for another reason), then refused in protected
//! mode. Also: where bubblewrap is missing the run is refused and nothing runs; the run
//! contract (exit codes, streams, bytes) holds; git works in the workspace.
//!
//! Needs root (to make the test user); as another user it says SKIPPED.
#![cfg(target_os = "linux")]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::protected::*;
use common::{processes_with, stderr, stdout, BIN};

#[test]
fn secrets_cannot_be_read() {
    let Some(h) = Home::new("secrets") else {
        return;
    };
    let read = "cat ~/.ssh/id_ed25519 ~/.aws/credentials ~/.stigmer/data/token 2>&1; \
                cat /proc/self/root$HOME/.ssh/id_ed25519 2>&1; echo \"[$AWS_SECRET_ACCESS_KEY]\"";
    let env = [("AWS_SECRET_ACCESS_KEY", "FAKE-ENV-SECRET")];
    let local = stdout(&h.run_env("local", read, &env));
    for secret in [
        "FAKE-SSH-KEY",
        "FAKE-AWS-KEY",
        "FAKE-STIGMER-TOKEN",
        "FAKE-ENV-SECRET",
    ] {
        assert!(
            local.contains(secret),
            "unconfined, {secret} is read: {local}"
        );
    }
    let o = h.run_env("protected", read, &env);
    let out = stdout(&o);
    for secret in [
        "FAKE-SSH-KEY",
        "FAKE-AWS-KEY",
        "FAKE-STIGMER-TOKEN",
        "FAKE-ENV-SECRET",
    ] {
        assert!(
            !out.contains(secret),
            "protected, {secret} was read: {out} {}",
            stderr(&o)
        );
    }
    assert!(out.contains("[]"), "{out}");
}

/// Writes outside the workspace, and to the workspace's host-run files, through every path.
#[test]
fn only_the_workspace_is_written_and_not_its_host_run_files() {
    let Some(h) = Home::new("writes") else { return };
    let write =
        "echo planted >> ~/.bashrc; mkdir -p ~/.local/bin && echo planted > ~/.local/bin/git; \
                 echo planted > ~/.config/autostart/x.desktop; \
                 mkdir -p .git/hooks && echo planted > .git/hooks/pre-commit; \
                 ln -s ~ home-link; echo planted > home-link/through-link; \
                 echo planted > ../beside; echo planted > /proc/self/root$HOME/via-proc; \
                 rm -f home-link; echo fine > work.txt";
    let targets = [
        ".bashrc",
        ".local/bin/git",
        ".config/autostart/x.desktop",
        "proj/.git/hooks/pre-commit",
        "through-link",
        "beside",
        "via-proc",
    ];
    let o = h.run("local", write);
    for t in targets {
        assert!(
            h.read(t).contains("planted"),
            "unconfined, {t} is written: {}",
            stderr(&o)
        );
    }
    let fresh = Home::new("writes2").unwrap();
    let o = fresh.run("protected", write);
    for t in targets {
        assert!(
            !fresh.read(t).contains("planted"),
            "protected, {t} was written: {}",
            stderr(&o)
        );
    }
    assert_eq!(fresh.read("proj/work.txt"), "fine\n", "{}", stderr(&o));
    assert_eq!(fresh.read(".bashrc"), "# the user's own\n");
}

/// No way out of the run's processes: nothing outside can be signalled, and what the command
/// leaves behind (even after `setsid`) ends with the run.
#[test]
fn processes_outside_cannot_be_signalled_and_nothing_outlives_the_run() {
    let Some(h) = Home::new("processes") else {
        return;
    };
    let mark = common::marker();
    // The user's own process (an editor, the agent): same user, outside the run.
    let victim = || {
        h.user_cmd("/bin/bash")
            .args(["-c", &format!("exec -a '{mark}' sleep 300")])
            .spawn()
            .unwrap()
    };
    let mut outside = victim();
    let kill = format!("kill -9 {} 2>&1; echo tried", outside.id());
    let o = h.run("protected", &kill);
    assert!(stdout(&o).contains("tried"), "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        outside.try_wait().unwrap().is_none(),
        "protected, the outside process was killed"
    );
    let o = h.run("local", &kill);
    assert!(stdout(&o).contains("tried"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        outside.try_wait().unwrap().is_some(),
        "unconfined, the kill works"
    );

    let escape =
        format!("setsid bash -c 'exec -a {mark}-left sleep 300' & sleep 0.3; echo started");
    let o = h.run("local", &escape);
    assert!(stdout(&o).contains("started"));
    let left = processes_with(&format!("{mark}-left"));
    assert!(
        !left.is_empty(),
        "unconfined, setsid escapes the process group"
    );
    for p in left {
        unsafe { libc::kill(p as i32, libc::SIGKILL) };
    }
    let o = h.run("protected", &escape);
    assert!(stdout(&o).contains("started"), "{}", stderr(&o));
    let left = common::wait_no_process(&format!("{mark}-left"), Duration::from_secs(5));
    assert!(
        left.is_empty(),
        "protected, the setsid child outlived the run: {left:?}"
    );
}

/// With the network set to none, nothing on this machine's loopback is reached (a listener
/// of the test's own), while local mode reaches it.
#[test]
fn with_network_none_loopback_services_are_out_of_reach() {
    let Some(h) = Home::new("network") else {
        return;
    };
    let o = h.stigmer(&["config", "set", "sandbox.network", "none"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            if c.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let connect = format!(
        "/usr/bin/python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 3); print('connected')\" 2>&1"
    );
    let o = h.run("local", &connect);
    assert!(stdout(&o).contains("connected"), "{}", stdout(&o));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    let o = h.run("protected", &connect);
    assert!(!stdout(&o).contains("connected"), "{}", stdout(&o));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "protected, the listener was reached"
    );
}

/// Without bubblewrap the tier says what is missing and runs nothing (never unconfined).
#[test]
fn without_bubblewrap_nothing_runs() {
    let Some(h) = Home::new("missing") else {
        return;
    };
    let o = h
        .user_cmd(BIN)
        .args(["run", "--mode", "protected", "--", "touch", "ran"])
        .env("PATH", "/usr/local/bin")
        .current_dir(h.proj())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("PROTECTION_UNAVAILABLE") || err.contains("bubblewrap"),
        "{err}"
    );
    assert!(!h.proj().join("ran").exists(), "it ran unconfined");
}

/// The run contract holds in this tier: exit codes, a missing program, streams kept apart,
/// 8 MiB byte for byte; and normal work in the workspace (git commit) passes.
#[test]
fn the_run_contract_and_git_work() {
    let Some(h) = Home::new("contract") else {
        return;
    };
    let o = h.run("protected", "echo out; echo err >&2; exit 3");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), "out\n");
    assert!(stderr(&o).contains("err"));
    let o = h
        .user_cmd(BIN)
        .args(["run", "--mode", "protected", "--", "no-such-program-here"])
        .current_dir(h.proj())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let o = h.run("protected", "head -c 8388608 /dev/zero | tr '\\0' 'x'");
    assert_eq!(o.stdout.len(), 8 << 20);
    assert!(o.stdout.iter().all(|b| *b == b'x'));
    let o = h.run(
        "protected",
        "echo a > a.txt && git add a.txt && git -c user.name=t -c user.email=t@t commit -q -m a && git log --oneline | wc -l",
    );
    assert_eq!(stdout(&o).trim(), "2", "{}", stderr(&o));
}

/// The user's session stays out of reach: the session bus in the runtime folder, an ssh-agent
/// socket in /tmp, and an abstract socket (as X11's) even with the network open.
#[test]
fn the_session_s_sockets_are_out_of_reach() {
    let Some(h) = Home::new("session") else {
        return;
    };
    let runtime = PathBuf::from(format!("/run/user/{}", h.uid));
    // What an earlier run left (a socket file binds nothing new).
    let _ = std::fs::remove_dir_all(&runtime);
    std::fs::create_dir_all(&runtime).unwrap();
    sh(&format!(
        "chown {USER}: '{}' && chmod 700 '{}'",
        runtime.display(),
        runtime.display()
    ));
    let agent_dir = PathBuf::from(format!("/tmp/ssh-stigmer-{}", std::process::id()));
    std::fs::create_dir_all(&agent_dir).unwrap();
    sh(&format!("chown {USER}: '{}'", agent_dir.display()));
    let abstract_name = format!("@stigmer-test-display-{}", std::process::id());
    let sockets = [
        runtime.join("bus").to_str().unwrap().to_string(),
        agent_dir.join("agent.sock").to_str().unwrap().to_string(),
        abstract_name,
    ];
    let mut listeners = Vec::new();
    for s in &sockets {
        listeners.push(unix_listener(&h, s));
    }
    for (s, (_, count)) in sockets.iter().zip(&listeners) {
        let o = h.run("local", &connect_cmd(s));
        assert!(
            stdout(&o).contains("connected"),
            "unconfined, {s} is reached: {}",
            stdout(&o)
        );
        assert_eq!(std::fs::read_to_string(count).unwrap(), "1");
        // The network open: only Landlock's scope keeps the abstract socket inside.
        let o = h.run("protected", &connect_cmd(s));
        assert!(
            !stdout(&o).contains("connected"),
            "protected, {s} was reached"
        );
        assert_eq!(
            std::fs::read_to_string(count).unwrap(),
            "1",
            "protected, {s} was reached"
        );
    }
    drop(listeners);
    let _ = std::fs::remove_dir_all(&agent_dir);
    let _ = std::fs::remove_dir_all(&runtime);
}

/// The user adds to the hidden list (`protected.hide`) and lets a credential variable through
/// (`protected.pass_env`); a mistake in either is a clear error that runs nothing.
#[test]
fn the_user_adds_what_to_hide_and_which_credentials_pass() {
    let Some(h) = Home::new("settings") else {
        return;
    };
    std::fs::create_dir_all(h.dir.join("notes")).unwrap();
    std::fs::write(h.dir.join("notes/plan.txt"), "FAKE-PRIVATE-NOTE\n").unwrap();
    sh(&format!(
        "chown -R {USER}: '{}'",
        h.dir.join("notes").display()
    ));
    let read = "cat ~/notes/plan.txt 2>&1; echo \"[$MY_TOKEN] [$OTHER_TOKEN]\"";
    let env = [("MY_TOKEN", "FAKE-PASSED"), ("OTHER_TOKEN", "FAKE-KEPT")];
    let out = stdout(&h.run_env("protected", read, &env));
    assert!(out.contains("FAKE-PRIVATE-NOTE"), "not hidden yet: {out}");
    assert!(out.contains("[] []"), "{out}");
    let config = h.dir.join(".stigmer/config/config.toml");
    let before = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{before}\n[protected]\nhide = [\"~/notes\"]\npass_env = [\"MY_TOKEN\"]\n"),
    )
    .unwrap();
    let out = stdout(&h.run_env("protected", read, &env));
    assert!(!out.contains("FAKE-PRIVATE-NOTE"), "{out}");
    assert!(out.contains("[FAKE-PASSED] []"), "{out}");
    std::fs::write(
        &config,
        format!("{before}\n[protected]\nhide = [\"notes\"]\n"),
    )
    .unwrap();
    let o = h.run("protected", "touch ran");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("protected.hide"), "{}", stderr(&o));
    assert!(!h.proj().join("ran").exists());
}

/// A request's variables reach the command, never bubblewrap itself (which runs unconfined):
/// `LD_PRELOAD` naming a library a run built in the workspace loads only inside, where it
/// cannot write outside. The library writes a file in the home folder when it loads.
#[test]
fn a_request_s_variables_never_reach_the_unconfined_launcher() {
    let Some(h) = Home::new("preload") else {
        return;
    };
    let src = h.proj().join("planted.c");
    std::fs::write(
        &src,
        "#include <fcntl.h>\n#include <unistd.h>\n#include <stdlib.h>\n\
         __attribute__((constructor)) static void planted(void) {\n\
           const char *home = getenv(\"HOME\"); char p[4096];\n\
           if (!home) return;\n\
           snprintf(p, sizeof p, \"%s/planted-by-preload\", home);\n\
           int fd = open(p, O_WRONLY | O_CREAT, 0644); if (fd >= 0) close(fd);\n\
         }\n",
    )
    .unwrap();
    let lib = h.proj().join("planted.so");
    let ok = Command::new("gcc")
        .args(["-shared", "-fPIC", "-include", "stdio.h", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .unwrap()
        .success();
    assert!(ok, "gcc");
    sh(&format!("chown {USER}: '{}'", lib.display()));
    let preload = format!("LD_PRELOAD={}", lib.display());
    let run = |mode: &str| {
        h.user_cmd(BIN)
            .args(["run", "--mode", mode, "-e", &preload, "--", "true"])
            .current_dir(h.proj())
            .output()
            .unwrap()
    };
    let marker = h.dir.join("planted-by-preload");
    let o = run("local");
    assert!(
        marker.exists(),
        "unconfined, the library runs: {}",
        stderr(&o)
    );
    std::fs::remove_file(&marker).unwrap();
    let o = run("protected");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!marker.exists(), "the library ran outside the confinement");
}
