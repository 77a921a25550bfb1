//! `stigmer runs list|show|stop`: the server's runs, from every client, and the user's Stop
//! (`changes` and `undo`: [`crate::changes`]).

use stigmer_client::{valid_run_id, Client};
use stigmer_engine::paths::Paths;
use stigmer_engine::{Error, ErrorCode, Result};
use stigmer_protocol::run::{RunQuery, RunState, RunSummary, Stream};

use crate::cli::RunsCommand;

pub async fn runs(cmd: RunsCommand, paths: &Paths) -> Result<i32> {
    let Some(client) = Client::find(paths)? else {
        return Err(Error::new(
            ErrorCode::ServerUnavailable,
            "no stigmer server is running, so no command is running through it: open the app, \
             or start one with `stigmer server start`",
        ));
    };
    match cmd {
        RunsCommand::List {
            limit,
            client: who,
            state,
            grep,
            before,
            json,
        } => {
            let query = RunQuery {
                limit: Some(limit),
                before,
                client: who,
                state,
                q: grep,
            };
            let list = client.list_runs(&query).await?;
            if json {
                print_json(&list);
            } else if list.runs.is_empty() {
                println!("no runs");
            } else {
                for run in &list.runs {
                    println!("{}", line(run));
                }
                if let Some(next) = &list.next_before {
                    println!("(older runs: --before {next})");
                }
            }
        }
        RunsCommand::Output { id, stderr } => {
            let stream = if stderr {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            let mut out = std::io::stdout().lock();
            let mut offset = 0;
            loop {
                let page = client.run_output(&id, stream, offset, 1 << 20).await?;
                use std::io::Write as _;
                out.write_all(page.text.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|e| Error::internal(format!("cannot write the output: {e}")))?;
                if page.eof || page.next_offset == offset {
                    break;
                }
                offset = page.next_offset;
            }
        }
        RunsCommand::Show { id, json } => {
            if !valid_run_id(&id) {
                return Err(Error::run_not_found(&id));
            }
            let run = client.get_run(&id).await?;
            if json {
                print_json(&run);
            } else {
                show(&run);
            }
        }
        RunsCommand::Changes { id, diff, json } => {
            return crate::changes::show(&client, &id, diff, json).await;
        }
        RunsCommand::Undo {
            id,
            force,
            keep_later,
            json,
        } => {
            return crate::changes::undo(&client, &id, force, keep_later, json).await;
        }
        RunsCommand::Stop { id: Some(id), .. } => {
            if !valid_run_id(&id) {
                return Err(Error::run_not_found(&id));
            }
            if client.cancel_run(&id).await?.cancelled {
                println!(
                    "stopped {id} (its whole process tree; its client is told you stopped it)"
                );
            } else {
                println!("{id} had already ended: nothing to stop");
            }
        }
        RunsCommand::Stop { id: None, .. } => {
            let n = client.stop_all_runs().await?;
            println!(
                "stopped {n} running command{}",
                if n == 1 { "" } else { "s" }
            );
        }
    }
    Ok(0)
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// How a run ended, in a word or two.
fn state(run: &RunSummary) -> String {
    match (run.state, &run.error, &run.outcome) {
        (RunState::Running, _, _) => "running".into(),
        (RunState::Interrupted, _, _) => "interrupted".into(),
        (_, Some(e), _) if e.code == ErrorCode::CancelledByUser => "stopped by you".into(),
        (_, Some(e), _) => e.code.to_string(),
        (_, None, Some(o)) if o.timed_out => "timed out".into(),
        (_, None, Some(o)) => match (o.exit_code, o.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "ended".into(),
        },
        _ => "ended".into(),
    }
}

fn where_(run: &RunSummary) -> String {
    match &run.image {
        Some(image) => format!("sandbox {image}"),
        None => run.mode.to_string(),
    }
}

fn line(run: &RunSummary) -> String {
    format!(
        "{}  {:<14}  {:<16}  {:<20}  {}",
        run.id,
        state(run),
        run.client.as_deref().unwrap_or("other"),
        where_(run),
        run.command
    )
}

fn show(run: &RunSummary) {
    println!("run      {}", run.id);
    println!("command  {}", run.command);
    println!("client   {}", run.client.as_deref().unwrap_or("other"));
    println!("where    {} in {}", where_(run), run.cwd.display());
    println!("state    {}", state(run));
    if let Some(o) = &run.outcome {
        println!("took     {:.0} ms", o.duration_ms);
    }
    if let Some(e) = &run.error {
        println!("error    {} [{}]", e.message, e.code);
    }
    for (name, s) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        if s.total_bytes == 0 {
            continue;
        }
        println!(
            "--- {name} ({} bytes, {} lines) ---",
            s.total_bytes, s.total_lines
        );
        print!("{}", s.head);
        if s.omitted_bytes > 0 {
            println!(
                "\n[... {} bytes, {} lines omitted; the whole output: stigmer runs output {}{} ...]",
                s.omitted_bytes,
                s.omitted_lines,
                run.id,
                if name == "stderr" { " --stderr" } else { "" }
            );
        }
        print!("{}", s.tail);
        let ends_line = if s.tail.is_empty() {
            s.head.ends_with('\n')
        } else {
            s.tail.ends_with('\n')
        };
        if !ends_line {
            println!();
        }
    }
}
