//! An engine reached over TCP with TLS, the way a remote one is: the machine's engine behind a
//! TLS proxy on 127.0.0.1 that demands a client certificate (tests/engines: certificates made
//! by the test, the proxy in Python). Connect, run, timeout, cleanup on stop; a certificate the
//! engine does not trust is a clear ENGINE_UNAVAILABLE. Without an engine: SKIPPED loudly.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::engine::*;
use common::*;

struct TlsEngine {
    port: u16,
    certs: tempfile::TempDir,
    proxy: Child,
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/engines")
}

impl TlsEngine {
    fn start() -> TlsEngine {
        let certs = tempfile::tempdir().unwrap();
        let o = Command::new(scripts().join("tls_certs.sh"))
            .arg(certs.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let port = registry_port();
        let mut proxy = Command::new("python3")
            .arg(scripts().join("tls_proxy.py"))
            .arg(port.to_string())
            .arg(certs.path().join("server"))
            .arg(engine_socket())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(proxy.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the TLS proxy did not start");
        TlsEngine { port, certs, proxy }
    }

    /// The client's settings, with the certificates in `who` (`client` or `stranger`).
    fn vars(&self, who: &str) -> Vec<(String, String)> {
        vec![
            (
                "DOCKER_HOST".into(),
                format!("tcp://127.0.0.1:{}", self.port),
            ),
            ("DOCKER_TLS_VERIFY".into(), "1".into()),
            (
                "DOCKER_CERT_PATH".into(),
                self.certs.path().join(who).display().to_string(),
            ),
        ]
    }
}

impl Drop for TlsEngine {
    fn drop(&mut self) {
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
    }
}

#[test]
fn an_engine_over_tls_runs_the_sandbox_and_a_wrong_certificate_is_clear() {
    if !engine_or_skip("an_engine_over_tls_runs_the_sandbox_and_a_wrong_certificate_is_clear") {
        return;
    }
    ensure_busybox();
    let tls = TlsEngine::start();
    let env = TestEnv::new();
    let mut vars = tls.vars("client");
    vars.push(("STIGMER_EXECUTION_MODE".into(), "sandbox".into()));
    vars.push(("STIGMER_SANDBOX_IMAGE".into(), BUSYBOX.into()));
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut server = env.start_server_env(&refs);
    let run = |args: &[&str]| {
        env.cmd()
            .current_dir(env.path())
            .arg("run")
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["-c", "echo over tls"]);
    assert_eq!(stdout(&o), "over tls\n", "{}", stderr(&o));
    let o = run(&["--timeout", "0.5", "--", "sleep", "30"]);
    assert_eq!(o.status.code(), Some(124), "{}", stderr(&o));
    let status = env
        .cmd()
        .envs(tls.vars("client"))
        .args(["sandbox", "status", "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["engine"]["engine"]["endpoint"],
        format!("tcp://127.0.0.1:{}", tls.port),
        "{status}"
    );
    assert_eq!(containers_for(env.path()).len(), 1);
    server.stop();
    assert!(
        wait_until(Duration::from_secs(10), || containers_for(env.path())
            .is_empty()),
        "the server removes its containers when it stops"
    );

    // A client certificate from another authority: refused by the engine, said plainly.
    let o = env
        .cmd()
        .current_dir(env.path())
        .envs(tls.vars("stranger"))
        .args(["run", "--no-server", "--image", BUSYBOX, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let why = stderr(&o);
    assert!(
        why.contains("ENGINE_UNAVAILABLE")
            && why.contains("TLS")
            && why.contains("DOCKER_CERT_PATH"),
        "{why}"
    );
    assert!(containers_for(env.path()).is_empty(), "nothing ran");
}
