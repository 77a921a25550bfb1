//! Settings and the execution mode.
//!
//! Resolution order, highest first: command-line flag > environment variable > config file >
//! default. Every value is validated wherever it comes from: an invalid one is an error that
//! names where it came from and the valid values, never a silent default.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use stigmer_protocol::mode::{validate_image_ref, Mode, Tier, BASIC_IMAGE};

use serde::{Deserialize, Serialize};

use crate::command_env::{self, CommandEnv};
use crate::error::Result;
use crate::paths::Paths;

mod clients;
mod file;
mod keys;

pub use clients::{set_client_in_file, validate_client_name, validate_policy};
pub use file::{
    edit_allowlist_in_file, edit_workspaces_in_file, set_env_in_file, set_in_file,
    unset_env_in_file, unset_in_file, ConfigFile,
};
pub use keys::{parse_memory, parse_size, Key, Value};
use stigmer_protocol::network::NetworkPolicy;

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
    pub sandbox_network: NetworkPolicy,
    /// Folders the user allowed sandboxed commands to work in (`sandbox.workspaces`), links
    /// resolved when they were added.
    pub sandbox_workspaces: Vec<PathBuf>,
    /// Hosts sandboxes may reach under the allowlist policy (`sandbox.allow`): names and
    /// `*.suffix` entries, validated.
    pub sandbox_allow: Vec<String>,
    /// Host-run files sandboxed commands may change after all (`sandbox.writable`).
    pub sandbox_writable: Vec<String>,
    /// More paths protected commands may not read (`protected.hide`).
    pub protected_hide: Vec<PathBuf>,
    /// Credential variables protected commands may have after all (`protected.pass_env`).
    pub protected_pass_env: Vec<String>,
    /// The `[env]` table: changes to the commands' default environment
    /// ([`crate::command_env::AGENT_ENV`]); an empty value removes a variable.
    pub env: BTreeMap<String, String>,
    /// Keep the run history on disk (`history.keep`).
    pub history_keep: bool,
    /// Record what runs change (`history.changes`).
    pub history_changes: bool,
    /// Entries a recorded folder may hold (`history.changes_max_files`).
    pub changes_max_files: u64,
    /// Files larger than this are listed, not kept (`history.changes_max_file_size`).
    pub changes_max_file_size: String,
    pub history_max_runs: u64,
    pub history_max_days: u64,
    /// Disk space for runs' whole output, e.g. `1g`; `0` keeps none.
    pub history_max_output: String,
    /// Seconds a command waits for the user's approval (`approvals.timeout`).
    pub approvals_timeout_secs: u64,
    /// Each client's tier and rule (`[clients."NAME"]`); clients not listed get the defaults.
    pub clients: BTreeMap<String, stigmer_protocol::clients::ClientPolicy>,
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
            sandbox_network: NetworkPolicy::Open,
            sandbox_workspaces: Vec::new(),
            sandbox_allow: Vec::new(),
            sandbox_writable: Vec::new(),
            protected_hide: Vec::new(),
            protected_pass_env: Vec::new(),
            env: BTreeMap::new(),
            history_keep: true,
            history_changes: true,
            changes_max_files: 200_000,
            changes_max_file_size: "16m".to_string(),
            history_max_runs: 10_000,
            history_max_days: 90,
            history_max_output: "1g".to_string(),
            approvals_timeout_secs: 120,
            clients: BTreeMap::new(),
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
            Key::HistoryKeep => self.history_keep.to_string(),
            Key::HistoryChanges => self.history_changes.to_string(),
            Key::ChangesMaxFiles => self.changes_max_files.to_string(),
            Key::ChangesMaxFileSize => self.changes_max_file_size.clone(),
            Key::HistoryMaxRuns => self.history_max_runs.to_string(),
            Key::HistoryMaxDays => self.history_max_days.to_string(),
            Key::HistoryMaxOutput => self.history_max_output.clone(),
            Key::ApprovalsTimeout => self.approvals_timeout_secs.to_string(),
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
            Value::HistoryKeep(b) => self.history_keep = b,
            Value::HistoryChanges(b) => self.history_changes = b,
            Value::ChangesMaxFiles(n) => self.changes_max_files = n,
            Value::ChangesMaxFileSize(s) => self.changes_max_file_size = s,
            Value::HistoryMaxRuns(n) => self.history_max_runs = n,
            Value::HistoryMaxDays(n) => self.history_max_days = n,
            Value::HistoryMaxOutput(s) => self.history_max_output = s,
            Value::ApprovalsTimeout(t) => self.approvals_timeout_secs = t,
        }
    }

    /// The largest file whose content is kept for undo, in bytes.
    pub fn changes_max_file_bytes(&self) -> u64 {
        parse_size(&self.changes_max_file_size).unwrap_or(16 << 20)
    }

    /// How much run history is kept.
    pub fn retention(&self) -> crate::history::Retention {
        crate::history::Retention {
            max_runs: self.history_max_runs,
            max_age: std::time::Duration::from_secs(self.history_max_days * 24 * 3600),
            max_output_bytes: parse_size(&self.history_max_output).unwrap_or(0),
        }
    }
}

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
    settings.sandbox_allow = file.allowlist()?;
    settings.sandbox_writable = file.writable()?;
    (settings.protected_hide, settings.protected_pass_env) = file.protected()?;
    settings.clients = file.clients()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

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
