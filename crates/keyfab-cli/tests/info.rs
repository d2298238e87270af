//! `keyfab info`: the real binary over the fixture tree (our own mapping
//! tables, schemas and `infotest` keyboards) and the broken info fixtures.
//! Every run happens in a fresh temporary folder.

mod util;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use util::copy_dir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture_tree() -> PathBuf {
    repo().join("fixtures/tree")
}

struct Run {
    stdout: String,
    stderr: String,
    code: i32,
}

fn keyfab(tree: &Path, args: &[&str]) -> Run {
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keyfab"))
        .current_dir(cwd.path())
        .env_remove("QMK_HOME")
        .env_remove("QMK_USERSPACE")
        .env_remove("SKIP_SCHEMA_VALIDATION")
        .arg("--tree")
        .arg(tree)
        .args(args)
        .output()
        .unwrap();
    Run {
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        code: out.status.code().unwrap_or(-1),
    }
}

fn info(args: &[&str]) -> Value {
    let mut all = vec!["info", "-f", "json"];
    all.extend_from_slice(args);
    let r = keyfab(&fixture_tree(), &all);
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn api(kb: &str) -> Value {
    info(&["-kb", kb, "--api"])
}

fn expected(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/info_expected")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

// The whole merged info of every fixture target, QMK-checked (see
// tests/info_expected/README.md).
#[test]
fn every_fixture_target_matches_its_checked_output() {
    for (target, file) in [
        ("infotest/basic", "infotest__basic"),
        ("infotest/mapped", "infotest__mapped"),
        ("infotest/hmacro", "infotest__hmacro"),
        ("infotest/split/rev1", "infotest__split__rev1"),
        ("infotest/direct", "infotest__direct"),
        ("infotest/leds", "infotest__leds"),
        ("infotest/devboard", "infotest__devboard"),
        ("infotest/community", "infotest__community"),
        ("infotest/keymapped", "infotest__keymapped"),
        ("infotest/keymapped:fxkm", "infotest__keymapped__km__fxkm"),
        (
            "infotest/community:infotest_cl",
            "infotest__community__km__infotest_cl",
        ),
    ] {
        assert_eq!(info(&["-kb", target, "--api"]), expected(file), "{target}");
    }
}

#[test]
fn plain_json_strips_api_keys_like_qmk_info() {
    let v = info(&["-kb", "infotest/basic"]);
    assert_eq!(
        v,
        json!({
            "bootloader": "atmel-dfu",
            "diode_direction": "COL2ROW",
            "features": {"bootmagic": true, "extrakey": true},
            "keyboard_name": "Basic",
            "layouts": {"LAYOUT": {"layout": [
                {"matrix": [0, 0], "x": 0, "y": 0},
                {"matrix": [0, 1], "x": 1, "y": 0},
                {"matrix": [1, 0], "w": 2, "x": 0, "y": 1}
            ]}},
            "maintainer": "keyfab",
            "manufacturer": "keyfab",
            "matrix_pins": {"cols": ["B0", "B1"], "rows": ["D0", "D1"]},
            "processor": "atmega32u4",
            "usb": {"device_version": "1.0.0", "pid": "0x0001", "vid": "0xFEED"}
        })
    );
    // matrix_size goes wherever matrix_pins exist (even a custom matrix)
    assert!(info(&["-kb", "infotest/hmacro"])
        .get("matrix_size")
        .is_none());
    assert_eq!(
        api("infotest/hmacro")["matrix_size"],
        json!({"cols": 2, "rows": 2})
    );
    // led_count goes where a LED layout exists
    let leds = info(&["-kb", "infotest/leds"]);
    assert!(leds["rgb_matrix"].get("led_count").is_none());
    assert_eq!(api("infotest/leds")["rgb_matrix"]["led_count"], 4);
}

#[test]
fn each_value_type_is_converted() {
    let v = api("infotest/mapped");
    let fx = &v["fx"];
    assert_eq!(fx["raw"], "some raw text"); // raw (whitespace normalised by config.h reading)
    assert_eq!(fx["pins"], json!(["B1", "B2", "B3"])); // array
    assert_eq!(fx["levels"], json!([1, 2, 3])); // array.int
    assert!(fx.get("grid").is_none()); // array.array.int cannot be read
    assert_eq!(fx["on"], true); // bool
    assert_eq!(fx["flag"], true); // flag
    assert_eq!(v["usb"]["pid"], "0xBEEF"); // hex
    assert_eq!(fx["words"], json!(["alpha", "beta", "gamma"])); // list
    assert_eq!(fx["count"], 42); // int
    assert_eq!(v["manufacturer"], "Maker \"X\\"); // str, unquoted as QMK does
    assert_eq!(v["usb"]["device_version"], "1.2.3"); // bcd_version
    assert_eq!(fx["mapping"], "LAYOUT_a=LAYOUT"); // mapping
    assert_eq!(fx["pair"], json!([null, "B7"])); // dotted list index, padded
    assert_eq!(fx["rule_int"], 12); // rules.mk int
    assert_eq!(fx["rule_hex"], "0xABCD"); // rules.mk hex
}

#[test]
fn each_flag_behaves_like_qmk() {
    let v = api("infotest/mapped");
    let warnings: Vec<&str> = v["parse_warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    let errors = &v["parse_errors"];
    // to_json: false → not read
    assert!(v["fx"].get("c_only").is_none());
    // to_c: false → still read
    assert_eq!(v["fx"]["json_only"], 4);
    // warn_duplicate: true (default) and false
    assert!(warnings.contains(&"FX_INT in config.h is overwriting fx.count in info.json"));
    assert!(!warnings.iter().any(|w| w.contains("FX_QUIET")));
    assert_eq!(v["fx"]["quiet"], 2);
    // deprecated, with and without replace_with
    assert!(
        warnings.contains(&"FX_OLD in config.h is deprecated and will be removed at a later date")
    );
    assert!(warnings.contains(
        &"FX_OLD_RENAMED in config.h is deprecated in favor of FX_NEW and will be removed at a later date"
    ));
    assert!(warnings.contains(
        &"FX_RULE_OLD in rules.mk is deprecated in favor of FX_RULE_NEW and will be removed at a later date"
    ));
    // invalid, with and without replace_with (the value is still read, as in QMK)
    assert_eq!(
        errors,
        &json!([
            "FX_GONE in config.h is no longer a valid option and should be removed",
            "FX_GONE_RENAMED in config.h is no longer a valid option and should be replaced with `fx.new` in keyboard.json"
        ])
    );
    assert_eq!(v["fx"]["gone"], "1");
    assert!(warnings.contains(&"FX_GRID->fx.grid: Conversion of array.array.int not possible"));
}

#[test]
fn features_come_from_rules_mk() {
    let v = api("infotest/mapped");
    assert_eq!(
        v["features"],
        json!({"audio": false, "bootmagic": true, "console": false, "nkro": true})
    );
    assert!(v["parse_warnings"][1]
        .as_str()
        .unwrap()
        .starts_with("Feature console is specified in both info.json ({'console': True"));
}

#[test]
fn layouts_from_a_header_macro_and_aliases() {
    let v = api("infotest/hmacro");
    let keys = &v["layouts"]["LAYOUT"]["layout"];
    assert_eq!(
        keys[0],
        json!({"label": "Esc", "matrix": [0, 0], "x": 0, "y": 0})
    );
    assert_eq!(
        keys[2],
        json!({"label": "k10", "matrix": [1, 0], "w": 2, "x": 0, "y": 1})
    );
    assert_eq!(v["layouts"]["LAYOUT"]["c_macro"], true);
    assert_eq!(
        v["layout_aliases"],
        json!({"LAYOUT_h_alias": "LAYOUT", "LAYOUT_json_alias": "LAYOUT"})
    );
    assert_eq!(
        v["parse_warnings"],
        json!(["info.json uses alias name LAYOUT_json_alias instead of LAYOUT"])
    );
}

#[test]
fn split_extractors_and_parent_files() {
    let v = api("infotest/split/rev1");
    // parents are merged after children: the parent's value wins, as in QMK
    assert_eq!(v["manufacturer"], "parent wins");
    assert_eq!(v["matrix_size"], json!({"cols": 2, "rows": 4})); // MATRIX_ROWS (2 * 2)
    let split = &v["split"];
    assert_eq!(split["serial"]["pin"], "D2"); // soft_serial_pin migrated
    assert_eq!(
        split["transport"],
        json!({"protocol": "i2c", "sync": {"matrix_state": true}})
    );
    assert_eq!(
        split["matrix_pins"]["right"],
        json!({"cols": ["F4", null], "rows": ["F0", "F1"]})
    );
    assert_eq!(split["handedness"]["matrix_grid"], json!(["D4", "B6"]));
    assert_eq!(v["matrix_pins"]["masked"], true);
    assert_eq!(
        v["encoder"],
        json!({"enabled": true, "rotary": [{"pin_a": "C6", "pin_b": "C7", "resolution": 2}]})
    );
    assert_eq!(split["encoder"]["right"]["rotary"][1]["resolution"], 4);
}

#[test]
fn direct_pins_secure_unlock_custom_matrix() {
    let v = api("infotest/direct");
    assert_eq!(
        v["matrix_pins"],
        json!({"custom_lite": true, "direct": [["B0", null], ["B2", "B3"]], "masked": true})
    );
    assert_eq!(v["matrix_size"], json!({"cols": 2, "rows": 2}));
    assert_eq!(v["secure"]["unlock_sequence"], json!([[0, 0], [1, 1]]));
}

#[test]
fn led_config_from_the_keyboard_c_file() {
    let v = api("infotest/leds");
    let m = &v["rgb_matrix"];
    assert_eq!(
        m["layout"][1],
        json!({"flags": 1, "matrix": [0, 1], "x": 224, "y": 0})
    );
    assert_eq!(m["layout"][3], json!({"flags": 2, "x": 112, "y": 32}));
    assert_eq!(m["flag_steps"], json!([255, 5, 2, 0]));
}

#[test]
fn development_board_defaults_and_arm_processor() {
    let v = api("infotest/devboard");
    assert_eq!(v["board"], "FX_BOARD");
    assert_eq!(v["bootloader"], "tinyuf2"); // the keyboard's own value is kept
    assert_eq!(v["processor"], "STM32F411");
    assert_eq!(
        (
            &v["processor_type"],
            &v["protocol"],
            &v["platform"],
            &v["platform_key"]
        ),
        (
            &json!("arm"),
            &json!("ChibiOS"),
            &json!("STM32"),
            &json!("chibios")
        )
    );
}

#[test]
fn community_layouts_are_filtered_and_used_by_list_keymaps() {
    let v = api("infotest/community");
    assert_eq!(v["community_layouts"], json!(["infotest_1x2"]));
    assert_eq!(
        v["parse_errors"][0],
        "Claims to support a community layout that does not exist: infotest_missing"
    );
    let r = keyfab(
        &fixture_tree(),
        &["list-keymaps", "-kb", "infotest/community"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.lines().any(|l| l == "infotest_cl"), "{}", r.stdout);
}

#[test]
fn keymap_config_and_files_override_the_keyboard() {
    let v = api("infotest/keymapped");
    assert_eq!(v["features"], json!({"bootmagic": true}));
    let v = info(&["-kb", "infotest/keymapped", "-km", "fxkm"]);
    assert_eq!(v["debounce"], 20); // keymap.json config
    assert_eq!(
        v["features"],
        json!({"bootmagic": false, "mousekey": true, "nkro": true})
    );
    assert_eq!(v["fx"]["count"], 99); // keymap config.h
                                      // KB:KM spelling
    assert_eq!(info(&["-kb", "infotest/keymapped:fxkm"]), v);
    // a keymap of a community layout
    assert_eq!(
        info(&["-kb", "infotest/community", "-km", "infotest_cl"])["debounce"],
        9
    );
}

#[test]
fn text_and_dotted_formats() {
    let r = keyfab(&fixture_tree(), &["info", "-kb", "infotest/basic"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout
            .starts_with("Keyboard Name: Basic\nManufacturer: keyfab\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Layouts: LAYOUT\n"));
    let r = keyfab(
        &fixture_tree(),
        &["info", "-kb", "infotest/basic", "--format", "dotted"],
    );
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("features.bootmagic: True\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("matrix_pins.cols: B0, B1\n"));
    assert!(r.stdout.contains("layouts: LAYOUT\n"));
}

#[test]
fn unknown_keyboard_fails_clearly() {
    let r = keyfab(&fixture_tree(), &["info", "-kb", "infotest/nope"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("invalid keyboard: infotest/nope"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
    let r = keyfab(
        &fixture_tree(),
        &["info", "-kb", "infotest/basic", "-km", "nope"],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("keymap nope not found"), "{}", r.stderr);
}

#[test]
fn all_prints_one_object_per_keyboard() {
    let list = keyfab(&fixture_tree(), &["list-keyboards"]);
    let names: Vec<&str> = list.stdout.lines().collect();
    let r = keyfab(
        &fixture_tree(),
        &["info", "--all", "-f", "json", "--api", "-q"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), names.len());
    for (name, v) in names.iter().zip(&lines) {
        assert_eq!(v["keyboard_folder"], *name);
    }
    let i = names
        .iter()
        .position(|n| *n == "infotest/split/rev1")
        .unwrap();
    assert_eq!(lines[i], expected("infotest__split__rev1"));
    let r = keyfab(&fixture_tree(), &["info", "--all"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--format json"), "{}", r.stderr);
}

/// A temporary tree: the fixture tree's `data/` and the broken keyboards.
fn broken_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture_tree().join("data"), &dir.path().join("data"));
    copy_dir(
        &repo().join("fixtures/broken/info/keyboards"),
        &dir.path().join("keyboards"),
    );
    dir
}

#[test]
fn broken_inputs_are_diagnosed_and_the_rest_still_processed() {
    let tree = broken_tree();
    let r = keyfab(tree.path(), &["info", "--all", "-f", "json", "--api"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8, "{}", r.stdout);
    let by_name = |n: &str| {
        lines
            .iter()
            .find(|v| v["keyboard_folder"] == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    // the control keyboard comes out whole
    assert_eq!(by_name("good")["parse_errors"], json!([]));
    assert_eq!(by_name("good")["usb"]["pid"], "0x0009");
    let err = &r.stderr;
    // malformed JSON: file and line; QMK would stop
    assert!(
        err.contains("keyboards/malformed/keyboard.json:6: error: Invalid JSON"),
        "{err}"
    );
    assert!(err.contains("keyboards/duplicate_key/keyboard.json:4: error: Invalid JSON encountered: duplicate key: \"processor\""), "{err}");
    // schema-invalid file: left out, with the JSON path and the line of the value
    assert!(err.contains("keyboards/schema_invalid/keyboard.json:7: error: usb.pid: Not including data from file"), "{err}");
    assert_eq!(by_name("schema_invalid")["keyboard_name"], "schema_invalid");
    // no layout: QMK's parse error
    assert_eq!(
        by_name("no_layout")["parse_errors"],
        json!(["No LAYOUTs defined! Need at least one layout defined in info.json."])
    );
    assert!(err.contains("keyboards/no_layout: error: No LAYOUTs defined!"));
    // a root that is not an object
    assert!(by_name("not_object")["parse_errors"][0]
        .as_str()
        .unwrap()
        .contains("root object should be a dictionary"));
    // merged data the API schema rejects
    assert!(
        err.contains("keyboards/api_invalid: error: features.rgblight: Invalid API data"),
        "{err}"
    );
    // config.h problems, each on its line
    assert!(
        err.contains("keyboards/bad_config/config.h:2: error: Incomplete #define!"),
        "{err}"
    );
    assert!(err.contains("keyboards/bad_config/config.h:3: warning: FX_INT->fx.count: invalid literal for int() with base 10: 'twelve'"), "{err}");
    assert!(
        err.contains("keyboards/bad_config/config.h: error: QMK would stop here: MATRIX_COLS"),
        "{err}"
    );
    assert!(
        err.contains("4 of 8 keyboards have input QMK would stop on"),
        "{err}"
    );
}

#[test]
fn a_single_broken_keyboard_exits_1_where_qmk_would_stop() {
    let tree = broken_tree();
    for (kb, code) in [
        ("malformed", 1),
        ("duplicate_key", 1),
        ("api_invalid", 1),
        ("bad_config", 1),
        ("schema_invalid", 0),
        ("no_layout", 0),
        ("good", 0),
    ] {
        let r = keyfab(tree.path(), &["info", "-kb", kb, "-f", "json"]);
        assert_eq!(r.code, code, "{kb}: {}", r.stderr);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        assert!(v.is_object(), "{kb}");
    }
}
