//! Helpers of the hostile-agent tests (`sandbox_hostile.rs`, `sandbox_hostrun.rs`): a sandbox
//! server, a run through the API, a folder of secrets, and the test pause's swap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::engine::*;
use super::*;

pub const SECRET: &str = "the-secret-key-outside-every-workspace";

pub fn sandbox_server(env: &TestEnv, extra: &[(&str, &str)]) -> Server {
    let mut vars = vec![
        ("STIGMER_EXECUTION_MODE", "sandbox"),
        ("STIGMER_SANDBOX_IMAGE", BUSYBOX),
    ];
    vars.extend_from_slice(extra);
    env.start_server_env(&vars)
}

/// Run `shell` in `cwd` for `client` through the API: (stdout, stderr, finished line).
pub async fn run(
    server: &Server,
    client: &reqwest::Client,
    agent: &str,
    cwd: &Path,
    shell: &str,
) -> (String, String, Value) {
    let body = server
        .post(client, "/v1/runs")
        .json(&json!({"shell": shell, "cwd": cwd, "client": agent}))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    if !body.starts_with(b"{\"type\"") {
        // Refused before it started: the error body.
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        return (String::new(), String::new(), v);
    }
    let (out, err, fin) = decode_stream(&body);
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        fin,
    )
}

/// No container of the engine has `folder` mounted.
pub fn assert_never_mounted(folder: &Path) {
    for id in stigmer_containers() {
        let v = inspect(&id);
        for m in v["Mounts"].as_array().into_iter().flatten() {
            assert_ne!(
                m["Source"].as_str(),
                Some(folder.to_str().unwrap()),
                "container {id} has {} mounted",
                folder.display()
            );
        }
    }
}

/// Once the server is in its test pause between the check and the mount (its log says so),
/// move `folder` aside and put a link to `target` in its place.
pub fn swap_in_pause(env: &TestEnv, folder: &Path, target: &Path) -> std::thread::JoinHandle<()> {
    let (folder, target, logs) = (
        folder.to_path_buf(),
        target.to_path_buf(),
        env.home().join("logs"),
    );
    std::thread::spawn(move || {
        let paused = || {
            std::fs::read_dir(&logs)
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| {
                    std::fs::read_to_string(f.path())
                        .is_ok_and(|t| t.contains("test pause before the mount"))
                })
        };
        assert!(
            wait_until(Duration::from_secs(60), paused),
            "the server never paused before the mount"
        );
        let aside = folder.with_extension("real");
        std::fs::rename(&folder, aside).unwrap();
        std::os::unix::fs::symlink(&target, &folder).unwrap();
    })
}

pub fn secret_folder(env: &TestEnv) -> PathBuf {
    let outside = env.beside("outside");
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
    outside
}
