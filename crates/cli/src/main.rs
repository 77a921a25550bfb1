//! `stigmer`: run agents' commands locally or in a sandbox, and manage the server.

mod changes;
mod cli;
mod clients;
mod config;
mod connect;
mod mcp;
mod run;
mod runs;
mod sandbox;
mod server;
mod tools;
mod workspaces;

use clap::Parser;
use stigmer_engine::paths::Paths;

use cli::{Cli, Command};

fn main() {
    std::process::exit(real_main());
}

fn real_main() -> i32 {
    // Commands this process runs (the server's local runs, `stigmer run` without a server)
    // start as from a shell, whatever this process was started under.
    stigmer_engine::execute::default_signals_for_commands();
    // Inside a protected run's confinement, the last step before its command (not for people).
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    {
        use stigmer_engine::execute::protected::inner;
        let mut args = std::env::args_os().skip(1);
        if args.next().is_some_and(|a| a == inner::SUBCOMMAND) {
            return inner::main(args.collect());
        }
    }
    let is_run = std::env::args().nth(1).as_deref() == Some("run");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                // `run` keeps 1..=124 and 126.. for the command itself.
                _ if is_run => run::OWN_ERROR,
                _ => 2,
            };
        }
    };
    // Commands that only print end quietly when their reader goes (`stigmer runs list | head`),
    // as Unix tools do, instead of panicking on a broken pipe. Not `run` (it stops its command
    // first), `mcp`, nor a server, which must outlive any reader.
    #[cfg(unix)]
    if !matches!(
        cli.command,
        Command::Run(_)
            | Command::Mcp(_)
            | Command::Server(cli::ServerCommand::Start(_))
            | Command::Sandbox(cli::SandboxCommand::Proxy { .. })
    ) {
        // SAFETY: restoring the default disposition of one signal, before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let paths = match Paths::resolve() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("stigmer: {} [{}]", e.message, e.code);
            return if is_run { run::OWN_ERROR } else { 1 };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stigmer: cannot start the async runtime: {e}");
            return if is_run { run::OWN_ERROR } else { 1 };
        }
    };
    let code = runtime.block_on(async move {
        let result = match cli.command {
            Command::Run(args) => return run::run(args, &paths).await,
            Command::Tools(args) => tools::tools(args, &paths).await,
            Command::Config(cmd) => config::config(cmd, &paths).await,
            Command::Server(cmd) => server::server(cmd, &paths).await,
            Command::Sandbox(cmd) => sandbox::sandbox(cmd, &paths).await,
            Command::Workspaces(cmd) => workspaces::workspaces(cmd, &paths).await,
            Command::Runs(cmd) => runs::runs(cmd, &paths).await,
            Command::Clients(cmd) => clients::clients(cmd, &paths).await,
            Command::Connect(args) => connect::connect(args),
            Command::Mcp(args) => mcp::mcp(args, &paths).await,
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("stigmer: {} [{}]", e.message, e.code);
                1
            }
        }
    });
    // Do not wait for stray blocking reads (stdin, files) at exit.
    runtime.shutdown_background();
    code
}
