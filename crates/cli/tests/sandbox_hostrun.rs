//! A hostile agent against the files the host runs by itself (`.git/config`, hooks, editor
//! tasks...) inside a sandbox's workspace, on the real engine: they stay read-only, git still
//! works, and a guarded folder swapped for a link is never mounted. Each test fails with its
//! defence removed.

mod common;

use std::path::Path;

use common::engine::*;
use common::hostile::*;
use common::*;

/// `git` on the host, in `dir`: the user's own repository, made outside the sandbox.
fn host_git(dir: &Path, args: &[&str]) -> std::process::Output {
    let o = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
    o
}

/// Files that programs on the host run or obey stay read-only inside a writable workspace:
/// written, created in, renamed, removed, replaced through a link, the `.git` folder moved
/// aside; at the root and in a nested repository. Ordinary files and folders are written as
/// ever. One the command creates where none was is reported, and read-only from the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_run_files_stay_read_only_inside_the_workspace() {
    if !engine_or_skip("host_run_files_stay_read_only_inside_the_workspace") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    env.allow_work();
    let w = env.path().to_path_buf();
    host_git(&w, &["init", "-q"]);
    std::fs::create_dir_all(w.join("sub")).unwrap();
    host_git(&w.join("sub"), &["init", "-q"]);
    std::fs::create_dir_all(w.join(".vscode")).unwrap();
    std::fs::write(w.join(".vscode/settings.json"), "{}").unwrap();
    std::fs::write(w.join(".envrc"), "export A=1\n").unwrap();
    let config_before = std::fs::read(w.join(".git/config")).unwrap();
    let planted = env.beside("planted").join("ran");
    let server = sandbox_server(&env, &[]);
    let client = server.client();
    let attacks = [
        (
            "fsmonitor",
            format!(
                "printf '[core]\\n\\tfsmonitor = touch {}\\n' >> .git/config",
                planted.display()
            ),
        ),
        ("config replaced", "echo x > c && mv c .git/config".into()),
        ("config removed", "rm -f .git/config".into()),
        (
            "hook written",
            "printf '#!/bin/sh\\ntouch x\\n' > .git/hooks/pre-commit".into(),
        ),
        ("hooks renamed", "mv .git/hooks .git/h2".into()),
        ("hooks through a link", "ln -s /tmp .git/hooks/link".into()),
        ("info written", "echo x >> .git/info/exclude".into()),
        ("git moved aside", "mv .git moved-git".into()),
        ("vscode task", "echo '{}' > .vscode/tasks.json".into()),
        ("vscode renamed", "mv .vscode v2".into()),
        ("envrc written", "echo 'curl evil' >> .envrc".into()),
        ("envrc removed", "rm -f .envrc".into()),
        ("nested config", "echo x >> sub/.git/config".into()),
        (
            "nested hook",
            "echo x > sub/.git/hooks/post-checkout".into(),
        ),
    ];
    for (what, attack) in &attacks {
        let shell = format!("{{ {attack}; }} 2>/dev/null && echo DONE");
        let (out, _, fin) = run(&server, &client, "agent", &w, &shell).await;
        assert_eq!(out, "", "{what}: the command succeeded: {fin}");
    }
    assert_eq!(std::fs::read(w.join(".git/config")).unwrap(), config_before);
    assert!(!w.join(".git/hooks/pre-commit").exists());
    assert!(!w.join(".vscode/tasks.json").exists());
    // The user's own git, on the host, runs nothing planted.
    host_git(&w, &["status", "--short"]);
    assert!(!planted.exists(), "the host's git ran a planted command");

    // Normal work goes on: files, folders, the index and objects of the repository.
    let (out, _, fin) = run(
        &server,
        &client,
        "agent",
        &w,
        "echo hi > a.txt && mkdir -p node_modules/x && touch .git/index.test && rm .git/index.test && echo ok",
    )
    .await;
    assert_eq!(out, "ok\n", "{fin}");

    // A host-run file where there was none: reported, and read-only from the next run on.
    let (_, _, fin) = run(&server, &client, "agent", &w, "mkdir .claude && echo made").await;
    let made = fin["run"]["outcome"]["host_files"].to_string();
    assert!(made.contains(".claude"), "not reported: {fin}");
    let (out, _, fin) = run(
        &server,
        &client,
        "agent",
        &w,
        "{ echo '{}' > .claude/settings.json; } 2>/dev/null && echo DONE",
    )
    .await;
    assert_eq!(out, "", "the new folder stayed writable: {fin}");

    // A repository made deep down: reported when the run ends, guarded from the next run on.
    let (_, _, fin) = run(
        &server,
        &client,
        "agent",
        &w,
        "mkdir -p deep/a/b/.git/hooks && echo '[core]' > deep/a/b/.git/config && echo made",
    )
    .await;
    let made = fin["run"]["outcome"]["host_files"].to_string();
    assert!(made.contains("deep/a/b/.git"), "not reported: {fin}");
    let (out, _, fin) = run(
        &server,
        &client,
        "agent",
        &w,
        "{ echo x >> deep/a/b/.git/config; } 2>/dev/null && echo DONE",
    )
    .await;
    assert_eq!(
        out, "",
        "the new repository's config stayed writable: {fin}"
    );
    // `commondir` would send the host's git to a configuration the command wrote.
    let (_, _, fin) = run(
        &server,
        &client,
        "agent",
        &w,
        "echo ../.x > .git/commondir && echo made",
    )
    .await;
    assert!(
        fin["run"]["outcome"]["host_files"]
            .to_string()
            .contains(".git/commondir"),
        "{fin}"
    );
    let (out, _, fin) = run(
        &server,
        &client,
        "agent",
        &w,
        "{ echo ../.y > .git/commondir; } 2>/dev/null && echo DONE",
    )
    .await;
    assert_eq!(out, "", "commondir stayed writable: {fin}");
    let (_, _, fin) = run(
        &server,
        &client,
        "agent",
        &w,
        "rm -f .git/commondir 2>/dev/null; echo tried",
    )
    .await;
    assert!(fin["run"]["outcome"]["exit_code"] == 0, "{fin}");
    // One made with no config yet: the config written later is reported too.
    let (_, _, fin) = run(
        &server,
        &client,
        "agent",
        &w,
        "mkdir -p two/.git && echo made",
    )
    .await;
    assert!(
        fin["run"]["outcome"]["host_files"]
            .to_string()
            .contains("two/.git"),
        "{fin}"
    );
    let (_, _, fin) = run(
        &server,
        &client,
        "agent",
        &w,
        "printf '[core]\\n\\tfsmonitor = x\\n' > two/.git/config && echo made",
    )
    .await;
    assert!(
        fin["run"]["outcome"]["host_files"]
            .to_string()
            .contains("two/.git/config"),
        "{fin}"
    );
}

/// With git's configuration read-only, an agent still commits, branches and stashes (its
/// identity comes from the environment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_still_works_in_a_guarded_repository() {
    if !engine_or_skip("git_still_works_in_a_guarded_repository") {
        return;
    }
    let image = basic_image();
    let env = TestEnv::new();
    env.allow_work();
    let w = env.path().to_path_buf();
    host_git(&w, &["init", "-q"]);
    std::fs::write(w.join("a.txt"), "one\n").unwrap();
    let server = env.start_server_env(&[
        ("STIGMER_EXECUTION_MODE", "sandbox"),
        ("STIGMER_SANDBOX_IMAGE", &image),
    ]);
    let client = server.client();
    let (out, err, fin) = run(
        &server,
        &client,
        "agent",
        &w,
        "git add a.txt && git commit -qm first && git checkout -qb feature && echo two >> a.txt \
         && git stash -q && git stash pop -q && git commit -qam second && git log --format=%s",
    )
    .await;
    assert_eq!(out, "second\nfirst\n", "{err} {fin}");
    let log = host_git(&w, &["log", "--format=%s"]);
    assert_eq!(String::from_utf8_lossy(&log.stdout), "second\nfirst\n");
}

/// A guarded file swapped for a link between the check and the mount (a command of another
/// container of the workspace could do it): the proof refuses the container, nothing of the
/// link's target is mounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_folder_swapped_for_a_link_is_never_mounted() {
    if !engine_or_skip("a_guarded_folder_swapped_for_a_link_is_never_mounted") {
        return;
    }
    ensure_busybox();
    let env = TestEnv::new();
    env.allow_work();
    host_git(env.path(), &["init", "-q"]);
    let outside = secret_folder(&env);
    let server = sandbox_server(&env, &[("STIGMER_TEST_MOUNT_PAUSE_MS", "1500")]);
    let client = server.client();
    let hooks = env.path().join(".git/hooks");
    let swap = swap_in_pause(&env, &hooks, &outside);
    let (out, err, fin) = run(
        &server,
        &client,
        "agent",
        env.path(),
        "cat .git/hooks/secret.txt",
    )
    .await;
    swap.join().unwrap();
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "{out} {err}"
    );
    assert_eq!(fin["run"]["error"]["code"], "WORKSPACE_CHANGED", "{fin}");
    assert_never_mounted(&outside);
}
