//! Firmware byte-identity against QMK's own build. Runs only when
//! `KEYFAB_QMK_TREE` names a real QMK tree (with its submodules and the AVR
//! toolchain) and `KEYFAB_QMK_FW_REF` a folder of `.hex`/`.bin` files that
//! `qmk compile -kb X -km default` produced there (named as QMK names them,
//! `<keyboard with / as _>_default.hex`). Each such file is rebuilt with
//! `keyfab build` (generators: keyfab's own) and compared byte for byte.
//!
//! ARM (planck/rev6 and the like) the same way with `KEYFAB_QMK_ARM_TREE`, a
//! tree whose ChibiOS submodules build (see DESIGN.md, "The real QMK tree"),
//! and `KEYFAB_QMK_ARM_FW_REF`. ChibiOS boards with COMMAND_ENABLE embed the
//! build time (`version.h`), so the reference folder may hold a `FAKETIME`
//! file with the frozen clock the references were built on (`faketime -f
//! '2026-11-23 12:00:00' qmk compile …`); keyfab then builds on the same
//! frozen clock (faketime must be installed).

mod util;

use std::path::{Path, PathBuf};
use util::*;

#[test]
fn firmware_equals_qmk_compile() {
    let (Some(tree), Some(reference)) = (
        std::env::var_os("KEYFAB_QMK_TREE"),
        std::env::var_os("KEYFAB_QMK_FW_REF"),
    ) else {
        return;
    };
    check_firmware(Path::new(&tree), Path::new(&reference));
}

#[test]
fn arm_firmware_equals_qmk_compile() {
    let (Some(tree), Some(reference)) = (
        std::env::var_os("KEYFAB_QMK_ARM_TREE"),
        std::env::var_os("KEYFAB_QMK_ARM_FW_REF"),
    ) else {
        return;
    };
    let reference = PathBuf::from(reference);
    assert!(
        reference.join("planck_rev6_default.bin").is_file(),
        "no planck_rev6_default.bin in {}",
        reference.display()
    );
    check_firmware(Path::new(&tree), &reference);
}

/// Rebuilds every `<kb>_default.hex`/`.bin` of `reference` in `tree` and
/// compares; on the reference's frozen clock when it names one.
fn check_firmware(tree: &Path, reference: &Path) {
    let frozen = std::fs::read_to_string(reference.join("FAKETIME"))
        .ok()
        .map(|s| s.trim().to_string());
    let cache = tempfile::tempdir().unwrap();
    let keyboards = in_tree(tree, &["list-keyboards"]).ok().to_string();
    let mut checked = 0;
    let mut differ = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(reference)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name
            .strip_suffix("_default.hex")
            .or_else(|| name.strip_suffix("_default.bin"))
        else {
            continue;
        };
        // The keyboard whose file-safe name is `stem`.
        let Some(kb) = keyboards.lines().find(|k| k.replace('/', "_") == stem) else {
            continue;
        };
        let mut cmd = match &frozen {
            Some(at) => {
                let mut c = std::process::Command::new("faketime");
                c.args(["-f", at])
                    .arg(env!("CARGO_BIN_EXE_keyfab"))
                    .current_dir(tree)
                    .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                    .env_remove("SOURCE_DATE_EPOCH")
                    .env_remove("QMK_HOME")
                    .env_remove("QMK_USERSPACE")
                    .env_remove("KEYFAB_CACHE");
                c
            }
            None => keyfab(tree),
        };
        let r = run(cmd
            .arg("--tree")
            .arg(tree)
            .arg("--cache")
            .arg(cache.path())
            .args(["build", &format!("{kb}:default")]));
        let built = std::fs::read(tree.join(".build").join(&name));
        checked += 1;
        if r.code != 0 || built.ok().as_deref() != Some(&std::fs::read(&path).unwrap()[..]) {
            differ.push(format!("{kb} ({name}): exit {} {}", r.code, r.stderr));
        }
    }
    assert!(
        checked > 0,
        "no reference firmware in {}",
        reference.to_string_lossy()
    );
    assert!(
        differ.is_empty(),
        "{} of {checked} differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
