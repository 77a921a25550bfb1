//! `stigmer config get|set|unset|list|path`.

use serde_json::json;
use stigmer_engine::paths::Paths;
use stigmer_engine::settings::{self, Key, Overrides, Source};
use stigmer_engine::Result;

use crate::cli::ConfigCommand;
use crate::client::Client;

pub async fn config(cmd: ConfigCommand, paths: &Paths) -> Result<i32> {
    match cmd {
        ConfigCommand::Path => {
            println!("{}", paths.config_file().display());
        }
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
                let doc = json!({ "config_file": paths.config_file(), "settings": items });
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
                        "{:<18} = {:<45} ({source})",
                        k.name(),
                        resolved.settings.get(k)
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
    // Mode and image of a running server change live, through the same path as the app.
    let live = matches!(key, Key::Mode | Key::SandboxImage);
    match Client::find(paths)? {
        Some(client) if live => {
            let body = match &value {
                settings::Value::Mode(m) => json!({ "mode": m }),
                _ => json!({ "image": raw.trim() }),
            };
            let _: serde_json::Value = client
                .send_json(reqwest::Method::PUT, "/v1/mode", &body)
                .await?;
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

fn note_server_restart(paths: &Paths, key: Key) {
    if stigmer_engine::discovery::Discovery::find_running(paths).is_some() {
        eprintln!(
            "stigmer: note: the running server uses the new {} after a restart",
            key.name()
        );
    }
}
