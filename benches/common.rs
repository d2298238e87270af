//! Shared helpers for the bench binaries: find the keyfab binary, time whole
//! processes, print a line per figure with its goal and the ratio.

#![allow(dead_code)]

use serde_json::Value;
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
    replicate(src, dest, &|from, to| {
        std::fs::copy(from, to).unwrap();
    });
}

/// A second checkout of a tree in another folder, as a CI runner has: like
/// [`copy_dir`], but files are hard links where the file system allows
/// (a real tree is gigabytes; nothing here writes into a tree file).
pub fn link_dir(src: &Path, dest: &Path) {
    replicate(src, dest, &|from, to| {
        if std::fs::hard_link(from, to).is_err() {
            std::fs::copy(from, to).unwrap();
        }
    });
}

fn replicate(src: &Path, dest: &Path, file: &dyn Fn(&Path, &Path)) {
    if src.is_file() {
        file(src, dest);
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
            replicate(&entry.path(), &to, file);
        } else {
            file(&entry.path(), &to);
        }
    }
}

// ---- Steps timed through a wrapper ----
//
// The compilers, linker and converters a plan runs are wrapped by the bench
// binary itself (symlinked under their names first on keyfab's PATH, see
// [`wrap_programs`]): each run logs when it started and ended, so a bench
// can tell keyfab's own time from the steps'. Every bench `main` first
// calls [`wrapper_mode`].

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The plan's steps (`keyfab build -n`), as JSON.
pub fn plan(bin: &Path, tree: &Path, cache: &Path, target: &str) -> Vec<Value> {
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
pub fn programs(steps: &[Value]) -> Vec<String> {
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
/// (UNIX ns; KIND `compile` for `-c`, else `link`) to `$BENCH_STEP_LOG`.
pub fn wrapper_mode() -> Option<i32> {
    let wrapped = std::env::var_os("BENCH_WRAPPED")?;
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
    // CPU time of the program and everything it started (cc1, as, an LTO
    // link's partitions), waited for above.
    let cpu_ns = {
        // SAFETY: getrusage only writes the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
        let ns = |t: libc::timeval| t.tv_sec as u128 * 1_000_000_000 + t.tv_usec as u128 * 1000;
        ns(u.ru_utime) + ns(u.ru_stime)
    };
    if let Some(log) = std::env::var_os("BENCH_STEP_LOG") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
            .unwrap();
        f.write_all(
            format!("{start} {end} {kind} {cpu_ns} {}\n", name.to_string_lossy()).as_bytes(),
        )
        .unwrap();
    }
    Some(status.code().unwrap_or(1))
}

pub fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// One step the wrapper logged: when it ran (UNIX ns), its kind
/// (`compile` or `link`) and its CPU time (ns, with what it started).
pub struct LoggedStep {
    pub start: u128,
    pub end: u128,
    pub kind: String,
    pub cpu_ns: u128,
}

/// The steps in `log` that started at or after `since`, of `kind` (any,
/// with `None`).
pub fn logged_steps(log: &Path, since: u128, kind: Option<&str>) -> Vec<LoggedStep> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            let step = LoggedStep {
                start: w.next()?.parse().ok()?,
                end: w.next()?.parse().ok()?,
                kind: w.next()?.to_string(),
                cpu_ns: w.next().and_then(|c| c.parse().ok()).unwrap_or(0),
            };
            (step.start >= since && kind.is_none_or(|want| want == step.kind)).then_some(step)
        })
        .collect()
}

/// Milliseconds during which steps of `kind` (any, with `None`) that
/// started at or after `since` were running (overlaps counted once).
pub fn step_ms(log: &Path, since: u128, kind: Option<&str>) -> f64 {
    let mut spans: Vec<(u128, u128)> = logged_steps(log, since, kind)
        .iter()
        .map(|s| (s.start, s.end))
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

/// CPU time (user + system) of the children waited for so far, and of
/// everything they waited for: a keyfab run's whole process tree.
pub fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Milliseconds of all steps of `kind` (any, with `None`) that started at
/// or after `since`, added up (overlapping steps each count).
pub fn step_sum_ms(log: &Path, since: u128, kind: Option<&str>) -> f64 {
    let ns: u128 = logged_steps(log, since, kind)
        .iter()
        .map(|s| s.end.saturating_sub(s.start))
        .sum();
    ns as f64 / 1e6
}

/// CPU milliseconds of all steps that started at or after `since` (the
/// programs and what they started: the compiler's own work).
pub fn step_cpu_ms(log: &Path, since: u128) -> f64 {
    let ns: u128 = logged_steps(log, since, None)
        .iter()
        .map(|s| s.cpu_ns)
        .sum();
    ns as f64 / 1e6
}

/// The plan's programs (see [`programs`]) wrapped in `dir`: returns the
/// PATH to run keyfab with, and the env to set (wrapped folder, log).
pub fn wrap_programs(
    bin: &Path,
    tree: &Path,
    cache: &Path,
    target: &str,
    dir: &Path,
    log: &Path,
) -> (Vec<String>, Vec<(String, std::ffi::OsString)>) {
    let steps = plan(bin, tree, cache, target);
    std::fs::create_dir_all(dir).unwrap();
    let me = std::env::current_exe().unwrap();
    let wrapped = programs(&steps);
    for name in &wrapped {
        let _ = std::fs::remove_file(dir.join(name));
        std::os::unix::fs::symlink(&me, dir.join(name)).unwrap();
    }
    let path = std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let env = vec![
        ("PATH".to_string(), path),
        ("BENCH_WRAPPED".to_string(), dir.as_os_str().to_owned()),
        ("BENCH_STEP_LOG".to_string(), log.as_os_str().to_owned()),
    ];
    (wrapped, env)
}

/// The middle value (NaN for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Moves `dir` (a `.build/`, a used cache) out of the way into `aside`
/// instead of deleting it; `aside` goes when the bench ends. ext4 skips
/// inodes freed in the last minute when it allocates new ones, so a cold
/// build right after deleting the last one's ~10^4 files spends seconds
/// more in the kernel than a CI machine's first build does (a sweep's
/// keyfab CPU was ~2/3 inode allocation that way).
pub fn set_aside(dir: &Path, aside: &Path) {
    if !dir.exists() {
        return;
    }
    std::fs::create_dir_all(aside).unwrap();
    let n = std::fs::read_dir(aside).map_or(0, |d| d.count());
    if std::fs::rename(dir, aside.join(n.to_string())).is_err() {
        // Another file system: delete it after all.
        let _ = std::fs::remove_dir_all(dir);
    }
}
