//! The local cache through its public API, in one process, on real folders.

mod common;

use common::{content, key};
use keyfab_cas::*;
use std::path::Path;
use std::time::Duration;

fn open(dir: &Path) -> LocalCas {
    LocalCas::open_with(
        dir,
        OpenOptions {
            durable: false,
            ..OpenOptions::default()
        },
    )
    .unwrap()
}

fn put(cas: &LocalCas, name: &str, size: usize) -> ActionResult {
    let bytes = content(name, size);
    let action = NewAction {
        stdout: b"out",
        stderr: b"warning: x",
        duration: Duration::from_millis(12),
        ..NewAction::success(vec![NewOutput::bytes("a.o", &bytes)])
    };
    cas.put_action(&key(name), &action).unwrap()
}

#[test]
fn action_round_trip_replays_outputs_and_captured_text() {
    let t = tempfile::tempdir().unwrap();
    let cas = open(t.path());
    let src = t.path().join("fw.elf");
    std::fs::write(&src, b"\x7fELF...").unwrap();
    let action = NewAction {
        stderr: b"warning: unused",
        ..NewAction::success(vec![
            NewOutput::bytes("a.o", b"object"),
            NewOutput {
                executable: true,
                ..NewOutput::file("fw.elf", &src)
            },
        ])
    };
    let stored = cas.put_action(&key("a"), &action).unwrap();
    let got = cas.get_action(&key("a")).unwrap().unwrap();
    assert_eq!(got, stored);
    assert_eq!(
        cas.get_blob(&got.output("a.o").unwrap().digest)
            .unwrap()
            .unwrap(),
        b"object"
    );
    assert_eq!(
        cas.get_blob(&got.stderr).unwrap().unwrap(),
        b"warning: unused"
    );
    let dest = t.path().join("out/fw.elf");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    assert!(cas
        .materialize(&got.output("fw.elf").unwrap().digest, &dest, true)
        .unwrap());
    assert_eq!(std::fs::read(&dest).unwrap(), b"\x7fELF...");
    assert!(cas.get_action(&key("b")).unwrap().is_none());
    let batch = cas.get_actions(&[key("b"), key("a")]).unwrap();
    assert_eq!(batch, vec![None, Some(stored)]);
}

#[test]
fn failed_actions_are_never_cached() {
    let t = tempfile::tempdir().unwrap();
    let cas = open(t.path());
    let action = NewAction {
        exit_code: 1,
        stderr: b"error: x",
        ..NewAction::success(vec![])
    };
    let err = cas.put_action(&key("f"), &action).unwrap_err();
    assert!(matches!(err, CasError::FailedAction { exit_code: 1 }));
    assert!(cas.get_action(&key("f")).unwrap().is_none());
    assert_eq!(cas.stats().unwrap().counts.blobs, 0, "not even its blobs");
    let stored = put(&cas, "ok", 10);
    let failed = ActionResult {
        exit_code: 2,
        ..stored
    };
    assert!(cas.put_action_result(&key("x"), &failed).is_err());
    assert!(Storage::store_action(&ReadOnly(&cas), &key("f"), &action).is_err());
}

#[test]
fn flipped_byte_is_detected_treated_as_a_miss_and_repaired() {
    let t = tempfile::tempdir().unwrap();
    let cas = open(t.path());
    let r = put(&cas, "obj", 4000);
    put(&cas, "other", 4000);
    let blob = t
        .path()
        .join("blobs")
        .join(&r.outputs[0].digest.to_hex()[..2])
        .join(&r.outputs[0].digest.to_hex()[2..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1234] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();

    let report = cas.verify(false).unwrap();
    assert_eq!(report.corrupt, vec![r.outputs[0].digest]);
    assert!(!report.is_clean());
    // A read is a miss, and the entry that needs the blob goes away.
    assert!(cas.get_blob(&r.outputs[0].digest).unwrap().is_none());
    assert!(cas.get_action(&key("obj")).unwrap().is_none());

    // Flip again (the read removed the file) and let repair handle it.
    put(&cas, "obj", 4000);
    std::fs::write(&blob, &bytes).unwrap();
    let repaired = cas.verify(true).unwrap();
    assert_eq!(repaired.repaired.as_ref().unwrap().corrupt_removed, 1);
    let after = cas.verify(false).unwrap();
    assert!(after.is_clean(), "{after:?}");
    assert!(cas.get_action(&key("obj")).unwrap().is_none());
    assert!(cas.get_action(&key("other")).unwrap().is_some());
    // Storing it again restores the entry.
    put(&cas, "obj", 4000);
    let r2 = cas.get_action(&key("obj")).unwrap().unwrap();
    assert_eq!(
        cas.get_blob(&r2.outputs[0].digest).unwrap().unwrap(),
        content("obj", 4000)
    );
}

#[test]
fn deleted_blob_is_a_miss_and_verify_reports_it() {
    let t = tempfile::tempdir().unwrap();
    let cas = open(t.path());
    let r = put(&cas, "obj", 100);
    let hex = r.outputs[0].digest.to_hex();
    std::fs::remove_file(t.path().join("blobs").join(&hex[..2]).join(&hex[2..])).unwrap();
    assert!(cas.get_action(&key("obj")).unwrap().is_none());
    let report = cas.verify(false).unwrap();
    assert_eq!(report.missing, vec![r.outputs[0].digest]);
    cas.verify(true).unwrap();
    assert!(cas.verify(false).unwrap().is_clean());
}

#[test]
fn index_is_rebuilt_from_blobs_when_lost_or_corrupt() {
    let t = tempfile::tempdir().unwrap();
    let run;
    {
        let cas = open(t.path());
        put(&cas, "a", 1000);
        put(&cas, "b", 2000);
        let mut m = Manifest::default();
        m.add(ManifestEntry {
            headers: vec![("x.h".into(), Digest::of(b"x"))],
            action: key("a"),
        });
        cas.put_manifest(&key("direct-a"), &m).unwrap();
        run = cas.begin_run("build planck").unwrap();
        cas.record_provenance(run, "planck/rev6:default", &Provenance::default())
            .unwrap();
    }
    let index = t.path().join("index.sqlite");
    for damage in ["delete", "garbage"] {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", index.display()));
        }
        if damage == "garbage" {
            std::fs::write(&index, vec![0xa5; 4096]).unwrap();
        }
        let cas = open(t.path());
        assert!(cas.get_action(&key("a")).unwrap().is_some(), "{damage}");
        assert!(cas.get_action(&key("b")).unwrap().is_some(), "{damage}");
        assert!(
            cas.get_manifest(&key("direct-a")).unwrap().is_some(),
            "{damage}"
        );
        let prov = cas.provenance("planck/rev6:default", 10).unwrap();
        assert_eq!(prov.len(), 1, "{damage}");
        assert_eq!(prov[0].0, run);
        assert!(cas.verify(false).unwrap().is_clean());
    }
}

#[test]
fn gc_evicts_least_recently_used_first() {
    let t = tempfile::tempdir().unwrap();
    let opts = OpenOptions {
        durable: false,
        touch_after: Duration::ZERO,
        ..OpenOptions::default()
    };
    let cas = LocalCas::open_with(t.path(), opts).unwrap();
    for name in ["old", "mid", "new"] {
        put(&cas, name, 100_000);
        std::thread::sleep(Duration::from_millis(5));
    }
    // Using "old" makes it recent.
    std::thread::sleep(Duration::from_millis(5));
    assert!(cas.get_action(&key("old")).unwrap().is_some());
    cas.flush().unwrap();
    let report = cas.gc(250_000).unwrap();
    assert!(report.bytes_after <= 250_000, "{report:?}");
    assert!(
        cas.get_action(&key("mid")).unwrap().is_none(),
        "mid was least recently used"
    );
    assert!(cas.get_action(&key("old")).unwrap().is_some());
    assert!(cas.get_action(&key("new")).unwrap().is_some());
    assert!(cas.verify(false).unwrap().is_clean());
    cas.gc(0).unwrap();
    assert_eq!(cas.stats().unwrap().counts.blobs, 0);
    assert!(cas.verify(false).unwrap().is_clean());
}

#[test]
fn size_bound_is_enforced_on_flush() {
    let t = tempfile::tempdir().unwrap();
    let cas = LocalCas::open_with(
        t.path(),
        OpenOptions {
            max_size: Some(300_000),
            durable: false,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    for i in 0..10 {
        put(&cas, &format!("n{i}"), 100_000);
    }
    cas.flush().unwrap();
    assert!(cas.stats().unwrap().counts.bytes <= 300_000);
}

#[test]
fn clear_empties_everything() {
    let t = tempfile::tempdir().unwrap();
    let cas = open(t.path());
    put(&cas, "a", 10);
    let report = cas.clear().unwrap();
    assert!(report.blobs_removed >= 3);
    let s = cas.stats().unwrap();
    assert_eq!(
        (s.counts.blobs, s.counts.actions, s.counts.bytes),
        (0, 0, 0)
    );
    assert!(cas.get_action(&key("a")).unwrap().is_none());
    assert!(cas.verify(false).unwrap().is_clean());
}

#[test]
fn stat_cache_hashes_once_and_never_trusts_recent_files() {
    let t = tempfile::tempdir().unwrap();
    let cas = open(&t.path().join("cache"));
    let file = t.path().join("a.h");
    std::fs::write(&file, b"#define A 1\n").unwrap();
    // A run that started in the second the file was written never trusts
    // it. (Its start is the file's own mtime: `RunClock::now()` here could
    // fall in the next second, and then trust it.)
    let written = std::fs::metadata(&file).unwrap().modified().unwrap();
    let clock = RunClock {
        start_ns: written
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64,
    };
    assert_eq!(
        cas.file_digest(&file, &clock).unwrap(),
        Digest::of(b"#define A 1\n")
    );
    cas.flush().unwrap();
    assert_eq!(cas.stats().unwrap().counts.stat_entries, 0);
    // A later run trusts it and records it.
    let later = RunClock {
        start_ns: clock.start_ns + 2_000_000_000,
    };
    cas.file_digest(&file, &later).unwrap();
    cas.flush().unwrap();
    assert_eq!(cas.stats().unwrap().counts.stat_entries, 1);
    // Same size, new content, mtime set back: the ctime still changes, so
    // the cache does not hand out the old digest.
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, b"#define A 2\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let much_later = RunClock {
        start_ns: later.start_ns + 2_000_000_000,
    };
    assert_eq!(
        cas.file_digest(&file, &much_later).unwrap(),
        Digest::of(b"#define A 2\n")
    );
}

#[test]
fn manifests_find_the_action_for_current_headers() {
    let t = tempfile::tempdir().unwrap();
    let cas = open(&t.path().join("cache"));
    let header = t.path().join("config.h");
    std::fs::write(&header, b"#define ROWS 4").unwrap();
    let clock = RunClock::now();
    let direct = DirectKey {
        compiler: Digest::of(b"gcc"),
        argv: vec!["-c".into(), "a.c".into()],
        cwd: t.path().into(),
        env: Default::default(),
        source: Digest::of(b"#include \"config.h\""),
    }
    .key();
    assert!(cas.get_manifest(&direct).unwrap().is_none());
    let compile = CompileKey {
        direct,
        headers: vec![(header.clone(), cas.file_digest(&header, &clock).unwrap())],
    };
    cas.put_action(
        &compile.key(),
        &NewAction::success(vec![NewOutput::bytes("a.o", b"obj")]),
    )
    .unwrap();
    let mut m = Manifest::default();
    m.add(ManifestEntry::from_compile(&compile));
    cas.put_manifest(&direct, &m).unwrap();

    let m = cas.get_manifest(&direct).unwrap().unwrap();
    let hit = m.find(|p| cas.file_digest(p, &clock).ok());
    assert_eq!(hit, Some(compile.key()));
    std::fs::write(&header, b"#define ROWS 5").unwrap();
    assert_eq!(m.find(|p| cas.file_digest(p, &clock).ok()), None);
}

#[test]
fn runs_and_provenance_are_recorded() {
    let t = tempfile::tempdir().unwrap();
    let cas = open(t.path());
    let r1 = cas.begin_run("keyfab build -kb a").unwrap();
    let p = Provenance {
        inputs: vec![("keyboards/a/info.json".into(), Digest::of(b"{}"))],
        toolchains: vec![("avr-gcc".into(), Digest::of(b"gcc"))],
        outputs: vec![("a_default.hex".into(), Digest::of(b"hex"))],
        notes: vec![("status".into(), "ok".into())],
    };
    cas.record_provenance(r1, "a:default", &p).unwrap();
    cas.finish_run(r1, "ok").unwrap();
    let r2 = cas.begin_run("keyfab build -kb a").unwrap();
    cas.record_provenance(r2, "a:default", &Provenance::default())
        .unwrap();
    let hist = cas.provenance("a:default", 10).unwrap();
    assert_eq!(
        hist.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        vec![r2, r1]
    );
    assert_eq!(hist[1].1, p);
    let runs = cas.runs(10).unwrap();
    assert_eq!(runs[1].status.as_deref(), Some("ok"));
    assert_eq!(runs[0].status, None);
}

#[test]
fn multi_level_backfills_the_near_level() {
    let t = tempfile::tempdir().unwrap();
    let near = open(&t.path().join("near"));
    let far = open(&t.path().join("far"));
    put(&far, "shared", 3000);
    let ml = MultiLevel {
        levels: vec![Box::new(near), Box::new(far)],
    };
    let r = ml.get_action(&key("shared")).unwrap().unwrap();
    assert_eq!(
        ml.get_blob(&r.outputs[0].digest).unwrap().unwrap(),
        content("shared", 3000)
    );
    drop(ml);
    let near = open(&t.path().join("near"));
    assert!(
        near.get_action(&key("shared")).unwrap().is_some(),
        "copied into the near level"
    );
    assert!(near.verify(false).unwrap().is_clean());
}

#[test]
fn read_only_wrapper_stores_nothing() {
    let t = tempfile::tempdir().unwrap();
    let cas = open(t.path());
    let ro = ReadOnly(&cas);
    let d = ro.put_blob(b"abc").unwrap();
    assert_eq!(d, Digest::of(b"abc"));
    assert!(!cas.has_blob(&d));
    put(&cas, "x", 10);
    assert!(ro.get_action(&key("x")).unwrap().is_some());
}

#[test]
fn folders_that_are_not_caches_are_refused() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("thesis.tex"), b"precious").unwrap();
    let err = LocalCas::open(t.path()).err().expect("refused");
    assert!(matches!(err, CasError::NotACache { .. }), "{err}");
    assert!(t.path().join("thesis.tex").exists());
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("format"), b"something else 9\n").unwrap();
    assert!(matches!(
        LocalCas::open(other.path()),
        Err(CasError::NotACache { .. })
    ));
}

#[test]
fn threads_share_one_handle() {
    let t = tempfile::tempdir().unwrap();
    let cas = std::sync::Arc::new(open(t.path()));
    let handles: Vec<_> = (0..4)
        .map(|id| {
            let cas = cas.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let name = format!("{}", (i * 7 + id) % 60);
                    match cas.get_action(&key(&name)).unwrap() {
                        Some(r) => assert_eq!(
                            cas.get_blob(&r.outputs[0].digest).unwrap().unwrap(),
                            content(&name, 2000)
                        ),
                        None => {
                            put(&cas, &name, 2000);
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(cas.verify(false).unwrap().is_clean());
}

#[test]
fn non_utf8_header_path_is_an_error_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let t = tempfile::tempdir().unwrap();
    let cas = open(t.path());
    let bad = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b"inc/\xff.h"));
    let mut m = Manifest::default();
    m.add(ManifestEntry {
        headers: vec![(bad, Digest::of(b"h"))],
        action: key("a"),
    });
    let err = cas.put_manifest(&key("d"), &m).unwrap_err();
    assert!(matches!(err, CasError::Invalid { .. }), "{err}");
    assert!(cas.verify(false).unwrap().is_clean());
}

#[test]
fn commits_of_another_handle_become_visible() {
    let t = tempfile::tempdir().unwrap();
    let reader = open(t.path());
    let writer = open(t.path());
    assert!(reader.get_action(&key("late")).unwrap().is_none());
    put(&writer, "late", 10);
    // After a flush at once; without one, within the snapshot's 20 ms.
    reader.flush().unwrap();
    assert!(reader.get_action(&key("late")).unwrap().is_some());
    put(&writer, "later", 10);
    std::thread::sleep(Duration::from_millis(25));
    assert!(reader.get_action(&key("later")).unwrap().is_some());
}

fn big_provenance(n: usize) -> Provenance {
    Provenance {
        inputs: (0..n)
            .map(|i| (format!("quantum/file{i}.h"), Digest::of(&i.to_le_bytes())))
            .collect(),
        toolchains: vec![("avr-gcc".into(), Digest::of(b"gcc"))],
        outputs: vec![("a_default.hex".into(), Digest::of(b"hex"))],
        notes: vec![("status".into(), "ok".into())],
    }
}

fn remove_index(dir: &Path) {
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", dir.join("index.sqlite").display()));
    }
}

/// The same record in several runs is one body: each run adds a small row
/// (and its small record blob). Rebuilding the index from the blobs brings
/// rows and body back; a corrupt body takes its rows with it.
#[test]
fn provenance_bodies_are_stored_once() {
    let t = tempfile::tempdir().unwrap();
    let p = big_provenance(2000);
    let row_notes = vec![("tree_revision".to_string(), "v1-2-gabc".to_string())];
    // The row's notes come first when the record is read whole.
    let mut whole = p.clone();
    whole.notes.insert(0, row_notes[0].clone());
    let last = |r3: RunId, body| ProvenanceRow {
        run: r3.0,
        body,
        provenance: p.clone(),
        notes: row_notes.clone(),
    };
    let (r1, r2, r3, body);
    {
        let cas = open(t.path());
        r1 = cas.begin_run("keyfab sweep").unwrap();
        body = cas.record_provenance(r1, "a:default", &p).unwrap();
        let first = cas.stats().unwrap().counts;
        assert_eq!((first.provenance, first.provenance_bodies), (1, 1));
        assert!(first.provenance_body_bytes > 50_000, "{first:?}");

        r2 = cas.begin_run("keyfab sweep").unwrap();
        assert_eq!(cas.record_provenance(r2, "a:default", &p).unwrap(), body);
        r3 = cas.begin_run("keyfab sweep").unwrap();
        assert!(cas
            .record_provenance_again(r3, "a:default", &body, &row_notes)
            .unwrap());
        // A body the index does not hold: nothing is recorded.
        assert!(!cas
            .record_provenance_again(r3, "b:default", &Digest::of(b"nope"), &[])
            .unwrap());
        let now = cas.stats().unwrap().counts;
        assert_eq!((now.provenance, now.provenance_bodies), (3, 1));
        assert_eq!(now.provenance_body_bytes, first.provenance_body_bytes);
        // Each run added one small blob (its row's record), nothing more.
        assert_eq!(now.blobs, first.blobs + 2);
        assert!(
            now.bytes - first.bytes < 1000,
            "{} bytes for two rows",
            now.bytes - first.bytes
        );

        let hist = cas.provenance("a:default", 10).unwrap();
        assert_eq!(
            hist.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
            vec![r3, r2, r1]
        );
        assert_eq!(hist[0].1, whole);
        assert!(hist[1..].iter().all(|(_, q)| *q == p));
        assert_eq!(
            cas.last_provenance("a:default").unwrap(),
            Some(last(r3, body))
        );
        assert!(cas.provenance("b:default", 10).unwrap().is_empty());
        assert!(cas.verify(false).unwrap().is_clean());
    }

    // The index is lost: the blobs bring rows and the one body back.
    remove_index(t.path());
    {
        let cas = open(t.path());
        let c = cas.stats().unwrap().counts;
        assert_eq!((c.provenance, c.provenance_bodies), (3, 1));
        assert_eq!(
            cas.last_provenance("a:default").unwrap(),
            Some(last(r3, body))
        );
        assert!(cas.verify(false).unwrap().is_clean());

        // The body's blob is corrupt: repair drops it with every row naming it.
        let hex = body.to_hex();
        let path = t.path().join("blobs").join(&hex[..2]).join(&hex[2..]);
        std::fs::write(&path, b"garbage").unwrap();
        let report = cas.verify(true).unwrap();
        assert_eq!(report.corrupt, vec![body]);
        let c = cas.stats().unwrap().counts;
        assert_eq!((c.provenance, c.provenance_bodies), (0, 0));
        assert!(cas.provenance("a:default", 10).unwrap().is_empty());
        assert!(cas.verify(false).unwrap().is_clean());
    }
}

/// gc: a body stays while a row names it, and goes with the last row.
#[test]
fn gc_keeps_provenance_consistent() {
    let t = tempfile::tempdir().unwrap();
    let cas = LocalCas::open_with(
        t.path(),
        OpenOptions {
            durable: false,
            touch_after: Duration::ZERO,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let p = big_provenance(500);
    let r1 = cas.begin_run("keyfab build").unwrap();
    let body = cas.record_provenance(r1, "a:default", &p).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    put(&cas, "obj", 100_000);
    std::thread::sleep(Duration::from_millis(5));
    // A later run names the body again: it is recent again, the first
    // row's own record blob is not.
    let r2 = cas.begin_run("keyfab build").unwrap();
    assert!(cas
        .record_provenance_again(r2, "a:default", &body, &[])
        .unwrap());
    let c = cas.stats().unwrap().counts;
    // Evict only the oldest blob (the first row's record).
    let report = cas.gc(c.bytes - 1).unwrap();
    assert_eq!(report.blobs_removed, 1, "{report:?}");
    let hist = cas.provenance("a:default", 10).unwrap();
    assert_eq!(hist.iter().map(|(r, _)| *r).collect::<Vec<_>>(), vec![r2]);
    assert_eq!(cas.stats().unwrap().counts.provenance_bodies, 1);
    assert!(cas.verify(false).unwrap().is_clean());
    cas.gc(0).unwrap();
    let c = cas.stats().unwrap().counts;
    assert_eq!((c.provenance, c.provenance_bodies, c.blobs), (0, 0, 0));
    assert!(cas.verify(false).unwrap().is_clean());
}

/// A cache whose blobs hold schema-1 provenance records (run, target and
/// body in one blob) rebuilds an index that answers for them.
#[test]
fn schema_1_provenance_records_rebuild() {
    let t = tempfile::tempdir().unwrap();
    let p = big_provenance(10);
    {
        let cas = open(t.path());
        put(&cas, "a", 1000);
        let rec = record::encode(&record::Record::Provenance {
            run: 7,
            run_started_ns: 1,
            run_command: "keyfab build".into(),
            target: "a:default".into(),
            provenance: p.clone(),
        })
        .unwrap();
        cas.put_bytes(&rec).unwrap();
    }
    remove_index(t.path());
    let cas = open(t.path());
    let row = cas.last_provenance("a:default").unwrap().unwrap();
    assert_eq!((row.run, row.provenance), (7, p.clone()));
    assert_eq!(cas.runs(10).unwrap()[0].command, "keyfab build");
    // Its body is inline, not a stored body a new row could name: the next
    // build of the same record stores it as one.
    let r = cas.begin_run("keyfab build").unwrap();
    let legacy = cas.last_provenance("a:default").unwrap().unwrap().body;
    assert!(!cas
        .record_provenance_again(r, "a:default", &legacy, &[])
        .unwrap());
    let stored = cas.record_provenance(r, "a:default", &p).unwrap();
    assert_ne!(stored, legacy);
    let hist = cas.provenance("a:default", 10).unwrap();
    assert_eq!(hist.len(), 2);
    assert!(hist.iter().all(|(_, q)| *q == p));
    let c = cas.stats().unwrap().counts;
    assert_eq!((c.provenance, c.provenance_bodies), (2, 1));
    assert!(cas.verify(false).unwrap().is_clean());
    // The schema-1 record blob torn: its row goes, the new one stays.
    let hex = legacy.to_hex();
    std::fs::write(
        t.path().join("blobs").join(&hex[..2]).join(&hex[2..]),
        b"torn",
    )
    .unwrap();
    assert_eq!(cas.verify(true).unwrap().corrupt, vec![legacy]);
    let hist = cas.provenance("a:default", 10).unwrap();
    assert_eq!(hist.iter().map(|(r, _)| *r).collect::<Vec<_>>(), vec![r]);
    assert!(cas.verify(false).unwrap().is_clean());
}

/// An action stored with its manifest entry: one record blob, the entry in
/// the manifest, entries of two processes (handles) both kept, and the
/// manifest rebuilt from the action records (merged with a manifest record
/// of the kind keyfab wrote before) when the index is lost.
#[test]
fn actions_carry_their_manifest_entries() {
    let t = tempfile::tempdir().unwrap();
    let direct = key("direct");
    let headers = |i: usize| vec![(format!("h{i}.h").into(), Digest::of(&i.to_le_bytes()))];
    let put_entry = |cas: &LocalCas, i: usize| {
        let bytes = content(&format!("o{i}"), 100);
        let action = NewAction::success(vec![NewOutput::bytes("a.o", &bytes)]);
        cas.put_action_in_manifest(&key(&format!("a{i}")), &action, &direct, &headers(i))
            .unwrap();
    };
    {
        let cas = open(t.path());
        put_entry(&cas, 0);
        // two files: the output and the record (stdout and stderr are the
        // empty blob, which has none)
        let files = walkdir(&t.path().join("blobs"));
        assert_eq!(files, 2, "{:?}", cas.stats().unwrap().counts);
        let m = cas.get_manifest(&direct).unwrap().unwrap();
        assert_eq!(m.entries.len(), 1);
        assert_eq!(m.entries[0].action, key("a0"));
        assert_eq!(m.entries[0].headers, headers(0));
    }
    // two handles adding to one manifest at once lose nothing
    std::thread::scope(|s| {
        for half in [1, 8] {
            let dir = t.path().to_path_buf();
            s.spawn(move || {
                let cas = open(&dir);
                for i in half..half + 7 {
                    put_entry(&cas, i);
                }
            });
        }
    });
    let cas = open(t.path());
    let mut m = Manifest::default();
    m.add(ManifestEntry {
        headers: vec![("old.h".into(), Digest::of(b"old"))],
        action: key("a-old"),
    });
    cas.put_manifest(&key("direct-old"), &m).unwrap();
    let actions = |cas: &LocalCas| {
        let mut a: Vec<ActionKey> = cas
            .get_manifest(&direct)
            .unwrap()
            .unwrap()
            .entries
            .iter()
            .map(|e| e.action)
            .collect();
        a.sort();
        a
    };
    let mut all: Vec<ActionKey> = (0..15).map(|i| key(&format!("a{i}"))).collect();
    all.sort();
    assert_eq!(actions(&cas), all);
    drop(cas);

    remove_index(t.path());
    let cas = open(t.path());
    assert_eq!(actions(&cas), all);
    let old = cas.get_manifest(&key("direct-old")).unwrap().unwrap();
    assert_eq!(old.entries[0].action, key("a-old"));
    assert!(cas.verify(false).unwrap().is_clean());
}

fn walkdir(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                walkdir(&p)
            } else {
                1
            }
        })
        .sum()
}

/// A batched action's blobs are stored at once and its index rows with the
/// next transaction: another store's, its batch's own when full, or flush
/// (drop flushes too). Until then it is a miss; after, a hit with its
/// manifest entry.
#[test]
fn batched_actions_become_hits_with_the_next_commit() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("cache");
    let direct = |n: &str| key(&format!("direct {n}"));
    let batched = |cas: &LocalCas, n: &str| {
        let bytes = content(n, 100);
        let action = NewAction::success(vec![NewOutput::bytes("a.o", &bytes)]);
        let headers = vec![(std::path::PathBuf::from("a.h"), Digest::of(n.as_bytes()))];
        cas.put_action_in_manifest_batched(&key(n), &action, &direct(n), &headers)
            .unwrap()
    };
    let hit = |cas: &LocalCas, n: &str| {
        let found = cas.get_action(&key(n)).unwrap().is_some();
        let entry = cas.get_manifest(&direct(n)).unwrap().is_some();
        assert_eq!(found, entry, "{n}: the action and its entry go together");
        found
    };
    let cas = open(&dir);
    let stored = batched(&cas, "a");
    assert!(cas.has_blob(&stored.output("a.o").unwrap().digest));
    assert!(!hit(&cas, "a"));
    put(&cas, "b", 10);
    assert!(hit(&cas, "a") && cas.get_action(&key("b")).unwrap().is_some());

    batched(&cas, "c");
    cas.commit_batched().unwrap();
    assert!(hit(&cas, "c"));

    // A full batch commits itself.
    let names: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
    for n in &names {
        batched(&cas, n);
    }
    assert!(hit(&cas, &names[0]));
    assert!(!hit(&cas, &names[39]));

    // gc (an exclusive lock) commits the batch first rather than wait for
    // the shared lock the batch holds.
    batched(&cas, "before gc");
    cas.gc(u64::MAX).unwrap();
    assert!(hit(&cas, "before gc"));

    batched(&cas, "last");
    drop(cas);
    let cas = open(&dir);
    assert!(hit(&cas, "last") && hit(&cas, &names[39]));
    assert!(cas.verify(false).unwrap().is_clean());
}
