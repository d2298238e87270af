//! Real processes against one cache folder: SIGKILLed writers, concurrent
//! writers, a full disk, a read-only folder. No mocks.

mod common;

use common::{content, helper, key, Rng};
use keyfab_cas::{LocalCas, NewAction, NewOutput, OpenOptions};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Runs a writer until it has published `lines` entries, lets it go on
/// for `delay` (to land the kill at a random point of later work), kills
/// it with SIGKILL, and returns everything it reported as published.
/// Waiting for progress, not only time, keeps the test meaningful on a
/// loaded machine.
fn kill_writer(dir: &Path, seed: u64, lines: usize, delay: Duration) -> Vec<String> {
    use std::io::BufRead;
    let mut child = helper()
        .args(["writer", dir.to_str().unwrap(), &seed.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|l: &&String| l.starts_with("published"))
        .count()
        < lines
    {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break; // the writer died on its own: the checks below will say why
        }
        seen.push(line.trim_end().to_string());
    }
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL on unix
    child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    seen.extend(rest.lines().map(str::to_string));
    seen
}

#[test]
fn sigkilled_writers_lose_nothing_published_and_leave_verify_clean() {
    const KILLS: u64 = 60;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("cache");
    LocalCas::open(&dir).unwrap();
    let mut rng = Rng(0x5eed);
    let mut published: BTreeMap<String, usize> = BTreeMap::new();
    let mut manifests = Vec::new();
    let mut provenance = Vec::new();
    for seed in 0..KILLS {
        // Random points: during start-up (no line awaited, short delay)
        // or somewhere in the work after a few published entries.
        let lines = (rng.next() % 4) as usize;
        let delay = Duration::from_micros(rng.next() % 15_000);
        for line in kill_writer(&dir, seed, lines, delay) {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["published", name, size] => {
                    published.insert(name.to_string(), size.parse().unwrap());
                }
                ["manifest", name] => manifests.push(name.to_string()),
                ["provenance", name] => provenance.push(name.to_string()),
                _ => panic!("unexpected line from writer: {line}"),
            }
        }
        if seed % 20 == 19 {
            let cas = LocalCas::open(&dir).unwrap();
            let report = cas.verify(false).unwrap();
            assert!(report.is_clean(), "after {} kills: {report:?}", seed + 1);
        }
    }
    assert!(
        published.len() >= 60,
        "writers published too little: {}",
        published.len()
    );
    let cas = LocalCas::open(&dir).unwrap();
    let report = cas.verify(false).unwrap();
    assert!(report.is_clean(), "{report:?}");
    for (name, size) in &published {
        let r = cas
            .get_action(&key(name))
            .unwrap()
            .unwrap_or_else(|| panic!("lost {name}"));
        let bytes = cas
            .get_blob(&r.outputs[0].digest)
            .unwrap()
            .expect("output blob");
        assert_eq!(bytes, content(name, *size), "{name}");
        let stderr = cas.get_blob(&r.stderr).unwrap().unwrap();
        assert_eq!(stderr, format!("warning: {name}\n").as_bytes());
    }
    for name in &manifests {
        assert!(
            cas.get_manifest(&key(&format!("direct-{name}")))
                .unwrap()
                .is_some(),
            "{name}"
        );
    }
    for name in &provenance {
        assert_eq!(cas.provenance(name, 5).unwrap().len(), 1, "{name}");
    }
    // Repair tidies crash leftovers (temp files, unindexed blobs) and the
    // cache stays clean.
    let repaired = cas.verify(true).unwrap();
    assert!(repaired.is_clean());
    let after = cas.verify(false).unwrap();
    assert_eq!((after.unindexed, after.temp_files), (0, 0), "{after:?}");
}

#[test]
fn four_processes_share_keys_without_errors() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("cache");
    LocalCas::open(&dir).unwrap();
    let children: Vec<_> = (0..4)
        .map(|id| {
            helper()
                .args(["worker", dir.to_str().unwrap(), &id.to_string(), "300"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("0 mismatches"), "{text}");
    }
    let cas = LocalCas::open(&dir).unwrap();
    let report = cas.verify(false).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.unindexed, 0, "every blob written was indexed");
    // 16 shared keys, 40 private keys per worker, each with one output.
    let stats = cas.stats().unwrap();
    assert_eq!(stats.counts.actions, 16 + 4 * 40, "{stats:?}");
}

fn published_entry(dir: &Path) {
    let cas = LocalCas::open(dir).unwrap();
    let bytes = content("keep", 5000);
    cas.put_action(
        &key("keep"),
        &NewAction::success(vec![NewOutput::bytes("k.o", &bytes)]),
    )
    .unwrap();
}

fn assert_entry_intact(cas: &LocalCas) {
    let r = cas
        .get_action(&key("keep"))
        .unwrap()
        .expect("published entry");
    assert_eq!(
        cas.get_blob(&r.outputs[0].digest).unwrap().unwrap(),
        content("keep", 5000)
    );
}

#[test]
fn full_disk_gives_a_clear_error_and_leaves_the_cache_consistent() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("cache");
    published_entry(&dir);
    // A blob larger than the limit: the temp-file write fails.
    // Limit 0: nothing can be written at all, the index included (the
    // blob "keep" is already there, so only the index write is attempted).
    for (limit, size) in [(64 * 1024, 1 << 20), (0, 10)] {
        let out = helper()
            .args([
                "fill",
                dir.to_str().unwrap(),
                &limit.to_string(),
                &size.to_string(),
                "fill",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "limit {limit}: {text}");
        assert!(
            text.starts_with("error disk-full: "),
            "limit {limit}: {text}"
        );
        assert!(text.contains("no space left for the cache at"), "{text}");
        assert!(
            text.contains(dir.to_str().unwrap()),
            "the message names the path: {text}"
        );
    }
    let cas = LocalCas::open(&dir).unwrap();
    let report = cas.verify(false).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.temp_files, 0, "failed writes leave no temp files");
    assert!(cas.get_action(&key("fill")).unwrap().is_none());
    assert_entry_intact(&cas);
}

#[test]
fn index_write_failure_on_full_disk_is_reported_as_disk_full() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("cache");
    published_entry(&dir);
    // Storing "keep" again: every blob (outputs and the record) already
    // exists, so the index transaction is the only write, and it fails.
    let cas = LocalCas::open(&dir).unwrap();
    let r = cas.get_action(&key("keep")).unwrap().unwrap();
    drop(cas);
    let out = helper()
        .args(["fill", dir.to_str().unwrap(), "0", "5000", "keep"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("error disk-full"), "{text}");
    assert!(
        text.contains("index.sqlite"),
        "the index write is what failed: {text}"
    );
    let cas = LocalCas::open(&dir).unwrap();
    assert!(cas.verify(false).unwrap().is_clean());
    assert!(cas.has_blob(&r.outputs[0].digest));
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chmod_tree(p: &Path, dir_mode: u32, file_mode: u32) {
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            chmod_tree(&e.path(), dir_mode, file_mode);
        } else {
            set_mode(&e.path(), file_mode);
        }
    }
    set_mode(p, dir_mode);
}

#[test]
fn read_only_folder_gives_a_clear_error_and_still_answers_lookups() {
    let t = tempfile::tempdir().unwrap();
    set_mode(t.path(), 0o755); // the helper may run as nobody
    let dir = t.path().join("cache");
    published_entry(&dir);
    chmod_tree(&dir, 0o555, 0o444);
    let out = helper()
        .args(["readonly", dir.to_str().unwrap(), "keep"])
        .output()
        .unwrap();
    chmod_tree(&dir, 0o755, 0o644);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("writable-open read-only: the cache folder"),
        "{text}"
    );
    assert!(text.contains(dir.to_str().unwrap()), "{text}");
    assert!(text.contains("lookup hit true"), "{text}");
    assert!(text.contains("put read-only"), "{text}");
    let cas = LocalCas::open_with(&dir, OpenOptions::default()).unwrap();
    assert!(cas.verify(false).unwrap().is_clean());
    assert_entry_intact(&cas);
}

/// A real full disk: a 2 MiB tmpfs, where the kernel answers ENOSPC. Needs
/// the right to mount (root in CI); elsewhere it says so and passes, and
/// the RLIMIT_FSIZE tests above cover the same paths portably.
#[test]
fn real_full_tmpfs_gives_disk_full() {
    struct Mount(std::path::PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping the tmpfs full-disk test: cannot mount here");
        return;
    }
    let _guard = Mount(mnt.clone());
    let dir = mnt.join("cache");
    let cas = LocalCas::open(&dir).unwrap();
    let keep = content("keep", 5000);
    cas.put_action(
        &key("keep"),
        &NewAction::success(vec![NewOutput::bytes("k.o", &keep)]),
    )
    .unwrap();
    let big = content("big", 3 << 20);
    let err = cas
        .put_action(
            &key("big"),
            &NewAction::success(vec![NewOutput::bytes("b.o", &big)]),
        )
        .unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert!(err.to_string().contains(dir.to_str().unwrap()), "{err}");
    // Fill the rest with small entries until the disk refuses one.
    let mut stored = Vec::new();
    let last_err = (0..10_000)
        .find_map(|i| {
            let name = format!("fill{i}");
            let bytes = content(&name, 64 * 1024);
            match cas.put_action(
                &key(&name),
                &NewAction::success(vec![NewOutput::bytes("f.o", &bytes)]),
            ) {
                Ok(_) => {
                    stored.push(name);
                    None
                }
                Err(e) => Some(e),
            }
        })
        .expect("the disk fills up");
    assert!(last_err.is_disk_full(), "{last_err}");
    drop(cas);
    let cas = LocalCas::open(&dir).unwrap();
    assert!(cas.verify(false).unwrap().is_clean());
    assert!(cas.get_action(&key("keep")).unwrap().is_some());
    for name in &stored {
        assert!(cas.get_action(&key(name)).unwrap().is_some(), "{name}");
    }
    // gc makes room again.
    cas.gc(256 * 1024).unwrap();
    cas.put_action(
        &key("after-gc"),
        &NewAction::success(vec![NewOutput::bytes("a.o", b"ok")]),
    )
    .unwrap();
    assert!(cas.verify(false).unwrap().is_clean());
    // Full again: clear still works.
    let filled = (0..10_000).any(|i| {
        let name = format!("again{i}");
        let bytes = content(&name, 64 * 1024);
        let action = NewAction::success(vec![NewOutput::bytes("f.o", &bytes)]);
        cas.put_action(&key(&name), &action).is_err()
    });
    assert!(filled);
    cas.clear().unwrap();
    assert!(cas.verify(false).unwrap().is_clean());
    assert_eq!(cas.stats().unwrap().counts.blobs, 0);
}

#[test]
fn verify_while_other_processes_publish_reports_nothing_false() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("cache");
    let cas = LocalCas::open(&dir).unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|id| {
            helper()
                .args(["worker", dir.to_str().unwrap(), &format!("v{id}"), "200"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut rounds = 0;
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) || rounds == 0 {
        let report = cas.verify(false).unwrap();
        assert!(report.is_clean(), "round {rounds}: {report:?}");
        rounds += 1;
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert!(cas.verify(false).unwrap().is_clean());
}
