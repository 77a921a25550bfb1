//! The user's say over each client (agent) that sends commands: where its commands run and
//! whether they run freely, wait for the user's approval, or are refused. Clients are known by
//! the name they give (an MCP client's name, the API's `client` field); those that give none
//! are `other`. Only the user sets this (the window, `stigmer clients`); a request cannot.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::mode::Mode;

/// The name runs without a client name are listed and ruled under.
pub const OTHER_CLIENT: &str = "other";

/// Where a client's commands run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientTier {
    /// Wherever the global mode says (what a client seen for the first time gets).
    #[default]
    Default,
    Local,
    /// The basic sandbox image.
    Basic,
    /// A custom image (`image`).
    Custom,
}

/// Whether a client's commands run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// Run freely (the default).
    #[default]
    Run,
    /// Ask the user first: the command waits for Allow or Deny.
    Ask,
    /// Refuse every command.
    Refuse,
}

impl ClientTier {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientTier::Default => "default",
            ClientTier::Local => "local",
            ClientTier::Basic => "basic",
            ClientTier::Custom => "custom",
        }
    }
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Run => "run",
            Rule::Ask => "ask",
            Rule::Refuse => "refuse",
        }
    }
}

/// What the user chose for one client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientPolicy {
    #[serde(default)]
    pub tier: ClientTier,
    /// The image of the `custom` tier (only there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default)]
    pub rule: Rule,
}

impl ClientPolicy {
    /// Nothing chosen: the global mode, run freely.
    pub fn is_default(&self) -> bool {
        *self == ClientPolicy::default()
    }
}

/// One client as the window lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientView {
    pub name: String,
    pub policy: ClientPolicy,
    /// It has runs in the history.
    pub seen: bool,
}

/// `GET /v1/clients`: every client seen or configured, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientsView {
    pub clients: Vec<ClientView>,
}

/// `POST /v1/clients`: set one client's tier and rule (`default` and `run` forget it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientChange {
    pub name: String,
    #[serde(default)]
    pub tier: ClientTier,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default)]
    pub rule: Rule,
}

impl ClientChange {
    pub fn new(name: String, policy: ClientPolicy) -> ClientChange {
        ClientChange {
            name,
            tier: policy.tier,
            image: policy.image,
            rule: policy.rule,
        }
    }

    pub fn policy(&self) -> ClientPolicy {
        ClientPolicy {
            tier: self.tier,
            image: self.image.clone(),
            rule: self.rule,
        }
    }
}

/// A command that waits for the user's answer (rule `ask`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub command: String,
    pub client: String,
    pub cwd: PathBuf,
    pub mode: Mode,
    pub image: Option<String>,
    pub requested_at_ms: u64,
    /// When no answer means Deny.
    pub deadline_ms: u64,
}

/// The user's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Run this command.
    AllowOnce,
    /// Run it, and this client's commands from now on (its rule becomes `run`).
    AlwaysAllow,
    Deny,
}

/// `POST /v1/approvals/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    pub decision: Decision,
}

/// `GET /v1/approvals`: the commands waiting, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalsView {
    pub pending: Vec<Approval>,
}

/// How a wait ended, for the window and the tray.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalEnd {
    Allowed,
    Denied,
    TimedOut,
    /// The client hung up while it waited.
    Abandoned,
}
