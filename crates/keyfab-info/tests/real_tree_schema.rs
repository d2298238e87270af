//! On a real QMK tree (`KEYFAB_QMK_TREE`; CI has none): validators
//! specialised to a value answer exactly as the whole schema's, for every
//! keyboard info file, keymap.json, community module and merged info of the
//! tree, as they are and with errors put in (wrong types, unknown keys).

use keyfab_info::Engine;
use rayon::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn files(dir: &Path, names: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            files(&p, names, out);
        } else if names.iter().any(|n| e.file_name() == *n) {
            out.push(p);
        }
    }
}

/// `v` with every string that is not a layout's or a keymap's made a
/// number, and an unknown key in every object: several errors at once.
fn broken(v: &Value, depth: usize) -> Value {
    match v {
        Value::String(_) if depth % 2 == 1 => Value::from(7),
        Value::Array(a) => Value::Array(a.iter().map(|x| broken(x, depth + 1)).collect()),
        Value::Object(o) => {
            let mut o: serde_json::Map<String, Value> = o
                .iter()
                .map(|(k, x)| (k.clone(), broken(x, depth + 1)))
                .collect();
            o.insert("zz_unknown".into(), Value::from(true));
            Value::Object(o)
        }
        other => other.clone(),
    }
}

#[test]
fn specialised_schema_validators_answer_as_the_whole_schemas() {
    let Some(root) = std::env::var_os("KEYFAB_QMK_TREE") else {
        return;
    };
    let tree = keyfab_tree::Tree::open(PathBuf::from(root)).unwrap();
    let engine = Engine::new(tree.clone());
    let schemas = engine.schemas();
    let mut cases: Vec<(PathBuf, &str)> = Vec::new();
    let mut found = Vec::new();
    files(
        &tree.path("keyboards"),
        &["info.json", "keyboard.json"],
        &mut found,
    );
    cases.extend(found.drain(..).map(|p| (p, "qmk.keyboard.v1")));
    files(&tree.path("keyboards"), &["keymap.json"], &mut found);
    files(&tree.path("layouts"), &["keymap.json"], &mut found);
    cases.extend(found.drain(..).map(|p| (p, "qmk.keymap.v1")));
    files(&tree.path("modules"), &["qmk_module.json"], &mut found);
    cases.extend(found.drain(..).map(|p| (p, "qmk.community_module.v1")));
    let mut values: Vec<(String, Value, &str)> = cases
        .into_iter()
        .filter_map(|(p, schema)| {
            let text = std::fs::read_to_string(&p).ok()?;
            let v = keyfab_syntax::parse_json(&p.display().to_string(), &text).ok()?;
            Some((p.display().to_string(), v, schema))
        })
        .collect();
    let keyboards = tree.list_keyboards().unwrap();
    values.extend(
        keyboards
            .par_iter()
            .map(|kb| {
                let info = engine.info_json(kb);
                (format!("merged {kb}"), info.value, "qmk.api.keyboard.v1")
            })
            .collect::<Vec<_>>(),
    );
    let results: Vec<(bool, Option<String>)> = values
        .par_iter()
        .flat_map_iter(|(name, v, schema)| {
            [v.clone(), broken(v, 0)].into_iter().map(move |v| {
                let whole = schemas.validate_as(&v, schema, false);
                let special = schemas.validate_as(&v, schema, true);
                let differ =
                    (whole != special).then(|| format!("{name}: {whole:?} vs {special:?}"));
                (whole.is_err(), differ)
            })
        })
        .collect();
    let invalid = results.iter().filter(|(e, _)| *e).count();
    let differ: Vec<String> = results.into_iter().filter_map(|(_, d)| d).collect();
    eprintln!(
        "{} values, each as is and broken: {invalid} of {} invalid",
        values.len(),
        values.len() * 2
    );
    assert!(schemas.problems().is_empty(), "{:?}", schemas.problems());
    assert!(differ.is_empty(), "{} differ: {differ:#?}", differ.len());
}
