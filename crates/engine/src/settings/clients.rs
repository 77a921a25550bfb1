//! `[clients."NAME"]`: each client's tier and rule, as the user set them (the window,
//! `stigmer clients`). Requests never change them.

use std::collections::BTreeMap;

use stigmer_protocol::clients::{ClientPolicy, ClientTier, Rule};
use toml_edit::{Item, Table};

use super::{validate_image_ref, ConfigFile};
use crate::error::{Error, ErrorCode, Result};
use crate::paths::Paths;

const TABLE: &str = "clients";

/// A client name as the API takes it: 1 to 100 printable characters.
pub fn validate_client_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorCode::InvalidRequest,
            "a client name is 1 to 100 printable characters",
        ));
    }
    Ok(())
}

/// Check a policy: `custom` needs a valid image, and only `custom` takes one.
pub fn validate_policy(name: &str, mut policy: ClientPolicy) -> Result<ClientPolicy> {
    let invalid =
        |why: String| Error::new(ErrorCode::InvalidSetting, format!("client `{name}`: {why}"));
    match (policy.tier, policy.image.as_deref().map(str::trim)) {
        (ClientTier::Custom, Some(image)) => {
            validate_image_ref(image).map_err(|why| invalid(format!("`{image}`: {why}")))?;
            policy.image = Some(image.to_string());
        }
        (ClientTier::Custom, None) => {
            return Err(invalid(
                "the custom tier needs an image, e.g. `ghcr.io/org/image:tag`".into(),
            ))
        }
        (_, Some(_)) => {
            return Err(invalid(
                "an image goes with the custom tier only: choose `custom` or drop the image".into(),
            ))
        }
        (_, None) => {}
    }
    Ok(policy)
}

impl ConfigFile {
    /// Every client's tier and rule, validated.
    pub fn clients(&self) -> Result<BTreeMap<String, ClientPolicy>> {
        let mut clients = BTreeMap::new();
        let Some(item) = self.doc.get(TABLE) else {
            return Ok(clients);
        };
        let at = |name: &str, why: &str| {
            Error::new(
                ErrorCode::InvalidSetting,
                format!(
                    "config file {} (clients.\"{name}\"): {why}",
                    self.path.display()
                ),
            )
        };
        let table = item.as_table_like().ok_or_else(|| at("", "not a table"))?;
        for (name, entry) in table.iter() {
            validate_client_name(name).map_err(|e| at(name, &e.message))?;
            let entry = entry
                .as_table_like()
                .ok_or_else(|| at(name, "expected tier = \"...\" and rule = \"...\""))?;
            let mut policy = ClientPolicy::default();
            for (k, v) in entry.iter() {
                let text = v
                    .as_str()
                    .ok_or_else(|| at(name, &format!("`{k}` must be a text")))?;
                match k {
                    "tier" => {
                        policy.tier = ClientTier::parse(text).ok_or_else(|| {
                            let words: Vec<_> = ClientTier::ALL.map(ClientTier::as_str).into();
                            at(
                                name,
                                &format!("tier `{text}` is not one of {}", words.join(", ")),
                            )
                        })?
                    }
                    "rule" => {
                        policy.rule = Rule::parse(text).ok_or_else(|| {
                            let words: Vec<_> = Rule::ALL.map(Rule::as_str).into();
                            at(
                                name,
                                &format!("rule `{text}` is not one of {}", words.join(", ")),
                            )
                        })?
                    }
                    "image" => policy.image = Some(text.to_string()),
                    other => {
                        return Err(at(
                            name,
                            &format!("unknown key `{other}` (tier, image, rule)"),
                        ))
                    }
                }
            }
            let policy = validate_policy(name, policy).map_err(|e| at(name, &e.message))?;
            clients.insert(name.to_string(), policy);
        }
        Ok(clients)
    }

    /// Set a client's tier and rule; the default (global mode, run freely) removes its entry.
    pub fn set_client(&mut self, name: &str, policy: &ClientPolicy) {
        if policy.is_default() {
            if let Some(t) = self.doc.get_mut(TABLE).and_then(|i| i.as_table_like_mut()) {
                t.remove(name);
            }
            return;
        }
        if !self.doc.get(TABLE).is_some_and(|i| i.is_table_like()) {
            let mut t = Table::new();
            t.set_implicit(true);
            self.doc.insert(TABLE, Item::Table(t));
        }
        let Some(t) = self.doc.get_mut(TABLE).and_then(|i| i.as_table_like_mut()) else {
            return;
        };
        let mut entry = Table::new();
        entry.insert("tier", toml_edit::value(policy.tier.as_str()));
        if let Some(image) = &policy.image {
            entry.insert("image", toml_edit::value(image.as_str()));
        }
        entry.insert("rule", toml_edit::value(policy.rule.as_str()));
        t.insert(name, Item::Table(entry));
    }
}

/// Validate and save one client's tier and rule; returns every client's.
pub fn set_client_in_file(
    paths: &Paths,
    name: &str,
    policy: ClientPolicy,
) -> Result<BTreeMap<String, ClientPolicy>> {
    validate_client_name(name)?;
    let policy = validate_policy(name, policy)?;
    let (mut file, _warnings) = ConfigFile::load(&paths.config_file())?;
    // A file whose clients do not read is not rewritten over.
    file.clients()?;
    file.set_client(name, &policy);
    file.save()?;
    file.clients()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_read_validated_and_edited_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = Paths::under(dir.path());
        std::fs::create_dir_all(&p.config_dir).unwrap();
        std::fs::write(p.config_file(), "# mine\nmode = \"local\"\n").unwrap();
        let ask = ClientPolicy {
            tier: ClientTier::Basic,
            image: None,
            rule: Rule::Ask,
        };
        set_client_in_file(&p, "Claude Code", ask.clone()).unwrap();
        let text = std::fs::read_to_string(p.config_file()).unwrap();
        assert!(text.starts_with("# mine"), "{text}");
        assert!(text.contains("[clients.\"Claude Code\"]"), "{text}");
        let r = super::super::resolve_with(&p, &Default::default(), |_| None).unwrap();
        assert_eq!(r.settings.clients["Claude Code"], ask);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);

        let before = std::fs::read_to_string(p.config_file()).unwrap();
        let bad = ClientPolicy {
            tier: ClientTier::Custom,
            image: None,
            rule: Rule::Run,
        };
        let e = set_client_in_file(&p, "x", bad).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidSetting);
        assert!(set_client_in_file(&p, "", ClientPolicy::default()).is_err());
        assert_eq!(std::fs::read_to_string(p.config_file()).unwrap(), before);

        set_client_in_file(&p, "Claude Code", ClientPolicy::default()).unwrap();
        let r = super::super::resolve_with(&p, &Default::default(), |_| None).unwrap();
        assert!(r.settings.clients.is_empty());

        std::fs::write(p.config_file(), "[clients.a]\nrule = \"sometimes\"\n").unwrap();
        let e = super::super::resolve_with(&p, &Default::default(), |_| None).unwrap_err();
        assert!(
            e.message.contains("clients.\"a\"") && e.message.contains("sometimes"),
            "{}",
            e.message
        );
    }
}
