//! The repository's structure, checked from its sources: no import circle between modules, in
//! any crate or in the desktop app. A circle is two or more modules, none inside another, that
//! each use something of the next (`use crate::a::X` in `b`, `use super::b::Y` in `a`); a
//! module using its parent's items, and a parent using its children, is the tree's own shape
//! and not counted. The window's scripts (`ui/`) are ES modules held to the same rule, loaded
//! by one entry (no order hidden in the page). Also prints the longest files, for the record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The source folders of every crate of the workspace, and the desktop's.
fn crate_sources() -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(repo().join("crates")).unwrap().flatten() {
        let src = e.path().join("src");
        if src.is_dir() {
            found.push((e.file_name().to_string_lossy().into_owned(), src));
        }
    }
    found.push(("src-tauri".into(), repo().join("src-tauri/src")));
    found.sort();
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module a file is: `a/b.rs` and `a/b/mod.rs` are `a::b`; `lib.rs`, `main.rs` the root.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !(stem == "mod" || (parts.is_empty() && (stem == "lib" || stem == "main"))) {
        parts.push(stem.to_string());
    }
    parts
}

/// The code of a file without its comments and its test module (at the end, by custom).
fn code_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") || t.starts_with("#[cfg(all(test") {
            break;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Every path starting with `crate::`, `super::` or `self::`, use-groups expanded.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if boundary {
            for head in ["crate::", "super::", "self::"] {
                let h: Vec<char> = head.chars().collect();
                if chars[i..].starts_with(&h) {
                    let first = head.trim_end_matches("::").to_string();
                    let mut j = i + h.len();
                    tree(&chars, &mut j, vec![first], &mut found);
                    i = j;
                    break;
                }
            }
        }
        i += 1;
    }
    found
}

/// Read a path tree at `j` (after `prefix::`): `a::b`, `{a, b::{c, d}}`, `*`.
fn tree(chars: &[char], j: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let skip_ws = |j: &mut usize| {
        while *j < chars.len() && chars[*j].is_whitespace() {
            *j += 1;
        }
    };
    skip_ws(j);
    if *j < chars.len() && chars[*j] == '{' {
        *j += 1;
        loop {
            skip_ws(j);
            if *j >= chars.len() || chars[*j] == '}' {
                *j += 1;
                return;
            }
            tree(chars, j, prefix.clone(), out);
            skip_ws(j);
            if *j < chars.len() && chars[*j] == ',' {
                *j += 1;
            }
        }
    }
    let mut path = prefix;
    loop {
        let start = *j;
        while *j < chars.len() && (chars[*j].is_alphanumeric() || chars[*j] == '_') {
            *j += 1;
        }
        if *j == start {
            break;
        }
        path.push(chars[start..*j].iter().collect());
        if chars[*j..].starts_with(&[':', ':']) {
            *j += 2;
            if *j < chars.len() && chars[*j] == '{' {
                tree(chars, j, path, out);
                return;
            }
        } else {
            break;
        }
    }
    // `as NAME` and the rest are not part of the path.
    out.push(path);
}

/// The module a path names, in `modules`: its longest prefix that is one.
fn resolve(from: &Module, path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    let mut at: Module = from.clone();
    let mut rest = path;
    match path.first()?.as_str() {
        "crate" => {
            at.clear();
            rest = &path[1..];
        }
        "self" => rest = &path[1..],
        _ => {}
    }
    while rest.first().is_some_and(|s| s == "super") {
        at.pop()?;
        rest = &rest[1..];
    }
    let mut best = at.clone();
    for seg in rest {
        at.push(seg.clone());
        if modules.contains(&at) {
            best = at.clone();
        } else {
            break;
        }
    }
    Some(best)
}

fn inside(a: &Module, b: &Module) -> bool {
    a.len() >= b.len() && a[..b.len()] == b[..]
}

/// Strongly connected groups of more than one module (Tarjan's algorithm).
fn circles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct T<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on: BTreeSet<Module>,
        next: usize,
        out: Vec<Vec<Module>>,
    }
    fn visit(t: &mut T, v: &Module) {
        t.index.insert(v.clone(), t.next);
        t.low.insert(v.clone(), t.next);
        t.next += 1;
        t.stack.push(v.clone());
        t.on.insert(v.clone());
        let succ: Vec<Module> = t
            .edges
            .get(v)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for w in succ {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let l = t.low[&w].min(t.low[v]);
                t.low.insert(v.clone(), l);
            } else if t.on.contains(&w) {
                let l = t.index[&w].min(t.low[v]);
                t.low.insert(v.clone(), l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut group = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = w == *v;
                group.push(w);
                if done {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                t.out.push(group);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn name(krate: &str, m: &Module) -> String {
    if m.is_empty() {
        format!("{krate}::(root)")
    } else {
        format!("{krate}::{}", m.join("::"))
    }
}

#[test]
fn no_import_circle_in_any_crate_or_the_desktop() {
    let mut report = Vec::new();
    let mut sizes = Vec::new();
    for (krate, src) in crate_sources() {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
        let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            sizes.push((
                text.lines().count(),
                f.strip_prefix(repo()).unwrap().to_path_buf(),
            ));
            let from = module_of(&src, f);
            let entry = edges.entry(from.clone()).or_default();
            for p in paths_in(&code_of(&text)) {
                let Some(to) = resolve(&from, &p, &modules) else {
                    continue;
                };
                if !inside(&from, &to) && !inside(&to, &from) {
                    entry.insert(to);
                }
            }
        }
        for group in circles(&edges) {
            let names: Vec<String> = group.iter().map(|m| name(&krate, m)).collect();
            report.push(names.join(" <-> "));
        }
    }
    sizes.sort_by(|a, b| b.cmp(a));
    eprintln!("longest files:");
    for (n, f) in sizes.iter().take(10) {
        eprintln!("  {n:5} {}", f.display());
    }
    eprintln!("import circles: {}", report.len());
    assert!(
        report.is_empty(),
        "import circles (each line: modules that use each other, directly or around):\n{}",
        report.join("\n")
    );
}

/// The `./name.js` modules a script imports.
fn js_imports(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("import "))
        .filter_map(|l| l.split("from \"./").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(|f| f.trim_end_matches(".js").to_string())
        .collect()
}

#[test]
fn the_window_scripts_are_modules_with_one_entry_and_no_circle() {
    let ui = repo().join("ui");
    let page = std::fs::read_to_string(ui.join("index.html")).unwrap();
    let scripts: Vec<&str> = page.matches("<script").collect();
    assert_eq!(
        (
            scripts.len(),
            page.contains(r#"<script type="module" src="app.js"></script>"#)
        ),
        (1, true),
        "the page loads one module, app.js, which imports the rest"
    );
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for e in std::fs::read_dir(&ui).unwrap().flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "js") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let from = vec![path.file_stem().unwrap().to_string_lossy().into_owned()];
        assert!(
            !text.contains("\"use strict\""),
            "{}: modules are strict already",
            path.display()
        );
        let entry = edges.entry(from).or_default();
        for to in js_imports(&text) {
            assert!(ui.join(format!("{to}.js")).is_file(), "{to}.js is missing");
            entry.insert(vec![to]);
        }
    }
    let found = circles(&edges);
    assert!(found.is_empty(), "ui/ modules in a circle: {found:?}");
    assert!(js_imports("import { a } from \"./dom.js\";") == ["dom"]);
    let mut circle = BTreeMap::new();
    circle.insert(vec!["a".to_string()], [vec!["b".to_string()]].into());
    circle.insert(vec!["b".to_string()], [vec!["a".to_string()]].into());
    assert_eq!(circles(&circle).len(), 1);
}

#[test]
fn paths_and_groups_are_read_and_resolved() {
    let code =
        "use crate::a::{b::{C, d}, e};\nuse super::f::G as H;\nlet x = self::i::j(crate::k::L);";
    let got = paths_in(code);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            s(&["crate", "a", "b", "C"]),
            s(&["crate", "a", "b", "d"]),
            s(&["crate", "a", "e"]),
            s(&["super", "f", "G"]),
            s(&["self", "i", "j"]),
            s(&["crate", "k", "L"]),
        ]
    );
    let modules: BTreeSet<Module> = [vec![], s(&["a"]), s(&["a", "b"]), s(&["f"]), s(&["x"])]
        .into_iter()
        .collect();
    let from = s(&["x"]);
    assert_eq!(resolve(&from, &got[0], &modules), Some(s(&["a", "b"])));
    assert_eq!(resolve(&from, &got[3], &modules), Some(s(&["f"])));
    let mut edges = BTreeMap::new();
    edges.insert(s(&["a"]), [s(&["f"])].into_iter().collect());
    edges.insert(s(&["f"]), [s(&["x"])].into_iter().collect());
    edges.insert(s(&["x"]), [s(&["a"])].into_iter().collect::<BTreeSet<_>>());
    assert_eq!(circles(&edges).len(), 1);
}
