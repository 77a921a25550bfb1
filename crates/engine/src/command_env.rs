//! The environment commands run with: agent-ready defaults (no pager, no prompts, no colours)
//! changed by the `[env]` table of the config file, then the run's own variables.
//!
//! Commands run with stdin closed and no terminal: a pager or a password prompt would wait for
//! input that never comes and the run would hang until its timeout. These defaults make the
//! usual tools take their non-interactive path instead.

use std::collections::{BTreeMap, BTreeSet};

pub use stigmer_protocol::run::CommandEnv;

use crate::error::{Error, ErrorCode, Result};

/// The default environment of every command: name, value, and why.
pub const AGENT_ENV: &[(&str, &str, &str)] = &[
    ("PAGER", "cat", "no pager waits for a key press"),
    (
        "GIT_PAGER",
        "cat",
        "git log and diff print instead of paging",
    ),
    ("MANPAGER", "cat", "man prints instead of paging"),
    (
        "SYSTEMD_PAGER",
        "cat",
        "systemctl and journalctl print instead of paging",
    ),
    (
        "GIT_TERMINAL_PROMPT",
        "0",
        "git fails instead of asking for a password",
    ),
    (
        "GIT_EDITOR",
        "true",
        "git commit/rebase/merge never opens an editor",
    ),
    (
        "GCM_INTERACTIVE",
        "never",
        "Git Credential Manager never prompts",
    ),
    (
        "DEBIAN_FRONTEND",
        "noninteractive",
        "apt and dpkg never ask questions",
    ),
    ("PIP_NO_INPUT", "1", "pip fails instead of prompting"),
    (
        "PYTHONUNBUFFERED",
        "1",
        "Python output arrives as it is printed",
    ),
    ("TERM", "dumb", "programs do not draw for a terminal"),
    ("NO_COLOR", "1", "no colour escape codes in the output"),
];

/// [`AGENT_ENV`] changed by the user's `[env]` entries: a value replaces the default, an
/// empty value removes the variable.
pub fn with_overrides(overrides: &BTreeMap<String, String>) -> CommandEnv {
    let mut env = CommandEnv {
        set: AGENT_ENV
            .iter()
            .map(|(k, v, _)| (k.to_string(), v.to_string()))
            .collect(),
        unset: BTreeSet::new(),
    };
    for (k, v) in overrides {
        if v.is_empty() {
            env.set.remove(k);
            env.unset.insert(k.clone());
        } else {
            env.unset.remove(k);
            env.set.insert(k.clone(), v.clone());
        }
    }
    env
}

/// Check the name of a variable in `[env]`: letters, digits and `_`, not starting with a digit.
/// stigmer's own variables are refused: they configure stigmer, not commands.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(Error::new(
            ErrorCode::InvalidSetting,
            format!(
                "`{name}` is not a usable environment variable name: use letters, digits and `_`, not starting with a digit"
            ),
        ));
    }
    if name.to_ascii_uppercase().starts_with("STIGMER_") {
        return Err(Error::new(
            ErrorCode::InvalidSetting,
            format!("`{name}` is one of stigmer's own variables; commands never see those"),
        ));
    }
    Ok(())
}

/// Check a value for `[env]`: any text without NUL bytes (empty removes the variable).
pub fn validate_value(name: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::new(
            ErrorCode::InvalidSetting,
            format!("the value of env.{name} cannot contain NUL bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_add_and_remove() {
        let mut o = BTreeMap::new();
        o.insert("PAGER".to_string(), "less".to_string());
        o.insert("NO_COLOR".to_string(), String::new());
        o.insert("CI".to_string(), "1".to_string());
        let env = with_overrides(&o);
        assert_eq!(env.set["PAGER"], "less");
        assert_eq!(env.set["CI"], "1");
        assert_eq!(env.set["GIT_TERMINAL_PROMPT"], "0");
        assert!(!env.set.contains_key("NO_COLOR"));
        assert!(env.unset.contains("NO_COLOR"));
    }

    #[test]
    fn the_readme_lists_every_default() {
        let readme = include_str!("../../../README.md");
        for (k, v, _) in AGENT_ENV {
            assert!(
                readme.contains(&format!("| `{k}` | `{v}` |")),
                "README's agent-ready table lacks {k}={v}"
            );
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("MY_VAR1").is_ok());
        for bad in ["", "1X", "A-B", "A B", "A=B", "STIGMER_HOME", "stigmer_x"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
