//! `keyfab cache …` through the real binary on real cache folders.

use keyfab_cas::{KeyHasher, LocalCas, NewAction, NewOutput};
use std::path::Path;
use std::process::{Command, Output};

fn keyfab(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyfab"))
        .arg("--cache")
        .arg(cache)
        .args(args)
        .env_remove("KEYFAB_CACHE")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn populate(dir: &Path) -> keyfab_cas::Digest {
    let cas = LocalCas::open(dir).unwrap();
    let key = KeyHasher::new("cli-test", 1).str("n", "a").finish();
    let r = cas
        .put_action(
            &key,
            &NewAction::success(vec![NewOutput::bytes("a.o", &[7u8; 10_000])]),
        )
        .unwrap();
    r.outputs[0].digest
}

#[test]
fn verify_finds_a_flipped_byte_and_repair_fixes_it() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("c");
    let d = populate(&dir);
    let o = keyfab(&dir, &["cache", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("cache is clean"));

    let hex = d.to_hex();
    let blob = dir.join("blobs").join(&hex[..2]).join(&hex[2..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[500] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();

    let o = keyfab(&dir, &["cache", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("corrupt blob: {hex}")),
        "{}",
        text(&o)
    );
    let o = keyfab(&dir, &["cache", "verify", "--repair", "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clean"], true);
    assert_eq!(v["report"]["repaired"]["corrupt_removed"], 1);
    assert!(keyfab(&dir, &["cache", "verify"]).status.success());
}

#[test]
fn stats_gc_clear() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("c");
    populate(&dir);
    let o = keyfab(&dir, &["cache", "stats", "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["stats"]["actions"], 1);
    assert!(v["stats"]["bytes"].as_u64().unwrap() >= 10_000);

    let o = keyfab(&dir, &["cache", "gc", "--max-size", "1K"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("removed"), "{}", text(&o));
    let o = keyfab(&dir, &["cache", "stats"]);
    assert!(text(&o).contains("actions:     0"), "{}", text(&o));

    populate(&dir);
    let o = keyfab(&dir, &["cache", "clear"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = keyfab(&dir, &["cache", "stats", "-f", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["stats"]["blobs"], 0);
}

#[test]
fn exit_codes_and_location() {
    let t = tempfile::tempdir().unwrap();
    // A bad size is a usage error.
    let o = keyfab(&t.path().join("c"), &["cache", "gc", "--max-size", "lots"]);
    assert_eq!(o.status.code(), Some(2));
    // A folder that is not a cache is refused, and left alone.
    std::fs::write(t.path().join("notes.txt"), b"keep me").unwrap();
    let o = keyfab(t.path(), &["cache", "clear"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("is not a keyfab cache"), "{}", text(&o));
    assert!(t.path().join("notes.txt").exists());
    // $KEYFAB_CACHE is used when --cache is absent.
    let env_dir = t.path().join("from-env");
    let o = Command::new(env!("CARGO_BIN_EXE_keyfab"))
        .args(["cache", "stats"])
        .env("KEYFAB_CACHE", &env_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(env_dir.to_str().unwrap()));
    assert!(env_dir.join("format").exists());
}
