//! The last step inside a protected run's namespaces, before the command: `stigmer
//! protected-exec --check PATH DEV:INO ... [--scope] -- PROGRAM ARGS...`. The folder mounted
//! must be the one admission held (a check on a path is no check: bubblewrap mounts by path),
//! Landlock's scopes go on when asked (abstract sockets and signals stay inside the run), then
//! the command replaces this process. Any failure runs nothing.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;

/// The subcommand's name.
pub const SUBCOMMAND: &str = "protected-exec";

/// What ends the run when a check fails (nothing ran).
const REFUSED: i32 = 125;

/// Run as `stigmer protected-exec ...` (the arguments after the subcommand); returns only on
/// failure, with the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let mut args = args.into_iter();
    let mut scope = false;
    loop {
        match args.next().as_ref().and_then(|a| a.to_str()) {
            Some("--check") => {
                let (Some(path), Some(id)) = (args.next(), args.next()) else {
                    return refuse("--check needs a path and DEV:INO");
                };
                let now = std::fs::symlink_metadata(&path)
                    .map(|m| format!("{}:{}", m.dev(), m.ino()))
                    .unwrap_or_default();
                if now != id.to_string_lossy() {
                    return refuse(&format!(
                        "{} changed before the command started (moved, or replaced by a link)",
                        path.to_string_lossy()
                    ));
                }
            }
            Some("--scope") => scope = true,
            Some("--") => break,
            _ => {
                return refuse(
                    "usage: stigmer protected-exec [--check PATH DEV:INO]... -- PROGRAM [ARGS]...",
                )
            }
        }
    }
    let argv: Vec<OsString> = args.collect();
    let Some(program) = argv.first() else {
        return refuse("no program to run");
    };
    if scope {
        if let Err(e) = restrict_scopes() {
            return refuse(&format!("Landlock's scopes could not be applied: {e}"));
        }
    }
    let e = std::process::Command::new(program).args(&argv[1..]).exec();
    // Like a shell: 127 when the program does not exist, 126 when it cannot be run.
    let name = program.to_string_lossy();
    if e.kind() == std::io::ErrorKind::NotFound {
        eprintln!("stigmer: {name}: command not found");
        127
    } else {
        eprintln!("stigmer: {name}: {e}");
        126
    }
}

fn refuse(why: &str) -> i32 {
    eprintln!("stigmer: protected run refused, nothing ran: {why}");
    REFUSED
}

/// Abstract Unix sockets (the display's, a session's) and signals outside this run's Landlock
/// domain are refused, whatever the network: all or nothing (never partly).
fn restrict_scopes() -> Result<(), String> {
    use landlock::{CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetStatus, Scope};
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(format!("only {:?}", status.ruleset));
    }
    Ok(())
}
