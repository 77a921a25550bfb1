//! Settings and the execution mode.
//!
//! Resolution order, highest first: command-line flag > environment variable > config file >
//! default. Every value is validated wherever it comes from: an invalid one is an error that
//! names where it came from and the valid values, never a silent default.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use stigmer_protocol::mode::{validate_image_ref, Mode, Tier, BASIC_IMAGE};

use serde::{Deserialize, Serialize};
use toml_edit::{DocumentMut, Item, Table};

use crate::command_env::{self, CommandEnv};
use crate::error::{Error, ErrorCode, Result};
use crate::paths::{write_atomic, Paths};

/// Every setting, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub mode: Mode,
    pub sandbox_image: String,
    pub sandbox_auto_pull: bool,
    pub sandbox_cleanup: bool,
    pub sandbox_ttl_secs: u64,
    /// Memory limit of sandbox containers, e.g. `4g`; `0` for none.
    pub sandbox_memory: String,
    /// CPU limit of sandbox containers, e.g. `1.5`; `0` for none.
    pub sandbox_cpus: String,
    pub sandbox_network: Network,
    /// Folders the user allowed sandboxed commands to work in (`sandbox.workspaces`), links
    /// resolved when they were added.
    pub sandbox_workspaces: Vec<PathBuf>,
    /// The `[env]` table: changes to the commands' default environment
    /// ([`crate::command_env::AGENT_ENV`]); an empty value removes a variable.
    pub env: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Local,
            sandbox_image: BASIC_IMAGE.to_string(),
            sandbox_auto_pull: true,
            sandbox_cleanup: true,
            sandbox_ttl_secs: 3600,
            sandbox_memory: "4g".to_string(),
            sandbox_cpus: "0".to_string(),
            sandbox_network: Network::Bridge,
            sandbox_workspaces: Vec::new(),
            env: BTreeMap::new(),
        }
    }
}

impl Settings {
    pub fn tier(&self) -> Tier {
        Tier::of(self.mode, &self.sandbox_image)
    }

    /// The environment commands get before their own variables.
    pub fn command_env(&self) -> CommandEnv {
        command_env::with_overrides(&self.env)
    }

    /// The value of one setting, as text.
    pub fn get(&self, key: Key) -> String {
        match key {
            Key::Mode => self.mode.to_string(),
            Key::SandboxImage => self.sandbox_image.clone(),
            Key::SandboxAutoPull => self.sandbox_auto_pull.to_string(),
            Key::SandboxCleanup => self.sandbox_cleanup.to_string(),
            Key::SandboxTtl => self.sandbox_ttl_secs.to_string(),
            Key::SandboxMemory => self.sandbox_memory.clone(),
            Key::SandboxCpus => self.sandbox_cpus.clone(),
            Key::SandboxNetwork => self.sandbox_network.as_str().to_string(),
        }
    }

    /// Set one validated value.
    pub fn apply(&mut self, value: Value) {
        match value {
            Value::Mode(m) => self.mode = m,
            Value::Image(i) => self.sandbox_image = i,
            Value::AutoPull(b) => self.sandbox_auto_pull = b,
            Value::Cleanup(b) => self.sandbox_cleanup = b,
            Value::Ttl(t) => self.sandbox_ttl_secs = t,
            Value::Memory(m) => self.sandbox_memory = m,
            Value::Cpus(c) => self.sandbox_cpus = c,
            Value::Network(n) => self.sandbox_network = n,
        }
    }
}

/// The name of a setting, as typed in `stigmer config` and the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Mode,
    SandboxImage,
    SandboxAutoPull,
    SandboxCleanup,
    SandboxTtl,
    SandboxMemory,
    SandboxCpus,
    SandboxNetwork,
}

/// Network of sandbox containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The engine's default bridge: outbound access (package installs, git clone).
    Bridge,
    /// No network at all.
    None,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Bridge => "bridge",
            Network::None => "none",
        }
    }
}

/// A validated setting value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Mode(Mode),
    Image(String),
    AutoPull(bool),
    Cleanup(bool),
    Ttl(u64),
    /// Normalized, e.g. `4g` or `0`.
    Memory(String),
    /// Normalized, e.g. `1.5` or `0`.
    Cpus(String),
    Network(Network),
}

impl Key {
    pub const ALL: [Key; 8] = [
        Key::Mode,
        Key::SandboxImage,
        Key::SandboxAutoPull,
        Key::SandboxCleanup,
        Key::SandboxTtl,
        Key::SandboxMemory,
        Key::SandboxCpus,
        Key::SandboxNetwork,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Key::Mode => "mode",
            Key::SandboxImage => "sandbox.image",
            Key::SandboxAutoPull => "sandbox.auto_pull",
            Key::SandboxCleanup => "sandbox.cleanup",
            Key::SandboxTtl => "sandbox.ttl",
            Key::SandboxMemory => "sandbox.memory",
            Key::SandboxCpus => "sandbox.cpus",
            Key::SandboxNetwork => "sandbox.network",
        }
    }

    pub fn env_var(self) -> &'static str {
        match self {
            Key::Mode => "STIGMER_EXECUTION_MODE",
            Key::SandboxImage => "STIGMER_SANDBOX_IMAGE",
            Key::SandboxAutoPull => "STIGMER_SANDBOX_AUTO_PULL",
            Key::SandboxCleanup => "STIGMER_SANDBOX_CLEANUP",
            Key::SandboxTtl => "STIGMER_SANDBOX_TTL",
            Key::SandboxMemory => "STIGMER_SANDBOX_MEMORY",
            Key::SandboxCpus => "STIGMER_SANDBOX_CPUS",
            Key::SandboxNetwork => "STIGMER_SANDBOX_NETWORK",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Key::Mode => "where commands run: local or sandbox",
            Key::SandboxImage => "container image used in sandbox mode",
            Key::SandboxAutoPull => "download the basic sandbox image when missing (true/false)",
            Key::SandboxCleanup => "remove sandbox containers when idle or on stop (true/false)",
            Key::SandboxTtl => "seconds a sandbox container may stay idle before removal",
            Key::SandboxMemory => "memory limit of a sandbox container (e.g. 4g, 512m; 0 = none)",
            Key::SandboxCpus => "CPU limit of a sandbox container (e.g. 2, 0.5; 0 = none)",
            Key::SandboxNetwork => "network of sandbox containers: bridge or none",
        }
    }

    /// The accepted values, for error messages.
    pub fn valid_values(self) -> &'static str {
        match self {
            Key::Mode => "`local` or `sandbox`",
            Key::SandboxImage => "an image reference such as `ghcr.io/org/image:tag`",
            Key::SandboxAutoPull | Key::SandboxCleanup => "`true` or `false`",
            Key::SandboxTtl => {
                "a whole number of seconds (0 removes a container after each command)"
            }
            Key::SandboxMemory => "`0` (no limit) or a size such as `512m` or `4g` (at least 6m)",
            Key::SandboxCpus => "`0` (no limit) or a number of CPUs such as `1` or `0.5`",
            Key::SandboxNetwork => "`bridge` or `none`",
        }
    }

    /// Table and key of this setting in the config file.
    fn file_location(self) -> (Option<&'static str>, &'static str) {
        match self {
            Key::Mode => (None, "mode"),
            Key::SandboxImage => (Some("sandbox"), "image"),
            Key::SandboxAutoPull => (Some("sandbox"), "auto_pull"),
            Key::SandboxCleanup => (Some("sandbox"), "cleanup"),
            Key::SandboxTtl => (Some("sandbox"), "ttl"),
            Key::SandboxMemory => (Some("sandbox"), "memory"),
            Key::SandboxCpus => (Some("sandbox"), "cpus"),
            Key::SandboxNetwork => (Some("sandbox"), "network"),
        }
    }

    /// Parse and validate a value. `origin` says where it came from, for the error message.
    pub fn parse(self, raw: &str, origin: &str) -> Result<Value> {
        let invalid = |why: String| {
            let code = if self == Key::Mode {
                ErrorCode::InvalidMode
            } else {
                ErrorCode::InvalidSetting
            };
            Error::new(
                code,
                format!(
                    "{origin}: `{raw}` is not a valid value for {}{why}; expected {}",
                    self.name(),
                    self.valid_values()
                ),
            )
        };
        match self {
            Key::Mode => match raw.parse::<Mode>() {
                Ok(m) => Ok(Value::Mode(m)),
                Err(_) if raw.trim().eq_ignore_ascii_case("auto") => Err(invalid(
                    " (`auto` is not supported: choose explicitly)".into(),
                )),
                Err(_) => Err(invalid(String::new())),
            },
            Key::SandboxImage => validate_image_ref(raw)
                .map(|()| Value::Image(raw.trim().to_string()))
                .map_err(|why| invalid(format!(" ({why})"))),
            Key::SandboxAutoPull => parse_bool(raw)
                .map(Value::AutoPull)
                .ok_or_else(|| invalid(String::new())),
            Key::SandboxCleanup => parse_bool(raw)
                .map(Value::Cleanup)
                .ok_or_else(|| invalid(String::new())),
            Key::SandboxTtl => raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|t| *t <= 365 * 24 * 3600)
                .map(Value::Ttl)
                .ok_or_else(|| invalid(String::new())),
            Key::SandboxMemory => parse_memory(raw)
                .map(|_| Value::Memory(raw.trim().to_ascii_lowercase()))
                .ok_or_else(|| invalid(String::new())),
            Key::SandboxCpus => raw
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|c| c.is_finite() && *c >= 0.0 && *c <= 1024.0)
                .map(|c| Value::Cpus(c.to_string()))
                .ok_or_else(|| invalid(String::new())),
            Key::SandboxNetwork => match raw.trim().to_ascii_lowercase().as_str() {
                "bridge" => Ok(Value::Network(Network::Bridge)),
                "none" => Ok(Value::Network(Network::None)),
                _ => Err(invalid(String::new())),
            },
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Key {
    type Err = Error;
    fn from_str(s: &str) -> Result<Key> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Key::ALL
            .into_iter()
            .find(|k| k.name() == wanted || k.env_var().eq_ignore_ascii_case(&wanted))
            .ok_or_else(|| {
                let names: Vec<_> = Key::ALL.iter().map(|k| k.name()).collect();
                Error::new(
                    ErrorCode::InvalidSetting,
                    format!(
                        "`{s}` is not a setting; known settings: {}, and env.NAME for a variable of the commands' environment",
                        names.join(", ")
                    ),
                )
            })
    }
}

/// Bytes of a memory size: `0`, or a whole number with a `k`, `m` or `g` suffix (binary
/// units), at least 6 MiB (the engines' minimum).
pub fn parse_memory(raw: &str) -> Option<u64> {
    let s = raw.trim().to_ascii_lowercase();
    if s == "0" {
        return Some(0);
    }
    let (num, unit) = s.split_at(s.len().checked_sub(1)?);
    let mult: u64 = match unit {
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    let bytes = num.parse::<u64>().ok()?.checked_mul(mult)?;
    (bytes >= 6 << 20).then_some(bytes)
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The key of the sandbox workspaces in the `[sandbox]` table.
const WORKSPACES_KEY: &str = "workspaces";

/// Where a resolved setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Default,
    File,
    Env,
    Flag,
}

/// Values given on the command line, not yet validated.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub mode: Option<String>,
    pub image: Option<String>,
}

/// Settings after resolution, with where each came from and any warnings to show the user.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub settings: Settings,
    pub sources: BTreeMap<Key, Source>,
    pub warnings: Vec<String>,
}

/// Resolve settings from flags, the process environment, the config file and defaults.
pub fn resolve(paths: &Paths, overrides: &Overrides) -> Result<Resolved> {
    resolve_with(paths, overrides, |name| std::env::var(name).ok())
}

/// [`resolve`] with an explicit environment (for tests).
pub fn resolve_with(
    paths: &Paths,
    overrides: &Overrides,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Resolved> {
    let (file, mut warnings) = ConfigFile::load(&paths.config_file())?;
    let mut settings = Settings::default();
    let mut sources: BTreeMap<Key, Source> =
        Key::ALL.iter().map(|k| (*k, Source::Default)).collect();

    for key in Key::ALL {
        if let Some(raw) = file.get(key) {
            let origin = format!("config file {} ({})", file.path.display(), key.name());
            settings.apply(key.parse(&raw, &origin)?);
            sources.insert(key, Source::File);
        }
    }
    settings.env = file.env_entries()?;
    settings.sandbox_workspaces = file.workspaces()?;
    warnings.extend(file.unknown_keys().into_iter().map(|k| {
        format!(
            "unknown setting `{k}` in config file {} (ignored)",
            file.path.display()
        )
    }));
    for key in Key::ALL {
        if let Some(raw) = env(key.env_var()).filter(|v| !v.is_empty()) {
            let origin = format!("environment variable {}", key.env_var());
            settings.apply(key.parse(&raw, &origin)?);
            sources.insert(key, Source::Env);
        }
    }
    if let Some(raw) = &overrides.mode {
        settings.apply(Key::Mode.parse(raw, "--mode")?);
        sources.insert(Key::Mode, Source::Flag);
    }
    if let Some(raw) = &overrides.image {
        settings.apply(Key::SandboxImage.parse(raw, "--image")?);
        sources.insert(Key::SandboxImage, Source::Flag);
    }
    Ok(Resolved {
        settings,
        sources,
        warnings,
    })
}

/// The TOML config file, edited in place so the user's comments and layout survive.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    doc: DocumentMut,
}

impl ConfigFile {
    /// Load the file. A missing file is empty. A file that does not parse is kept, renamed
    /// aside, and a warning says so; defaults then apply.
    pub fn load(path: &Path) -> Result<(ConfigFile, Vec<String>)> {
        let mut warnings = Vec::new();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Error::new(
                    ErrorCode::ConfigError,
                    format!("cannot read config file {}: {e}", path.display()),
                ))
            }
        };
        let doc = match text.parse::<DocumentMut>() {
            Ok(doc) => doc,
            Err(e) => {
                let aside = set_aside(path)?;
                let reason = e.to_string().lines().next().unwrap_or_default().to_string();
                warnings.push(format!(
                    "config file {} could not be parsed ({reason}); it was kept as {} and defaults apply",
                    path.display(),
                    aside.display()
                ));
                DocumentMut::new()
            }
        };
        Ok((
            ConfigFile {
                path: path.to_path_buf(),
                doc,
            },
            warnings,
        ))
    }

    /// The raw text of a setting in the file, if present.
    pub fn get(&self, key: Key) -> Option<String> {
        let (table, name) = key.file_location();
        let item = match table {
            Some(t) => self.doc.get(t)?.as_table_like()?.get(name)?,
            None => self.doc.get(name)?,
        };
        // The raw value without its decor (spaces, comments), as the user typed it.
        let mut v = item.as_value()?.clone();
        v.decor_mut().clear();
        Some(match v.as_str() {
            Some(s) => s.to_string(),
            None => v.to_string(),
        })
    }

    /// Keys in the file that are not settings.
    pub fn unknown_keys(&self) -> Vec<String> {
        let mut unknown = Vec::new();
        for (k, item) in self.doc.iter() {
            match k {
                "mode" | "env" => {}
                "sandbox" => {
                    if let Some(t) = item.as_table_like() {
                        for (sub, _) in t.iter() {
                            let known = sub == WORKSPACES_KEY
                                || Key::ALL
                                    .iter()
                                    .any(|k| k.file_location() == (Some("sandbox"), sub));
                            if !known {
                                unknown.push(format!("sandbox.{sub}"));
                            }
                        }
                    }
                }
                other => unknown.push(other.to_string()),
            }
        }
        unknown
    }

    /// The `[env]` table, validated. Numbers and booleans are taken as their text.
    pub fn env_entries(&self) -> Result<BTreeMap<String, String>> {
        let mut entries = BTreeMap::new();
        let Some(item) = self.doc.get("env") else {
            return Ok(entries);
        };
        let origin = |k: &str| format!("config file {} (env.{k})", self.path.display());
        let table = item.as_table_like().ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidSetting,
                format!(
                    "config file {}: `env` must be a table of NAME = \"value\"",
                    self.path.display()
                ),
            )
        })?;
        for (k, v) in table.iter() {
            let with_origin =
                |e: Error| Error::new(e.code, format!("{}: {}", origin(k), e.message));
            command_env::validate_name(k).map_err(with_origin)?;
            let mut v = v.as_value().cloned().ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidSetting,
                    format!("{}: the value must be text, e.g. {k} = \"1\"", origin(k)),
                )
            })?;
            v.decor_mut().clear();
            let text = match &v {
                toml_edit::Value::String(s) => s.value().clone(),
                toml_edit::Value::Integer(_)
                | toml_edit::Value::Float(_)
                | toml_edit::Value::Boolean(_) => v.to_string(),
                _ => {
                    return Err(Error::new(
                        ErrorCode::InvalidSetting,
                        format!("{}: the value must be text, e.g. {k} = \"1\"", origin(k)),
                    ))
                }
            };
            command_env::validate_value(k, &text).map_err(with_origin)?;
            entries.insert(k.to_string(), text);
        }
        Ok(entries)
    }

    /// `sandbox.workspaces`: absolute folder paths.
    pub fn workspaces(&self) -> Result<Vec<PathBuf>> {
        let Some(item) = self
            .doc
            .get("sandbox")
            .and_then(|t| t.as_table_like())
            .and_then(|t| t.get(WORKSPACES_KEY))
        else {
            return Ok(Vec::new());
        };
        let invalid = |why: &str| {
            Error::new(
                ErrorCode::InvalidSetting,
                format!(
                    "config file {} (sandbox.workspaces): {why}; expected a list of absolute folder paths, e.g. workspaces = [\"/home/me/code\"]",
                    self.path.display()
                ),
            )
        };
        let list = item.as_array().ok_or_else(|| invalid("not a list"))?;
        list.iter()
            .map(|v| match v.as_str() {
                Some(p) if Path::new(p).is_absolute() => Ok(PathBuf::from(p)),
                Some(p) => Err(invalid(&format!("`{p}` is not an absolute path"))),
                None => Err(invalid("every entry must be a text")),
            })
            .collect()
    }

    /// Replace `sandbox.workspaces` (the list's comments are kept where entries stay).
    pub fn set_workspaces(&mut self, list: &[PathBuf]) {
        if !self.doc.get("sandbox").is_some_and(|i| i.is_table_like()) {
            self.doc.insert("sandbox", Item::Table(Table::new()));
        }
        let Some(t) = self
            .doc
            .get_mut("sandbox")
            .and_then(|i| i.as_table_like_mut())
        else {
            return;
        };
        let mut array = toml_edit::Array::new();
        for p in list {
            array.push(p.to_string_lossy().as_ref());
        }
        t.insert(WORKSPACES_KEY, toml_edit::value(array));
    }

    /// Set `env.NAME` (an empty value removes the variable from commands).
    pub fn set_env(&mut self, name: &str, value: &str) {
        if !self.doc.get("env").is_some_and(|i| i.is_table_like()) {
            self.doc.insert("env", Item::Table(Table::new()));
        }
        if let Some(t) = self.doc.get_mut("env").and_then(|i| i.as_table_like_mut()) {
            t.insert(name, toml_edit::value(value));
        }
    }

    /// Remove `env.NAME` (its default applies again).
    pub fn unset_env(&mut self, name: &str) {
        if let Some(t) = self.doc.get_mut("env").and_then(|i| i.as_table_like_mut()) {
            t.remove(name);
        }
    }

    pub fn set(&mut self, value: &Value) {
        let (key, item) = match value {
            Value::Mode(m) => (Key::Mode, toml_edit::value(m.as_str())),
            Value::Image(i) => (Key::SandboxImage, toml_edit::value(i.as_str())),
            Value::AutoPull(b) => (Key::SandboxAutoPull, toml_edit::value(*b)),
            Value::Cleanup(b) => (Key::SandboxCleanup, toml_edit::value(*b)),
            Value::Ttl(t) => (Key::SandboxTtl, toml_edit::value(*t as i64)),
            Value::Memory(m) => (Key::SandboxMemory, toml_edit::value(m.as_str())),
            Value::Cpus(c) => (Key::SandboxCpus, toml_edit::value(c.as_str())),
            Value::Network(n) => (Key::SandboxNetwork, toml_edit::value(n.as_str())),
        };
        let (table, name) = key.file_location();
        match table {
            Some(t) => {
                if !self.doc.get(t).is_some_and(|i| i.is_table_like()) {
                    self.doc.insert(t, Item::Table(Table::new()));
                }
                if let Some(tbl) = self.doc.get_mut(t).and_then(|i| i.as_table_like_mut()) {
                    tbl.insert(name, item);
                }
            }
            None => {
                // Top-level keys must come before any table: move the key to the front.
                self.doc.remove(name);
                let rest: Vec<(String, Item)> = self
                    .doc
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
                self.doc.clear();
                self.doc.insert(name, item);
                for (k, v) in rest {
                    self.doc.insert(&k, v);
                }
            }
        }
    }

    pub fn unset(&mut self, key: Key) {
        let (table, name) = key.file_location();
        match table {
            Some(t) => {
                if let Some(tbl) = self.doc.get_mut(t).and_then(|i| i.as_table_like_mut()) {
                    tbl.remove(name);
                }
            }
            None => {
                self.doc.remove(name);
            }
        }
    }

    pub fn save(&self) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            Paths::ensure_private_dir(dir)?;
        }
        write_atomic(&self.path, self.doc.to_string().as_bytes(), false).map_err(|e| {
            Error::new(
                ErrorCode::ConfigError,
                format!("cannot write config file {}: {e}", self.path.display()),
            )
        })
    }
}

/// Rename an unreadable config file to `config.toml.corrupt-<unix time>` and return the new path.
fn set_aside(path: &Path) -> Result<PathBuf> {
    let secs = crate::util::now_secs();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("config.toml");
    let mut aside = path.with_file_name(format!("{name}.corrupt-{secs}"));
    let mut n = 1;
    while aside.exists() {
        aside = path.with_file_name(format!("{name}.corrupt-{secs}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &aside).map_err(|e| {
        Error::new(
            ErrorCode::ConfigError,
            format!(
                "config file {} could not be parsed and could not be set aside: {e}",
                path.display()
            ),
        )
    })?;
    Ok(aside)
}

/// Validate `raw` for `key` and save it to the config file. Returns the saved value.
pub fn set_in_file(paths: &Paths, key: Key, raw: &str) -> Result<Value> {
    let value = key.parse(raw, "stigmer config set")?;
    let (mut file, _warnings) = ConfigFile::load(&paths.config_file())?;
    file.set(&value);
    file.save()?;
    Ok(value)
}

/// Validate and save `env.NAME = value` in the config file.
pub fn set_env_in_file(paths: &Paths, name: &str, value: &str) -> Result<()> {
    command_env::validate_name(name)?;
    command_env::validate_value(name, value)?;
    let (mut file, _warnings) = ConfigFile::load(&paths.config_file())?;
    file.env_entries()?;
    file.set_env(name, value);
    file.save()
}

/// Remove `env.NAME` from the config file.
pub fn unset_env_in_file(paths: &Paths, name: &str) -> Result<()> {
    command_env::validate_name(name)?;
    let (mut file, _warnings) = ConfigFile::load(&paths.config_file())?;
    file.unset_env(name);
    file.save()
}

/// Add `dir` (checked by the caller) to `sandbox.workspaces`, or remove it; returns the list.
/// Adding a folder already there, or removing one that is not, changes nothing.
pub fn edit_workspaces_in_file(paths: &Paths, dir: &Path, add: bool) -> Result<Vec<PathBuf>> {
    let (mut file, _warnings) = ConfigFile::load(&paths.config_file())?;
    let mut list = file.workspaces()?;
    let before = list.clone();
    if add {
        if !list.iter().any(|p| p == dir) {
            list.push(dir.to_path_buf());
        }
    } else {
        list.retain(|p| p != dir);
    }
    if list != before {
        file.set_workspaces(&list);
        file.save()?;
    }
    Ok(list)
}

/// Remove `key` from the config file (its default or environment value applies again).
pub fn unset_in_file(paths: &Paths, key: Key) -> Result<()> {
    let (mut file, _warnings) = ConfigFile::load(&paths.config_file())?;
    file.unset(key);
    file.save()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let p = Paths::under(dir.path());
        (dir, p)
    }

    #[test]
    fn env_table_is_read_validated_and_edited_in_place() {
        let (_d, p) = paths();
        std::fs::create_dir_all(&p.config_dir).unwrap();
        std::fs::write(p.config_file(), "# mine\n[env]\nCI = 1\nNO_COLOR = \"\"\n").unwrap();
        let r = resolve_with(&p, &Overrides::default(), |_| None).unwrap();
        assert_eq!(r.settings.env["CI"], "1");
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let env = r.settings.command_env();
        assert!(env.unset.contains("NO_COLOR"));
        assert_eq!(env.set["CI"], "1");

        set_env_in_file(&p, "PAGER", "less -R").unwrap();
        unset_env_in_file(&p, "CI").unwrap();
        let text = std::fs::read_to_string(p.config_file()).unwrap();
        assert!(text.starts_with("# mine"), "{text}");
        let r = resolve_with(&p, &Overrides::default(), |_| None).unwrap();
        assert_eq!(r.settings.command_env().set["PAGER"], "less -R");
        assert!(!r.settings.env.contains_key("CI"));

        let before = std::fs::read_to_string(p.config_file()).unwrap();
        assert!(set_env_in_file(&p, "STIGMER_HOME", "/x").is_err());
        assert!(set_env_in_file(&p, "BAD NAME", "x").is_err());
        assert_eq!(std::fs::read_to_string(p.config_file()).unwrap(), before);

        std::fs::write(p.config_file(), "[env]\nX = [1, 2]\n").unwrap();
        let e = resolve_with(&p, &Overrides::default(), |_| None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidSetting);
        assert!(e.message.contains("env.X"), "{}", e.message);
    }

    #[test]
    fn defaults_apply_without_file_or_env() {
        let (_d, p) = paths();
        let r = resolve_with(&p, &Overrides::default(), |_| None).unwrap();
        assert_eq!(r.settings, Settings::default());
        assert_eq!(r.settings.tier(), Tier::Local);
        assert!(r.sources.values().all(|s| *s == Source::Default));
    }

    #[test]
    fn flag_beats_env_beats_file() {
        let (_d, p) = paths();
        std::fs::create_dir_all(&p.config_dir).unwrap();
        std::fs::write(
            p.config_file(),
            "mode = \"sandbox\"\n[sandbox]\nttl = 10\nimage = \"file/img:1\"\n",
        )
        .unwrap();
        let env = |k: &str| match k {
            "STIGMER_SANDBOX_TTL" => Some("20".to_string()),
            "STIGMER_SANDBOX_IMAGE" => Some("env/img:2".to_string()),
            _ => None,
        };
        let over = Overrides {
            mode: Some("local".into()),
            image: None,
        };
        let r = resolve_with(&p, &over, env).unwrap();
        assert_eq!(r.settings.mode, Mode::Local);
        assert_eq!(r.sources[&Key::Mode], Source::Flag);
        assert_eq!(r.settings.sandbox_ttl_secs, 20);
        assert_eq!(r.sources[&Key::SandboxTtl], Source::Env);
        assert_eq!(r.settings.sandbox_image, "env/img:2");
        assert_eq!(r.settings.tier(), Tier::Local);
    }

    #[test]
    fn invalid_values_name_their_origin_and_valid_values() {
        let (_d, p) = paths();
        let e = resolve_with(&p, &Overrides::default(), |k| {
            (k == "STIGMER_EXECUTION_MODE").then(|| "bogus".to_string())
        })
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidMode);
        assert!(
            e.message.contains("STIGMER_EXECUTION_MODE"),
            "{}",
            e.message
        );
        assert!(e.message.contains("`local` or `sandbox`"), "{}", e.message);

        let e = resolve_with(&p, &Overrides::default(), |k| {
            (k == "STIGMER_SANDBOX_TTL").then(|| "abc".to_string())
        })
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidSetting);
        assert!(e.message.contains("STIGMER_SANDBOX_TTL"), "{}", e.message);

        let e = Key::Mode.parse("auto", "--mode").unwrap_err();
        assert!(e.message.contains("auto"), "{}", e.message);
    }

    #[test]
    fn corrupt_file_is_set_aside_not_deleted() {
        let (_d, p) = paths();
        std::fs::create_dir_all(&p.config_dir).unwrap();
        std::fs::write(p.config_file(), "mode = = broken [").unwrap();
        let r = resolve_with(&p, &Overrides::default(), |_| None).unwrap();
        assert_eq!(r.settings, Settings::default());
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        let kept: Vec<_> = std::fs::read_dir(&p.config_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            std::fs::read_to_string(&kept[0]).unwrap(),
            "mode = = broken ["
        );
    }

    #[test]
    fn set_keeps_comments_and_other_keys() {
        let (_d, p) = paths();
        std::fs::create_dir_all(&p.config_dir).unwrap();
        std::fs::write(
            p.config_file(),
            "# my settings\n[sandbox]\nttl = 5 # short\n",
        )
        .unwrap();
        set_in_file(&p, Key::Mode, "sandbox").unwrap();
        set_in_file(&p, Key::SandboxImage, "my/img:v1").unwrap();
        let text = std::fs::read_to_string(p.config_file()).unwrap();
        assert!(text.contains("# my settings"), "{text}");
        assert!(text.contains("ttl = 5 # short"), "{text}");
        let r = resolve_with(&p, &Overrides::default(), |_| None).unwrap();
        assert_eq!(r.settings.mode, Mode::Sandbox);
        assert_eq!(r.settings.sandbox_image, "my/img:v1");
        assert_eq!(r.settings.tier(), Tier::Custom);
        assert_eq!(r.settings.sandbox_ttl_secs, 5);
        let e = set_in_file(&p, Key::SandboxTtl, "-1").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidSetting);
        assert_eq!(std::fs::read_to_string(p.config_file()).unwrap(), text);
    }
}
