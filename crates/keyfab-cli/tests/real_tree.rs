//! Checks against a real QMK tree and reference outputs of QMK's own CLI.
//! They run only when `KEYFAB_QMK_TREE` (the tree) and `KEYFAB_QMK_REF` (a
//! folder with `list-keyboards.txt` and `list-keymaps.json`, the outputs of
//! `qmk list-keyboards` and of `qmk list-keymaps -kb X` for every X) are
//! set; CI has neither, so there they return at once.

mod util;

use std::path::PathBuf;
use util::*;

fn real() -> Option<(PathBuf, PathBuf)> {
    let tree = std::env::var_os("KEYFAB_QMK_TREE")?;
    let reference = std::env::var_os("KEYFAB_QMK_REF")?;
    Some((tree.into(), reference.into()))
}

#[test]
fn list_keyboards_equals_qmk() {
    let Some((tree, reference)) = real() else {
        return;
    };
    let expected = std::fs::read_to_string(reference.join("list-keyboards.txt")).unwrap();
    let run = in_tree(&tree, &["list-keyboards"]);
    assert_eq!(run.ok(), expected);
}

#[test]
fn list_keymaps_equals_qmk_for_every_keyboard() {
    let Some((tree, reference)) = real() else {
        return;
    };
    let text = std::fs::read_to_string(reference.join("list-keymaps.json")).unwrap();
    let expected: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let keyboards: Vec<(&String, &serde_json::Value)> = expected.iter().collect();
    let mismatches = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for chunk in keyboards.chunks(keyboards.len().div_ceil(4)) {
            let (tree, mismatches) = (&tree, &mismatches);
            s.spawn(move || {
                for (kb, want) in chunk {
                    let got =
                        in_tree(tree, &["list-keymaps", "-kb", kb, "--format", "json"]).json();
                    if &&got["keymaps"] != want {
                        mismatches
                            .lock()
                            .unwrap()
                            .push(format!("{kb}: keyfab {} qmk {want}", got["keymaps"]));
                    }
                }
            });
        }
    });
    let mismatches = mismatches.into_inner().unwrap();
    assert!(
        mismatches.is_empty(),
        "{} of {} differ:\n{}",
        mismatches.len(),
        keyboards.len(),
        mismatches.join("\n")
    );
}
