//! Choosing a sandbox tier prepares its image at once, before any command (which then waits
//! for that same download), and choosing Local again stops a download still going: against
//! the real engine and a real registry on 127.0.0.1 behind a slow proxy.

mod common;

use std::time::Duration;

use common::engine::*;
use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choosing_a_sandbox_tier_prepares_its_image_and_local_stops_it() {
    if !engine_or_skip("choosing_a_sandbox_tier_prepares_its_image") {
        return;
    }
    let local = format!("stigmer-test/prepare:{}", std::process::id());
    ensure_big_image(&local, 24);
    let registry = Registry::start();
    let pushed = registry.push(&local, &format!("stigmer/prepare-{}:1", std::process::id()));
    remove_image(&pushed);
    remove_image(&local);
    // 24 MiB at 4 MB/s: a download of several seconds.
    let slow = SlowProxy::start(registry.port, 4_000_000);
    let image = pushed.replacen(
        &format!(":{}/", registry.port),
        &format!(":{}/", slow.port),
        1,
    );

    let env = TestEnv::new();
    env.allow_work();
    let server = env.start_server();
    let c = server.client();
    let mut events = server.get(&c, "/v1/events").send().await.unwrap();
    let mut buf = Vec::new();
    let put = |body: Value| {
        c.put(format!("{}/v1/mode", server.url))
            .bearer_auth(&server.token)
            .json(&body)
            .send()
    };

    // Custom image: the download starts with the choice, no command asked for it.
    assert_eq!(
        put(json!({"mode": "sandbox", "image": image}))
            .await
            .unwrap()
            .status(),
        200
    );
    let seen = events_until(
        &mut events,
        &mut buf,
        "image_progress",
        Duration::from_secs(20),
    )
    .await;
    assert!(
        seen.iter()
            .any(|e| e["type"] == "image_started" && e["image"] == image.as_str()),
        "{seen:?}"
    );
    assert_eq!(run_count(&server, &c).await, 0, "no command ran");
    // Local again while it downloads: the download stops, and nothing was pulled.
    assert_eq!(put(json!({"mode": "local"})).await.unwrap().status(), 200);
    let seen = events_until(
        &mut events,
        &mut buf,
        "image_finished",
        Duration::from_secs(20),
    )
    .await;
    let finished = seen.last().unwrap();
    assert_eq!(finished["ok"], false, "{finished}");
    assert!(!image_exists(&image), "the download was stopped");

    // Chosen again, then a command right away: it waits for the same download, which is one.
    assert_eq!(
        put(json!({"mode": "sandbox", "image": image}))
            .await
            .unwrap()
            .status(),
        200
    );
    let body = server
        .post(&c, "/v1/runs")
        .json(&json!({"shell": "wc -c < /blob", "cwd": env.path()}))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (out, _, finished) = decode_stream(&body);
    assert_eq!(finished["run"]["outcome"]["exit_code"], 0, "{finished}");
    assert_eq!(
        String::from_utf8_lossy(&out).trim(),
        (24 * 1024 * 1024).to_string()
    );
    let seen = events_until(
        &mut events,
        &mut buf,
        "run_finished",
        Duration::from_secs(60),
    )
    .await;
    let starts = seen.iter().filter(|e| e["type"] == "image_started").count();
    assert_eq!(
        starts, 1,
        "one download for the choice and the command: {seen:?}"
    );
    remove_image(&image);
}

async fn run_count(server: &Server, c: &reqwest::Client) -> usize {
    let v: Value = server
        .get(c, "/v1/runs?limit=200")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["runs"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_stigmer_uses_are_listed_removed_and_downloaded_again() {
    if !engine_or_skip("the_images_stigmer_uses_are_listed_removed_and_downloaded_again") {
        return;
    }
    ensure_busybox();
    let registry = Registry::start();
    let image = registry.push(BUSYBOX, &format!("stigmer/images-{}:1", std::process::id()));
    let env = TestEnv::new();
    env.allow_work();
    let server = env.start_server_env(&[
        ("STIGMER_EXECUTION_MODE", "sandbox"),
        ("STIGMER_SANDBOX_IMAGE", &image),
    ]);
    let c = server.client();
    let body = server
        .post(&c, "/v1/runs")
        .json(&json!({"argv": ["true"], "cwd": env.path()}))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(decode_stream(&body).2["run"]["outcome"]["exit_code"], 0);
    let list = |c: reqwest::Client| {
        let rb = server.get(&c, "/v1/sandbox/images");
        async move { rb.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let v = list(c.clone()).await;
    let custom = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["image"] == image.as_str())
        .unwrap()
        .clone();
    assert_eq!(custom["used_for"], json!(["Custom image"]), "{v}");
    assert_eq!(custom["present"], true);
    assert!(custom["size_bytes"].as_u64().unwrap() > 0);
    assert!(custom["last_used_ms"].as_u64().is_some(), "{custom}");
    assert_eq!(custom["buildable"], false);
    assert!(v["images"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["used_for"] == json!(["Basic sandbox"])));

    // Only the images Stigmer uses: any other is refused and kept.
    let post = |path: &'static str, image: String| {
        let rb = server.post(&c, path).json(&json!({ "image": image }));
        async move {
            let r = rb.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (s, b) = post("/v1/sandbox/images/remove", BUSYBOX.to_string()).await;
    assert_eq!(s, 422, "{b}");
    assert!(image_exists(BUSYBOX));
    // Remove: its idle container first, then the image.
    let (s, b) = post("/v1/sandbox/images/remove", image.clone()).await;
    assert_eq!(s, 200, "{b}");
    assert!(!image_exists(&image));
    assert!(
        containers_for(env.path()).is_empty(),
        "its container went too"
    );
    // Download again (a custom image is never built).
    let (s, b) = post("/v1/sandbox/images/remake", image.clone()).await;
    assert_eq!(s, 202, "{b}");
    assert!(wait_until(Duration::from_secs(30), || image_exists(&image)));
    remove_image(&image);
}
