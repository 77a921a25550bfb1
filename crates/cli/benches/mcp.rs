//! The MCP round trip, side by side in one run: `run_command` for a trivial command over stdio
//! (`stigmer mcp`) and over Streamable HTTP (`/mcp`), against the plain HTTP API run and a
//! direct spawn. Same server, same command, interleaved so drift hits every side alike.
//!
//! `cargo bench -p stigmer-cli --bench mcp [-- --quick]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::measure::*;
use common::{TestEnv, BIN};
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::ServiceExt;
use serde_json::json;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 60 } else { 400 };
    let env = TestEnv::new();
    let rt = runtime();
    let mut server = env.start_server();

    let (mut direct, mut api, mut stdio, mut http) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let stdio_connect = rt.block_on(async {
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("stigmer-bench", "1"),
        );
        let t = Instant::now();
        let child = TokioChildProcess::new(tokio::process::Command::new(BIN).configure(|c| {
            c.arg("mcp")
                .env("STIGMER_HOME", env.home())
                .current_dir("/tmp")
                .stderr(Stdio::null());
        }))
        .unwrap();
        let over_stdio = info.clone().serve(child).await.unwrap();
        let stdio_connect = t.elapsed();
        let over_http = info
            .serve(StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", server.url))
                    .auth_header(server.token.clone()),
            ))
            .await
            .unwrap();
        let client = server.client();
        let call = || {
            CallToolRequestParams::new("run_command").with_arguments(
                json!({"argv": ["true"], "cwd": "/tmp"})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
        };
        let body = || json!({"argv": ["true"], "cwd": "/tmp"});
        for _ in 0..20 {
            over_stdio.call_tool(call()).await.unwrap();
            over_http.call_tool(call()).await.unwrap();
            server.run_counted_frames(&client, body()).await;
        }
        for _ in 0..n {
            direct.push(direct_true().await);

            let t = Instant::now();
            let (_, code) = server.run_counted_frames(&client, body()).await;
            assert_eq!(code, 0);
            api.push(t.elapsed());

            let t = Instant::now();
            let r = over_stdio.call_tool(call()).await.unwrap();
            assert_eq!(r.structured_content.unwrap()["exit_code"], 0);
            stdio.push(t.elapsed());

            let t = Instant::now();
            let r = over_http.call_tool(call()).await.unwrap();
            assert_eq!(r.structured_content.unwrap()["exit_code"], 0);
            http.push(t.elapsed());
        }
        over_stdio.cancel().await.unwrap();
        over_http.cancel().await.unwrap();
        stdio_connect
    });
    server.stop();

    let row = |name: &str, v: &mut Vec<Duration>, base: Duration| {
        let (m, p) = (median(v), p99(v));
        let added = m.as_secs_f64() * 1000.0 - base.as_secs_f64() * 1000.0;
        println!(
            "| {name} | {} | {} | {added:+.2} ms |",
            fmt_ms(m),
            fmt_ms(p)
        );
    };
    let api_median = median(&mut api);
    println!(
        "\nMCP round trip of a trivial command (`true`), n={n}, {}",
        kernel()
    );
    println!("| path | median | p99 | vs plain HTTP API run |");
    println!("|---|---|---|---|");
    row("direct spawn (no stigmer)", &mut direct, api_median);
    row(
        "plain HTTP API run (`POST /v1/runs`, binary frames)",
        &mut api,
        api_median,
    );
    row(
        "MCP `run_command` over stdio (`stigmer mcp` → server)",
        &mut stdio,
        api_median,
    );
    row(
        "MCP `run_command` over Streamable HTTP (`/mcp`)",
        &mut http,
        api_median,
    );
    println!(
        "\n`stigmer mcp` start to initialized (server already running): {}",
        fmt_ms(stdio_connect)
    );
}
