//! Command-line definitions (clap). Help text is written for someone new to stigmer.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use stigmer_protocol::clients::{ClientTier, Rule};
use stigmer_protocol::run::RunState;

#[derive(Parser, Debug)]
#[command(
    name = "stigmer",
    version,
    about = "Run AI agents' shell commands on your machine: locally, protected, or in a sandbox container",
    long_about = "Run AI agents' shell commands on your machine.\n\n\
        Commands run locally by default, with the tools you already have. Protected mode runs \
        them here too, confined by the system (no secrets, writes only in allowed folders; \
        Linux with bubblewrap). Sandbox mode runs them in a container instead (the basic \
        image, or your own with STIGMER_SANDBOX_IMAGE).\n\n\
        Settings come from, highest first: command-line flags, environment variables \
        (STIGMER_EXECUTION_MODE, STIGMER_SANDBOX_IMAGE, STIGMER_SANDBOX_AUTO_PULL, \
        STIGMER_SANDBOX_CLEANUP, STIGMER_SANDBOX_TTL), the config file (`stigmer config path`), \
        then defaults. STIGMER_HOME=DIR keeps all of stigmer's files under DIR.",
    after_help = "Examples:\n  \
        stigmer server start                 start the server in the background\n  \
        stigmer run -- ls -la                run a program (no shell)\n  \
        stigmer run -c 'make test | tail'    run a shell command line\n  \
        stigmer tools                        which tools you have locally and in the sandboxes\n  \
        stigmer config set mode protected    switch to protected mode\n  \
        stigmer config set mode sandbox      switch to sandbox mode"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command, streaming its output; exits with the command's exit code
    #[command(
        after_help = "Exit codes: the command's own; 124 timeout; 128+N killed by signal N; \
        127 command not found; 126 not executable; 125 stigmer itself failed (bad flag, missing \
        directory, server or engine unavailable), with the reason on stderr.\n\n\
        Through the running server when there is one (the run shows in the app), else in this process."
    )]
    Run(RunArgs),
    /// Show the tools installed here and those the sandbox images provide
    Tools(ToolsArgs),
    /// Read and change settings
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Start, stop and inspect the stigmer server (the agent runner)
    #[command(subcommand)]
    Server(ServerCommand),
    /// The sandbox: engine, image (download or build it ahead of time), containers
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// The folders sandboxed commands may work in (read-write); nothing else of this computer
    /// is visible in a sandbox
    #[command(
        subcommand,
        after_help = "A sandboxed command may run in: a folder added here (or in the app), the \
         folder its agent's session was started in (`stigmer mcp`) or where `stigmer run` was \
         started, and stigmer's scratch folder. Never mounted, even when added: `/` and the \
         system folders, the home folder and its dot-folders (.ssh, .config, .local...), folders \
         on PATH, folders holding a container engine's socket, stigmer's own folders."
    )]
    Workspaces(WorkspacesCommand),
    /// The commands the server runs for every client (agents, the app, `stigmer run`): list
    /// them, show one, stop one or all
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        stigmer runs list              the recent runs, newest first (running ones on top)\n  \
        stigmer runs show ID           one run: command, client, where, how it ended, output\n  \
        stigmer runs changes ID        what it changed in its folder (files added, removed, modified)\n  \
        stigmer runs stop ID           stop it (its whole process tree); its agent is told you stopped it\n  \
        stigmer runs stop --all        stop every running command\n\n\
        Needs the running server (the app's, or `stigmer server start`)."
    )]
    Runs(RunsCommand),
    /// Where each agent's commands run and whether they run freely, wait for your approval,
    /// or are refused (agents cannot change it)
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        stigmer clients list                                      every client seen or configured\n  \
        stigmer clients set \"Claude Code (MCP)\" --tier basic      its commands run in the basic sandbox\n  \
        stigmer clients set \"Cursor (MCP)\" --rule ask             the app asks you before each one\n  \
        stigmer clients set my-script --rule refuse               refuse its commands\n  \
        stigmer clients set my-script --tier default --rule run   back to the defaults\n\n\
        A client is known by the name it gives: an MCP client's name with \" (MCP)\", the API's \
        `client`; those that give none are `other` (`stigmer clients list` shows the names seen). \
        Clients seen for the first time get the global mode and run freely."
    )]
    Clients(ClientsCommand),
    /// Connect an AI agent (Claude Desktop, Claude Code, Cursor, VS Code, Windsurf, Codex) to
    /// stigmer: adds `stigmer mcp` to its MCP configuration, keeping everything else
    #[command(after_help = "Examples:\n  \
        stigmer connect                  list the agents found here and whether they are connected\n  \
        stigmer connect claude-code      connect Claude Code\n  \
        stigmer connect --remove cursor  remove stigmer from Cursor's configuration (only that)\n\n\
        The agent's file is backed up beside itself (NAME.stigmer-backup-TIME) before a change. \
        A file that does not parse is left alone: the entry to paste is printed instead.")]
    Connect(ConnectArgs),
    /// Serve MCP over stdio, for AI agents (Claude, Cursor, Codex...) to run commands through
    /// stigmer
    #[command(
        after_help = "Agents launch this themselves: add it to the agent's MCP configuration \
        (command `stigmer`, arguments `mcp`). See the README's \"Connect an agent\" section.\n\n\
        Tools: run_command, get_run_output, get_environment. Commands run in the mode the user \
        chose (the app, the tray or `stigmer config set mode`); agents cannot change it.\n\n\
        Uses the running stigmer server (the app's, or `stigmer server start`); when none runs, \
        one is started for the session; it stops once the session has ended and nobody else (the app, \
        another agent) has used it for 10 s. The same tools are served over \
        Streamable HTTP at http://127.0.0.1:PORT/mcp, behind the server's bearer token."
    )]
    Mcp(McpArgs),
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("which").args(["agent", "remove"]))]
pub struct ConnectArgs {
    /// The agent to connect (`list`, or nothing, lists them)
    #[arg(value_name = "AGENT")]
    pub agent: Option<String>,
    /// Remove stigmer from this agent's configuration
    #[arg(long, value_name = "AGENT")]
    pub remove: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct McpArgs {
    /// Working directory of commands that name none (default: the current directory; when that
    /// is `/` or the home folder, the server's default: home in local mode, a scratch folder in
    /// sandbox mode). In sandbox mode its project is the session's workspace
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// Runs from the history (it lasts across restarts), newest first
    List {
        /// At most this many (1 to 200)
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only this client's runs (`other`: clients that gave no name)
        #[arg(long)]
        client: Option<String>,
        /// Only runs in this state
        #[arg(long, value_parser = PossibleValuesParser::new(RunState::ALL.map(RunState::as_str))
            .map(|w| RunState::parse(&w).expect("a listed state")))]
        state: Option<RunState>,
        /// Only runs whose command or folder contains this text
        #[arg(long, value_name = "TEXT")]
        grep: Option<String>,
        /// Only runs older than this one (the next page)
        #[arg(long, value_name = "ID")]
        before: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// A run's whole output, as it printed it (kept across restarts)
    Output {
        #[arg(value_name = "ID")]
        id: String,
        /// Print what it wrote to stderr instead
        #[arg(long)]
        stderr: bool,
    },
    /// One run, with the head and tail of its output
    Show {
        #[arg(value_name = "ID")]
        id: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// What a run changed in its folder: each file added, removed, modified, renamed
    Changes {
        #[arg(value_name = "ID")]
        id: String,
        /// Show each text file's changes, line by line
        #[arg(long)]
        diff: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Put back what a run changed in its folder (refused when a file changed again since,
    /// unless --force or --keep-later)
    Undo {
        #[arg(value_name = "ID")]
        id: String,
        /// Put back files changed again since the run too (those later changes are lost)
        #[arg(long, conflicts_with = "keep_later")]
        force: bool,
        /// Leave files changed again since the run as they are; undo the rest
        #[arg(long)]
        keep_later: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Stop a running command (TERM to its whole tree, KILL 1 s later)
    #[command(group = clap::ArgGroup::new("which").required(true).args(["id", "all"]))]
    Stop {
        #[arg(value_name = "ID")]
        id: Option<String>,
        /// Stop every running command
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClientsCommand {
    /// Every client seen in the history or configured, with its tier and rule
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Set a client's tier and rule (what is not given stays as it is)
    Set {
        #[arg(value_name = "NAME")]
        name: String,
        /// Where its commands run
        #[arg(long, value_parser = PossibleValuesParser::new(ClientTier::ALL.map(ClientTier::as_str))
            .map(|w| ClientTier::parse(&w).expect("a listed tier")))]
        tier: Option<ClientTier>,
        /// The image of the custom tier
        #[arg(long)]
        image: Option<String>,
        /// Run freely, ask first, or refuse
        #[arg(long, value_parser = PossibleValuesParser::new(Rule::ALL.map(Rule::as_str))
            .map(|w| Rule::parse(&w).expect("a listed rule")))]
        rule: Option<Rule>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkspacesCommand {
    /// The folders allowed, the scratch folder, and the requests refused lately
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Allow sandboxed commands to work in DIR (and the folders inside it)
    Add {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Stop allowing DIR; the next sandboxed run there is refused
    Remove {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum SandboxCommand {
    /// Is a container engine there, is the sandbox image present, which containers run
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Download the sandbox image now (default: the configured one), with progress
    Pull {
        /// Image to pull instead of the configured one
        image: Option<String>,
    },
    /// Build the basic sandbox image from the Dockerfile built into stigmer (works offline when
    /// its base image is present)
    Build {
        /// Tag to give the image (default: the basic image's name)
        #[arg(long, value_name = "IMAGE")]
        image: Option<String>,
    },
    /// Remove every sandbox container stigmer made (not images, not other containers)
    Prune,
    /// Internal: the allowlist network policy's proxy, started and restarted by the server
    #[command(hide = true)]
    Proxy {
        /// The folder of the doors (one socket per container)
        #[arg(long, value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["shell", "argv"]))]
pub struct RunArgs {
    /// Where to run: `local` (this machine), `protected` (this machine, confined) or `sandbox`
    /// (a container)
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Sandbox image to use (implies --mode sandbox)
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Working directory (default: the current directory). In sandbox mode it must lie in the
    /// project you started in or in a folder you allowed (`stigmer workspaces`)
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Extra environment variable for the command (repeatable)
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Kill the command (and everything it started) after this many seconds; exit code 124
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// A shell command line, run with /bin/sh -c
    #[arg(short = 'c', value_name = "SHELL COMMAND")]
    pub shell: Option<String>,
    /// Run in this process even when a server is running
    #[arg(long)]
    pub no_server: bool,
    /// The program and its arguments, after `--` (any bytes: file names need not be UTF-8)
    #[arg(last = true, value_name = "PROGRAM [ARGS]", value_parser = clap::value_parser!(std::ffi::OsString))]
    pub argv: Vec<std::ffi::OsString>,
}

#[derive(Args, Debug)]
pub struct ToolsArgs {
    /// Print JSON (stable format, see the README)
    #[arg(long)]
    pub json: bool,
    /// Detect again instead of using cached results
    #[arg(long)]
    pub refresh: bool,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective value of a setting
    Get {
        /// A setting's name (`stigmer config list` shows them all), or env.NAME
        key: String,
    },
    /// Validate and save a setting in the config file (mode and image apply live to a running
    /// server). `env.NAME VALUE` sets a variable of the commands' environment ("" removes it)
    Set { key: String, value: String },
    /// Remove a setting from the config file (its default applies again)
    Unset { key: String },
    /// List every setting with its value and where it comes from
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the path of the config file
    Path,
    /// Let sandboxes reach these hosts under the allowlist network policy (host names, or
    /// `*.domain` for its subdomains); applies at once to a running server
    #[command(after_help = "Examples:\n  \
        stigmer config set sandbox.network allowlist   only allowed hosts, through stigmer's proxy\n  \
        stigmer config allow pypi.org files.pythonhosted.org\n  \
        stigmer config allow '*.github.com'             every subdomain of github.com\n  \
        stigmer config disallow pypi.org\n  \
        stigmer config allow                            list the allowed hosts\n\n\
        Only ports 80 and 443 go out; raw IP addresses, this computer, the cloud metadata \
        address and link-local addresses never do. Private addresses (10.x, 192.168.x...) only \
        for a host listed by its exact name.")]
    Allow {
        #[arg(value_name = "HOST")]
        hosts: Vec<String>,
    },
    /// Remove hosts from the allowlist
    Disallow {
        #[arg(value_name = "HOST", required = true)]
        hosts: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ServerCommand {
    /// Start the server (in the background unless --foreground) and wait until it is ready
    Start(StartArgs),
    /// Stop the running server; its runs are cancelled
    Stop,
    /// Is the server running, where, in which mode (exit code 3 when not running)
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Show the server's log
    Logs {
        /// Keep printing new lines as they are written
        #[arg(short, long)]
        follow: bool,
        /// How many lines from the end to show first
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 50)]
        lines: usize,
    },
    /// Print the bearer token API and MCP-over-HTTP clients send (`Authorization: Bearer ...`)
    Token,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Stay attached: log to stderr, stop on Ctrl-C (for the desktop app and systemd)
    #[arg(long)]
    pub foreground: bool,
    /// Port on 127.0.0.1 (0 picks any free port)
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Execution mode for this server: `local`, `protected` or `sandbox`
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Sandbox image for this server
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Internal: started in the background by `stigmer server start`
    #[arg(long, hide = true)]
    pub detached: bool,
    /// Stop when the process that started the server exits (for the desktop app)
    #[arg(long, requires = "foreground")]
    pub exit_with_parent: bool,
    /// With --exit-with-parent: once that process is gone, keep serving while anybody uses the
    /// server, and stop after SECS unused (what `stigmer mcp` asks for)
    #[arg(long, value_name = "SECS", requires = "exit_with_parent")]
    pub linger: Option<u64>,
}
