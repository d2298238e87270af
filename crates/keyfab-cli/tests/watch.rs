//! `keyfab watch` driven by real file edits in a temp copy of the fixture
//! tree, in the ways editors and people make them.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use util::*;

struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
    pending: std::cell::RefCell<Option<String>>,
}

impl Watch {
    fn start(
        tree: &std::path::Path,
        cache: &std::path::Path,
        targets: &[&str],
        max_builds: usize,
    ) -> Watch {
        Watch::start_with(tree, cache, targets, max_builds, &[])
    }

    fn start_with(
        tree: &std::path::Path,
        cache: &std::path::Path,
        targets: &[&str],
        max_builds: usize,
        extra: &[&str],
    ) -> Watch {
        Watch::start_in(keyfab(tree), cache, targets, max_builds, extra)
    }

    /// `keyfab watch` run through `cmd` (its folder and environment).
    fn start_in(
        mut cmd: std::process::Command,
        cache: &std::path::Path,
        targets: &[&str],
        max_builds: usize,
        extra: &[&str],
    ) -> Watch {
        let mut child = cmd
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("--cache")
            .arg(cache)
            .arg("watch")
            .args(targets)
            .args(["--max-builds", &max_builds.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch {
            child,
            lines: rx,
            pending: std::cell::RefCell::new(None),
        }
    }

    /// The next rebuild line, waiting up to a minute; the indented detail
    /// lines of an error are joined onto it.
    fn next(&self) -> String {
        let mut line = match self.pending.take() {
            Some(l) => l,
            None => self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .expect("a rebuild line"),
        };
        while let Ok(more) = self.lines.recv_timeout(Duration::from_millis(300)) {
            if more.starts_with(' ') {
                line.push('\n');
                line.push_str(&more);
            } else {
                // Not a detail line: hand it back by re-queuing is not possible
                // with mpsc, so keep it for the next call.
                self.pending.replace(Some(more));
                break;
            }
        }
        line
    }
}

impl Watch {
    /// Asserts that no rebuild line comes within `ms`.
    fn quiet_for(&self, ms: u64) {
        if let Some(l) = self.pending.take() {
            panic!("unexpected rebuild: {l}");
        }
        if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(ms)) {
            panic!("unexpected rebuild: {l}");
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes like an editor that saves atomically: a temp file, then rename.
fn atomic_save(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("kfsave.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn settle() {
    // Let the watcher see the first build's own writes go by.
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn rebuilds_on_atomic_save_and_ignores_swap_files() {
    let (t, tree) = copy_fixture("tree");
    let cache = t.path().join("cache");
    let w = Watch::start(&tree, &cache, &["solo:default"], 3);
    let first = w.next();
    assert!(
        first.starts_with("build → solo:default: .build/solo_default.hex"),
        "{first}"
    );
    assert!(first.contains("5 compiled"), "{first}");
    settle();

    // a swap file alone does not rebuild; the atomic save that follows does
    let km = tree.join("keyboards/solo/keymaps/default");
    std::fs::write(km.join(".keymap.c.swp"), "swap").unwrap();
    std::fs::write(km.join("keymap.c~"), "backup").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let text = std::fs::read_to_string(km.join("keymap.c")).unwrap();
    atomic_save(
        &km.join("keymap.c"),
        &text.replace("KC_A, KC_A", "KC_C, KC_A"),
    );
    let second = w.next();
    assert!(
        second.starts_with("changed keyboards/solo/keymaps/default/keymap.c → solo:default"),
        "{second}"
    );
    assert!(second.contains("1 compiled, 4 from cache"), "{second}");
    settle();

    // a new config.h that applies to the keyboard: replan, everything recompiles
    std::fs::write(
        tree.join("keyboards/solo/config.h"),
        "#pragma once\n#define SOLO_EXTRA 1\n",
    )
    .unwrap();
    let third = w.next();
    assert!(third.contains("changed keyboards/solo/config.h"), "{third}");
    assert!(
        third.contains("5 compiled") && third.contains("plan made"),
        "{third}"
    );
}

#[test]
fn half_written_json_is_reported_and_watching_goes_on() {
    let (t, tree) = copy_fixture("tree");
    let cache = t.path().join("cache");
    let w = Watch::start(&tree, &cache, &["acme/pad:default"], 3);
    assert!(w
        .next()
        .contains("acme/pad:default: .build/acme_pad_default.hex"));
    settle();
    let path = tree.join("keyboards/acme/pad/keymaps/default/keymap.json");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let broken = w.next();
    assert!(broken.contains("acme/pad:default: error:"), "{broken}");
    assert!(
        broken.contains("keymap.json"),
        "the error names the file: {broken}"
    );
    settle();
    std::fs::write(&path, good.replacen("KC_B", "KC_D", 1)).unwrap();
    let fixed = w.next();
    assert!(
        fixed.contains("acme/pad:default: .build/acme_pad_default.hex"),
        "{fixed}"
    );
}

#[test]
fn many_files_at_once_are_one_rebuild_of_every_target() {
    let (t, tree) = copy_fixture("tree");
    let cache = t.path().join("cache");
    let w = Watch::start(&tree, &cache, &["solo:default", "numpad:default"], 2);
    let first = w.next();
    assert!(
        first.contains("solo:default") && w.next().contains("numpad:default"),
        "{first}"
    );
    settle();
    // like a branch switch: several files change within a few milliseconds
    for f in [
        "quantum/matrix.c",
        "quantum/keymap_common.c",
        "quantum/main.c",
    ] {
        let p = tree.join(f);
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text + "\n// switched\n").unwrap();
    }
    let a = w.next();
    let b = w.next();
    assert!(
        a.starts_with("changed quantum/keymap_common.c, quantum/main.c and 1 more → solo:default"),
        "{a}"
    );
    assert!(
        b.contains("→ numpad:default") && b.contains("3 compiled"),
        "{b}"
    );
}

/// `keyfab explain solo:default --format json` on the session's cache:
/// (changed inputs with the steps re-run because of each, steps that ran, status).
fn explain(tree: &std::path::Path, cache: &std::path::Path) -> serde_json::Value {
    run(keyfab(tree).arg("--cache").arg(cache).args([
        "explain",
        "solo:default",
        "--format",
        "json",
    ]))
    .json()
}

fn changed(j: &serde_json::Value) -> Vec<(String, Vec<String>)> {
    j["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let steps = c["steps"].as_array().unwrap().iter();
            (
                c["input"].as_str().unwrap().to_string(),
                steps.map(|s| s.as_str().unwrap().to_string()).collect(),
            )
        })
        .collect()
}

fn ran(j: &serde_json::Value) -> Vec<String> {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ran"] == true)
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn each_rebuild_is_recorded_and_explain_names_what_changed() {
    let (t, tree) = copy_fixture("tree");
    let cache = t.path().join("cache");
    let w = Watch::start(&tree, &cache, &["solo:default"], 4);
    assert!(w.next().contains("solo:default: .build/solo_default.hex"));
    let first = explain(&tree, &cache);
    assert_eq!(first["previous_run"], serde_json::Value::Null, "{first}");
    settle();

    // a keymap edit: its object, the link, the hex
    let keymap = tree.join("keyboards/solo/keymaps/default/keymap.c");
    let text = std::fs::read_to_string(&keymap).unwrap();
    atomic_save(&keymap, &text.replacen("KC_A", "KC_B", 1));
    let line = w.next();
    assert!(line.contains("1 compiled, 4 from cache"), "{line}");
    let j = explain(&tree, &cache);
    assert_eq!(j["previous_run"], first["run"], "{j}");
    assert_eq!(
        changed(&j),
        [(
            "keyboards/solo/keymaps/default/keymap.c".to_string(),
            vec![
                "compile .build/obj_solo_default/keyboards/solo/keymaps/default/keymap.o"
                    .to_string(),
                "link .build/solo_default.elf".to_string(),
                "convert .build/solo_default.hex".to_string(),
            ]
        )],
        "{j}"
    );
    assert_eq!(ran(&j).len(), 3, "{j}");
    settle();

    // a header edit: every object that includes it recompiles; the objects
    // come out the same (an unused inline function), so no link
    let header = tree.join("quantum/quantum.h");
    let text = std::fs::read_to_string(&header).unwrap();
    std::fs::write(
        &header,
        text + "static inline int quantum_edit(void) { return 1; }\n",
    )
    .unwrap();
    let line = w.next();
    assert!(line.starts_with("changed quantum/quantum.h"), "{line}");
    let j = explain(&tree, &cache);
    let c = changed(&j);
    assert_eq!(c.len(), 1, "{j}");
    assert_eq!(c[0].0, "quantum/quantum.h");
    assert_eq!(ran(&j).len(), 5, "{j}");
    settle();

    // a failed rebuild is recorded too: its error, compared with the last
    // successful build
    let text = std::fs::read_to_string(&keymap).unwrap();
    atomic_save(&keymap, &(text + "\nthis is not C\n"));
    let line = w.next();
    assert!(line.contains("solo:default: error:"), "{line}");
    let j = explain(&tree, &cache);
    assert_eq!(j["status"], "failed", "{j}");
    assert_eq!(j["stage"], "build", "{j}");
    assert!(j["error"].as_str().unwrap().contains("keymap.c"), "{j}");
    let c = changed(&j);
    assert_eq!(c.len(), 1, "{j}");
    assert_eq!(c[0].0, "keyboards/solo/keymaps/default/keymap.c");
}

/// A first build of solo:default in a fresh copy of the fixture tree.
fn watch_solo(max_builds: usize) -> (tempfile::TempDir, std::path::PathBuf, Watch) {
    let (t, tree) = copy_fixture("tree");
    let cache = t.path().join("cache");
    let w = Watch::start(&tree, &cache, &["solo:default"], max_builds);
    let first = w.next();
    assert!(
        first.contains("solo:default: .build/solo_default.hex"),
        "{first}"
    );
    settle();
    (t, tree, w)
}

#[test]
fn temp_files_of_any_name_that_come_and_go_are_no_change() {
    let (_t, tree, w) = watch_solo(3);
    let km = tree.join("keyboards/solo/keymaps/default");
    // `sed -i` and other safe writers: a temp file with a name of no known
    // editor, renamed over the file
    let text = std::fs::read_to_string(km.join("keymap.c")).unwrap();
    std::fs::write(km.join("sedX1b2Q9"), text.replacen("KC_A", "KC_D", 1)).unwrap();
    std::fs::rename(km.join("sedX1b2Q9"), km.join("keymap.c")).unwrap();
    let line = w.next();
    assert!(
        line.starts_with("changed keyboards/solo/keymaps/default/keymap.c → solo:default"),
        "{line}"
    );
    assert!(line.contains("1 compiled, 4 from cache"), "{line}");
    settle();
    // a file made and removed at once (a tool's probe) changes nothing
    std::fs::write(km.join("probe-xyz"), "x").unwrap();
    std::fs::remove_file(km.join("probe-xyz")).unwrap();
    w.quiet_for(500);
    let text = std::fs::read_to_string(km.join("keymap.c")).unwrap();
    std::fs::write(km.join("keymap.c"), text.replacen("KC_D", "KC_E", 1)).unwrap();
    let line = w.next();
    assert!(
        line.starts_with("changed keyboards/solo/keymaps/default/keymap.c → solo:default"),
        "{line}"
    );
}

#[test]
fn a_deleted_config_h_replans_and_the_objects_come_back_from_the_cache() {
    let (_t, tree, w) = watch_solo(3);
    let config = tree.join("keyboards/solo/config.h");
    std::fs::write(&config, "#pragma once\n#define SOLO_EXTRA 1\n").unwrap();
    let added = w.next();
    assert!(
        added.contains("5 compiled") && added.contains("plan made"),
        "{added}"
    );
    settle();
    std::fs::remove_file(&config).unwrap();
    let removed = w.next();
    assert!(
        removed.starts_with("changed keyboards/solo/config.h → solo:default"),
        "{removed}"
    );
    // the plan of the first build again: every object and the link from the cache
    assert!(
        removed.contains("0 compiled, 5 from cache, link from cache"),
        "{removed}"
    );
}

#[test]
fn a_makefile_edit_replans() {
    let (_t, tree, w) = watch_solo(3);
    let mk = tree.join("builddefs/build_keyboard.mk");
    let text = std::fs::read_to_string(&mk).unwrap();
    // a comment: make plans again, to the same steps
    std::fs::write(&mk, format!("{text}\n# edited\n")).unwrap();
    let line = w.next();
    assert!(
        line.starts_with("changed builddefs/build_keyboard.mk"),
        "{line}"
    );
    assert!(line.contains("plan made"), "{line}");
    assert!(line.contains("0 compiled, 5 from cache"), "{line}");
    settle();
    // a flag for every compile: replanned, everything recompiles
    std::fs::write(&mk, format!("{text}\nCFLAGS += -DWATCH_EDIT=1\n")).unwrap();
    let line = w.next();
    assert!(
        line.contains("plan made") && line.contains("5 compiled"),
        "{line}"
    );
}

#[test]
fn a_keymap_folder_moved_away_and_back() {
    let (_t, tree, w) = watch_solo(3);
    let km = tree.join("keyboards/solo/keymaps/default");
    let away = tree.join("keyboards/solo/keymaps/default-moved");
    // one rename of a folder: the events name the folder, not its files
    std::fs::rename(&km, &away).unwrap();
    let gone = w.next();
    assert!(gone.contains("solo:default: error:"), "{gone}");
    assert!(gone.contains("default"), "{gone}");
    settle();
    std::fs::rename(&away, &km).unwrap();
    let back = w.next();
    assert!(
        back.contains("solo:default: .build/solo_default.hex") && back.contains("0 compiled"),
        "{back}"
    );
}

#[test]
fn a_branch_switch_is_one_rebuild_and_switching_back_is_all_from_cache() {
    let (t, tree) = copy_fixture("tree");
    let cache = t.path().join("cache");
    std::fs::write(tree.join(".gitignore"), ".build/\n*.hex\n").unwrap();
    commit_all(&tree);
    // another branch: a keymap edit, a core source edit, a new config.h
    // that applies to the keyboard, a file removed
    git(&tree, &["checkout", "-q", "-b", "other"]);
    let edit = |rel: &str, f: &dyn Fn(String) -> String| {
        let p = tree.join(rel);
        std::fs::write(&p, f(std::fs::read_to_string(&p).unwrap())).unwrap();
    };
    edit("keyboards/solo/keymaps/default/keymap.c", &|t| {
        t.replacen("KC_A", "KC_B", 1)
    });
    edit("quantum/matrix.c", &|t| t + "\n// other branch\n");
    std::fs::write(
        tree.join("keyboards/solo/config.h"),
        "#pragma once\n#define SOLO_EXTRA 1\n",
    )
    .unwrap();
    std::fs::remove_dir_all(tree.join("keyboards/solo/keymaps/notes")).unwrap();
    git(&tree, &["add", "-A"]);
    git(&tree, &["commit", "-q", "-m", "other"]);
    git(&tree, &["checkout", "-q", "-"]);

    // a long debounce: git on a loaded machine may pause between files
    let w = Watch::start_with(
        &tree,
        &cache,
        &["solo:default"],
        3,
        &["--debounce-ms", "300"],
    );
    let first = w.next();
    assert!(first.contains("5 compiled"), "{first}");
    settle();
    git(&tree, &["checkout", "-q", "other"]);
    let switched = w.next();
    assert!(switched.starts_with("changed "), "{switched}");
    assert!(
        switched.contains("plan made") && switched.contains("5 compiled"),
        "{switched}"
    );
    settle();
    git(&tree, &["checkout", "-q", "-"]);
    let back = w.next();
    assert!(
        back.contains("0 compiled, 5 from cache, link from cache"),
        "{back}"
    );
}

#[test]
fn ctrl_c_stops_the_watch_and_leaves_the_cache_consistent() {
    let (t, tree, mut w) = watch_solo(100);
    let km = tree.join("keyboards/solo/keymaps/default/keymap.c");
    let text = std::fs::read_to_string(&km).unwrap();
    std::fs::write(&km, text.replacen("KC_A", "KC_F", 1)).unwrap();
    assert!(w.next().contains("1 compiled"));
    let pid = w.child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = w.child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    let cache = t.path().join("cache");
    let verify = run(keyfab(&tree)
        .arg("--cache")
        .arg(&cache)
        .args(["cache", "verify"]));
    verify.ok();
}

#[test]
fn ctrl_c_during_a_build_stops_it_unrecorded() {
    let (t, tree) = copy_fixture("tree");
    let cache = t.path().join("cache");
    let mut w = Watch::start(&tree, &cache, &["solo:default"], 100);
    // during the first build (make's plan, then five compiles)
    std::thread::sleep(Duration::from_millis(150));
    let pid = w.child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = w.child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    let built = w.lines.recv_timeout(Duration::from_millis(500)).ok();
    run(keyfab(&tree)
        .arg("--cache")
        .arg(&cache)
        .args(["cache", "verify"]))
    .ok();
    let explain = run(keyfab(&tree)
        .arg("--cache")
        .arg(&cache)
        .args(["explain", "solo:default"]));
    match built {
        // the build finished before the signal came: recorded
        Some(line) => assert!(line.contains("solo_default.hex"), "{line}"),
        // interrupted: no line, no record
        None => assert!(
            explain.fails().contains("no recorded build"),
            "{}",
            explain.stderr
        ),
    }
}

#[test]
fn a_mapping_table_edit_reaches_the_generated_headers() {
    // the generators keep their engine's tables between rebuilds only while
    // data/ is unchanged
    let (_t, tree, w) = watch_solo(3);
    let keymap = tree.join("keyboards/solo/keymaps/default/keymap.c");
    let text = std::fs::read_to_string(&keymap).unwrap();
    std::fs::write(&keymap, text.replacen("KC_A", "KC_G", 1)).unwrap();
    assert!(w.next().contains("1 compiled"));
    settle();
    let table = tree.join("data/mappings/info_config.hjson");
    let text = std::fs::read_to_string(&table).unwrap();
    let at = text.find("\"PRODUCT_ID\"").unwrap();
    let edited = format!(
        "{}\"SOLO_PID\": {{\"info_key\": \"usb.pid\", \"value_type\": \"hex\", \"warn_duplicate\": false}},\n    {}",
        &text[..at],
        &text[at..]
    );
    std::fs::write(&table, edited).unwrap();
    let line = w.next();
    assert!(
        line.starts_with("changed data/mappings/info_config.hjson"),
        "{line}"
    );
    assert!(!line.contains(" 0 compiled"), "{line}");
    let header =
        std::fs::read_to_string(tree.join(".build/obj_solo_default/src/info_config.h")).unwrap();
    assert!(header.contains("#    define SOLO_PID 0x1311"), "{header}");
}

#[test]
fn a_top_level_folder_made_during_the_session_is_watched_and_build_output_is_not() {
    let (_t, tree, w) = watch_solo(4);
    // the build's own output (.build, the firmware copy) is not an edit
    std::fs::write(tree.join(".build/scratch.txt"), "x").unwrap();
    w.quiet_for(400);
    std::fs::create_dir(tree.join("extra")).unwrap();
    let made = w.next();
    assert!(made.starts_with("changed extra → solo:default"), "{made}");
    settle();
    // a file in it: seen, so the new folder is watched
    std::fs::write(tree.join("extra/notes.c"), "int x;\n").unwrap();
    let line = w.next();
    assert!(
        line.starts_with("changed extra/notes.c → solo:default"),
        "{line}"
    );
    settle();
    std::fs::create_dir_all(tree.join("extra/deeper")).unwrap();
    std::fs::write(tree.join("extra/deeper/more.c"), "int y;\n").unwrap();
    let line = w.next();
    assert!(line.contains("extra/deeper"), "{line}");
}

/// A toolchain upgraded while a watch runs sends no event in the tree, but
/// the next rebuild must not take objects made by the old one: here the
/// assembler changes (`COMPILER_PATH` puts one of our own first), then a
/// keymap edit rebuilds everything.
#[test]
fn a_toolchain_changed_during_a_watch_is_seen_by_the_next_rebuild() {
    let (t, tree) = copy_fixture("tree");
    let tools = t.path().join("tools");
    std::fs::create_dir(&tools).unwrap();
    let write_as = |version| write_assembler(&tools, version);
    write_as(1);
    let mut cmd = keyfab(&tree);
    cmd.env("COMPILER_PATH", &tools);
    let w = Watch::start_in(cmd, &t.path().join("cache"), &["solo:default"], 2, &[]);
    let first = w.next();
    assert!(first.contains("5 compiled"), "{first}");
    settle();
    write_as(2);
    let keymap = tree.join("keyboards/solo/keymaps/default/keymap.c");
    let text = std::fs::read_to_string(&keymap).unwrap();
    atomic_save(&keymap, &text.replacen("KC_A", "KC_D", 1));
    let line = w.next();
    assert!(line.contains("5 compiled, 0 from cache"), "{line}");
    assert!(line.contains("plan made"), "{line}");
}

/// A userspace keymap is watched as the tree's files are: saving it
/// rebuilds its target, and the change is named by its full path.
#[test]
fn a_userspace_keymap_edit_rebuilds() {
    let (t, tree) = copy_fixture("tree");
    let (us, usarg) = copy_userspace(t.path());
    let mut cmd = keyfab(&tree);
    cmd.arg(&usarg);
    let w = Watch::start_in(cmd, &t.path().join("cache"), &["solo:mine"], 2, &[]);
    let first = w.next();
    assert!(
        first.starts_with("build → solo:mine: .build/solo_mine.hex"),
        "{first}"
    );
    settle();
    let keymap = us.join("keyboards/solo/keymaps/mine/keymap.c");
    let text = std::fs::read_to_string(&keymap).unwrap();
    atomic_save(&keymap, &text.replace("KC_A, KC_A", "KC_C, KC_A"));
    let second = w.next();
    let named = format!("changed {} → solo:mine", keymap.display());
    assert!(second.starts_with(&named), "{second}");
    assert!(second.contains("1 compiled"), "{second}");
}
