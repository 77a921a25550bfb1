//! Commands the window calls through `window.__TAURI__.core.invoke`. Each is a thin call to
//! the tray process (what changes the app's state, [`crate::wire::Call`]) or to the server's
//! API; errors keep their stable codes.

use serde_json::{json, Value};
use stigmer_client::RunItem;
use stigmer_protocol::clients::{ClientChange, ClientsView, Decision};
use stigmer_protocol::mode::Tier;
use stigmer_protocol::network::{HostBody, NetworkPolicy, NetworkView};
use stigmer_protocol::routes;
use stigmer_protocol::run::{OutputPage, RunList, RunQuery, RunRequest, RunSummary, Stream};
use stigmer_protocol::status::{
    BuildBody, FolderBody, ImageBody, ImagesView, LocalImagesView, SandboxStatus, Status,
    ToolReport, WorkspacesView,
};
use stigmer_protocol::{Error, ErrorCode, Result};
use tauri::ipc::Channel;
use tauri::{AppHandle, State};
use tauri_plugin_autostart::ManagerExt;

use crate::link::Link;
use stigmer_protocol::desktop::{Call, Prefs};

/// Every window command reaches the server through the link's API or the tray process.
type Shared = Link;

#[tauri::command]
pub async fn get_model(shared: State<'_, Shared>) -> Result<Value> {
    shared.call(Call::GetModel).await
}

/// The `stigmer` command next to the app (the bundled CLI), by full path when it is there.
fn bundled_cli() -> Option<std::path::PathBuf> {
    let name = if cfg!(windows) {
        "stigmer.exe"
    } else {
        "stigmer"
    };
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|p| p.exists())
}

fn agent_entry() -> stigmer_agents::Entry {
    stigmer_agents::Entry::stigmer(bundled_cli().unwrap_or_else(|| "stigmer".into()))
}

fn places() -> Result<stigmer_agents::Places> {
    stigmer_agents::Places::from_env()
        .ok_or_else(|| Error::new(ErrorCode::ConfigError, "cannot find your home folder"))
}

fn agent_problem(p: stigmer_agents::Problem) -> Error {
    use stigmer_agents::Problem;
    let code = match p {
        Problem::UnknownAgent(..) | Problem::NotInstalled(..) => ErrorCode::InvalidRequest,
        Problem::Unreadable { .. } => ErrorCode::AgentConfigUnreadable,
        Problem::Io(..) => ErrorCode::ConfigError,
    };
    Error::new(code, p.to_string())
}

/// The agents stigmer knows, found on this computer or not, and whether each is connected.
#[tauri::command]
pub fn list_agents() -> Result<Vec<stigmer_agents::AgentStatus>> {
    Ok(stigmer_agents::list(&places()?, &agent_entry()))
}

/// Connect (or, with `remove`, disconnect) an agent: its file keeps everything else.
#[tauri::command]
pub fn connect_agent(id: String, remove: bool) -> Result<stigmer_agents::Change> {
    let agent = stigmer_agents::find(&id).map_err(agent_problem)?;
    let (places, entry) = (places()?, agent_entry());
    let change = if remove {
        stigmer_agents::disconnect(&places, agent, &entry)
    } else {
        stigmer_agents::connect(&places, agent, &entry)
    };
    change.map_err(agent_problem)
}

/// The MCP configuration an agent needs to run its commands through stigmer (the format
/// Claude Desktop and Cursor read), naming the `stigmer` binary next to the app.
#[tauri::command]
pub fn agent_config() -> String {
    let stigmer = bundled_cli()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "stigmer".to_string());
    // An app run with its own STIGMER_HOME: the agent must reach the same server.
    let env = std::env::var("STIGMER_HOME")
        .ok()
        .filter(|h| !h.is_empty())
        .map(|h| format!(",\n      \"env\": {{ \"STIGMER_HOME\": {} }}", json!(h)))
        .unwrap_or_default();
    // Command first, one field a line: it reads like the clients' documentation.
    format!(
        "{{\n  \"mcpServers\": {{\n    \"stigmer\": {{\n      \"command\": {},\n      \"args\": [\"mcp\"]{env}\n    }}\n  }}\n}}",
        json!(stigmer)
    )
}

#[tauri::command]
pub async fn start_server(shared: State<'_, Shared>) -> Result<Value> {
    shared.call(Call::StartServer).await
}

#[tauri::command]
pub async fn stop_server(shared: State<'_, Shared>) -> Result<Value> {
    shared.call(Call::StopServer).await
}

#[tauri::command]
pub async fn set_mode(
    shared: State<'_, Shared>,
    tier: Tier,
    image: Option<String>,
) -> Result<Value> {
    shared.call(Call::SetMode { tier, image }).await
}

#[tauri::command]
pub async fn get_status(shared: State<'_, Shared>) -> Result<Status> {
    shared.api()?.status().await
}

#[tauri::command]
pub async fn get_sandbox(shared: State<'_, Shared>) -> Result<SandboxStatus> {
    shared.api()?.get(routes::SANDBOX).await
}

#[tauri::command]
pub async fn cancel_download(shared: State<'_, Shared>) -> Result<()> {
    shared.api()?.post_empty(routes::CANCEL_DOWNLOAD).await
}

#[tauri::command]
pub async fn get_tools(shared: State<'_, Shared>, refresh: bool) -> Result<ToolReport> {
    let q = if refresh { "?refresh=true" } else { "" };
    shared.api()?.get(&format!("{}{q}", routes::TOOLS)).await
}

/// Runs from the history, newest first, as the activity's filters and paging ask.
#[tauri::command]
pub async fn get_runs(shared: State<'_, Shared>, query: Option<RunQuery>) -> Result<RunList> {
    shared.api()?.list_runs(&query.unwrap_or_default()).await
}

/// A page of a run's whole output (the activity's "Full output").
#[tauri::command]
pub async fn get_run_output(
    shared: State<'_, Shared>,
    id: String,
    stream: Stream,
    offset: u64,
) -> Result<OutputPage> {
    shared.api()?.run_output(&id, stream, offset, 1 << 20).await
}

/// What a run changed, with diffs of its text files (the activity's "Changes").
#[tauri::command]
pub async fn get_run_diff(
    shared: State<'_, Shared>,
    id: String,
) -> Result<stigmer_protocol::changes::RunDiff> {
    shared.api()?.run_diff(&id).await
}

/// Put back what a run changed (the activity's "Undo this command").
#[tauri::command]
pub async fn undo_run(
    shared: State<'_, Shared>,
    id: String,
    later: stigmer_protocol::changes::Later,
) -> Result<stigmer_protocol::changes::UndoReport> {
    shared.api()?.undo_run(&id, later).await
}

/// The images Stigmer uses, with their size and when they were last used.
#[tauri::command]
pub async fn get_images(shared: State<'_, Shared>) -> Result<ImagesView> {
    shared.api()?.get(routes::IMAGES).await
}

/// Remove one of them (its idle containers too).
#[tauri::command]
pub async fn remove_image(shared: State<'_, Shared>, image: String) -> Result<ImagesView> {
    shared
        .api()?
        .post(routes::IMAGES_REMOVE, &ImageBody { image })
        .await
}

/// Build the basic image again, or download a custom one again (progress as any download).
#[tauri::command]
pub async fn remake_image(shared: State<'_, Shared>, image: String) -> Result<()> {
    shared
        .api()?
        .post_json_accepted(routes::IMAGES_REMAKE, &ImageBody { image })
        .await
}

/// The images the engine has, for the custom tier's picker.
#[tauri::command]
pub async fn get_local_images(shared: State<'_, Shared>) -> Result<LocalImagesView> {
    shared.api()?.get(routes::IMAGES_LOCAL).await
}

/// Build `image` from `dockerfile` (progress as any preparation); once built it is the
/// custom image.
#[tauri::command]
pub async fn build_image(
    shared: State<'_, Shared>,
    dockerfile: String,
    image: String,
) -> Result<()> {
    shared
        .api()?
        .post_json_accepted(routes::IMAGES_BUILD, &BuildBody { dockerfile, image })
        .await
}

/// The system's file picker, for a Dockerfile.
#[tauri::command]
pub async fn pick_dockerfile(app: AppHandle) -> Option<String> {
    pick(&app, "Choose the Dockerfile of your sandbox image", false).await
}

/// Every client seen or configured, with the tier and rule the user chose.
#[tauri::command]
pub async fn get_clients(shared: State<'_, Shared>) -> Result<ClientsView> {
    shared.api()?.get(routes::CLIENTS).await
}

/// The user sets a client's tier and rule (the Agents section).
#[tauri::command]
pub async fn set_client(shared: State<'_, Shared>, change: ClientChange) -> Result<ClientsView> {
    shared.api()?.post(routes::CLIENTS, &change).await
}

/// Allow once, always allow, or deny a waiting command.
#[tauri::command]
pub async fn answer_approval(
    shared: State<'_, Shared>,
    id: String,
    decision: Decision,
) -> Result<()> {
    shared.call(Call::AnswerApproval { id, decision }).await
}

/// The folders sandboxed commands may work in, and the requests refused lately.
#[tauri::command]
pub async fn get_workspaces(shared: State<'_, Shared>) -> Result<WorkspacesView> {
    shared.api()?.get(routes::WORKSPACES).await
}

/// Allow a folder (the window's "Allow this folder" and the folder picker).
#[tauri::command]
pub async fn add_workspace(shared: State<'_, Shared>, path: String) -> Result<WorkspacesView> {
    let body = FolderBody { path: path.into() };
    shared.api()?.post(routes::WORKSPACES, &body).await
}

#[tauri::command]
pub async fn remove_workspace(shared: State<'_, Shared>, path: String) -> Result<WorkspacesView> {
    let body = FolderBody { path: path.into() };
    shared.api()?.post(routes::WORKSPACES_REMOVE, &body).await
}

/// The sandbox's network policy, allowlist and connections refused lately.
#[tauri::command]
pub async fn get_network(shared: State<'_, Shared>) -> Result<NetworkView> {
    shared.api()?.get(routes::NETWORK).await
}

/// Choose the policy (`open`, `none`, `allowlist`); the tray's choice goes the same way.
#[tauri::command]
pub async fn set_network(shared: State<'_, Shared>, policy: NetworkPolicy) -> Result<NetworkView> {
    shared.call(Call::SetNetwork { policy }).await
}

/// Let sandboxes reach a host (the window's Allow buttons and its add field).
#[tauri::command]
pub async fn allow_host(shared: State<'_, Shared>, host: String) -> Result<NetworkView> {
    shared
        .api()?
        .post(routes::NETWORK_ALLOW, &HostBody { host })
        .await
}

#[tauri::command]
pub async fn disallow_host(shared: State<'_, Shared>, host: String) -> Result<NetworkView> {
    shared
        .api()?
        .post(routes::NETWORK_DISALLOW, &HostBody { host })
        .await
}

/// The system's file or folder picker, opened in the home folder (where projects live;
/// "Recent" lists files, not folders); `None` when the person closed it.
async fn pick(app: &AppHandle, title: &str, folder: bool) -> Option<String> {
    use tauri_plugin_dialog::DialogExt;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let dialog = app
        .dialog()
        .file()
        .set_title(title)
        .set_directory(stigmer_protocol::local::user_home());
    let done = move |f: Option<tauri_plugin_dialog::FilePath>| {
        let _ = tx.send(f.and_then(|f| f.into_path().ok()));
    };
    if folder {
        dialog.pick_folder(done);
    } else {
        dialog.pick_file(done);
    }
    rx.await.ok().flatten().map(|p| p.display().to_string())
}

/// The system's folder picker, for a workspace.
#[tauri::command]
pub async fn pick_folder(app: AppHandle) -> Option<String> {
    pick(&app, "Allow sandboxed commands in a folder", true).await
}

#[tauri::command]
pub async fn cancel_run(shared: State<'_, Shared>, id: String) -> Result<()> {
    shared.api()?.cancel_run(&id).await.map(|_| ())
}

/// Run a shell command through the server in the current mode. Output reaches the window
/// through `on_output` ten times a second at most, its last 64 KiB each time (with a count of
/// what was skipped); the result is the finished run.
#[tauri::command]
pub async fn run_command(
    shared: State<'_, Shared>,
    shell: String,
    on_output: Channel<Value>,
) -> Result<RunSummary> {
    if shell.trim().is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidRequest,
            "type a command first",
        ));
    }
    // No cwd: the server's default, the home folder in local mode (like a new terminal) and a
    // scratch folder in sandbox mode (the home folder is never mounted into a container).
    let request = RunRequest {
        shell: Some(shell),
        client: Some("stigmer-desktop".into()),
        ..RunRequest::default()
    };
    let mut stream = shared.api()?.start_run(&request).await?;
    let mut tail = OutputTail::default();
    let mut tick = tokio::time::interval(UI_EVERY);
    loop {
        let item = tokio::select! {
            item = stream.next() => item?,
            _ = tick.tick() => {
                tail.flush(&on_output);
                continue;
            }
        };
        match item {
            Some(RunItem::Output(s, data)) => tail.push(s, &data),
            Some(RunItem::Finished(run)) => {
                tail.flush(&on_output);
                return Ok(run);
            }
            Some(_) => {}
            None => {
                return Err(Error::new(
                    ErrorCode::ServerUnavailable,
                    "the run's stream ended early",
                ))
            }
        }
    }
}

/// How often output reaches the page, and how much at most each time: the page shows the
/// tail, so a flood of output is cut here (with a count) instead of drowning the webview.
const UI_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
const UI_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct OutputTail {
    pieces: std::collections::VecDeque<(Stream, Vec<u8>)>,
    size: usize,
    skipped: u64,
}

impl OutputTail {
    fn push(&mut self, stream: Stream, data: &[u8]) {
        let data = if data.len() > UI_BYTES {
            self.skipped += (data.len() - UI_BYTES) as u64;
            &data[data.len() - UI_BYTES..]
        } else {
            data
        };
        self.size += data.len();
        self.pieces.push_back((stream, data.to_vec()));
        while self.size > UI_BYTES {
            let (_, old) = self.pieces.pop_front().expect("size > 0 means pieces");
            self.size -= old.len();
            self.skipped += old.len() as u64;
        }
    }

    fn flush(&mut self, to: &Channel<Value>) {
        if self.skipped > 0 {
            let _ = to.send(json!({ "skipped": self.skipped }));
            self.skipped = 0;
        }
        for (stream, data) in self.pieces.drain(..) {
            let _ =
                to.send(json!({ "stream": stream.name(), "text": String::from_utf8_lossy(&data) }));
        }
        self.size = 0;
    }
}

#[tauri::command]
pub async fn get_logs(shared: State<'_, Shared>) -> Result<Value> {
    shared.call(Call::GetLogs).await
}

#[tauri::command]
pub async fn get_prefs(shared: State<'_, Shared>) -> Result<Prefs> {
    shared.call(Call::GetPrefs).await
}

#[tauri::command]
pub async fn set_prefs(app: AppHandle, shared: State<'_, Shared>, prefs: Prefs) -> Result<Prefs> {
    let autostart = app.autolaunch();
    let result = if prefs.start_at_login {
        autostart.enable()
    } else {
        autostart.disable()
    };
    if let Err(e) = result {
        tracing::warn!("start at login not changed: {e}");
    }
    shared.call(Call::SetPrefs { prefs }).await
}

/// Ask the server again (the window's "Try again"): engine, mode and image as they are now.
#[tauri::command]
pub async fn refresh_status(shared: State<'_, Shared>) -> Result<Value> {
    shared.call(Call::RefreshStatus).await
}

/// Why `image` is not an image reference (None when it is): the engine's rule, not a copy.
#[tauri::command]
pub fn check_image(image: String) -> Option<String> {
    stigmer_protocol::mode::validate_image_ref(&image).err()
}

/// Open a help page in the browser: only the pages listed here.
#[tauri::command]
pub fn open_help(app: AppHandle, topic: String) -> Result<()> {
    use tauri_plugin_opener::OpenerExt;
    let url = match topic.as_str() {
        "install-engine" => "https://docs.docker.com/get-started/get-docker/",
        "engine-permission" => "https://docs.docker.com/engine/install/linux-postinstall/",
        _ => return Err(Error::new(ErrorCode::InvalidRequest, "no such help page")),
    };
    app.opener()
        .open_url(url, None::<&str>)
        .map_err(|e| Error::internal(format!("cannot open {url}: {e}")))
}

/// The page has drawn itself: the window may show (it starts hidden, never blank).
#[tauri::command]
pub fn page_ready(app: AppHandle) {
    crate::page::page_ready(&app);
}

#[tauri::command]
pub async fn check_update(shared: State<'_, Shared>) -> Result<Value> {
    shared.call(Call::CheckUpdate).await
}

#[tauri::command]
pub async fn install_update(app: AppHandle) -> Result<()> {
    crate::updates::install(&app).await
}

/// The view a window opened from the tray shows first, if any.
#[tauri::command]
pub fn take_pending_view(app: AppHandle) -> Option<String> {
    crate::page::take_pending_view(&app)
}

/// Whether `stigmer` is on PATH, and whether this app can put it there.
#[tauri::command]
pub fn cli_status() -> crate::cli_install::CliStatus {
    crate::cli_install::status(bundled_cli())
}

/// "Install the stigmer command" (macOS, Windows, AppImage).
#[tauri::command]
pub fn install_cli() -> Result<crate::cli_install::CliStatus> {
    crate::cli_install::install(bundled_cli())
}
