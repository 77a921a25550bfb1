//! `stigmer run`: the execution contract and every exit-code rule, both in-process and through
//! a real server.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Run each check twice: in this process (no server) and through a running server.
fn both_ways(check: impl Fn(&TestEnv, &str)) {
    let plain = TestEnv::new();
    check(&plain, "in-process");
    let served = TestEnv::new();
    let _server = served.start_server();
    check(&served, "server");
}

#[test]
fn exit_codes_follow_the_shell_rules() {
    both_ways(|env, how| {
        let code = |args: &[&str]| env.stigmer(args).status.code().unwrap();
        assert_eq!(code(&["run", "--", "true"]), 0, "{how}");
        assert_eq!(code(&["run", "-c", "exit 42"]), 42, "{how}");
        assert_eq!(
            code(&["run", "--timeout", "0.3", "--", "sleep", "10"]),
            124,
            "{how}"
        );
        assert_eq!(code(&["run", "-c", "kill -TERM $$"]), 128 + 15, "{how}");
        assert_eq!(code(&["run", "-c", "kill -KILL $$"]), 128 + 9, "{how}");
        assert_eq!(
            code(&["run", "--", "no-such-program-stigmer"]),
            127,
            "{how}"
        );
        assert_eq!(
            code(&["run", "-c", "no-such-program-stigmer"]),
            127,
            "{how}"
        );
        let plain_file = env.path().join("not-a-program");
        std::fs::write(&plain_file, "data").unwrap();
        assert_eq!(
            code(&["run", "--", plain_file.to_str().unwrap()]),
            126,
            "{how}"
        );
        let garbage = env.path().join("garbage-program");
        std::fs::write(&garbage, [0u8, 1, 2, 3]).unwrap();
        std::fs::set_permissions(
            &garbage,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(
            code(&["run", "--", garbage.to_str().unwrap()]),
            126,
            "{how}"
        );
        // stigmer's own errors: 125 with a one-line reason.
        for args in [
            vec!["run", "--bogus-flag", "--", "true"],
            vec!["run", "--cwd", "/no/such/dir", "--", "true"],
            vec!["run", "--timeout", "abc", "--", "true"],
            vec!["run", "--timeout", "-1", "--", "true"],
            vec!["run", "--env", "NOEQUALS", "--", "true"],
            vec!["run", "--mode", "bogus", "--", "true"],
            vec!["run"],
        ] {
            let o = env.stigmer(&args);
            assert_eq!(o.status.code(), Some(125), "{how} {args:?}: {}", stderr(&o));
            assert!(
                !stderr(&o).trim().is_empty(),
                "{how} {args:?}: no reason given"
            );
        }
        let o = env.stigmer(&["run", "--cwd", "/no/such/dir", "--", "true"]);
        assert!(
            stderr(&o).contains("CWD_NOT_FOUND"),
            "{how}: {}",
            stderr(&o)
        );
        assert_eq!(stderr(&o).lines().count(), 1, "{how}: {}", stderr(&o));
    });
}

#[test]
fn sandbox_mode_never_runs_on_the_host() {
    both_ways(|env, how| {
        let marker = env.path().join(format!("ran-{how}"));
        // Started in the test's folder, a workspace: what is checked is the engine and image.
        let o = env
            .cmd()
            .current_dir(env.path())
            .args(["run", "--mode", "sandbox", "--", "touch"])
            .arg(&marker)
            .output()
            .unwrap();
        // No engine, or the basic image cannot be had here: an error, never a host run.
        assert_eq!(o.status.code(), Some(125), "{how}");
        assert!(
            stderr(&o).contains("ENGINE_UNAVAILABLE") || stderr(&o).contains("IMAGE_NOT_FOUND"),
            "{how}: {}",
            stderr(&o)
        );
        assert!(!marker.exists(), "{how}: the command ran on the host");
        let o = env
            .cmd()
            .current_dir(env.path())
            .env("STIGMER_EXECUTION_MODE", "sandbox")
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .args(["run", "--", "touch"])
            .arg(&marker)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(125), "{how}");
        assert!(!marker.exists(), "{how}: the command ran on the host");
    });
}

#[test]
fn stdout_and_stderr_stay_apart_and_cwd_env_stdin_apply() {
    both_ways(|env, how| {
        let dir = env.path().join("work dir");
        std::fs::create_dir_all(&dir).unwrap();
        let o = env
            .cmd()
            .arg("run")
            .arg("--cwd")
            .arg(&dir)
            .args(["--env", "GREETING=hi there", "-e", "EMPTY=", "-c"])
            .arg("pwd; echo \"$GREETING\"; echo \"[$EMPTY]\"; echo oops >&2; cat; echo \"stdin:$?\"; env | grep -c '^STIGMER_' || true")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{how}: {}", stderr(&o));
        let expected = format!("{}\nhi there\n[]\nstdin:0\n0\n", dir.display());
        assert_eq!(stdout(&o), expected, "{how}");
        assert_eq!(stderr(&o), "oops\n", "{how}");
    });
}

#[test]
fn argv_is_passed_without_a_shell() {
    both_ways(|env, how| {
        let tricky = "it's \"quoted\" $HOME `id` ; | & * \\ \n end";
        let o = env.stigmer(&["run", "--", "printf", "%s", tricky]);
        assert_eq!(o.status.code(), Some(0), "{how}");
        assert_eq!(stdout(&o), tricky, "{how}");
        let o = env.stigmer(&["run", "-c", "printf '%s' \"it's\""]);
        assert_eq!(stdout(&o), "it's", "{how}");
    });
}

#[test]
fn binary_output_arrives_byte_for_byte() {
    both_ways(|env, how| {
        let all_bytes: Vec<u8> = (0..=255u8).cycle().take(256 * 64).collect();
        let file = env.path().join("bytes.bin");
        std::fs::write(&file, &all_bytes).unwrap();
        let o = env
            .cmd()
            .args(["run", "--", "cat"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{how}");
        assert!(o.stdout == all_bytes, "{how}: binary output changed");
        let o = env
            .cmd()
            .args(["run", "-c"])
            .arg(format!("cat '{}' >&2", file.display()))
            .output()
            .unwrap();
        assert!(
            o.stderr == all_bytes && o.stdout.is_empty(),
            "{how}: binary stderr changed"
        );
    });
}

#[test]
fn fifty_megabytes_arrive_intact() {
    both_ways(|env, how| {
        let file = env.path().join("big.bin");
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "head -c 52428800 /dev/urandom > '{}'",
                file.display()
            ))
            .status()
            .unwrap();
        assert!(status.success());
        let expected = std::fs::read(&file).unwrap();
        let o = env
            .cmd()
            .args(["run", "-c"])
            .arg(format!("cat '{0}'; cat '{0}' >&2", file.display()))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{how}");
        assert_eq!(o.stdout.len(), expected.len(), "{how}");
        assert!(o.stdout == expected, "{how}: stdout differs");
        assert!(o.stderr == expected, "{how}: stderr differs");
    });
}

#[test]
fn first_output_arrives_while_the_command_still_runs() {
    both_ways(|env, how| {
        let mut child = env
            .cmd()
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
            "{how}: first line came only after the command ended"
        );
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "second\n", "{how}");
        assert!(child.wait().unwrap().success());
    });
}

#[test]
fn timeout_kills_the_whole_tree() {
    both_ways(|env, how| {
        let m = marker();
        // A tree: a shell, a subshell, background sleeps, one ignoring SIGTERM.
        let script = format!(
            "sleep {m} & (sleep {m} & sleep {m}) & sh -c 'trap \"\" TERM; sleep {m}' & sleep {m}"
        );
        let started = Instant::now();
        let o = env.stigmer(&["run", "--timeout", "1", "-c", &script]);
        assert_eq!(o.status.code(), Some(124), "{how}: {}", stderr(&o));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{how}: took {:?}",
            started.elapsed()
        );
        let left = wait_no_process(&m, Duration::from_secs(3));
        assert!(left.is_empty(), "{how}: processes left behind: {left:?}");
    });
}

#[test]
fn background_children_do_not_keep_a_run_open() {
    both_ways(|env, how| {
        let m = marker();
        let started = Instant::now();
        let o = env.stigmer(&["run", "-c", &format!("sleep {m} & echo done")]);
        assert_eq!(o.status.code(), Some(0), "{how}");
        assert_eq!(stdout(&o), "done\n", "{how}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{how}: run hung {:?}",
            started.elapsed()
        );
        let left = wait_no_process(&m, Duration::from_secs(3));
        assert!(
            left.is_empty(),
            "{how}: background child survived: {left:?}"
        );
    });
}

#[test]
fn interrupting_the_cli_cancels_the_run() {
    both_ways(|env, how| {
        let m = marker();
        let mut child = env
            .cmd()
            .args(["run", "-c", &format!("echo up; sleep {m}")])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "up\n");
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "{how}");
        let left = wait_no_process(&m, Duration::from_secs(3));
        assert!(
            left.is_empty(),
            "{how}: command survived the interrupt: {left:?}"
        );
    });
}

#[test]
fn terminating_the_cli_takes_the_command_with_it() {
    both_ways(|env, how| {
        for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGHUP, 129)] {
            let m = marker();
            let mut child = env
                .cmd()
                .args(["run", "-c", &format!("echo up; sleep {m}")])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
            assert_eq!(
                child.wait().unwrap().code(),
                Some(code),
                "{how} signal {signal}"
            );
            let left = wait_no_process(&m, Duration::from_secs(5));
            assert!(left.is_empty(), "{how}: command outlived the CLI: {left:?}");
        }
    });
}

/// File names on Linux can be any bytes but NUL: an argument that is not UTF-8 reaches the
/// program exactly (it used to be refused by the command line parser, exit 125).
#[test]
fn arguments_that_are_not_utf8_reach_the_program_byte_for_byte() {
    use std::os::unix::ffi::OsStrExt;
    both_ways(|env, how| {
        let arg = std::ffi::OsStr::from_bytes(b"caf\xe9 \xff\\%s");
        let o = env
            .cmd()
            .args(["run", "--", "printf", "%s"])
            .arg(arg)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{how}: {}", stderr(&o));
        assert_eq!(o.stdout, arg.as_bytes(), "{how}");
    });
}
