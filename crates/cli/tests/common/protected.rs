//! The protected tier's tests (`protected.rs`, `protected_more.rs`): a normal user whose home
//! holds fake secrets, a git project allowed as a workspace, and `stigmer` run as that user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::{stderr, BIN};

pub const USER: &str = "stigmer-protected";

pub struct Home {
    pub dir: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

pub fn id(flag: &str) -> u32 {
    let o = Command::new("id").args([flag, USER]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

pub fn sh(cmd: &str) {
    let ok = Command::new("sh")
        .args(["-c", cmd])
        .status()
        .unwrap()
        .success();
    assert!(ok, "{cmd}");
}

impl Home {
    /// A home for the test user outside /tmp (which every protected run replaces), with fake
    /// secrets, dot-files, a git project allowed as a workspace and Stigmer's own folder.
    pub fn new(test: &str) -> Option<Home> {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("\n!!!!! SKIPPED {test}: needs root to make its test user !!!!!\n");
            return None;
        }
        let _ = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/sh", USER])
            .stderr(Stdio::null())
            .status();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("protected-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in [
            ".ssh",
            ".aws",
            ".local/bin",
            ".config/autostart",
            "proj",
            ".stigmer/data",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join(".ssh/id_ed25519"), "FAKE-SSH-KEY\n").unwrap();
        std::fs::write(dir.join(".aws/credentials"), "FAKE-AWS-KEY\n").unwrap();
        std::fs::write(dir.join(".bashrc"), "# the user's own\n").unwrap();
        std::fs::write(dir.join(".stigmer/data/token"), "FAKE-STIGMER-TOKEN\n").unwrap();
        for p in [Path::new(env!("CARGO_TARGET_TMPDIR")), &dir] {
            let mut perm = std::fs::metadata(p).unwrap().permissions();
            perm.set_mode(0o755);
            std::fs::set_permissions(p, perm).unwrap();
        }
        let h = Home {
            uid: id("-u"),
            gid: id("-g"),
            dir,
        };
        sh(&format!("chown -R {USER}: '{}'", h.dir.display()));
        let proj = h.proj();
        for args in [
            vec!["init", "-q"],
            vec![
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "first",
            ],
        ] {
            let mut c = h.user_cmd("git");
            let o = c.args(&args).current_dir(&proj).output().unwrap();
            assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
        }
        let o = h.stigmer(&["workspaces", "add", proj.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        Some(h)
    }

    pub fn proj(&self) -> PathBuf {
        self.dir.join("proj")
    }

    /// `program` as the test user, with this home.
    pub fn user_cmd(&self, program: &str) -> Command {
        let mut c = Command::new("/usr/bin/setpriv");
        c.args([
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
            "--clear-groups".into(),
            "--".into(),
            program.into(),
        ])
        .env_clear()
        .env("HOME", &self.dir)
        .env("STIGMER_HOME", self.dir.join(".stigmer"))
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null());
        c
    }

    pub fn stigmer(&self, args: &[&str]) -> Output {
        self.user_cmd(BIN).args(args).output().unwrap()
    }

    /// `shell` run by `stigmer run --mode MODE` in the project, as the test user.
    pub fn run(&self, mode: &str, shell: &str) -> Output {
        self.run_env(mode, shell, &[])
    }

    pub fn run_env(&self, mode: &str, shell: &str, env: &[(&str, &str)]) -> Output {
        self.user_cmd(BIN)
            .args(["run", "--mode", mode, "--", "sh", "-c", shell])
            .envs(env.iter().copied())
            .current_dir(self.proj())
            .output()
            .unwrap()
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.join(rel)).unwrap_or_default()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads of secrets: in local mode the command reads them; protected, they are not there.
/// A Unix socket listener of the test's own, as the test user, counting connections; `path`
/// starting with `@` is an abstract socket. Returns when it listens.
/// A process of the test's, killed when dropped (a failed assertion included).
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn unix_listener(h: &Home, path: &str) -> (Killed, PathBuf) {
    let count = h.dir.join(format!("count-{}", path.replace('/', "_")));
    let script = "import socket,sys\n\
         s=socket.socket(socket.AF_UNIX)\n\
         p=sys.argv[1]\n\
         s.bind('\\0'+p[1:] if p.startswith('@') else p)\n\
         s.listen(8)\n\
         open(sys.argv[2],'w').write('0')\n\
         n=0\n\
         while True:\n\
         \x20   c,_=s.accept(); n+=1; open(sys.argv[2],'w').write(str(n)); c.close()\n";
    let child = h
        .user_cmd("/usr/bin/python3")
        .args(["-c", script, path, count.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if count.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (Killed(child), count)
}

pub fn connect_cmd(path: &str) -> String {
    let addr = if let Some(name) = path.strip_prefix('@') {
        format!("'\\0{name}'")
    } else {
        format!("'{path}'")
    };
    format!(
        "/usr/bin/python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect({addr}); print('connected')\" 2>&1"
    )
}

/// A server of the test user's own, stopped when dropped.
pub struct UserServer<'a>(&'a Home);

impl<'a> UserServer<'a> {
    pub fn start(h: &'a Home) -> UserServer<'a> {
        let o = h.stigmer(&["server", "start"]);
        assert!(o.status.success(), "{}", stderr(&o));
        UserServer(h)
    }

    /// The newest run's record.
    pub fn last_run(&self) -> serde_json::Value {
        let o = self.0.stigmer(&["runs", "list", "--json", "--limit", "1"]);
        let v: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", stderr(&o)));
        v["runs"][0].clone()
    }
}

impl Drop for UserServer<'_> {
    fn drop(&mut self) {
        let _ = self.0.stigmer(&["server", "stop"]);
    }
}
