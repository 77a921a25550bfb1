//! A desktop for end-to-end tests on a headless machine: Xvfb, a private session bus, a tray
//! host (StatusNotifierWatcher), a real notification daemon (dunst) watched with dbus-monitor,
//! and tauri-driver in front of WebKitWebDriver.

#![allow(dead_code)]

pub mod page;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const APP: &str = env!("CARGO_BIN_EXE_stigmer-desktop");

/// One desktop at a time: parallel ones raced for ports and displays.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// tauri-driver, ended when dropped: a test that fails midway leaves no driver (nor its app)
/// running after it.
pub struct Driver(Child);

impl Driver {
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }

    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Desktop {
    _serial: std::sync::MutexGuard<'static, ()>,
    pub home: tempfile::TempDir,
    pub display: String,
    pub bus: String,
    children: Vec<Child>,
    pub notifications_log: PathBuf,
}

fn which(bin: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Desktop {
    /// None (with a loud SKIPPED) when the machine lacks the tools, unless
    /// STIGMER_TEST_REQUIRE_DESKTOP is set, which makes that a failure.
    pub fn start(test: &str) -> Option<Desktop> {
        let missing: Vec<&str> = [
            "Xvfb",
            "dbus-daemon",
            "tauri-driver",
            "WebKitWebDriver",
            "dunst",
            "dbus-monitor",
            "gdbus",
            "gtk-sni-tray-standalone",
        ]
        .into_iter()
        .filter(|b| !which(b))
        .collect();
        if !missing.is_empty() {
            if std::env::var_os("STIGMER_TEST_REQUIRE_DESKTOP").is_some() {
                panic!("{test}: missing {missing:?} (scripts/test.sh installs them)");
            }
            eprintln!("\n!!!!! SKIPPED {test}: missing {missing:?} (scripts/test.sh installs them) !!!!!\n");
            return None;
        }
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let sidecar = Path::new(APP).with_file_name("stigmer");
        assert!(
            sidecar.exists(),
            "the server binary {} is missing: cargo build -p stigmer-cli",
            sidecar.display()
        );
        let tray = Path::new(APP).with_file_name("stigmer-tray");
        assert!(
            tray.exists(),
            "the tray program {} is missing: cargo build -p stigmer-tray",
            tray.display()
        );
        let home = tempfile::tempdir().unwrap();
        let mut children = Vec::new();
        // A display of our own: Xvfb picks a free number and tells it (no race between tests).
        let mut xvfb = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x900x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut number = String::new();
        BufReader::new(xvfb.stdout.take().unwrap())
            .read_line(&mut number)
            .unwrap();
        let display = format!(":{}", number.trim());
        children.push(xvfb);
        // A session bus of our own.
        let mut dbus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut bus = String::new();
        BufReader::new(dbus.stdout.take().unwrap())
            .read_line(&mut bus)
            .unwrap();
        let bus = bus.trim().to_string();
        children.push(dbus);
        let mut d = Desktop {
            _serial: serial,
            notifications_log: home.path().join("notifications.log"),
            home,
            display,
            bus,
            children,
        };
        std::fs::create_dir_all(d.home.path().join("runtime")).unwrap();
        // The tray host first: an app started before it never registers. On a loaded machine
        // the host has been seen to start without ever registering: start it again then.
        let tray_log = d.home.path().join("tray.log");
        let mut registered = false;
        for _ in 0..3 {
            let tray = d
                .command("gtk-sni-tray-standalone")
                .args(["--watcher", "--bottom", "--size", "32"])
                .stderr(std::fs::File::create(&tray_log).unwrap())
                .spawn()
                .unwrap();
            d.children.push(tray);
            // An app whose tray starts before a host is registered falls back and never shows.
            registered = wait_for(Duration::from_secs(20), || d.tray_host_registered());
            if registered {
                break;
            }
            let mut stuck = d.children.pop().unwrap();
            let _ = stuck.kill();
            let _ = stuck.wait();
        }
        assert!(
            registered,
            "the tray host never registered: {}",
            std::fs::read_to_string(&tray_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
        // dunst's context menu (a notification's buttons) goes through `dmenu`: a script of
        // the test's that picks the entry named in `dmenu-choice` (see `notification_action`).
        let script = d.home.path().join("dmenu.sh");
        let choice = d.home.path().join("dmenu-choice");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ngrep -F -- \"$(cat '{}')\" | head -n1\n",
                choice.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let dunstrc = d.home.path().join("dunstrc");
        std::fs::write(
            &dunstrc,
            format!("[global]\n    dmenu = {}\n", script.display()),
        )
        .unwrap();
        let dunst = d
            .command("dunst")
            .arg("-config")
            .arg(&dunstrc)
            .spawn()
            .unwrap();
        d.children.push(dunst);
        let log = std::fs::File::create(&d.notifications_log).unwrap();
        let monitor = d
            .command("dbus-monitor")
            .args([
                "--session",
                "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
            ])
            .stdout(log)
            .spawn()
            .unwrap();
        d.children.push(monitor);
        Some(d)
    }

    /// The first-run page was seen already (tests of the rest of the window start there).
    pub fn skip_welcome(&self) {
        let prefs = self.home.path().join("stigmer/config/desktop.json");
        std::fs::create_dir_all(prefs.parent().unwrap()).unwrap();
        std::fs::write(prefs, r#"{"welcomed": true}"#).unwrap();
    }

    /// A command with this desktop's display, bus and a private STIGMER_HOME.
    pub fn command(&self, bin: &str) -> Command {
        let mut c = Command::new(bin);
        c.env("DISPLAY", &self.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("XDG_RUNTIME_DIR", self.home.path().join("runtime"))
            .env("HOME", self.home.path())
            .env("STIGMER_HOME", self.home.path().join("stigmer"))
            .env("NO_AT_BRIDGE", "1")
            // Update checks go to a closed port on loopback, never to the internet.
            .env("STIGMER_UPDATE_ENDPOINT", "https://127.0.0.1:9/latest.json")
            // Choosing a sandbox tier prepares its image at once: never from a registry on the
            // internet in a test (a test that pulls from its own registry says so).
            .env("STIGMER_SANDBOX_AUTO_PULL", "false")
            .env_remove("STIGMER_EXECUTION_MODE")
            .env_remove("STIGMER_SANDBOX_IMAGE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("STIGMER_TEST_APP_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        c
    }

    pub fn gdbus(&self, args: &[&str]) -> String {
        let o = self
            .command("gdbus")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    /// Whether a tray watcher runs with a host registered to it.
    fn tray_host_registered(&self) -> bool {
        self.bus_has("org.kde.StatusNotifierWatcher")
            && self
                .gdbus(&[
                    "call",
                    "--session",
                    "--dest",
                    "org.kde.StatusNotifierWatcher",
                    "--object-path",
                    "/StatusNotifierWatcher",
                    "--method",
                    "org.freedesktop.DBus.Properties.Get",
                    "org.kde.StatusNotifierWatcher",
                    "IsStatusNotifierHostRegistered",
                ])
                .contains("true")
    }

    pub fn bus_has(&self, name: &str) -> bool {
        self.gdbus(&[
            "call",
            "--session",
            "--dest",
            "org.freedesktop.DBus",
            "--object-path",
            "/org/freedesktop/DBus",
            "--method",
            "org.freedesktop.DBus.ListNames",
        ])
        .contains(name)
    }

    /// tauri-driver for this desktop, listening on a free port; returns (driver, port).
    pub fn driver(&self, extra_env: &[(&str, &str)]) -> (Driver, u16) {
        let (port, native) = (free_port(), free_port());
        let child = self
            .command("tauri-driver")
            .envs(extra_env.iter().copied())
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native.to_string(),
            ])
            .spawn()
            .unwrap();
        assert!(
            wait_for(Duration::from_secs(15), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "tauri-driver did not start"
        );
        (Driver(child), port)
    }

    /// Notifications shown so far: their summaries.
    pub fn notifications(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.notifications_log).unwrap_or_default();
        // Notify(app_name, replaces_id, icon, summary, body, ...): the summary is the 3rd string.
        let mut out = Vec::new();
        for call in text.split("method call").skip(1) {
            let strings: Vec<&str> = call
                .lines()
                .filter_map(|l| l.trim().strip_prefix("string \""))
                .map(|s| s.trim_end_matches('"'))
                .collect();
            if strings.len() >= 3 {
                out.push(strings[2].to_string());
            }
        }
        out
    }

    /// Press the button labelled `label` of the notification on screen, as a user does through
    /// dunst's context menu.
    pub fn notification_action(&self, label: &str) {
        std::fs::write(self.home.path().join("dmenu-choice"), format!("#{label} (")).unwrap();
        let ok = self
            .command("dunstctl")
            .arg("context")
            .status()
            .unwrap()
            .success();
        assert!(ok, "dunstctl context failed");
    }

    /// The raw Notify calls seen on the bus (their actions included).
    pub fn notify_calls(&self) -> String {
        std::fs::read_to_string(&self.notifications_log).unwrap_or_default()
    }

    pub fn screenshot(&self, path: &Path) {
        let _ = std::fs::create_dir_all(path.parent().unwrap());
        let ok = self
            .command("import")
            .args(["-window", "root"])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "screenshot failed");
    }
}

impl Desktop {
    /// The app's tray process (the window starts it), from the pid in its lock file.
    pub fn tray_pid(&self) -> Option<u32> {
        let lock = self.home.path().join("stigmer/data/desktop.lock");
        let mut pid = None;
        wait_for(Duration::from_secs(20), || {
            pid = std::fs::read_to_string(&lock)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
                .filter(|p| running(*p));
            pid.is_some()
        });
        pid
    }

    /// End the tray process (and so the server it started), as logging out does.
    pub fn end_tray(&self) {
        let lock = self.home.path().join("stigmer/data/desktop.lock");
        let Some(pid) = std::fs::read_to_string(lock)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .filter(|p| running(*p as u32))
        else {
            return;
        };
        unsafe { libc::kill(pid, libc::SIGTERM) };
        if !wait_for(Duration::from_secs(15), || !running(pid as u32)) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Whether `pid` runs (a zombie does not).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

impl Drop for Desktop {
    fn drop(&mut self) {
        self.end_tray();
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One item of a dbusmenu layout: (id, label, toggle-state).
#[derive(Debug, Clone, PartialEq)]
pub struct MenuItem {
    pub id: i32,
    pub label: String,
    pub checked: Option<bool>,
    pub enabled: bool,
}

/// Parse `gdbus`'s text of com.canonical.dbusmenu.GetLayout.
pub fn parse_layout(text: &str) -> Vec<MenuItem> {
    let mut items = Vec::new();
    for part in text.split("<(").skip(1) {
        let Some((id, rest)) = part.split_once(',') else {
            continue;
        };
        let Ok(id) = id.trim().parse::<i32>() else {
            continue;
        };
        let props = rest.split("}, [").next().unwrap_or("");
        let label = props
            .split("'label': <'")
            .nth(1)
            .and_then(|s| s.split("'>").next())
            .unwrap_or("")
            .replace('_', "");
        let checked = props
            .split("'toggle-state': <")
            .nth(1)
            .and_then(|s| s.chars().next())
            .map(|c| c == '1');
        let enabled = !props.contains("'enabled': <false>");
        items.push(MenuItem {
            id,
            label,
            checked,
            enabled,
        });
    }
    items
}

/// The app's tray menu, read over D-Bus: (bus name, menu path).
pub fn tray_menu_address(d: &Desktop) -> (String, String) {
    let mut found = None;
    assert!(
        wait_for(Duration::from_secs(15), || {
            let items = d.gdbus(&[
                "call",
                "--session",
                "--dest",
                "org.kde.StatusNotifierWatcher",
                "--object-path",
                "/StatusNotifierWatcher",
                "--method",
                "org.freedesktop.DBus.Properties.Get",
                "org.kde.StatusNotifierWatcher",
                "RegisteredStatusNotifierItems",
            ]);
            // e.g. (<['sender/org/ayatana/NotificationItem/...']>,)
            found = items
                .split('\'')
                .find(|s| s.starts_with(':'))
                .map(str::to_string);
            found.is_some()
        }),
        "the app's tray item never registered"
    );
    let bus = found.unwrap();
    // Registered by bus name alone (libayatana-appindicator): find the object that serves
    // com.canonical.dbusmenu.
    let tree = d.gdbus(&[
        "introspect",
        "--session",
        "--dest",
        &bus,
        "--object-path",
        "/",
        "--recurse",
    ]);
    let mut node = None;
    let mut menu_path = None;
    for line in tree.lines() {
        let line = line.trim();
        if let Some(p) = line.strip_prefix("node ") {
            node = Some(p.trim_end_matches(" {").trim().to_string());
        }
        if line.starts_with("interface com.canonical.dbusmenu") {
            menu_path = node.clone();
            break;
        }
    }
    (
        bus,
        menu_path.unwrap_or_else(|| panic!("no dbusmenu object in {tree}")),
    )
}

pub fn tray_layout(d: &Desktop, addr: &(String, String)) -> Vec<MenuItem> {
    parse_layout(&d.gdbus(&[
        "call",
        "--session",
        "--dest",
        &addr.0,
        "--object-path",
        &addr.1,
        "--method",
        "com.canonical.dbusmenu.GetLayout",
        "--",
        "0",
        "-1",
        "[]",
    ]))
}

pub fn tray_click(d: &Desktop, addr: &(String, String), label: &str) {
    let item = tray_layout(d, addr)
        .into_iter()
        .find(|i| i.label.starts_with(label))
        .unwrap_or_else(|| panic!("no tray item {label}"));
    d.gdbus(&[
        "call",
        "--session",
        "--dest",
        &addr.0,
        "--object-path",
        &addr.1,
        "--method",
        "com.canonical.dbusmenu.Event",
        "--",
        &item.id.to_string(),
        "clicked",
        "<int32 0>",
        "0",
    ]);
}

/// Ask a window to close, as a window manager's close button does (WM_DELETE_WINDOW).
pub fn close_window(d: &Desktop, name: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/desktop/close_window.py");
    // Debian's python3, where python3-xlib is (not a virtualenv's or pyenv's).
    let ok = d
        .command("/usr/bin/python3")
        .arg(script)
        .arg(name)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "could not ask the window {name:?} to close (python3-xlib)"
    );
}

/// Whether a window called `name` is mapped (shown) on the display.
pub fn window_shown(d: &Desktop, name: &str) -> bool {
    d.command("xdotool")
        .args(["search", "--onlyvisible", "--name", &format!("^{name}$")])
        .status()
        .is_ok_and(|s| s.success())
}

/// The app started through WebDriver: its driver and the session with its window. Every test
/// that drives the window opens it with [`Desktop::open`] (or [`Desktop::open_at`]) and ends
/// it with [`Window::close`].
pub struct Window {
    pub driver: Driver,
    pub c: fantoccini::Client,
}

impl Desktop {
    /// Start the app under WebDriver with `env` (nothing awaited).
    pub async fn session(&self, env: &[(&str, &str)]) -> Window {
        let (driver, port) = self.driver(env);
        let c = connect(port).await;
        Window { driver, c }
    }

    /// Start the app under WebDriver with `env`, and wait until its window shows the server
    /// running.
    pub async fn open(&self, env: &[(&str, &str)]) -> Window {
        self.open_at(env, "server-state", "Running").await
    }

    /// Start the app under WebDriver with `env`, and wait until the element `id` shows `want`.
    pub async fn open_at(&self, env: &[(&str, &str)], id: &str, want: &str) -> Window {
        let w = self.session(env).await;
        page::wait_text(&w.c, id, want).await;
        w
    }

    /// The API of the server the app started.
    pub fn api(&self) -> page::ServerApi {
        page::ServerApi::of(self).expect("the app started a server")
    }
}

impl Window {
    /// End the session and the driver (the window goes with them), then the tray process.
    pub async fn close(self, d: &Desktop) {
        self.close_window_only().await;
        d.end_tray();
    }

    /// End the session and the driver: the window's process ends, the tray process stays.
    pub async fn close_window_only(mut self) {
        let _ = self.c.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A WebDriver session with the app (tauri-driver on `port` starts it).
pub async fn connect(port: u16) -> fantoccini::Client {
    let caps = serde_json::json!({ "tauri:options": { "application": APP } });
    let mut last = None;
    // WebKitWebDriver can refuse the very first session while it starts: try again.
    for _ in 0..3 {
        // Plain HTTP on loopback: no TLS needed to talk to tauri-driver.
        match fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(caps.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        {
            Ok(c) => return c,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("no WebDriver session with the app: {last:?}");
}
