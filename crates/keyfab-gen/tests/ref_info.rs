//! Gated check of the geometry generators against QMK's own outputs, fed
//! with QMK's `qmk info -f json` (so it runs without keyfab-info):
//! `KEYFAB_QMK_REF=/work/ref cargo test -p keyfab-gen --test ref_info -- --nocapture`.
//! Needs `$REF/info/<kb with / as __>.json` and `$REF/gen/<kb>/default_keyboard.{c,h}`.

use std::path::PathBuf;

#[test]
fn keyboard_c_and_h_from_qmk_info() {
    let Some(refdir) = std::env::var_os("KEYFAB_QMK_REF").map(PathBuf::from) else {
        eprintln!("KEYFAB_QMK_REF not set: skipped");
        return;
    };
    let gen = refdir.join("gen");
    let (mut same, mut differ, mut total) = (0, Vec::new(), 0);
    for entry in std::fs::read_dir(refdir.join("info")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let kb = stem.replace("__", "/");
        let dir = gen.join(&kb);
        let (Ok(want_c), Ok(want_h)) = (
            std::fs::read_to_string(dir.join("default_keyboard.c")),
            std::fs::read_to_string(dir.join("default_keyboard.h")),
        ) else {
            continue;
        };
        let info = load(&path);
        let year: i32 = want_c[13..17].parse().unwrap();
        total += 1;
        let got_c = keyfab_gen::keyboard_c(&info, year).map(|g| g.contents());
        // the reference was made with --include of the keyboard's own header, if any
        let include = want_h
            .lines()
            .find(|l| l.starts_with("#include \"") && *l != "#include \"quantum.h\"")
            .map(|l| l[10..l.len() - 1].to_string());
        let got_h =
            keyfab_gen::keyboard_h(&kb, &info, include.as_deref(), year).map(|g| g.contents());
        let ok_c = got_c.as_deref() == Ok(want_c.as_str());
        let ok_h = got_h.as_deref() == Ok(want_h.as_str());
        if ok_c && ok_h {
            same += 1;
        } else {
            differ.push(format!("{kb}: c={ok_c} h={ok_h}"));
        }
    }
    eprintln!("{same}/{total} keyboards identical");
    for d in differ.iter().take(40) {
        eprintln!("  {d}");
    }
}

#[test]
fn dump_one() {
    let Some(kb) = std::env::var_os("KEYFAB_DUMP_KB") else {
        return;
    };
    let kb = kb.to_str().unwrap().to_string();
    let p = format!("/work/ref/info/{}.json", kb.replace('/', "__"));
    let info = load(std::path::Path::new(&p));
    std::fs::write(
        "/tmp/got_c",
        keyfab_gen::keyboard_c(&info, 2026).unwrap().contents(),
    )
    .unwrap();
    std::fs::write(
        "/tmp/got_h",
        keyfab_gen::keyboard_h(&kb, &info, None, 2026)
            .unwrap()
            .contents(),
    )
    .unwrap();
}

/// `qmk info -f json` drops `matrix_size` when there are `matrix_pins`:
/// put it back the way QMK's `_matrix_size` computes it.
fn load(path: &std::path::Path) -> serde_json::Value {
    let mut info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    if info.get("matrix_size").is_none() {
        if let Some(p) = info.get("matrix_pins").cloned() {
            let (cols, mut rows) = if let Some(d) = p.get("direct").and_then(|d| d.as_array()) {
                (d[0].as_array().unwrap().len(), d.len())
            } else {
                (
                    p["cols"].as_array().map_or(0, |a| a.len()),
                    p["rows"].as_array().map_or(0, |a| a.len()),
                )
            };
            if info["split"]["enabled"].as_bool() == Some(true) {
                rows *= 2;
            }
            info["matrix_size"] = serde_json::json!({"cols": cols, "rows": rows});
        }
    }
    info
}
