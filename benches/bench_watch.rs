//! Watch-mode latency (issue #8): from a saved file to the rebuild line
//! (firmware written), on a scratch copy of the fixture tree. Prints each
//! sample's latency, the build's own time, and the overhead beyond the
//! compile + link (debounce + event delivery + planning) against the goal of
//! 100 ms plus the compile and link.
//!
//! Run: `cargo build --release -p keyfab-cli && cargo run --release -p keyfab-benches --bin bench-watch`

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let bin = common::keyfab_bin();
    let scratch = tempfile::tempdir().unwrap();
    let tree = scratch.path().join("tree");
    let src = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tree");
    common::copy_dir(&src, &tree);
    let samples = 8;
    let mut child = Command::new(&bin)
        .arg("--tree")
        .arg(&tree)
        .arg("--cache")
        .arg(scratch.path().join("cache"))
        .args([
            "watch",
            "solo:default",
            "--max-builds",
            &(samples + 1).to_string(),
        ])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    println!("initial: {first}");
    std::thread::sleep(Duration::from_millis(500));
    let keymap = tree.join("keyboards/solo/keymaps/default/keymap.c");
    let original = std::fs::read_to_string(&keymap).unwrap();
    let keys = ["KC_B", "KC_C", "KC_D", "KC_E"];
    let mut overheads = Vec::new();
    for i in 0..samples {
        let text = original.replacen("KC_A", keys[i % keys.len()], 1);
        let saved = Instant::now();
        std::fs::write(&keymap, text).unwrap();
        let line = lines.next().unwrap().unwrap();
        let latency = saved.elapsed().as_secs_f64() * 1e3;
        let total: f64 = line
            .rsplit("total ")
            .next()
            .and_then(|t| t.trim_end_matches(" ms").parse().ok())
            .unwrap_or(0.0);
        let overhead = latency - total;
        overheads.push(overhead);
        println!(
            "save → firmware {latency:.0} ms (build {total:.0} ms, rest {overhead:.0} ms): {}",
            &line[..line.len().min(90)]
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    overheads.sort_by(f64::total_cmp);
    let median = overheads[overheads.len() / 2];
    println!(
        "latency beyond the build (debounce 40 ms + events): median {median:.0} ms; the build itself includes planning from cache, generators, 1 compile and the link"
    );
    let _ = child.kill();
    let _ = child.wait();
}
