//! keyfab info against QMK's own output on a real QMK tree. Runs only when
//! `KEYFAB_QMK_TREE` (a QMK tree) and `KEYFAB_QMK_REF` (reference outputs:
//! `list-keyboards.txt`, `info/<kb with / as __>.json` holding
//! `qmk info -kb KB -f json`, and `info-km/index.json` with
//! `info-km/<kb>__<km>.json` for keymap.json keymaps) are set; CI has no QMK
//! tree. Prints the match rate and every kind of difference.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

fn env_paths() -> Option<(PathBuf, PathBuf)> {
    let tree = std::env::var_os("KEYFAB_QMK_TREE")?;
    let reference = std::env::var_os("KEYFAB_QMK_REF")?;
    Some((tree.into(), reference.into()))
}

/// Same JSON value, key order aside, `1` and `1.0` equal (Python's `==`).
fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => diff(v, w, &format!("{path}.{k}"), out),
                    None => out.push(format!("extra {path}.{k}")),
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(format!("missing {path}.{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (v, w) in x.iter().zip(y) {
                diff(v, w, &format!("{path}[]"), out);
            }
        }
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a == b => {}
        _ => out.push(format!("value {path}")),
    }
}

fn report(kind: &str, total: usize, failures: &BTreeMap<String, Vec<String>>) -> usize {
    let bad: usize = failures.values().map(Vec::len).sum::<usize>().min(total);
    let mut bad_targets = std::collections::BTreeSet::new();
    for v in failures.values() {
        bad_targets.extend(v.iter().cloned());
    }
    let ok = total - bad_targets.len();
    eprintln!("{kind}: {ok} of {total} identical to QMK");
    for (what, targets) in failures {
        eprintln!(
            "  {} × {what} (e.g. {})",
            targets.len(),
            targets.first().map_or("", String::as_str)
        );
    }
    let _ = bad;
    bad_targets.len()
}

#[test]
fn info_matches_qmk_on_the_real_tree() {
    let Some((tree, reference)) = env_paths() else {
        eprintln!("skipped: set KEYFAB_QMK_TREE and KEYFAB_QMK_REF to compare with QMK");
        return;
    };
    let keyboards: Vec<String> = std::fs::read_to_string(reference.join("list-keyboards.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_keyfab"))
        .arg("--tree")
        .arg(&tree)
        .args(["info", "--all", "-f", "json", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        keyboards.len(),
        "keyfab and QMK list different keyboards"
    );
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (kb, line) in keyboards.iter().zip(lines) {
        let file = reference
            .join("info")
            .join(format!("{}.json", kb.replace('/', "__")));
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let mine: Value = serde_json::from_str(line).unwrap();
        if text.trim().is_empty() {
            failures
                .entry("QMK printed nothing".into())
                .or_default()
                .push(kb.clone());
            continue;
        }
        let theirs: Value = serde_json::from_str(&text).unwrap();
        let mut d = Vec::new();
        diff(&mine, &theirs, "", &mut d);
        d.sort();
        d.dedup();
        for what in d {
            failures.entry(what).or_default().push(kb.clone());
        }
    }
    let bad = report("keyboards", keyboards.len(), &failures);

    let index = reference.join("info-km/index.json");
    let mut bad_km = 0;
    if let Ok(text) = std::fs::read_to_string(&index) {
        let pairs: Vec<Value> = serde_json::from_str(&text).unwrap();
        let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in &pairs {
            let (kb, km) = (
                p["keyboard"].as_str().unwrap(),
                p["keymap"].as_str().unwrap(),
            );
            let target = format!("{kb}:{km}");
            let out = Command::new(env!("CARGO_BIN_EXE_keyfab"))
                .arg("--tree")
                .arg(&tree)
                .args(["info", "-kb", kb, "-km", km, "-f", "json", "-q"])
                .output()
                .unwrap();
            let file = reference
                .join("info-km")
                .join(format!("{}__{km}.json", kb.replace('/', "__")));
            let theirs: Value =
                serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
            let Ok(mine) = serde_json::from_slice::<Value>(&out.stdout) else {
                failures
                    .entry("keyfab failed".into())
                    .or_default()
                    .push(target);
                continue;
            };
            let mut d = Vec::new();
            diff(&mine, &theirs, "", &mut d);
            d.sort();
            d.dedup();
            for what in d {
                failures.entry(what).or_default().push(target.clone());
            }
        }
        bad_km = report("keymaps", pairs.len(), &failures);
    }
    assert_eq!((bad, bad_km), (0, 0), "differences from QMK (listed above)");
}
