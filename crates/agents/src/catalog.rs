//! The agents stigmer connects, and where each keeps its MCP configuration on each OS.

use std::path::{Path, PathBuf};

/// How an agent's file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON; `jsonc` when comments and trailing commas are allowed (VS Code); `typed` when
    /// entries carry `"type": "stdio"`.
    Json { jsonc: bool, typed: bool },
    /// TOML (Codex), entries as `[mcp_servers.NAME]` tables.
    Toml,
}

/// An agent: its names, its file and what to do after a change.
#[derive(Debug)]
pub struct Agent {
    pub id: &'static str,
    pub aliases: &'static [&'static str],
    pub name: &'static str,
    pub format: Format,
    /// The path of the servers table inside the file.
    pub key: &'static [&'static str],
    /// Where the file is, from the base folders.
    location: Location,
    pub restart: &'static str,
}

/// Where an agent's file lives.
#[derive(Debug, Clone, Copy)]
enum Location {
    /// `FILE` in the platform's application-settings folder under `DIR` (`~/.config/DIR` on
    /// Linux, `~/Library/Application Support/DIR` on macOS, `%APPDATA%\DIR` on Windows); the
    /// agent is installed when `DIR` exists.
    AppConfig(&'static str, &'static str),
    /// `FILE` in the home folder; installed when `MARKER` (in the home folder) exists.
    Home(&'static str, &'static str),
    /// Codex: `config.toml` in `CODEX_HOME`, else `~/.codex`.
    Codex,
}

/// The base folders of this user (a temporary HOME in tests).
#[derive(Debug, Clone)]
pub struct Places {
    pub home: PathBuf,
    /// The platform's application-settings folder.
    pub app_config: PathBuf,
    pub codex_home: PathBuf,
}

impl Places {
    /// This user's folders, as the agents themselves find them.
    pub fn from_env() -> Option<Places> {
        let dirs = directories::BaseDirs::new()?;
        let home = dirs.home_dir().to_path_buf();
        let codex_home = std::env::var_os("CODEX_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".codex"));
        Some(Places {
            app_config: dirs.config_dir().to_path_buf(),
            home,
            codex_home,
        })
    }
}

impl Agent {
    pub fn config_file(&self, p: &Places) -> PathBuf {
        match self.location {
            Location::AppConfig(dir, file) => p.app_config.join(dir).join(file),
            Location::Home(file, _) => p.home.join(file),
            Location::Codex => p.codex_home.join("config.toml"),
        }
    }

    /// What exists when the agent is installed here.
    pub fn marker(&self, p: &Places) -> PathBuf {
        match self.location {
            Location::AppConfig(dir, _) => p.app_config.join(dir),
            Location::Home(_, marker) => p.home.join(marker),
            Location::Codex => p.codex_home.clone(),
        }
    }

    pub fn is_installed(&self, p: &Places) -> bool {
        Path::new(&self.marker(p)).exists()
    }
}

pub static AGENTS: &[Agent] = &[
    Agent {
        id: "claude-desktop",
        aliases: &["claude"],
        name: "Claude Desktop",
        format: Format::Json {
            jsonc: false,
            typed: false,
        },
        key: &["mcpServers"],
        location: Location::AppConfig("Claude", "claude_desktop_config.json"),
        restart: "Quit Claude Desktop completely (from its menu, not only the window) and open it again.",
    },
    Agent {
        id: "claude-code",
        aliases: &["claude_code"],
        name: "Claude Code",
        format: Format::Json {
            jsonc: false,
            typed: true,
        },
        key: &["mcpServers"],
        location: Location::Home(".claude.json", ".claude"),
        restart: "New Claude Code sessions have it; in a running one, type /mcp to reconnect.",
    },
    Agent {
        id: "cursor",
        aliases: &[],
        name: "Cursor",
        format: Format::Json {
            jsonc: false,
            typed: false,
        },
        key: &["mcpServers"],
        location: Location::Home(".cursor/mcp.json", ".cursor"),
        restart: "Cursor picks it up (Settings, MCP); restart Cursor if it does not show.",
    },
    Agent {
        id: "vscode",
        aliases: &["code", "vs-code"],
        name: "VS Code",
        format: Format::Json {
            jsonc: true,
            typed: true,
        },
        key: &["servers"],
        location: Location::AppConfig("Code/User", "mcp.json"),
        restart: "VS Code picks it up; start it from the MCP servers list (Extensions view) if it does not start.",
    },
    Agent {
        id: "windsurf",
        aliases: &[],
        name: "Windsurf",
        format: Format::Json {
            jsonc: false,
            typed: false,
        },
        key: &["mcpServers"],
        location: Location::Home(".codeium/windsurf/mcp_config.json", ".codeium/windsurf"),
        restart: "Press Refresh in Windsurf's MCP servers panel (Cascade), or restart Windsurf.",
    },
    Agent {
        id: "codex",
        aliases: &["openai-codex"],
        name: "Codex",
        format: Format::Toml,
        key: &["mcp_servers"],
        location: Location::Codex,
        restart: "New Codex sessions have it: start Codex again.",
    },
];
