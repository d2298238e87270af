//! Shared helpers for the bench binaries: find the keyfab binary, time whole
//! processes, print a line per figure with its goal and the ratio.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The keyfab binary under test: `$KEYFAB_BIN`, else the release build.
pub fn keyfab_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYFAB_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = root.join("target/release/keyfab");
    if !bin.exists() {
        eprintln!("build it first: cargo build --release -p keyfab-cli (or set KEYFAB_BIN)");
        std::process::exit(2);
    }
    bin
}

/// The tree to measure: `$KEYFAB_QMK_TREE` (a real QMK tree), else our fixture tree.
pub fn tree() -> (PathBuf, &'static str) {
    match std::env::var_os("KEYFAB_QMK_TREE") {
        Some(p) => (PathBuf::from(p), "real QMK tree"),
        None => (
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tree"),
            "fixture tree",
        ),
    }
}

/// Runs `cmd` once to warm caches, then `runs` times; returns the timings.
pub fn time_process(mut make: impl FnMut() -> Command, runs: usize) -> Vec<Duration> {
    let status = make()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn");
    assert!(status.success(), "command failed: {:?}", make());
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            let status = make()
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("spawn");
            let took = start.elapsed();
            assert!(status.success());
            took
        })
        .collect()
}

/// Prints `name: median, min (goal, ratio)` — ratio < 1 means within the goal.
pub fn report(name: &str, times: &[Duration], goal: Duration) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let min = sorted[0];
    let ratio = median.as_secs_f64() / goal.as_secs_f64();
    let verdict = if ratio <= 1.0 { "ok" } else { "OVER GOAL" };
    println!(
        "{name}: median {:.1} ms, min {:.1} ms over {} runs; goal {:.0} ms; ratio {:.2} {verdict}",
        median.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3,
        times.len(),
        goal.as_secs_f64() * 1e3,
        ratio
    );
}

/// Copies a tree (or a file) for a scratch run: symlinks stay symlinks, and
/// build output (`.build/`) is left behind.
pub fn copy_dir(src: &Path, dest: &Path) {
    if src.is_file() {
        std::fs::copy(src, dest).unwrap();
        return;
    }
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == ".build" {
            continue;
        }
        let ft = entry.file_type().unwrap();
        let to = dest.join(entry.file_name());
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &to).unwrap();
        } else if ft.is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}
