//! `stigmer config`, settings from flag, environment and file, `stigmer server` lifecycle and
//! `stigmer tools`, through the real binary.

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

#[test]
fn invalid_settings_are_clear_errors_from_every_source() {
    let env = TestEnv::new();
    // Flag.
    let o = env.stigmer(&["run", "--mode", "bogus", "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("--mode") && stderr(&o).contains("`local` or `sandbox`"),
        "{}",
        stderr(&o)
    );
    let o = env.stigmer(&["run", "--image", "Bad Image", "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("--image"), "{}", stderr(&o));
    // Environment.
    for (var, value) in [
        ("STIGMER_EXECUTION_MODE", "bogus"),
        ("STIGMER_EXECUTION_MODE", "auto"),
        ("STIGMER_SANDBOX_TTL", "abc"),
        ("STIGMER_SANDBOX_AUTO_PULL", "maybe"),
        ("STIGMER_SANDBOX_CLEANUP", "2"),
        ("STIGMER_SANDBOX_IMAGE", "UPPER:case"),
    ] {
        let o = env
            .cmd()
            .env(var, value)
            .args(["run", "--", "true"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(125), "{var}={value}");
        assert!(stderr(&o).contains(var), "{var}={value}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("expected"),
            "{var}={value}: {}",
            stderr(&o)
        );
        let o = env
            .cmd()
            .env(var, value)
            .args(["server", "start"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "server start with {var}={value}");
        assert!(
            !env.discovery_file().exists(),
            "a server started with {var}={value}"
        );
    }
    // File.
    std::fs::create_dir_all(env.config_file().parent().unwrap()).unwrap();
    std::fs::write(env.config_file(), "[sandbox]\nttl = \"abc\"\n").unwrap();
    let o = env.stigmer(&["run", "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("config file") && stderr(&o).contains("sandbox.ttl"),
        "{}",
        stderr(&o)
    );
    // The file is the user's: an invalid value is reported, never rewritten or removed.
    assert_eq!(
        std::fs::read_to_string(env.config_file()).unwrap(),
        "[sandbox]\nttl = \"abc\"\n"
    );
    // A flag that wins over the bad file still does not hide it: every source is validated.
    std::fs::write(env.config_file(), "mode = \"bogus\"\n").unwrap();
    let o = env.stigmer(&["run", "--mode", "local", "--", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
}

#[test]
fn a_corrupt_config_file_is_kept_aside_and_defaults_apply() {
    let env = TestEnv::new();
    let dir = env.config_file().parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = "mode = \"sandbox\n[[[ not toml";
    std::fs::write(env.config_file(), garbage).unwrap();
    let o = env.stigmer(&["run", "--", "echo", "ok"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "ok\n");
    assert!(
        stderr(&o).contains("could not be parsed") && stderr(&o).contains(".corrupt-"),
        "{}",
        stderr(&o)
    );
    let kept: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read_to_string(kept[0].path()).unwrap(), garbage);
    let o = env.stigmer(&["config", "get", "mode"]);
    assert_eq!(stdout(&o), "local\n");
}

#[test]
fn config_commands_read_validate_and_write() {
    let env = TestEnv::new();
    let o = env.stigmer(&["config", "path"]);
    assert_eq!(stdout(&o).trim(), env.config_file().to_str().unwrap());
    assert_eq!(stdout(&env.stigmer(&["config", "get", "mode"])), "local\n");
    assert_eq!(
        stdout(&env.stigmer(&["config", "get", "sandbox.image"])),
        "ghcr.io/stigmer/agent-sandbox-basic:latest\n"
    );
    let o = env.stigmer(&["config", "set", "sandbox.ttl", "600"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = std::fs::read_to_string(env.config_file()).unwrap();
    for (k, v) in [
        ("sandbox.ttl", "abc"),
        ("mode", "auto"),
        ("sandbox.image", ""),
        ("nope", "1"),
        ("sandbox.cleanup", "perhaps"),
    ] {
        let o = env.stigmer(&["config", "set", k, v]);
        assert_eq!(o.status.code(), Some(1), "{k}={v}");
        assert!(
            stderr(&o).contains('[') && !stderr(&o).is_empty(),
            "{k}={v}: {}",
            stderr(&o)
        );
        assert_eq!(
            std::fs::read_to_string(env.config_file()).unwrap(),
            before,
            "{k}={v} changed the file"
        );
    }
    assert!(env
        .stigmer(&["config", "set", "mode", "sandbox"])
        .status
        .success());
    assert!(env
        .stigmer(&["config", "set", "STIGMER_SANDBOX_IMAGE", "my-sandbox:v1"])
        .status
        .success());
    let o = env.stigmer(&["config", "list", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let item = |k: &str| {
        v["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == k)
            .unwrap()
            .clone()
    };
    assert_eq!(item("mode")["value"], "sandbox");
    assert_eq!(item("mode")["source"], "file");
    assert_eq!(item("sandbox.ttl")["value"], "600");
    assert_eq!(item("sandbox.image")["value"], "my-sandbox:v1");
    assert_eq!(item("sandbox.cleanup")["source"], "default");
    // Environment beats the file.
    let o = env
        .cmd()
        .env("STIGMER_EXECUTION_MODE", "local")
        .args(["config", "list", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["settings"][0]["value"], "local");
    assert_eq!(v["settings"][0]["source"], "env");
    assert!(env.stigmer(&["config", "unset", "mode"]).status.success());
    assert_eq!(stdout(&env.stigmer(&["config", "get", "mode"])), "local\n");
}

#[test]
fn server_lifecycle_start_status_second_start_stop() {
    let env = TestEnv::new();
    let o = env.stigmer(&["server", "status", "--json"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["running"],
        false
    );

    let o = env.stigmer(&["server", "start"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("started at http://127.0.0.1:"),
        "{}",
        stdout(&o)
    );
    let d: Value =
        serde_json::from_str(&std::fs::read_to_string(env.discovery_file()).unwrap()).unwrap();
    let pid = d["pid"].as_u64().unwrap() as u32;
    assert_eq!(d["mode"], "local");

    // A second start reports the running one and starts nothing.
    let o = env.stigmer(&["server", "start"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("already running") && stdout(&o).contains(&pid.to_string()),
        "{}",
        stdout(&o)
    );
    let o = env.stigmer(&["server", "start", "--foreground"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("SERVER_ALREADY_RUNNING"),
        "{}",
        stderr(&o)
    );

    let o = env.stigmer(&["server", "status", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (s["running"].clone(), s["pid"].as_u64()),
        (Value::Bool(true), Some(pid as u64))
    );

    // The token file is the user's alone.
    let mode = std::fs::metadata(env.home().join("data/token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077,
        0
    );

    // Runs go through it and show in its history.
    let o = env.stigmer(&["run", "--", "echo", "via server"]);
    assert_eq!(stdout(&o), "via server\n");
    let o = env.stigmer(&["server", "logs", "-n", "200"]);
    assert!(stdout(&o).contains("run finished"), "{}", stdout(&o));

    let o = env.stigmer(&["server", "stop"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!env.discovery_file().exists());
    assert_eq!(env.stigmer(&["server", "status"]).status.code(), Some(3));
    let o = env.stigmer(&["server", "stop"]);
    assert!(o.status.success(), "stopping a stopped server is fine");
}

/// The app is killed and opened again at once. Its server is about to stop with it: the new
/// start must not attach to that one, and the server it starts waits for it to let go.
#[test]
fn a_server_whose_app_is_gone_takes_no_new_client() {
    let env = TestEnv::new();
    let mut app = std::process::Command::new("sh");
    for (k, v) in env.cmd().get_envs() {
        match v {
            Some(v) => app.env(k, v),
            None => app.env_remove(k),
        };
    }
    let mut app = app
        .arg("-c")
        .arg(format!(
            "'{BIN}' server start --foreground --exit-with-parent --port 0 >/dev/null 2>&1 & wait"
        ))
        .spawn()
        .unwrap();
    let old = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(env.discovery_file())
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .filter(|d| d["lifeline"] == app.id())
    })
    .expect("the app's server became ready");
    let old_pid = old["pid"].as_u64().unwrap();
    app.kill().unwrap();
    app.wait().unwrap();

    let o = env.stigmer(&["server", "start"]);
    assert!(
        o.status.success() && stdout(&o).contains("started at"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        std::fs::read_to_string(format!("/proc/{old_pid}/stat"))
            .map_or(true, |st| st.contains(") Z")),
        "the old server is gone before the new one serves"
    );
    std::thread::sleep(Duration::from_secs(1));
    let s: Value =
        serde_json::from_slice(&env.stigmer(&["server", "status", "--json"]).stdout).unwrap();
    assert_eq!(s["running"], true, "{s}");
    assert_ne!(s["pid"].as_u64(), Some(old_pid));
    assert_eq!(s["lifeline"], Value::Null, "{s}");
    assert!(env.stigmer(&["server", "stop"]).status.success());
}

#[test]
fn a_stale_discovery_file_is_cleaned() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.home().join("data")).unwrap();
    // A pid that cannot be alive: a finished child of ours, reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!(
        r#"{{"pid":{dead},"url":"http://127.0.0.1:1","port":1,"version":"0.0.0","mode":"local","image":"x","started_at":0,"log_dir":"/tmp"}}"#
    );
    std::fs::write(env.discovery_file(), &stale).unwrap();
    assert_eq!(env.stigmer(&["server", "status"]).status.code(), Some(3));
    assert!(!env.discovery_file().exists(), "stale discovery file kept");
    // A run does not try the dead server: it runs in-process.
    std::fs::write(env.discovery_file(), &stale).unwrap();
    let o = env.stigmer(&["run", "--", "echo", "fine"]);
    assert_eq!(stdout(&o), "fine\n", "{}", stderr(&o));
    // And a server starts fine over it.
    let o = env.stigmer(&["server", "start"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(env.stigmer(&["server", "stop"]).status.success());
}

#[test]
fn an_unreachable_server_is_a_125_not_a_silent_local_run() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.home().join("data")).unwrap();
    // A server that holds its lock but does not answer (hung, or its port taken over).
    let lock = std::fs::File::create(env.home().join("data/server.lock")).unwrap();
    lock.lock().unwrap();
    let mut impostor = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        env.discovery_file(),
        format!(
            r#"{{"pid":{},"url":"http://127.0.0.1:{port}","port":{port},"version":"0.0.0","mode":"local","image":"x","started_at":0,"log_dir":"/tmp"}}"#,
            impostor.id()
        ),
    )
    .unwrap();
    std::fs::write(env.home().join("data/token"), "t".repeat(64)).unwrap();
    let marker = env.path().join("ran");
    let o = env
        .cmd()
        .args(["run", "--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("SERVER_UNAVAILABLE"), "{}", stderr(&o));
    assert!(!marker.exists());
    // --no-server runs here on purpose.
    let o = env
        .cmd()
        .args(["run", "--no-server", "--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(marker.exists());
    impostor.kill().unwrap();
    impostor.wait().unwrap();
    drop(lock);
}

#[test]
fn tools_lists_the_catalog_with_local_and_sandbox_columns() {
    let env = TestEnv::new();
    let o = env.stigmer(&["tools", "--json", "--refresh"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let tools = v["tools"].as_array().unwrap();
    assert!(tools.len() >= 21);
    let get = |n: &str| {
        tools
            .iter()
            .find(|t| t["name"] == n)
            .unwrap_or_else(|| panic!("{n} missing"))
            .clone()
    };
    let bash = get("bash");
    assert_eq!(bash["found"], true);
    assert!(bash["path"].as_str().unwrap().ends_with("/bash"));
    assert!(bash["version"]
        .as_str()
        .unwrap()
        .starts_with(|c: char| c.is_ascii_digit()));
    assert_eq!(
        (
            get("python3")["in_basic"].clone(),
            get("terraform")["in_basic"].clone()
        ),
        (Value::Bool(true), Value::Bool(false))
    );
    assert_eq!(get("terraform")["in_full"], true);
    // A tool that is surely absent here, with an empty PATH.
    let o = env
        .cmd()
        .env("PATH", "/nonexistent")
        .args(["tools", "--json", "--refresh"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["found"] == false && t["version"].is_null()));
    // The human table says what to do.
    let o = env.stigmer(&["tools"]);
    assert!(
        stdout(&o).contains("TOOL") && stdout(&o).contains("BASIC"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn help_is_there_for_every_command() {
    let env = TestEnv::new();
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["server", "--help"],
        vec!["server", "start", "--help"],
        vec!["config", "--help"],
        vec!["tools", "--help"],
    ] {
        let o = env.stigmer(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(stdout(&o).contains("Usage"), "{args:?}");
    }
    let o = env.stigmer(&["--version"]);
    assert!(stdout(&o).contains(env!("CARGO_PKG_VERSION")));
    let o = env.stigmer(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

/// The first `Some` of `f`, polled until `limit`.
fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
