//! Which tools the user has, and which the sandbox images provide.
//!
//! Detection looks each tool up on the user's PATH (the `which` crate) and asks it for its
//! version, all probes in parallel with a short timeout. A desktop app started from a launcher
//! gets a minimal PATH, so when stigmer did not come from a terminal the PATH of the user's
//! login shell is used instead (see [`user_path`]).

pub use stigmer_protocol::status::{ToolInfo, ToolReport};

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// How long one `--version` probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A tool stigmer knows about.
#[derive(Debug, Clone, Copy)]
pub struct CatalogEntry {
    pub name: &'static str,
    pub binary: &'static str,
    pub version_args: &'static [&'static str],
    pub category: &'static str,
    /// Installed by `sandbox/Dockerfile.sandbox.basic`.
    pub in_basic: bool,
    /// Installed by `sandbox/Dockerfile.sandbox.full`.
    pub in_full: bool,
}

const fn tool(
    name: &'static str,
    version_args: &'static [&'static str],
    category: &'static str,
    in_basic: bool,
    in_full: bool,
) -> CatalogEntry {
    CatalogEntry {
        name,
        binary: name,
        version_args,
        category,
        in_basic,
        in_full,
    }
}

/// The tools the three tiers are about. The basic/full columns must match the Dockerfiles in
/// `sandbox/`.
pub const CATALOG: &[CatalogEntry] = &[
    tool("bash", &["--version"], "shell", true, true),
    tool("git", &["--version"], "vcs", true, true),
    tool("curl", &["--version"], "network", true, true),
    tool("jq", &["--version"], "data", true, true),
    tool("python3", &["--version"], "language", true, true),
    tool("pip", &["--version"], "language", true, true),
    tool("node", &["--version"], "language", true, true),
    tool("npm", &["--version"], "language", true, true),
    tool("go", &["version"], "language", false, true),
    tool("rustc", &["--version"], "language", false, true),
    tool("cargo", &["--version"], "language", false, true),
    tool("java", &["-version"], "language", false, false),
    tool("docker", &["--version"], "containers", false, true),
    tool("podman", &["--version"], "containers", false, false),
    tool("aws", &["--version"], "cloud", false, true),
    tool("gcloud", &["--version"], "cloud", false, true),
    tool("az", &["version"], "cloud", false, true),
    tool(
        "kubectl",
        &["version", "--client"],
        "kubernetes",
        false,
        true,
    ),
    tool("helm", &["version", "--short"], "kubernetes", false, true),
    tool("k9s", &["version", "--short"], "kubernetes", false, true),
    tool("terraform", &["-version"], "infrastructure", false, true),
    tool("pulumi", &["version"], "infrastructure", false, true),
];

/// The oldest version of each basic-tier tool the basic image may have (what its `--version`
/// must report at least): supported releases only (Python 3.11+, Node.js 22 LTS or newer).
pub const BASIC_MIN_VERSIONS: &[(&str, &str)] = &[
    ("bash", "5.1"),
    ("git", "2.39"),
    ("curl", "7.88"),
    ("jq", "1.6"),
    ("python3", "3.11"),
    ("pip", "23.0"),
    ("node", "22.0"),
    ("npm", "10.0"),
];

/// The first dotted number in a `--version` output (`jq-1.6` gives 1.6, `v24.11.1` gives
/// 24.11.1), as numbers.
pub fn version_numbers(output: &str) -> Option<Vec<u64>> {
    let start = output.find(|c: char| c.is_ascii_digit())?;
    let rest = &output[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let parts: Vec<u64> = rest[..end]
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    (!parts.is_empty()).then_some(parts)
}

/// Whether `output` reports at least version `min`.
pub fn at_least(output: &str, min: &str) -> bool {
    match (version_numbers(output), version_numbers(min)) {
        (Some(have), Some(want)) => have >= want,
        _ => false,
    }
}

/// Detect every tool in [`CATALOG`] on `path`, probing versions in parallel.
pub async fn detect(path: &OsStr, path_from_login_shell: bool) -> ToolReport {
    let started = Instant::now();
    let probes: Vec<_> = CATALOG
        .iter()
        .map(|entry| {
            let path = path.to_os_string();
            let entry = *entry;
            tokio::spawn(async move { detect_one(entry, &path).await })
        })
        .collect();
    let mut tools = Vec::with_capacity(probes.len());
    for p in probes {
        if let Ok(info) = p.await {
            tools.push(info);
        }
    }
    ToolReport {
        detected_at: crate::util::now_secs(),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        path_from_login_shell,
        tools,
    }
}

async fn detect_one(entry: CatalogEntry, path: &OsStr) -> ToolInfo {
    let cwd = std::env::temp_dir();
    let found = which::which_in(entry.binary, Some(path), &cwd).ok();
    let version = match &found {
        Some(bin) => probe_version(bin, entry.version_args, path).await,
        None => None,
    };
    ToolInfo {
        name: entry.name.to_string(),
        category: entry.category.to_string(),
        found: found.is_some(),
        path: found,
        version,
        in_basic: entry.in_basic,
        in_full: entry.in_full,
    }
}

/// Run `bin ARGS` and pull a version number out of what it prints.
async fn probe_version(bin: &std::path::Path, args: &[&str], path: &OsStr) -> Option<String> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().ok()?;
    let mut stdout = child.stdout.take()?;
    let mut stderr = child.stderr.take()?;
    let read = async {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let mut stdout = (&mut stdout).take(64 * 1024);
        let mut stderr = (&mut stderr).take(64 * 1024);
        let _ = tokio::join!(stdout.read_to_end(&mut o), stderr.read_to_end(&mut e));
        let _ = child.wait().await;
        o.extend_from_slice(b"\n");
        o.extend_from_slice(&e);
        o
    };
    let text = tokio::time::timeout(PROBE_TIMEOUT, read).await.ok()?;
    extract_version(&String::from_utf8_lossy(&text))
}

/// The first thing that looks like a version (`1.2`, `v20.1.0`, `3.11.7`) in `text`.
pub fn extract_version(text: &str) -> Option<String> {
    for word in text.split(|c: char| c.is_whitespace() || "(),;\"'".contains(c)) {
        let w = word.trim_start_matches(|c: char| c.is_ascii_alphabetic() || "/:-_".contains(c));
        let w = w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        let mut parts = w.split('.');
        let first_ok = parts
            .next()
            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if first_ok
            && w.contains('.')
            && w.split('.')
                .nth(1)
                .is_some_and(|p| p.starts_with(|c: char| c.is_ascii_digit()))
        {
            return Some(w.to_string());
        }
    }
    None
}

/// The PATH commands and tool detection use, and whether it came from the login shell.
///
/// From a terminal, the process PATH is the user's. From a desktop launcher it is minimal, so
/// the login shell's PATH comes first, followed by any entry of the process PATH it lacks.
pub fn user_path() -> &'static (OsString, bool) {
    static PATH: OnceLock<(OsString, bool)> = OnceLock::new();
    PATH.get_or_init(|| {
        let current = std::env::var_os("PATH").unwrap_or_default();
        if launched_from_terminal() {
            return (current, false);
        }
        match login_shell_path() {
            Some(login) => (merge_paths(&login, &current), true),
            None => (current, false),
        }
    })
}

fn launched_from_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
        || std::io::stderr().is_terminal()
        || std::env::var_os("TERM").is_some_and(|t| !t.is_empty() && t != "dumb")
}

#[cfg(unix)]
fn login_shell_path() -> Option<OsString> {
    use std::io::Read;
    let shell = std::env::var_os("SHELL")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| OsString::from("/bin/sh"));
    let mut child = std::process::Command::new(&shell)
        .args(["-l", "-c", "printf '%s' \"$PATH\""])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // A login shell that hangs (a prompt in a profile) must not hang stigmer.
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    // Profiles may print banners: the PATH is the last line.
    let path = out.lines().last()?.trim().to_string();
    (!path.is_empty()).then(|| OsString::from(path))
}

#[cfg(not(unix))]
fn login_shell_path() -> Option<OsString> {
    None
}

/// `first` then the entries of `second` that `first` lacks.
pub fn merge_paths(first: &OsStr, second: &OsStr) -> OsString {
    let mut entries: Vec<PathBuf> = std::env::split_paths(first).collect();
    for p in std::env::split_paths(second) {
        if !entries.contains(&p) {
            entries.push(p);
        }
    }
    std::env::join_paths(entries).unwrap_or_else(|_| first.to_os_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_found_in_typical_output() {
        let cases = [
            ("git version 2.47.3", "2.47.3"),
            ("v20.20.2", "20.20.2"),
            ("Python 3.11.7", "3.11.7"),
            ("openjdk version \"17.0.15\" 2025-04-15", "17.0.15"),
            ("go version go1.22.1 linux/amd64", "1.22.1"),
            ("aws-cli/2.15.0 Python/3.11.6 Linux", "2.15.0"),
            ("Terraform v1.9.5\non linux_amd64", "1.9.5"),
            ("pip 23.2.1 from /x (python 3.11)", "23.2.1"),
            ("jq-1.6", "1.6"),
        ];
        for (text, want) in cases {
            assert_eq!(extract_version(text).as_deref(), Some(want), "{text}");
        }
        assert_eq!(extract_version("no version here"), None);
    }

    #[test]
    fn catalog_covers_the_tiers() {
        for name in [
            "python3",
            "pip",
            "node",
            "npm",
            "git",
            "curl",
            "jq",
            "bash",
            "docker",
            "podman",
            "go",
            "rustc",
            "cargo",
            "java",
            "aws",
            "gcloud",
            "az",
            "kubectl",
            "helm",
            "k9s",
            "terraform",
            "pulumi",
        ] {
            assert!(CATALOG.iter().any(|e| e.name == name), "{name} missing");
        }
        assert!(
            CATALOG.iter().all(|e| !e.in_basic || e.in_full),
            "full is a superset of basic"
        );
    }

    /// The catalog's "provided by basic / full" columns say what the Dockerfiles install.
    #[test]
    fn catalog_matches_the_dockerfiles() {
        let basic = include_str!("../../../sandbox/Dockerfile.sandbox.basic");
        let full = include_str!("../../../sandbox/Dockerfile.sandbox.full");
        // The full image's last step prints every tool's version: one line per tool it has.
        let smoke = &full[full
            .rfind("RUN set -eux")
            .expect("the full image's smoke test")..];
        for e in CATALOG {
            let in_smoke = smoke
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{} ", e.name)));
            assert_eq!(
                in_smoke, e.in_full,
                "{}: full column vs Dockerfile.sandbox.full",
                e.name
            );
            let in_basic = match e.name {
                // From the official Python base image.
                "python3" | "pip" => basic.contains("ARG PYTHON_IMAGE=python:3.12"),
                // The official build's binary and npm, from the official Node.js image.
                "node" => basic.contains("COPY --from=node /usr/local/bin/node "),
                "npm" => basic.contains("COPY --from=node /usr/local/lib/node_modules/npm "),
                name => basic.lines().any(|l| l.trim() == format!("{name} \\")),
            };
            assert_eq!(
                BASIC_MIN_VERSIONS.iter().any(|(n, _)| *n == e.name),
                e.in_basic,
                "{}: every basic tool has a minimum version, and only they",
                e.name
            );
            assert_eq!(
                in_basic, e.in_basic,
                "{}: basic column vs Dockerfile.sandbox.basic",
                e.name
            );
        }
    }

    #[test]
    fn versions_are_read_from_what_tools_print() {
        assert!(at_least("jq-1.6", "1.6"));
        assert!(at_least("v24.11.1", "22.0"));
        assert!(!at_least("v18.19.0", "22.0"));
        assert!(at_least("Python 3.11.2", "3.11"));
        assert!(!at_least("Python 3.10.12", "3.11"));
        assert!(at_least(
            "pip 23.0.1 from /usr/lib/python3/dist-packages/pip (python 3.11)",
            "23.0"
        ));
        assert!(!at_least("no version here", "1.0"));
        assert!(at_least("GNU bash, version 5.2.15(1)-release", "5.1"));
    }

    #[test]
    fn merge_keeps_order_without_duplicates() {
        let merged = merge_paths(OsStr::new("/a:/b"), OsStr::new("/b:/c"));
        assert_eq!(merged, OsString::from("/a:/b:/c"));
    }

    #[tokio::test]
    async fn detects_a_real_tool() {
        let (path, _) = user_path();
        let report = detect(path, false).await;
        let sh = report.tools.iter().find(|t| t.name == "bash").unwrap();
        assert!(sh.found);
        assert!(sh.version.is_some());
        assert_eq!(report.tools.len(), CATALOG.len());
    }
}
