//! What a command changed, in the real window under Xvfb with the real server: the run's
//! "Changes" opens the list and the diff of a text file; "Undo this command" clicked puts the
//! files back; a file changed by a later command stops the undo, and "Undo the later command
//! too" undoes both, newest first.

mod desktop;

use std::time::Duration;

use desktop::page::*;
use desktop::*;
use fantoccini::{Client, Locator};
use serde_json::json;

/// The run's entry in Activity.
fn entry(id: &str) -> String {
    format!("#runs li[data-run='{id}']")
}

async fn click(c: &Client, css: &str) {
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn click_button(c: &Client, within: &str, label: &str) {
    let xpath =
        format!("//li[@data-run='{within}']//button[contains(normalize-space(.), \"{label}\")]");
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn wait_in(c: &Client, css: &str, want: &str) -> String {
    let script = format!(
        "return document.querySelector(\"{css}\")?.textContent || ''",
        css = css.replace('"', "\\\"")
    );
    let mut last = String::new();
    for _ in 0..200 {
        last = js(c, &script)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string();
        if last.contains(want) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never showed {want:?}; it shows {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_s_changes_are_shown_and_undone_from_the_window() {
    let Some(d) = Desktop::start("a_command_s_changes_are_shown_and_undone") else {
        return;
    };
    d.skip_welcome();
    let proj = d.home.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(proj.join("notes.txt"), "milk\neggs\nbread\n").unwrap();
    std::fs::write(proj.join("plan.txt"), "keep me\n").unwrap();
    let w = d.open(&[]).await;
    let c = w.c.clone();
    let api = d.api();
    let run = |shell: &str| {
        let body = json!({"shell": shell, "cwd": proj, "client": "e2e-agent"});
        let api = &api;
        async move {
            let (status, body) = api.post("/v1/runs", &body).await;
            assert_eq!(status, 200, "{body}");
            let id = body.split("\"id\":\"").nth(1).unwrap();
            id[..id.find('"').unwrap()].to_string()
        }
    };
    let first = run("sed -i s/eggs/butter/ notes.txt && rm plan.txt").await;
    view(&c, "activity").await;
    // What the kept contents take, in the window.
    wait_text(
        &c,
        "history-use",
        "File contents kept so that commands can be undone",
    )
    .await;
    let mine = entry(&first);
    wait_in(&c, &format!("{mine} .changed"), "Changed 2 files").await;
    click(&c, &format!("{mine} .changes-toggle")).await;
    // The list, and the text file's diff once opened.
    wait_in(&c, &format!("{mine} .changes"), "plan.txt: removed").await;
    click(&c, &format!("{mine} .changes details summary")).await;
    let diff = wait_in(&c, &format!("{mine} .changes .diff"), "+butter").await;
    assert!(diff.contains("-eggs"), "{diff}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    shot(&c, "window-activity-changes.png").await;

    click_button(&c, &first, "Undo this command").await;
    wait_in(
        &c,
        &format!("{mine} .undo-status"),
        "Undone: 2 files put back",
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(proj.join("notes.txt")).unwrap(),
        "milk\neggs\nbread\n"
    );
    assert_eq!(
        std::fs::read_to_string(proj.join("plan.txt")).unwrap(),
        "keep me\n"
    );
    // The undo shows as a run of its own.
    wait_text(&c, "runs", &format!("undo {first}")).await;

    // A later command changed the same file: the undo is refused and says so, and "Undo the
    // later command too" undoes it first, then this one.
    let second = run("echo more >> notes.txt").await;
    let third = run("echo again >> notes.txt").await;
    let two = entry(&second);
    wait_in(&c, &format!("{} .changed", entry(&third)), "Changed 1 file").await;
    click(&c, &format!("{two} .changes-toggle")).await;
    click_button(&c, &second, "Undo this command").await;
    let said = wait_in(&c, &format!("{two} .undo-status"), "Nothing was undone").await;
    assert!(said.contains("notes.txt"), "{said}");
    assert_eq!(
        std::fs::read_to_string(proj.join("notes.txt")).unwrap(),
        "milk\neggs\nbread\nmore\nagain\n",
        "nothing changed"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    shot(&c, "window-activity-undo-conflict.png").await;
    click_button(&c, &second, "Undo the 1 later command too").await;
    wait_in(
        &c,
        &format!("{two} .undo-status"),
        "Undone: 1 file put back",
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(proj.join("notes.txt")).unwrap(),
        "milk\neggs\nbread\n"
    );
    w.close(&d).await;
}
