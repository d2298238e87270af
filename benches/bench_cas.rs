//! keyfab-cas figures against the goals of issue 5. Run in release:
//!   cargo run --release -p keyfab-benches --bin bench-cas [-- --stress N]
//! `--stress N` also SIGKILLs N writers (needs the helper binary:
//! `cargo build --release -p keyfab-cas` first) and checks the cache.

use keyfab_cas::{ActionKey, KeyHasher, LocalCas, NewAction, NewOutput, OpenOptions, RunClock};
use std::path::Path;
use std::time::{Duration, Instant};

/// Wall time and this thread's CPU time: on a machine shared with other
/// work, CPU time shows the cost of our own code.
struct Timer {
    wall: Instant,
    cpu: Duration,
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Timer {
    fn start() -> Timer {
        Timer {
            wall: Instant::now(),
            cpu: thread_cpu(),
        }
    }
    fn elapsed(&self) -> Duration {
        self.wall.elapsed()
    }
    fn cpu(&self) -> Duration {
        thread_cpu() - self.cpu
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn key(i: u64) -> ActionKey {
    KeyHasher::new("bench", 1).u64("i", i).finish()
}

fn report(name: &str, value: f64, unit: &str, goal: Option<(f64, bool)>) {
    match goal {
        Some((g, higher_is_better)) => {
            let ratio = if higher_is_better {
                value / g
            } else {
                g / value
            };
            let verdict = if ratio >= 1.0 { "meets" } else { "MISSES" };
            println!(
                "{name:<44} {value:>14.2} {unit:<10} goal {} {g} ({ratio:.2}x, {verdict})",
                if higher_is_better { ">=" } else { "<=" }
            );
        }
        None => println!("{name:<44} {value:>14.2} {unit}"),
    }
}

fn open(dir: &Path, durable: bool) -> LocalCas {
    LocalCas::open_with(
        dir,
        OpenOptions {
            durable,
            ..OpenOptions::default()
        },
    )
    .expect("open cache")
}

fn bench_index(dir: &Path) {
    const ACTIONS: u64 = 20_000;
    const LOOKUPS: u64 = 400_000;
    let cas = open(dir, false);
    let t = Timer::start();
    for i in 0..ACTIONS {
        let out = i.to_le_bytes();
        cas.put_action(
            &key(i),
            &NewAction::success(vec![NewOutput::bytes("a.o", &out)]),
        )
        .expect("put");
    }
    report(
        "action put (small, no fsync)",
        ACTIONS as f64 / t.elapsed().as_secs_f64(),
        "puts/s",
        None,
    );
    let mut rng = Rng(1);
    let t = Timer::start();
    let mut hits = 0u64;
    for _ in 0..LOOKUPS {
        // Half hits, half misses.
        let i = rng.next() % (2 * ACTIONS);
        hits += u64::from(cas.lookup_action(&key(i)).expect("lookup").is_some());
    }
    let per_s = LOOKUPS as f64 / t.elapsed().as_secs_f64();
    let per_cpu_s = LOOKUPS as f64 / t.cpu().as_secs_f64();
    assert!(hits > LOOKUPS / 3);
    report(
        "index lookups, one at a time (50% hits)",
        per_s,
        "lookups/s",
        Some((200_000.0, true)),
    );
    report(
        "  same, per CPU second",
        per_cpu_s,
        "lookups/s",
        Some((200_000.0, true)),
    );
    let keys: Vec<ActionKey> = (0..LOOKUPS)
        .map(|_| key(rng.next() % (2 * ACTIONS)))
        .collect();
    let t = Timer::start();
    for chunk in keys.chunks(64) {
        std::hint::black_box(cas.lookup_actions(chunk).expect("lookup"));
    }
    let per_s = LOOKUPS as f64 / t.elapsed().as_secs_f64();
    let per_cpu_s = LOOKUPS as f64 / t.cpu().as_secs_f64();
    report(
        "index lookups, batches of 64 (50% hits)",
        per_s,
        "lookups/s",
        Some((200_000.0, true)),
    );
    report(
        "  same, per CPU second",
        per_cpu_s,
        "lookups/s",
        Some((200_000.0, true)),
    );
    let t = Timer::start();
    for _ in 0..LOOKUPS / 4 {
        let i = rng.next() % ACTIONS;
        cas.get_action(&key(i)).expect("get");
    }
    report(
        "get_action (index + blob presence check)",
        (LOOKUPS / 4) as f64 / t.elapsed().as_secs_f64(),
        "lookups/s",
        None,
    );
}

fn bench_blobs(dir: &Path) {
    const BLOB: usize = 4 << 20;
    const COUNT: usize = 64; // 256 MiB
    let total = (BLOB * COUNT) as f64;
    let mut rng = Rng(7);
    let data: Vec<Vec<u8>> = (0..COUNT)
        .map(|_| {
            (0..BLOB / 8)
                .flat_map(|_| rng.next().to_le_bytes())
                .collect()
        })
        .collect();
    for durable in [false, true] {
        let sub = dir.join(format!("blobs-{durable}"));
        let cas = open(&sub, durable);
        let t = Timer::start();
        let digests: Vec<_> = data
            .iter()
            .map(|b| cas.put_bytes(b).expect("put"))
            .collect();
        let label = if durable {
            "blob put, 4 MiB blobs, fsync"
        } else {
            "blob put, 4 MiB blobs, no fsync"
        };
        report(label, total / t.elapsed().as_secs_f64() / 1e9, "GB/s", None);
        if !durable {
            // What the file system itself gives: plain writes of new files.
            let plain = dir.join("plain");
            std::fs::create_dir_all(&plain).expect("mkdir");
            let t = Timer::start();
            for (i, b) in data.iter().enumerate() {
                std::fs::write(plain.join(i.to_string()), b).expect("write");
            }
            let gbs = total / t.elapsed().as_secs_f64() / 1e9;
            report(
                "  (baseline: plain fs::write, no hashing)",
                gbs,
                "GB/s",
                None,
            );
            std::fs::remove_dir_all(&plain).expect("rm");
            // Warm: the page cache holds the blobs, as on a warm build.
            let (mut best, mut best_cpu) = (Duration::MAX, Duration::MAX);
            for _ in 0..3 {
                let t = Timer::start();
                for d in &digests {
                    let b = cas.get_blob(d).expect("get").expect("hit");
                    std::hint::black_box(b);
                }
                best = best.min(t.elapsed());
                best_cpu = best_cpu.min(t.cpu());
            }
            report(
                "blob get, 4 MiB blobs (read + blake3 verify)",
                total / best.as_secs_f64() / 1e9,
                "GB/s",
                Some((1.0, true)),
            );
            report(
                "  same, per CPU second",
                total / best_cpu.as_secs_f64() / 1e9,
                "GB/s",
                Some((1.0, true)),
            );
        }
    }
    let small = dir.join("small");
    let cas = open(&small, false);
    let objs: Vec<Vec<u8>> = (0..5000u64)
        .map(|i| {
            let mut r = Rng(i);
            (0..2048).flat_map(|_| r.next().to_le_bytes()).collect()
        })
        .collect();
    let bytes: usize = objs.iter().map(Vec::len).sum();
    let t = Timer::start();
    let ds: Vec<_> = objs
        .iter()
        .map(|o| cas.put_bytes(o).expect("put"))
        .collect();
    report(
        "blob put, 16 KiB objects, no fsync",
        ds.len() as f64 / t.elapsed().as_secs_f64(),
        "blobs/s",
        None,
    );
    let t = Timer::start();
    for d in &ds {
        std::hint::black_box(cas.get_blob(d).expect("get"));
    }
    let el = t.elapsed().as_secs_f64();
    report(
        "blob get, 16 KiB objects",
        ds.len() as f64 / el,
        "blobs/s",
        None,
    );
    report(
        "blob get, 16 KiB objects",
        bytes as f64 / el / 1e9,
        "GB/s",
        None,
    );
}

fn bench_stat_cache(dir: &Path) {
    const FILES: usize = 5000;
    const ROUNDS: usize = 10;
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let files: Vec<_> = (0..FILES)
        .map(|i| {
            let p = src.join(format!("file{i}.h"));
            std::fs::write(&p, format!("#define F{i} {i}\n").repeat(40)).expect("write");
            p
        })
        .collect();
    let cas = open(&dir.join("statcache"), false);
    // A run that starts after the files were written trusts their metadata.
    let clock = RunClock {
        start_ns: RunClock::now().start_ns + 2_000_000_000,
    };
    let t = Timer::start();
    for f in &files {
        cas.file_digest(f, &clock).expect("digest");
    }
    cas.flush().expect("flush");
    report(
        "stat cache miss (stat + hash 1 KiB + record)",
        t.elapsed().as_secs_f64() * 1e6 / FILES as f64,
        "µs/file",
        None,
    );
    drop(cas);
    let cas = open(&dir.join("statcache"), false);
    let t = Timer::start();
    for _ in 0..ROUNDS {
        for f in &files {
            std::hint::black_box(cas.file_digest(f, &clock).expect("digest"));
        }
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / (FILES * ROUNDS) as f64;
    report(
        "stat cache hit (stat + index lookup)",
        per,
        "µs/file",
        Some((2.0, false)),
    );
    report(
        "  same, CPU time",
        t.cpu().as_secs_f64() * 1e6 / (FILES * ROUNDS) as f64,
        "µs/file",
        Some((2.0, false)),
    );
    let t = Timer::start();
    let n = cas.preload_stat_cache().expect("preload");
    report(
        "stat cache preload",
        t.elapsed().as_secs_f64() * 1e3,
        &format!("ms/{n} rows"),
        None,
    );
    let t = Timer::start();
    for _ in 0..ROUNDS {
        for f in &files {
            std::hint::black_box(cas.file_digest(f, &clock).expect("digest"));
        }
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / (FILES * ROUNDS) as f64;
    report(
        "stat cache hit, preloaded (stat + map)",
        per,
        "µs/file",
        Some((2.0, false)),
    );
    report(
        "  same, CPU time",
        t.cpu().as_secs_f64() * 1e6 / (FILES * ROUNDS) as f64,
        "µs/file",
        Some((2.0, false)),
    );
    let t = Timer::start();
    for _ in 0..ROUNDS {
        for f in &files {
            std::hint::black_box(std::fs::metadata(f).expect("stat"));
        }
    }
    report(
        "  of which the stat() call alone",
        t.elapsed().as_secs_f64() * 1e6 / (FILES * ROUNDS) as f64,
        "µs/file",
        None,
    );
    report(
        "  stat() alone, CPU time",
        t.cpu().as_secs_f64() * 1e6 / (FILES * ROUNDS) as f64,
        "µs/file",
        None,
    );
}

fn stress(dir: &Path, kills: u64) {
    let helper = std::env::current_exe()
        .expect("exe")
        .with_file_name("keyfab-cas-testhelper");
    if !helper.exists() {
        println!(
            "stress: {} missing; run `cargo build --release -p keyfab-cas` first",
            helper.display()
        );
        return;
    }
    let cache = dir.join("stress");
    drop(open(&cache, true));
    let mut rng = Rng(99);
    let mut published = Vec::new();
    let t = Timer::start();
    for seed in 0..kills {
        let mut child = std::process::Command::new(&helper)
            .args([
                "writer",
                cache.to_str().expect("utf-8 path"),
                &seed.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(2 + rng.next() % 100));
        child.kill().expect("kill");
        let out = child.wait_with_output().expect("wait");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(rest) = line.strip_prefix("published ") {
                published.push(rest.split(' ').next().unwrap_or("").to_string());
            }
        }
    }
    let cas = open(&cache, true);
    let report_v = cas.verify(false).expect("verify");
    let lost = published
        .iter()
        .filter(|n| {
            cas.get_action(&KeyHasher::new("testhelper", 1).str("name", n).finish())
                .ok()
                .flatten()
                .is_none()
        })
        .count();
    println!(
        "stress: {kills} SIGKILLs in {:.1} s, {} entries published, {lost} lost, verify clean: {}",
        t.elapsed().as_secs_f64(),
        published.len(),
        report_v.is_clean()
    );
    assert!(
        report_v.is_clean() && lost == 0,
        "stress failed: {report_v:?}"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let stress_n = args
        .iter()
        .position(|a| a == "--stress")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok());
    let tmp = tempfile::tempdir().expect("temp dir");
    println!(
        "keyfab-cas benchmarks ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    bench_index(&tmp.path().join("index"));
    bench_blobs(tmp.path());
    bench_stat_cache(tmp.path());
    if let Some(n) = stress_n {
        stress(tmp.path(), n);
    }
}
