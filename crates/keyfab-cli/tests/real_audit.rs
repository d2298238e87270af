//! `keyfab audit` on a real QMK tree. Runs only when `KEYFAB_QMK_TREE` names
//! one (with its submodules and the AVR toolchain); the tree is copied to a
//! temp folder first, so nothing is built in it.
//!
//! - planck/rev5:default passes in plain mode (its LTO objects differ from
//!   build to build, GCC's random seed; the firmware does not).
//! - An AVR board with COMMAND_ENABLE (`KEYFAB_QMK_COMMAND_TARGET`, default
//!   weirdo/tiger910:default) fails in plain mode, naming version.h's build
//!   date and command.o, and passes in reproducible mode, on a clock moved by
//!   three days. Without `faketime` the rebuild is a second later, the same
//!   day, and matches: then the plain audit is expected to pass.
//!
//! With `KEYFAB_QMK_ARM_TREE` (a tree whose ChibiOS submodules build, see
//! DESIGN.md), the same for planck/rev6:default (ARM, COMMAND_ENABLE): plain
//! fails on command.o and version.h's build date; `--reproducible` passes, and
//! so does a build with `SOURCE_DATE_EPOCH` set audited on another day (the
//! audit itself under `faketime -f +1d`, its rebuild three days on).

mod util;

use serde_json::Value;
use std::path::{Path, PathBuf};
use util::*;

#[test]
fn audit_on_the_real_tree() {
    let Some(src) = std::env::var_os("KEYFAB_QMK_TREE") else {
        return;
    };
    let command_target = std::env::var("KEYFAB_QMK_COMMAND_TARGET")
        .unwrap_or_else(|_| "weirdo/tiger910:default".into());
    let tmp = tempfile::tempdir().unwrap();
    let tree = copy_tree(Path::new(&src), tmp.path());
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
    let clock = t["rebuild"]["clock"].as_str().unwrap_or_default();
    if clock.contains("faketime not installed") {
        // A second later on the real clock, the same day: nothing tells.
        eprintln!("faketime not installed: the build date's difference is not checked");
        assert_eq!(code, 0, "{t:#}");
    } else {
        assert_eq!(code, 1, "{t:#}");
        assert_date_in_command_o(&t);
    }

    keyfab(&["build", &command_target, "--reproducible"]).ok();
    let (code, t) = audit(&command_target);
    assert_eq!(code, 0, "{t:#}");
}

#[test]
fn arm_audit_on_the_real_tree() {
    let Some(src) = std::env::var_os("KEYFAB_QMK_ARM_TREE") else {
        return;
    };
    let target = "planck/rev6:default";
    let tmp = tempfile::tempdir().unwrap();
    let tree = copy_tree(Path::new(&src), tmp.path());
    let cache = tmp.path().join("cache");
    let keyfab_cmd = |args: &[&str]| {
        let mut c = keyfab(&tree);
        c.env_remove("SOURCE_DATE_EPOCH")
            .arg("--cache")
            .arg(&cache)
            .args(args);
        c
    };
    let audit = |mut cmd: std::process::Command| -> (i32, Value) {
        let r = run(cmd.args(["audit", target, "--format", "json"]));
        let json: Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|_| panic!("{}\n{}", r.stdout, r.stderr));
        (r.code, json["targets"][0].clone())
    };

    run(&mut keyfab_cmd(&["build", target])).ok();
    let (code, t) = audit(keyfab_cmd(&[]));
    assert_eq!(code, 1, "{t:#}");
    assert_date_in_command_o(&t);
    // The plain report names them too.
    let text = run(&mut keyfab_cmd(&["audit", target]));
    assert_eq!(text.code, 1);
    assert!(text.stdout.contains("FAIL"), "{}", text.stdout);
    assert!(
        text.stdout
            .contains("first differing artifact: .build/obj_planck_rev6_default/quantum/command.o"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("src/version.h [generated]: the build date"),
        "{}",
        text.stdout
    );

    run(&mut keyfab_cmd(&["build", target, "--reproducible"])).ok();
    let (code, t) = audit(keyfab_cmd(&[]));
    assert_eq!(code, 0, "{t:#}");
    assert_eq!(t["pass"], true);

    let mut build = keyfab_cmd(&["build", target]);
    run(build.env("SOURCE_DATE_EPOCH", "1790000000")).ok();
    let mut cmd = keyfab_cmd(&[]);
    if keyfab_build::exec::resolve_program("faketime").is_some() {
        // The audit itself on another day.
        let mut c = std::process::Command::new("faketime");
        c.args(["-f", "+1d"])
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .current_dir(&tree)
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("QMK_HOME")
            .env_remove("QMK_USERSPACE")
            .env_remove("KEYFAB_CACHE");
        cmd = c;
    }
    let (code, t) = audit(cmd);
    assert_eq!(code, 0, "{t:#}");
    assert_eq!(t["rebuild"]["source_date_epoch"], "1790000000", "{t:#}");
}

/// A copy of a real tree in `dir`, without its build output.
fn copy_tree(src: &Path, dir: &Path) -> PathBuf {
    let tree = dir.join("qmk");
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(&tree)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let _ = std::fs::remove_dir_all(tree.join(".build"));
    tree
}

/// A failed audit's report: command.o differs first, because of version.h's
/// build date.
fn assert_date_in_command_o(t: &Value) {
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
}
