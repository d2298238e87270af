//! Watch-mode latency (issue #8): from a saved file to the rebuild line
//! (firmware written), against the goal of 100 ms plus the compile time of
//! the objects that truly changed plus the link.
//!
//! Three kinds of save, each timed from the write to the line:
//! - a true edit of the keymap (a key no earlier sample used): its object
//!   recompiles and the firmware relinks. The compiler, linker and objcopy
//!   run through a wrapper (this binary, under their names first on the
//!   watch's PATH) that logs when each ran, so overhead = latency − the time
//!   steps were running (compile + link + conversion, as keyfab ran them;
//!   starting the wrapper, ~1 ms a step, counts as overhead);
//! - a save of the same bytes: nothing compiles, nothing links; the whole
//!   latency is overhead (events, debounce, refresh, plan check, cache
//!   look-ups, generators, provenance record);
//! - an edit back to an earlier sample's keymap: object and link from the
//!   cache; overhead too.
//!
//! On the fixture tree (a scratch copy, solo:default) by default; on a real
//! tree with `KEYFAB_QMK_TREE` (in place; the keymap is restored at the end),
//! target `BENCH_TARGET` (planck/rev5:default), keymap file `BENCH_KEYMAP`
//! (keyboards/planck/keymaps/default/keymap.c) whose first `BENCH_KEY` (KC_Q)
//! each true edit replaces. The cache is a fresh temp folder unless
//! `BENCH_CACHE` names one (the wrapped compiler is another compiler to
//! the cache: the first build compiles everything). `BENCH_SAMPLES` (8) of
//! each kind.
//!
//! Run: `cargo build --release -p keyfab-cli && cargo run --release -p keyfab-benches --bin bench-watch`

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The watch's default debounce, part of every latency.
const DEBOUNCE_MS: f64 = 40.0;
const GOAL_MS: f64 = 100.0;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// "N compiled", "link ran" and "total N ms" of a rebuild line.
struct Line {
    compiled: usize,
    linked: bool,
    total_ms: f64,
}

fn parse(line: &str) -> Line {
    let num_before = |what: &str| -> Option<f64> {
        let i = line.find(what)?;
        line[..i].rsplit(' ').next()?.parse().ok()
    };
    Line {
        compiled: num_before(" compiled").unwrap_or(0.0) as usize,
        linked: line.contains("link ran"),
        total_ms: line
            .rsplit("total ")
            .next()
            .and_then(|t| t.trim_end_matches(" ms").parse().ok())
            .unwrap_or(0.0),
    }
}

/// Writes a file's text back when dropped.
struct Restore(PathBuf, String);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, &self.1);
    }
}

/// One save and its rebuild.
struct Sample {
    /// From the write to the rebuild line.
    latency: f64,
    /// While steps (compiles, link, conversion) ran, and compiles alone.
    steps: f64,
    compiles: f64,
    /// CPU time of keyfab's own threads (not the compilers': they are
    /// other processes), a figure load on the machine hardly changes.
    cpu: f64,
    line: String,
}

impl Sample {
    fn overhead(&self) -> f64 {
        self.latency - self.steps
    }
}

/// CPU time so far of every thread of process `pid` (schedstat, ns).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn main() {
    if let Some(code) = common::wrapper_mode() {
        std::process::exit(code);
    }
    let bin = common::keyfab_bin();
    let (src_tree, what) = common::tree();
    let scratch = tempfile::tempdir().unwrap();
    let real = what != "fixture tree";
    let (tree, target, keymap_rel, key) = if real {
        (
            src_tree,
            env_or("BENCH_TARGET", "planck/rev5:default"),
            env_or("BENCH_KEYMAP", "keyboards/planck/keymaps/default/keymap.c"),
            env_or("BENCH_KEY", "KC_Q"),
        )
    } else {
        let t = scratch.path().join("tree");
        common::copy_dir(&src_tree, &t);
        (
            t,
            "solo:default".to_string(),
            "keyboards/solo/keymaps/default/keymap.c".to_string(),
            "KC_A".to_string(),
        )
    };
    let cache: PathBuf = std::env::var_os("BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| scratch.path().join("cache"));
    let samples: usize = env_or("BENCH_SAMPLES", "8").parse().unwrap();
    let keymap = tree.join(&keymap_rel);
    let original = std::fs::read_to_string(&keymap).unwrap();
    // Put back also when a sample fails: a real tree is edited in place.
    let _restore = Restore(keymap.clone(), original.clone());
    // Another key per sample (the comment naming the run and the sample
    // changes no object), so each true edit truly recompiles and relinks,
    // also with a kept cache.
    let letters: Vec<String> = ('B'..='Z')
        .map(|c| format!("KC_{c}"))
        .filter(|k| *k != key)
        .collect();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The first `key` as a whole word (KC_Q, not KC_QUOT).
    let at = original
        .match_indices(&key)
        .map(|(i, _)| i)
        .find(|&i| {
            !original[i + key.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        })
        .unwrap_or_else(|| panic!("{key} is not in {keymap_rel}"));
    let edit = |i: usize| {
        format!(
            "{}{}{}\n// bench-watch {stamp} {i}\n",
            &original[..at],
            letters[i % letters.len()],
            &original[at + key.len()..]
        )
    };

    let uptime = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "watch latency on the {what} ({target}, {keymap_rel}), load average {}",
        uptime.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    // The plan (made, or from the cache) names the programs to wrap.
    let log = scratch.path().join("steps.log");
    let (wrapped, wrap_env) = common::wrap_programs(
        &bin,
        &tree,
        &cache,
        &target,
        &scratch.path().join("wrap"),
        &log,
    );
    println!("steps timed through a wrapper of {}", wrapped.join(", "));

    let kinds = 3 * samples;
    let mut child = Command::new(&bin)
        .arg("--tree")
        .arg(&tree)
        .arg("--cache")
        .arg(&cache)
        .args(["watch", &target, "--max-builds", &(kinds + 1).to_string()])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .envs(wrap_env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    println!("initial: {first}");
    std::thread::sleep(Duration::from_millis(500));

    let pid = child.id();
    let mut save = |text: &str| -> Sample {
        let since = common::now_ns();
        let cpu_before = cpu_ns(pid);
        let saved = Instant::now();
        std::fs::write(&keymap, text).unwrap();
        let line = lines.next().expect("a rebuild line").unwrap();
        let latency = saved.elapsed().as_secs_f64() * 1e3;
        assert!(!line.contains(": error:"), "the rebuild failed: {line}");
        Sample {
            latency,
            steps: common::step_ms(&log, since, None),
            compiles: common::step_ms(&log, since, Some("compile")),
            cpu: (cpu_ns(pid) - cpu_before) as f64 / 1e6,
            line,
        }
    };
    let short = |line: &str| {
        let at = line.find(" → ").map_or(0, |i| i + " → ".len());
        line[at..].chars().take(100).collect::<String>()
    };
    let show = |what: String, s: &Sample| {
        println!(
            "{what}: save → line {:.0} ms = compile {:.0} + link {:.0} + overhead {:.0} ms (keyfab's build {:.0} ms of it; keyfab's CPU {:.0} ms): {}",
            s.latency,
            s.compiles,
            s.steps - s.compiles,
            s.overhead(),
            parse(&s.line).total_ms,
            s.cpu,
            short(&s.line)
        );
    };

    let mut true_edits = Vec::new();
    let mut noops = Vec::new();
    let mut cached = Vec::new();
    for i in 0..samples {
        let text = edit(i);
        let s = save(&text);
        show(format!("edit {i}"), &s);
        let l = parse(&s.line);
        if l.compiled == 0 && !l.linked {
            // a kept cache that has seen this keymap
            cached.push(s);
        } else {
            true_edits.push(s);
        }
        std::thread::sleep(Duration::from_millis(300));

        // the same bytes again: nothing to do but notice
        let s = save(&text);
        show(format!("same bytes {i}"), &s);
        let l = parse(&s.line);
        assert!(l.compiled == 0 && !l.linked, "{}", s.line);
        noops.push(s);
        std::thread::sleep(Duration::from_millis(300));
    }
    for i in 0..samples {
        // back to an earlier sample: object and link from the cache
        let s = save(&edit(i));
        show(format!("earlier edit {i}"), &s);
        cached.push(s);
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = child.kill();
    let _ = child.wait();

    let verdict = |ms: f64| if ms <= GOAL_MS { "ok" } else { "OVER GOAL" };
    println!("--- overhead (latency beyond the compile and link; includes the {DEBOUNCE_MS:.0} ms debounce), goal ≤ {GOAL_MS:.0} ms");
    for (what, v) in [
        ("true edit", &true_edits),
        ("same bytes saved", &noops),
        ("edit to cached content", &cached),
    ] {
        if v.is_empty() {
            continue;
        }
        let m = common::median(v.iter().map(Sample::overhead).collect());
        let of = |f: fn(&Sample) -> f64| common::median(v.iter().map(f).collect());
        println!(
            "{what}: median overhead {m:.0} ms {} (latency {:.0}, compile + link {:.0}, keyfab's build beyond them {:.0}; keyfab's CPU {:.0} ms), {} samples",
            verdict(m),
            of(|s| s.latency),
            of(|s| s.steps),
            of(|s| parse(&s.line).total_ms - s.steps),
            of(|s| s.cpu),
            v.len()
        );
    }
}
