//! Issue 10, "the README's main job shows the whole product": `scripts/demo` (build, push to a
//! directory target with channel prod, install with sitebundle-init, change a page, push again,
//! init swaps `current`, diff, rollback prod, status agrees) runs to the end on the workspace's
//! binaries, so the README's first command cannot rot.

mod repl_support;

use std::path::Path;
use std::process::Command;

#[test]
fn issue_10_demo_runs_the_whole_job_and_ends_ok() {
    let bin = repl_support::workspace_bin("sitebundle");
    repl_support::workspace_bin("sitebundle-init");
    let work = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut c = Command::new(root.join("scripts/demo"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SITEBUNDLE_") {
            c.env_remove(k);
        }
    }
    let out = c
        .env("SITEBUNDLE_BIN_DIR", bin.parent().expect("bin dir"))
        .env("SITEBUNDLE_DEMO_DIR", work.path())
        .output()
        .expect("run scripts/demo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "scripts/demo failed ({}):\n{text}",
        out.status
    );
    for step in [
        "== 1. build",
        "== 2. push",
        "== 3. install",
        "== 4. change a page",
        "== 5. the pod's init runs again",
        "== 6. what changed",
        "== 7. roll prod back",
        "== 8. status agrees",
        "demo: ok in",
        "Try next",
    ] {
        assert!(
            text.contains(step),
            "the demo's output lacks {step:?}:\n{text}"
        );
    }
    // The diff names the page that changed, and DEST serves the first version again.
    assert!(text.contains("M index.html"), "{text}");
    let page = std::fs::read_to_string(work.path().join("srv/current/index.html")).expect("page");
    assert!(!page.contains("version 2"), "rolled back: {page}");
    assert!(text.contains("ok: 1 target(s) agree"), "{text}");
}
