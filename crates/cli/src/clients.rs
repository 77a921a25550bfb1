//! `stigmer clients list|set`: each client's tier and rule, through the running server when
//! there is one (the change applies to its next command), else in the config file.

use stigmer_client::Client;
use stigmer_engine::paths::Paths;
use stigmer_engine::settings::{self, Overrides};
use stigmer_engine::Result;
use stigmer_protocol::clients::{ClientChange, ClientPolicy, ClientView, ClientsView};
use stigmer_protocol::routes;

use crate::cli::ClientsCommand;

pub async fn clients(cmd: ClientsCommand, paths: &Paths) -> Result<i32> {
    let server = Client::find(paths)?;
    let current = || async {
        match &server {
            Some(c) => c.get::<ClientsView>(routes::CLIENTS).await,
            None => from_file(paths),
        }
    };
    match cmd {
        ClientsCommand::List { json } => {
            let view = current().await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&view).unwrap_or_default()
                );
            } else if view.clients.is_empty() {
                println!("no client has run anything yet, and none is configured");
            } else {
                for c in &view.clients {
                    println!("{}", line(c));
                }
            }
        }
        ClientsCommand::Set {
            name,
            tier,
            image,
            rule,
        } => {
            let mut policy = current()
                .await?
                .clients
                .into_iter()
                .find(|c| c.name == name)
                .map(|c| c.policy)
                .unwrap_or_default();
            if let Some(t) = tier {
                policy.tier = t;
                if policy.tier != stigmer_protocol::clients::ClientTier::Custom {
                    policy.image = None;
                }
            }
            if let Some(r) = rule {
                policy.rule = r;
            }
            if image.is_some() {
                policy.image = image;
            }
            let change = ClientChange::new(name.clone(), policy);
            let view: ClientsView = match &server {
                Some(c) => c.post(routes::CLIENTS, &change).await?,
                None => {
                    settings::set_client_in_file(paths, &change.name, change.policy())?;
                    from_file(paths)?
                }
            };
            let shown = view
                .clients
                .iter()
                .find(|c| c.name == name)
                .cloned()
                .unwrap_or(ClientView {
                    name,
                    policy: ClientPolicy::default(),
                    seen: false,
                });
            println!("{}", line(&shown));
        }
    }
    Ok(0)
}

fn from_file(paths: &Paths) -> Result<ClientsView> {
    let resolved = settings::resolve(paths, &Overrides::default())?;
    Ok(ClientsView {
        clients: resolved
            .settings
            .clients
            .into_iter()
            .map(|(name, policy)| ClientView {
                name,
                policy,
                seen: false,
            })
            .collect(),
    })
}

fn line(c: &ClientView) -> String {
    let tier = match (&c.policy.image, c.policy.tier.as_str()) {
        (Some(image), _) => format!("custom {image}"),
        (None, "default") => "default (the global mode)".to_string(),
        (None, t) => t.to_string(),
    };
    let rule = match c.policy.rule.as_str() {
        "run" => "runs freely",
        "ask" => "asks you first",
        _ => "refused",
    };
    format!("{:<24}  {:<36}  {}", c.name, tier, rule)
}
