//! Tests of the workspace rules ([`super`]), kept apart so the rules read on one screen.

use super::*;

fn rules(home_like: &Path) -> NeverMounted {
    let mut list = NeverMounted::default();
    list.push(Path::new("/etc"), Scope::Tree, "system".into());
    list.push(Path::new("/tmp"), Scope::Exact, "shared".into());
    list.push(home_like, Scope::Home, "home".into());
    list
}

#[test]
fn scopes_refuse_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let home = resolved(&dir.path().join("home"));
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::create_dir_all(home.join("code/proj")).unwrap();
    let r = rules(&home);
    assert!(r.refuses(Path::new("/")).is_some());
    assert!(r.refuses(Path::new("/lost+found")).is_some());
    assert!(r.refuses(Path::new("/work/proj")).is_none());
    assert!(r.refuses(Path::new("/etc")).is_some());
    assert!(r.refuses(Path::new("/etc/ssl")).is_some());
    assert!(r.refuses(Path::new("/tmp")).is_some());
    assert!(r.refuses(&home).is_some());
    assert!(r.refuses(home.parent().unwrap()).is_some());
    assert!(r.refuses(&home.join(".ssh")).is_some());
    assert!(r.refuses(&home.join(".local/bin")).is_some());
    assert!(r.refuses(&home.join("Library/Keychains")).is_some());
    assert!(r.refuses(&home.join("code/proj")).is_none());
    assert!(r.refuses(&home.join("code/.hidden-but-not-top")).is_none());
    // The scratch folder in the home's cache is allowed; the home itself allows nothing.
    let scratch = home.join(".cache/stigmer/sandbox-workspace");
    std::fs::create_dir_all(&scratch).unwrap();
    let a = r.admit(&scratch, &[], &scratch).unwrap();
    assert_eq!(a.mount, scratch);
    let e = r
        .admit(
            &home.join("code/proj"),
            std::slice::from_ref(&home),
            &scratch,
        )
        .unwrap_err();
    assert!(e.can_allow, "{e:?}");
    assert_eq!(e.reason, "none is allowed yet");
}

#[test]
fn admit_needs_an_allowed_workspace_and_mounts_the_project_root() {
    let dir = tempfile::tempdir().unwrap();
    let base = resolved(dir.path());
    let r = NeverMounted::default();
    let ws = base.join("ws");
    let proj = ws.join("proj");
    std::fs::create_dir_all(proj.join(".git")).unwrap();
    std::fs::create_dir_all(proj.join("src")).unwrap();
    std::fs::create_dir_all(base.join("outside")).unwrap();
    let scratch = base.join("scratch");
    let a = r
        .admit(&proj.join("src"), std::slice::from_ref(&ws), &scratch)
        .unwrap();
    // The workspace, never the project inside it that a `.git` names: a command can make
    // a `.git` anywhere and then swap that folder for a link.
    assert_eq!(a.mount, ws);
    assert_eq!(a.cwd, proj.join("src"));
    // Nested workspaces share the outer one's mount.
    let a = r
        .admit(&proj.join("src"), &[proj.clone(), ws.clone()], &scratch)
        .unwrap();
    assert_eq!(a.mount, ws);
    // A .git above the workspace is not a reason to mount more than was allowed.
    let inner = proj.join("src");
    let a = r
        .admit(&inner, std::slice::from_ref(&inner), &scratch)
        .unwrap();
    assert_eq!(a.mount, inner);
    let e = r
        .admit(&base.join("outside"), std::slice::from_ref(&ws), &scratch)
        .unwrap_err();
    assert!(e.can_allow);
    assert_eq!(refusal_error(&e).code, ErrorCode::WorkspaceNotAllowed);
    // `..` and links are resolved before anything is compared.
    let e = r
        .admit(&ws.join("../outside"), std::slice::from_ref(&ws), &scratch)
        .unwrap_err();
    assert_eq!(e.folder, base.join("outside"));
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(base.join("outside"), ws.join("link")).unwrap();
        let e = r
            .admit(&ws.join("link"), std::slice::from_ref(&ws), &scratch)
            .unwrap_err();
        assert_eq!(e.folder, base.join("outside"));
    }
}

#[test]
fn a_workspace_holding_a_refused_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = resolved(dir.path());
    let proj = base.join("proj");
    std::fs::create_dir_all(proj.join(".git")).unwrap();
    std::fs::create_dir_all(proj.join("bin")).unwrap();
    std::fs::create_dir_all(proj.join("src")).unwrap();
    let mut r = NeverMounted::default();
    r.push(&proj.join("bin"), Scope::Tree, "on PATH".into());
    let e = r
        .admit(
            &proj.join("src"),
            std::slice::from_ref(&proj),
            Path::new("/nowhere"),
        )
        .unwrap_err();
    assert_eq!(e.folder, proj);
    assert!(!e.can_allow);
    assert!(e.reason.contains("on PATH"), "{}", e.reason);
}

#[test]
#[cfg(unix)]
fn homes_and_temporary_folders_under_var_are_not_system_folders() {
    let r = NeverMounted::gather(&[], &[], std::ffi::OsStr::new(""));
    assert!(r.refuses(Path::new("/var/home/ann/code/proj")).is_none());
    assert!(r.refuses(Path::new("/var/tmp/proj")).is_none());
    assert!(r.refuses(Path::new("/var/tmp")).is_some());
    assert!(r.refuses(Path::new("/var/home")).is_some());
    assert!(r.refuses(Path::new("/var")).is_some());
    assert!(r.refuses(Path::new("/var/lib/docker")).is_some());
    assert!(r.refuses(Path::new("/var/log/x")).is_some());
    assert!(r.refuses(Path::new("/etc/x")).is_some());
}

#[test]
#[cfg(unix)]
fn a_workspace_inside_another_swapped_for_a_link_allows_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let base = resolved(dir.path());
    let (outer, outside) = (base.join("outer"), base.join("outside"));
    std::fs::create_dir_all(&outer).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let inner = outer.join("inner");
    // A command in `outer` replaced the allowed `inner` by a link to `outside`.
    std::os::unix::fs::symlink(&outside, &inner).unwrap();
    let r = NeverMounted::default();
    let allowed = [outer.clone(), inner.clone()];
    let e = r
        .admit(&inner, &allowed, Path::new("/nowhere"))
        .unwrap_err();
    assert_eq!(e.folder, outside);
    assert!(r.admit(&outside, &allowed, Path::new("/nowhere")).is_err());
    // A link the user made themselves, outside any workspace, is followed.
    let mine = base.join("mine");
    std::os::unix::fs::symlink(&outside, &mine).unwrap();
    let a = r
        .admit(&mine, std::slice::from_ref(&mine), Path::new("/nowhere"))
        .unwrap();
    assert_eq!(a.mount, outside);
}

#[test]
fn resolved_applies_dotdot_past_missing_parts() {
    let dir = tempfile::tempdir().unwrap();
    let base = resolved(dir.path());
    assert_eq!(resolved(&base.join("a/b/../c")), base.join("a/c"));
    assert_eq!(resolved(&base.join("x/..")), base);
}
