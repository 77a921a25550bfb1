//! Sandbox mode mounts only the workspaces the user allowed, never a folder whose change would
//! reach outside the sandbox, whatever folder the request names: checked through the CLI (in
//! process and through the server) and the HTTP API against the real engine, with a temporary
//! HOME, a folder on PATH and a test engine socket of the test's own.

mod common;

use std::path::{Path, PathBuf};

use common::engine::*;
use common::*;
use serde_json::{json, Value};

/// A sandbox-mode setup with a HOME, a folder on PATH and an engine socket of its own.
struct Setup {
    env: TestEnv,
    home: PathBuf,
    on_path: PathBuf,
    engine: EngineSocket,
    vars: Vec<(String, String)>,
}

impl Setup {
    fn new() -> Setup {
        let env = TestEnv::new();
        let home = env.beside("user-home");
        for d in [".ssh", ".local/bin", ".config/autostart", "code"] {
            std::fs::create_dir_all(home.join(d)).unwrap();
        }
        std::fs::write(home.join(".ssh/id_rsa"), "secret key").unwrap();
        let on_path = env.beside("bin-on-path");
        let engine = EngineSocket::start(&env.beside("engine").join("engine.sock"));
        let path = format!(
            "{}:{}",
            on_path.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let vars = vec![
            ("HOME".to_string(), home.display().to_string()),
            ("PATH".to_string(), path),
            (
                "DOCKER_HOST".to_string(),
                format!("unix://{}", engine.path.display()),
            ),
            ("STIGMER_EXECUTION_MODE".to_string(), "sandbox".to_string()),
            ("STIGMER_SANDBOX_IMAGE".to_string(), BUSYBOX.to_string()),
        ];
        Setup {
            env,
            home,
            on_path,
            engine,
            vars,
        }
    }

    fn cmd(&self) -> std::process::Command {
        let mut c = self.env.cmd();
        c.envs(self.vars.iter().map(|(k, v)| (k, v)))
            .current_dir(self.env.path());
        c
    }

    fn server(&self) -> Server {
        let vars: Vec<(&str, &str)> = self
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.env.start_server_env(&vars)
    }

    /// Folders that must be refused, whatever the request: (what, folder).
    fn refused_folders(&self) -> Vec<(&'static str, PathBuf)> {
        let uid = unsafe { libc::getuid() };
        let link = self.env.path().join("link-to-ssh");
        if !link.exists() {
            std::os::unix::fs::symlink(self.home.join(".ssh"), &link).unwrap();
        }
        let sub = self.engine.path.parent().unwrap().join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        vec![
            ("/var/run", PathBuf::from("/var/run")),
            ("/run/user/UID", PathBuf::from(format!("/run/user/{uid}"))),
            (
                "a folder holding an engine socket",
                self.engine.path.parent().unwrap().to_path_buf(),
            ),
            ("inside a folder holding an engine socket", sub),
            ("~/.ssh", self.home.join(".ssh")),
            ("~/.local/bin", self.home.join(".local/bin")),
            ("~/.config/autostart", self.home.join(".config/autostart")),
            ("a folder on PATH", self.on_path.clone()),
            ("/etc", PathBuf::from("/etc")),
            ("the home folder", self.home.clone()),
            ("/", PathBuf::from("/")),
            ("a link in an allowed workspace to ~/.ssh", link),
            (
                "a path with .. out of an allowed workspace",
                self.env.path().join("../user-home/.ssh"),
            ),
        ]
    }
}

const RAN: &str = "stigmer-workspace-test-ran";

fn assert_refused_output(o: &std::process::Output, what: &str) {
    assert_eq!(o.status.code(), Some(125), "{what}: {}", stderr(o));
    assert!(
        stderr(o).contains("[WORKSPACE_NOT_ALLOWED]"),
        "{what}: {}",
        stderr(o)
    );
}

fn assert_nothing_ran(dir: &Path, what: &str) {
    let marker = dir.join(RAN);
    let ran = marker.exists();
    let _ = std::fs::remove_file(&marker);
    assert!(
        !ran,
        "{what}: the command ran with {} mounted",
        dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_workspaces_are_mounted_through_every_entry_point() {
    if !engine_or_skip("only_allowed_workspaces_are_mounted_through_every_entry_point") {
        return;
    }
    ensure_busybox();
    let s = Setup::new();
    // The work folder is allowed: the link and `..` cases start inside it.
    let o = s
        .cmd()
        .args(["workspaces", "add"])
        .arg(s.env.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let folders = s.refused_folders();

    // In process: the CLI started in the work folder, asked to run elsewhere.
    for (what, dir) in &folders {
        if !dir.exists() {
            continue;
        }
        let o = s
            .cmd()
            .args(["run", "--no-server", "--cwd"])
            .arg(dir)
            .args(["--", "touch", RAN])
            .output()
            .unwrap();
        assert_refused_output(&o, what);
        assert_nothing_ran(dir, what);
    }

    let server = s.server();
    let client = server.client();
    // Through the server, with the CLI.
    for (what, dir) in &folders {
        if !dir.exists() {
            continue;
        }
        let o = s
            .cmd()
            .args(["run", "--cwd"])
            .arg(dir)
            .args(["--", "touch", RAN])
            .output()
            .unwrap();
        assert_refused_output(&o, &format!("{what} (server)"));
        assert_nothing_ran(dir, what);
    }
    // Through the HTTP API, also for folders that do not exist here.
    for (what, dir) in &folders {
        let r = server
            .post(&client, "/v1/runs")
            .json(&json!({"argv": ["touch", RAN], "cwd": dir, "client": "api-test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "WORKSPACE_NOT_ALLOWED", "{what}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Nothing was run"),
            "{what}: {body}"
        );
        assert_nothing_ran(dir, what);
    }
    // Nothing was registered, no container was made.
    let runs: Value = server
        .get(&client, "/v1/runs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runs["runs"], json!([]), "refused requests became runs");
    let sandbox: Value = server
        .get(&client, "/v1/sandbox")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sandbox["containers"], json!([]), "a container was made");
    // The refusals are listed for the window, with who asked.
    let ws: Value = server
        .get(&client, "/v1/workspaces")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refused = ws["refused"].as_array().unwrap();
    let ssh = std::fs::canonicalize(s.home.join(".ssh")).unwrap();
    assert!(
        refused.iter().any(|r| r["folder"] == json!(ssh)
            && r["client"] == "api-test"
            && r["can_allow"] == false),
        "{ws}"
    );

    // A workspace cannot be one of those folders either, `..` or not.
    for (what, dir) in &folders {
        if !dir.exists() {
            continue;
        }
        let o = s
            .cmd()
            .args(["workspaces", "add"])
            .arg(dir)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("WORKSPACE_NOT_ALLOWED"),
            "{what}: {}",
            stderr(&o)
        );
    }
    let listed = s
        .cmd()
        .args(["workspaces", "list", "--json"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["workspaces"], json!([s.env.path()]), "{listed}");
    drop(server);
    drop(s.engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_folder_works_at_once_and_removing_it_refuses_the_next_run() {
    if !engine_or_skip("an_allowed_folder_works_at_once_and_removing_it_refuses_the_next_run") {
        return;
    }
    ensure_busybox();
    let s = Setup::new();
    let project = s.env.path().join("proj");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    std::fs::create_dir_all(project.join("src")).unwrap();
    let server = s.server();
    let client = server.client();
    let run = |cwd: PathBuf| {
        server
            .post(&client, "/v1/runs")
            .json(&json!({"shell": "pwd; touch made-here; find / -type s 2>/dev/null; echo end", "cwd": cwd}))
            .send()
    };
    let refused = run(project.join("src")).await.unwrap();
    assert_eq!(refused.status(), 403);

    // Started in the project, the CLI may run there: the session's own folder.
    let o = s
        .cmd()
        .current_dir(project.join("src"))
        .args(["run", "--", "pwd"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{}\n", project.join("src").display()));
    assert_eq!(
        containers_for(&project).len(),
        1,
        "the project root is mounted"
    );

    // Added while the server runs: the next API run works, without a restart.
    let o = s
        .cmd()
        .args(["workspaces", "add"])
        .arg(s.env.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (out, _, finished) = decode_stream(
        &run(project.join("src"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("{}\nend\n", project.join("src").display()),
        "a socket is visible in the container, or the run failed: {finished}"
    );
    assert!(project.join("src/made-here").exists());
    // Nothing of the host but the workspace: not the engine socket's folder, not the home.
    let (out, _, _) = decode_stream(
        &server
            .post(&client, "/v1/runs")
            .json(&json!({"shell": format!("ls {} {} 2>&1 >/dev/null | wc -l", s.engine.path.parent().unwrap().display(), s.home.display()), "cwd": project}))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    );
    assert_eq!(String::from_utf8_lossy(&out).trim(), "2");

    // A folder swapped for a link between two runs does not carry the permission along.
    let swap = s.env.path().join("swap");
    std::fs::create_dir_all(&swap).unwrap();
    let (out, _, _) = decode_stream(&run(swap.clone()).await.unwrap().bytes().await.unwrap());
    assert!(String::from_utf8_lossy(&out).starts_with(&swap.display().to_string()));
    std::fs::rename(&swap, s.env.path().join("swapped-away")).unwrap();
    std::os::unix::fs::symlink(s.home.join(".ssh"), &swap).unwrap();
    let r = run(swap.clone()).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(containers_for(&s.home.join(".ssh")).is_empty());

    let o = s
        .cmd()
        .args(["workspaces", "remove"])
        .arg(s.env.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r = run(project.join("src")).await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stigmer workspaces add"),
        "{body}"
    );
    // Runs that name no folder use the scratch folder, always allowed.
    let (out, _, finished) = decode_stream(
        &server
            .post(&client, "/v1/runs")
            .json(&json!({"argv": ["pwd"]}))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    );
    assert!(
        String::from_utf8_lossy(&out).contains("sandbox-workspace"),
        "{finished}"
    );
}
