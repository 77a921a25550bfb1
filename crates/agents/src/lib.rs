//! Connect AI agents to stigmer in one click. Each agent keeps its MCP servers in a file of its
//! own ([`catalog`]); Connect merges a `stigmer` entry into it and Disconnect removes that entry
//! only. Every other entry, setting, comment and the file's layout are kept; the file is backed
//! up beside itself before a change and replaced atomically; doing it twice changes nothing. A
//! file that does not parse is never rewritten: the caller shows the snippet to paste instead.

pub mod catalog;
mod json_file;
mod toml_file;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use catalog::{Agent, Format, Places};

/// The entry an agent launches: `stigmer mcp`, by full path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub command: PathBuf,
    pub args: Vec<String>,
    /// Variables the agent passes (the app's `STIGMER_HOME`, when it has one).
    pub env: BTreeMap<String, String>,
}

impl Entry {
    /// `stigmer mcp` with the `stigmer` at `command`.
    pub fn stigmer(command: PathBuf) -> Entry {
        let env = std::env::var("STIGMER_HOME")
            .ok()
            .filter(|h| !h.is_empty())
            .map(|h| BTreeMap::from([("STIGMER_HOME".to_string(), h)]))
            .unwrap_or_default();
        Entry {
            command,
            args: vec!["mcp".to_string()],
            env,
        }
    }
}

/// The name of stigmer's entry in every agent's file.
pub const ENTRY_NAME: &str = "stigmer";

/// Where an agent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The agent does not seem installed here (no folder of its own).
    NotFound,
    NotConnected,
    Connected,
    /// A `stigmer` entry exists but launches something else (another path, older arguments).
    Outdated,
    /// The file does not parse: it is never rewritten.
    Unreadable,
}

/// One agent as the panel and `stigmer connect list` show it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    pub id: &'static str,
    pub name: &'static str,
    pub config_file: PathBuf,
    pub state: State,
    /// Why the file cannot be used, in plain words.
    pub problem: Option<String>,
    /// What to do after a change for the agent to see it.
    pub restart: &'static str,
    /// The text to paste by hand (for a file stigmer does not rewrite).
    pub snippet: String,
}

/// What Connect or Disconnect did.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// False when the file already said so (nothing written).
    pub changed: bool,
    /// The copy of the file as it was, when one was written.
    pub backup: Option<PathBuf>,
    pub status: AgentStatus,
}

/// Why an agent cannot be connected or disconnected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("no agent called `{0}`; known agents: {1}")]
    UnknownAgent(String, String),
    #[error("{} does not look installed here ({} is missing)", .0, .1.display())]
    NotInstalled(&'static str, PathBuf),
    #[error(
        "{file} could not be read as {what} ({why}); it was left as it is: add the entry by hand"
    )]
    Unreadable {
        file: PathBuf,
        what: &'static str,
        why: String,
    },
    #[error("{}: {}", .0.display(), .1)]
    Io(PathBuf, String),
}

/// Every agent stigmer knows, found here or not.
pub fn list(places: &Places, entry: &Entry) -> Vec<AgentStatus> {
    catalog::AGENTS
        .iter()
        .map(|a| status(places, a, entry))
        .collect()
}

/// The agent called `id` (`claude-code`, `cursor`...).
pub fn find(id: &str) -> Result<&'static Agent, Problem> {
    let wanted = id.trim().to_ascii_lowercase();
    catalog::AGENTS
        .iter()
        .find(|a| a.id == wanted || a.aliases.contains(&wanted.as_str()))
        .ok_or_else(|| {
            let ids: Vec<&str> = catalog::AGENTS.iter().map(|a| a.id).collect();
            Problem::UnknownAgent(id.to_string(), ids.join(", "))
        })
}

/// Merge stigmer's entry into the agent's file (made if missing).
pub fn connect(places: &Places, agent: &'static Agent, entry: &Entry) -> Result<Change, Problem> {
    edit(places, agent, entry, Some(entry))
}

/// Remove stigmer's entry, and nothing else.
pub fn disconnect(
    places: &Places,
    agent: &'static Agent,
    entry: &Entry,
) -> Result<Change, Problem> {
    edit(places, agent, entry, None)
}

fn edit(
    places: &Places,
    agent: &'static Agent,
    shown: &Entry,
    wanted: Option<&Entry>,
) -> Result<Change, Problem> {
    let file = agent.config_file(places);
    let marker = agent.marker(places);
    if wanted.is_some() && !marker.exists() {
        return Err(Problem::NotInstalled(agent.name, marker));
    }
    let text = read(&file)?;
    let edited = match text.as_deref() {
        None if wanted.is_none() => None,
        text => apply(agent, &file, text.unwrap_or_default(), wanted)?,
    };
    let (changed, backup) = match edited {
        Some(new_text) => (
            true,
            write::replace(&file, &new_text)
                .map_err(|e| Problem::Io(file.clone(), e.to_string()))?,
        ),
        None => (false, None),
    };
    Ok(Change {
        changed,
        backup,
        status: status(places, agent, shown),
    })
}

/// The new text of the file, or None when it already says what is wanted.
fn apply(
    agent: &Agent,
    file: &Path,
    text: &str,
    wanted: Option<&Entry>,
) -> Result<Option<String>, Problem> {
    let unreadable = |what: &'static str, why: String| Problem::Unreadable {
        file: file.to_path_buf(),
        what,
        why,
    };
    match agent.format {
        Format::Json { jsonc, typed } => json_file::edit(
            text,
            jsonc,
            agent.key,
            wanted.map(|e| json_file::entry_value(e, typed)),
        )
        .map_err(|why| unreadable(if jsonc { "JSON with comments" } else { "JSON" }, why)),
        Format::Toml => {
            toml_file::edit(text, agent.key, wanted).map_err(|why| unreadable("TOML", why))
        }
    }
}

fn read(file: &Path) -> Result<Option<String>, Problem> {
    match std::fs::read(file) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| Problem::Unreadable {
                file: file.to_path_buf(),
                what: "text",
                why: "it is not UTF-8".into(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Problem::Io(file.to_path_buf(), e.to_string())),
    }
}

fn status(places: &Places, agent: &'static Agent, entry: &Entry) -> AgentStatus {
    let file = agent.config_file(places);
    let (state, problem) = if !agent.marker(places).exists() {
        (State::NotFound, None)
    } else {
        match read(&file) {
            Ok(None) => (State::NotConnected, None),
            Ok(Some(text)) => match current(agent, &text) {
                Ok(None) => (State::NotConnected, None),
                Ok(Some(found)) if found == expected(agent, entry) => (State::Connected, None),
                Ok(Some(_)) => (State::Outdated, None),
                Err(why) => (State::Unreadable, Some(why)),
            },
            Err(e) => (State::Unreadable, Some(e.to_string())),
        }
    };
    AgentStatus {
        id: agent.id,
        name: agent.name,
        config_file: file,
        state,
        problem,
        restart: agent.restart,
        snippet: snippet(agent, entry),
    }
}

/// Stigmer's entry as the file has it now (as JSON, for comparing).
fn current(agent: &Agent, text: &str) -> Result<Option<serde_json::Value>, String> {
    match agent.format {
        Format::Json { jsonc, .. } => json_file::current(text, jsonc, agent.key),
        Format::Toml => toml_file::current(text, agent.key),
    }
}

fn expected(agent: &Agent, entry: &Entry) -> serde_json::Value {
    match agent.format {
        Format::Json { typed, .. } => json_file::entry_value(entry, typed),
        Format::Toml => toml_file::entry_value(entry),
    }
}

/// What to paste by hand into the agent's file.
pub fn snippet(agent: &Agent, entry: &Entry) -> String {
    match agent.format {
        Format::Json { typed, .. } => {
            json_file::snippet(agent.key, &json_file::entry_value(entry, typed))
        }
        Format::Toml => toml_file::snippet(agent.key, entry),
    }
}
