//! The names of settings, their values and how each is parsed and validated.

use std::fmt;
use std::str::FromStr;

use stigmer_protocol::mode::{validate_image_ref, Mode};

use crate::error::{Error, ErrorCode, Result};

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
    HistoryKeep,
    HistoryChanges,
    ChangesMaxFiles,
    ChangesMaxFileSize,
    HistoryMaxRuns,
    HistoryMaxDays,
    HistoryMaxOutput,
    ApprovalsTimeout,
}

/// What sandbox containers may reach (`sandbox.network`).
use stigmer_protocol::network::NetworkPolicy;

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
    Network(NetworkPolicy),
    HistoryKeep(bool),
    HistoryChanges(bool),
    ChangesMaxFiles(u64),
    /// Normalized, e.g. `16m`.
    ChangesMaxFileSize(String),
    HistoryMaxRuns(u64),
    HistoryMaxDays(u64),
    /// Normalized, e.g. `1g` or `0`.
    HistoryMaxOutput(String),
    ApprovalsTimeout(u64),
}

impl Key {
    pub const ALL: [Key; 16] = [
        Key::Mode,
        Key::SandboxImage,
        Key::SandboxAutoPull,
        Key::SandboxCleanup,
        Key::SandboxTtl,
        Key::SandboxMemory,
        Key::SandboxCpus,
        Key::SandboxNetwork,
        Key::HistoryKeep,
        Key::HistoryChanges,
        Key::ChangesMaxFiles,
        Key::ChangesMaxFileSize,
        Key::HistoryMaxRuns,
        Key::HistoryMaxDays,
        Key::HistoryMaxOutput,
        Key::ApprovalsTimeout,
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
            Key::HistoryKeep => "history.keep",
            Key::HistoryChanges => "history.changes",
            Key::ChangesMaxFiles => "history.changes_max_files",
            Key::ChangesMaxFileSize => "history.changes_max_file_size",
            Key::HistoryMaxRuns => "history.max_runs",
            Key::HistoryMaxDays => "history.max_days",
            Key::HistoryMaxOutput => "history.max_output",
            Key::ApprovalsTimeout => "approvals.timeout",
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
            Key::HistoryKeep => "STIGMER_HISTORY_KEEP",
            Key::HistoryChanges => "STIGMER_HISTORY_CHANGES",
            Key::ChangesMaxFiles => "STIGMER_HISTORY_CHANGES_MAX_FILES",
            Key::ChangesMaxFileSize => "STIGMER_HISTORY_CHANGES_MAX_FILE_SIZE",
            Key::HistoryMaxRuns => "STIGMER_HISTORY_MAX_RUNS",
            Key::HistoryMaxDays => "STIGMER_HISTORY_MAX_DAYS",
            Key::HistoryMaxOutput => "STIGMER_HISTORY_MAX_OUTPUT",
            Key::ApprovalsTimeout => "STIGMER_APPROVALS_TIMEOUT",
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
            Key::SandboxNetwork => {
                "what sandboxes may reach: open (any host), none, or allowlist (only sandbox.allow)"
            }
            Key::HistoryKeep => {
                "keep the run history on disk across restarts (false: until the server stops)"
            }
            Key::HistoryChanges => {
                "record what each run changes in its folder, with what the files were (needs \
                 the history on disk)"
            }
            Key::ChangesMaxFiles => {
                "files and folders a folder may hold for its changes to be recorded (more: not \
                 recorded, said)"
            }
            Key::ChangesMaxFileSize => {
                "files larger than this are listed as changed, their content not kept (an undo \
                 cannot put them back)"
            }
            Key::HistoryMaxRuns => "finished runs the history keeps; the oldest go first",
            Key::HistoryMaxDays => "days a finished run stays in the history",
            Key::HistoryMaxOutput => {
                "disk space for runs' whole output (e.g. 1g, 200m; 0 = keep none)"
            }
            Key::ApprovalsTimeout => {
                "seconds a command waits for the user's approval before it counts as denied"
            }
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
            Key::SandboxNetwork => "`open`, `none` or `allowlist`",
            Key::HistoryKeep => "`true` or `false`",
            Key::HistoryChanges => "`true` or `false`",
            Key::ChangesMaxFiles => "a whole number of entries from 10 to 1000000",
            Key::ChangesMaxFileSize => "a size such as `16m` or `100k` (at most `1g`)",
            Key::HistoryMaxRuns => "a whole number of runs from 1 to 1000000",
            Key::HistoryMaxDays => "a whole number of days from 1 to 3650",
            Key::HistoryMaxOutput => "`0` (keep no output) or a size such as `200m` or `1g`",
            Key::ApprovalsTimeout => "a whole number of seconds from 5 to 3600",
        }
    }

    /// Table and key of this setting in the config file.
    pub(super) fn file_location(self) -> (Option<&'static str>, &'static str) {
        match self {
            Key::Mode => (None, "mode"),
            Key::SandboxImage => (Some("sandbox"), "image"),
            Key::SandboxAutoPull => (Some("sandbox"), "auto_pull"),
            Key::SandboxCleanup => (Some("sandbox"), "cleanup"),
            Key::SandboxTtl => (Some("sandbox"), "ttl"),
            Key::SandboxMemory => (Some("sandbox"), "memory"),
            Key::SandboxCpus => (Some("sandbox"), "cpus"),
            Key::SandboxNetwork => (Some("sandbox"), "network"),
            Key::HistoryKeep => (Some("history"), "keep"),
            Key::HistoryChanges => (Some("history"), "changes"),
            Key::ChangesMaxFiles => (Some("history"), "changes_max_files"),
            Key::ChangesMaxFileSize => (Some("history"), "changes_max_file_size"),
            Key::HistoryMaxRuns => (Some("history"), "max_runs"),
            Key::HistoryMaxDays => (Some("history"), "max_days"),
            Key::HistoryMaxOutput => (Some("history"), "max_output"),
            Key::ApprovalsTimeout => (Some("approvals"), "timeout"),
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
            Key::SandboxNetwork => NetworkPolicy::parse(raw)
                .map(Value::Network)
                .ok_or_else(|| invalid(String::new())),
            Key::HistoryKeep => parse_bool(raw)
                .map(Value::HistoryKeep)
                .ok_or_else(|| invalid(String::new())),
            Key::HistoryChanges => parse_bool(raw)
                .map(Value::HistoryChanges)
                .ok_or_else(|| invalid(String::new())),
            Key::ChangesMaxFiles => parse_in(raw, 10, 1_000_000)
                .map(Value::ChangesMaxFiles)
                .ok_or_else(|| invalid(String::new())),
            Key::ChangesMaxFileSize => parse_size(raw)
                .filter(|n| *n <= 1 << 30)
                .map(|_| Value::ChangesMaxFileSize(raw.trim().to_ascii_lowercase()))
                .ok_or_else(|| invalid(String::new())),
            Key::HistoryMaxRuns => parse_in(raw, 1, 1_000_000)
                .map(Value::HistoryMaxRuns)
                .ok_or_else(|| invalid(String::new())),
            Key::HistoryMaxDays => parse_in(raw, 1, 3650)
                .map(Value::HistoryMaxDays)
                .ok_or_else(|| invalid(String::new())),
            Key::ApprovalsTimeout => parse_in(raw, 5, 3600)
                .map(Value::ApprovalsTimeout)
                .ok_or_else(|| invalid(String::new())),
            Key::HistoryMaxOutput => parse_size(raw)
                .map(|_| Value::HistoryMaxOutput(raw.trim().to_ascii_lowercase()))
                .ok_or_else(|| invalid(String::new())),
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
    parse_size(raw).filter(|b| *b == 0 || *b >= 6 << 20)
}

/// A whole number from `min` to `max`.
fn parse_in(raw: &str, min: u64, max: u64) -> Option<u64> {
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
}

/// Bytes of a size: `0`, or a whole number with a `k`, `m` or `g` suffix (binary units).
pub fn parse_size(raw: &str) -> Option<u64> {
    let s = raw.trim().to_ascii_lowercase();
    if s == "0" {
        return Some(0);
    }
    let unit_at = s.char_indices().last()?.0;
    let (num, unit) = s.split_at(unit_at);
    let mult: u64 = match unit {
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_parsed_and_odd_text_refused_without_panicking() {
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("200m"), Some(200 << 20));
        assert_eq!(parse_size("0"), Some(0));
        for bad in ["5é", "é", "", "m", "12", "1.5g", "-1m"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        assert_eq!(parse_memory("5m"), None, "below the engines' minimum");
    }
}
