//! What a run changed, through a real server: edits, removals of whole folders, renames, mode
//! changes, links, a file name that is not UTF-8, a binary file; what each file was is kept
//! (read back from the store); a link swapped in is recorded as a link, never read through;
//! the home folder is never recorded; `stigmer runs changes` prints the list.
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::path::Path;

use common::changes::{changes, run_in};
use common::*;
use serde_json::Value;

fn listed(v: &Value) -> Vec<(String, String)> {
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["change"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A kept content, from the store in the test's STIGMER_HOME.
fn kept(env: &TestEnv, hash: &str) -> Vec<u8> {
    let path = env
        .home()
        .join("data/changes/objects")
        .join(&hash[..2])
        .join(&hash[2..]);
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut data)
        .unwrap();
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_s_changes_are_listed_with_what_each_file_was() {
    let env = TestEnv::new();
    let proj = env.path().join("proj");
    std::fs::create_dir_all(proj.join("build/deep")).unwrap();
    std::fs::create_dir_all(proj.join("node_modules/pkg")).unwrap();
    for (p, text) in [
        ("a.txt", &b"x marks\n"[..]),
        ("keep.txt", b"kept\n"),
        ("old-name.txt", b"moving\n"),
        ("run.sh", b"echo\n"),
        ("build/out.o", b"object"),
        ("build/deep/more.o", b"more"),
        ("image.bin", &[0u8, 159, 146, 150, 255][..]),
        ("node_modules/pkg/index.js", b"1\n"),
    ] {
        std::fs::write(proj.join(p), text).unwrap();
    }
    let ok = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(&proj)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let server = env.start_server();
    let c = server.client();
    // From a sub-folder: the project (the repository) is what is recorded.
    std::fs::create_dir_all(proj.join("src")).unwrap();
    let (id, finished) = run_in(
        &server,
        &c,
        &proj.join("src"),
        "cd .. && sed -i s/x/y/ a.txt && rm -r build && mv old-name.txt new-name.txt && \
         chmod +x run.sh && printf '\\001\\002' > image.bin && ln -s /etc/hostname link && \
         printf 'odd' > \"$(printf 'caf\\351.txt')\" && echo 2 > node_modules/pkg/new.js",
    )
    .await;
    assert_eq!(finished["run"]["outcome"]["exit_code"], 0, "{finished}");
    let v = changes(&server, &c, &id).await;
    assert_eq!(v["recorded"], true, "{v}");
    assert_eq!(v["folder"], proj.display().to_string());
    let odd = String::from_utf8_lossy(b"caf\xe9.txt").into_owned();
    assert_eq!(
        listed(&v),
        [
            ("a.txt".into(), "modified".into()),
            ("build".into(), "removed".into()),
            ("build/deep".into(), "removed".into()),
            ("build/deep/more.o".into(), "removed".into()),
            ("build/out.o".into(), "removed".into()),
            (odd, "added".into()),
            ("image.bin".into(), "modified".into()),
            ("link".into(), "added".into()),
            ("new-name.txt".into(), "renamed".into()),
            ("run.sh".into(), "mode".into()),
        ],
        "{v:#}"
    );
    let files = v["files"].as_array().unwrap();
    let file = |p: &str| files.iter().find(|f| f["path"] == p).unwrap();
    // What each file was is kept: the edit, the binary, a file of a removed folder.
    assert_eq!(
        kept(&env, file("a.txt")["before"]["content"].as_str().unwrap()),
        b"x marks\n"
    );
    assert_eq!(
        kept(&env, file("a.txt")["after"]["content"].as_str().unwrap()),
        b"y marks\n"
    );
    assert_eq!(
        kept(
            &env,
            file("image.bin")["before"]["content"].as_str().unwrap()
        ),
        [0u8, 159, 146, 150, 255]
    );
    assert_eq!(
        kept(
            &env,
            file("build/out.o")["before"]["content"].as_str().unwrap()
        ),
        b"object"
    );
    assert_eq!(file("new-name.txt")["from"], "old-name.txt");
    assert_eq!(file("run.sh")["after"]["mode"], 0o755);
    // The link is a link: its target, never what it points at.
    assert_eq!(file("link")["after"]["kind"], "link");
    assert_eq!(file("link")["after"]["target"], "/etc/hostname");
    assert!(file("link")["after"].get("content").is_none());
    let raw = files.iter().find(|f| f["path_bytes"].is_string()).unwrap();
    assert_eq!(raw["path_bytes"], "Y2Fm6S50eHQ=");
    // The agent's one line.
    let line = finished["run"]["outcome"]["changed"].as_str().unwrap();
    assert!(
        // The removed folder is one item, with its files counted.
        line.starts_with("changed 8 files: a.txt (modified), removed build/ (2 files),"),
        "{line}"
    );

    // The CLI prints it.
    let o = env.stigmer(&["runs", "changes", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("renamed   old-name.txt -> new-name.txt"),
        "{out}"
    );
    assert!(out.contains("removed   build/out.o"), "{out}");

    // A run that changes nothing says so; the next run's changes are its own.
    let (id, finished) = run_in(&server, &c, &proj, "cat a.txt >/dev/null").await;
    assert!(
        finished["run"]["outcome"].get("changed").is_none(),
        "{finished}"
    );
    assert_eq!(listed(&changes(&server, &c, &id).await), []);

    // A run in the home folder is never recorded, and says why.
    let home = std::env::var("HOME").unwrap();
    let (id, _) = run_in(&server, &c, Path::new(&home), "true").await;
    let v = changes(&server, &c, &id).await;
    assert_eq!(v["recorded"], false, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("home folder"), "{v}");
    // An unknown run is a clear error.
    let resp = server
        .get(&c, "/v1/runs/run_0000000000000000/changes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}
