//! Reading a proxy request: which host and port it asks for, and for plain HTTP the exact
//! bytes to send upstream. The host checked is the host reached: a `Host` header naming
//! another is refused, and only one request (its head and its declared body) is forwarded per
//! connection, so a second request pipelined behind it cannot name another host.

/// What a client asked for.
#[derive(Debug)]
pub(super) struct Target {
    pub host: String,
    pub port: u16,
    /// For plain HTTP: the head to send upstream (origin-form) and how many body bytes follow
    /// it; nothing past those is forwarded.
    pub forward: Option<(Vec<u8>, u64)>,
}

pub(super) fn parse(head: &[u8]) -> Result<Target, String> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("not an HTTP proxy request".into()),
    }
    let (method, path) = (req.method.unwrap_or(""), req.path.unwrap_or(""));
    let named = values(req.headers, "host");
    if named.len() > 1 {
        return Err("two Host headers".into());
    }
    let same_host = |host: &str, default: u16| -> Result<(), String> {
        let Some(value) = named.first() else {
            return Ok(());
        };
        let (h, _) = host_port(value.trim(), default)?;
        if h.trim_end_matches('.') == host.trim_end_matches('.') {
            Ok(())
        } else {
            Err(format!(
                "the request is for {host} but its Host header names {h}: a request goes only \
                 to the host it names"
            ))
        }
    };
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = host_port(path, 443)?;
        same_host(&host, port)?;
        return Ok(Target {
            host,
            port,
            forward: None,
        });
    }
    let Some(rest) = path.strip_prefix("http://") else {
        return Err(format!(
            "`{path}`: a proxy request names its URL in full (http://host/path), or uses CONNECT"
        ));
    };
    let (authority, origin) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let (host, port) = host_port(authority, 80)?;
    same_host(&host, port)?;
    let body = body_length(req.headers)?;
    let mut out = format!("{method} {origin} HTTP/1.1\r\n").into_bytes();
    // The Host sent is the one checked.
    let authority = match (host.contains(':'), port) {
        (true, 80) => format!("[{host}]"),
        (true, p) => format!("[{host}]:{p}"),
        (false, 80) => host.clone(),
        (false, p) => format!("{host}:{p}"),
    };
    out.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if name.starts_with("proxy-")
            || name == "connection"
            || name == "keep-alive"
            || name == "host"
        {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    // One request per upstream connection: a next request may be for another host.
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(Target {
        host,
        port,
        forward: Some((out, body)),
    })
}

/// The values of header `name`, as text (a value that is not text is kept lossily: it then
/// matches nothing).
fn values(headers: &[httparse::Header], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
        .collect()
}

/// How many body bytes follow a plain-HTTP request head. A body sent in chunks is refused:
/// its end is where the next (unchecked) request would begin.
fn body_length(headers: &[httparse::Header]) -> Result<u64, String> {
    if !values(headers, "transfer-encoding").is_empty() {
        return Err(
            "a request body sent in chunks (Transfer-Encoding) is not forwarded over plain \
             HTTP: send it with a Content-Length, or use HTTPS"
                .into(),
        );
    }
    let lengths = values(headers, "content-length");
    let mut found: Option<u64> = None;
    for v in &lengths {
        let n: u64 = v
            .trim()
            .parse()
            .map_err(|_| format!("`{v}` is not a Content-Length"))?;
        if found.is_some_and(|f| f != n) {
            return Err("two different Content-Length headers".into());
        }
        found = Some(n);
    }
    Ok(found.unwrap_or(0))
}

/// `host[:port]` or `[v6]:port`.
pub(super) fn host_port(authority: &str, default: u16) -> Result<(String, u16), String> {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("an unclosed [ in the host")?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("`{p}` is not a port"))?,
        None => default,
    };
    if host.is_empty() {
        return Err("no host named".into());
    }
    // A host name or an address, nothing else (no `*`, no spaces, no 60 KB names): what is
    // refused is reported, and the window may offer to allow it.
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    if host.len() > 253 || !host.chars().all(ok) {
        return Err("that is not a host name".into());
    }
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(t: Target) -> (String, u64) {
        let (head, body) = t.forward.unwrap();
        (String::from_utf8(head).unwrap(), body)
    }

    #[test]
    fn requests_are_read_as_their_target() {
        let t = parse(b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.forward.is_none()),
            ("pypi.org", 443, true)
        );
        let t = parse(
            b"GET http://Example.com/a?b HTTP/1.1\r\nHost: example.com\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!((t.host.as_str(), t.port), ("example.com", 80));
        assert_eq!(
            forwarded(t),
            (
                "GET /a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nConnection: close\r\n\r\n"
                    .to_string(),
                0
            )
        );
        // Fronting: the Host header must name the host of the request line.
        for bad in [
            &b"GET http://allowed.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n"[..],
            b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: other.test:443\r\n\r\n",
            b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nHost: other.test\r\n\r\n",
        ] {
            let e = parse(bad).err().unwrap();
            assert!(e.contains("Host"), "{e}");
        }
        // No Host: the checked one is sent.
        let t = parse(b"GET http://allowed.test:80/x HTTP/1.1\r\n\r\n").unwrap();
        assert!(forwarded(t)
            .0
            .starts_with("GET /x HTTP/1.1\r\nHost: allowed.test\r\n"));
        let t = parse(b"GET http://[::1]:8080 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
        let t = parse(b"GET http://a.com?x=1 HTTP/1.1\r\n\r\n").unwrap();
        assert!(forwarded(t).0.starts_with("GET /?x=1 "));
        for bad in [
            &b"GET /local HTTP/1.1\r\n\r\n"[..],
            b"GET https://a.com/ HTTP/1.1\r\n\r\n",
            b"CONNECT a.com:x HTTP/1.1\r\n\r\n",
            b"CONNECT *.github.io:443 HTTP/1.1\r\n\r\n",
            b"GET http://a%20b.com/ HTTP/1.1\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_plain_request_forwards_its_declared_body_and_nothing_more() {
        let t = parse(b"POST http://a.test/up HTTP/1.1\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(forwarded(t).1, 5);
        let t = parse(
            b"POST http://a.test/up HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
        )
        .unwrap();
        assert_eq!(forwarded(t).1, 5);
        for bad in [
            &b"POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST http://a.test/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST http://a.test/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
