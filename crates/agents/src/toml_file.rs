//! Editing a TOML file in place (Codex's `config.toml`): `[mcp_servers.stigmer]` is set or
//! removed; every other table, key and comment stays as it was.

use serde_json::{json, Value};
use toml_edit::{DocumentMut, Item, Table};

use crate::{Entry, ENTRY_NAME};

/// Stigmer's entry, as JSON for comparing.
pub fn entry_value(e: &Entry) -> Value {
    let mut v = json!({ "command": e.command.to_string_lossy(), "args": e.args });
    if !e.env.is_empty() {
        v["env"] = json!(e.env);
    }
    v
}

fn parse(text: &str) -> Result<DocumentMut, String> {
    text.parse::<DocumentMut>()
        .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())
}

/// The servers table at `key`, if present (an error if it is not a table).
fn servers<'a>(
    doc: &'a DocumentMut,
    key: &[&str],
) -> Result<Option<&'a dyn toml_edit::TableLike>, String> {
    let mut t: &dyn toml_edit::TableLike = doc.as_table();
    for k in key {
        match t.get(k) {
            None => return Ok(None),
            Some(item) => {
                t = item
                    .as_table_like()
                    .ok_or_else(|| format!("`{k}` is not a table"))?
            }
        }
    }
    Ok(Some(t))
}

/// Stigmer's entry in the file now, as JSON.
pub fn current(text: &str, key: &[&str]) -> Result<Option<Value>, String> {
    let doc = parse(text)?;
    let Some(t) = servers(&doc, key)? else {
        return Ok(None);
    };
    let Some(entry) = t.get(ENTRY_NAME) else {
        return Ok(None);
    };
    let entry = entry
        .as_table_like()
        .ok_or_else(|| format!("`{ENTRY_NAME}` is not a table"))?;
    let mut v = json!({});
    for (k, item) in entry.iter() {
        v[k] = to_json(item);
    }
    Ok(Some(v))
}

fn to_json(item: &Item) -> Value {
    if let Some(t) = item.as_table_like() {
        return Value::Object(t.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect());
    }
    match item.as_value() {
        Some(toml_edit::Value::String(s)) => json!(s.value()),
        Some(toml_edit::Value::Integer(i)) => json!(i.value()),
        Some(toml_edit::Value::Float(f)) => json!(f.value()),
        Some(toml_edit::Value::Boolean(b)) => json!(b.value()),
        Some(toml_edit::Value::Array(a)) => {
            Value::Array(a.iter().map(|v| to_json(&Item::Value(v.clone()))).collect())
        }
        Some(toml_edit::Value::InlineTable(t)) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.to_string(), to_json(&Item::Value(v.clone()))))
                .collect(),
        ),
        _ => Value::Null,
    }
}

fn entry_table(e: &Entry) -> Table {
    let mut t = Table::new();
    t.insert(
        "command",
        toml_edit::value(e.command.to_string_lossy().as_ref()),
    );
    let mut args = toml_edit::Array::new();
    for a in &e.args {
        args.push(a.as_str());
    }
    t.insert("args", toml_edit::value(args));
    if !e.env.is_empty() {
        let mut env = Table::new();
        for (k, v) in &e.env {
            env.insert(k, toml_edit::value(v.as_str()));
        }
        t.insert("env", Item::Table(env));
    }
    t
}

/// The file with stigmer's entry set (or removed, for None); None when it already says so.
pub fn edit(text: &str, key: &[&str], wanted: Option<&Entry>) -> Result<Option<String>, String> {
    let mut doc = parse(text)?;
    let now = current(text, key)?;
    if now == wanted.map(entry_value) {
        return Ok(None);
    }
    // Walk (making, when adding) the tables down to the servers table.
    let mut t: &mut Table = doc.as_table_mut();
    for k in key {
        if t.get(k).is_none() {
            if wanted.is_none() {
                return Ok(None);
            }
            let mut sub = Table::new();
            // `[mcp_servers.stigmer]` rather than an empty `[mcp_servers]` header.
            sub.set_implicit(true);
            t.insert(k, Item::Table(sub));
        }
        t = t
            .get_mut(k)
            .and_then(Item::as_table_mut)
            .ok_or_else(|| format!("`{k}` is not a table stigmer can edit"))?;
    }
    match wanted {
        Some(e) => {
            t.insert(ENTRY_NAME, Item::Table(entry_table(e)));
        }
        None => {
            t.remove(ENTRY_NAME);
        }
    }
    let out = doc.to_string();
    parse(&out).map_err(|e| format!("editing it would break it ({e})"))?;
    Ok(Some(out))
}

/// The text to paste.
pub fn snippet(key: &[&str], e: &Entry) -> String {
    let mut doc = DocumentMut::new();
    let mut t: &mut Table = doc.as_table_mut();
    for k in key {
        let mut sub = Table::new();
        sub.set_implicit(true);
        t.insert(k, Item::Table(sub));
        t = t
            .get_mut(k)
            .and_then(Item::as_table_mut)
            .expect("just made");
    }
    t.insert(ENTRY_NAME, Item::Table(entry_table(e)));
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn merges_keeps_comments_and_removes_cleanly() {
        let e = Entry {
            command: PathBuf::from("/usr/bin/stigmer"),
            args: vec!["mcp".into()],
            env: Default::default(),
        };
        let text = "# my codex\nmodel = \"o4\"\n\n[mcp_servers.other]\ncommand = \"x\" # keep\n";
        let out = edit(text, &["mcp_servers"], Some(&e)).unwrap().unwrap();
        assert!(
            out.contains("# my codex") && out.contains("# keep"),
            "{out}"
        );
        assert!(out.contains("[mcp_servers.stigmer]"), "{out}");
        assert_eq!(edit(&out, &["mcp_servers"], Some(&e)).unwrap(), None);
        let back = edit(&out, &["mcp_servers"], None).unwrap().unwrap();
        assert_eq!(back, text);
        assert!(edit("model = = 1", &["mcp_servers"], Some(&e)).is_err());
        assert!(edit("mcp_servers = 3", &["mcp_servers"], Some(&e)).is_err());
    }
}
