//! Where commands run: the mode, the three tiers users choose between, and what an image
//! reference looks like.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};

/// The basic sandbox image (tier 2). Any other image is a custom image (tier 3).
pub const BASIC_IMAGE: &str = "ghcr.io/stigmer/agent-sandbox-basic:latest";

/// Where commands run. Read from JSON through [`FromStr`], so a wrong value gets the same
/// message everywhere (`auto` says why it is not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Mode {
    /// Directly on this machine (the default).
    #[default]
    Local,
    /// On this machine, confined by the operating system (the protected tier).
    Protected,
    /// In a container made from the sandbox image.
    Sandbox,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Local, Mode::Protected, Mode::Sandbox];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Protected => "protected",
            Mode::Sandbox => "sandbox",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Mode {
    type Error = Error;
    fn try_from(s: String) -> Result<Mode> {
        s.parse()
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(Mode::Local),
            "protected" => Ok(Mode::Protected),
            "sandbox" => Ok(Mode::Sandbox),
            "auto" => Err(Error::new(
                ErrorCode::InvalidMode,
                "mode `auto` is not supported: choose `local`, `protected` or `sandbox` explicitly",
            )),
            _ => Err(Error::new(
                ErrorCode::InvalidMode,
                format!(
                    "`{s}` is not an execution mode; valid modes are `local`, `protected` and \
                     `sandbox`"
                ),
            )),
        }
    }
}

/// The tiers users choose between, derived from mode and image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Local,
    Protected,
    Basic,
    Custom,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Local, Tier::Protected, Tier::Basic, Tier::Custom];

    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Local => "local",
            Tier::Protected => "protected",
            Tier::Basic => "basic",
            Tier::Custom => "custom",
        }
    }

    /// How the window, the tray and notifications name it.
    pub fn label(self) -> &'static str {
        match self {
            Tier::Local => "Local",
            Tier::Protected => "Local, protected",
            Tier::Basic => "Basic sandbox",
            Tier::Custom => "Custom image",
        }
    }

    pub fn of(mode: Mode, image: &str) -> Tier {
        match mode {
            Mode::Local => Tier::Local,
            Mode::Protected => Tier::Protected,
            Mode::Sandbox if image == BASIC_IMAGE => Tier::Basic,
            Mode::Sandbox => Tier::Custom,
        }
    }
}

/// Check that `s` looks like a container image reference:
/// `[registry[:port]/]name[/name...][:tag][@algo:hex]`, names in lower case.
pub fn validate_image_ref(s: &str) -> std::result::Result<(), String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("an image reference cannot be empty".into());
    }
    if s.len() > 512 {
        return Err("an image reference is at most 512 characters".into());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(algo, hex)| {
            !algo.is_empty()
                && algo
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+._-".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !ok {
            return Err(format!("`{d}` is not a valid digest"));
        }
    }
    // A tag follows the last colon that comes after the last slash (a colon before it is a port).
    let last_slash = rest.rfind('/');
    let (name, tag) = match rest.rfind(':') {
        Some(c) if last_slash.is_none_or(|sl| c > sl) => (&rest[..c], Some(&rest[c + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(format!("`{tag}` is not a valid tag"));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first part is a registry host when it has a dot, a colon or is `localhost`.
    if parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
    {
        let host = parts.remove(0);
        let ok = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
        if !ok {
            return Err(format!("`{host}` is not a valid registry host"));
        }
    }
    for part in parts {
        let ok = !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(format!(
                "`{part}` is not a valid image name component (lower-case letters, digits and . _ - only)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for ok in [
            "alpine",
            "alpine:3.20",
            "ghcr.io/stigmer/agent-sandbox-basic:latest",
            "127.0.0.1:5000/stigmer/basic:test",
            "localhost/x",
            "my-custom-sandbox:latest",
            "repo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(validate_image_ref(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Alpine",
            "a b",
            "img:",
            "img:-x",
            "/img",
            "img//x",
            "repo@sha256:zz",
        ] {
            assert!(validate_image_ref(bad).is_err(), "{bad}");
        }
    }
}
