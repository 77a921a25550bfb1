//! `stigmer runs changes ID [--diff]` and `stigmer runs undo ID`: what a command changed in
//! its folder, and putting it back.

use stigmer_client::Client;
use stigmer_engine::{Error, ErrorCode, Result};
use stigmer_protocol::changes::{escaped, printable, Later, RunChanges, UndoFile, UndoProblem};

pub async fn show(client: &Client, id: &str, diff: bool, json: bool) -> Result<i32> {
    if diff {
        let d = client.run_diff(id).await?;
        if json {
            print_json(&d);
            return Ok(0);
        }
        if !d.recorded {
            println!(
                "not recorded in {}: {}",
                escaped(&d.folder),
                escaped(d.reason.as_deref().unwrap_or("no reason given"))
            );
        }
        for f in &d.files {
            match (&f.diff, &f.note) {
                (Some(text), _) => print!("{}", escape_controls(text)),
                (None, Some(note)) => println!("{}: {}", printable(&f.path), escaped(note)),
                (None, None) => println!("{}", printable(&f.path)),
            }
        }
        return Ok(0);
    }
    let changes = client.run_changes(id).await?;
    if json {
        print_json(&changes);
    } else {
        list(&changes);
    }
    Ok(0)
}

pub async fn undo(
    client: &Client,
    id: &str,
    force: bool,
    keep_later: bool,
    json: bool,
) -> Result<i32> {
    let later = match (force, keep_later) {
        (true, _) => Later::Overwrite,
        (_, true) => Later::Keep,
        _ => Later::Refuse,
    };
    let r = client.undo_run(id, later).await?;
    if json {
        print_json(&r);
        return Ok(if r.undone { 0 } else { 1 });
    }
    if !r.undone {
        let overlapped = r
            .conflicts
            .iter()
            .any(|c| c.problem == UndoProblem::Overlapped);
        if overlapped {
            eprintln!(
                "nothing was undone: another command, or you, changed files in the folder while \
                 {id} ran, so which changes were its own cannot be told:"
            );
        } else {
            eprintln!(
                "nothing was undone: these files changed again since {id}, or cannot be put back:"
            );
        }
        for c in &r.conflicts {
            eprintln!("  {}", problem(c));
        }
        if !r.later_runs.is_empty() {
            eprintln!(
                "undo the later runs first, newest first ({}), or run again with --keep-later \
                 (leave those files as they are) or --force (put them back too)",
                r.later_runs.join(", ")
            );
        } else {
            eprintln!(
                "run again with --keep-later (leave those files as they are) or --force (put \
                 them back too)"
            );
        }
        return Ok(1);
    }
    println!(
        "undid {id}: {} file{} put back",
        r.restored,
        if r.restored == 1 { "" } else { "s" }
    );
    for l in &r.left {
        println!("  left as it is: {}", problem(l));
    }
    if let Some(n) = &r.note {
        println!("note: {}", escaped(n));
    }
    if let Some(u) = &r.undo_run {
        println!("(the undo is {u}: `stigmer runs undo {u}` redoes the command's changes)");
    }
    let failed = r.left.iter().any(|l| l.problem == UndoProblem::Failed);
    if failed {
        return Err(Error::new(
            ErrorCode::Internal,
            "some files could not be put back (listed above); the rest were",
        ));
    }
    Ok(0)
}

fn problem(f: &UndoFile) -> String {
    let why = match f.problem {
        UndoProblem::ChangedSince => "changed again since",
        UndoProblem::NotKept => "its earlier content is not kept",
        UndoProblem::Generated => "a generated folder, not recorded",
        UndoProblem::Overlapped => "another command, or you, worked in the folder meanwhile",
        UndoProblem::Failed => "could not be put back",
    };
    let mut s = format!("{} ({why}", printable(&f.path));
    if let Some(d) = &f.detail {
        s.push_str(&format!(": {}", printable(d)));
    }
    if !f.later_runs.is_empty() {
        s.push_str(&format!("; by {}", f.later_runs.join(", ")));
    }
    s.push(')');
    s
}

fn list(c: &RunChanges) {
    let folder = escaped(&c.folder);
    if !c.recorded {
        println!(
            "not recorded in {folder}: {}",
            escaped(c.reason.as_deref().unwrap_or("no reason given"))
        );
        return;
    }
    if c.files.is_empty() {
        println!("{} changed nothing in {folder}", c.run_id);
    }
    for f in &c.files {
        let how = format!("{:<8}", f.change.word());
        match &f.from {
            Some(from) => println!("{how}  {} -> {}", printable(from), printable(&f.path)),
            None => println!("{how}  {}", printable(&f.path)),
        }
    }
    if let Some(why) = &c.unkept {
        println!("note: {}", escaped(why));
    }
    if c.overlapped {
        println!(
            "note: another run worked in {folder} at the same time; its changes (and edits \
             made meanwhile) are listed too"
        );
    }
}

/// A diff's text for a terminal: lines kept, escape sequences and other controls shown
/// escaped (a file's content must not drive the terminal).
fn escape_controls(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            let (body, nl) = match line.strip_suffix('\n') {
                Some(b) => (b, "\n"),
                None => (line, ""),
            };
            let body: String = body
                .chars()
                .flat_map(|c| {
                    if c.is_control() && c != '\t' {
                        c.escape_default().collect::<Vec<_>>()
                    } else {
                        vec![c]
                    }
                })
                .collect();
            format!("{body}{nl}")
        })
        .collect()
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
