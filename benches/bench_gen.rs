//! Whole-process timings of every generator call a QMK build makes through
//! `$(QMK_BIN)` (issue #4), run as make runs them (from the tree root, with
//! make's arguments), against the goal of 15 ms per call (QMK: 0.8–1.0 s).
//!
//! Run: `cargo build --release -p keyfab-cli && KEYFAB_QMK_TREE=/path/to/qmk cargo run --release -p keyfab-benches --bin bench-gen`
//! Add `BENCH_COMPILE_TREE=/scratch/copy/of/qmk BENCH_QMK=/path/to/qmk` for the no-op
//! `qmk compile` of planck/rev5 with keyfab as `QMK_BIN` vs stock, as a ratio.
//! (`BENCH_KEYBOARD`, `BENCH_KEYMAP_JSON` pick the target; the defaults are
//! planck/rev5 and a keymap.json of the tree, or our fixture tree's gentest/basic.)

mod common;

use std::process::Command;
use std::time::Duration;

fn main() {
    let bin = common::keyfab_bin();
    let (tree, what) = common::tree();
    let real = what == "real QMK tree";
    println!(
        "keyfab generator benchmarks on the {what} at {}",
        tree.display()
    );
    let kb = std::env::var("BENCH_KEYBOARD")
        .unwrap_or_else(|_| if real { "planck/rev5" } else { "gentest/basic" }.into());
    let km_json = std::env::var("BENCH_KEYMAP_JSON").unwrap_or_else(|_| {
        if real {
            "keyboards/handwired/onekey/keymaps/community_module/keymap.json"
        } else {
            "keyboards/gentest/basic/keymaps/default/keymap.json"
        }
        .into()
    });
    let km_kb = if real {
        "handwired/onekey/promicro"
    } else {
        "gentest/basic"
    };
    let out = tempfile_dir();
    let o = |name: &str| out.join(name).to_string_lossy().into_owned();
    let calls: Vec<(String, Vec<String>)> = vec![
        (
            "generate-rules-mk (keyboard)",
            vec![
                "generate-rules-mk",
                "--quiet",
                "--escape",
                "--keyboard",
                &kb,
                "--output",
                &o("info_rules.mk"),
            ],
        ),
        (
            "generate-config-h (keyboard)",
            vec![
                "generate-config-h",
                "--quiet",
                "--keyboard",
                &kb,
                "--output",
                &o("info_config.h"),
            ],
        ),
        (
            "generate-keyboard-c",
            vec![
                "generate-keyboard-c",
                "--quiet",
                "--keyboard",
                &kb,
                "--output",
                &o("default_keyboard.c"),
            ],
        ),
        (
            "generate-keyboard-h",
            vec![
                "generate-keyboard-h",
                "--quiet",
                "--keyboard",
                &kb,
                "--include",
                "--output",
                &o("default_keyboard.h"),
            ],
        ),
        (
            "generate-version-h",
            vec!["generate-version-h", "-q", "-o", &o("version.h")],
        ),
        (
            "generate-make-dependencies",
            vec![
                "generate-make-dependencies",
                "-kb",
                &kb,
                "-km",
                "default",
                "-o",
                &o("info_deps.d"),
            ],
        ),
        (
            "generate-community-modules-rules-mk (no keymap.json)",
            vec![
                "generate-community-modules-rules-mk",
                "-kb",
                &kb,
                "--quiet",
                "--escape",
                "--output",
                &o("community_rules.mk"),
            ],
        ),
        (
            "generate-rules-mk (keymap.json)",
            vec![
                "generate-rules-mk",
                "--quiet",
                "--escape",
                "--output",
                &o("rules.mk"),
                &km_json,
            ],
        ),
        (
            "json2c",
            vec!["json2c", "--quiet", "--output", &o("keymap.c"), &km_json],
        ),
        (
            "generate-config-h (keymap.json)",
            vec![
                "generate-config-h",
                "--quiet",
                "--output",
                &o("config.h"),
                &km_json,
            ],
        ),
        (
            "generate-keymap-h",
            vec![
                "generate-keymap-h",
                "--quiet",
                "--output",
                &o("keymap.h"),
                &km_json,
            ],
        ),
        (
            "generate-community-modules-h",
            vec![
                "generate-community-modules-h",
                "-kb",
                km_kb,
                "--quiet",
                "--output",
                &o("community_modules.h"),
                &km_json,
            ],
        ),
        (
            "generate-community-modules-c",
            vec![
                "generate-community-modules-c",
                "-kb",
                km_kb,
                "--quiet",
                "--output",
                &o("community_modules.c"),
                &km_json,
            ],
        ),
    ]
    .into_iter()
    .map(|(n, a)| (n.to_string(), a.into_iter().map(String::from).collect()))
    .collect();
    let goal = Duration::from_millis(15);
    let mut over = 0;
    for (name, args) in &calls {
        let t = common::time_process(
            || {
                let mut c = Command::new(&bin);
                c.current_dir(&tree).arg("qmk").args(args);
                c
            },
            15,
        );
        common::report(name, &t, goal);
        // CPU time (user + system) of the same call: what the machine's
        // other load cannot inflate.
        let before = common::children_cpu();
        let n = 10;
        for _ in 0..n {
            let status = Command::new(&bin)
                .current_dir(&tree)
                .arg("qmk")
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .expect("spawn");
            assert!(status.success());
        }
        let cpu = (common::children_cpu() - before).as_secs_f64() / n as f64;
        println!("    cpu {:.1} ms per call", cpu * 1e3);
        let mut s = t.clone();
        s.sort();
        if s[s.len() / 2] > goal {
            over += 1;
        }
    }
    println!(
        "{} of {} calls within the 15 ms goal",
        calls.len() - over,
        calls.len()
    );
    let _ = std::fs::remove_dir_all(&out);
    noop_compile(&bin);
}

/// The no-op `qmk compile -kb planck/rev5 -km default`, stock vs with
/// `-e QMK_BIN="keyfab qmk"`, as a ratio. Needs `BENCH_COMPILE_TREE`: a
/// scratch copy of the QMK tree (a build writes into it; never the real
/// one), and QMK's CLI as `$BENCH_QMK` (default `qmk`). Each side is built
/// once first, so what is timed is the no-op.
fn noop_compile(bin: &std::path::Path) {
    let Some(tree) = std::env::var_os("BENCH_COMPILE_TREE") else {
        println!(
            "no-op qmk compile: skipped (set BENCH_COMPILE_TREE to a scratch copy of the tree)"
        );
        return;
    };
    let qmk = std::env::var("BENCH_QMK").unwrap_or_else(|_| "qmk".into());
    let kb = std::env::var("BENCH_COMPILE_KEYBOARD").unwrap_or_else(|_| "planck/rev5".into());
    let keyfab_bin = format!("QMK_BIN={} qmk", bin.display());
    let run = |with_keyfab: bool| {
        let mut c = Command::new(&qmk);
        c.current_dir(&tree)
            .env("QMK_HOME", &tree)
            .args(["compile", "-kb", &kb, "-km", "default"]);
        if with_keyfab {
            c.args(["-e", &keyfab_bin]);
        }
        c
    };
    let mut medians = Vec::new();
    for with_keyfab in [false, true] {
        let t = common::time_process(|| run(with_keyfab), 5);
        let name = if with_keyfab {
            "keyfab qmk"
        } else {
            "stock qmk"
        };
        common::report(
            &format!("no-op qmk compile -kb {kb} -km default, QMK_BIN {name}"),
            &t,
            Duration::from_secs(4),
        );
        let mut s = t.clone();
        s.sort();
        medians.push(s[s.len() / 2]);
    }
    println!(
        "no-op qmk compile ratio keyfab/stock: {:.2}",
        medians[1].as_secs_f64() / medians[0].as_secs_f64()
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("keyfab-bench-gen-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
