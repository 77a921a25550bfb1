//! Helpers for tests against the machine's real container engine: images made without a
//! registry, and a real registry on 127.0.0.1.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const BUSYBOX: &str = "stigmer-test/busybox:1";

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI")
}

/// Whether a container engine answers. Without one, sandbox tests say SKIPPED loudly; with
/// STIGMER_TEST_REQUIRE_ENGINE=1 (CI) they fail instead.
pub fn engine_or_skip(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("STIGMER_TEST_REQUIRE_ENGINE").is_some() {
            panic!("{test}: no container engine, and STIGMER_TEST_REQUIRE_ENGINE is set");
        }
        eprintln!("\n!!!!! SKIPPED {test}: no container engine on this machine !!!!!\n");
    }
    ok
}

static IMAGES: Mutex<()> = Mutex::new(());

/// A file of the repository. This file is also compiled into the desktop's tests: the root is
/// found from either crate.
pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join(rel))
        .find(|s| s.exists())
        .unwrap_or_else(|| panic!("{rel} in the repository"))
}

/// A tiny image with busybox's applets, made from the host's busybox-static by the script the
/// Python tests use too.
pub fn ensure_busybox() {
    let _one = IMAGES.lock().unwrap_or_else(|p| p.into_inner());
    let script = repo_file("tests/images/busybox.sh");
    let o = Command::new(&script).arg(BUSYBOX).output().unwrap();
    assert!(
        o.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The tests' image with no shell and no other tool: the static test program (probe.c) as its
/// only file, at `/probe`.
pub const NOSHELL: &str = "stigmer-test/noshell:1";

/// Make [`NOSHELL`] if needed, and put the same static test program at `out` (to run it
/// locally, or in another image through the workspace mount).
pub fn ensure_noshell(out: &Path) {
    let _one = IMAGES.lock().unwrap_or_else(|p| p.into_inner());
    let script = repo_file("tests/images/noshell.sh");
    let o = Command::new(&script)
        .arg(NOSHELL)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// An image on top of busybox with `mb` MiB of random data in one layer (slow to pull).
pub fn ensure_big_image(tag: &str, mb: usize) {
    ensure_busybox();
    let _one = IMAGES.lock().unwrap_or_else(|p| p.into_inner());
    if docker(&["image", "inspect", tag]).status.success() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {BUSYBOX}\nCOPY blob /blob\n"),
    )
    .unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {}M /dev/urandom > '{}'",
            mb,
            dir.path().join("blob").display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let o = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", image]).status.success()
}

pub fn remove_image(image: &str) {
    let _ = docker(&["rmi", "-f", image]);
}

/// Containers with stigmer's labels for one installation (`STIGMER_HOME`).
pub fn stigmer_containers() -> Vec<String> {
    let o = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=dev.stigmer.managed=true",
        "--format",
        "{{.ID}}",
    ]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn inspect(container: &str) -> serde_json::Value {
    let o = docker(&["inspect", container]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0].clone()
}

/// Containers whose `dev.stigmer.workspace` label is `workspace`.
pub fn containers_for(workspace: &Path) -> Vec<String> {
    let o = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=dev.stigmer.workspace={}", workspace.display()),
        "--format",
        "{{.ID}}",
    ]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// A real registry (the CNCF distribution registry from Debian's docker-registry) on
/// 127.0.0.1, which the engine trusts over plain HTTP.
pub struct Registry {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Registries (and proxies in front of them) listen on 127.0.0.1 in this range, which
/// tests/engines/podman.sh declares insecure (plain HTTP) to Podman; Docker trusts all of
/// 127.0.0.0/8 by itself.
pub const REGISTRY_PORTS: std::ops::Range<u16> = 47100..47200;

/// A free port in [`REGISTRY_PORTS`], never the same twice in one test process.
pub fn registry_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let span = REGISTRY_PORTS.end - REGISTRY_PORTS.start;
    let offset = (std::process::id() % span as u32) as u16;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = REGISTRY_PORTS.start + (offset + n) % span;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {REGISTRY_PORTS:?} for a test registry");
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = registry_port();
        let mut r = Registry {
            port,
            dir,
            child: None,
        };
        r.restart();
        r
    }

    fn config(&self) -> PathBuf {
        let path = self.dir.path().join("registry.yml");
        std::fs::write(
            &path,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{}\n",
                self.dir.path().join("data").display(),
                self.port
            ),
        )
        .unwrap();
        path
    }

    pub fn restart(&mut self) {
        let bin = ["/usr/bin/docker-registry", "/usr/local/bin/registry"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("the registry is needed (apt-get install docker-registry)");
        let child = Command::new(bin)
            .arg("serve")
            .arg(self.config())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "the registry did not start"
        );
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `127.0.0.1:PORT/NAME`
    pub fn reference(&self, name: &str) -> String {
        format!("127.0.0.1:{}/{name}", self.port)
    }

    /// Push a local image under `name` and remove the local copy of that name.
    pub fn push(&self, local: &str, name: &str) -> String {
        let reference = self.reference(name);
        assert!(docker(&["tag", local, &reference]).status.success());
        let o = docker(&["push", &reference]);
        assert!(
            o.status.success(),
            "docker push: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        remove_image(&reference);
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy in front of the registry that slows downloads to `bytes_per_sec`, so a pull
/// lasts long enough to be cut in the middle. `kill` drops every connection at once, like a
/// registry that dies; `restart` listens again on the same port.
pub struct SlowProxy {
    pub port: u16,
    target: u16,
    rate: usize,
    alive: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl SlowProxy {
    pub fn start(target: u16, bytes_per_sec: usize) -> SlowProxy {
        let port = registry_port();
        let p = SlowProxy {
            port,
            target,
            rate: bytes_per_sec,
            alive: Default::default(),
            conns: Default::default(),
        };
        p.listen();
        p
    }

    fn listen(&self) {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.alive.store(true, Ordering::SeqCst);
        let (alive, conns, target, rate) = (
            self.alive.clone(),
            self.conns.clone(),
            self.target,
            self.rate,
        );
        std::thread::spawn(move || {
            while alive.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(upstream) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                conns
                    .lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), upstream.try_clone().unwrap()]);
                let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || pipe(c2, u2, usize::MAX));
                std::thread::spawn(move || pipe(upstream, client, rate));
            }
        });
    }

    pub fn kill(&self) {
        self.alive.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    pub fn restart(&self) {
        self.listen();
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copy `from` to `to`, at most `rate` bytes a second.
fn pipe(mut from: std::net::TcpStream, mut to: std::net::TcpStream, rate: usize) {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut sent = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
        if rate != usize::MAX {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// The engine the tests use: `DOCKER_HOST` when it is a unix socket (Podman's service in CI's
/// second pass), else Docker's.
pub fn engine_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// A unix socket that forwards to the engine's, and can vanish and come back: an engine that
/// stops and starts again, without touching the machine's real one.
pub struct EngineSocket {
    pub path: PathBuf,
    alive: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<Mutex<Vec<std::os::unix::net::UnixStream>>>,
}

impl EngineSocket {
    pub fn start(path: &Path) -> EngineSocket {
        let s = EngineSocket {
            path: path.to_path_buf(),
            alive: Default::default(),
            conns: Default::default(),
        };
        s.up();
        s
    }

    pub fn up(&self) {
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::Ordering;
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.alive.store(true, Ordering::SeqCst);
        let (alive, conns) = (self.alive.clone(), self.conns.clone());
        std::thread::spawn(move || {
            while alive.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(engine) = UnixStream::connect(engine_socket()) else {
                    continue;
                };
                conns
                    .lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), engine.try_clone().unwrap()]);
                let (c2, e2) = (client.try_clone().unwrap(), engine.try_clone().unwrap());
                std::thread::spawn(move || copy_unix(c2, e2));
                std::thread::spawn(move || copy_unix(engine, client));
            }
        });
    }

    pub fn down(&self) {
        self.alive.store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.path);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for EngineSocket {
    fn drop(&mut self) {
        self.down();
    }
}

fn copy_unix(mut from: std::os::unix::net::UnixStream, mut to: std::os::unix::net::UnixStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// The image tests/images/basic.sh built (its last line).
pub fn basic_image() -> String {
    let script = repo_file("tests/images/basic.sh");
    let o = Command::new(&script).output().unwrap();
    assert!(
        o.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .expect("the script prints the tag it built")
        .to_string()
}

/// A web server of the test's own (tests/network/server.py) in a container on the default
/// bridge: HTTP on 80 and 8080, HTTPS on 443 with `dir`'s cert.pem and key.pem. Removed on drop.
pub struct WebServer {
    pub container: String,
    pub ip: String,
}

impl WebServer {
    pub fn start(image: &str, name: &str, dir: &Path) -> WebServer {
        let script = repo_file("tests/network/server.py");
        std::fs::copy(&script, dir.join("server.py")).unwrap();
        // Tests of one binary run in parallel in one process: the pid alone is not unique.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let container = format!("stigmer-test-web-{name}-{}-{n}", std::process::id());
        let _ = docker(&["rm", "-f", &container]);
        let mount = format!("{}:/srv:ro", dir.display());
        let o = docker(&[
            "run",
            "-d",
            "--rm",
            "--name",
            &container,
            "--user",
            "0",
            "-v",
            &mount,
            "--entrypoint",
            "python3",
            image,
            "/srv/server.py",
            name,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = docker(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.IPAddress}}",
            &container,
        ]);
        let ip = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert!(!ip.is_empty(), "no address for {container}");
        let ready = wait_until(Duration::from_secs(20), || {
            let o = docker(&["logs", &container]);
            String::from_utf8_lossy(&o.stdout).contains("ready")
        });
        assert!(ready, "the web server {container} did not start");
        WebServer { container, ip }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.container]);
    }
}

/// A certificate for `names` (and its key) in `dir`, made with openssl.
pub fn make_cert(dir: &Path, names: &[&str]) {
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let o = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .args(["-subj", &format!("/CN={}", names[0])])
        .args(["-addext", &format!("subjectAltName={san}")])
        .output()
        .expect("openssl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
