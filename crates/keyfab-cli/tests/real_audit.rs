//! `keyfab audit` on a real QMK tree. Runs only when `KEYFAB_QMK_TREE` names
//! one (with its submodules and the AVR toolchain); the tree is copied to a
//! temp folder first, so nothing is built in it.
//!
//! - planck/rev5:default passes in plain mode (its LTO objects differ from
//!   build to build, GCC's random seed; the firmware does not).
//! - An AVR board with COMMAND_ENABLE (`KEYFAB_QMK_COMMAND_TARGET`, default
//!   weirdo/tiger910:default; planck/rev6 is ARM and needs ChibiOS) fails in
//!   plain mode, naming version.h's build date and command.o, and passes in
//!   reproducible mode on a clock moved by three days (when `faketime` is
//!   installed; else a second later).

mod util;

use serde_json::Value;
use util::*;

#[test]
fn audit_on_the_real_tree() {
    let Some(src) = std::env::var_os("KEYFAB_QMK_TREE") else {
        return;
    };
    let command_target = std::env::var("KEYFAB_QMK_COMMAND_TARGET")
        .unwrap_or_else(|_| "weirdo/tiger910:default".into());
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("qmk");
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&tree)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let _ = std::fs::remove_dir_all(tree.join(".build"));
    let cache = tmp.path().join("cache");
    let keyfab = |args: &[&str]| -> Run {
        run(keyfab(&tree)
            .env_remove("SOURCE_DATE_EPOCH")
            .arg("--cache")
            .arg(&cache)
            .args(args))
    };
    let audit = |target: &str| -> (i32, Value) {
        let r = keyfab(&["audit", target, "--format", "json"]);
        let json: Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|_| panic!("{}\n{}", r.stdout, r.stderr));
        (r.code, json["targets"][0].clone())
    };

    keyfab(&["build", "planck/rev5:default"]).ok();
    let (code, t) = audit("planck/rev5:default");
    assert_eq!(code, 0, "{t:#}");
    assert_eq!(t["pass"], true);

    keyfab(&["build", &command_target]).ok();
    let (code, t) = audit(&command_target);
    assert_eq!(code, 1, "{t:#}");
    let first = t["first_difference"].as_str().unwrap();
    assert!(first.ends_with("/quantum/command.o"), "{t:#}");
    let causes = t["differences"][0]["causes"].as_array().unwrap();
    assert!(
        causes
            .iter()
            .any(|c| c["input"].as_str().unwrap().ends_with("src/version.h")
                && c["what"].as_str().unwrap().contains("the build date")),
        "{t:#}"
    );

    keyfab(&["build", &command_target, "--reproducible"]).ok();
    let (code, t) = audit(&command_target);
    assert_eq!(code, 0, "{t:#}");
}
