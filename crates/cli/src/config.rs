//! `stigmer config get|set|unset|list|path`.

use serde_json::json;
use stigmer_engine::paths::Paths;
use stigmer_engine::settings::{self, Key, Overrides, Source};
use stigmer_engine::Result;
use stigmer_protocol::routes;

use crate::cli::ConfigCommand;
use stigmer_client::Client;
use stigmer_protocol::network::{
    validate_allow_entry, HostBody, NetworkChange, NetworkPolicy, NetworkView,
};
use stigmer_protocol::status::ModeChange;

pub async fn config(cmd: ConfigCommand, paths: &Paths) -> Result<i32> {
    match cmd {
        ConfigCommand::Path => {
            println!("{}", paths.config_file().display());
        }
        ConfigCommand::Get { key } if env_name(&key).is_some() => {
            let name = env_name(&key).unwrap_or_default();
            let env = resolve(paths)?.settings.command_env();
            match env.set.get(name) {
                Some(v) => println!("{v}"),
                None => println!(),
            }
        }
        ConfigCommand::Set { key, value } if env_name(&key).is_some() => {
            let name = env_name(&key).unwrap_or_default();
            settings::set_env_in_file(paths, name, &value)?;
            if value.is_empty() {
                println!(
                    "env.{name} = \"\" (commands run without {name}; saved in {})",
                    paths.config_file().display()
                );
            } else {
                println!(
                    "env.{name} = {value} (saved in {})",
                    paths.config_file().display()
                );
            }
            note_server_restart_for(paths, &format!("env.{name}"));
        }
        ConfigCommand::Unset { key } if env_name(&key).is_some() => {
            let name = env_name(&key).unwrap_or_default();
            settings::unset_env_in_file(paths, name)?;
            println!(
                "env.{name} removed from {} (its default applies)",
                paths.config_file().display()
            );
            note_server_restart_for(paths, &format!("env.{name}"));
        }
        ConfigCommand::Allow { hosts } => allowlist(paths, &hosts, true).await?,
        ConfigCommand::Disallow { hosts } => allowlist(paths, &hosts, false).await?,
        ConfigCommand::Get { key } => {
            let key: Key = key.parse()?;
            let resolved = resolve(paths)?;
            println!("{}", resolved.settings.get(key));
        }
        ConfigCommand::List { json } => {
            let resolved = resolve(paths)?;
            if json {
                let items: Vec<_> = Key::ALL
                    .iter()
                    .map(|k| {
                        json!({
                            "key": k.name(),
                            "value": resolved.settings.get(*k),
                            "source": resolved.sources[k],
                            "env_var": k.env_var(),
                            "description": k.description(),
                        })
                    })
                    .collect();
                let env = resolved.settings.command_env();
                let doc = json!({
                    "config_file": paths.config_file(),
                    "settings": items,
                    "sandbox_allow": resolved.settings.sandbox_allow,
                    "command_env": env,
                });
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            } else {
                for k in Key::ALL {
                    let source = match resolved.sources[&k] {
                        Source::Default => "default".to_string(),
                        Source::File => "config file".to_string(),
                        Source::Env => format!("from {}", k.env_var()),
                        Source::Flag => "flag".to_string(),
                    };
                    println!(
                        "{:<24} = {:<45} ({source})",
                        k.name(),
                        resolved.settings.get(k)
                    );
                }
                println!(
                    "{:<24} = {:<45} (config file)",
                    "sandbox.allow",
                    if resolved.settings.sandbox_allow.is_empty() {
                        "(none)".to_string()
                    } else {
                        resolved.settings.sandbox_allow.join(", ")
                    }
                );
                let env = resolved.settings.command_env();
                for (k, v) in &env.set {
                    let source = if resolved.settings.env.contains_key(k) {
                        "config file"
                    } else {
                        "default"
                    };
                    println!("{:<24} = {:<45} ({source})", format!("env.{k}"), v);
                }
                for k in &env.unset {
                    println!(
                        "{:<24} = {:<45} (config file)",
                        format!("env.{k}"),
                        "(removed)"
                    );
                }
            }
        }
        ConfigCommand::Set { key, value } => {
            let key: Key = key.parse()?;
            set(paths, key, &value).await?;
        }
        ConfigCommand::Unset { key } => {
            let key: Key = key.parse()?;
            settings::unset_in_file(paths, key)?;
            println!(
                "{} removed from {}",
                key.name(),
                paths.config_file().display()
            );
            note_server_restart(paths, key);
        }
    }
    Ok(0)
}

fn resolve(paths: &Paths) -> Result<settings::Resolved> {
    let resolved = settings::resolve(paths, &Overrides::default())?;
    for w in &resolved.warnings {
        eprintln!("stigmer: warning: {w}");
    }
    Ok(resolved)
}

async fn set(paths: &Paths, key: Key, raw: &str) -> Result<()> {
    let value = key.parse(raw, "stigmer config set")?;
    // Mode, image and network of a running server change live, through the app's path.
    let change = match &value {
        settings::Value::Mode(m) => Some(ModeChange {
            mode: Some(*m),
            ..ModeChange::default()
        }),
        settings::Value::Image(image) => Some(ModeChange {
            image: Some(image.clone()),
            ..ModeChange::default()
        }),
        _ => None,
    };
    match (Client::find(paths)?, value, change) {
        (Some(client), settings::Value::Network(policy), _) => {
            let view: NetworkView = client
                .post(routes::NETWORK, &NetworkChange { policy })
                .await?;
            println!(
                "{} = {} (saved in {}; the next sandboxed command runs under it)",
                key.name(),
                view.policy,
                paths.config_file().display()
            );
            allowlist_hint(&view.policy, &view.allow);
        }
        (Some(client), _, Some(change)) => {
            client.set_mode(&change).await?;
            println!(
                "{} = {} (saved in {}, applied to the running server)",
                key.name(),
                raw.trim(),
                paths.config_file().display()
            );
        }
        _ => {
            settings::set_in_file(paths, key, raw)?;
            println!(
                "{} = {} (saved in {})",
                key.name(),
                raw.trim(),
                paths.config_file().display()
            );
            note_server_restart(paths, key);
        }
    }
    if std::env::var_os(key.env_var()).is_some_and(|v| !v.is_empty()) {
        eprintln!(
            "stigmer: note: {} is set in your environment and takes precedence over the config file",
            key.env_var()
        );
    }
    Ok(())
}

/// `stigmer config allow|disallow HOST...`: through the running server (applied at once),
/// else in the config file. Every entry is checked first: one bad entry changes nothing.
async fn allowlist(paths: &Paths, hosts: &[String], add: bool) -> Result<()> {
    for h in hosts {
        validate_allow_entry(h).map_err(|why| {
            stigmer_engine::Error::new(
                stigmer_engine::ErrorCode::InvalidSetting,
                format!("`{h}` cannot be allowed: {why}"),
            )
        })?;
    }
    let client = Client::find(paths)?;
    let mut list = resolve(paths)?.settings.sandbox_allow;
    for h in hosts {
        list = match &client {
            Some(c) => {
                let path = if add { "allow" } else { "disallow" };
                let body = HostBody { host: h.clone() };
                let view: NetworkView = c
                    .post(&format!("{}/{path}", routes::NETWORK), &body)
                    .await?;
                view.allow
            }
            None => settings::edit_allowlist_in_file(paths, h, add)?,
        };
    }
    if list.is_empty() {
        println!("sandbox.allow: no hosts (under the allowlist policy, sandboxes reach nothing)");
    } else {
        println!("sandbox.allow: {}", list.join(", "));
    }
    if !hosts.is_empty() {
        let applied = if client.is_some() {
            "applied to the running server"
        } else {
            "applies from the next start"
        };
        println!("(saved in {}, {applied})", paths.config_file().display());
    }
    let policy = resolve(paths)?.settings.sandbox_network;
    allowlist_hint(&policy, &list);
    Ok(())
}

fn allowlist_hint(policy: &NetworkPolicy, list: &[String]) {
    match policy {
        NetworkPolicy::Allowlist if list.is_empty() => eprintln!(
            "stigmer: note: no host is allowed yet: add some with `stigmer config allow HOST`"
        ),
        NetworkPolicy::Allowlist => {}
        other => eprintln!(
            "stigmer: note: the network policy is `{other}`; the list is used under `stigmer config set sandbox.network allowlist`"
        ),
    }
}

fn note_server_restart(paths: &Paths, key: Key) {
    note_server_restart_for(paths, key.name());
}

fn note_server_restart_for(paths: &Paths, name: &str) {
    if stigmer_engine::discovery::Discovery::find_running(paths).is_some() {
        eprintln!("stigmer: note: the running server uses the new {name} after a restart");
    }
}

/// `NAME` of an `env.NAME` key (the commands' environment), matched case-insensitively.
fn env_name(key: &str) -> Option<&str> {
    key.get(..4)
        .filter(|p| p.eq_ignore_ascii_case("env."))
        .map(|_| &key[4..])
}
