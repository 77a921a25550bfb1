//! The config file: read, validated and edited in place (comments and layout kept).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table};

use super::{Key, Value};
use crate::command_env;
use crate::error::{Error, ErrorCode, Result};
use crate::paths::{write_atomic, Paths};

/// The key of the sandbox workspaces in the `[sandbox]` table.
const WORKSPACES_KEY: &str = "workspaces";
/// The key of the network allowlist in the `[sandbox]` table.
const ALLOW_KEY: &str = "allow";
/// The host-run files sandboxed commands may change after all, in the `[sandbox]` table.
const WRITABLE_KEY: &str = "writable";

/// The TOML config file, edited in place so the user's comments and layout survive.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub(super) doc: DocumentMut,
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
                "mode" | "env" | "clients" => {}
                "protected" => {
                    if let Some(t) = item.as_table_like() {
                        for (sub, _) in t.iter() {
                            if sub != "hide" && sub != "pass_env" {
                                unknown.push(format!("protected.{sub}"));
                            }
                        }
                    }
                }
                table @ ("sandbox" | "history" | "approvals") => {
                    if let Some(t) = item.as_table_like() {
                        for (sub, _) in t.iter() {
                            let known = (table == "sandbox"
                                && (sub == WORKSPACES_KEY
                                    || sub == ALLOW_KEY
                                    || sub == WRITABLE_KEY))
                                || Key::ALL
                                    .iter()
                                    .any(|k| k.file_location() == (Some(table), sub));
                            if !known {
                                unknown.push(format!("{table}.{sub}"));
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

    /// `[protected]`: `hide`, more folders or files protected commands may not read (absolute,
    /// or `~/` for the home folder); `pass_env`, credential variables the user lets them have.
    pub fn protected(&self) -> Result<(Vec<PathBuf>, Vec<String>)> {
        let table = self.doc.get("protected").and_then(|t| t.as_table_like());
        let list = |key: &str, expected: &str| -> Result<Vec<String>> {
            let Some(item) = table.and_then(|t| t.get(key)) else {
                return Ok(Vec::new());
            };
            let invalid = |why: String| {
                Error::new(
                    ErrorCode::InvalidSetting,
                    format!(
                        "config file {} (protected.{key}): {why}; expected {expected}",
                        self.path.display()
                    ),
                )
            };
            let list = item
                .as_array()
                .ok_or_else(|| invalid("not a list".into()))?;
            list.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| invalid("every entry must be a text".into()))
                })
                .collect()
        };
        let home = crate::paths::user_home();
        let hide = list(
            "hide",
            "a list of paths, e.g. hide = [\"~/notes\", \"/srv/keys\"]",
        )?
        .into_iter()
        .map(|p| match p.strip_prefix("~/") {
            Some(rest) => Ok(home.join(rest)),
            None if Path::new(&p).is_absolute() && !p.contains("/../") => Ok(PathBuf::from(p)),
            None => Err(Error::new(
                ErrorCode::InvalidSetting,
                format!(
                    "config file {} (protected.hide): `{p}` is not an absolute path or ~/...",
                    self.path.display()
                ),
            )),
        })
        .collect::<Result<Vec<_>>>()?;
        let pass_env = list(
            "pass_env",
            "a list of variable names, e.g. pass_env = [\"GITHUB_TOKEN\"]",
        )?;
        Ok((hide, pass_env))
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

    /// `sandbox.writable`: host-run files (names of the read-only list, or `.git/config`,
    /// `.git/hooks`, `.git/info`) that the user lets sandboxed commands change.
    pub fn writable(&self) -> Result<Vec<String>> {
        let Some(item) = self
            .doc
            .get("sandbox")
            .and_then(|t| t.as_table_like())
            .and_then(|t| t.get(WRITABLE_KEY))
        else {
            return Ok(Vec::new());
        };
        let known: Vec<String> = crate::execute::container::hostrun::NAMES
            .iter()
            .map(|n| n.to_string())
            .chain(
                crate::execute::container::hostrun::GIT_NAMES
                    .iter()
                    .map(|n| format!(".git/{n}")),
            )
            .collect();
        let invalid = |why: &str| {
            Error::new(
                ErrorCode::InvalidSetting,
                format!(
                    "config file {} (sandbox.writable): {why}; expected a list of names from: {} \
                     (or such a name's full path in one workspace)",
                    self.path.display(),
                    known.join(", ")
                ),
            )
        };
        let list = item.as_array().ok_or_else(|| invalid("not a list"))?;
        list.iter()
            .map(|v| match v.as_str() {
                Some(n) if known.iter().any(|k| k == n) => Ok(n.to_string()),
                // In full: that file of one workspace (or of a repository in it).
                Some(n)
                    if std::path::Path::new(n).is_absolute()
                        && !n.contains("/../")
                        && known.iter().any(|k| std::path::Path::new(n).ends_with(k)) =>
                {
                    Ok(n.to_string())
                }
                Some(n) => Err(invalid(&format!("`{n}` is not one of them"))),
                None => Err(invalid("every entry must be a text")),
            })
            .collect()
    }

    /// `sandbox.allow`: host names and `*.suffix` entries, each validated.
    pub fn allowlist(&self) -> Result<Vec<String>> {
        let Some(item) = self
            .doc
            .get("sandbox")
            .and_then(|t| t.as_table_like())
            .and_then(|t| t.get(ALLOW_KEY))
        else {
            return Ok(Vec::new());
        };
        let invalid = |why: &str| {
            Error::new(
                ErrorCode::InvalidSetting,
                format!(
                    "config file {} (sandbox.allow): {why}; expected a list of host names, e.g. allow = [\"pypi.org\", \"*.github.com\"]",
                    self.path.display()
                ),
            )
        };
        let list = item.as_array().ok_or_else(|| invalid("not a list"))?;
        list.iter()
            .map(|v| match v.as_str() {
                Some(h) => stigmer_protocol::network::validate_allow_entry(h)
                    .map_err(|why: String| invalid(&format!("`{h}`: {why}"))),
                None => Err(invalid("every entry must be a text")),
            })
            .collect()
    }

    /// Replace `sandbox.workspaces`.
    pub fn set_workspaces(&mut self, list: &[PathBuf]) {
        let items: Vec<String> = list
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        self.set_sandbox_list(WORKSPACES_KEY, &items);
    }

    /// Replace `sandbox.allow`.
    pub fn set_allowlist(&mut self, list: &[String]) {
        self.set_sandbox_list(ALLOW_KEY, list);
    }

    fn set_sandbox_list(&mut self, key: &str, list: &[String]) {
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
            array.push(p.as_str());
        }
        t.insert(key, toml_edit::value(array));
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
            Value::HistoryKeep(b) => (Key::HistoryKeep, toml_edit::value(*b)),
            Value::HistoryChanges(b) => (Key::HistoryChanges, toml_edit::value(*b)),
            Value::ChangesMaxFiles(n) => (Key::ChangesMaxFiles, toml_edit::value(*n as i64)),
            Value::ChangesMaxFileSize(s) => (Key::ChangesMaxFileSize, toml_edit::value(s.as_str())),
            Value::HistoryMaxRuns(n) => (Key::HistoryMaxRuns, toml_edit::value(*n as i64)),
            Value::HistoryMaxDays(n) => (Key::HistoryMaxDays, toml_edit::value(*n as i64)),
            Value::HistoryMaxOutput(s) => (Key::HistoryMaxOutput, toml_edit::value(s.as_str())),
            Value::ApprovalsTimeout(t) => (Key::ApprovalsTimeout, toml_edit::value(*t as i64)),
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

/// Add `host` to `sandbox.allow` (validated first: a bad entry changes nothing), or remove
/// it; returns the list. Adding one already there, or removing one that is not, changes
/// nothing.
pub fn edit_allowlist_in_file(paths: &Paths, host: &str, add: bool) -> Result<Vec<String>> {
    let entry = match stigmer_protocol::network::validate_allow_entry(host) {
        Ok(entry) => entry,
        // What is not a valid entry is in no list: removing it changes nothing.
        Err(_) if !add => return ConfigFile::load(&paths.config_file())?.0.allowlist(),
        Err(why) => {
            return Err(Error::new(
                ErrorCode::InvalidSetting,
                format!("`{host}` cannot be allowed: {why}"),
            ))
        }
    };
    let (mut file, _warnings) = ConfigFile::load(&paths.config_file())?;
    let mut list = file.allowlist()?;
    let before = list.clone();
    if add {
        if !list.contains(&entry) {
            list.push(entry);
        }
    } else {
        list.retain(|h| *h != entry);
    }
    if list != before {
        file.set_allowlist(&list);
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

    fn writable(text: &str) -> Result<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        ConfigFile::load(&path)?.0.writable()
    }

    #[test]
    fn writable_names_a_host_run_file_everywhere_or_in_full_in_one_workspace() {
        assert_eq!(
            writable("[sandbox]\nwritable = [\".vscode\", \"/p/sub/.git/hooks\"]\n").unwrap(),
            [".vscode", "/p/sub/.git/hooks"]
        );
        for bad in [
            "src",
            "/p/src",
            "p/.vscode",
            "/p/../q/.vscode",
            ".git/objects",
        ] {
            let e = writable(&format!("[sandbox]\nwritable = [\"{bad}\"]\n")).unwrap_err();
            assert!(
                e.message.contains(&format!("`{bad}`")),
                "{bad}: {}",
                e.message
            );
        }
    }
}
