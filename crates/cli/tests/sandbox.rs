//! Sandbox mode against the machine's real container engine: the exec contract, containers'
//! lifecycle and security defaults (images: `sandbox_images.rs`). Without an engine these tests
//! say SKIPPED loudly.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::engine::*;
use common::*;
use serde_json::{json, Value};

/// `stigmer run` in sandbox mode with the busybox test image, in the test's own folder.
fn sandboxed(env: &TestEnv) -> std::process::Command {
    let mut c = env.cmd();
    c.current_dir(env.path())
        .env("STIGMER_SANDBOX_IMAGE", BUSYBOX)
        .env("STIGMER_EXECUTION_MODE", "sandbox");
    c
}

fn run(env: &TestEnv, args: &[&str]) -> std::process::Output {
    sandboxed(env).arg("run").args(args).output().unwrap()
}

fn both_ways(test: &str, check: impl Fn(&TestEnv, &str)) {
    if !engine_or_skip(test) {
        return;
    }
    ensure_busybox();
    let plain = TestEnv::new();
    check(&plain, "in-process");
    let served = TestEnv::new();
    let _server = served.start_server();
    check(&served, "server");
}

#[test]
fn sandbox_exit_codes_streams_and_arguments() {
    both_ways("sandbox_exit_codes_streams_and_arguments", |env, how| {
        let code = |args: &[&str]| run(env, args).status.code().unwrap();
        assert_eq!(code(&["--", "true"]), 0, "{how}");
        assert_eq!(code(&["-c", "exit 42"]), 42, "{how}");
        assert_eq!(
            code(&["--timeout", "0.5", "--", "sleep", "10"]),
            124,
            "{how}"
        );
        assert_eq!(code(&["-c", "kill -TERM $$"]), 143, "{how}");
        assert_eq!(code(&["-c", "kill -KILL $$"]), 137, "{how}");
        assert_eq!(code(&["--", "no-such-program-stigmer"]), 127, "{how}");
        assert_eq!(code(&["-c", "no-such-program-stigmer"]), 127, "{how}");
        std::fs::write(env.path().join("plain-file"), "x").unwrap();
        assert_eq!(code(&["--", "./plain-file"]), 126, "{how}");

        let o = sandboxed(env)
            .args(["run", "--env", "GREETING=hi there", "-c"])
            .arg("pwd; echo \"$GREETING\"; echo oops >&2; cat; echo \"stdin:$?\"; env | grep -c '^STIGMER_' || true; if test -e /var/run/docker.sock; then echo SOCKET; fi")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{how}: {}", stderr(&o));
        assert_eq!(
            stdout(&o),
            format!("{}\nhi there\nstdin:0\n0\n", env.path().display()),
            "{how}"
        );
        assert_eq!(stderr(&o), "oops\n", "{how}");

        let tricky = "it's \"quoted\" $HOME `id` ; | & * \\ \n end";
        let o = run(env, &["--", "printf", "%s", tricky]);
        assert_eq!(stdout(&o), tricky, "{how}");

        let all_bytes: Vec<u8> = (0..=255u8).cycle().take(256 * 64).collect();
        std::fs::write(env.path().join("bytes.bin"), &all_bytes).unwrap();
        let o = run(env, &["-c", "cat bytes.bin; cat bytes.bin >&2"]);
        assert!(
            o.stdout == all_bytes && o.stderr == all_bytes,
            "{how}: binary output changed"
        );
    });
}

#[test]
fn sandbox_fifty_megabytes_and_streaming() {
    both_ways("sandbox_fifty_megabytes_and_streaming", |env, how| {
        let file = env.path().join("big.bin");
        assert!(std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "head -c 52428800 /dev/urandom > '{}'",
                file.display()
            ))
            .status()
            .unwrap()
            .success());
        let expected = std::fs::read(&file).unwrap();
        let o = run(env, &["-c", "cat big.bin; cat big.bin >&2"]);
        assert_eq!(o.status.code(), Some(0), "{how}");
        assert!(
            o.stdout == expected,
            "{how}: stdout differs ({} bytes)",
            o.stdout.len()
        );
        assert!(
            o.stderr == expected,
            "{how}: stderr differs ({} bytes)",
            o.stderr.len()
        );

        let mut child = sandboxed(env)
            .args(["run", "-c", "echo first; sleep 5; echo second"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "first\n", "{how}");
        assert!(
            child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(5),
            "{how}: not streamed"
        );
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "second\n");
        assert!(child.wait().unwrap().success());
    });
}

#[test]
fn sandbox_timeout_and_leftovers_leave_no_process() {
    both_ways(
        "sandbox_timeout_and_leftovers_leave_no_process",
        |env, how| {
            let m = marker();
            let script = format!("sleep {m} & (sleep {m} & sleep {m}) & sh -c 'trap \"\" TERM; sleep {m}' & sleep {m}");
            let o = run(env, &["--timeout", "1", "-c", &script]);
            assert_eq!(o.status.code(), Some(124), "{how}: {}", stderr(&o));
            // Container processes are the host kernel's: /proc sees them.
            let left = wait_no_process(&m, Duration::from_secs(5));
            assert!(
                left.is_empty(),
                "{how}: processes left in the container: {left:?}"
            );

            let m = marker();
            let started = Instant::now();
            let o = run(env, &["-c", &format!("sleep {m} & echo done")]);
            assert_eq!(
                (o.status.code(), stdout(&o).as_str()),
                (Some(0), "done\n"),
                "{how}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "{how}: run kept open by a leftover"
            );
            assert!(
                wait_no_process(&m, Duration::from_secs(5)).is_empty(),
                "{how}: leftover survived"
            );
        },
    );
}

#[test]
fn files_made_in_the_workspace_belong_to_the_user_and_the_container_is_locked_down() {
    if !engine_or_skip("files_made_in_the_workspace_belong_to_the_user") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    let _server = env.start_server();
    let project = env.path().join("project");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    std::fs::create_dir_all(project.join("src")).unwrap();
    let o = sandboxed(&env)
        .current_dir(project.join("src"))
        .args([
            "run",
            "-c",
            "echo made > made.txt; mkdir sub; touch sub/x; id -u; id -g",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    assert_eq!(stdout(&o), format!("{uid}\n{gid}\n"));
    for f in ["src/made.txt", "src/sub", "src/sub/x"] {
        let meta = std::fs::metadata(project.join(f)).unwrap();
        assert_eq!(
            (
                std::os::unix::fs::MetadataExt::uid(&meta),
                std::os::unix::fs::MetadataExt::gid(&meta)
            ),
            (uid, gid),
            "{f}"
        );
    }
    // The project root is the workspace, mounted at the same path.
    let ids = containers_for(&project);
    assert_eq!(ids.len(), 1, "one container for the project");
    let c = inspect(&ids[0]);
    let host = &c["HostConfig"];
    assert_eq!(host["Privileged"], false);
    // stigmer's helper is the container's init (no engine-side init), copied in, and output
    // never lands in the engine's logs.
    assert_ne!(host["Init"], true, "no engine-side init");
    assert_eq!(
        c["Config"]["Entrypoint"],
        json!(["/.stigmer/stigmer-sandbox-helper", "serve"])
    );
    assert_eq!(host["LogConfig"]["Type"], "none");
    // What a command really gets, seen from inside (engines report these differently): the
    // eight capabilities kept and no more (even as root), and no way to gain privileges.
    let o = sandboxed(&env)
        .current_dir(&project)
        .args([
            "run",
            "-c",
            "grep -E '^(CapBnd|NoNewPrivs)' /proc/self/status",
        ])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&o),
        "CapBnd:\t00000000000004fb\nNoNewPrivs:\t1\n",
        "{}",
        stderr(&o)
    );
    assert!(host["PidsLimit"].as_i64().unwrap() > 0);
    assert!(host["Memory"].as_i64().unwrap() > 0);
    // One folder of the host: the project, read-write, at the same path.
    // The engine lists mounts in no fixed order.
    let mut mounts: Vec<(String, String, bool)> = c["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Type"] == "bind")
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (s("Source"), s("Destination"), m["RW"] == true)
        })
        .collect();
    let here = project.display().to_string();
    // The project's `.git` is mounted onto itself (so it cannot be moved aside): nothing else.
    let git = project.join(".git").display().to_string();
    mounts.sort();
    assert_eq!(
        mounts,
        [(here.clone(), here, true), (git.clone(), git, true)]
    );
    assert_eq!(c["Config"]["User"], format!("{uid}:{gid}"));
    assert_eq!(c["Config"]["Labels"]["dev.stigmer.managed"], "true");
}

#[test]
fn no_engine_means_no_run_anywhere() {
    let env = TestEnv::new();
    let marker = env.path().join("ran-on-host");
    for host in ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:9"] {
        let o = sandboxed(&env)
            .env("DOCKER_HOST", host)
            .args(["run", "--", "touch"])
            .arg(&marker)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(125), "{host}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("ENGINE_UNAVAILABLE"),
            "{host}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("not running"), "{host}: {}", stderr(&o));
        assert!(!marker.exists(), "{host}: the command ran on the host");
    }
    let o = sandboxed(&env)
        .env("DOCKER_HOST", "ftp://x")
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("DOCKER_HOST"), "{}", stderr(&o));
    // Through a server whose engine is unreachable: 503 before anything is registered.
    env.allow_work();
    let server = env.start_server_env(&[
        ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ("STIGMER_EXECUTION_MODE", "sandbox"),
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = server.client();
        let r = server
            .post(&c, "/v1/runs")
            .json(&json!({"argv": ["touch", marker], "cwd": env.path()}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "ENGINE_UNAVAILABLE"
        );
        let s: Value = server
            .get(&c, "/v1/status")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(s["engine"]["state"], "not_running", "{s}");
    });
    assert!(!marker.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_runs_share_one_container() {
    if !engine_or_skip("thirty_two_concurrent_runs_share_one_container") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    env.allow_work();
    let server = env.start_server();
    let client = server.client();
    let ws = env.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let rb = server.post(&client, "/v1/runs").json(&json!({
                "argv": ["sh", "-c", "sleep 0.3; printf 'out-%s' \"$1\"; printf 'err-%s' \"$1\" >&2; exit $(($1 % 5))", "sh", i.to_string()],
                "cwd": ws, "mode": "sandbox", "image": BUSYBOX,
            }));
            tokio::spawn(async move { rb.send().await.unwrap().bytes().await.unwrap() })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let (out, err, finished) = decode_stream(&t.await.unwrap());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("out-{i}"),
            "{finished}"
        );
        assert_eq!(String::from_utf8(err).unwrap(), format!("err-{i}"));
        assert_eq!(finished["run"]["outcome"]["exit_code"], (i % 5) as u64);
        assert_eq!(finished["run"]["mode"], "sandbox");
        assert_eq!(finished["run"]["image"], BUSYBOX);
    }
    // The workspace the user allowed is what is mounted, never the folder inside it.
    assert_eq!(
        containers_for(env.path()).len(),
        1,
        "runs did not share one container"
    );
}

#[test]
fn containers_go_after_their_ttl_on_stop_and_after_a_crash() {
    if !engine_or_skip("containers_go_after_their_ttl_on_stop_and_after_a_crash") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    let ws = |n: &str| {
        let p = env.path().join(n);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let (a, b, c) = (ws("a"), ws("b"), ws("c"));
    // TTL: removed once idle past it.
    let mut server = env.start_server_env(&[("STIGMER_SANDBOX_TTL", "1")]);
    let o = sandboxed(&env)
        .current_dir(&a)
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(containers_for(&a).len(), 1);
    assert!(
        wait_until(Duration::from_secs(15), || containers_for(&a).is_empty()),
        "TTL did not remove the container"
    );
    // Stop with cleanup on: removed.
    assert!(sandboxed(&env)
        .current_dir(&b)
        .args(["run", "--", "true"])
        .status()
        .unwrap()
        .success());
    assert_eq!(containers_for(&b).len(), 1);
    assert!(env.stigmer(&["server", "stop"]).status.success());
    server.child.wait().unwrap();
    assert!(containers_for(&b).is_empty(), "stop left the container");

    // A crash (SIGKILL) leaves one; the next server removes it, and nothing that is not its own.
    let mut server = env.start_server();
    assert!(sandboxed(&env)
        .current_dir(&c)
        .args(["run", "--", "true"])
        .status()
        .unwrap()
        .success());
    let orphan = containers_for(&c);
    assert_eq!(orphan.len(), 1);
    let foreign = std::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--label",
            "dev.stigmer.managed=true",
            "--label",
            "dev.stigmer.home=someone-else",
            BUSYBOX,
            "sleep",
            "600",
        ])
        .output()
        .unwrap();
    let foreign = String::from_utf8_lossy(&foreign.stdout).trim().to_string();
    let plain = std::process::Command::new("docker")
        .args(["run", "-d", BUSYBOX, "sleep", "600"])
        .output()
        .unwrap();
    let plain = String::from_utf8_lossy(&plain.stdout).trim().to_string();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert_eq!(
        containers_for(&c),
        orphan,
        "the crash removed the container?"
    );
    let _next = env.start_server();
    assert!(
        wait_until(Duration::from_secs(15), || containers_for(&c).is_empty()),
        "orphan not removed"
    );
    for other in [&foreign, &plain] {
        assert_eq!(
            inspect(other)["State"]["Running"],
            true,
            "touched a container that is not ours"
        );
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", other])
            .output();
    }
}

#[test]
fn sandbox_cli_status_pull_and_prune() {
    if !engine_or_skip("sandbox_cli_status_pull_and_prune") {
        return;
    }
    ensure_busybox();
    let registry = Registry::start();
    let image = registry.push(BUSYBOX, &format!("stigmer/cli-{}:test", std::process::id()));
    let env = TestEnv::new();
    let o = env
        .cmd()
        .env("STIGMER_SANDBOX_IMAGE", &image)
        .args(["sandbox", "status", "--json"])
        .output()
        .unwrap();
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["engine"]["state"], "connected", "{s}");
    assert_eq!(
        (s["image_present"].clone(), s["tier"].clone()),
        (json!(false), json!("custom"))
    );
    let o = env
        .cmd()
        .env("STIGMER_SANDBOX_IMAGE", &image)
        .args(["sandbox", "pull"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("pulling") && stderr(&o).contains("ready"),
        "{}",
        stderr(&o)
    );
    let o = env
        .cmd()
        .env("STIGMER_SANDBOX_IMAGE", &image)
        .args(["sandbox", "status", "--json"])
        .output()
        .unwrap();
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["image_present"], true);
    // A bad image reference is refused before any engine call.
    let o = env.stigmer(&["sandbox", "pull", "Not An Image"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("INVALID_SETTING"), "{}", stderr(&o));
    // Prune removes this installation's containers only.
    let _server = env.start_server();
    assert!(sandboxed(&env)
        .args(["run", "--", "true"])
        .status()
        .unwrap()
        .success());
    let o = env.stigmer(&["sandbox", "prune"]);
    assert!(stdout(&o).contains("removed 1"), "{}", stdout(&o));
    remove_image(&image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_comes_back_is_noticed_without_a_restart() {
    if !engine_or_skip("an_engine_that_comes_back_is_noticed_without_a_restart") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    // Beside the work folder: a folder holding an engine socket is never mounted.
    let engine = EngineSocket::start(&env.beside("engine").join("engine.sock"));
    let host = format!("unix://{}", engine.path.display());
    env.allow_work();
    let server = env.start_server_env(&[("DOCKER_HOST", &host)]);
    let client = server.client();
    let state = || async {
        let s: Value = server
            .get(&client, "/v1/status")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        s["engine"]["state"].as_str().unwrap().to_string()
    };
    let run = || async {
        server
            .post(&client, "/v1/runs")
            .json(&json!({"argv": ["echo", "in the box"], "cwd": env.path(), "mode": "sandbox", "image": BUSYBOX}))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(state().await, "connected");
    let (out, _, _) = decode_stream(&run().await.bytes().await.unwrap());
    assert_eq!(out, b"in the box\n");

    engine.down();
    assert_eq!(state().await, "not_running");
    let r = run().await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "ENGINE_UNAVAILABLE"
    );

    engine.up();
    assert_eq!(state().await, "connected");
    let (out, _, finished) = decode_stream(&run().await.bytes().await.unwrap());
    assert_eq!(out, b"in the box\n", "{finished}");
}

/// An argument that is not UTF-8 reaches the program in the container byte for byte (the
/// engine's API carries text only: stigmer encodes it and the container decodes it).
#[test]
fn sandbox_arguments_that_are_not_utf8_arrive_intact() {
    use std::os::unix::ffi::OsStrExt;
    both_ways(
        "sandbox_arguments_that_are_not_utf8_arrive_intact",
        |env, how| {
            let arg = std::ffi::OsStr::from_bytes(b"caf\xe9 \xff\\%s 'q'");
            let o = sandboxed(env)
                .args(["run", "--", "printf", "%s"])
                .arg(arg)
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(0), "{how}: {}", stderr(&o));
            assert_eq!(o.stdout, arg.as_bytes(), "{how}");
        },
    );
}
