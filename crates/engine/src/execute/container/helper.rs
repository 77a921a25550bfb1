//! The helper stigmer puts into each sandbox container (crates/sandbox-helper, embedded at
//! build time): chosen for the engine's architecture and copied in through the engine's API
//! before the container starts, so that it works for remote engines and engines in a VM too.

use bollard::query_parameters::UploadToContainerOptions;
use bollard::Docker;

use super::engine_error::engine_error;
use crate::error::{Error, ErrorCode, Result};

include!(concat!(env!("OUT_DIR"), "/helpers.rs"));

pub use stigmer_sandbox_helper::PATH_IN_CONTAINER;

/// The engine's architecture in the names images use (`amd64`, `arm64`).
pub fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The helper for an engine of `arch`, or a clear error.
pub fn for_arch(arch: &str) -> Result<&'static [u8]> {
    let arch = normalize_arch(arch);
    HELPERS
        .iter()
        .find(|(a, _)| *a == arch)
        .map(|(_, bytes)| *bytes)
        .ok_or_else(|| {
            let have: Vec<&str> = HELPERS.iter().map(|(a, _)| *a).collect();
            Error::new(
                ErrorCode::EngineUnavailable,
                format!(
                    "the container engine runs {arch} containers, and this build of stigmer has \
                     its sandbox helper for {} only: install the stigmer made for {arch}, or use \
                     local mode",
                    if have.is_empty() {
                        "no architecture".to_string()
                    } else {
                        have.join(", ")
                    }
                ),
            )
        })
}

/// A tar archive holding the helper at [`PATH_IN_CONTAINER`], executable by every user.
fn archive(helper: &[u8]) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    let parent = PATH_IN_CONTAINER.trim_start_matches('/');
    let (folder, _) = parent.rsplit_once('/').unwrap_or(("", parent));
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o755);
    header.set_size(helper.len() as u64);
    let io = |e: std::io::Error| Error::internal(format!("packing the sandbox helper: {e}"));
    tar.append_data(&mut dir, format!("{folder}/"), &[][..])
        .map_err(io)?;
    tar.append_data(&mut header, parent, helper).map_err(io)?;
    tar.into_inner().map_err(io)
}

/// Copy the helper into container `id` (created, not started).
pub async fn install(docker: &Docker, id: &str, arch: &str) -> Result<()> {
    let tar = archive(for_arch(arch)?)?;
    let options = UploadToContainerOptions {
        path: "/".to_string(),
        ..Default::default()
    };
    docker
        .upload_to_container(id, Some(options), bollard::body_full(tar.into()))
        .await
        .map_err(engine_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_for_this_machine_is_embedded_and_static() {
        let arch = normalize_arch(std::env::consts::ARCH);
        let bin = for_arch(arch).expect("a helper for this machine's architecture");
        assert_eq!(&bin[..4], b"\x7fELF");
        // A static executable has no program interpreter (PT_INTERP) to look for in the image.
        let u16_at = |o: usize| u16::from_le_bytes([bin[o], bin[o + 1]]) as usize;
        let phoff = u64::from_le_bytes(bin[0x20..0x28].try_into().unwrap()) as usize;
        let (size, count) = (u16_at(0x36), u16_at(0x38));
        let interp = (0..count).any(|i| {
            let o = phoff + i * size;
            u32::from_le_bytes(bin[o..o + 4].try_into().unwrap()) == 3
        });
        assert!(
            count > 0 && !interp,
            "the helper must not need the image's dynamic loader"
        );
        let e = for_arch("s390x").unwrap_err();
        assert!(
            e.message.contains("s390x") && e.message.contains(arch),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_archive_holds_the_helper_where_containers_start_it() {
        let tar = archive(b"\x7fELF-test").unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let entries: Vec<(String, u32)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                (".stigmer/".to_string(), 0o755),
                (".stigmer/stigmer-sandbox-helper".to_string(), 0o755)
            ]
        );
    }
}
