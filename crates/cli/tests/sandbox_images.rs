//! Sandbox images against the machine's real container engine: a custom image that is missing
//! is never built, pulls from a real registry on 127.0.0.1 (progress, a dying registry), the
//! basic image built from its Dockerfile when it cannot be pulled, and cancelled downloads.
//! Without an engine these tests say SKIPPED loudly.

mod common;

use std::time::{Duration, Instant};

use common::engine::*;
use common::*;
use serde_json::{json, Value};

#[test]
fn a_missing_custom_image_is_image_not_found_and_never_built() {
    if !engine_or_skip("a_missing_custom_image_is_image_not_found") {
        return;
    }
    let env = TestEnv::new();
    let o = env
        .cmd()
        .current_dir(env.path())
        .args([
            "run",
            "--image",
            "stigmer-test/does-not-exist:1",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("IMAGE_NOT_FOUND") && err.contains("stigmer-test/does-not-exist:1"),
        "{err}"
    );
    assert!(
        err.contains("docker build -f sandbox/Dockerfile.sandbox.full"),
        "{err}"
    );
    assert!(!image_exists("stigmer-test/does-not-exist:1"));
}

/// The one-time download through a real registry: progress events, then cached. A registry
/// that dies mid-pull is a clear error, and the retry succeeds.
#[test]
fn pulls_show_progress_once_and_survive_a_dying_registry() {
    if !engine_or_skip("pulls_show_progress_once_and_survive_a_dying_registry") {
        return;
    }
    let local = format!("stigmer-test/big-{}:1", std::process::id());
    ensure_big_image(&local, 96);
    let registry = Registry::start();
    // Downloads at 16 MiB/s through a proxy that can die like a registry does.
    let proxy = SlowProxy::start(registry.port, 16 << 20);
    let image = format!(
        "127.0.0.1:{}/stigmer/big-{}:test",
        proxy.port,
        std::process::id()
    );
    let pushed = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("docker tag {local} {image} && docker push {image} >/dev/null && docker rmi {image} {local} >/dev/null"))
        .status()
        .unwrap();
    assert!(pushed.success());
    assert!(!image_exists(&image), "the pull must really download");
    let env = TestEnv::new();
    env.allow_work();
    let server = env.start_server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = server.client();
        let mut events = server.get(&client, "/v1/events").send().await.unwrap();
        // Kill the registry as soon as bytes flow.
        let run = {
            let rb = server.post(&client, "/v1/runs").json(&json!({"argv": ["true"], "cwd": env.path(), "mode": "sandbox", "image": image}));
            tokio::spawn(async move { rb.send().await.unwrap().bytes().await.unwrap() })
        };
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        'watch: loop {
            assert!(Instant::now() < deadline, "no download progress: {seen:?}");
            let chunk = tokio::time::timeout(Duration::from_secs(60), events.chunk()).await.unwrap().unwrap().unwrap();
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let v: Value = serde_json::from_slice(&buf.drain(..=nl).collect::<Vec<u8>>()).unwrap();
                if v["type"] == "image_progress" && v["progress"]["bytes_done"].as_u64().unwrap_or(0) > 0 {
                    proxy.kill();
                    seen.push(v);
                    break 'watch;
                }
                if v["type"].as_str().unwrap_or("").starts_with("image_") {
                    seen.push(v);
                }
            }
        }
        let (_, _, finished) = decode_stream(&run.await.unwrap());
        let error = &finished["run"]["error"];
        assert_eq!(error["code"], "IMAGE_NOT_FOUND", "{finished}");
        assert!(error["message"].as_str().unwrap().contains("could not be pulled"), "{error}");
        assert_eq!(seen[0]["type"], "image_started", "{seen:?}");
        assert!(!image_exists(&image));
        // The failed attempt's end, with the reason.
        let failed = loop {
            if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let v: Value = serde_json::from_slice(&buf.drain(..=nl).collect::<Vec<u8>>()).unwrap();
                if v["type"] == "image_finished" {
                    break v;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(60), events.chunk()).await.unwrap().unwrap().unwrap();
            buf.extend_from_slice(&chunk);
        };
        assert_eq!(failed["ok"], false, "{failed}");
        assert_eq!(failed["error"]["code"], "IMAGE_PULL_FAILED", "{failed}");

        // The registry is back: the retry downloads, with progress, then runs.
        proxy.restart();
        let body = server
            .post(&client, "/v1/runs")
            .json(&json!({"shell": "cat /blob | wc -c", "cwd": env.path(), "mode": "sandbox", "image": image}))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let (out, _, finished) = decode_stream(&body);
        assert_eq!(finished["run"]["outcome"]["exit_code"], 0, "{finished}");
        assert_eq!(String::from_utf8_lossy(&out).trim(), (96 * 1024 * 1024).to_string());
        let mut types = Vec::new();
        while !types.contains(&"image_finished".to_string()) {
            assert!(Instant::now() < deadline + Duration::from_secs(120), "no image_finished: {types:?}");
            let chunk = tokio::time::timeout(Duration::from_secs(60), events.chunk()).await.unwrap().unwrap().unwrap();
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let v: Value = serde_json::from_slice(&buf.drain(..=nl).collect::<Vec<u8>>()).unwrap();
                let t = v["type"].as_str().unwrap_or("").to_string();
                if t == "image_finished" {
                    assert_eq!(v["ok"], true, "{v}");
                }
                if t == "image_progress" {
                    let p = &v["progress"];
                    assert!(p["bytes_total"].as_u64().unwrap() >= p["bytes_done"].as_u64().unwrap());
                }
                if t.starts_with("image_") {
                    types.push(t);
                }
            }
        }
        assert_eq!(types[0], "image_started");
        assert!(types.iter().any(|t| t == "image_progress"), "{types:?}");

        // Cached now: the next run downloads nothing.
        let body = server
            .post(&client, "/v1/runs")
            .json(&json!({"argv": ["true"], "cwd": env.path(), "mode": "sandbox", "image": image}))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let (_, _, finished) = decode_stream(&body);
        assert_eq!(finished["run"]["outcome"]["exit_code"], 0);
        let more = tokio::time::timeout(Duration::from_millis(500), events.chunk()).await;
        if let Ok(Ok(Some(chunk))) = more {
            assert!(!String::from_utf8_lossy(&chunk).contains("image_started"), "downloaded again");
        }
    });
    drop(server);
    remove_image(&image);
}

/// The basic image when no registry has it: built from its Dockerfile (a test one whose base
/// is a local image), once, even with concurrent first runs.
#[test]
fn the_basic_image_is_built_when_it_cannot_be_pulled() {
    if !engine_or_skip("the_basic_image_is_built_when_it_cannot_be_pulled") {
        return;
    }
    ensure_busybox();
    let basic = "ghcr.io/stigmer/agent-sandbox-basic:latest";
    remove_image(basic);
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile.sandbox.basic"),
        format!("FROM {BUSYBOX}\nCOPY requirements.txt /requirements.txt\nRUN echo built-from-dockerfile > /built\n"),
    )
    .unwrap();
    std::fs::write(context.path().join("requirements.txt"), "pyyaml\n").unwrap();
    let env = TestEnv::new();
    env.allow_work();
    let server = env.start_server_env(&[
        (
            "STIGMER_SANDBOX_BUILD_CONTEXT",
            context.path().to_str().unwrap(),
        ),
        ("STIGMER_EXECUTION_MODE", "sandbox"),
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = server.client();
        let mut events = server.get(&c, "/v1/events").send().await.unwrap();
        let runs: Vec<_> = (0..4)
            .map(|_| {
                let rb = server
                    .post(&c, "/v1/runs")
                    .json(&json!({"argv": ["cat", "/built"], "cwd": env.path()}));
                tokio::spawn(async move { rb.send().await.unwrap().bytes().await.unwrap() })
            })
            .collect();
        for r in runs {
            let (out, _, finished) = decode_stream(&r.await.unwrap());
            assert_eq!(
                String::from_utf8_lossy(&out),
                "built-from-dockerfile\n",
                "{finished}"
            );
        }
        let mut text = String::new();
        while let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), events.chunk()).await
        {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        let started: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["type"] == "image_started")
            .collect();
        // One pull attempt (fails: no registry), then one build: never once per run.
        let actions: Vec<&str> = started
            .iter()
            .map(|v| v["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["pull", "build"], "{text}");
        let finished: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["type"] == "image_finished")
            .collect();
        assert_eq!(finished.len(), 2);
        assert_eq!(
            (finished[0]["ok"].clone(), finished[1]["ok"].clone()),
            (json!(false), json!(true))
        );
    });
    drop(server);
    remove_image(basic);
}

#[test]
fn sandbox_build_builds_the_basic_dockerfile_on_demand() {
    if !engine_or_skip("sandbox_build_builds_the_basic_dockerfile_on_demand") {
        return;
    }
    ensure_busybox();
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile.sandbox.basic"),
        format!("FROM {BUSYBOX}\nRUN echo step-two\nRUN echo step-three\n"),
    )
    .unwrap();
    let env = TestEnv::new();
    let tag = format!("stigmer-test/built-{}:1", std::process::id());
    let o = env
        .cmd()
        .env("STIGMER_SANDBOX_BUILD_CONTEXT", context.path())
        .args(["sandbox", "build", "--image", &tag])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("building"), "{}", stderr(&o));
    assert!(image_exists(&tag));
    remove_image(&tag);
    // A Dockerfile that fails: the error says so, and nothing is tagged.
    std::fs::write(
        context.path().join("Dockerfile.sandbox.basic"),
        format!("FROM {BUSYBOX}\nRUN exit 3\n"),
    )
    .unwrap();
    let o = env
        .cmd()
        .env("STIGMER_SANDBOX_BUILD_CONTEXT", context.path())
        .args(["sandbox", "build", "--image", &tag])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("IMAGE_BUILD_FAILED"), "{}", stderr(&o));
    assert!(!image_exists(&tag));
}

/// The Cancel of a download: the pull stops, the waiting run fails clearly, nothing is built
/// or run, and the image is not there.
#[test]
fn a_download_can_be_cancelled() {
    if !engine_or_skip("a_download_can_be_cancelled") {
        return;
    }
    let local = format!("stigmer-test/cancel-{}:1", std::process::id());
    ensure_big_image(&local, 64);
    let registry = Registry::start();
    let proxy = SlowProxy::start(registry.port, 4 << 20);
    let image = format!(
        "127.0.0.1:{}/stigmer/cancel-{}:test",
        proxy.port,
        std::process::id()
    );
    assert!(std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("docker tag {local} {image} && docker push {image} >/dev/null && docker rmi {image} {local} >/dev/null"))
        .status()
        .unwrap()
        .success());
    let env = TestEnv::new();
    env.allow_work();
    let server = env.start_server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = server.client();
        let mut events = server.get(&client, "/v1/events").send().await.unwrap();
        let run = {
            let rb = server.post(&client, "/v1/runs").json(
                &json!({"argv": ["true"], "cwd": env.path(), "mode": "sandbox", "image": image}),
            );
            tokio::spawn(async move { rb.send().await.unwrap().bytes().await.unwrap() })
        };
        let mut buf = Vec::new();
        let mut types = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "{types:?}");
            let chunk = tokio::time::timeout(Duration::from_secs(30), events.chunk())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            buf.extend_from_slice(&chunk);
            let mut done = false;
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let v: Value =
                    serde_json::from_slice(&buf.drain(..=nl).collect::<Vec<u8>>()).unwrap();
                let t = v["type"].as_str().unwrap_or("").to_string();
                if t == "image_progress"
                    && v["progress"]["bytes_done"].as_u64().unwrap_or(0) > 0
                    && !types.contains(&"cancel".to_string())
                {
                    let r = server
                        .post(&client, "/v1/sandbox/cancel-download")
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    types.push("cancel".to_string());
                }
                if t == "image_finished" {
                    assert_eq!(v["ok"], false, "{v}");
                    assert!(
                        v["error"]["message"]
                            .as_str()
                            .unwrap()
                            .contains("cancelled"),
                        "{v}"
                    );
                    done = true;
                }
                if t.starts_with("image_") {
                    types.push(format!("{t}:{}", v["action"].as_str().unwrap_or("")));
                }
            }
            if done {
                break;
            }
        }
        let (_, _, finished) = decode_stream(&run.await.unwrap());
        assert_eq!(
            finished["run"]["error"]["code"], "IMAGE_NOT_FOUND",
            "{finished}"
        );
        assert!(finished["run"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cancelled"));
        assert!(
            !types.iter().any(|t| t.ends_with(":build")),
            "built after a cancel: {types:?}"
        );
    });
    assert!(!image_exists(&image));
}

/// The custom tier without a terminal (the window's "Build from a Dockerfile…"): a Dockerfile
/// the user chose is built with its folder as the context (files, folders, modes), with
/// progress events; then it is the custom image and commands run in it. Bad requests are
/// refused and change nothing; a failing build leaves the settings as they were. The images
/// the engine has are listed for the picker.
#[test]
fn a_dockerfile_the_user_chose_is_built_and_becomes_the_custom_image() {
    if !engine_or_skip("a_dockerfile_the_user_chose_is_built_and_becomes_the_custom_image") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    ensure_busybox();
    let env = TestEnv::new();
    env.allow_work();
    let tools = env.beside("my-tools");
    std::fs::create_dir_all(tools.join("bin")).unwrap();
    std::fs::write(
        tools.join("Dockerfile.tools"),
        format!("FROM {BUSYBOX}\nCOPY greeting.txt /greeting.txt\nCOPY bin/ /opt/bin/\n"),
    )
    .unwrap();
    std::fs::write(tools.join("greeting.txt"), "hello from my image\n").unwrap();
    std::fs::write(tools.join("bin/tool"), "#!/bin/sh\necho tool ran\n").unwrap();
    std::fs::set_permissions(
        tools.join("bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let broken = env.beside("broken");
    std::fs::write(
        broken.join("Dockerfile"),
        format!("FROM {BUSYBOX}\nCOPY missing.txt /\n"),
    )
    .unwrap();
    let own = env.home().join("config");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(own.join("Dockerfile"), format!("FROM {BUSYBOX}\n")).unwrap();
    let image = format!("stigmer-test/built-{}:1", std::process::id());
    let other = format!("stigmer-test/broken-{}:1", std::process::id());
    remove_image(&image);
    let server = env.start_server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = server.client();
        let mode = || async {
            let v: Value = server.get(&c, "/v1/mode").send().await.unwrap().json().await.unwrap();
            (v["mode"].as_str().unwrap().to_string(), v["image"].as_str().unwrap().to_string())
        };
        let before = mode().await;
        let local: Value = server.get(&c, "/v1/sandbox/images/local").send().await.unwrap().json().await.unwrap();
        assert!(
            // Podman names images in full (docker.io/...).
            local["images"].as_array().unwrap().iter().any(|i| {
                let name = i["image"].as_str().unwrap();
                (name == BUSYBOX || name.ends_with(&format!("/{BUSYBOX}")))
                    && i["size_bytes"].as_u64().unwrap() > 0
            }),
            "{local}"
        );

        let dockerfile = tools.join("Dockerfile.tools").display().to_string();
        for (body, code, words) in [
            (json!({"dockerfile": "Dockerfile", "image": image}), "INVALID_REQUEST", "absolute path"),
            (json!({"dockerfile": tools.join("nope").display().to_string(), "image": image}), "INVALID_REQUEST", "no such file"),
            (json!({"dockerfile": tools.display().to_string(), "image": image}), "INVALID_REQUEST", "is not a file"),
            (json!({"dockerfile": own.join("Dockerfile").display().to_string(), "image": image}), "INVALID_REQUEST", "cannot be a build folder"),
            (json!({"dockerfile": dockerfile, "image": "Not An Image!"}), "INVALID_SETTING", "Not An Image!"),
            (json!({"dockerfile": dockerfile, "image": "ghcr.io/stigmer/agent-sandbox-basic:latest"}), "INVALID_REQUEST", "name of its own"),
        ] {
            let r = server.post(&c, "/v1/sandbox/images/build").json(&body).send().await.unwrap();
            assert_eq!(r.status(), 422, "{body}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], code, "{body}: {v}");
            assert!(v["error"]["message"].as_str().unwrap().contains(words), "{body}: {v}");
        }
        assert_eq!(mode().await, before, "a refused build changes nothing");
        assert!(!image_exists(&image));

        let mut events = server.get(&c, "/v1/events").send().await.unwrap();
        let mut buf = Vec::new();
        let r = server
            .post(&c, "/v1/sandbox/images/build")
            .json(&json!({"dockerfile": dockerfile, "image": image}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let seen = events_until(&mut events, &mut buf, "image_finished", Duration::from_secs(120)).await;
        let done = seen.last().unwrap();
        assert_eq!(done["ok"], true, "{seen:?}");
        assert_eq!(done["image"], image.as_str());
        assert!(seen.iter().any(|e| e["type"] == "image_started" && e["action"] == "build"), "{seen:?}");
        let steps: Vec<&Value> = seen.iter().filter(|e| e["type"] == "image_progress").collect();
        assert!(
            steps.iter().any(|e| e["progress"]["detail"].as_str().is_some_and(|d| d.contains("COPY"))),
            "the steps show as progress: {seen:?}"
        );
        assert!(image_exists(&image));
        let ok = wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(env.config_file()).is_ok_and(|f| f.contains(&image))
        });
        assert!(ok, "the built image is saved as the custom image");
        assert_eq!(mode().await, ("sandbox".to_string(), image.clone()));

        let body = server
            .post(&c, "/v1/runs")
            .json(&json!({"shell": "cat /greeting.txt; /opt/bin/tool", "cwd": env.path()}))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let (out, err, finished) = decode_stream(&body);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "hello from my image\ntool ran\n",
            "{} {finished}",
            String::from_utf8_lossy(&err)
        );

        // A build that fails: told in its event, and the custom image stays what it was.
        let r = server
            .post(&c, "/v1/sandbox/images/build")
            .json(&json!({"dockerfile": broken.join("Dockerfile").display().to_string(), "image": other}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let seen = events_until(&mut events, &mut buf, "image_finished", Duration::from_secs(120)).await;
        let done = seen.last().unwrap();
        assert_eq!(done["ok"], false, "{seen:?}");
        let message = done["error"]["message"].as_str().unwrap();
        assert_eq!(done["error"]["code"], "IMAGE_BUILD_FAILED", "{done}");
        assert!(message.contains("missing.txt"), "{done}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(mode().await, ("sandbox".to_string(), image.clone()));
        assert!(!image_exists(&other));
    });
    drop(server);
    remove_image(&image);
}
