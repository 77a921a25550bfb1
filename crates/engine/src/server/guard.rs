//! Who may talk to the server: only local programs that hold the token.
//!
//! Order matters: a browser page (DNS rebinding: a foreign name resolving to 127.0.0.1, or a
//! drive-by request carrying an Origin) is refused before the token is even looked at.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::reply::ApiError;
use super::AppState;
use crate::error::{Error, ErrorCode};

pub async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Err(e) = check(&state, &req) {
        tracing::warn!(code = %e.code, path = %req.uri().path(), "request refused: {}", e.message);
        return ApiError(e).into_response();
    }
    next.run(req).await
}

fn check(state: &AppState, req: &Request) -> Result<(), Error> {
    // HTTP/1.1 (RFC 9112, 3.2): a request with more than one Host is answered 400. Looking at
    // the first only would let a foreign name ride behind a loopback one.
    if req.headers().get_all(HOST).iter().count() > 1 {
        return Err(Error::new(
            ErrorCode::InvalidHeader,
            "a request carries one Host header; this one had several",
        ));
    }
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    match host {
        Some(h) if is_loopback_host(&h) => {}
        Some(h) => {
            return Err(Error::new(
                ErrorCode::ForbiddenHost,
                format!("Host `{h}` is not a loopback name; use http://127.0.0.1:PORT"),
            ))
        }
        None => {
            return Err(Error::new(
                ErrorCode::ForbiddenHost,
                "a Host header naming 127.0.0.1, localhost or [::1] is required",
            ))
        }
    }
    // Browsers add these to every request a page makes; local programs do not.
    let from_browser = req.headers().contains_key(ORIGIN)
        || req
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() != b"none");
    if from_browser {
        return Err(Error::new(
            ErrorCode::ForbiddenOrigin,
            "requests from web pages are refused: the stigmer API is for local programs only",
        ));
    }
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match presented {
        Some(t) if constant_time_eq(t.as_bytes(), state.token.as_bytes()) => Ok(()),
        Some(_) => Err(Error::new(
            ErrorCode::Unauthorized,
            "wrong bearer token; the current one is in the token file in stigmer's data dir",
        )),
        None => Err(Error::new(
            ErrorCode::Unauthorized,
            "missing `Authorization: Bearer TOKEN`; the token is in the token file in stigmer's data dir",
        )),
    }
}

/// `127.0.0.1`, any `127.x.y.z`, `localhost`, `[::1]`, each with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || valid_port(port) => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn valid_port(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| p.parse::<u16>().is_ok())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]",
            "[::1]:9",
            "127.1.2.3:5",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "evil.com:80",
            "127.0.0.1.evil.com",
            "10.0.0.1",
            "[::2]:1",
            "localhost:x",
            "0.0.0.0",
            "::1",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
