//! `keyfab qmk …` (the QMK_BIN stand-in) and `keyfab generate …`, run as the
//! real binary on copies of our fixture tree (keyboards/gentest/*, modules/keyfab/*).

mod util;

use std::path::Path;
use util::{commit_all, copy_fixture, git, keyfab, run, version_h_with_git, Run, DESCRIBE_DIRTY};

/// 2023-11-14 22:13:20 UTC: every date in the outputs comes from here.
const EPOCH: &str = "1700000000";

fn qmk(tree: &Path, args: &[&str]) -> Run {
    run(keyfab(tree)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .arg("qmk")
        .args(args))
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn rules_mk_prints_the_escaped_output_path_for_make() {
    let (_t, tree) = copy_fixture("tree");
    let out = "my build/obj_gentest_basic/src/info_rules.mk";
    let r = qmk(
        &tree,
        &[
            "generate-rules-mk",
            "--quiet",
            "--escape",
            "--keyboard",
            "gentest/basic",
            "--output",
            out,
        ],
    );
    let abs = std::fs::canonicalize(&tree).unwrap().join(out);
    assert_eq!(
        r.ok(),
        format!("{}\n", abs.display().to_string().replace(' ', "\\ "))
    );
    let text = read(&abs);
    assert!(text.starts_with("# Copyright 2023 QMK\n# SPDX-License-Identifier: GPL-2.0-or-later\n"));
    assert!(text.contains("BOOTMAGIC_ENABLE ?= yes\n"), "{text}");
    assert!(text.contains("RGB_MATRIX_ENABLE ?= yes\n"));
}

#[test]
fn keymap_json_rules_and_config_use_plain_assignments() {
    let (_t, tree) = copy_fixture("tree");
    let km = "keyboards/gentest/basic/keymaps/default/keymap.json";
    let r = qmk(
        &tree,
        &[
            "generate-rules-mk",
            "--quiet",
            "--escape",
            "--output",
            "o/rules.mk",
            km,
        ],
    );
    r.ok();
    let rules = read(tree.join("o/rules.mk"));
    assert!(
        rules.ends_with("MOUSEKEY_ENABLE = yes\nCONSOLE_ENABLE = no\n"),
        "{rules}"
    );
    qmk(
        &tree,
        &["generate-config-h", "--quiet", "--output", "o/config.h", km],
    )
    .ok();
    let cfg = read(tree.join("o/config.h"));
    assert!(cfg.starts_with("// Copyright 2023 QMK\n"));
    assert!(cfg.contains("#pragma once"));
}

#[test]
fn json2c_file_and_stdout() {
    let (_t, tree) = copy_fixture("tree");
    let km = "keyboards/gentest/basic/keymaps/default/keymap.json";
    qmk(&tree, &["json2c", "--quiet", "--output", "o/keymap.c", km]).ok();
    let c = read(tree.join("o/keymap.c"));
    assert!(c.starts_with("#include QMK_KEYBOARD_H\n"));
    assert!(c.contains("#include \"keymap_german.h\"\n#include \"sendstring_german.h\"\n"));
    assert!(c.contains("    [0] = LAYOUT_all(KC_A, KC_B, LT(1, KC_C), QK_MACRO_0, MO(1)),\n"));
    assert!(c.contains(
        "    [1] = {ENCODER_CCW_CW(KC_TRNS, KC_TRNS), ENCODER_CCW_CW(KC_TRNS, KC_TRNS)}\n"
    ));
    assert!(c.contains("SEND_STRING(\"Hello, \\\"world\\\"\\n\"SS_DOWN(X_LCTL)SS_DOWN(X_LSFT)SS_TAP(X_T)SS_UP(X_LSFT)SS_UP(X_LCTL)SS_DELAY(100));"));
    // Without --output QMK prints the file plus one newline.
    let r = qmk(&tree, &["json2c", km]);
    assert_eq!(r.ok(), format!("{c}\n"));
    // `generate keymap-c` gives the same bytes.
    let g = run(keyfab(&tree).env("SOURCE_DATE_EPOCH", EPOCH).args([
        "generate",
        "keymap-c",
        "-kb",
        "gentest/basic",
        "-km",
        "default",
    ]));
    assert_eq!(g.ok(), format!("{c}\n"));
}

#[test]
fn keymap_h_keycodes() {
    let (_t, tree) = copy_fixture("tree");
    let km = "keyboards/gentest/basic/keymaps/default/keymap.json";
    qmk(
        &tree,
        &["generate-keymap-h", "--quiet", "--output", "o/keymap.h", km],
    )
    .ok();
    assert!(read(tree.join("o/keymap.h")).ends_with(
        "#endif\nenum keymap_keycodes {\n  KM_ONE = QK_USER_0,\n  KM_TWO,\n};\n#define K1 KM_ONE\n"
    ));
}

#[test]
fn keyboard_c_and_h() {
    let (_t, tree) = copy_fixture("tree");
    qmk(
        &tree,
        &[
            "generate-keyboard-c",
            "--quiet",
            "--keyboard",
            "gentest/basic",
            "--output",
            "o/default_keyboard.c",
        ],
    )
    .ok();
    let c = read(tree.join("o/default_keyboard.c"));
    assert!(
        c.contains("  { {0, 0}, {224, 64}, {112.5, 32} },\n  { 4, 4, 2 },\n"),
        "{c}"
    );
    assert!(c.contains("    0b111,\n    0b101,\n"));
    assert!(c.contains(
        "    [0] = JOYSTICK_AXIS_IN(F6, 0, 512, 1023),\n    [1] = JOYSTICK_AXIS_VIRTUAL,\n"
    ));
    assert!(c.contains("#ifdef CHORDAL_HOLD\n"));
    // make passes `--include` with nothing after it when there is no <keyboard>.h
    qmk(
        &tree,
        &[
            "generate-keyboard-h",
            "--quiet",
            "--keyboard",
            "gentest/basic",
            "--include",
            "--output",
            "o/default_keyboard.h",
        ],
    )
    .ok();
    let h = read(tree.join("o/default_keyboard.h"));
    assert!(h.contains("#define LAYOUT(k0A, k0B, k0C, k1A, k1C) { \\\n    { k0A, k0B, k0C }, \\\n    { k1A, XXX, k1C } \\\n}\n"), "{h}");
    assert!(h.contains("#ifndef LAYOUT_all\n#   define LAYOUT_all LAYOUT\n#endif\n"));
    assert!(h.ends_with(
        "enum keyboard_keycodes {\n  GT_HELLO = QK_KB_0,\n  GT_BYE,\n};\n#define GT_HI GT_HELLO\n"
    ));
    qmk(
        &tree,
        &[
            "generate-keyboard-h",
            "--quiet",
            "--keyboard",
            "gentest/header",
            "--include",
            "header.h",
            "--output",
            "o/h.h",
        ],
    )
    .ok();
    // c_macro layouts are skipped, but QMK still writes the layout preamble
    assert!(read(tree.join("o/h.h")).ends_with(
        "#include \"quantum.h\"\n\n// Layout content\n\n#define XXX KC_NO\n#include \"header.h\"\n"
    ));
    // `generate keyboard-h` finds the header as make does
    let g = run(keyfab(&tree).env("SOURCE_DATE_EPOCH", EPOCH).args([
        "generate",
        "keyboard-h",
        "-kb",
        "gentest/header",
        "-o",
        "o/g.h",
    ]));
    g.ok();
    assert_eq!(read(tree.join("o/g.h")), read(tree.join("o/h.h")));
}

#[test]
fn version_h_skip_all_and_stable_dates() {
    let (_t, tree) = copy_fixture("tree");
    qmk(
        &tree,
        &[
            "generate-version-h",
            "--skip-all",
            "-q",
            "-o",
            "o/version.h",
        ],
    )
    .ok();
    let v = read(tree.join("o/version.h"));
    assert!(v.ends_with("#define QMK_BUILDDATE \"1970-01-01-00:00:00\"\n#define QMK_VERSION_BCD 0x00000000\n#define QMK_GIT_HASH  \"NA\"\n#define CHIBIOS_VERSION \"NA\"\n#define CHIBIOS_CONTRIB_VERSION \"NA\"\n#define QMK_USERSPACE_VERSION \"NA\"\n\n"));
    qmk(
        &tree,
        &["generate-version-h", "--skip-git", "-q", "-o", "o/v1.h"],
    )
    .ok();
    assert!(read(tree.join("o/v1.h")).contains("#define QMK_BUILDDATE \"2023-11-14-22:13:20\"\n"));
    qmk(&tree, &["generate-version-h", "-q", "-o", "o/v2.h"]).ok();
    qmk(&tree, &["generate-version-h", "-q", "-o", "o/v3.h"]).ok();
    assert_eq!(read(tree.join("o/v2.h")), read(tree.join("o/v3.h")));
}

#[test]
fn unchanged_output_is_not_rewritten_and_changed_output_keeps_a_bak() {
    let (_t, tree) = copy_fixture("tree");
    let args = [
        "generate-config-h",
        "--quiet",
        "--keyboard",
        "gentest/split",
        "--output",
        "o/info_config.h",
    ];
    qmk(&tree, &args).ok();
    let f = tree.join("o/info_config.h");
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(old)
        .unwrap();
    qmk(&tree, &args).ok();
    assert_eq!(std::fs::metadata(&f).unwrap().modified().unwrap(), old);
    assert!(!tree.join("o/info_config.h.bak").exists());
    std::fs::write(&f, "stale\n").unwrap();
    qmk(&tree, &args).ok();
    assert_eq!(read(tree.join("o/info_config.h.bak")), "stale\n");
    let text = read(&f);
    assert!(
        text.contains("#    define DIRECT_PINS { {B0,B1}, {B2,NO_PIN} }\n"),
        "{text}"
    );
    assert!(text.contains("#    define SPLIT_HAND_MATRIX_GRID D4, C6\n"));
    assert!(text.contains("#    define USE_I2C\n"));
    assert!(text.contains("#    define DIRECT_PINS_RIGHT { {F0,F1}, {F4,F5} }\n"));
    assert!(text.contains("#    define ENCODER_RESOLUTION_RIGHT 4\n"));
    assert!(text.contains("#    define MATRIX_ROWS 4\n"));
}

#[test]
fn community_modules() {
    let (_t, tree) = copy_fixture("tree");
    let km = "keyboards/gentest/basic/keymaps/default/keymap.json";
    let r = qmk(
        &tree,
        &[
            "generate-community-modules-rules-mk",
            "-kb",
            "gentest/basic",
            "--quiet",
            "--escape",
            "--output",
            "o/community_rules.mk",
            km,
        ],
    );
    r.ok();
    let root = std::fs::canonicalize(&tree).unwrap();
    let greeter = root.join("modules/keyfab/greeter").display().to_string();
    let rules = read(tree.join("o/community_rules.mk"));
    assert!(rules.contains(&format!("COMMUNITY_MODULES += greeter\nOPT_DEFS += -DCOMMUNITY_MODULE_GREETER_ENABLE=TRUE\nCOMMUNITY_MODULE_PATHS += {greeter}\n")), "{rules}");
    assert!(rules.contains("COMMUNITY_MODULES += blinker\n"));
    assert!(rules.ends_with("# Module: Greeter\nDEFERRED_EXEC_ENABLE=yes\n"));
    for (sub, file) in [
        ("generate-community-config-h", "community_config.h"),
        ("generate-community-modules-h", "community_modules.h"),
        ("generate-community-modules-c", "community_modules.c"),
        (
            "generate-community-modules-introspection-c",
            "community_modules_introspection.c",
        ),
        (
            "generate-community-modules-introspection-h",
            "community_modules_introspection.h",
        ),
        (
            "generate-led-matrix-community-modules-inc",
            "led_matrix_community_modules.inc",
        ),
        (
            "generate-rgb-matrix-community-modules-inc",
            "rgb_matrix_community_modules.inc",
        ),
        (
            "generate-split-transaction-id-community-modules-inc",
            "split_transaction_id_community_modules.inc",
        ),
    ] {
        let out = format!("o/{file}");
        qmk(
            &tree,
            &[sub, "-kb", "gentest/basic", "--quiet", "--output", &out, km],
        )
        .ok();
    }
    let h = read(tree.join("o/community_modules.h"));
    assert!(h.contains("COMMUNITY_MODULES_API_VERSION_BUILDER(0,2,0)"));
    assert!(h.contains("    // From module: greeter\n    COMMUNITY_MODULE_GREET = QK_COMMUNITY_MODULE,\n    CM_GRT = COMMUNITY_MODULE_GREET,\n"));
    assert!(h.contains("// From module: keyfab/blinker\n"));
    // the keyboard's modules come first, then the keymap's new ones
    let c = read(tree.join("o/community_modules.c"));
    assert!(c.contains("bool process_record_modules(uint16_t keycode, keyrecord_t *record) {\n    return true\n        && process_record_greeter(keycode, record)\n        && process_record_blinker(keycode, record)\n    ;\n}\n"), "{c}");
    let inc = read(tree.join("o/community_modules_introspection.h"));
    assert!(inc.contains(&format!(
        "#if __has_include(\"{greeter}/introspection.h\")\n"
    )));
    let ids = read(tree.join("o/split_transaction_id_community_modules.inc"));
    assert!(ids.contains("#ifdef SPLIT_TRANSACTION_IDS_MODULE_BLINKER\n    SPLIT_TRANSACTION_IDS_MODULE_BLINKER,\n#endif\n"));
    // Without a keymap.json: the keyboard's modules only; without any: headers only.
    qmk(
        &tree,
        &[
            "generate-community-modules-rules-mk",
            "-kb",
            "gentest/split",
            "--quiet",
            "--escape",
            "--output",
            "o/none.mk",
        ],
    )
    .ok();
    assert!(!read(tree.join("o/none.mk")).contains("COMMUNITY_MODULES"));
}

#[test]
fn make_dependencies() {
    let (_t, tree) = copy_fixture("tree");
    qmk(
        &tree,
        &[
            "generate-make-dependencies",
            "-kb",
            "gentest/basic",
            "-km",
            "default",
            "-o",
            "o/info_deps.d",
        ],
    )
    .ok();
    let d = read(tree.join("o/info_deps.d"));
    assert!(d.starts_with("generated-files: $(wildcard keyboards/gentest/basic/info.json)\n\n"));
    let km_dir = std::fs::canonicalize(&tree)
        .unwrap()
        .join("keyboards/gentest/basic/keymaps/default");
    assert!(
        d.contains(&format!(
            "generated-files: $(wildcard {}/keymap.json)\n",
            km_dir.display()
        )),
        "{d}"
    );
    assert!(d.ends_with("generated-files: $(wildcard users/default/post_config.h)\n\n"));
}

#[test]
fn bad_input_fails_naming_the_file_and_writes_nothing() {
    let (_t, tree) = copy_fixture("tree");
    std::fs::write(
        tree.join("bad.json"),
        "{\"layout\": \"LAYOUT\", \"layers\": [[\"KC_A\"],",
    )
    .unwrap();
    let r = qmk(
        &tree,
        &["json2c", "--quiet", "--output", "o/keymap.c", "bad.json"],
    );
    assert!(r.fails().contains("bad.json"), "{}", r.stderr);
    assert!(!tree.join("o/keymap.c").exists());
    // an existing output survives a failed run untouched
    std::fs::create_dir_all(tree.join("o")).unwrap();
    std::fs::write(tree.join("o/keymap.c"), "previous\n").unwrap();
    qmk(
        &tree,
        &["json2c", "--quiet", "--output", "o/keymap.c", "bad.json"],
    )
    .fails();
    assert_eq!(read(tree.join("o/keymap.c")), "previous\n");
    let leftovers = std::fs::read_dir(tree.join("o")).unwrap().count();
    assert_eq!(leftovers, 1);
    // a keymap.json that is JSON but not a keymap
    std::fs::write(tree.join("notkm.json"), "{\"layers\": 5}").unwrap();
    let r = qmk(
        &tree,
        &["json2c", "--quiet", "--output", "o/k2.c", "notkm.json"],
    );
    assert!(r.fails().contains("notkm.json"), "{}", r.stderr);
    assert!(!tree.join("o/k2.c").exists());
    // unknown keyboard, unknown subcommand
    qmk(
        &tree,
        &[
            "generate-keyboard-c",
            "--quiet",
            "--keyboard",
            "nope",
            "--output",
            "o/x.c",
        ],
    )
    .fails();
    assert!(!tree.join("o/x.c").exists());
    qmk(&tree, &["generate-api"]).fails();
}

#[test]
fn generate_for_people() {
    let (_t, tree) = copy_fixture("tree");
    let gen = |args: &[&str]| {
        run(keyfab(&tree)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .arg("generate")
            .args(args))
    };
    assert!(gen(&["list"]).ok().contains("keyboard-c "));
    assert!(gen(&["version-h"])
        .ok()
        .contains("#define QMK_BUILDDATE \"2023-11-14-22:13:20\"\n"));
    // with -km and a keymap.json: the keymap's files; the keyboard's otherwise
    assert!(gen(&["rules-mk", "-kb", "gentest/basic", "-km", "default"])
        .ok()
        .contains("\nMOUSEKEY_ENABLE = yes\n"));
    assert!(gen(&["rules-mk", "-kb", "gentest/basic"])
        .ok()
        .contains("\nBOOTMAGIC_ENABLE ?= yes\n"));
    // the same bytes as the make-style call
    qmk(
        &tree,
        &[
            "generate-keyboard-c",
            "--quiet",
            "--keyboard",
            "gentest/split",
            "--output",
            "o/c.c",
        ],
    )
    .ok();
    gen(&["keyboard-c", "-kb", "gentest/split", "-o", "o/g.c"]).ok();
    assert_eq!(read(tree.join("o/c.c")), read(tree.join("o/g.c")));
    assert!(gen(&["keymap-c", "-kb", "gentest/basic", "-km", "cside"])
        .fails()
        .contains("no keymap.json"));
    assert!(gen(&["nonsense", "-kb", "gentest/basic"])
        .fails()
        .contains("keyboard-h"));
    assert!(gen(&["keyboard-c"]).fails().contains("-kb"));
}

#[test]
fn version_h_describes_a_folder_of_the_checkout_as_the_tree() {
    let (_t, tree) = copy_fixture("tree");
    commit_all(&tree);
    git(&tree, &["tag", "0.1.0"]);
    // ChibiOS-Contrib not checked out: an empty folder of the tree's checkout,
    // which git describes as the tree (QMK's values, by git in that folder).
    let contrib = tree.join("lib/chibios-contrib");
    std::fs::create_dir_all(&contrib).unwrap();
    let makefile = tree.join("builddefs/build_keyboard.mk");
    let text = read(&makefile);
    std::fs::write(&makefile, format!("{text}# edited\n")).unwrap();
    assert_eq!(git(&contrib, &DESCRIBE_DIRTY), "0.1.0-dirty");
    qmk(&tree, &["generate-version-h", "-q", "-o", "o/v.h"]).ok();
    let v = read(tree.join("o/v.h"));
    assert!(v.contains("#define QMK_VERSION \"0.1.0-dirty\"\n"), "{v}");
    assert!(
        v.contains("#define CHIBIOS_CONTRIB_VERSION \"0.1.0-dirty\"\n"),
        "{v}"
    );

    // Checked out: a repository of its own, described by itself.
    std::fs::write(contrib.join("os.h"), "int a;\n").unwrap();
    commit_all(&contrib);
    git(&contrib, &["tag", "contrib-9"]);
    qmk(&tree, &["generate-version-h", "-q", "-o", "o/v.h"]).ok();
    let v = read(tree.join("o/v.h"));
    assert!(v.contains("#define QMK_VERSION \"0.1.0-dirty\"\n"), "{v}");
    assert!(
        v.contains("#define CHIBIOS_CONTRIB_VERSION \"contrib-9\"\n"),
        "{v}"
    );
}

/// version.h's `QMK_VERSION` is what `git describe --dirty` prints, and its
/// hash's star what QMK's two diffs say, in every state of a checkout:
/// keyfab derives describe's suffix from those diffs (clean; changes
/// staged, not, or both), and asks describe where `diff.*` settings make
/// `git diff` see otherwise than describe.
#[test]
fn version_h_dirty_suffix_is_gits_in_every_state() {
    let (_t, tree) = copy_fixture("tree");
    commit_all(&tree);
    git(&tree, &["tag", "0.1.0"]);
    let file = tree.join("builddefs/build_keyboard.mk");
    let base = read(&file);
    let differs = |args: &[&str]| {
        !std::process::Command::new("git")
            .arg("-C")
            .arg(&tree)
            .args(["diff", "--quiet"])
            .args(args)
            .status()
            .unwrap()
            .success()
    };
    let check = |state: &str, want: &str| {
        assert_eq!(git(&tree, &DESCRIBE_DIRTY), want, "{state}: git");
        let star = differs(&[]) || differs(&["--cached"]);
        qmk(&tree, &["generate-version-h", "-q", "-o", "o/v.h"]).ok();
        let v = read(tree.join("o/v.h"));
        assert!(
            v.contains(&format!("#define QMK_VERSION \"{want}\"\n")),
            "{state}:\n{v}"
        );
        let hash = git(&tree, &["rev-parse", "--short", "HEAD"]);
        let hash = if star { format!("{hash}*") } else { hash };
        assert!(
            v.contains(&format!("#define QMK_GIT_HASH  \"{hash}\"\n")),
            "{state}:\n{v}"
        );
    };
    check("clean", "0.1.0");
    std::fs::write(&file, format!("{base}# one\n")).unwrap();
    check("changed", "0.1.0-dirty");
    git(&tree, &["add", "builddefs/build_keyboard.mk"]);
    check("staged", "0.1.0-dirty");
    std::fs::write(&file, format!("{base}# two\n")).unwrap();
    check("staged and changed", "0.1.0-dirty");
    // Staged, then undone in the work tree: both diffs see changes, and
    // describe says dirty too (its diff against HEAD goes by the index,
    // whose entry no longer matches the file).
    std::fs::write(&file, &base).unwrap();
    check("staged and undone", "0.1.0-dirty");
    git(&tree, &["reset", "-q"]);
    check("clean again", "0.1.0");
    // Settings describe does not read: then describe is asked.
    git(&tree, &["config", "diff.ignoreSubmodules", "all"]);
    git(&tree, &["config", "diff.autoRefreshIndex", "false"]);
    check("clean, with diff settings", "0.1.0");
    std::fs::write(&file, format!("{base}# three\n")).unwrap();
    check("changed, with diff settings", "0.1.0-dirty");
}

/// A copy of the fixture tree whose builds write version.h with git, as
/// QMK's makefiles ask for it, committed; and a cache folder beside it.
fn tree_with_git_versions() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let (t, tree) = copy_fixture("tree");
    let cache = t.path().join("cache");
    version_h_with_git(&tree);
    std::fs::write(tree.join(".gitignore"), ".build/\n*.hex\ntrace*\n").unwrap();
    commit_all(&tree);
    (t, tree, cache)
}

/// Runs `cmd` with git's trace going to `trace`: the start events of the
/// gits it ran (one JSON line each).
fn git_starts(cmd: &mut std::process::Command, trace: &Path) -> Vec<String> {
    run(cmd.env("GIT_TRACE2_EVENT", trace)).ok();
    let starts = read(trace)
        .lines()
        .filter(|l| l.contains(r#""event":"start""#))
        .map(str::to_string)
        .collect();
    std::fs::remove_file(trace).unwrap();
    starts
}

/// How many of `starts` ([`git_starts`]) hold `what`.
fn ran(starts: &[String], what: &str) -> usize {
    starts.iter().filter(|l| l.contains(what)).count()
}

/// A `git describe` among [`git_starts`].
const DESCRIBE: &str = r#""describe""#;
/// A whole `git diff` among [`git_starts`] (version.h's dirty check names
/// what it finds).
const WHOLE_DIFF: &str = "--name-only";

/// Builds `solo:default` in `tree` with `cache`: its version.h, and the
/// gits the build ran ([`git_starts`], traced into `trace`).
fn build_version_h(tree: &Path, cache: &Path, trace: &Path) -> (String, Vec<String>) {
    let mut build = keyfab(tree);
    build
        .arg("--cache")
        .arg(cache)
        .args(["build", "solo:default"]);
    let starts = git_starts(&mut build, trace);
    (
        read(tree.join(".build/obj_solo_default/src/version.h")),
        starts,
    )
}

/// The string `#define NAME "…"` gives in version.h's text `v`.
fn defined(v: &str, name: &str) -> String {
    v.lines()
        .find_map(|l| l.strip_prefix(&format!("#define {name} \"")))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no {name} in\n{v}"))
        .to_string()
}

/// A build remembers the tree's `git describe` in its cache, keyed on the
/// commit at HEAD and the tag refs: in every state of a checkout version.h's
/// QMK_VERSION is git's own, and a second build of a state runs no describe.
#[test]
fn version_h_describe_is_remembered_and_always_gits() {
    let (t, tree, cache) = tree_with_git_versions();
    let trace = t.path().join("trace");
    let commit = |msg: &str| {
        std::fs::write(tree.join("NOTES.txt"), msg).unwrap();
        git(&tree, &["add", "NOTES.txt"]);
        git(&tree, &["commit", "-q", "-m", msg]);
    };
    let check = |state: &str| {
        let want = git(&tree, &DESCRIBE_DIRTY);
        let (first, _) = build_version_h(&tree, &cache, &trace);
        assert_eq!(defined(&first, "QMK_VERSION"), want, "{state}: first build");
        let (again, starts) = build_version_h(&tree, &cache, &trace);
        let describes = ran(&starts, DESCRIBE);
        assert_eq!(
            defined(&again, "QMK_VERSION"),
            want,
            "{state}: second build"
        );
        assert_eq!(describes, 0, "{state}: the second build ran describe");
        want
    };
    let bare = check("no tags");
    assert!(!bare.contains('-'), "{bare}");
    git(&tree, &["tag", "v1.0"]);
    assert_eq!(check("lightweight tag at HEAD"), "v1.0");
    commit("two");
    commit("three");
    assert!(check("two commits on").starts_with("v1.0-2-g"));
    git(&tree, &["tag", "-a", "-m", "annotated", "v1.1", "HEAD~1"]);
    assert!(check("annotated tag nearer").starts_with("v1.1-1-g"));
    git(&tree, &["pack-refs", "--all"]);
    assert!(check("tags packed").starts_with("v1.1-1-g"));
    git(&tree, &["tag", "-d", "v1.1"]);
    assert!(check("nearer tag deleted").starts_with("v1.0-2-g"));
    git(&tree, &["tag", "-f", "v1.0", "HEAD"]);
    assert_eq!(check("tag moved to HEAD"), "v1.0");
    git(&tree, &["checkout", "-q", "--detach", "HEAD~2"]);
    assert_eq!(check("detached at the first commit"), bare);
    std::fs::write(
        tree.join(".gitignore"),
        ".build/\n*.hex\ntrace*\n# changed\n",
    )
    .unwrap();
    assert_eq!(check("first commit, changed"), format!("{bare}-dirty"));
}

/// ChibiOS-Contrib checked out as a repository of its own: its version in
/// version.h is its `git describe --dirty` in every state, from the
/// remembered describe and `git diff --quiet HEAD` (describe's own check);
/// describe runs again only where `diff.*` settings leave it to describe.
#[test]
fn version_h_describes_another_checkout_as_git_does_in_every_state() {
    let (t, tree, cache) = tree_with_git_versions();
    let trace = t.path().join("trace");
    let contrib = tree.join("lib/chibios-contrib");
    std::fs::create_dir_all(&contrib).unwrap();
    let file = contrib.join("os.h");
    std::fs::write(&file, "int a;\n").unwrap();
    commit_all(&contrib);
    git(&contrib, &["tag", "contrib-9"]);
    let check = |state: &str, want: &str, describes_again: usize| {
        assert_eq!(git(&contrib, &DESCRIBE_DIRTY), want, "{state}: git");
        for (build, describes_want) in [("first", None), ("second", Some(describes_again))] {
            let (v, starts) = build_version_h(&tree, &cache, &trace);
            let describes = ran(&starts, DESCRIBE);
            let got = defined(&v, "CHIBIOS_CONTRIB_VERSION");
            assert_eq!(got, want, "{state}: {build} build");
            if let Some(n) = describes_want {
                assert_eq!(describes, n, "{state}: describes in the {build} build");
            }
        }
    };
    check("clean", "contrib-9", 0);
    std::fs::write(&file, "int b;\n").unwrap();
    check("changed", "contrib-9-dirty", 0);
    git(&contrib, &["add", "os.h"]);
    check("staged", "contrib-9-dirty", 0);
    std::fs::write(&file, "int c;\n").unwrap();
    check("staged and changed", "contrib-9-dirty", 0);
    std::fs::write(&file, "int a;\n").unwrap();
    check("staged and undone", "contrib-9-dirty", 0);
    git(&contrib, &["reset", "-q"]);
    check("clean again", "contrib-9", 0);
    std::fs::write(&file, "int d;\n").unwrap();
    git(&contrib, &["commit", "-q", "-am", "d"]);
    let on = git(&contrib, &DESCRIBE_DIRTY);
    assert!(on.starts_with("contrib-9-1-g"), "{on}");
    check("a commit on", &on, 0);
    git(&contrib, &["config", "diff.ignoreSubmodules", "all"]);
    check("clean, with diff settings", &on, 1);
    std::fs::write(&file, "int e;\n").unwrap();
    check("changed, with diff settings", &format!("{on}-dirty"), 1);
}

/// Whether `git diff --quiet ARGS` finds changes in `dir`, as QMK asks.
fn diff_finds_changes(dir: &Path, args: &[&str]) -> bool {
    let status = std::process::Command::new("git")
        .args(["diff", "--quiet"])
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(matches!(status.code(), Some(0 | 1)), "git diff: {status}");
    status.code() == Some(1)
}

/// A dirty checkout is found dirty by the path that made it dirty last
/// time (its witness): version.h's dirty marks are git's own in every
/// state, and a build whose witness still shows changes runs neither
/// whole diff (git's trace counts them).
#[test]
fn version_h_finds_a_dirty_checkout_by_its_last_witness() {
    let (t, tree, cache) = tree_with_git_versions();
    let trace = t.path().join("trace");
    let (a, b) = (tree.join("NOTES.txt"), tree.join("keyboards/README.md"));
    std::fs::write(&a, "a\n").unwrap();
    std::fs::write(&b, "b\n").unwrap();
    git(&tree, &["add", "-A"]);
    git(&tree, &["commit", "-q", "-m", "notes"]);
    // (state, whole work-tree diffs and whole index diffs in its second build)
    let check = |state: &str, whole_again: (usize, usize)| {
        let dirty = diff_finds_changes(&tree, &[]) || diff_finds_changes(&tree, &["--cached"]);
        let hash = git(&tree, &["rev-parse", "--short", "HEAD"]);
        let star = if dirty { "*" } else { "" };
        let want_hash = format!("#define QMK_GIT_HASH  \"{hash}{star}\"\n");
        let want_version = git(&tree, &DESCRIBE_DIRTY);
        for build in ["first", "second"] {
            let (v, starts) = build_version_h(&tree, &cache, &trace);
            assert!(v.contains(&want_hash), "{state}, {build} build: {v}");
            let version = defined(&v, "QMK_VERSION");
            assert_eq!(version, want_version, "{state}, {build} build");
            let whole: Vec<&String> = starts.iter().filter(|l| l.contains(WHOLE_DIFF)).collect();
            let index = whole.iter().filter(|l| l.contains("--cached")).count();
            if build == "second" {
                assert_eq!((whole.len() - index, index), whole_again, "{state}");
            }
        }
    };
    check("clean", (1, 1));
    std::fs::write(&a, "a, changed\n").unwrap();
    check("one file changed", (0, 0));
    std::fs::write(&a, "a\n").unwrap();
    std::fs::write(&b, "b, changed\n").unwrap();
    check("that file undone, another changed", (0, 0));
    // Written again as it was: only its stat data differ from the index.
    std::fs::write(&b, "b\n").unwrap();
    check("all undone", (1, 1));
    std::fs::write(&a, "a, staged\n").unwrap();
    git(&tree, &["add", "NOTES.txt"]);
    check("staged", (0, 0));
    git(&tree, &["reset", "-q", "--hard"]);
    check("reset", (1, 1));
    std::fs::remove_file(&b).unwrap();
    check("a file deleted", (0, 0));
}

/// `keyfab qmk generate-version-h` run by hand (or by a make of the
/// user's) uses the cache the builds use when there is one: the second run
/// in a state asks git for no describe walk and no whole diff, and says
/// what git says; with no cache it makes none.
#[test]
fn generate_version_h_by_hand_remembers_in_an_existing_cache() {
    let (t, tree, cache) = tree_with_git_versions();
    let trace = t.path().join("trace");
    let out = t.path().join("version.h");
    let by_hand = || {
        let mut cmd = keyfab(&tree);
        cmd.arg("--cache")
            .arg(&cache)
            .args(["qmk", "generate-version-h", "-q", "-o"])
            .arg(&out);
        let starts = git_starts(&mut cmd, &trace);
        (read(&out), ran(&starts, DESCRIBE), ran(&starts, WHOLE_DIFF))
    };
    let ignore = tree.join(".gitignore");
    std::fs::write(&ignore, read(&ignore) + "# changed\n").unwrap();
    let want = git(&tree, &DESCRIBE_DIRTY);
    assert!(want.ends_with("-dirty"), "{want}");
    by_hand();
    assert!(!cache.exists(), "a cache was made by generate-version-h");
    std::fs::create_dir_all(&cache).unwrap();
    let (_, describes, whole) = by_hand();
    assert_eq!((describes, whole), (1, 2), "the first run with a cache");
    let (v, describes, whole) = by_hand();
    assert_eq!(defined(&v, "QMK_VERSION"), want);
    assert!(v.contains("*\"\n#define CHIBIOS_VERSION"), "{v}");
    assert_eq!((describes, whole), (0, 0), "the second run with a cache");
}
