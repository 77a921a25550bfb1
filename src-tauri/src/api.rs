//! The desktop's client of the server's HTTP API (the same API every other client uses).

use serde::de::DeserializeOwned;
use serde_json::Value;
use stigmer_engine::discovery::{read_token, Discovery};
use stigmer_engine::paths::Paths;
use stigmer_engine::{Error, ErrorCode, Result};

#[derive(Clone)]
pub struct Api {
    pub url: String,
    pub pid: u32,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// A client for the server running for `paths`, if one runs.
    pub fn find(paths: &Paths) -> Option<Api> {
        let d = Discovery::find_running(paths)?;
        let token = read_token(paths).ok()?;
        let http = reqwest::Client::builder().no_proxy().build().ok()?;
        Some(Api {
            url: d.url.trim_end_matches('/').to_string(),
            pid: d.pid,
            token,
            http,
        })
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = rb.send().await.map_err(|e| {
            Error::new(
                ErrorCode::ServerUnavailable,
                format!("the server at {} does not answer: {e}", self.url),
            )
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let body: Value = resp.json().await.unwrap_or_default();
        Err(
            serde_json::from_value(body["error"].clone()).unwrap_or_else(|_| {
                Error::new(
                    ErrorCode::ServerUnavailable,
                    "the server answered with an error",
                )
            }),
        )
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.send(self.request(reqwest::Method::GET, path)).await?;
        resp.json()
            .await
            .map_err(|e| Error::internal(format!("unreadable answer: {e}")))
    }

    pub async fn put_mode(&self, body: &Value) -> Result<Value> {
        let resp = self
            .send(self.request(reqwest::Method::PUT, "/v1/mode").json(body))
            .await?;
        resp.json()
            .await
            .map_err(|e| Error::internal(format!("unreadable answer: {e}")))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let resp = self
            .send(self.request(reqwest::Method::POST, path).json(body))
            .await?;
        resp.json()
            .await
            .map_err(|e| Error::internal(format!("unreadable answer: {e}")))
    }

    pub async fn post(&self, path: &str) -> Result<()> {
        self.send(self.request(reqwest::Method::POST, path))
            .await
            .map(|_| ())
    }
}
