//! Firmware byte-identity against QMK's own build. Runs only when
//! `KEYFAB_QMK_TREE` names a real QMK tree (with its submodules and the AVR
//! toolchain) and `KEYFAB_QMK_FW_REF` a folder of `.hex`/`.bin` files that
//! `qmk compile -kb X -km default` produced there (named as QMK names them,
//! `<keyboard with / as _>_default.hex`). Each such file is rebuilt with
//! `keyfab build` (generators: keyfab's own) and compared byte for byte.

mod util;

use util::*;

#[test]
fn firmware_equals_qmk_compile() {
    let (Some(tree), Some(reference)) = (
        std::env::var_os("KEYFAB_QMK_TREE"),
        std::env::var_os("KEYFAB_QMK_FW_REF"),
    ) else {
        return;
    };
    let tree = std::path::PathBuf::from(tree);
    let cache = tempfile::tempdir().unwrap();
    let keyboards = in_tree(&tree, &["list-keyboards"]).ok().to_string();
    let mut checked = 0;
    let mut differ = Vec::new();
    for entry in std::fs::read_dir(&reference).unwrap() {
        let path = entry.unwrap().path();
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
        let r = run(keyfab(&tree)
            .arg("--cache")
            .arg(cache.path())
            .args(["build", &format!("{kb}:default")]));
        let built = std::fs::read(tree.join(".build").join(&name));
        checked += 1;
        if r.code != 0 || built.ok().as_deref() != Some(&std::fs::read(&path).unwrap()[..]) {
            differ.push(format!("{kb}: exit {} {}", r.code, r.stderr));
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
