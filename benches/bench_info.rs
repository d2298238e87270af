//! Merged-info speed on a real QMK tree: runs the real `keyfab` binary
//! (whole process, as a user would) and prints the figures against the goals:
//! every keyboard (`keyfab info --all --format json`) ≤ 3 s, one keyboard
//! ≤ 30 ms.
//!
//! Usage: KEYFAB_QMK_TREE=/path/to/qmk cargo run --release -p keyfab-benches --bin bench-info
//! (`KEYFAB_BIN` overrides the binary; default: `keyfab` next to this one.)

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn keyfab_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYFAB_BIN") {
        return p.into();
    }
    let me = std::env::current_exe().expect("own path");
    me.with_file_name("keyfab")
}

/// Wall time of each of `runs` runs of `keyfab args…` (output discarded).
fn time(bin: &PathBuf, tree: &str, args: &[&str], runs: usize) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            let status = Command::new(bin)
                .arg("--tree")
                .arg(tree)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run keyfab");
            let t = start.elapsed();
            assert!(
                status.success() || args.contains(&"-kb"),
                "keyfab {args:?} failed"
            );
            t
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2])
}

fn line(what: &str, times: Vec<Duration>, goal: Duration) {
    let (best, med) = median(times);
    let verdict = if med <= goal { "meets" } else { "misses" };
    println!(
        "{what:<44} best {:>8.1} ms  median {:>8.1} ms  goal ≤ {:>6.0} ms  {verdict}",
        best.as_secs_f64() * 1e3,
        med.as_secs_f64() * 1e3,
        goal.as_secs_f64() * 1e3
    );
}

fn main() {
    let Some(tree) = std::env::var_os("KEYFAB_QMK_TREE") else {
        eprintln!("set KEYFAB_QMK_TREE to a QMK tree");
        std::process::exit(2);
    };
    let tree = tree.to_string_lossy().into_owned();
    let bin = keyfab_bin();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "keyfab info on {tree} ({cores} cores, load average {})",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    // warm the page cache once
    time(&bin, &tree, &["info", "--all", "--format", "json", "-q"], 1);
    line(
        "info --all --format json (every keyboard)",
        time(&bin, &tree, &["info", "--all", "--format", "json", "-q"], 5),
        Duration::from_secs(3),
    );
    for kb in ["planck/rev6", "clueboard/66/rev3", "keebio/iris/rev4"] {
        line(
            &format!("info -kb {kb} -f json"),
            time(&bin, &tree, &["info", "-kb", kb, "-f", "json", "-q"], 11),
            Duration::from_millis(30),
        );
    }
    line(
        "info -kb 0xcb/splaytoraid -km default -f json",
        time(
            &bin,
            &tree,
            &[
                "info",
                "-kb",
                "0xcb/splaytoraid",
                "-km",
                "default",
                "-f",
                "json",
                "-q",
            ],
            11,
        ),
        Duration::from_millis(30),
    );
}
