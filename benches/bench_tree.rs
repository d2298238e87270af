//! Whole-process timings of the tree commands (issue #2):
//! `keyfab list-keyboards` (goal ≤ 150 ms on the real tree; QMK: 1.35 s) and
//! `keyfab list-keymaps` of one keyboard.
//!
//! Run: `cargo build --release -p keyfab-cli && KEYFAB_QMK_TREE=/path/to/qmk cargo run --release -p keyfab-benches --bin bench-tree`

mod common;

use std::process::Command;
use std::time::Duration;

fn main() {
    let bin = common::keyfab_bin();
    let (tree, what) = common::tree();
    println!("keyfab tree benchmarks on the {what} at {}", tree.display());
    let cmd = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.arg("--tree").arg(&tree).args(args);
        c
    };
    let t = common::time_process(|| cmd(&["list-keyboards"]), 20);
    common::report("list-keyboards", &t, Duration::from_millis(150));
    let kb = std::env::var("BENCH_KEYBOARD").unwrap_or_else(|_| {
        if what == "real QMK tree" {
            "planck/rev6".into()
        } else {
            "ortho/two".into()
        }
    });
    let t = common::time_process(|| cmd(&["list-keymaps", "-kb", &kb]), 20);
    common::report(
        &format!("list-keymaps -kb {kb}"),
        &t,
        Duration::from_millis(150),
    );
    let t = common::time_process(|| cmd(&["resolve", "-kb", &kb, "-km", "default"]), 20);
    common::report(
        &format!("resolve -kb {kb} -km default"),
        &t,
        Duration::from_millis(150),
    );
}
