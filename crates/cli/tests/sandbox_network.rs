//! The sandbox's network policy against real parts: the real basic image, the real engine, an
//! internal Docker network, stigmer's proxy process, and web servers of the test's own in
//! containers (an allowed one and a denied one). Traffic goes only to loopback and to these
//! containers; the metadata and private-range rules are checked at the policy's decision
//! function (crates/engine/src/network/policy.rs), never by sending packets there.

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use common::engine::*;
use common::*;
use serde_json::{json, Value};

const ALLOWED: &str = "allowed.stigmer.test";
const DENIED: &str = "denied.stigmer.test";

struct Net {
    env: TestEnv,
    image: String,
    allowed: WebServer,
    denied: WebServer,
}

impl Net {
    fn new() -> Net {
        let image = basic_image();
        let env = TestEnv::new();
        let certs = env.beside("certs");
        std::fs::create_dir_all(&certs).unwrap();
        make_cert(&certs, &[ALLOWED, DENIED]);
        std::fs::copy(certs.join("cert.pem"), env.path().join("cert.pem")).unwrap();
        let allowed = WebServer::start(&image, "allowed", &certs);
        let denied = WebServer::start(&image, "denied", &certs);
        Net {
            env,
            image,
            allowed,
            denied,
        }
    }

    fn server(&self, policy: &str) -> Server {
        let hosts = format!("{ALLOWED}={},{DENIED}={}", self.allowed.ip, self.denied.ip);
        self.env.start_server_env(&[
            ("STIGMER_EXECUTION_MODE", "sandbox"),
            ("STIGMER_SANDBOX_IMAGE", &self.image),
            ("STIGMER_SANDBOX_NETWORK", policy),
            ("STIGMER_PROXY_TEST_HOSTS", &hosts),
        ])
    }

    fn run(&self, line: &str) -> Output {
        self.env
            .cmd()
            .current_dir(self.env.path())
            .args(["run", "-c", line])
            .output()
            .unwrap()
    }

    /// `curl` in the sandbox: (curl's exit code, what it printed, stigmer's notes).
    fn curl(&self, args: &str) -> (i32, String, String) {
        let o = self.run(&format!("curl -sS --max-time 8 {args} 2>&1"));
        (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
    }
}

async fn network(server: &Server) -> Value {
    let c = server.client();
    server
        .get(&c, "/v1/sandbox/network")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let c = server.client();
    let r = server.post(&c, path).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

fn blocked_hosts(view: &Value) -> Vec<(String, u64)> {
    view["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["host"].as_str().unwrap().to_string(),
                b["port"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowlist_lets_through_only_the_hosts_the_user_listed() {
    if !engine_or_skip("the_allowlist_lets_through_only_the_hosts_the_user_listed") {
        return;
    }
    let net = Net::new();
    let server = net.server("allowlist");
    let (a, d) = (net.allowed.ip.clone(), net.denied.ip.clone());

    // Bad entries are refused, each named, and change nothing.
    let config = net.env.config_file();
    let before = std::fs::read(&config).unwrap_or_default();
    for bad in ["*", "https://allowed.stigmer.test/path", ""] {
        let o = net.env.stigmer(&["config", "allow", bad]);
        assert!(!o.status.success(), "{bad:?} was accepted");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("`{bad}`")) || (bad.is_empty() && err.contains("empty")),
            "{bad:?}: {err}"
        );
        let (status, body) =
            post(&server, "/v1/sandbox/network/allow", json!({ "host": bad })).await;
        assert_eq!(status, 422, "{bad:?}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_SETTING", "{body}");
    }
    assert_eq!(
        std::fs::read(&config).unwrap_or_default(),
        before,
        "nothing changed"
    );
    assert_eq!(network(&server).await["allow"], json!([]));

    // Nothing is allowed yet: even the allowed server's name is refused, with an event.
    let (code, out, notes) = net.curl(&format!("-f http://{ALLOWED}/hello"));
    assert_ne!(code, 0, "{out}");
    assert!(notes.contains(&format!("blocked {ALLOWED}")), "{notes}");

    let o = net.env.stigmer(&["config", "allow", ALLOWED]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("applied to the running server"),
        "{}",
        stdout(&o)
    );

    // The allowed one answers through the proxy, over HTTP and HTTPS (CONNECT).
    let (code, out, notes) = net.curl(&format!("http://{ALLOWED}/hello"));
    assert_eq!((code, out.as_str()), (0, "hello from allowed\n"), "{notes}");
    let (code, out, _) = net.curl(&format!("--cacert cert.pem https://{ALLOWED}/hello"));
    assert_eq!((code, out.as_str()), (0, "hello from allowed\n"));

    // The denied one, by name (HTTP and HTTPS): refused by the proxy, said to the client.
    let (code, out, notes) = net.curl(&format!("http://{DENIED}/hello"));
    assert_eq!(code, 0, "curl got the proxy's answer: {out}");
    assert!(
        out.contains(&format!(
            "network policy blocked {DENIED}:80 (not in the allowlist)"
        )),
        "{out}"
    );
    assert!(
        notes.contains("NETWORK POLICY") && notes.contains(DENIED),
        "the run's reply names the host: {notes}"
    );
    let (code, out, _) = net.curl(&format!("--cacert cert.pem https://{DENIED}/hello"));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("403"), "{out}");
    // By address through the proxy, and the allowed host on a second port: refused.
    let (code, out, _) = net.curl(&format!("http://{a}/hello"));
    assert!(
        code == 0 && out.contains("raw IP addresses are refused"),
        "{out}"
    );
    let (code, out, _) = net.curl(&format!("http://{ALLOWED}:8080/hello"));
    assert!(code == 0 && out.contains("port 8080"), "{out}");
    // Around the proxy: nothing answers (no route out of the internal network).
    for target in [
        format!("http://{a}/hello"),
        format!("http://{d}/hello"),
        format!("http://{a}:8080/hello"),
    ] {
        let (code, out, _) = net.curl(&format!("--noproxy '*' --max-time 4 {target}"));
        assert_ne!(code, 0, "{target} answered directly: {out}");
        assert!(!out.contains("hello"), "{out}");
    }

    // Each refusal is an event and in the view, with the command it came from.
    let view = network(&server).await;
    let hosts = blocked_hosts(&view);
    for want in [
        (DENIED.to_string(), 80),
        (DENIED.to_string(), 443),
        (a.clone(), 80),
        (ALLOWED.to_string(), 8080),
    ] {
        assert!(hosts.contains(&want), "{want:?} not in {hosts:?}");
    }
    let denied = view["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["host"] == DENIED && b["port"] == 80)
        .unwrap();
    assert!(
        denied["command"].as_str().unwrap().contains("curl"),
        "{denied}"
    );
    assert_eq!(denied["can_allow"], true);
    let c = server.client();
    let mut events = server.get(&c, "/v1/events").send().await.unwrap();
    let mut buf = Vec::new();
    let _ = net.curl(&format!("http://{DENIED}/again"));
    let seen = events_until(
        &mut events,
        &mut buf,
        "network_blocked",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(seen.last().unwrap()["blocked"]["host"], DENIED, "{seen:?}");

    // The window's Allow: the host goes into the list, its refusals go, and it answers.
    let (status, view) = post(
        &server,
        "/v1/sandbox/network/allow",
        json!({ "host": DENIED }),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["allow"], json!([ALLOWED, DENIED]));
    assert!(
        !blocked_hosts(&view)
            .iter()
            .any(|(h, p)| h == DENIED && *p == 80),
        "{view}"
    );
    let (code, out, _) = net.curl(&format!("http://{DENIED}/hello"));
    assert_eq!((code, out.as_str()), (0, "hello from denied\n"));
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(saved.contains(DENIED), "{saved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_network_nothing_answers_and_open_reaches_both() {
    if !engine_or_skip("without_network_nothing_answers_and_open_reaches_both") {
        return;
    }
    let net = Net::new();
    let (a, d) = (net.allowed.ip.clone(), net.denied.ip.clone());
    {
        let _server = net.server("none");
        for target in [format!("http://{a}/hello"), format!("http://{d}/hello")] {
            let (code, out, _) = net.curl(&format!("--max-time 4 {target}"));
            assert_ne!(code, 0, "{target} answered with no network: {out}");
        }
        let (code, _, _) = net.curl(&format!("http://{ALLOWED}/hello"));
        assert_ne!(code, 0);
    }
    let mut server = net.server("open");
    for (ip, name) in [(&a, "allowed"), (&d, "denied")] {
        let (code, out, _) = net.curl(&format!("http://{ip}/hello"));
        assert_eq!((code, out), (0, format!("hello from {name}\n")));
    }
    // Switching to the allowlist applies to the next command: it runs in a new container
    // on the internal network.
    let (status, view) = post(
        &server,
        "/v1/sandbox/network",
        json!({ "policy": "allowlist" }),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["policy"], "allowlist");
    let (code, out, _) = net.curl(&format!("--noproxy '*' --max-time 4 http://{a}/hello"));
    assert_ne!(code, 0, "still open after the change: {out}");
    let (status, body) = post(&server, "/v1/sandbox/network", json!({ "policy": "some" })).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(network(&server).await["policy"], "allowlist", "unchanged");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dying_proxy_fails_calls_clearly_comes_back_and_never_opens_the_network() {
    if !engine_or_skip("a_dying_proxy_fails_calls_clearly") {
        return;
    }
    let net = Net::new();
    std::fs::create_dir_all(net.env.config_file().parent().unwrap()).unwrap();
    std::fs::write(
        net.env.config_file(),
        format!("[sandbox]\nallow = [\"{ALLOWED}\"]\n"),
    )
    .unwrap();
    let server = net.server("allowlist");
    let (code, out, _) = net.curl(&format!("http://{ALLOWED}/hello"));
    assert_eq!((code, out.as_str()), (0, "hello from allowed\n"));
    let pid = network(&server).await["proxy_pid"]
        .as_u64()
        .expect("the proxy runs") as i32;

    // A transfer in progress when the proxy dies.
    let slow = net
        .env
        .cmd()
        .current_dir(net.env.path())
        .args([
            "run",
            "-c",
            &format!("curl -sS --max-time 60 -o /dev/null http://{ALLOWED}/slow 2>&1"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // SAFETY: a process of this test's server.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let o = tokio::task::spawn_blocking(move || slow.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_ne!(
        o.status.code(),
        Some(0),
        "the transfer could not go on: {}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("network proxy restarted"),
        "{}",
        stderr(&o)
    );

    // It is back, as another process, and the allowed host answers again; around it,
    // still nothing.
    let mut back = None;
    for _ in 0..100 {
        back = network(&server).await["proxy_pid"]
            .as_u64()
            .filter(|p| *p != pid as u64);
        if back.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back.is_some(), "the proxy came back");
    let (code, out, _) = net.curl(&format!("http://{ALLOWED}/hello"));
    assert_eq!((code, out.as_str()), (0, "hello from allowed\n"));
    let (code, out, _) = net.curl(&format!(
        "--noproxy '*' --max-time 4 http://{}/hello",
        net.allowed.ip
    ));
    assert_ne!(code, 0, "{out}");
}
