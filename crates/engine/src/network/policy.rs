//! The allowlist's decisions, as pure functions: may a sandbox connect to HOST:PORT, and to
//! which of the addresses the name resolves to. The proxy asks these before any packet leaves;
//! the tests check the metadata and private-range rules here, never by sending packets there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The ports a sandbox may reach through the proxy: HTTP and HTTPS.
pub const PORTS: [u16; 2] = [80, 443];

/// Names of cloud metadata services: refused whatever the list says.
const METADATA_NAMES: [&str; 4] = [
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
];

/// How a host matched the allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// Listed by its own name: the user meant this host, even on a private network.
    Exact,
    /// Through a `*.suffix` entry: public addresses only.
    Suffix,
}

/// Why a connection is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: String,
    /// Whether allowing the host (adding it to the list) would let it through.
    pub can_allow: bool,
}

fn refused(reason: impl Into<String>, can_allow: bool) -> Refused {
    Refused {
        reason: reason.into(),
        can_allow,
    }
}

/// May a sandbox connect to `host:port`, given the user's `allow` list (validated entries)?
/// Decided on the name, before it is resolved.
pub fn decide(host: &str, port: u16, allow: &[String]) -> Result<Matched, Refused> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if stigmer_protocol::network::is_numeric_host(&host) {
        return Err(refused(
            "raw IP addresses are refused (and numbers that name one, such as 2130706433 or \
             127.1): only host names in the allowlist",
            false,
        ));
    }
    if METADATA_NAMES.contains(&host.as_str()) {
        return Err(refused(
            "cloud metadata services are never reachable",
            false,
        ));
    }
    if !PORTS.contains(&port) {
        return Err(refused(
            format!("port {port}: only ports 80 (HTTP) and 443 (HTTPS) go out"),
            false,
        ));
    }
    let mut matched = None;
    for entry in allow {
        if *entry == host {
            return Ok(Matched::Exact);
        }
        if let Some(suffix) = entry.strip_prefix("*.") {
            if host.len() > suffix.len()
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            {
                matched = Some(Matched::Suffix);
            }
        }
    }
    matched.ok_or_else(|| refused("not in the allowlist", true))
}

/// May the proxy connect to `ip` for a host that matched as `matched`? Loopback, link-local
/// (the cloud metadata address among them), multicast and unspecified addresses: never.
/// Private ranges: only for a host the user listed by its exact name.
pub fn check_address(ip: IpAddr, matched: Matched) -> Result<(), Refused> {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    if never(ip) {
        return Err(refused(
            format!(
                "it resolves to {ip}, an address of this computer or its cloud, never reachable"
            ),
            false,
        ));
    }
    if private(ip) && matched != Matched::Exact {
        return Err(refused(
            format!(
                "it resolves to {ip}, a private address: only hosts listed by their exact name may"
            ),
            true,
        ));
    }
    Ok(())
}

fn never(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets()[0] == 0
                // Alibaba Cloud's metadata service.
                || v4 == Ipv4Addr::new(100, 100, 100, 200)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                // AWS's IPv6 metadata service.
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                // Carrier-grade NAT and the benchmarking range.
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
        }
        // Unique local addresses.
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn names_match_exactly_or_as_subdomains_of_a_suffix() {
        let allow = list(&["pypi.org", "*.github.com"]);
        assert_eq!(decide("pypi.org", 443, &allow), Ok(Matched::Exact));
        assert_eq!(decide("PyPI.org.", 80, &allow), Ok(Matched::Exact));
        assert_eq!(decide("api.github.com", 443, &allow), Ok(Matched::Suffix));
        assert_eq!(decide("a.b.github.com", 443, &allow), Ok(Matched::Suffix));
        for no in [
            "github.com",
            "evilgithub.com",
            "files.pypi.org",
            "pypi.org.evil.com",
        ] {
            let e = decide(no, 443, &allow).unwrap_err();
            assert_eq!(e.reason, "not in the allowlist", "{no}");
            assert!(e.can_allow);
        }
    }

    #[test]
    fn raw_addresses_metadata_names_and_other_ports_are_refused_even_when_listed() {
        let allow = list(&["pypi.org", "metadata.google.internal", "169.254.169.254"]);
        for (host, port) in [
            ("169.254.169.254", 80),
            ("10.0.0.1", 443),
            ("[::1]", 443),
            ("::ffff:127.0.0.1", 80),
            ("metadata.google.internal", 80),
            ("pypi.org", 22),
            ("pypi.org", 8080),
        ] {
            let e = decide(host, port, &allow).unwrap_err();
            assert!(!e.can_allow, "{host}:{port} {e:?}");
        }
    }

    #[test]
    fn addresses_of_this_computer_and_its_cloud_are_never_reachable() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "100.100.100.200",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(check_address(ip, Matched::Exact).is_err(), "{ip}");
        }
    }

    #[test]
    fn numbers_that_name_an_address_are_refused_like_addresses() {
        let allow = ["2130706433".to_string(), "*.example.com".to_string()];
        for host in [
            "2130706433",
            "127.1",
            "0x7f000001",
            "10.1",
            "1.example.com.0x1",
            "[::1]",
        ] {
            let e = decide(host, 443, &allow).unwrap_err();
            assert!(e.reason.contains("raw IP"), "{host}: {}", e.reason);
            assert!(!e.can_allow, "{host}");
        }
        assert_eq!(decide("a1.example.com", 443, &allow), Ok(Matched::Suffix));
        assert!(decide("1.example.com", 443, &allow).is_ok());
    }

    #[test]
    fn private_ranges_only_for_hosts_listed_by_name() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "100.64.0.1",
            "198.18.0.1",
            "fd12::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(check_address(ip, Matched::Exact).is_ok(), "{ip}");
            let e = check_address(ip, Matched::Suffix).unwrap_err();
            assert!(e.reason.contains("private"), "{ip}");
        }
        for ip in [
            "151.101.0.223",
            "2a04:4e42::223",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(check_address(ip, Matched::Suffix).is_ok(), "{ip}");
        }
    }
}
