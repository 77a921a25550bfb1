//! A run request from any entry point (the HTTP API, MCP, the CLI in its own process) becomes
//! a run by one set of rules: the command, where it runs (mode and image), its folder, its
//! environment and its limits. Nothing is started here; a refused request runs nothing.
//!
//! The rule for `image` without `mode`: an image selects sandbox mode (what `stigmer run
//! --image` always did); `image` with mode `local` is refused.
//!
//! The client's own tier and rule, set by the user, come first: a client the user refuses is
//! refused here, one whose tier the user set runs there (a request asking for another mode or
//! image is refused, never obeyed), and one the user wants to be asked about says so in
//! [`Intake::ask`].

use stigmer_protocol::clients::{ClientTier, Rule, OTHER_CLIENT};
use stigmer_protocol::run::RunRequest;

use std::ffi::OsString;
use std::sync::Arc;

use base64::Engine as _;
use stigmer_protocol::run::ArgvEncoding;

use crate::error::{Error, ErrorCode, Result};
use crate::execute::container::Sandbox;
use crate::execute::{self, timeout_from_secs, CommandSpec, ExecRequest, Target};
use crate::settings::{Key, Mode, Settings, Value, BASIC_IMAGE};

/// A request made into a run, not started.
pub struct Intake {
    pub target: Target,
    pub req: ExecRequest,
    /// Who asks for the run: a name shown in the app's activity.
    pub client: Option<String>,
    /// The user wants to approve this client's commands first.
    pub ask: bool,
}

/// The run `request` asks for, with `settings` for whatever it does not say.
pub fn intake(
    mut request: RunRequest,
    settings: &Settings,
    sandbox: &Arc<Sandbox>,
) -> Result<Intake> {
    // A blank name is no name: it is ruled as `other`, like one not given.
    request.client = request.client.filter(|c| !c.trim().is_empty());
    if let Some(c) = &request.client {
        if c.chars().count() > 100 || c.chars().any(char::is_control) {
            return Err(Error::new(
                ErrorCode::InvalidRequest,
                "`client` is at most 100 printable characters",
            ));
        }
    }
    let name = request.client.as_deref().unwrap_or(OTHER_CLIENT);
    let policy = settings.clients.get(name).cloned().unwrap_or_default();
    if policy.rule == Rule::Refuse {
        return Err(Error::new(
            ErrorCode::DeniedByUser,
            format!(
                "the user does not allow commands from `{name}` (its rule in Stigmer is \"refuse\"); nothing ran. \
                 Do not retry: tell the user, who can change it in Stigmer's Agents section"
            ),
        ));
    }
    let invalid = |m: &str| Error::new(ErrorCode::InvalidRequest, m);
    let command = match (request.argv, request.shell) {
        (Some(argv), None) => CommandSpec::Argv(decode_argv(argv, request.argv_encoding)?),
        (None, Some(shell)) => CommandSpec::Shell(shell),
        (Some(_), Some(_)) => return Err(invalid("give either `argv` or `shell`, not both")),
        (None, None) => {
            return Err(invalid(
                "give the command as `argv` (a list) or `shell` (a string)",
            ))
        }
    };
    let timeout = request
        .timeout_secs
        .map(|t| timeout_from_secs(t, "`timeout_secs`"))
        .transpose()?;
    let mode = match &request.mode {
        Some(m) => match Key::Mode.parse(m, "mode")? {
            Value::Mode(m) => Some(m),
            _ => None,
        },
        None => None,
    };
    let image = match &request.image {
        Some(i) => match Key::SandboxImage.parse(i, "image")? {
            Value::Image(i) => Some(i),
            _ => None,
        },
        None => None,
    };
    let mode = match (mode, &image) {
        (Some(Mode::Local), Some(_)) => {
            return Err(Error::new(
                ErrorCode::InvalidSetting,
                "`image` applies to sandbox mode only: drop `mode: local` or `image`",
            ))
        }
        (None, Some(_)) => Some(Mode::Sandbox),
        (mode, _) => mode,
    };
    let mut settings = settings.clone();
    let chosen = match policy.tier {
        ClientTier::Default => None,
        ClientTier::Local => Some((Mode::Local, None)),
        ClientTier::Protected => Some((Mode::Protected, None)),
        ClientTier::Basic => Some((Mode::Sandbox, Some(BASIC_IMAGE.to_string()))),
        ClientTier::Custom => Some((Mode::Sandbox, policy.image.clone())),
    };
    if let Some((user_mode, user_image)) = chosen {
        let other_mode = mode.is_some_and(|m| m != user_mode);
        let other_image = image.is_some() && image != user_image;
        if other_mode || other_image {
            return Err(Error::new(
                ErrorCode::InvalidSetting,
                format!(
                    "the user chose where `{name}`'s commands run ({}); a request cannot change it: drop `mode` and `image`",
                    policy.tier.as_str()
                ),
            ));
        }
        settings.mode = user_mode;
        if let Some(image) = user_image {
            settings.sandbox_image = image;
        }
    } else {
        settings.mode = mode.unwrap_or(settings.mode);
        if let Some(image) = image {
            settings.sandbox_image = image;
        }
    }
    let target = execute::target(
        &settings,
        request.workspace,
        request.client.as_deref(),
        sandbox,
    );
    let cwd = request.cwd.unwrap_or_else(|| target.default_cwd());
    let req = ExecRequest {
        unset_env: Vec::new(),
        command,
        cwd,
        env: request.env,
        timeout,
    };
    Ok(Intake {
        target,
        req,
        client: request.client,
        ask: policy.rule == Rule::Ask,
    })
}

/// `argv` as the OS takes it: text as it is, or base64 of each argument's bytes.
fn decode_argv(argv: Vec<String>, encoding: Option<ArgvEncoding>) -> Result<Vec<OsString>> {
    match encoding.unwrap_or(ArgvEncoding::Utf8) {
        ArgvEncoding::Utf8 => Ok(argv.into_iter().map(OsString::from).collect()),
        ArgvEncoding::Base64 => argv
            .iter()
            .map(|a| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(a)
                    .map_err(|e| {
                        Error::new(
                            ErrorCode::InvalidRequest,
                            format!("`argv` element `{a}` is not base64 ({e})"),
                        )
                    })?;
                os_string(bytes)
            })
            .collect(),
    }
}

#[cfg(unix)]
fn os_string(bytes: Vec<u8>) -> Result<OsString> {
    use std::os::unix::ffi::OsStringExt;
    Ok(OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn os_string(bytes: Vec<u8>) -> Result<OsString> {
    String::from_utf8(bytes).map(OsString::from).map_err(|_| {
        Error::new(
            ErrorCode::InvalidRequest,
            "arguments that are not UTF-8 cannot be passed on this system",
        )
    })
}
