//! A run's changes as people read them: a unified diff of each text file, from the contents
//! kept before and after. Binary files, large ones and those whose content was not kept are
//! named with their sizes instead.

use std::time::{Duration, Instant};

use stigmer_protocol::changes::{printable, EntryKind, FileDiff, FileState, RunChanges, RunDiff};

use super::store::Store;

/// Files larger than this are not diffed.
const LARGEST_DIFFED: u64 = 1 << 20;
/// Diff text in one answer, at most; the files after it are named only.
const MOST_DIFF_TEXT: usize = 4 << 20;
/// Time one answer may take: a diff of two long texts with nothing in common is quadratic, so
/// each file gets a deadline (past it the diff is coarser, still right) and the answer one
/// too (past it files are named only).
const DIFF_TIME: Duration = Duration::from_secs(2);
const FILE_DIFF_TIME: Duration = Duration::from_millis(250);

/// The diffs of a run's recorded changes.
pub fn run_diff(changes: &RunChanges, store: &Store) -> RunDiff {
    let mut budget = MOST_DIFF_TEXT;
    let deadline = Instant::now() + DIFF_TIME;
    let files = changes
        .files
        .iter()
        .map(|f| {
            let size = |s: &Option<FileState>| {
                s.as_ref()
                    .filter(|s| s.kind == EntryKind::File)
                    .map(|s| s.size)
            };
            let mut d = FileDiff {
                path: f.path.clone(),
                change: f.change,
                from: f.from.clone(),
                before_size: size(&f.before),
                after_size: size(&f.after),
                diff: None,
                added_lines: 0,
                removed_lines: 0,
                note: None,
            };
            let label = f.from.as_deref().unwrap_or(&f.path);
            if Instant::now() >= deadline {
                d.note = Some("not shown: the diff took too long; the list is whole".into());
                return d;
            }
            match text_of(&f.before, store).and_then(|b| Ok((b, text_of(&f.after, store)?))) {
                Ok((before, after)) if before.is_some() || after.is_some() => {
                    let (b, a) = (before.unwrap_or_default(), after.unwrap_or_default());
                    let until = (Instant::now() + FILE_DIFF_TIME).min(deadline);
                    let (text, added, removed) = unified(label, &f.path, &b, &a, until);
                    (d.added_lines, d.removed_lines) = (added, removed);
                    if text.len() <= budget {
                        budget -= text.len();
                        d.diff = Some(text);
                    } else {
                        d.note = Some("not shown: the diff is too long".into());
                    }
                }
                Ok(_) => d.note = Some(what(&f.before, &f.after)),
                Err(why) => d.note = Some(why),
            }
            d
        })
        .collect();
    RunDiff {
        run_id: changes.run_id.clone(),
        folder: changes.folder.clone(),
        recorded: changes.recorded,
        reason: changes.reason.clone(),
        files,
        overlapped: changes.overlapped,
        unkept: changes.unkept.clone(),
    }
}

/// A file's text (none: it was not a file); why not when it cannot be shown.
fn text_of(s: &Option<FileState>, store: &Store) -> Result<Option<String>, String> {
    let Some(s) = s.as_ref().filter(|s| s.kind == EntryKind::File) else {
        return Ok(None);
    };
    if s.size > LARGEST_DIFFED {
        return Err(format!("not shown: {} bytes, too large to show", s.size));
    }
    let Some(hash) = &s.content else {
        return Err(format!(
            "not shown: its content ({} bytes) was not kept",
            s.size
        ));
    };
    let data = store
        .get(hash)
        .map_err(|e| format!("not shown: its kept content cannot be read ({e})"))?;
    if data.iter().take(8192).any(|&b| b == 0) {
        return Err(format!("binary file ({} bytes)", data.len()));
    }
    String::from_utf8(data)
        .map(Some)
        .map_err(|e| format!("binary file ({} bytes)", e.as_bytes().len()))
}

/// What a change without text is.
fn what(before: &Option<FileState>, after: &Option<FileState>) -> String {
    let kind = |s: &Option<FileState>| match s.as_ref().map(|s| (s.kind, s.target.as_deref())) {
        None => "nothing".to_string(),
        Some((EntryKind::Dir, _)) => "a folder".into(),
        Some((EntryKind::Link, t)) => format!("a link to {}", printable(t.unwrap_or("?"))),
        Some((EntryKind::File, _)) => "a file".into(),
        Some((EntryKind::Unrecorded, _)) => "a generated folder (content not recorded)".into(),
        Some((EntryKind::Other, _)) => "a socket, pipe or device".into(),
    };
    format!("was {}, is {}", kind(before), kind(after))
}

/// A unified diff of two texts, with how many lines were added and removed; the names in its
/// header escaped (a name with a newline cannot start a line of its own).
pub fn unified(
    from: &str,
    to: &str,
    before: &str,
    after: &str,
    until: Instant,
) -> (String, u64, u64) {
    let diff = similar::TextDiff::configure()
        .deadline(until)
        .diff_lines(before, after);
    let (mut added, mut removed) = (0, 0);
    for op in diff.ops() {
        for change in diff.iter_changes(op) {
            match change.tag() {
                similar::ChangeTag::Insert => added += 1,
                similar::ChangeTag::Delete => removed += 1,
                similar::ChangeTag::Equal => {}
            }
        }
    }
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("a/{}", printable(from)),
            &format!("b/{}", printable(to)),
        )
        .to_string();
    (text, added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_diff_counts_its_lines() {
        let until = Instant::now() + FILE_DIFF_TIME;
        let (text, added, removed) =
            unified("a.txt", "a.txt", "one\ntwo\n", "one\nthree\nfour\n", until);
        assert_eq!((added, removed), (2, 1));
        assert!(
            text.contains("-two\n") && text.contains("+three\n"),
            "{text}"
        );
        assert!(text.starts_with("--- a/a.txt\n+++ b/a.txt\n"), "{text}");
        let (text, ..) = unified("x\n+++ b/ok", "x\n+++ b/ok", "", "y\n", until);
        assert_eq!(
            text.lines().filter(|l| l.starts_with("+++")).count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn two_long_texts_with_nothing_in_common_are_diffed_in_bounded_time() {
        let a = "a\n".repeat(200_000);
        let b = "b\n".repeat(200_000);
        // Without the deadline this takes hours (about 10^11 steps).
        let (_, added, removed) = unified("f", "f", &a, &b, Instant::now() + FILE_DIFF_TIME);
        assert_eq!((added, removed), (200_000, 200_000));
    }
}
