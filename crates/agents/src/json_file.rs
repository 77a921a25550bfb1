//! Editing a JSON (or JSON with comments) file in place: a concrete syntax tree keeps every
//! other entry, comment and the file's indentation; only stigmer's entry changes.

use jsonc_parser::cst::{CstInputValue, CstObject, CstRootNode};
use jsonc_parser::ParseOptions;
use serde_json::{json, Value};

use crate::{Entry, ENTRY_NAME};

/// Strict JSON, or JSON with comments and trailing commas: nothing looser, so a file the agent
/// itself would refuse is never taken for a good one.
fn options(jsonc: bool) -> ParseOptions {
    ParseOptions {
        allow_comments: jsonc,
        allow_loose_object_property_names: false,
        allow_trailing_commas: jsonc,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
    }
}

/// Stigmer's entry as the agent reads it.
pub fn entry_value(e: &Entry, typed: bool) -> Value {
    let mut v = if typed {
        json!({ "type": "stdio", "command": e.command.to_string_lossy(), "args": e.args })
    } else {
        json!({ "command": e.command.to_string_lossy(), "args": e.args })
    };
    if !e.env.is_empty() {
        v["env"] = json!(e.env);
    }
    v
}

fn parse(text: &str, jsonc: bool) -> Result<CstRootNode, String> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    // The tree keeps whatever it reads; the strictness is checked on the values.
    if jsonc {
        jsonc_parser::parse_to_value(text, &options(true)).map_err(|e| e.to_string())?;
    } else {
        serde_json::from_str::<Value>(text).map_err(|e| e.to_string())?;
    }
    let root = CstRootNode::parse(text, &options(jsonc)).map_err(|e| e.to_string())?;
    match root.value() {
        None => Ok(root),
        Some(v) if v.as_object().is_some() => Ok(root),
        Some(_) => Err("the file is not a JSON object".into()),
    }
}

/// The servers object at `key`, made when `create` (None when absent and not created).
fn servers(root: &CstRootNode, key: &[&str], create: bool) -> Result<Option<CstObject>, String> {
    let mut obj = root.object_value_or_set();
    for k in key {
        let next = match obj.get(k) {
            Some(prop) => Some(
                prop.object_value()
                    .ok_or_else(|| format!("`{k}` is not an object"))?,
            ),
            None if create => obj.object_value_or_create(k),
            None => None,
        };
        match next {
            Some(o) => obj = o,
            None => return Ok(None),
        }
    }
    Ok(Some(obj))
}

/// Stigmer's entry in the file now, if any.
pub fn current(text: &str, jsonc: bool, key: &[&str]) -> Result<Option<Value>, String> {
    let root = parse(text, jsonc)?;
    let Some(obj) = servers(&root, key, false)? else {
        return Ok(None);
    };
    Ok(obj
        .get(ENTRY_NAME)
        .and_then(|p| p.value())
        .and_then(|v| v.to_serde_value()))
}

/// The file with stigmer's entry set to `wanted` (or removed, for None); None when the file
/// already says so.
pub fn edit(
    text: &str,
    jsonc: bool,
    key: &[&str],
    wanted: Option<Value>,
) -> Result<Option<String>, String> {
    let root = parse(text, jsonc)?;
    let now = current(text, jsonc, key)?;
    if now == wanted {
        return Ok(None);
    }
    match wanted {
        Some(value) => {
            let obj = servers(&root, key, true)?.ok_or("the servers table cannot be made")?;
            match obj.get(ENTRY_NAME) {
                Some(prop) => prop.set_value(ordered(&value)),
                None => {
                    obj.append(ENTRY_NAME, ordered(&value));
                }
            }
        }
        None => {
            if let Some(prop) = servers(&root, key, false)?.and_then(|o| o.get(ENTRY_NAME)) {
                prop.remove();
            }
        }
    }
    let mut out = root.to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    // The result must read back as what was asked, with the same strictness.
    let check = parse(&out, jsonc).map_err(|e| format!("editing it would break it ({e})"))?;
    drop(check);
    Ok(Some(out))
}

/// An entry with its fields in the order people write them: type, command, args, env.
fn ordered(v: &Value) -> CstInputValue {
    let Value::Object(o) = v else {
        return input(v);
    };
    let rank = |k: &str| {
        ["type", "command", "args", "env"]
            .iter()
            .position(|x| *x == k)
    };
    let mut fields: Vec<(&String, &Value)> = o.iter().collect();
    fields.sort_by_key(|(k, _)| rank(k).unwrap_or(usize::MAX));
    CstInputValue::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.clone(), input(v)))
            .collect(),
    )
}

fn input(v: &Value) -> CstInputValue {
    match v {
        Value::Null => CstInputValue::Null,
        Value::Bool(b) => CstInputValue::Bool(*b),
        Value::Number(n) => CstInputValue::Number(n.to_string()),
        Value::String(s) => CstInputValue::String(s.clone()),
        Value::Array(a) => CstInputValue::Array(a.iter().map(input).collect()),
        Value::Object(o) => {
            CstInputValue::Object(o.iter().map(|(k, v)| (k.clone(), input(v))).collect())
        }
    }
}

/// The text to paste: the servers table with stigmer's entry.
pub fn snippet(key: &[&str], value: &Value) -> String {
    let mut v = json!({ ENTRY_NAME: value });
    for k in key.iter().rev() {
        v = json!({ *k: v });
    }
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Value {
        json!({"command": "/usr/bin/stigmer", "args": ["mcp"]})
    }

    #[test]
    fn merges_keeps_others_and_is_idempotent() {
        let text = "{\n  // mine\n  \"theme\": \"dark\",\n  \"mcpServers\": {\n    \"other\": { \"command\": \"x\" },\n  },\n}\n";
        let out = edit(text, true, &["mcpServers"], Some(entry()))
            .unwrap()
            .unwrap();
        assert!(
            out.contains("// mine") && out.contains("\"other\""),
            "{out}"
        );
        assert_eq!(current(&out, true, &["mcpServers"]).unwrap(), Some(entry()));
        assert_eq!(
            edit(&out, true, &["mcpServers"], Some(entry())).unwrap(),
            None
        );
        let back = edit(&out, true, &["mcpServers"], None).unwrap().unwrap();
        assert!(
            back.contains("\"other\"") && !back.contains("stigmer"),
            "{back}"
        );
    }

    #[test]
    fn strict_files_stay_strict_and_broken_ones_are_refused() {
        assert!(edit("{\"a\": 1 \"b\": 2}", false, &["mcpServers"], Some(entry())).is_err());
        assert!(edit("{ // c\n}", false, &["mcpServers"], Some(entry())).is_err());
        assert!(edit("[1]", false, &["mcpServers"], Some(entry())).is_err());
        assert!(edit("{\"mcpServers\": 3}", false, &["mcpServers"], Some(entry())).is_err());
        let out = edit("", false, &["mcpServers"], Some(entry()))
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["mcpServers"]["stigmer"], entry());
    }
}
