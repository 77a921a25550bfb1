//! `stigmer connect` against real agent configuration files in a temporary HOME: other servers
//! and settings kept, comments kept (VS Code's JSONC, Codex's TOML), a backup beside each file,
//! idempotent, removed cleanly, and a broken file never rewritten.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    fn stigmer(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(BIN)
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CODEX_HOME")
            .env_remove("STIGMER_HOME")
            .output()
            .unwrap()
    }
}

fn backups(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".stigmer-backup-")
        })
        .count()
}

const VSCODE: &str = ".config/Code/User/mcp.json";
const VSCODE_TEXT: &str = "// my servers\n{\n  \"servers\": {\n    \"github\": { \"type\": \"http\", \"url\": \"https://example.invalid/mcp\" }, // work\n  },\n  \"inputs\": [],\n}\n";
const CODEX: &str = ".codex/config.toml";
const CODEX_TEXT: &str = "# codex settings\nmodel = \"o3\"\n\n[mcp_servers.docs]\ncommand = \"docs-mcp\" # mine\nargs = [\"--stdio\"]\n";
const CLAUDE: &str = ".claude.json";
const CLAUDE_TEXT: &str =
    "{\n  \"numStartups\": 12,\n  \"mcpServers\": {\n    \"fs\": {\n      \"command\": \"fs-mcp\"\n    }\n  }\n}\n";

#[test]
fn connect_merges_backs_up_is_idempotent_and_removes_cleanly() {
    let h = Home::new();
    h.write(VSCODE, VSCODE_TEXT);
    h.write(CODEX, CODEX_TEXT);
    h.write(CLAUDE, CLAUDE_TEXT);
    std::fs::create_dir_all(h.path(".claude")).unwrap();
    std::fs::create_dir_all(h.path(".cursor")).unwrap();
    let me = std::fs::canonicalize(BIN).unwrap();

    for agent in ["vscode", "codex", "claude-code", "cursor"] {
        let o = h.stigmer(&["connect", agent]);
        assert!(o.status.success(), "{agent}: {}", stderr(&o));
        assert!(stdout(&o).contains("Connected"), "{agent}: {}", stdout(&o));
    }
    // VS Code: JSONC with comments and trailing commas, the other server kept.
    let vs = h.read(VSCODE);
    assert!(vs.starts_with("// my servers\n"), "{vs}");
    assert!(vs.contains("// work") && vs.contains("\"github\""), "{vs}");
    let parsed: Value = jsonc(&vs);
    assert_eq!(
        parsed["servers"]["stigmer"]["command"],
        me.display().to_string()
    );
    assert_eq!(
        parsed["servers"]["stigmer"]["args"],
        serde_json::json!(["mcp"])
    );
    assert_eq!(parsed["servers"]["stigmer"]["type"], "stdio");
    assert_eq!(parsed["inputs"], serde_json::json!([]));
    // Codex: TOML, comments and the other server kept.
    let codex = h.read(CODEX);
    assert!(codex.starts_with(CODEX_TEXT), "{codex}");
    let t: toml_edit::DocumentMut = codex.parse().unwrap();
    assert_eq!(
        t["mcp_servers"]["stigmer"]["command"].as_str(),
        Some(me.to_str().unwrap())
    );
    // Claude Code: every other setting kept.
    let claude: Value = serde_json::from_str(&h.read(CLAUDE)).unwrap();
    assert_eq!(claude["numStartups"], 12);
    assert_eq!(claude["mcpServers"]["fs"]["command"], "fs-mcp");
    assert_eq!(claude["mcpServers"]["stigmer"]["type"], "stdio");
    // Cursor had no file: made, and readable by the user only.
    let cursor: Value = serde_json::from_str(&h.read(".cursor/mcp.json")).unwrap();
    assert_eq!(
        cursor["mcpServers"]["stigmer"]["args"],
        serde_json::json!(["mcp"])
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(h.path(".cursor/mcp.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A backup of each file that existed, holding it as it was.
    assert_eq!(backups(&h.path(".codex")), 1);
    assert_eq!(backups(&h.path(".cursor")), 0, "nothing to back up");
    let backup = std::fs::read_dir(h.path(".codex"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("stigmer-backup"))
        .unwrap();
    assert_eq!(std::fs::read_to_string(backup).unwrap(), CODEX_TEXT);

    // Twice: nothing written, no new backup.
    let before = h.read(VSCODE);
    let o = h.stigmer(&["connect", "vscode"]);
    assert!(stdout(&o).contains("already connected"), "{}", stdout(&o));
    assert_eq!(h.read(VSCODE), before);
    assert_eq!(backups(&h.path(".config/Code/User")), 1);

    let list = h.stigmer(&["connect", "list", "--json"]);
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let state = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state("vscode"), "connected");
    assert_eq!(state("windsurf"), "not_found");

    // Removed: stigmer's entry only; the files read as before.
    for agent in ["vscode", "codex", "claude-code"] {
        let o = h.stigmer(&["connect", "--remove", agent]);
        assert!(o.status.success(), "{agent}: {}", stderr(&o));
    }
    assert_eq!(h.read(CODEX), CODEX_TEXT);
    let vs: Value = jsonc(&h.read(VSCODE));
    assert!(vs["servers"].get("stigmer").is_none());
    assert_eq!(vs["servers"]["github"]["type"], "http");
    assert!(h.read(VSCODE).contains("// work"));
    let claude: Value = serde_json::from_str(&h.read(CLAUDE)).unwrap();
    assert_eq!(claude, serde_json::from_str::<Value>(CLAUDE_TEXT).unwrap());
}

#[test]
fn a_broken_file_is_never_rewritten_and_the_snippet_is_shown() {
    let h = Home::new();
    let broken = "{\n  \"mcpServers\": {\n    \"a\": { \"command\": \"x\" }\n    \"b\": 1\n";
    h.write(".cursor/mcp.json", broken);
    h.write(CODEX, "model = = \"o3\"\n");
    for (agent, file) in [("cursor", ".cursor/mcp.json"), ("codex", CODEX)] {
        let before = h.read(file);
        let o = h.stigmer(&["connect", agent]);
        assert_eq!(o.status.code(), Some(1), "{agent}");
        assert!(
            stderr(&o).contains("AGENT_CONFIG_UNREADABLE"),
            "{agent}: {}",
            stderr(&o)
        );
        assert!(
            stdout(&o).contains("stigmer"),
            "the snippet: {}",
            stdout(&o)
        );
        assert_eq!(h.read(file), before, "{agent}: the file changed");
        assert_eq!(backups(h.path(file).parent().unwrap()), 0);
    }
    let o = h.stigmer(&["connect", "no-such-agent"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("known agents"), "{}", stderr(&o));
    // Not installed: nothing is made.
    let o = h.stigmer(&["connect", "windsurf"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!h.path(".codeium").exists());
}

/// JSON with comments and trailing commas, read as VS Code does.
fn jsonc(text: &str) -> Value {
    jsonc_parser::parse_to_serde_value::<Value>(text, &Default::default()).unwrap()
}
