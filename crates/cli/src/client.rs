//! A client for the running server's API.

use serde::de::DeserializeOwned;
use serde::Serialize;
use stigmer_engine::discovery::{read_token, Discovery};
use stigmer_engine::paths::Paths;
use stigmer_engine::{Error, ErrorCode, Result};

pub struct Client {
    pub discovery: Discovery,
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the running server, or None when no server runs.
    pub fn find(paths: &Paths) -> Result<Option<Client>> {
        let Some(discovery) = Discovery::find_running(paths) else {
            return Ok(None);
        };
        let token = read_token(paths)?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        Ok(Some(Client {
            base: discovery.url.trim_end_matches('/').to_string(),
            discovery,
            token,
            http,
        }))
    }

    fn unavailable(&self, e: reqwest::Error) -> Error {
        Error::new(
            ErrorCode::ServerUnavailable,
            format!(
                "the stigmer server at {} (pid {}) is not answering ({e}); check `stigmer server logs` or restart it with `stigmer server stop && stigmer server start`",
                self.base, self.discovery.pid
            ),
        )
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Send, and turn a non-2xx answer into the API's error.
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = rb.send().await.map_err(|e| self.unavailable(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        Err(api_error(status, &body))
    }

    /// Start a run (`POST /v1/runs`) and return its stream, in binary frames.
    pub async fn start_run(&self, body: &impl Serialize) -> Result<reqwest::Response> {
        self.send(
            self.request(reqwest::Method::POST, "/v1/runs")
                .header(
                    reqwest::header::ACCEPT,
                    stigmer_engine::server::frames::MEDIA_TYPE,
                )
                .json(body),
        )
        .await
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.send(self.request(reqwest::Method::GET, path)).await?;
        resp.json().await.map_err(|e| self.unavailable(e))
    }

    pub async fn send_json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T> {
        let resp = self.send(self.request(method, path).json(body)).await?;
        resp.json().await.map_err(|e| self.unavailable(e))
    }
}

/// The API's `{"error": {...}}` body as an [`Error`].
pub fn api_error(status: reqwest::StatusCode, body: &[u8]) -> Error {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        error: Error,
    }
    match serde_json::from_slice::<Wrapper>(body) {
        Ok(w) => w.error,
        Err(_) => Error::new(
            ErrorCode::ServerUnavailable,
            format!(
                "the server answered {status}: {}",
                String::from_utf8_lossy(body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        ),
    }
}
