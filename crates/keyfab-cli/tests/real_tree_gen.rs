//! The real binary as make calls it (`keyfab qmk …` with build_keyboard.mk's
//! arguments, from the tree root) against QMK's own outputs, on a sample of
//! keyboards and keymap.json files of a real tree. (Every keyboard and keymap
//! is compared in-process by keyfab-gen's `real_tree` test; this one checks the
//! command line: argument forms, `--include`, `--escape`'s stdout, writing.)
//!
//! Gated: `KEYFAB_QMK_TREE=/work/qmk KEYFAB_QMK_REF=/work/ref cargo test -p keyfab-cli --test real_tree_gen -- --nocapture`

mod util;

use std::path::{Path, PathBuf};

const SAMPLE: [&str; 12] = [
    "planck/rev5",
    "planck/rev6",
    "crkbd/rev1",
    "preonic/rev2",
    "lily58/rev1",
    "sofle/rev1",
    "dz60",
    "kk/65",
    "clueboard/66/rev3",
    "handwired/onekey/rp2040",
    "polykybd/split42",
    "handwired/splittest/promicro",
];

/// A SOURCE_DATE_EPOCH inside `year` (1 July, UTC), so the copyright line
/// matches the reference's whatever today's date is.
fn epoch_in(year: i32) -> String {
    let days: i64 = (1970..year)
        .map(|y| {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                366
            } else {
                365
            }
        })
        .sum();
    ((days + 181) * 86400).to_string()
}

fn year_of(text: &str) -> i32 {
    text.split_whitespace()
        .nth(2)
        .and_then(|y| y.parse().ok())
        .unwrap_or(2026)
}

#[test]
fn keyfab_qmk_matches_qmk_on_a_sample() {
    let (Some(tree), Some(refdir)) = (
        std::env::var_os("KEYFAB_QMK_TREE").map(PathBuf::from),
        std::env::var_os("KEYFAB_QMK_REF").map(PathBuf::from),
    ) else {
        eprintln!("KEYFAB_QMK_TREE/KEYFAB_QMK_REF not set: skipped");
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let mut keyboards: Vec<String> = SAMPLE.iter().map(|s| s.to_string()).collect();
    // and every 300th keyboard of QMK's own list
    if let Ok(all) = std::fs::read_to_string(refdir.join("list-keyboards.txt")) {
        keyboards.extend(all.lines().step_by(300).map(String::from));
    }
    let (mut same, mut diffs) = (0, Vec::new());
    let mut compare =
        |who: &str, want: &Path, got: &Path| match (std::fs::read(want), std::fs::read(got)) {
            (Ok(w), Ok(g)) if w == g => same += 1,
            (Ok(_), Ok(_)) => diffs.push(format!("{who}: {} differs", want.display())),
            (Ok(_), Err(e)) => diffs.push(format!("{who}: not written: {e}")),
            (Err(_), _) => {}
        };
    for kb in &keyboards {
        let want = refdir.join("gen").join(kb);
        let Ok(text) = std::fs::read_to_string(want.join("info_config.h")) else {
            continue;
        };
        let epoch = epoch_in(year_of(&text));
        let o = out.path().join(kb.replace('/', "__"));
        let os = |f: &str| o.join(f).to_string_lossy().into_owned();
        let include = want_include(&want.join("default_keyboard.h"));
        let mut kh = vec![
            "generate-keyboard-h",
            "--quiet",
            "--keyboard",
            kb,
            "--include",
        ];
        if let Some(i) = include.as_deref() {
            kh.push(i);
        }
        let (f_kh, f_rules, f_cfg, f_c) = (
            os("default_keyboard.h"),
            os("info_rules.mk"),
            os("info_config.h"),
            os("default_keyboard.c"),
        );
        kh.extend(["--output", &f_kh]);
        let calls: Vec<(&str, Vec<&str>)> = vec![
            (
                "info_rules.mk",
                vec![
                    "generate-rules-mk",
                    "--quiet",
                    "--escape",
                    "--keyboard",
                    kb,
                    "--output",
                    &f_rules,
                ],
            ),
            (
                "info_config.h",
                vec![
                    "generate-config-h",
                    "--quiet",
                    "--keyboard",
                    kb,
                    "--output",
                    &f_cfg,
                ],
            ),
            (
                "default_keyboard.c",
                vec![
                    "generate-keyboard-c",
                    "--quiet",
                    "--keyboard",
                    kb,
                    "--output",
                    &f_c,
                ],
            ),
            ("default_keyboard.h", kh),
        ];
        for (file, args) in calls {
            let r = util::run(
                util::keyfab(&tree)
                    .env("SOURCE_DATE_EPOCH", &epoch)
                    .arg("qmk")
                    .args(&args),
            );
            assert_eq!(r.code, 0, "{kb} {file}: {}", r.stderr);
            if file == "info_rules.mk" {
                // make includes what --escape prints: the output path
                assert_eq!(r.stdout, format!("{}\n", o.join(file).display()), "{kb}");
            } else {
                assert_eq!(r.stdout, "", "{kb} {file}");
            }
            compare(kb, &want.join(file), &o.join(file));
        }
    }
    // keymap.json files (outputs depend only on the file)
    let mut seen = std::collections::HashSet::new();
    let index: Vec<serde_json::Value> = std::fs::read_to_string(refdir.join("info-km/index.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    for (n, e) in index.iter().enumerate() {
        let (kb, km, path) = (
            e["keyboard"].as_str().unwrap(),
            e["keymap"].as_str().unwrap(),
            e["keymap_json"].as_str().unwrap(),
        );
        if n % 10 != 0 || !seen.insert(path) {
            continue;
        }
        let want = refdir
            .join("gen-km")
            .join(format!("{}__{km}", kb.replace('/', "__")));
        let Ok(text) = std::fs::read_to_string(want.join("config.h")) else {
            continue;
        };
        let epoch = epoch_in(year_of(&text));
        let o = out.path().join(path.replace('/', "__"));
        for (file, sub) in [
            ("keymap.c", "json2c"),
            ("config.h", "generate-config-h"),
            ("rules.mk", "generate-rules-mk"),
            ("keymap.h", "generate-keymap-h"),
        ] {
            let f = o.join(file).to_string_lossy().into_owned();
            let r = util::run(
                util::keyfab(&tree)
                    .env("SOURCE_DATE_EPOCH", &epoch)
                    .args(["qmk", sub, "--quiet", "--output", &f, path]),
            );
            assert_eq!(r.code, 0, "{path} {file}: {}", r.stderr);
            compare(path, &want.join(file), &o.join(file));
        }
    }
    eprintln!("{same} files identical, {} differ", diffs.len());
    for d in &diffs {
        eprintln!("DIFF {d}");
    }
    assert!(diffs.is_empty());
}

/// The `#include "<kb>.h"` the reference was made with, if any.
fn want_include(h: &Path) -> Option<String> {
    let text = std::fs::read_to_string(h).ok()?;
    text.lines()
        .find(|l| l.starts_with("#include \"") && *l != "#include \"quantum.h\"")
        .map(|l| l[10..l.len() - 1].to_string())
}
