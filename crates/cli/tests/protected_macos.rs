//! The protected tier on macOS (Seatbelt through `sandbox-exec`), run by the workflow's macOS
//! job: a home folder of the test's own with fake secrets, an allowed project. Each attack is
//! first shown to work in local mode, then refused in protected mode; normal work passes.
#![cfg(target_os = "macos")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{stderr, stdout, BIN};

struct Home(PathBuf);

impl Home {
    fn new(test: &str) -> Home {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("protected-macos-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in [".ssh", ".aws", "proj", ".stigmer"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join(".ssh/id_ed25519"), "FAKE-SSH-KEY\n").unwrap();
        std::fs::write(dir.join(".aws/credentials"), "FAKE-AWS-KEY\n").unwrap();
        std::fs::write(dir.join(".bashrc"), "# the user's own\n").unwrap();
        let h = Home(std::fs::canonicalize(&dir).unwrap());
        let o = h.stigmer(&["workspaces", "add", h.proj().to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        h
    }

    fn proj(&self) -> PathBuf {
        self.0.join("proj")
    }

    fn stigmer(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("HOME", &self.0)
            .env("STIGMER_HOME", self.0.join(".stigmer"))
            .current_dir(self.proj())
            .output()
            .unwrap()
    }

    fn run(&self, mode: &str, shell: &str) -> Output {
        self.stigmer(&["run", "--mode", mode, "-c", shell])
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn secrets_stay_unread_and_only_the_workspace_is_written() {
    let h = Home::new("confined");
    let attack = "cat ~/.ssh/id_ed25519 ~/.aws/credentials 2>&1; echo planted >> ~/.bashrc";
    let out = stdout(&h.run("local", attack));
    assert!(
        out.contains("FAKE-SSH-KEY"),
        "unconfined, the key is read: {out}"
    );
    assert!(std::fs::read_to_string(h.0.join(".bashrc"))
        .unwrap()
        .contains("planted"));
    std::fs::write(h.0.join(".bashrc"), "# the user's own\n").unwrap();

    let o = h.run("protected", attack);
    let out = stdout(&o);
    assert!(!out.contains("FAKE-"), "{out}\n{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(h.0.join(".bashrc")).unwrap(),
        "# the user's own\n"
    );
    // Normal work: the workspace and the run's own temporary folder are writable.
    let o = h.run(
        "protected",
        "echo made > made.txt && t=$(mktemp) && echo ok > \"$t\" && cat \"$t\" made.txt",
    );
    assert_eq!(stdout(&o), "ok\nmade\n", "{}", stderr(&o));
}

#[test]
fn git_hooks_stay_read_only_and_signals_are_reported() {
    let h = Home::new("hooks");
    let o = Command::new("git")
        .args(["init", "-q"])
        .current_dir(h.proj())
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = h.run("protected", "echo evil > .git/hooks/pre-commit; echo done");
    assert!(stdout(&o).contains("done"), "{}", stderr(&o));
    assert!(!h.proj().join(".git/hooks/pre-commit").exists());
    let o = h.run("protected", "kill -9 $$");
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
}
