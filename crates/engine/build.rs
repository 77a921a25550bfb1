//! Embeds the sandbox helper (crates/sandbox-helper), built static for Linux, so that stigmer
//! can copy it into any container. `STIGMER_SANDBOX_HELPERS=DIR` takes prebuilt ones instead
//! (`stigmer-sandbox-helper-amd64`, `-arm64`: the release workflow); otherwise it is built here
//! for the target's architecture, when the build machine is Linux (the crt-static gnu target
//! needs no musl toolchain).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=../sandbox-helper/src");
    println!("cargo:rerun-if-changed=../sandbox-helper/Cargo.toml");
    println!("cargo:rerun-if-env-changed=STIGMER_SANDBOX_HELPERS");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mut helpers: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(dir) = std::env::var("STIGMER_SANDBOX_HELPERS") {
        for arch in ["amd64", "arm64"] {
            let p = Path::new(&dir).join(format!("stigmer-sandbox-helper-{arch}"));
            if p.is_file() {
                helpers.push((arch.into(), p));
            }
        }
    } else if let Some(built) = build_here(&out) {
        helpers.push(built);
    }
    if helpers.is_empty() {
        println!("cargo:warning=no sandbox helper embedded: sandbox mode will say so when used");
    }
    let entries: Vec<String> = helpers
        .iter()
        .map(|(arch, p)| format!("({arch:?}, include_bytes!({:?}))", p.display().to_string()))
        .collect();
    std::fs::write(
        out.join("helpers.rs"),
        format!(
            "/// The embedded helpers: (engine architecture, static binary).\npub const HELPERS: &[(&str, &[u8])] = &[{}];\n",
            entries.join(", ")
        ),
    )
    .unwrap();
}

/// Build the helper for the target's architecture, static, with the compiler that builds us.
fn build_here(out: &Path) -> Option<(String, PathBuf)> {
    // Containers are Linux ones, whatever the target: a Windows or macOS build made on Linux
    // (a cross check) embeds the helper of the build machine's architecture too.
    if !std::env::var("HOST").ok()?.contains("linux") {
        return None;
    }
    let (arch, triple) = match std::env::var("CARGO_CFG_TARGET_ARCH").ok()?.as_str() {
        "x86_64" => ("amd64", "x86_64-unknown-linux-gnu"),
        "aarch64" => ("arm64", "aarch64-unknown-linux-gnu"),
        _ => return None,
    };
    // A target dir of its own, next to the workspace's: never the one the outer build locks.
    let target_dir = out.ancestors().nth(4)?.join("sandbox-helper");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox-helper/Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "--offline", "--bin"])
        .arg("stigmer-sandbox-helper")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--target", triple])
        .arg("--target-dir")
        .arg(&target_dir)
        // What the outer build sets for itself must not leak into this one.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .status()
        .ok()?;
    if !status.success() {
        println!("cargo:warning=building the sandbox helper failed ({status})");
        return None;
    }
    let bin = target_dir
        .join(triple)
        .join("release")
        .join("stigmer-sandbox-helper");
    bin.is_file().then(|| (arch.to_string(), bin))
}
