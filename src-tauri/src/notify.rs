//! Desktop notifications: the one-time sandbox download (when it starts, when it ends) and a
//! server that stopped on its own, each once. Never one per progress step: GNOME ignores
//! `replaces_id`, so progress lives in the window, not in notifications.

use stigmer_protocol::events::ImageAction;
use stigmer_protocol::mode::Tier;

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
    std::thread::spawn(move || {
        let shown = notify_rust::Notification::new()
            .appname("Stigmer")
            .summary(&note.summary)
            .body(&note.body)
            .icon("dialog-information")
            .show();
        if let Err(e) = shown {
            tracing::warn!("notification not shown: {e}");
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
