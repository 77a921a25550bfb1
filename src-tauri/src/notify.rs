//! Desktop notifications: the one-time sandbox download (when it starts, when it ends), a
//! server that stopped on its own, each once, and a command that waits for the user's
//! approval, with Allow and Deny buttons where the notification server has buttons. Never one
//! per progress step: GNOME ignores `replaces_id`, so progress lives in the window.

use stigmer_protocol::clients::{Approval, Decision};
use stigmer_protocol::events::ImageAction;
use stigmer_protocol::mode::Tier;
use tauri::AppHandle;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub summary: String,
    pub body: String,
}

/// Decides which notifications to show; pure, so it is tested without a desktop.
#[derive(Debug, Default)]
pub struct Notifier {
    crash_shown: bool,
}

impl Notifier {
    pub fn image_started(&mut self, image: &str, action: ImageAction, tier: Tier) -> Note {
        let size = if tier == Tier::Basic {
            " (about 300 MB)"
        } else {
            ""
        };
        match action {
            ImageAction::Build => Note {
                summary: "Building the sandbox image".into(),
                body: format!("Stigmer is building {image} from its Dockerfile. This happens once; it can take a few minutes."),
            },
            _ => Note {
                summary: "Downloading the sandbox image".into(),
                body: format!("Stigmer is downloading {image}{size}. This happens once; later commands start at once."),
            },
        }
    }

    pub fn image_finished(
        &mut self,
        image: &str,
        action: ImageAction,
        ok: bool,
        tier: Tier,
    ) -> Note {
        match (ok, action) {
            (true, _) => Note {
                summary: "Sandbox ready".into(),
                body: format!("{image} is ready: commands now run in the sandbox."),
            },
            // Plain words only: the technical reason is in the window, under Details.
            (false, ImageAction::Pull) if tier == Tier::Basic => Note {
                summary: "Download failed".into(),
                body: "The sandbox image could not be downloaded. Stigmer builds it from its Dockerfile instead, once.".into(),
            },
            (false, _) => Note {
                summary: "Sandbox image not available".into(),
                body: format!("{image} is not available, so commands will not run in the sandbox. Open Stigmer to try again or use Local."),
            },
        }
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
    Note {
        summary: format!("{} wants to run a command", a.client),
        body: format!(
            "{}\nin {}, {place}\nNo answer within {secs} s means Deny.",
            a.command,
            a.cwd.display()
        ),
    }
}

/// The buttons of a waiting command's notification: (action key, label).
pub fn approval_actions(a: &Approval) -> [(&'static str, String); 4] {
    [
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
                    Ok(handle) => handle.wait_for_action(|action| on_action(&app, &a.id, action)),
                    Err(e) => tracing::warn!("notification not shown: {e}"),
                }
                return;
            }
        }
        let _ = &app;
        show_now(&Note {
            body: format!("{}\nOpen Stigmer to allow or deny it.", note.body),
            ..note
        });
    });
}

#[cfg(all(unix, not(target_os = "macos")))]
fn on_action(app: &AppHandle, id: &str, action: &str) {
    let decision = match action {
        "allow_once" => Decision::AllowOnce,
        "always_allow" => Decision::AlwaysAllow,
        "deny" => Decision::Deny,
        "default" => return crate::window::show_window(app),
        _ => return, // closed or expired: the wait goes on in the window, or ended
    };
    let (app, id) = (app.clone(), id.to_string());
    tauri::async_runtime::spawn(async move {
        if let Err(e) = crate::actions::answer(&app, &id, decision).await {
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
    }

    #[test]
    fn download_notes_say_what_and_what_next() {
        let mut n = Notifier::default();
        let start = n.image_started(
            "ghcr.io/stigmer/agent-sandbox-basic:latest",
            ImageAction::Pull,
            Tier::Basic,
        );
        assert!(start.body.contains("300 MB") && start.body.contains("once"));
        let failed = n.image_finished("x", ImageAction::Pull, false, Tier::Basic);
        assert!(failed.body.contains("Dockerfile"));
        let failed = n.image_finished("x", ImageAction::Pull, false, Tier::Custom);
        assert!(!failed.body.contains("Dockerfile") && failed.body.contains("Open Stigmer"));
        assert_eq!(
            n.image_finished("x", ImageAction::Build, true, Tier::Basic)
                .summary,
            "Sandbox ready"
        );
    }
}
