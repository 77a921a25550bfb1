//! The sandbox's network policy as clients see it: the policy, the hosts the user allowed,
//! and the connections refused lately (the window offers to allow their host).

use serde::{Deserialize, Serialize};

/// What a sandbox container may reach (`sandbox.network`). Read from JSON as from the config
/// file (`bridge`, its old name, is `open`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum NetworkPolicy {
    /// The engine's default bridge: anything (package installs, git clone).
    #[default]
    Open,
    /// No network at all.
    None,
    /// Only the hosts the user listed, over HTTP and HTTPS, through stigmer's proxy.
    Allowlist,
}

impl NetworkPolicy {
    pub const ALL: [NetworkPolicy; 3] = [
        NetworkPolicy::Open,
        NetworkPolicy::None,
        NetworkPolicy::Allowlist,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkPolicy::Open => "open",
            NetworkPolicy::None => "none",
            NetworkPolicy::Allowlist => "allowlist",
        }
    }

    /// `open`, `none` or `allowlist` (`bridge`, its old name, is `open`).
    pub fn parse(raw: &str) -> Option<NetworkPolicy> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "open" | "bridge" => Some(NetworkPolicy::Open),
            "none" => Some(NetworkPolicy::None),
            "allowlist" => Some(NetworkPolicy::Allowlist),
            _ => None,
        }
    }

    /// How the window and the tray name it.
    pub fn label(self) -> &'static str {
        match self {
            NetworkPolicy::Open => "Open (any host)",
            NetworkPolicy::None => "No network",
            NetworkPolicy::Allowlist => "Only allowed hosts",
        }
    }
}

impl TryFrom<String> for NetworkPolicy {
    type Error = String;
    fn try_from(raw: String) -> Result<NetworkPolicy, String> {
        NetworkPolicy::parse(&raw).ok_or_else(|| {
            format!("`{raw}` is not a valid value for sandbox.network; expected `open`, `none` or `allowlist`")
        })
    }
}

impl std::fmt::Display for NetworkPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection the allowlist policy refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedConnection {
    /// The host asked for (a name, or the raw address when one was given).
    pub host: String,
    pub port: u16,
    /// Why, in words: "not in the allowlist", "raw IP addresses are refused"...
    pub reason: String,
    /// Whether adding the host to the allowlist would let it through.
    pub can_allow: bool,
    /// The command running in that container when it happened, if one was.
    pub command: Option<String>,
    /// The workspace of the container it came from.
    pub workspace: Option<String>,
    pub time_ms: u64,
}

/// `GET /v1/sandbox/network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkView {
    pub policy: NetworkPolicy,
    /// Host names and `*.suffix` entries, as the user gave them.
    pub allow: Vec<String>,
    /// The connections refused lately, newest first.
    pub blocked: Vec<BlockedConnection>,
    /// The allowlist proxy's process, while it runs (started by the first sandbox made under
    /// the allowlist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_pid: Option<u32>,
}

/// `POST /v1/sandbox/network`: change the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkChange {
    pub policy: NetworkPolicy,
}

/// `POST /v1/sandbox/network/allow` and `.../disallow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostBody {
    pub host: String,
}

/// Check one allowlist entry: a host name (`pypi.org`) or `*.suffix` (`*.github.com`, its
/// subdomains). Returns it normalized (lowercase, no final dot), or why it is refused.
pub fn validate_allow_entry(raw: &str) -> Result<String, String> {
    let entry = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    if entry.is_empty() {
        return Err("an empty entry allows nothing; give a host name such as pypi.org".into());
    }
    if entry.contains("://") || entry.contains('/') {
        return Err(format!(
            "it looks like a URL; give the host name only, such as {}",
            host_of_url(&entry).unwrap_or("example.com")
        ));
    }
    let name = match entry.strip_prefix("*.") {
        Some(suffix) => {
            if !suffix.contains('.') {
                return Err("it would allow a whole top-level domain; name a domain, such as *.example.com".to_string());
            }
            suffix
        }
        None if entry.contains('*') => {
            return Err("`*` is only allowed as `*.domain` (every subdomain of it); for any host choose the open network".to_string())
        }
        None => entry.as_str(),
    };
    if is_numeric_host(name) || name.trim_matches(['[', ']']).contains(':') {
        return Err("addresses and ports are not allowed, only host names (connections go to ports 80 and 443)".to_string());
    }
    if name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(
            "not a host name (letters, digits, `-` and dots, such as pypi.org)".to_string(),
        );
    }
    Ok(entry)
}

/// Whether a host name is an address in disguise: a URL parser, `curl` and `getaddrinfo` read
/// a name whose last label is a number (`2130706433`, `127.1`, `0x7f000001`, `10.1`, `0177.1`)
/// as an IPv4 address, and an IPv6 literal is an address too.
pub fn is_numeric_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() || bare.contains(':') {
        return true;
    }
    let last = host.rsplit('.').next().unwrap_or("");
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    let lower = last.to_ascii_lowercase();
    digits(&lower, 10)
        || lower
            .strip_prefix("0x")
            .is_some_and(|h| h.is_empty() || digits(h, 16))
}

fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn host_of_url(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest.split(['/', ':', '?', '#']).next()?;
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_normalized_or_refused_with_the_entry_named() {
        assert_eq!(validate_allow_entry(" PyPI.org. ").unwrap(), "pypi.org");
        assert_eq!(
            validate_allow_entry("*.GitHub.com").unwrap(),
            "*.github.com"
        );
        for (bad, says) in [
            ("", "empty"),
            ("   ", "empty"),
            ("*", "`*`"),
            ("*.com", "top-level"),
            ("https://pypi.org/simple", "pypi.org"),
            ("pypi.org/simple", "URL"),
            ("10.0.0.1", "addresses"),
            ("2886795266", "addresses"),
            ("10.1", "addresses"),
            ("127.1", "addresses"),
            ("0x7f000001", "addresses"),
            ("0X7F.1", "addresses"),
            ("0177.0.0.1", "addresses"),
            ("*.10.1", "addresses"),
            ("pypi.org:8080", "ports"),
            ("[::1]", "addresses"),
            ("a..b", "not a host name"),
            ("-a.com", "not a host name"),
            ("foo*.com", "`*`"),
            ("white space.com", "not a host name"),
        ] {
            let e = validate_allow_entry(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn policies_parse_with_the_old_name() {
        assert_eq!(NetworkPolicy::parse("bridge"), Some(NetworkPolicy::Open));
        assert_eq!(
            NetworkPolicy::parse(" AllowList"),
            Some(NetworkPolicy::Allowlist)
        );
        assert_eq!(NetworkPolicy::parse("some"), None);
    }
}
