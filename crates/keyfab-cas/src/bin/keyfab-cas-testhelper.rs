//! A child process for keyfab-cas's crash, concurrency and limit tests (not
//! for users). Each mode prints one line per fact the parent checks.
//!
//!   writer DIR SEED         publish entries forever, printing each once it is published
//!   worker DIR ID N         N puts and gets on shared and private keys, checking every hit
//!   fill DIR LIMIT SIZE NAME  with RLIMIT_FSIZE = LIMIT bytes, store entry NAME of SIZE bytes
//!   readonly DIR KEY        (dropping root) open a read-only folder; look KEY up

use keyfab_cas::{
    ActionKey, CasError, Digest, KeyHasher, LocalCas, Manifest, ManifestEntry, NewAction,
    NewOutput, OpenOptions, Provenance, RunClock,
};
use std::io::Write;
use std::process::ExitCode;

/// Deterministic pseudo-random numbers (splitmix64).
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

/// The content every process derives for a key name: same name, same bytes.
fn content(name: &str, size: usize) -> Vec<u8> {
    let mut rng = Rng(u64::from_le_bytes(
        Digest::of(name.as_bytes()).0[..8].try_into().unwrap(),
    ));
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(size);
    v
}

fn key(name: &str) -> ActionKey {
    KeyHasher::new("testhelper", 1).str("name", name).finish()
}

fn arg(args: &[String], i: usize) -> &str {
    args.get(i).map(String::as_str).unwrap_or("")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match arg(&args, 1) {
        "writer" => writer(arg(&args, 2), arg(&args, 3).parse().unwrap_or(0)),
        "worker" => worker(
            arg(&args, 2),
            arg(&args, 3),
            arg(&args, 4).parse().unwrap_or(0),
        ),
        "fill" => fill(
            arg(&args, 2),
            arg(&args, 3).parse().unwrap_or(0),
            arg(&args, 4).parse().unwrap_or(0),
            arg(&args, 5),
        ),
        "readonly" => readonly(arg(&args, 2), arg(&args, 3)),
        _ => {
            eprintln!("usage: keyfab-cas-testhelper writer|worker|fill|readonly …");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let kind = if e.is_disk_full() {
                "disk-full"
            } else if e.is_read_only() {
                "read-only"
            } else {
                "other"
            };
            println!("error {kind}: {e}");
            ExitCode::from(3)
        }
    }
}

/// Publishes entries until killed. A line `published NAME SIZE` is printed
/// only after the put returned, so every printed name must survive.
fn writer(dir: &str, seed: u64) -> Result<(), CasError> {
    let cas = LocalCas::open(dir)?;
    let mut rng = Rng(seed);
    let clock = RunClock::now();
    let run = cas.begin_run("writer")?;
    let src = std::path::Path::new(dir)
        .join("..")
        .join(format!("src-{seed}.c"));
    let _ = std::fs::write(&src, content(&format!("src{seed}"), 3000));
    let out = std::io::stdout();
    for i in 0.. {
        let name = format!("w{seed}-{i}");
        let size = (rng.next() % 300_000) as usize;
        let bytes = content(&name, size);
        let stderr = format!("warning: {name}\n");
        let action = NewAction {
            stderr: stderr.as_bytes(),
            ..NewAction::success(vec![NewOutput::bytes("out.o", &bytes)])
        };
        cas.put_action(&key(&name), &action)?;
        writeln!(out.lock(), "published {name} {size}").ok();
        match rng.next() % 4 {
            0 => {
                let mut m = Manifest::default();
                m.add(ManifestEntry {
                    headers: vec![("a.h".into(), Digest::of(b"a"))],
                    action: key(&name),
                });
                cas.put_manifest(&key(&format!("direct-{name}")), &m)?;
                writeln!(out.lock(), "manifest {name}").ok();
            }
            1 => {
                cas.file_digest(&src, &clock)?;
                cas.flush()?;
            }
            2 => {
                let p = Provenance {
                    outputs: vec![("out.o".into(), Digest::of(&bytes))],
                    ..Provenance::default()
                };
                cas.record_provenance(run, &name, &p)?;
                writeln!(out.lock(), "provenance {name}").ok();
            }
            _ => {}
        }
    }
    Ok(())
}

/// Puts and gets: keys s0..s15 are shared by every worker (same content),
/// p{ID}-* are private. Every hit's bytes are checked.
fn worker(dir: &str, id: &str, n: u64) -> Result<(), CasError> {
    let opts = OpenOptions {
        durable: false,
        ..OpenOptions::default()
    };
    let cas = LocalCas::open_with(dir, opts)?;
    let mut rng = Rng(id.bytes().map(u64::from).sum::<u64>() * 7919);
    let mut bad = 0;
    for i in 0..n {
        let name = if rng.next() & 1 == 0 {
            format!("s{}", rng.next() % 16)
        } else {
            format!("p{id}-{}", i % 40)
        };
        let size = 1000 + (Digest::of(name.as_bytes()).0[0] as usize) * 200;
        let expect = content(&name, size);
        match cas.get_action(&key(&name))? {
            Some(r) => {
                let got = cas.get_blob(&r.outputs[0].digest)?;
                if got.as_deref() != Some(&expect[..]) {
                    println!("MISMATCH {name}");
                    bad += 1;
                }
            }
            None => {
                cas.put_action(
                    &key(&name),
                    &NewAction::success(vec![NewOutput::bytes("o", &expect)]),
                )?;
            }
        }
        if i % 50 == 0 {
            cas.flush()?;
        }
    }
    // Every worker ends with all its keys present, so the parent knows
    // exactly how many entries there must be.
    let names = (0..16)
        .map(|s| format!("s{s}"))
        .chain((0..40).map(|i| format!("p{id}-{i}")));
    for name in names {
        let size = 1000 + (Digest::of(name.as_bytes()).0[0] as usize) * 200;
        if cas.get_action(&key(&name))?.is_none() {
            let bytes = content(&name, size);
            cas.put_action(
                &key(&name),
                &NewAction::success(vec![NewOutput::bytes("o", &bytes)]),
            )?;
        }
    }
    cas.flush()?;
    println!("worker {id} done, {bad} mismatches");
    if bad > 0 {
        std::process::exit(4);
    }
    Ok(())
}

/// Stores SIZE bytes with the file-size limit at LIMIT: the portable way
/// to make writes fail as on a full disk (EFBIG instead of ENOSPC).
fn fill(dir: &str, limit: u64, size: usize, name: &str) -> Result<(), CasError> {
    let cas = LocalCas::open(dir)?;
    // SAFETY: plain libc calls on this process's own limits and signals.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
    }
    let bytes = content(name, size);
    cas.put_action(
        &key(name),
        &NewAction::success(vec![NewOutput::bytes("k.o", &bytes)]),
    )?;
    println!("stored");
    Ok(())
}

/// Opens a cache folder the process may not write: a writable open must
/// fail clearly, a read-only open must still answer lookups.
fn readonly(dir: &str, name: &str) -> Result<(), CasError> {
    // SAFETY: dropping privileges of this process only.
    unsafe {
        if libc::geteuid() == 0 {
            libc::setgid(65534);
            libc::setuid(65534);
        }
    }
    match LocalCas::open(dir) {
        Ok(_) => println!("writable-open succeeded"),
        Err(e) => println!(
            "writable-open {}: {e}",
            if e.is_read_only() {
                "read-only"
            } else {
                "other"
            }
        ),
    }
    let cas = LocalCas::open_with(
        dir,
        OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        },
    )?;
    match cas.get_action(&key(name))? {
        Some(r) => {
            let ok = cas.get_blob(&r.outputs[0].digest)?.is_some();
            println!("lookup hit {ok}");
        }
        None => println!("lookup miss"),
    }
    match cas.put_bytes(b"x") {
        Ok(_) => println!("put succeeded"),
        Err(e) => println!(
            "put {}: {e}",
            if e.is_read_only() {
                "read-only"
            } else {
                "other"
            }
        ),
    }
    Ok(())
}
