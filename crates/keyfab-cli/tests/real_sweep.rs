//! `keyfab sweep` on a real QMK tree: the 26 AVR `:default` targets of
//! issue #7, every one must build, and each firmware with a reference from
//! `qmk compile` (`KEYFAB_QMK_FW_REF`, named `<kb with / as _>_default.hex`)
//! must have the same sha256; then a no-op sweep compiles nothing.
//! Runs only when `KEYFAB_QMK_TREE` names a real tree (with submodules and
//! avr-gcc).

mod util;

use sha2_free::sha256_hex;
use util::*;

const AVR_TARGETS: &[&str] = &[
    "planck/rev5",
    "crkbd/rev1",
    "preonic/rev2",
    "lily58/rev1",
    "sofle/rev1",
    "dz60",
    "0xc7/61key",
    "artemis/paragon/soldered",
    "capsunlocked/cu65",
    "crazy_keyboard_68",
    "edi/hardlight/mk1",
    "fjlabs/sinanjuwk",
    "handwired/aplx2",
    "handwired/myskeeb",
    "handwired/videowriter",
    "jacky_studio/bear_65/rev2",
    "kbdfans/kbdpad/mk3",
    "kk/65",
    "lucid/alexa_solder",
    "mexsistor/ludmila",
    "nopunin10did/jabberwocky/v2",
    "plywrks/lune",
    "runes/skjoldr",
    "stratos",
    "v60_type_r",
    "windstudio/wind_x/r1",
];

/// sha256 without a dependency: `sha256sum` from coreutils.
mod sha2_free {
    pub fn sha256_hex(path: &std::path::Path) -> String {
        let out = std::process::Command::new("sha256sum")
            .arg(path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }
}

#[test]
fn avr_targets_sweep_and_match_qmk() {
    let Some(tree) = std::env::var_os("KEYFAB_QMK_TREE") else {
        return;
    };
    let tree = std::path::PathBuf::from(tree);
    let tmp = tempfile::tempdir().unwrap();
    let cache = std::env::var_os("KEYFAB_SWEEP_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("cache"));
    let report = tmp.path().join("report");
    let sweep = || {
        // A fixed build date: without it version.h changes every run and the
        // COMMAND_ENABLE/VIA boards recompile the object that includes it.
        run(keyfab(&tree)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("--cache")
            .arg(&cache)
            .args(["sweep", "--progress", "plain", "--report"])
            .arg(&report)
            .args(AVR_TARGETS))
    };
    let r = sweep();
    eprintln!("{}{}", r.stdout, r.stderr);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(json["counts"]["ok"], AVR_TARGETS.len(), "{}", r.stderr);
    let mut compared = 0;
    if let Some(reference) = std::env::var_os("KEYFAB_QMK_FW_REF") {
        for t in json["targets"].as_array().unwrap() {
            let kb = t["keyboard"].as_str().unwrap();
            let ref_hex = std::path::Path::new(&reference)
                .join(format!("{}_default.hex", kb.replace('/', "_")));
            if ref_hex.is_file() {
                assert_eq!(t["sha256"].as_str().unwrap(), sha256_hex(&ref_hex), "{kb}");
                compared += 1;
            }
        }
    }
    eprintln!("{compared} firmware files equal to qmk compile's");
    let r = sweep();
    r.ok();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(json["counts"]["compiled"], 0);
    eprintln!(
        "no-op sweep of {} targets: {} ms",
        AVR_TARGETS.len(),
        json["duration_ms"]
    );
}
