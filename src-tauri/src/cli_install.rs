//! "Install the `stigmer` command": agent configurations and terminals name `stigmer`, which
//! the Linux packages put on PATH (`/usr/bin/stigmer`) but the macOS and Windows installers
//! keep inside the app, as editors do for their command-line tool.

use std::path::PathBuf;

use serde::Serialize;
use stigmer_protocol::{Error, ErrorCode, Result};

#[derive(Debug, Clone, Serialize)]
pub struct CliStatus {
    /// The `stigmer` next to the app.
    pub bundled: Option<PathBuf>,
    /// What `stigmer` on PATH is, if anything.
    pub on_path: Option<PathBuf>,
    /// Whether this app can put it on PATH (macOS, Windows, an AppImage).
    pub can_install: bool,
}

pub fn status(bundled: Option<PathBuf>) -> CliStatus {
    CliStatus {
        on_path: which::which("stigmer").ok(),
        can_install: bundled.is_some()
            && (cfg!(any(target_os = "macos", windows)) || std::env::var_os("APPIMAGE").is_some()),
        bundled,
    }
}

/// Put `stigmer` on PATH for this user.
pub fn install(bundled: Option<PathBuf>) -> Result<CliStatus> {
    let src = bundled.clone().ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidRequest,
            "this app has no stigmer command next to it",
        )
    })?;
    let failed = |e: String| {
        Error::new(
            ErrorCode::ConfigError,
            format!("the stigmer command was not installed: {e}"),
        )
    };
    #[cfg(target_os = "macos")]
    {
        // /usr/local/bin is on every macOS PATH; writing there asks for the password.
        let script = format!(
            "do shell script \"mkdir -p /usr/local/bin && ln -sf '{}' /usr/local/bin/stigmer\" with administrator privileges",
            src.display()
        );
        let ok = std::process::Command::new("osascript")
            .args(["-e", &script])
            .status()
            .map_err(|e| failed(e.to_string()))?
            .success();
        if !ok {
            return Err(failed("the password was not given".into()));
        }
    }
    #[cfg(windows)]
    {
        // The app's folder on the user's PATH (new terminals and apps see it).
        let dir = src
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let script = format!(
            "$p = [Environment]::GetEnvironmentVariable('Path', 'User'); if (-not ($p -split ';' -contains '{dir}')) {{ [Environment]::SetEnvironmentVariable('Path', ($p.TrimEnd(';') + ';{dir}').TrimStart(';'), 'User') }}"
        );
        let ok = std::process::Command::new("powershell")
            .args(["-NoProfile", "-Command", &script])
            .status()
            .map_err(|e| failed(e.to_string()))?
            .success();
        if !ok {
            return Err(failed("PowerShell could not change PATH".into()));
        }
    }
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        // An AppImage's files move at each start: a copy in ~/.local/bin stays.
        let bin = directories::BaseDirs::new()
            .and_then(|b| b.executable_dir().map(|d| d.to_path_buf()))
            .ok_or_else(|| failed("no ~/.local/bin".into()))?;
        std::fs::create_dir_all(&bin).map_err(|e| failed(e.to_string()))?;
        let dest = bin.join("stigmer");
        let tmp = bin.join(".stigmer.tmp");
        std::fs::copy(&src, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &dest))
            .map_err(|e| failed(e.to_string()))?;
    }
    Ok(status(bundled))
}
