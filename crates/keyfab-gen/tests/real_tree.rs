//! Every generated file of the real QMK tree against QMK's own generators.
//!
//! Gated: `KEYFAB_QMK_TREE=/work/qmk KEYFAB_QMK_REF=/work/ref cargo test -p keyfab-gen --test real_tree -- --nocapture`
//! `$REF/gen/<kb>/{info_config.h,info_rules.mk,default_keyboard.c,default_keyboard.h}` and
//! `$REF/gen-km/<kb with / as __>__<km>/{keymap.c,config.h,rules.mk,keymap.h}` (pairs from
//! `$REF/info-km/index.json`) are the outputs of QMK's generators called as
//! `builddefs/build_keyboard.mk` calls them. This runs the same pure generators the
//! `keyfab qmk` commands run, in one process, on keyfab-info's merged info; the
//! copyright year is taken from each reference file (QMK writes the year it ran).
//! Prints the counts and every difference; fails if any file differs.

use keyfab_gen::MapEntry;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn year_of(text: &str) -> i32 {
    text.strip_prefix("// Copyright ")
        .or_else(|| text.strip_prefix("# Copyright "))
        .and_then(|t| t.get(..4))
        .and_then(|y| y.parse().ok())
        .unwrap_or(0)
}

fn entries(rows: &[keyfab_info::Mapping]) -> Vec<MapEntry<'_>> {
    rows.iter()
        .map(|m| MapEntry {
            key: &m.key,
            info_key: &m.info_key,
            value_type: &m.value_type_name,
            to_c: m.to_c,
        })
        .collect()
}

/// make's FOUND_KEYBOARD_H: the top-most `<folder>/<name>.h` of the chain.
fn found_keyboard_h(tree: &Path, kb: &str) -> Option<String> {
    keyfab_tree::keyboard_chain(kb)
        .into_iter()
        .find_map(|folder| {
            let name = folder.rsplit('/').next().unwrap_or(&folder).to_string();
            tree.join(format!("keyboards/{folder}/{name}.h"))
                .is_file()
                .then(|| format!("{name}.h"))
        })
}

fn first_diff(want: &str, got: &str) -> String {
    for (n, (w, g)) in want.lines().zip(got.lines()).enumerate() {
        if w != g {
            return format!("line {}: want {w:?}, got {g:?}", n + 1);
        }
    }
    format!(
        "lengths differ: want {} lines, got {} lines",
        want.lines().count(),
        got.lines().count()
    )
}

struct Tally {
    same: BTreeMap<&'static str, usize>,
    total: BTreeMap<&'static str, usize>,
    diffs: Vec<String>,
}

impl Tally {
    fn check(
        &mut self,
        file: &'static str,
        who: &str,
        want: Option<String>,
        got: Result<String, String>,
    ) {
        let Some(want) = want else { return };
        *self.total.entry(file).or_default() += 1;
        match got {
            Ok(g) if g == want => *self.same.entry(file).or_default() += 1,
            Ok(g) => self
                .diffs
                .push(format!("{who} {file}: {}", first_diff(&want, &g))),
            Err(e) => self.diffs.push(format!("{who} {file}: error: {e}")),
        }
    }
}

#[test]
fn generated_files_equal_qmk() {
    let (Some(tree), Some(refdir)) = (
        std::env::var_os("KEYFAB_QMK_TREE").map(PathBuf::from),
        std::env::var_os("KEYFAB_QMK_REF").map(PathBuf::from),
    ) else {
        eprintln!("KEYFAB_QMK_TREE/KEYFAB_QMK_REF not set: skipped");
        return;
    };
    let only = std::env::var("KEYFAB_ONLY").ok();
    let t = keyfab_tree::Tree::open(&tree).unwrap();
    let engine = keyfab_info::Engine::new(t.clone());
    let maps = engine.mappings();
    let (config_maps, rules_maps) = (entries(&maps.config), entries(&maps.rules));
    let mut tally = Tally {
        same: BTreeMap::new(),
        total: BTreeMap::new(),
        diffs: Vec::new(),
    };
    let read = |p: PathBuf| std::fs::read_to_string(p).ok();

    let keyboards = t.list_keyboards().unwrap();
    let start = std::time::Instant::now();
    for kb in &keyboards {
        if only.as_deref().is_some_and(|o| !kb.starts_with(o)) {
            continue;
        }
        let dir = refdir.join("gen").join(kb);
        if !dir.join("info_config.h").exists() && !dir.join("default_keyboard.c").exists() {
            continue;
        }
        let info = engine.info_json(kb);
        let v = &info.value;
        let want = read(dir.join("info_config.h"));
        let y = want.as_deref().map(year_of).unwrap_or(0);
        tally.check(
            "info_config.h",
            kb,
            want,
            keyfab_gen::config_h(v, &config_maps, false, y)
                .map(|g| g.contents())
                .map_err(|e| e.0),
        );
        let want = read(dir.join("info_rules.mk"));
        let y = want.as_deref().map(year_of).unwrap_or(0);
        tally.check(
            "info_rules.mk",
            kb,
            want,
            keyfab_gen::rules_mk(v, &rules_maps, false, None, y)
                .map(|g| g.contents())
                .map_err(|e| e.0),
        );
        let want = read(dir.join("default_keyboard.c"));
        let y = want.as_deref().map(year_of).unwrap_or(0);
        tally.check(
            "default_keyboard.c",
            kb,
            want,
            keyfab_gen::keyboard_c(v, y)
                .map(|g| g.contents())
                .map_err(|e| e.0),
        );
        let want = read(dir.join("default_keyboard.h"));
        let y = want.as_deref().map(year_of).unwrap_or(0);
        let inc = found_keyboard_h(&tree, kb);
        tally.check(
            "default_keyboard.h",
            kb,
            want,
            keyfab_gen::keyboard_h(kb, v, inc.as_deref(), y)
                .map(|g| g.contents())
                .map_err(|e| e.0),
        );
    }
    let kb_secs = start.elapsed().as_secs_f64();

    let index: Vec<Value> = read(refdir.join("info-km/index.json"))
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    for e in &index {
        let (Some(kb), Some(km), Some(path)) = (
            e["keyboard"].as_str(),
            e["keymap"].as_str(),
            e["keymap_json"].as_str(),
        ) else {
            continue;
        };
        if only.as_deref().is_some_and(|o| !kb.starts_with(o)) {
            continue;
        }
        let dir = refdir
            .join("gen-km")
            .join(format!("{}__{km}", kb.replace('/', "__")));
        if !dir.exists() {
            continue;
        }
        let who = format!("{kb}:{km}");
        let text = std::fs::read_to_string(tree.join(path)).unwrap();
        let km_json = keyfab_syntax::parse_json(path, &text).unwrap();
        check_keymap_files(&mut tally, &who, &dir, &km_json, &config_maps, &rules_maps);
    }

    // Our own references (made with QMK's real CLI by `$REF/yours/make_km_refs.py`): one
    // directory per keymap.json (`path` with / as __), and the community-module files.
    let mut seen = std::collections::HashSet::new();
    for e in &index {
        let Some(path) = e["keymap_json"].as_str() else {
            continue;
        };
        if !seen.insert(path.to_string()) {
            continue;
        }
        let dir = refdir.join("yours/gen-km").join(path.replace('/', "__"));
        if !dir.exists() || only.as_deref().is_some_and(|o| !path.contains(o)) {
            continue;
        }
        let text = std::fs::read_to_string(tree.join(path)).unwrap();
        let km_json = keyfab_syntax::parse_json(path, &text).unwrap();
        let who = path.to_string();
        check_keymap_files(&mut tally, &who, &dir, &km_json, &config_maps, &rules_maps);
    }
    community_modules(&tree, &refdir, &index, &engine, &mut tally);

    eprintln!(
        "keyboards: {} in the tree; generated in {kb_secs:.1} s",
        keyboards.len()
    );
    for (file, total) in &tally.total {
        eprintln!(
            "  {file}: {}/{total} identical",
            tally.same.get(file).copied().unwrap_or(0)
        );
    }
    for d in &tally.diffs {
        eprintln!("DIFF {d}");
    }
    assert!(tally.diffs.is_empty(), "{} files differ", tally.diffs.len());
}

/// `$REF/yours/gen-cm/<kb with / as __>[__<km>]/*`: the community-module files of every
/// keyboard/keymap.json pair that uses modules (and a few keyboards).
fn community_modules(
    tree: &Path,
    refdir: &Path,
    index: &[Value],
    engine: &keyfab_info::Engine,
    tally: &mut Tally,
) {
    let base = refdir.join("yours/gen-cm");
    let Ok(entries) = std::fs::read_dir(&base) else {
        return;
    };
    let root = std::fs::canonicalize(tree).unwrap();
    let hooks_dir = tree.join("data/constants/module_hooks");
    let hooks: Vec<(String, Value)> = std::fs::read_dir(&hooks_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(e.path()).unwrap();
            (
                name.clone(),
                keyfab_syntax::parse_json(&name, &text).unwrap(),
            )
        })
        .filter(|(n, _)| n.ends_with(".hjson"))
        .collect();
    let apis = keyfab_gen::ModuleApis::from_hook_files(&hooks).unwrap();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // which pair is it?
        let pair = index.iter().find(|e| {
            format!(
                "{}__{}",
                e["keyboard"].as_str().unwrap_or("").replace('/', "__"),
                e["keymap"].as_str().unwrap_or("")
            ) == name
        });
        let (kb, km_json) = match pair {
            Some(e) => {
                let path = e["keymap_json"].as_str().unwrap();
                let text = std::fs::read_to_string(tree.join(path)).unwrap();
                (
                    e["keyboard"].as_str().unwrap().to_string(),
                    Some(keyfab_syntax::parse_json(path, &text).unwrap()),
                )
            }
            None => (name.replace("__", "/"), None),
        };
        let info = engine.info_json(&kb).value;
        let who = name.clone();
        let dir = entry.path();
        let year = read_year(&dir.join("community_config.h"));
        let names = match keyfab_gen::modules_of(&info, km_json.as_ref()) {
            Ok(n) => n,
            Err(e) => {
                tally.diffs.push(format!("{who}: modules: {e}"));
                continue;
            }
        };
        let mods: Vec<keyfab_gen::ModuleInfo> = names
            .iter()
            .map(|m| {
                let d = root.join("modules").join(m);
                let text = std::fs::read_to_string(d.join("qmk_module.json")).unwrap();
                keyfab_gen::ModuleInfo {
                    module: m.clone(),
                    path: d.to_string_lossy().into_owned(),
                    json: keyfab_syntax::parse_json(m, &text).unwrap(),
                }
            })
            .collect();
        let r = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        use keyfab_gen::PerModuleInclude as P;
        let outputs: Vec<(&'static str, keyfab_gen::Generated)> = vec![
            (
                "community_rules.mk",
                keyfab_gen::community_rules_mk(&mods, year),
            ),
            (
                "community_config.h",
                keyfab_gen::community_config_h(&names, year),
            ),
            (
                "community_modules.h",
                keyfab_gen::community_modules_h(&apis, &mods, year),
            ),
            (
                "community_modules.c",
                keyfab_gen::community_modules_c(&apis, &mods, year),
            ),
            (
                "community_modules_introspection.c",
                keyfab_gen::include_per_module(P::IntrospectionC, &mods, year),
            ),
            (
                "community_modules_introspection.h",
                keyfab_gen::include_per_module(P::IntrospectionH, &mods, year),
            ),
            (
                "led_matrix_community_modules.inc",
                keyfab_gen::include_per_module(P::LedMatrix, &mods, year),
            ),
            (
                "rgb_matrix_community_modules.inc",
                keyfab_gen::include_per_module(P::RgbMatrix, &mods, year),
            ),
            (
                "split_transaction_id_community_modules.inc",
                keyfab_gen::split_transaction_id_inc(&names, year),
            ),
        ];
        for (file, g) in outputs {
            tally.check(file, &who, r(file), Ok(g.contents()));
        }
    }
}

/// Compares keyfab's keymap.c, keymap config.h, rules.mk and keymap.h for
/// one keymap.json with the reference files in `dir`.
fn check_keymap_files(
    tally: &mut Tally,
    who: &str,
    dir: &Path,
    km_json: &Value,
    config_maps: &[keyfab_gen::MapEntry],
    rules_maps: &[keyfab_gen::MapEntry],
) {
    let read = |p: PathBuf| std::fs::read_to_string(p).ok();
    let cfg = km_json
        .get("config")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    let want = read(dir.join("keymap.c"));
    tally.check(
        "keymap.c",
        who,
        want,
        keyfab_gen::keymap_c(km_json)
            .map(|g| g.contents())
            .map_err(|e| e.0),
    );
    let want = read(dir.join("config.h"));
    let y = want.as_deref().map(year_of).unwrap_or(0);
    tally.check(
        "keymap config.h",
        who,
        want,
        keyfab_gen::config_h(&cfg, config_maps, true, y)
            .map(|g| g.contents())
            .map_err(|e| e.0),
    );
    let want = read(dir.join("rules.mk"));
    let y = want.as_deref().map(year_of).unwrap_or(0);
    tally.check(
        "keymap rules.mk",
        who,
        want,
        keyfab_gen::rules_mk(&cfg, rules_maps, true, km_json.get("converter"), y)
            .map(|g| g.contents())
            .map_err(|e| e.0),
    );
    let want = read(dir.join("keymap.h"));
    let y = want.as_deref().map(year_of).unwrap_or(0);
    tally.check(
        "keymap.h",
        who,
        want,
        keyfab_gen::keymap_h(km_json, y)
            .map(|g| g.contents())
            .map_err(|e| e.0),
    );
}

fn read_year(p: &Path) -> i32 {
    std::fs::read_to_string(p).map(|t| year_of(&t)).unwrap_or(0)
}
