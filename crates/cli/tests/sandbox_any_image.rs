//! The run contract in any image: the same checks locally, in the busybox test image, and in an
//! image with no shell and no other tool (one static test program, tests/images/probe.c), all
//! through a real server and the real container engine. Without an engine: SKIPPED loudly.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Output;
use std::time::Duration;

use common::engine::*;
use common::*;
use serde_json::json;

/// One place to run commands: a server in that mode, and the test program's path there.
struct Way {
    name: &'static str,
    image: Option<&'static str>,
    probe: String,
    server: Server,
    env: TestEnv,
}

impl Way {
    fn run<S: AsRef<OsStr>>(&self, extra: &[&str], args: &[S]) -> Output {
        let mut c = self.env.cmd();
        c.current_dir(self.env.path())
            .arg("run")
            .args(extra)
            .arg("--");
        c.arg(&self.probe).args(args);
        c.output().unwrap()
    }
}

fn ways(test: &str) -> Vec<Way> {
    if !engine_or_skip(test) {
        return Vec::new();
    }
    ensure_busybox();
    [
        ("local", None),
        ("busybox", Some(BUSYBOX)),
        ("no shell", Some(NOSHELL)),
    ]
    .into_iter()
    .map(|(name, image)| {
        let env = TestEnv::new();
        // A variable every container engine sets, removed by the user's settings.
        let o = env.stigmer(&["config", "set", "env.HOSTNAME", ""]);
        assert!(o.status.success(), "{}", stderr(&o));
        let here = env.path().join("probe");
        ensure_noshell(&here);
        let probe = match image {
            Some(NOSHELL) => "/probe".to_string(),
            _ => here.display().to_string(),
        };
        let server = match image {
            Some(image) => env.start_server_env(&[
                ("STIGMER_EXECUTION_MODE", "sandbox"),
                ("STIGMER_SANDBOX_IMAGE", image),
            ]),
            None => env.start_server(),
        };
        Way {
            name,
            image,
            probe,
            server,
            env,
        }
    })
    .collect()
}

#[test]
fn the_run_contract_holds_in_any_image() {
    for w in ways("the_run_contract_holds_in_any_image") {
        let how = w.name;
        let o = w.run(&[], &["out", "hello", "two words"]);
        assert_eq!(stdout(&o), "hello\ntwo words\n", "{how}: {}", stderr(&o));
        assert_eq!(
            (o.status.code(), stderr(&o).as_str()),
            (Some(0), ""),
            "{how}"
        );
        let o = w.run(&[], &["err", "oops"]);
        assert_eq!(
            (stdout(&o).as_str(), stderr(&o).as_str()),
            ("", "oops\n"),
            "{how}"
        );
        assert_eq!(w.run(&[], &["exit", "42"]).status.code(), Some(42), "{how}");
        assert_eq!(
            w.run(&[], &["raise", "2"]).status.code(),
            Some(130),
            "{how}"
        );
        assert_eq!(
            w.run(&[], &["raise", "15"]).status.code(),
            Some(143),
            "{how}"
        );
        // Commands start with no signal ignored or blocked (an interrupt works, as locally).
        // Only the standard signals count: glibc's posix_spawn leaves its own two internal
        // ones (32, 33; programs cannot use them) ignored in what it starts.
        let o = w.run(&[], &["sigs"]);
        let mask = |name: &str| {
            let text = stdout(&o);
            let line = text
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .to_string();
            u64::from_str_radix(line.split('\t').nth(1).unwrap(), 16).unwrap()
        };
        assert_eq!(mask("SigIgn:") & 0x7fff_ffff, 0, "{how}: {}", stdout(&o));
        assert_eq!(mask("SigBlk:"), 0, "{how}: {}", stdout(&o));
        let o = w.run(
            &["-e", "STIGMER_PROBE=set by the test"],
            &["env", "STIGMER_PROBE"],
        );
        assert_eq!(stdout(&o), "set by the test\n", "{how}");
        // A variable stigmer removes by default is removed in a container too, not set empty.
        assert_eq!(
            stdout(&w.run(&[], &["env", "STIGMER_HOME"])),
            "(unset)\n",
            "{how}"
        );
        assert_eq!(
            stdout(&w.run(&[], &["env", "HOSTNAME"])),
            "(unset)\n",
            "{how}: removed, not set empty"
        );
        assert_eq!(
            stdout(&w.run(&[], &["pwd"])),
            format!("{}\n", w.env.path().display()),
            "{how}"
        );
        assert_eq!(
            stdout(&w.run(&[], &["stdin"])),
            "0\n",
            "{how}: stdin is empty"
        );
        let odd = OsStr::from_bytes(b"caf\xe9 \xff");
        let o = w.run(&[], &[OsStr::new("args"), odd]);
        assert_eq!(o.stdout, b"caf\xe9 \xff\n", "{how}");
        let made = w.env.path().join("made-by-probe");
        let o = w.run(&[], &["write", made.to_str().unwrap()]);
        assert!(o.status.success(), "{how}: {}", stderr(&o));
        let meta = std::fs::metadata(&made).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            unsafe { libc::getuid() },
            "{how}: files made belong to the user"
        );
        let o = w.run(&[], &["big", "8"]);
        assert_eq!(o.stdout.len(), 8 << 20, "{how}");
        assert!(
            o.stdout
                .iter()
                .enumerate()
                .all(|(i, b)| *b == ((i % (1 << 20)) * 7 + 3) as u8),
            "{how}: 8 MiB byte for byte"
        );
        let mut c = w.env.cmd();
        let o = c
            .current_dir(w.env.path())
            .args(["run", "--", "no-such-program-stigmer"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(127), "{how}");
        assert!(
            stderr(&o).contains("command not found"),
            "{how}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn signals_are_reported_as_signals_everywhere() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for w in ways("signals_are_reported_as_signals_everywhere") {
        w.env.allow_work();
        let client = w.server.client();
        let body = json!({"argv": [w.probe, "raise", "9"], "cwd": w.env.path()});
        let bytes = rt.block_on(async {
            let r = w
                .server
                .post(&client, "/v1/runs")
                .json(&body)
                .send()
                .await
                .unwrap();
            r.bytes().await.unwrap()
        });
        let (_, _, finished) = decode_stream(&bytes);
        let outcome = &finished["run"]["outcome"];
        assert_eq!(outcome["signal"], 9, "{}: {finished}", w.name);
        assert!(outcome["exit_code"].is_null(), "{}: {finished}", w.name);
        assert_eq!(finished["run"]["image"], json!(w.image), "{}", w.name);
    }
}

#[test]
fn a_timeout_ends_the_whole_tree_in_any_image() {
    for w in ways("a_timeout_ends_the_whole_tree_in_any_image") {
        let mark = marker();
        let o = w.run(&["--timeout", "1"], &["tree", "30", &mark]);
        assert_eq!(o.status.code(), Some(124), "{}: {}", w.name, stderr(&o));
        assert_eq!(stdout(&o), "started\n", "{}", w.name);
        let left = wait_no_process(&mark, Duration::from_secs(5));
        assert!(left.is_empty(), "{}: left behind {left:?}", w.name);
    }
}

#[test]
fn a_shell_command_in_an_image_without_a_shell_says_so() {
    let Some(w) = ways("a_shell_command_in_an_image_without_a_shell_says_so")
        .into_iter()
        .find(|w| w.image == Some(NOSHELL))
    else {
        return;
    };
    let o = w
        .env
        .cmd()
        .current_dir(w.env.path())
        .args(["run", "-c", "echo hi"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/bin/sh: command not found"),
        "{}",
        stderr(&o)
    );
}

/// What a command does to its own container cannot take the sandbox down for the next one; a
/// helper killed from outside fails its runs with a clear error, and the next run recovers.
#[test]
fn a_helper_that_dies_fails_its_runs_clearly_and_the_next_run_recovers() {
    let Some(w) = ways("a_helper_that_dies_fails_its_runs_clearly_and_the_next_run_recovers")
        .into_iter()
        .find(|w| w.image == Some(BUSYBOX))
    else {
        return;
    };
    let sh = |line: &str| {
        w.env
            .cmd()
            .current_dir(w.env.path())
            .args(["run", "-c", line])
            .output()
            .unwrap()
    };
    assert!(sh("true").status.success());
    let first = containers_for(w.env.path());
    assert_eq!(first.len(), 1);
    // `kill -9 -1` ends everything the sandbox user may signal: the helper (init) is not among it.
    let o = sh("sleep 30 & kill -9 -1; echo the caller is spared");
    assert_eq!(stdout(&o), "the caller is spared\n", "{}", stderr(&o));
    let o = sh("rm -rf /.stigmer; echo still here");
    assert_eq!(stdout(&o), "still here\n", "{}", stderr(&o));
    assert_eq!(
        containers_for(w.env.path()),
        first,
        "the same container goes on"
    );

    let mark = marker();
    let long = w
        .env
        .cmd()
        .current_dir(w.env.path())
        .args(["run", "--", "sleep", "30", &mark])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for_processes(&mark, 1, Duration::from_secs(10)));
    let pid = inspect(&first[0])["State"]["Pid"].as_u64().unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let started = std::time::Instant::now();
    let o = long.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "the run ended");
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let why = stderr(&o);
    assert!(
        why.contains("ENGINE_UNAVAILABLE") && why.contains("helper"),
        "{why}"
    );
    let o = sh("echo recovered");
    assert_eq!(stdout(&o), "recovered\n", "{}", stderr(&o));
    let now = containers_for(w.env.path());
    assert_eq!(now.len(), 1, "one container: the dead one was removed");
    assert_ne!(now, first);
}

#[test]
fn an_image_for_another_architecture_is_refused_naming_both() {
    if !engine_or_skip("an_image_for_another_architecture_is_refused_naming_both") {
        return;
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/images/otherarch.sh");
    let o = std::process::Command::new(script).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let image = stdout(&o).trim().to_string();
    let env = TestEnv::new();
    let o = env
        .cmd()
        .current_dir(env.path())
        .args(["run", "--image", &image, "--", "/probe", "out", "hi"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let why = stderr(&o);
    assert!(
        why.contains("arm64") && why.contains("amd64") && why.contains("INVALID_SETTING"),
        "{why}"
    );
    assert!(containers_for(env.path()).is_empty(), "no container made");
}

/// The engine going away while 32 runs are going: each ends with a code (none hangs), and once
/// the engine is back the next run works, and what the lost runs left is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_engine_going_away_during_32_runs_fails_each_clearly_and_the_next_works() {
    if !engine_or_skip("the_engine_going_away_during_32_runs_fails_each_clearly") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    let engine = EngineSocket::start(&env.beside("engine").join("engine.sock"));
    let host = format!("unix://{}", engine.path.display());
    env.allow_work();
    let server = env.start_server_env(&[("DOCKER_HOST", &host)]);
    let client = server.client();
    let mark = marker();
    let body = |line: String| json!({"shell": line, "cwd": env.path(), "mode": "sandbox", "image": BUSYBOX});
    let runs: Vec<_> = (0..32)
        .map(|i| {
            let rb = server
                .post(&client, "/v1/runs")
                .json(&body(format!("echo started {i}; sleep 30; : {mark}")));
            tokio::spawn(async move { rb.send().await.unwrap().bytes().await.unwrap() })
        })
        .collect();
    assert!(
        wait_for_processes(&mark, 32, Duration::from_secs(30)),
        "32 runs in the container"
    );
    // Their first line printed is not yet their first line received: wait until the server
    // has every run's, so the engine goes away with each run's output started.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while first_lines_received(&client, &server).await < 32 {
        assert!(
            std::time::Instant::now() < until,
            "every run's first line reached the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.down();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        let mut all = Vec::new();
        for r in runs {
            all.push(decode_stream(&r.await.unwrap()));
        }
        all
    })
    .await
    .expect("every run ends when the engine goes away");
    for (out, _, finished) in ended {
        assert!(
            String::from_utf8_lossy(&out).starts_with("started "),
            "{finished}"
        );
        assert_eq!(finished["run"]["state"], "failed", "{finished}");
        assert_eq!(
            finished["run"]["error"]["code"], "ENGINE_UNAVAILABLE",
            "{finished}"
        );
    }
    engine.up();
    let r = server
        .post(&client, "/v1/runs")
        .json(&body("echo back".into()))
        .send()
        .await
        .unwrap();
    let (out, _, finished) = decode_stream(&r.bytes().await.unwrap());
    assert_eq!(out, b"back\n", "{finished}");
    let left = wait_no_process(&mark, Duration::from_secs(15));
    assert!(
        left.is_empty(),
        "the lost runs' container is removed: {left:?}"
    );
}

/// How many of the server's runs have their first line ("started ...") received.
async fn first_lines_received(c: &reqwest::Client, server: &Server) -> usize {
    let v: serde_json::Value = server
        .get(c, "/v1/runs?limit=200")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut n = 0;
    for r in v["runs"].as_array().unwrap() {
        let path = format!("/v1/runs/{}/output", r["id"].as_str().unwrap());
        let page: serde_json::Value = server
            .get(c, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if page["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("started "))
        {
            n += 1;
        }
    }
    n
}
