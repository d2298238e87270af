//! Merged keyboard info: `info.json`/`keyboard.json` down the folder chain,
//! plus `config.h` and `rules.mk` values through `data/mappings`.
//!
//! Architecture invariant: reads the tree through `keyfab-tree`, writes
//! nothing, runs no process; every problem becomes a diagnostic naming its
//! file, never a panic.

use keyfab_syntax::Diagnostic;
use keyfab_tree::{keyboard_chain, Tree};
use serde_json::Value;

/// The JSON files of a keyboard in the order QMK's `find_info_json` returns
/// them: the keyboard's own folder first (`info.json`, then `keyboard.json`),
/// then each parent up to `keyboards/`.
pub fn info_json_files(keyboard: &str) -> Vec<String> {
    let mut files = Vec::new();
    for folder in keyboard_chain(keyboard).into_iter().rev() {
        files.push(format!("keyboards/{folder}/info.json"));
        files.push(format!("keyboards/{folder}/keyboard.json"));
    }
    files
}

/// The `rules.mk` values of a keyboard as QMK's `rules_mk()` reads them: the
/// keyboard's own file first, then every level from the top down (so the
/// deepest file is applied twice, as in QMK).
pub fn keyboard_rules(
    tree: &Tree,
    keyboard: &str,
    diags: &mut Vec<Diagnostic>,
) -> keyfab_syntax::RulesMk {
    let mut rules = keyfab_syntax::RulesMk::new();
    let mut apply = |rel: String, rules: &mut keyfab_syntax::RulesMk| {
        if let Some(text) = read(tree, &rel, diags) {
            keyfab_syntax::parse_rules_mk(&text, rules);
        }
    };
    apply(format!("keyboards/{keyboard}/rules.mk"), &mut rules);
    for folder in keyboard_chain(keyboard) {
        apply(format!("keyboards/{folder}/rules.mk"), &mut rules);
    }
    rules
}

/// The community layouts a keyboard supports: `community_layouts` of its
/// JSON chain, overridden by `LAYOUTS` in `rules.mk`, keeping only those that
/// exist under `layouts/default/` (QMK drops the others with an error).
pub fn community_layouts(tree: &Tree, keyboard: &str) -> (Vec<String>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut layouts: Option<Vec<String>> = None;
    // Parents are merged after children, so the last file that sets the key wins.
    for rel in info_json_files(keyboard) {
        let Some(text) = read(tree, &rel, &mut diags) else {
            continue;
        };
        match keyfab_syntax::parse_json(&rel, &text) {
            Ok(v) => {
                if let Some(list) = v.get("community_layouts").and_then(Value::as_array) {
                    layouts = Some(
                        list.iter()
                            .filter_map(|l| l.as_str().map(str::to_string))
                            .collect(),
                    );
                }
            }
            Err(e) => diags.push(Diagnostic {
                path: e.path.clone(),
                line: e.line,
                message: format!("invalid JSON: {}", e.message),
            }),
        }
    }
    let rules = keyboard_rules(tree, keyboard, &mut diags);
    if let Some(value) = rules.get("LAYOUTS") {
        layouts = Some(value.split_whitespace().map(str::to_string).collect());
    }
    let mut layouts = layouts.unwrap_or_default();
    layouts.retain(|l| {
        let ok = tree.root().join("layouts/default").join(l).exists();
        if !ok {
            diags.push(Diagnostic {
                path: format!("keyboards/{keyboard}"),
                line: 0,
                message: format!("Claims to support a community layout that does not exist: {l}"),
            });
        }
        ok
    });
    (layouts, diags)
}

/// Reads a tree-relative file; a missing file is `None`, an unreadable one is
/// `None` plus a diagnostic.
fn read(tree: &Tree, rel: &str, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match std::fs::read(tree.path(rel)) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => Some(s),
            Err(_) => {
                diags.push(Diagnostic {
                    path: rel.to_string(),
                    line: 0,
                    message: "not valid UTF-8".into(),
                });
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => None,
        Err(e) => {
            diags.push(Diagnostic {
                path: rel.to_string(),
                line: 0,
                message: format!("cannot read: {e}"),
            });
            None
        }
    }
}
