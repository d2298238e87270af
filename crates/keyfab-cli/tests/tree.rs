//! Keyboard and keymap resolution on our fixture trees, through the real
//! binary: listing, aliases, DEFAULT_FOLDER, keymap precedence, userspace,
//! and every broken input.

mod util;

use util::*;

const ALL_KEYBOARDS: &[&str] = &[
    "acme/board/rev1",
    "acme/board/rev2",
    "acme/pad",
    "chain/mid/final",
    "deep/l2/l3/l4",
    "gentest/basic",
    "gentest/header",
    "gentest/split",
    "handwired/alpha",
    "handwired/beta/rev_a",
    "infotest/basic",
    "infotest/community",
    "infotest/devboard",
    "infotest/direct",
    "infotest/hmacro",
    "infotest/keymapped",
    "infotest/leds",
    "infotest/mapped",
    "infotest/split/rev1",
    "macro",
    "numpad",
    "ortho/big",
    "ortho/two",
    "ortho/wide",
    "solo",
    "split/half",
];

#[test]
fn list_keyboards_finds_every_keyboard_json_folder() {
    let (_t, tree) = copy_fixture("tree");
    let run = in_tree(&tree, &["list-keyboards"]);
    // Not listed: keyboards/.hidden (hidden, as Python's glob skips it),
    // keyboards/solo/keymaps/odd (inside keymaps/), folders with only info.json.
    assert_eq!(run.lines(), ALL_KEYBOARDS);
}

#[test]
fn list_keyboards_json_and_tree_flag() {
    let (t, tree) = copy_fixture("tree");
    let run =
        run(keyfab(t.path())
            .arg("--tree")
            .arg(&tree)
            .args(["list-keyboards", "--format", "json"]));
    assert_eq!(run.json(), serde_json::json!(ALL_KEYBOARDS));
}

#[test]
fn tree_is_found_from_a_subfolder_and_from_qmk_home() {
    let (t, tree) = copy_fixture("tree");
    let from_sub = in_tree(&tree.join("keyboards/acme/pad"), &["list-keyboards"]);
    assert_eq!(from_sub.lines(), ALL_KEYBOARDS);
    let from_home = run(keyfab(t.path())
        .env("QMK_HOME", &tree)
        .arg("list-keyboards"));
    assert_eq!(from_home.lines(), ALL_KEYBOARDS);
    let nowhere = run(keyfab(t.path()).arg("list-keyboards"));
    assert!(
        nowhere.fails().contains("no QMK tree found"),
        "{}",
        nowhere.stderr
    );
}

#[test]
fn list_keymaps_walks_the_keyboard_chain() {
    let (_t, tree) = copy_fixture("tree");
    // `notes` has no keymap file; `odd` has keymap.c (and a stray keyboard.json).
    assert_eq!(
        in_tree(&tree, &["list-keymaps", "-kb", "solo"]).lines(),
        ["default", "jsonmap", "odd"]
    );
    // keymaps of acme/board/ apply to its revisions
    assert_eq!(
        in_tree(&tree, &["list-keymaps", "-kb", "acme/board/rev1"]).lines(),
        ["both", "default"]
    );
    assert_eq!(
        in_tree(&tree, &["list-keymaps", "-kb", "acme/board/rev2"]).lines(),
        ["both", "default", "rev2only"]
    );
    // four levels down, a keymap from the top folder
    assert_eq!(
        in_tree(&tree, &["list-keymaps", "-kb=deep/l2/l3/l4"]).lines(),
        ["default", "top"]
    );
}

#[test]
fn list_keymaps_resolves_aliases_and_default_folder_first() {
    let (_t, tree) = copy_fixture("tree");
    let direct = in_tree(&tree, &["list-keymaps", "-kb", "acme/pad"]);
    assert_eq!(direct.lines(), ["default", "vial"]);
    assert_eq!(
        in_tree(&tree, &["list-keymaps", "-kb", "old_pad"]).lines(),
        direct.lines()
    );
    assert_eq!(
        in_tree(&tree, &["list-keymaps", "-kb", "oldboard"]).lines(),
        ["both", "default", "rev2only"]
    );
    let json = in_tree(
        &tree,
        &["list-keymaps", "-kb", "chained", "--format", "json"],
    )
    .json();
    assert_eq!(json["keyboard"], "chain/mid/final");
    assert_eq!(json["keymaps"], serde_json::json!(["default"]));
}

#[test]
fn list_keymaps_includes_community_layouts() {
    let (_t, tree) = copy_fixture("tree");
    // ortho/info.json declares ortho_2x2: keymaps of layouts/default and
    // layouts/community for that layout join the keyboard's own.
    assert_eq!(
        in_tree(&tree, &["list-keymaps", "-kb", "ortho/two"]).lines(),
        ["commjson", "default", "default_ortho", "shared"]
    );
    // rules.mk LAYOUTS overrides info.json; a layout missing from
    // layouts/default is dropped with a diagnostic.
    let big = in_tree(&tree, &["list-keymaps", "-kb", "ortho/big"]);
    assert_eq!(big.lines(), ["nine"]);
    assert!(big.stderr.contains("no_such_layout"), "{}", big.stderr);
}

#[test]
fn parent_info_json_overrides_child_as_in_qmk() {
    // QMK merges the keyboard's own JSON first and its parents after, so the
    // parent's community_layouts replace ortho/wide's own list.
    let (_t, tree) = copy_fixture("tree");
    let json = in_tree(&tree, &["resolve", "-kb", "ortho/wide", "--format", "json"]).json();
    assert_eq!(json["community_layouts"], serde_json::json!(["ortho_2x2"]));
}

#[test]
fn resolve_follows_alias_chains() {
    let (_t, tree) = copy_fixture("tree");
    let json = in_tree(&tree, &["resolve", "-kb", "hop1", "--format", "json"]).json();
    assert_eq!(json["keyboard"], "solo");
    assert_eq!(
        json["steps"],
        serde_json::json!([
            {"kind": "alias", "from": "hop1", "to": "hop2"},
            {"kind": "alias", "from": "hop2", "to": "solo"},
        ])
    );
}

#[test]
fn resolve_follows_default_folder_chains_and_alias_into_them() {
    let (_t, tree) = copy_fixture("tree");
    let json = in_tree(&tree, &["resolve", "-kb", "chained", "--format", "json"]).json();
    assert_eq!(json["keyboard"], "chain/mid/final");
    let kinds: Vec<_> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["alias", "default_folder", "default_folder"]);
    assert_eq!(json["steps"][1]["file"], "keyboards/chain/rules.mk");

    let text = in_tree(&tree, &["resolve", "-kb", "oldboard"]);
    let out = text.ok();
    assert!(out.starts_with("keyboard: acme/board/rev2\n"), "{out}");
    assert!(out.contains("via alias oldboard -> acme/board"), "{out}");
    assert!(
        out.contains(
            "via DEFAULT_FOLDER acme/board -> acme/board/rev2 (keyboards/acme/board/rules.mk)"
        ),
        "{out}"
    );
}

#[test]
fn resolve_lists_the_files_that_apply_top_down() {
    let (_t, tree) = copy_fixture("tree");
    let json = in_tree(
        &tree,
        &["resolve", "-kb", "deep/l2/l3/l4", "--format", "json"],
    )
    .json();
    let files = &json["files"];
    assert_eq!(
        files["info_json"],
        serde_json::json!([
            "keyboards/deep/info.json",
            "keyboards/deep/l2/info.json",
            "keyboards/deep/l2/l3/l4/keyboard.json"
        ])
    );
    assert_eq!(
        files["config_h"],
        serde_json::json!(["keyboards/deep/l2/l3/config.h"])
    );
    assert_eq!(
        files["rules_mk"],
        serde_json::json!(["keyboards/deep/l2/l3/rules.mk"])
    );
    assert_eq!(
        files["post_rules_mk"],
        serde_json::json!(["keyboards/deep/l2/l3/l4/post_rules.mk"])
    );
}

/// (keyboard, keymap) → the keymap file a build uses.
fn keymap_file(tree: &std::path::Path, extra: &[&str], kb: &str, km: &str) -> (String, String) {
    let mut args = extra.to_vec();
    args.extend(["resolve", "-kb", kb, "-km", km, "--format", "json"]);
    let json = in_tree(tree, &args).json();
    let km = &json["keymap"];
    let file = km["keymap_json"]
        .as_str()
        .or(km["keymap_c"].as_str())
        .unwrap()
        .to_string();
    (file, km["source"]["kind"].as_str().unwrap().to_string())
}

#[test]
fn keymap_lookup_order_matches_qmk_locate_keymap_mk() {
    let (_t, tree) = copy_fixture("tree");
    let f = |kb, km| keymap_file(&tree, &[], kb, km).0;
    // the deepest folder wins over a parent's keymap of the same name
    assert_eq!(
        f("acme/board/rev2", "default"),
        "keyboards/acme/board/rev2/keymaps/default/keymap.c"
    );
    // a parent's keymap serves a revision without its own
    assert_eq!(
        f("acme/board/rev1", "default"),
        "keyboards/acme/board/keymaps/default/keymap.c"
    );
    // keymap.json beside keymap.c: the JSON is the keymap (the .c is included by it)
    assert_eq!(
        f("acme/board/rev1", "both"),
        "keyboards/acme/board/keymaps/both/keymap.json"
    );
    // the keyboard's own keymap wins over a community layout keymap
    assert_eq!(
        f("ortho/two", "default"),
        "keyboards/ortho/two/keymaps/default/keymap.c"
    );
    assert_eq!(
        f("ortho/two", "default_ortho"),
        "layouts/default/ortho_2x2/default_ortho/keymap.c"
    );
    // layout repositories are searched in sorted order: community before default
    assert_eq!(
        f("ortho/two", "shared"),
        "layouts/community/ortho_2x2/shared/keymap.json"
    );
    // `kb:km` works as the keyboard argument
    let json = in_tree(
        &tree,
        &["resolve", "-kb", "solo:jsonmap", "--format", "json"],
    )
    .json();
    assert_eq!(
        json["keymap"]["keymap_json"],
        "keyboards/solo/keymaps/jsonmap/keymap.json"
    );
}

#[test]
fn userspace_keymaps_come_after_the_tree() {
    let (t, tree) = copy_fixture("tree");
    let (_, usarg) = copy_userspace(t.path());
    let f = |kb, km| keymap_file(&tree, &[&usarg], kb, km);
    assert_eq!(f("solo", "mine").1, "userspace");
    assert!(f("solo", "mine")
        .0
        .ends_with("userspace/keyboards/solo/keymaps/mine/keymap.c"));
    // the tree's acme/pad:default wins over the userspace's, as in QMK's make
    assert_eq!(
        f("acme/pad", "default"),
        (
            "keyboards/acme/pad/keymaps/default/keymap.json".into(),
            "keyboard".into()
        )
    );
    // a userspace keymap at the vendor level serves the keyboard below it
    assert!(f("acme/pad", "vendorwide")
        .0
        .ends_with("userspace/keyboards/acme/keymaps/vendorwide/keymap.c"));
    // userspace layouts/ are searched after the tree's
    let (file, kind) = f("ortho/two", "usermap");
    assert!(
        file.ends_with("userspace/layouts/ortho_2x2/usermap/keymap.json"),
        "{file}"
    );
    assert_eq!(kind, "community_layout");
    assert_eq!(
        in_tree(&tree, &[&usarg, "list-keymaps", "-kb", "acme/pad"]).lines(),
        ["default", "vendorwide", "vial"]
    );
}

#[test]
fn userspace_is_discovered_from_cwd_and_env() {
    let (t, tree) = copy_fixture("tree");
    let (us, _) = copy_userspace(t.path());
    let tree_arg = format!("--tree={}", tree.display());
    // from a folder inside the userspace
    let from_cwd = run(keyfab(&us.join("keyboards")).args([&tree_arg, "userspace-list"]));
    assert_eq!(
        from_cwd.lines(),
        [
            "solo:mine",
            "acme/pad:default DEBUG_ENABLE=yes",
            "targets/solo_json.json"
        ]
    );
    // from $QMK_USERSPACE
    let from_env = run(keyfab(t.path()).env("QMK_USERSPACE", &us).args([
        &tree_arg,
        "userspace-list",
        "--format",
        "json",
    ]));
    let json = from_env.json();
    assert_eq!(
        json["build_targets"][0],
        serde_json::json!({"kind": "keymap", "keyboard": "solo", "keymap": "mine", "env": []})
    );
    assert_eq!(
        json["build_targets"][2],
        serde_json::json!({"kind": "json_file", "path": "targets/solo_json.json"})
    );
    // none at all
    let none = run(keyfab(t.path()).args([&tree_arg, "userspace-list"]));
    assert!(none.fails().contains("no QMK userspace found"));
}

#[test]
fn invalid_userspace_is_a_clear_error() {
    let (t, tree) = copy_fixture("tree");
    let us = t.path().join("us");
    std::fs::create_dir_all(&us).unwrap();
    std::fs::write(us.join("qmk.json"), "{\"build_targets\": []}").unwrap();
    let run = in_tree(
        &tree,
        &["--userspace", us.to_str().unwrap(), "list-keyboards"],
    );
    assert!(
        run.fails().contains("missing \"userspace_version\""),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("qmk.json"), "{}", run.stderr);
}

#[test]
fn unknown_keyboard_suggests_close_names() {
    let (_t, tree) = copy_fixture("tree");
    let run = in_tree(&tree, &["resolve", "-kb", "acme/padd"]);
    let err = run.fails();
    assert!(err.contains("invalid keyboard: acme/padd"), "{err}");
    assert!(err.contains("did you mean: acme/pad"), "{err}");
    // a folder with only info.json is not a keyboard
    assert!(in_tree(&tree, &["list-keymaps", "-kb", "acme"])
        .fails()
        .contains("invalid keyboard: acme"));
    // paths escaping the tree are not keyboards
    assert!(
        in_tree(&tree, &["resolve", "-kb", "../tree/keyboards/solo"])
            .fails()
            .contains("invalid keyboard")
    );
}

#[test]
fn unknown_keymap_names_the_available_ones() {
    let (_t, tree) = copy_fixture("tree");
    let err = in_tree(&tree, &["resolve", "-kb", "solo", "-km", "nope"])
        .fails()
        .to_string();
    assert!(
        err.contains(
            "keymap nope not found for keyboard solo (its keymaps: default, jsonmap, odd)"
        ),
        "{err}"
    );
    let err = in_tree(&tree, &["resolve", "-kb", "solo", "-km", "defualt"])
        .fails()
        .to_string();
    assert!(err.contains("did you mean: default"), "{err}");
}

#[test]
fn broken_tree_still_lists_every_keyboard() {
    let (_t, tree) = copy_fixture("broken/tree");
    let run = in_tree(&tree, &["list-keyboards"]);
    assert_eq!(
        run.lines(),
        [
            "badjson",
            "duplicate_key",
            "good",
            "loop/inner",
            "nolayout",
            "notutf8",
            "unreadable"
        ]
    );
    assert_eq!(
        in_tree(&tree, &["list-keymaps", "-kb", "good"]).lines(),
        ["default"]
    );
}

#[test]
fn alias_cycle_is_named() {
    let (_t, tree) = copy_fixture("broken/tree");
    let err = in_tree(&tree, &["resolve", "-kb", "cyc_a"])
        .fails()
        .to_string();
    assert!(
        err.contains("keyboard cyc_a resolves in a cycle: cyc_a -> cyc_b -> cyc_a"),
        "{err}"
    );
}

#[test]
fn default_folder_loop_is_named() {
    let (_t, tree) = copy_fixture("broken/tree");
    let err = in_tree(&tree, &["list-keymaps", "-kb", "loop"])
        .fails()
        .to_string();
    assert!(
        err.contains("keyboard loop resolves in a cycle: loop -> loop/inner -> loop"),
        "{err}"
    );
}

#[test]
fn alias_to_a_missing_keyboard_says_where_it_went() {
    let (_t, tree) = copy_fixture("broken/tree");
    let err = in_tree(&tree, &["resolve", "-kb", "to_missing"])
        .fails()
        .to_string();
    assert!(
        err.contains("invalid keyboard: to_missing (it resolves to nowhere/at_all"),
        "{err}"
    );
}

#[test]
fn malformed_hjson_names_file_and_line() {
    let (_t, tree) = copy_fixture("broken/bad-aliases");
    let err = in_tree(&tree, &["resolve", "-kb", "kb"])
        .fails()
        .to_string();
    assert!(
        err.contains("data/mappings/keyboard_aliases.hjson:5:"),
        "{err}"
    );
    assert!(err.contains("invalid JSON"), "{err}");
    // listing does not need the alias table
    assert_eq!(in_tree(&tree, &["list-keyboards"]).lines(), ["kb"]);
}

#[test]
fn malformed_keyboard_json_is_a_diagnostic_not_a_crash() {
    let (_t, tree) = copy_fixture("broken/tree");
    let run = in_tree(&tree, &["list-keymaps", "-kb", "badjson"]);
    assert_eq!(run.lines(), ["default"]);
    assert!(
        run.stderr.contains("keyboards/badjson/keyboard.json:4:"),
        "{}",
        run.stderr
    );
    let run = in_tree(&tree, &["list-keymaps", "-kb", "duplicate_key"]);
    assert!(
        run.stderr.contains("duplicate key: \"keyboard_name\""),
        "{}",
        run.stderr
    );
}

#[test]
fn unreadable_and_non_utf8_files_are_named() {
    let (_t, tree) = copy_fixture("broken/tree");
    let err = in_tree(&tree, &["resolve", "-kb", "unreadable"])
        .fails()
        .to_string();
    assert!(err.contains("keyboards/unreadable/rules.mk:"), "{err}");
    let err = in_tree(&tree, &["resolve", "-kb", "notutf8"])
        .fails()
        .to_string();
    assert!(
        err.contains("keyboards/notutf8/rules.mk: not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn keyboard_without_layout_still_resolves() {
    let (_t, tree) = copy_fixture("broken/tree");
    let json = in_tree(
        &tree,
        &[
            "resolve", "-kb", "nolayout", "-km", "default", "--format", "json",
        ],
    )
    .json();
    assert_eq!(json["keyboard"], "nolayout");
    assert_eq!(
        json["keymap"]["keymap_c"],
        "keyboards/nolayout/keymaps/default/keymap.c"
    );
}

#[test]
fn usage_errors_exit_2_and_help_teaches() {
    let (_t, tree) = copy_fixture("tree");
    let run = in_tree(&tree, &["list-keymaps"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--keyboard"));
    let help = in_tree(&tree, &["--help"]);
    let out = help.ok();
    for word in [
        "list-keyboards",
        "list-keymaps",
        "resolve",
        "Exit status",
        "QMK_HOME",
    ] {
        assert!(out.contains(word), "help lacks {word}:\n{out}");
    }
}
