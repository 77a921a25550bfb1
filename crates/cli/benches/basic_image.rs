//! The basic sandbox image, measured: the one-time build from the Dockerfile embedded in
//! stigmer (`stigmer sandbox build`) side by side with a plain `docker build --no-cache` of the
//! same file, both cold, on the stand-in bases of tests/images/basic.sh; and the size of what
//! the Dockerfile adds to its base, raw (what `docker images` counts) and gzip (close to what a
//! user downloads), layer by layer from `docker save`.
//!
//! `cargo bench -p stigmer-cli --bench basic_image` (needs Docker; `-- --quick` changes
//! nothing: each build runs once).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

use common::TestEnv;

/// The official base's sizes for linux/amd64, as published (not measured here: no registry is
/// reachable). python:3.12-slim-bookworm: about 130 MB unpacked, about 45 MB compressed.
const OFFICIAL_BASE_RAW_MB: f64 = 130.0;
const OFFICIAL_BASE_GZIP_MB: f64 = 45.0;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The layer digests of an image, bottom first.
fn layers(image: &str) -> Vec<String> {
    docker(&[
        "image",
        "inspect",
        "--format",
        "{{range .RootFS.Layers}}{{.}} {{end}}",
        image,
    ])
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

/// (raw, gzip) bytes of the layers of `image` that `base` does not have.
fn own_layers(image: &str, base: &str) -> (u64, u64, usize) {
    let skip = layers(base).len();
    assert_eq!(
        layers(image)[..skip],
        layers(base)[..],
        "{image} is built on {base}"
    );
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("image.tar");
    docker(&["save", "-o", tar.to_str().unwrap(), image]);
    let out = dir.path().join("x");
    std::fs::create_dir(&out).unwrap();
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&out)
        .arg("-xf")
        .arg(&tar)
        .status()
        .unwrap()
        .success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let files: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let (mut raw, mut gz) = (0, 0);
    for f in &files[skip..] {
        let path = out.join(f);
        raw += std::fs::metadata(&path).unwrap().len();
        // gzip at its default level, as registries store layers.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("gzip -6 -c '{}' | wc -c", path.display()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut s = String::new();
        child.stdout.take().unwrap().read_to_string(&mut s).unwrap();
        child.wait().unwrap();
        gz += s.trim().parse::<u64>().unwrap();
    }
    (raw, gz, files.len() - skip)
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn main() {
    let o = Command::new(root().join("tests/images/basic.sh"))
        .arg("--bases-only")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let build_args = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let python_base = build_args
        .split_whitespace()
        .find_map(|a| a.strip_prefix("PYTHON_IMAGE="))
        .unwrap()
        .to_string();
    let (ours, plain) = ("stigmer-bench/basic:embedded", "stigmer-bench/basic:plain");
    // Cold: no earlier build of this Dockerfile may serve as a cache (the tests' image either).
    let earlier = docker(&["images", "-q", "--filter", "reference=stigmer-test/basic"]);
    for i in earlier.split_whitespace().chain([ours, plain]) {
        let _ = Command::new("docker").args(["rmi", "-f", i]).output();
    }

    // stigmer's one-time build, from its embedded copy of the Dockerfile, cold.
    let env = TestEnv::new();
    let t = Instant::now();
    let o = env
        .cmd()
        .env("STIGMER_SANDBOX_BUILD_ARGS", &build_args)
        .args(["sandbox", "build", "--image", ours])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ours_secs = t.elapsed().as_secs_f64();

    // The plain baseline: docker build --no-cache of the same Dockerfile.
    let mut args: Vec<String> = vec!["build".into(), "-q".into(), "--no-cache".into()];
    for a in build_args.split_whitespace() {
        args.extend(["--build-arg".into(), a.to_string()]);
    }
    let dockerfile = root().join("sandbox/Dockerfile.sandbox.basic");
    let context = root().join("sandbox");
    args.extend([
        "-f".into(),
        dockerfile.display().to_string(),
        "-t".into(),
        plain.into(),
        context.display().to_string(),
    ]);
    let t = Instant::now();
    let o = Command::new("docker").args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plain_secs = t.elapsed().as_secs_f64();

    let (raw, gz, n) = own_layers(ours, &python_base);
    let stand_in: u64 = docker(&["image", "inspect", "--format", "{{.Size}}", &python_base])
        .parse()
        .unwrap();
    let total_raw = raw as f64 / 1e6 + OFFICIAL_BASE_RAW_MB;
    let total_gz = gz as f64 / 1e6 + OFFICIAL_BASE_GZIP_MB;
    println!();
    println!("| basic sandbox image | stigmer | baseline | note |");
    println!("|---|---|---|---|");
    println!(
        "| one-time build from the embedded Dockerfile, cold, on the stand-in bases | {ours_secs:.1} s | {plain_secs:.1} s | baseline: `docker build --no-cache` of the same file |"
    );
    println!(
        "| what the Dockerfile adds to its base ({n} layers), raw / gzip | {} / {} | - | measured: `docker save`, each layer's tar, `gzip -6` |",
        mb(raw),
        mb(gz)
    );
    println!(
        "| the whole image on disk / to download, with the official base | about {total_raw:.0} MB / about {total_gz:.0} MB | - | goal <= 350 MB / <= 120 MB; official base as published: {OFFICIAL_BASE_RAW_MB:.0} MB / {OFFICIAL_BASE_GZIP_MB:.0} MB |"
    );
    println!(
        "| (the stand-in Python base here, for reference) | {} | - | larger than the official one |",
        mb(stand_in)
    );
    // The tests' image again, from this build's layers (a cache hit), then the bench's tags go.
    let o = Command::new(root().join("tests/images/basic.sh"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for i in [ours, plain] {
        let _ = Command::new("docker").args(["rmi", i]).output();
    }
}
