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

    /// A server on the allowlist with [`ALLOWED`] in its list (from the config file), checked
    /// to answer through the proxy.
    fn allowlist_server_allowing_the_allowed_host(&self) -> Server {
        std::fs::create_dir_all(self.env.config_file().parent().unwrap()).unwrap();
        std::fs::write(
            self.env.config_file(),
            format!("[sandbox]\nallow = [\"{ALLOWED}\"]\n"),
        )
        .unwrap();
        let server = self.server("allowlist");
        let (code, out, _) = self.curl(&format!("http://{ALLOWED}/hello"));
        assert_eq!((code, out.as_str()), (0, "hello from allowed\n"));
        server
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
    // A tunnel to the allowed host whose TLS handshake asks for another one (fronting):
    // refused, and said.
    let (code, out, _) = net.curl(&format!(
        "--cacert cert.pem --connect-to {DENIED}:443:{ALLOWED}:443 https://{DENIED}/hello"
    ));
    assert_ne!(code, 0, "{out}");
    assert!(!out.contains("hello"), "{out}");
    let view = network(&server).await;
    assert!(
        view["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["host"] == ALLOWED
                && b["reason"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("TLS handshake asks for {DENIED}"))),
        "{view}"
    );
    // A tunnel to port 80 would carry plain requests naming any host: refused.
    let (code, out, _) = net.curl(&format!("--proxytunnel http://{ALLOWED}/hello"));
    assert_ne!(code, 0, "{out}");
    assert!(!out.contains("hello from"), "{out}");
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
    assert_eq!(body["error"]["code"], "INVALID_SETTING", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("policy: `some` is not a valid value"),
        "{body}"
    );
    assert_eq!(network(&server).await["policy"], "allowlist", "unchanged");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dying_proxy_fails_calls_clearly_comes_back_and_never_opens_the_network() {
    if !engine_or_skip("a_dying_proxy_fails_calls_clearly") {
        return;
    }
    let net = Net::new();
    let server = net.allowlist_server_allowing_the_allowed_host();
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

/// The addresses of this machine (never another's): a sandbox must reach none of them.
fn own_addresses() -> Vec<String> {
    let o = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .unwrap();
    stdout(&o)
        .split_whitespace()
        .filter(|a| !a.starts_with("127.") && *a != "::1")
        .map(String::from)
        .collect()
}

/// Socket inodes of `pid` that listen on TCP (v4 or v6).
fn tcp_listeners(pid: u32) -> Vec<String> {
    let mine: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(
                l.strip_prefix("socket:[")?
                    .trim_end_matches(']')
                    .to_string(),
            )
        })
        .collect();
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            // st 0A: LISTEN; the inode is the tenth field.
            if f.len() > 9 && f[3] == "0A" && mine.contains(&f[9].to_string()) {
                found.push(format!("{} ({table})", f[1]));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowlist_sandbox_has_no_network_only_its_own_door_to_the_proxy() {
    if !engine_or_skip("an_allowlist_sandbox_has_no_network") {
        return;
    }
    let net = Net::new();
    let server = net.allowlist_server_allowing_the_allowed_host();

    // No interface but loopback, no route: no resolver, gateway or host service can answer.
    let o = net.run("ls /sys/class/net; echo routes; tail -n +2 /proc/net/route");
    assert_eq!(stdout(&o), "lo\nroutes\n", "{}", stderr(&o));
    let o = net.run("getent hosts allowed.stigmer.test || echo unresolved");
    assert_eq!(stdout(&o), "unresolved\n");

    // A listener of the test's own on every address of this machine (TCP and UDP), tried
    // from the sandbox around the proxy: nothing arrives.
    let tcp = std::net::TcpListener::bind("[::]:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    tcp.set_nonblocking(true).unwrap();
    let udp = std::net::UdpSocket::bind(("::", port)).unwrap();
    udp.set_nonblocking(true).unwrap();
    let addrs = own_addresses();
    assert!(!addrs.is_empty());
    let script = format!(
        r#"
import socket
for a in {addrs:?}:
    fam = socket.AF_INET6 if ":" in a else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(2)
    try:
        s.connect((a, {port})); print("reached", a)
    except OSError as e:
        print("tcp refused", a, e.errno)
    u = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        u.sendto(b"out", (a, {port})); print("sent", a)
    except OSError as e:
        print("udp refused", a, e.errno)
"#
    );
    std::fs::write(net.env.path().join("around.py"), script).unwrap();
    let o = net.run("python3 around.py");
    let said = stdout(&o);
    assert!(
        !said.contains("reached") && !said.contains("sent"),
        "{said}{}",
        stderr(&o)
    );
    assert_eq!(said.matches("refused").count(), addrs.len() * 2, "{said}");
    assert!(tcp.accept().is_err(), "a TCP connection arrived");
    let mut buf = [0u8; 16];
    assert!(udp.recv_from(&mut buf).is_err(), "a datagram arrived");

    // The proxy listens on no network address: only through a door, a socket in a private
    // folder mounted into one container, read-only there.
    let pid = network(&server).await["proxy_pid"].as_u64().unwrap() as u32;
    assert_eq!(tcp_listeners(pid), Vec::<String>::new());
    let doors = net.env.home().join("data/proxy");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&doors), 0o700);
    let door = std::fs::read_dir(&doors)
        .unwrap()
        .flatten()
        .next()
        .expect("a door")
        .path();
    assert_eq!(mode(&door), 0o700);
    assert_eq!(mode(&door.join("proxy.sock")), 0o600);
    let o = net.run(
        "ls /run/stigmer-proxy; rm -f /run/stigmer-proxy/proxy.sock 2>/dev/null || echo kept; \
         touch /run/stigmer-proxy/x 2>/dev/null || echo read-only",
    );
    assert_eq!(
        stdout(&o),
        "proxy.sock\nkept\nread-only\n",
        "{}",
        stderr(&o)
    );
    let (code, out, _) = net.curl(&format!("http://{ALLOWED}/hello"));
    assert_eq!((code, out.as_str()), (0, "hello from allowed\n"));
}
