//! The tray process outside a desktop session: it says what it needs and changes nothing.
//! (Its life in a desktop, with the window, the tray and notifications, is tested by the
//! desktop app's end-to-end tests, which start it.)

use std::process::Command;

const TRAY: &str = env!("CARGO_BIN_EXE_stigmer-tray");

#[test]
fn without_a_desktop_session_it_says_so_and_changes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(TRAY)
        .env("STIGMER_HOME", home.path())
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if cfg!(all(unix, not(target_os = "macos"))) {
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("needs a desktop session"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0);
    }
}

#[test]
fn it_says_its_version() {
    let out = Command::new(TRAY).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("stigmer-tray {}", env!("CARGO_PKG_VERSION"))
    );
}
