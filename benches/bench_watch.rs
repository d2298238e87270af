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

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
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

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The plan's steps (`keyfab build -n`), as JSON.
fn plan(bin: &Path, tree: &Path, cache: &Path, target: &str) -> Vec<Value> {
    let out = Command::new(bin)
        .arg("--tree")
        .arg(tree)
        .arg("--cache")
        .arg(cache)
        .args(["build", target, "-n"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("keyfab build -n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a plan step"))
        .collect()
}

/// Names of the programs the plan's compile, link and conversion steps run
/// through PATH.
fn programs(steps: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in steps {
        let mut argvs = vec![strings(&s["argv"])];
        if s["kind"] == "generate" || s["kind"] == "copy" {
            continue;
        }
        argvs.extend(s["then"].as_array().into_iter().flatten().map(strings));
        for argv in argvs {
            if let Some(p) = argv.first().filter(|p| !p.contains('/')) {
                if !names.contains(p) {
                    names.push(p.clone());
                }
            }
        }
    }
    names
}

/// When run under a wrapped program's name (see [`main`]): runs the real
/// program (the next one of that name on PATH) and logs `START END KIND`
/// (UNIX ns; KIND `compile` for `-c`, else `link`) to `$BENCH_WATCH_LOG`.
fn wrapper_mode() -> Option<i32> {
    let wrapped = std::env::var_os("BENCH_WATCH_WRAPPED")?;
    let mut args = std::env::args_os();
    let name = PathBuf::from(args.next()?);
    let name = name.file_name()?.to_os_string();
    let rest: Vec<_> = args.collect();
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .filter(|d| d.as_os_str() != wrapped)
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
        .expect("the wrapped program on PATH");
    let start = now_ns();
    let status = Command::new(real).args(&rest).status().expect("run it");
    let end = now_ns();
    let kind = if rest.iter().any(|a| a == "-c") {
        "compile"
    } else {
        "link"
    };
    if let Some(log) = std::env::var_os("BENCH_WATCH_LOG") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
            .unwrap();
        f.write_all(format!("{start} {end} {kind}\n").as_bytes())
            .unwrap();
    }
    Some(status.code().unwrap_or(1))
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Milliseconds during which steps of `kind` (any, with `None`) that
/// started at or after `since` were running (overlaps counted once).
fn step_ms(log: &Path, since: u128, kind: Option<&str>) -> f64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut spans: Vec<(u128, u128)> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            let (s, e, k) = (w.next()?.parse().ok()?, w.next()?.parse().ok()?, w.next()?);
            (s >= since && kind.is_none_or(|want| want == k)).then_some((s, e))
        })
        .collect();
    spans.sort();
    let mut total = 0u128;
    let mut covered_to = 0u128;
    for (s, e) in spans {
        let s = s.max(covered_to);
        if e > s {
            total += e - s;
            covered_to = e;
        }
    }
    total as f64 / 1e6
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

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Some(code) = wrapper_mode() {
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
    // The plan (made, or from the cache), for the programs to wrap.
    let steps = plan(&bin, &tree, &cache, &target);
    let wrap = scratch.path().join("wrap");
    std::fs::create_dir_all(&wrap).unwrap();
    let me = std::env::current_exe().unwrap();
    let wrapped = programs(&steps);
    for name in &wrapped {
        std::os::unix::fs::symlink(&me, wrap.join(name)).unwrap();
    }
    println!("steps timed through a wrapper of {}", wrapped.join(", "));
    let log = scratch.path().join("steps.log");
    let path = std::env::join_paths(std::iter::once(wrap.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();

    let kinds = 3 * samples;
    let mut child = Command::new(&bin)
        .arg("--tree")
        .arg(&tree)
        .arg("--cache")
        .arg(&cache)
        .args(["watch", &target, "--max-builds", &(kinds + 1).to_string()])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("PATH", &path)
        .env("BENCH_WATCH_WRAPPED", &wrap)
        .env("BENCH_WATCH_LOG", &log)
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
        let since = now_ns();
        let cpu_before = cpu_ns(pid);
        let saved = Instant::now();
        std::fs::write(&keymap, text).unwrap();
        let line = lines.next().expect("a rebuild line").unwrap();
        let latency = saved.elapsed().as_secs_f64() * 1e3;
        assert!(!line.contains(": error:"), "the rebuild failed: {line}");
        Sample {
            latency,
            steps: step_ms(&log, since, None),
            compiles: step_ms(&log, since, Some("compile")),
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
        let m = median(v.iter().map(Sample::overhead).collect());
        let of = |f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
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
