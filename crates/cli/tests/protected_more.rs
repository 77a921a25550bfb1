//! More of the protected tier (bubblewrap) as a normal user (see `protected.rs`): how a run
//! ends (signals, timeouts, bytes) as locally; no descriptor or namespace as a way out; names
//! that do not resolve and loopback that is not reached without the network; the allowlist
//! through Stigmer's proxy; and normal work offline (git, a venv with pip, npm, cargo) with
//! the user's own tools. Each attack is first shown to work in local mode.
//!
//! Needs root (to make the test user); as another user it says SKIPPED.
#![cfg(target_os = "linux")]

mod common;

use std::ffi::OsStr;
use std::net::UdpSocket;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::protected::*;
use common::{stderr, stdout, BIN};
use serde_json::Value;

/// How a run ends is the same as locally: a signal is a signal (not bubblewrap's 128+N), a
/// timeout ends the whole tree in time, arguments that are not UTF-8 arrive byte for byte.
#[test]
fn runs_end_as_they_do_locally() {
    let Some(h) = Home::new("ending") else {
        return;
    };
    let server = UserServer::start(&h);
    for mode in ["local", "protected"] {
        let o = h.run(mode, "kill -9 $$");
        assert_eq!(o.status.code(), Some(137), "{mode}: {}", stderr(&o));
        let outcome = &server.last_run()["outcome"];
        assert_eq!(outcome["signal"], 9, "{mode}: {outcome}");
        assert_eq!(outcome["exit_code"], Value::Null, "{mode}: {outcome}");
        // A command that exits with 137 itself is not a signal.
        let o = h.run(mode, "exit 137");
        assert_eq!(o.status.code(), Some(137), "{mode}");
        let outcome = &server.last_run()["outcome"];
        assert_eq!(outcome["exit_code"], 137, "{mode}: {outcome}");
        assert_eq!(outcome["signal"], Value::Null, "{mode}: {outcome}");

        let started = Instant::now();
        let o = h
            .user_cmd(BIN)
            .args(["run", "--mode", mode, "--timeout", "1", "-c"])
            .arg("setsid sleep 60 & sleep 60")
            .current_dir(h.proj())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(124), "{mode}: {}", stderr(&o));
        assert!(started.elapsed() < Duration::from_secs(20), "{mode}");
        assert_eq!(server.last_run()["outcome"]["timed_out"], true, "{mode}");
        // Nothing of the tree is left, the `setsid` child included (local mode's own
        // process-group kill misses that one: it is ended here).
        std::thread::sleep(Duration::from_millis(300));
        let left = Command::new("pgrep")
            .args(["-u", &h.uid.to_string(), "-f", "sleep 60"])
            .output()
            .unwrap();
        if mode == "protected" {
            assert_eq!(stdout(&left), "", "left running after the timeout");
        }
        let _ = Command::new("pkill")
            .args(["-u", &h.uid.to_string(), "-f", "sleep 60"])
            .status();

        let odd = OsStr::from_bytes(b"caf\xe9-\xff\xfe");
        let o = h
            .user_cmd(BIN)
            .args(["run", "--mode", mode, "--", "printf", "%s"])
            .arg(odd)
            .current_dir(h.proj())
            .output()
            .unwrap();
        assert_eq!(o.stdout, odd.as_bytes(), "{mode}: {}", stderr(&o));
    }
}

/// A descriptor the server was started with (here one open on `~/.bashrc`) is no way out:
/// local commands inherit it, protected ones do not, nor reopen it through `/proc/PID/fd` of
/// a process in their run.
#[test]
fn descriptors_the_server_inherited_do_not_reach_the_command() {
    let Some(h) = Home::new("fds") else {
        return;
    };
    let rc = std::fs::OpenOptions::new()
        .append(true)
        .open(h.dir.join(".bashrc"))
        .unwrap();
    let run = |mode: &str| -> Output {
        use std::os::fd::AsRawFd;
        let fd = rc.as_raw_fd();
        let mut c = h.user_cmd(BIN);
        // Its own descriptor 7, and every process's it can see in /proc (the launcher's,
        // bubblewrap's).
        let attack = "echo PLANTED >&7; for p in /proc/[0-9]*; do echo PLANTED >> $p/fd/7; done";
        c.args(["run", "--mode", mode, "-c", attack])
            .current_dir(h.proj());
        // SAFETY: dup2 in the child before it execs; it leaves fd 7 open across exec.
        unsafe {
            c.pre_exec(move || {
                if libc::dup2(fd, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c.output().unwrap()
    };
    run("local");
    assert!(
        h.read(".bashrc").contains("PLANTED"),
        "unconfined, the descriptor is a way out"
    );
    std::fs::write(h.dir.join(".bashrc"), "# the user's own\n").unwrap();
    let o = run("protected");
    assert!(o.status.code().is_some(), "{}", stderr(&o));
    assert_eq!(h.read(".bashrc"), "# the user's own\n");
}

/// A command cannot make namespaces of its own (more kernel to attack from, and a way around
/// the mounts it was given).
#[test]
fn commands_cannot_make_namespaces_of_their_own() {
    let Some(h) = Home::new("userns") else {
        return;
    };
    let try_it = "unshare -U true && echo MADE";
    assert!(stdout(&h.run("local", try_it)).contains("MADE"));
    let o = h.run("protected", try_it);
    assert!(!stdout(&o).contains("MADE"), "{}", stderr(&o));
}

/// A name resolver of the test's own, on loopback: answers every query with 192.0.2.1 (a
/// documentation address, never contacted) and counts the queries.
fn resolver() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            count.fetch_add(1, Ordering::SeqCst);
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80; // a response
            reply[7] = 1; // one answer
            reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
            let _ = sock.send_to(&reply, from);
        }
    });
    (port, seen)
}

/// A query for `stigmer.test` to the test's resolver, printing the address it answered.
fn resolve_cmd(port: u16) -> String {
    format!(
        "/usr/bin/python3 -c \"
import socket
q = b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x07stigmer\\x04test\\x00\\x00\\x01\\x00\\x01'
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(q, ('127.0.0.1', {port}))
print('resolved', socket.inet_ntoa(s.recv(512)[-4:]))
\" 2>&1"
    )
}

/// With the network none or on the allowlist, a name does not resolve (UDP to a resolver of
/// the test's own on loopback never arrives), nor is a loopback listener reached; locally both
/// are. Only loopback is ever sent to.
#[test]
fn without_the_network_names_do_not_resolve() {
    use std::sync::atomic::Ordering;
    let Some(h) = Home::new("dns") else {
        return;
    };
    let (port, seen) = resolver();
    let o = h.run("local", &resolve_cmd(port));
    assert!(stdout(&o).contains("resolved 192.0.2.1"), "{}", stdout(&o));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    for policy in ["none", "allowlist"] {
        let o = h.stigmer(&["config", "set", "sandbox.network", policy]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = h.run("protected", &resolve_cmd(port));
        assert!(!stdout(&o).contains("resolved"), "{policy}: {}", stdout(&o));
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "{policy}: the resolver was reached"
        );
    }
}

/// The allowlist: a listed host answers through Stigmer's proxy, another is refused and named
/// in the run's notes, and the listed host's address is not reached around the proxy; a
/// listener on this machine's loopback is not reached either. The hosts are web servers of the
/// test's own, in containers.
#[test]
fn the_allowlist_lets_through_only_the_listed_hosts() {
    use common::engine::*;
    if !engine_or_skip("the_allowlist_lets_through_only_the_listed_hosts") {
        return;
    }
    let Some(h) = Home::new("allowlist") else {
        return;
    };
    let image = basic_image();
    let site = h.dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
    make_cert(&site, &["allowed.stigmer.test"]);
    let allowed = WebServer::start(&image, "allowed", &site);
    let denied = WebServer::start(&image, "denied", &site);
    let hosts = format!(
        "allowed.stigmer.test={},denied.stigmer.test={}",
        allowed.ip, denied.ip
    );
    for args in [
        vec!["config", "set", "sandbox.network", "allowlist"],
        vec!["config", "allow", "allowed.stigmer.test"],
    ] {
        let o = h.stigmer(&args);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let env = [("STIGMER_PROXY_TEST_HOSTS", hosts.as_str())];
    let curl = |mode: &str, args: &str| {
        h.run_env(mode, &format!("curl -sS --max-time 8 {args} 2>&1"), &env)
    };
    let direct = format!("--noproxy '*' http://{}/hello", allowed.ip);
    assert!(
        stdout(&curl("local", &direct)).contains("hello from allowed"),
        "unconfined, the host's address is reached"
    );
    let o = curl("protected", "http://allowed.stigmer.test/hello");
    assert_eq!(stdout(&o), "hello from allowed\n", "{}", stderr(&o));
    let o = curl("protected", "http://denied.stigmer.test/hello");
    assert!(
        stdout(&o).contains("network policy blocked denied.stigmer.test:80"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("NETWORK POLICY") && stderr(&o).contains("denied.stigmer.test"),
        "the run's notes name the host: {}",
        stderr(&o)
    );
    let o = curl("protected", &direct);
    assert!(
        !stdout(&o).contains("hello"),
        "around the proxy: {}",
        stdout(&o)
    );
    // This machine's own services: not through the proxy, not around it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    for args in [
        format!("http://127.0.0.1:{port}/"),
        format!("--noproxy '*' http://127.0.0.1:{port}/"),
    ] {
        let o = curl("protected", &args);
        assert!(!stdout(&o).contains("HTTP/"), "{args}: {}", stdout(&o));
    }
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the loopback listener was reached"
    );
}

/// Normal work passes offline with the user's own tools: a venv and `pip install --no-index`
/// of a local wheel, `npm install --offline` of a local package, `cargo build --offline` of a
/// small crate with the user's own Rust toolchain (hard links of this machine's, in the
/// user's home).
#[test]
fn normal_work_passes_offline() {
    let Some(h) = Home::new("work") else {
        return;
    };
    let proj = h.proj();
    make_wheel(&proj.join("tiny-1.0-py3-none-any.whl"));
    std::fs::create_dir_all(proj.join("pkg")).unwrap();
    std::fs::write(
        proj.join("pkg/package.json"),
        r#"{"name":"tiny-pkg","version":"1.0.0","main":"index.js"}"#,
    )
    .unwrap();
    std::fs::write(
        proj.join("pkg/index.js"),
        "module.exports = 'tiny from npm';\n",
    )
    .unwrap();
    std::fs::create_dir_all(proj.join("crate/src")).unwrap();
    std::fs::write(
        proj.join("crate/Cargo.toml"),
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        proj.join("crate/src/main.rs"),
        "fn main() { println!(\"tiny from cargo\"); }\n",
    )
    .unwrap();
    // The user's own toolchain, where rustup would put it.
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let sysroot = stdout(&sysroot).trim().to_string();
    let toolchain = h.dir.join(".rustup/toolchains/own");
    std::fs::create_dir_all(toolchain.parent().unwrap()).unwrap();
    sh(&format!(
        "cp -al '{sysroot}' '{}' && chown {USER}: '{}' '{}'",
        toolchain.display(),
        h.dir.join(".rustup").display(),
        h.dir.join(".rustup/toolchains").display()
    ));
    sh(&format!("chown -R {USER}: '{}'", proj.display()));

    let work = format!(
        "set -e\n\
         python3 -m venv .venv && .venv/bin/pip install -q --no-index ./tiny-1.0-py3-none-any.whl\n\
         .venv/bin/python -c 'import tiny; print(tiny.WHO)'\n\
         (cd pkg && npm pack --silent >/dev/null)\n\
         npm install --offline --no-audit --no-fund --silent ./pkg/tiny-pkg-1.0.0.tgz\n\
         node -e \"console.log(require('tiny-pkg'))\"\n\
         (cd crate && PATH={}/bin:$PATH cargo build -q --offline && ./target/debug/tiny)\n",
        toolchain.display()
    );
    let o = h.run("protected", &work);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    for line in ["tiny from pip", "tiny from npm", "tiny from cargo"] {
        assert!(out.contains(line), "{line}: {out}\n{}", stderr(&o));
    }
    // The caches went to the run's private /tmp: nothing new in the home folder.
    for planted in [".npm", ".cache", ".cargo"] {
        assert!(!h.dir.join(planted).exists(), "{planted} was written");
    }
}

/// A wheel (a zip with its metadata) of a one-module package.
fn make_wheel(path: &Path) {
    let script = "import zipfile,sys\n\
        z=zipfile.ZipFile(sys.argv[1],'w')\n\
        z.writestr('tiny.py',\"WHO='tiny from pip'\\n\")\n\
        z.writestr('tiny-1.0.dist-info/METADATA','Metadata-Version: 2.1\\nName: tiny\\nVersion: 1.0\\n')\n\
        z.writestr('tiny-1.0.dist-info/WHEEL','Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
        z.writestr('tiny-1.0.dist-info/RECORD','')\n\
        z.close()\n";
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "the wheel");
}

/// Through a server, which keeps each workspace's folders between runs and looks again only
/// where they changed: a repository one run makes, or the user makes between runs, has its
/// hooks read-only in the next run.
#[test]
fn repositories_made_between_runs_are_guarded_in_the_next() {
    let Some(h) = Home::new("repos") else {
        return;
    };
    let _server = UserServer::start(&h);
    let plant = |dir: &str| format!("echo evil > {dir}/.git/hooks/pre-commit && echo planted");
    assert!(h.run("protected", "true").status.success());
    let o = h.run("protected", "git init -q made/by/run && echo made");
    assert!(stdout(&o).contains("made"), "{}", stderr(&o));
    let o = h.run("protected", &plant("made/by/run"));
    assert!(!stdout(&o).contains("planted"), "{}", stdout(&o));
    // The user's own repository, made outside any run.
    let o = h
        .user_cmd("git")
        .args(["init", "-q", "by/user"])
        .current_dir(h.proj())
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = h.run("protected", &plant("by/user"));
    assert!(!stdout(&o).contains("planted"), "{}", stdout(&o));
    assert!(!h.proj().join("by/user/.git/hooks/pre-commit").exists());
    assert!(!h.proj().join("made/by/run/.git/hooks/pre-commit").exists());
}

/// A repository whose folder is renamed (its read-only mounts go with it) and a copy put in
/// its place has writable hooks in that run: the run's outcome names them (the agent and the
/// user are told), and the next run has them read-only.
#[test]
fn a_guarded_repository_swapped_for_a_copy_is_told_and_guarded_next() {
    let Some(h) = Home::new("swap") else {
        return;
    };
    let o = h
        .user_cmd("git")
        .args(["init", "-q", "sub"])
        .current_dir(h.proj())
        .output()
        .unwrap();
    assert!(o.status.success());
    let server = UserServer::start(&h);
    let o = h.run(
        "protected",
        "mkdir -p node_modules && mv sub node_modules/o && cp -a node_modules/o sub && \
         echo evil > sub/.git/hooks/pre-commit && echo swapped",
    );
    assert!(stdout(&o).contains("swapped"), "{}", stderr(&o));
    let told = server.last_run()["outcome"]["host_files"].to_string();
    assert!(told.contains("sub/.git/hooks"), "not told: {told}");
    let o = h.run(
        "protected",
        "echo more > sub/.git/hooks/post-checkout && echo planted",
    );
    assert!(!stdout(&o).contains("planted"), "{}", stdout(&o));
}
