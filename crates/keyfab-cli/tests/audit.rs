//! `keyfab audit` and `keyfab explain` end to end on the fixture firmware:
//! provenance recorded by `keyfab build`, a rebuild from nothing in another
//! folder on another clock, and what re-ran after each kind of edit.
//!
//! The fixture's `quantum/command.c` (built with `-e COMMAND_ENABLE=yes`)
//! prints `QMK_BUILDDATE` from version.h and `__DATE__`, like QMK's
//! command.c: the firmware embeds its build date unless the build is
//! reproducible.

mod util;

use serde_json::Value;
use util::*;

fn fixture() -> Fixture {
    Fixture::new()
}

impl Fixture {
    /// `keyfab --cache C ARGS` in the tree, without SOURCE_DATE_EPOCH
    /// unless `epoch` is given.
    fn run_with(&self, epoch: Option<&str>, args: &[&str]) -> Run {
        let mut cmd = self.keyfab();
        cmd.env_remove("SOURCE_DATE_EPOCH");
        if let Some(e) = epoch {
            cmd.env("SOURCE_DATE_EPOCH", e);
        }
        run(cmd.args(args))
    }

    /// `keyfab build solo:default`; its output.
    fn build_default(&self, epoch: Option<&str>) -> String {
        self.run_with(epoch, &["build", "solo:default"])
            .ok()
            .to_string()
    }
}

/// Deletes the index, as a lost or corrupt one would be, and asserts that
/// the one rebuilt from the blobs holds the same provenance rows and bodies;
/// returns the cache's figures from before.
fn index_rebuilt_keeps_provenance(fx: &Fixture) -> Value {
    let kept = fx.cache_stats();
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", fx.cache.join("index.sqlite").display()));
    }
    let rebuilt = fx.cache_stats();
    for k in ["provenance", "provenance_bodies", "provenance_body_bytes"] {
        assert_eq!(num(&rebuilt, k), num(&kept, k), "{k}");
    }
    kept
}

const COMMAND: [&str; 2] = ["-e", "COMMAND_ENABLE=yes"];

#[test]
fn audit_passes_in_reproducible_mode() {
    let fx = fixture();
    fx.run_with(
        None,
        &[
            "build",
            "solo:default",
            COMMAND[0],
            COMMAND[1],
            "--reproducible",
        ],
    )
    .ok();
    let out = fx.run_with(None, &["audit", "solo:default"]);
    let text = out.ok();
    assert!(text.starts_with("solo:default: PASS"), "{text}");
    assert!(text.contains("artifacts byte-identical"), "{text}");

    // SOURCE_DATE_EPOCH set: reproducible too, and the report says so in JSON.
    fx.run_with(
        Some("1700000000"),
        &["build", "solo:default", COMMAND[0], COMMAND[1]],
    )
    .ok();
    let report = fx
        .run_with(None, &["audit", "solo:default", "--format", "json"])
        .json();
    assert_eq!(report["pass"], true, "{report:#}");
    let t = &report["targets"][0];
    assert_eq!(t["target"], "solo:default");
    assert_eq!(t["rebuild"]["source_date_epoch"], "1700000000");
    // objects (6), elf, map, hex: all compared
    assert!(t["artifacts_compared"].as_u64().unwrap() >= 9, "{t:#}");
    // the rebuild happened in another folder
    let elsewhere = t["rebuild"]["tree"].as_str().unwrap();
    assert_ne!(std::path::Path::new(elsewhere), fx.tree.as_path());

    // a pattern: every recorded target whose name matches
    fx.run_with(Some("1700000000"), &["build", "solo:jsonmap"])
        .ok();
    let report = fx
        .run_with(None, &["audit", "solo:*", "--format", "json"])
        .json();
    let names: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["solo:default", "solo:jsonmap"]);
    assert_eq!(report["pass"], true, "{report:#}");
    // built with other settings (no COMMAND_ENABLE): rebuilt by a sweep of its own
    let rebuilt_in: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rebuild"]["cache"].as_str().unwrap())
        .collect();
    assert_ne!(rebuilt_in[0], rebuilt_in[1], "{report:#}");
    assert!(fx
        .run_with(None, &["audit", "nope*"])
        .fails()
        .contains("no recorded build matches nope*"));
}

/// A userspace keymap's build is rebuilt with that userspace and passes;
/// the rebuild leaves the userspace as it was (QMK's build copies the
/// firmware to its root: the audit's must not replace the user's).
#[test]
fn a_userspace_build_audits() {
    let fx = fixture();
    let (us, usarg) = copy_userspace(fx.tmp.path());
    let epoch = Some("1700000000");
    fx.run_with(epoch, &[&usarg, "build", "solo:mine"]).ok();
    let delivered = std::fs::read_dir(&us)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("solo_mine.")
        })
        .expect("the firmware copied to the userspace's root");
    std::fs::write(&delivered, "the user's own file").unwrap();
    let out = fx.run_with(None, &[&usarg, "audit", "solo:mine"]);
    let text = out.ok();
    assert!(text.starts_with("solo:mine: PASS"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&delivered).unwrap(),
        "the user's own file"
    );
}

#[test]
fn audit_fails_when_the_build_date_leaks() {
    let fx = fixture();
    fx.run_with(None, &["build", "solo:default", COMMAND[0], COMMAND[1]])
        .ok();
    let report_file = fx.tree.join("audit.json");
    let out = fx.run_with(
        None,
        &[
            "audit",
            "solo:default",
            "--report",
            report_file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let text = &out.stdout;
    assert!(text.starts_with("solo:default: FAIL"), "{text}");
    assert!(
        text.contains("first differing artifact: .build/obj_solo_default/quantum/command.o"),
        "{text}"
    );
    assert!(
        text.contains("src/version.h [generated]: the build date"),
        "{text}"
    );
    assert!(text.contains("QMK_BUILDDATE"), "{text}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    assert_eq!(report["pass"], false);
    let t = &report["targets"][0];
    // main.c includes version.h too, but does not use the date: only command.o differs.
    assert_eq!(
        t["objects_differ"],
        serde_json::json!([".build/obj_solo_default/quantum/command.o"])
    );
    let first = &t["differences"][0];
    assert_eq!(
        first["artifact"],
        ".build/obj_solo_default/quantum/command.o"
    );
    let cause = first["causes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["input"] == ".build/obj_solo_default/src/version.h")
        .unwrap_or_else(|| panic!("version.h named: {first:#}"));
    assert_eq!(cause["what"], "the build date");
    // the firmware differs as a consequence
    let artifacts: Vec<&str> = t["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["artifact"].as_str().unwrap())
        .collect();
    assert!(
        artifacts.contains(&".build/solo_default.hex"),
        "{artifacts:?}"
    );
}

#[test]
fn audit_needs_a_recorded_build_of_the_tree_as_it_is() {
    let fx = fixture();
    let out = fx.run_with(None, &["audit", "solo:default"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("no recorded build of solo:default"),
        "{}",
        out.stdout
    );

    // only a failed build recorded: nothing to compare with
    let keymap = "keyboards/solo/keymaps/default/keymap.c";
    fx.edit(keymap, |t| t + "\nthis is not C;\n");
    fx.run_with(Some("1700000000"), &["build", "solo:default"])
        .fails();
    let out = fx.run_with(None, &["audit", "solo:default"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("no successful recorded build of solo:default"),
        "{}",
        out.stdout
    );
    fx.edit(keymap, |t| t.replace("\nthis is not C;\n", ""));

    fx.run_with(Some("1700000000"), &["build", "solo:default"])
        .ok();
    fx.edit("keyboards/solo/keymaps/default/keymap.c", |t| {
        t.replacen("KC_A", "KC_B", 1)
    });
    let out = fx.run_with(None, &["audit", "solo:default"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("the tree changed since the recorded build")
            && out
                .stdout
                .contains("keyboards/solo/keymaps/default/keymap.c"),
        "{}",
        out.stdout
    );
}

/// `keyfab explain --format json`: (changed inputs → steps re-run), and the
/// steps that ran.
/// (input, steps re-run because of it, generated files it changed)
type Changed = (String, Vec<String>, Vec<String>);

fn explain(fx: &Fixture) -> (Vec<Changed>, Vec<String>) {
    let j = fx
        .run_with(None, &["explain", "solo:default", "--format", "json"])
        .json();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let changed = j["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["input"].as_str().unwrap().to_string(),
                strings(&c["steps"]),
                strings(&c["regenerated"]),
            )
        })
        .collect();
    let ran = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ran"] == true)
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect();
    (changed, ran)
}

#[test]
fn explain_after_each_kind_of_edit() {
    let fx = fixture();
    let epoch = Some("1700000000");
    fx.build_default(epoch);
    fx.build_default(epoch);
    let (changed, ran) = explain(&fx);
    assert!(changed.is_empty(), "{changed:?}");
    assert!(ran.is_empty(), "{ran:?}");
    let text = fx.run_with(None, &["explain", "solo:default"]);
    assert!(text.ok().contains("no input changed"), "{}", text.stdout);

    // a keymap edit: its object, the link, the hex
    fx.edit("keyboards/solo/keymaps/default/keymap.c", |t| {
        t.replacen("KC_A", "KC_B", 1)
    });
    fx.build_default(epoch);
    let (changed, ran) = explain(&fx);
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].0, "keyboards/solo/keymaps/default/keymap.c");
    assert_eq!(
        changed[0].1,
        [
            "compile .build/obj_solo_default/keyboards/solo/keymaps/default/keymap.o",
            "link .build/solo_default.elf",
            "convert .build/solo_default.hex"
        ]
    );
    assert_eq!(ran.len(), 3, "{ran:?}");

    // a header edit: every object that includes it
    fx.edit("quantum/quantum.h", |t| {
        t + "static inline int quantum_edit(void) { return 1; }\n"
    });
    fx.build_default(epoch);
    let (changed, ran) = explain(&fx);
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].0, "quantum/quantum.h");
    let compiles: Vec<&String> = changed[0]
        .1
        .iter()
        .filter(|s| s.starts_with("compile "))
        .collect();
    // main, matrix, keymap_common, keymap, default_keyboard include quantum.h
    assert_eq!(compiles.len(), 5, "{changed:?}");
    // the objects come out the same (an unused inline function): no link
    assert_eq!(ran.len(), 5, "{ran:?}");

    // keyboard.json: no step reads it; the generated headers change, and
    // every compile that includes them re-runs
    fx.edit("keyboards/solo/keyboard.json", |t| {
        t.replace("\"pid\": \"0x1311\"", "\"pid\": \"0x1312\"")
    });
    let out = fx.build_default(epoch);
    assert!(out.contains("plan made"), "{out}");
    let (changed, ran) = explain(&fx);
    let kj = changed
        .iter()
        .find(|c| c.0 == "keyboards/solo/keyboard.json")
        .unwrap_or_else(|| panic!("{changed:?}"));
    assert!(
        kj.2.iter().any(|g| g.ends_with("src/info_config.h")),
        "{changed:?}"
    );
    assert!(
        kj.1.iter().filter(|s| s.starts_with("compile ")).count() >= 5,
        "{changed:?}"
    );
    assert!(!ran.is_empty());
    // the human form names the file and what it regenerated
    let text = fx.run_with(None, &["explain", "solo:default"]);
    let text = text.ok();
    assert!(
        text.contains("keyboards/solo/keyboard.json (file, changed)"),
        "{text}"
    );
    assert!(
        text.contains("regenerated .build/obj_solo_default/src/info_config.h"),
        "{text}"
    );
}

/// The `target` names of an audit's JSON report.
fn audited(report: &Value) -> Vec<&str> {
    report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect()
}

#[test]
fn audit_filters_recorded_targets_like_sweep_and_rebuilds_them_together() {
    let fx = fixture();
    let swept = ["solo", "ortho/two", "acme/pad", "numpad", "split/half"];
    let mut args = vec!["sweep", "--progress", "none"];
    args.extend(swept);
    fx.run_with(Some("1700000000"), &args).ok();

    // -f: QMK's filters on the recorded targets' merged info, the same
    // selection as `keyfab sweep -f`
    let filter = "matrix_size.cols<3";
    let mut list = vec!["sweep", "--list", "-f", filter];
    list.extend(swept);
    let selected: Vec<String> = fx
        .run_with(None, &list)
        .ok()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(selected, ["acme/pad:default", "ortho/two:default"]);
    let report = fx
        .run_with(
            None,
            &["audit", "-f", filter, "-j", "2", "--format", "json"],
        )
        .json();
    assert_eq!(audited(&report), selected);
    assert_eq!(report["pass"], true, "{report:#}");
    // rebuilt together: one sweep into one cache, on one pool of -j jobs
    let targets = report["targets"].as_array().unwrap();
    for t in targets {
        assert_eq!(t["rebuild"]["targets_rebuilt_together"], 2, "{t:#}");
        assert_eq!(t["rebuild"]["jobs"], 2);
        assert_eq!(t["rebuild"]["cache"], targets[0]["rebuild"]["cache"]);
        assert!(t["artifacts_compared"].as_u64().unwrap() >= 9, "{t:#}");
    }

    // patterns name recorded targets; filters narrow them; all filters must match
    let report = fx
        .run_with(
            None,
            &[
                "audit",
                "a*",
                "o*",
                "-f",
                "contains(community_layouts, ortho_2x2)",
                "-f",
                "exists(features.mousekey)",
                "--format",
                "json",
            ],
        )
        .json();
    assert_eq!(audited(&report), ["ortho/two:default"]);
    // no filter: the whole pattern
    let report = fx
        .run_with(None, &["audit", "s*", "--format", "json"])
        .json();
    assert_eq!(audited(&report), ["solo:default", "split/half:default"]);
    assert_eq!(report["pass"], true, "{report:#}");

    // nothing matches: a failed command; a filter that is not one: a usage error
    let r = fx.run_with(None, &["audit", "-f", "processor==stm32*"]);
    assert!(
        r.fails()
            .contains("no recorded build matches the filters processor==stm32*"),
        "{}",
        r.stderr
    );
    for bad in ["processor=atmega32u4", "solo:*", "frob(processor)"] {
        let r = fx.run_with(None, &["audit", "-f", bad]);
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        assert!(r.stderr.contains(bad), "{}", r.stderr);
    }
}

/// An up-to-date build records a row naming the record it reproduced, not
/// a new copy of it: no-op builds add rows but no provenance body, and
/// explain, audit, verify and an index rebuilt from the blobs keep
/// answering.
#[test]
fn up_to_date_builds_add_rows_not_bodies() {
    let fx = fixture();
    let epoch = Some("1700000000");
    fx.build_default(epoch);
    assert_eq!(num(&fx.cache_stats(), "provenance_bodies"), 1);
    // The first no-op build also stores the generator calls make made while
    // planning (it ran them itself; now keyfab does, and remembers them).
    fx.build_default(epoch);
    let before = fx.cache_stats();
    assert_eq!(num(&before, "provenance"), 2, "{before:#}");
    assert_eq!(num(&before, "provenance_bodies"), 1, "{before:#}");
    for n in 1..=3 {
        fx.build_default(epoch);
        let now = fx.cache_stats();
        assert_eq!(num(&now, "provenance"), 2 + n, "{now:#}");
        assert_eq!(num(&now, "provenance_bodies"), 1, "{now:#}");
        assert_eq!(
            num(&now, "provenance_body_bytes"),
            num(&before, "provenance_body_bytes")
        );
        // One small blob per build: the row's own record.
        assert_eq!(num(&now, "blobs"), num(&before, "blobs") + n);
        let grew = num(&now, "bytes") - num(&before, "bytes");
        assert!(grew < 1000 * n, "{grew} bytes for {n} no-op builds");
    }
    let (changed, ran) = explain(&fx);
    assert!(changed.is_empty() && ran.is_empty(), "{changed:?} {ran:?}");
    let text = fx.run_with(None, &["audit", "solo:default"]);
    assert!(
        text.ok().starts_with("solo:default: PASS"),
        "{}",
        text.stdout
    );
    fx.run_with(None, &["cache", "verify"]).ok();

    // The index is lost: rebuilt from the blobs, with the same rows and bodies.
    let kept = index_rebuilt_keeps_provenance(&fx);
    let (changed, ran) = explain(&fx);
    assert!(changed.is_empty() && ran.is_empty(), "{changed:?} {ran:?}");
    fx.run_with(None, &["cache", "verify"]).ok();
    // … and the next no-op build still adds no body.
    fx.build_default(epoch);
    let after = fx.cache_stats();
    assert_eq!(num(&after, "provenance"), num(&kept, "provenance") + 1);
    assert_eq!(num(&after, "provenance_bodies"), 1);
}

/// The tree's revision is the run's, not the build's: a commit that does
/// not touch what a target reads leaves it up to date, and its no-op build
/// adds a row with the new revision but no body.
#[test]
fn a_new_revision_alone_adds_no_provenance_body() {
    let fx = fixture();
    std::fs::write(fx.tree.join(".gitignore"), ".build/\n*.hex\n").unwrap();
    commit_all(&fx.tree);
    // A lightweight tag, as QMK's: its `git describe --tags` names the tree.
    git(&fx.tree, &["tag", "v1.2.3"]);
    let epoch = Some("1700000000");
    fx.run_with(epoch, &["build", "solo:default"]).ok();
    let before = fx.cache_stats();
    std::fs::write(fx.tree.join("NOTES.txt"), "not read by any build\n").unwrap();
    git(&fx.tree, &["add", "NOTES.txt"]);
    git(&fx.tree, &["commit", "-q", "-m", "notes"]);
    let revision = git(&fx.tree, &DESCRIBE_DIRTY);
    assert!(revision.starts_with("v1.2.3-1-g"), "{revision}");
    fx.run_with(epoch, &["build", "solo:default"]).ok();
    let after = fx.cache_stats();
    assert_eq!(after["provenance"], 2, "{after:#}");
    assert_eq!(after["provenance_bodies"], before["provenance_bodies"]);
    let report = fx
        .run_with(None, &["audit", "solo:default", "--format", "json"])
        .json();
    assert_eq!(report["pass"], true, "{report:#}");
    assert_eq!(
        report["targets"][0]["tree_revision"], revision,
        "{report:#}"
    );
}

/// A fresh checkout (no `.build/`, no firmware at the root) with a warm
/// cache builds everything from the cache without being up to date: its
/// record reads and writes what the last one did, so it adds a row naming
/// that body (which steps came from the cache is the row's), and explain
/// still says no step ran. After a real edit explain names what re-ran.
#[test]
fn a_fresh_checkout_adds_a_row_not_a_body() {
    let fx = fixture();
    let epoch = Some("1700000000");
    let fresh_checkout = || {
        std::fs::remove_dir_all(fx.tree.join(".build")).unwrap();
        std::fs::remove_file(fx.tree.join("solo_default.hex")).unwrap();
    };
    let out = fx.build_default(epoch);
    assert!(out.contains(" 5 compiled, 0 from cache"), "{out}");
    fx.build_default(epoch);
    let before = fx.cache_stats();
    assert_eq!(num(&before, "provenance_bodies"), 1, "{before:#}");
    for n in 1..=2 {
        fresh_checkout();
        let out = fx.build_default(epoch);
        assert!(out.contains(" 0 compiled, 5 from cache"), "{out}");
        assert!(!out.contains("up to date"), "{out}");
        let now = fx.cache_stats();
        assert_eq!(num(&now, "provenance"), num(&before, "provenance") + n);
        assert_eq!(num(&now, "provenance_bodies"), 1, "{now:#}");
        assert_eq!(
            num(&now, "provenance_body_bytes"),
            num(&before, "provenance_body_bytes")
        );
        let (changed, ran) = explain(&fx);
        assert!(changed.is_empty() && ran.is_empty(), "{changed:?} {ran:?}");
    }
    let j = fx
        .run_with(None, &["explain", "solo:default", "--format", "json"])
        .json();
    let compiles = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "compile")
        .count();
    assert_eq!(compiles, 5, "{j:#}");
    let text = fx.run_with(None, &["explain", "solo:default"]);
    assert!(
        text.ok().contains("0 step(s) re-ran, 10 from the cache"),
        "{}",
        text.stdout
    );
    let audit = fx.run_with(None, &["audit", "solo:default"]);
    assert!(
        audit.ok().starts_with("solo:default: PASS"),
        "{}",
        audit.stdout
    );

    // A real edit in a fresh checkout: a new body; explain names the
    // keymap's compile, the link and the conversion, the rest came from
    // the cache.
    fx.edit("keyboards/solo/keymaps/default/keymap.c", |t| {
        t.replacen("KC_A", "KC_B", 1)
    });
    fresh_checkout();
    let out = fx.build_default(epoch);
    assert!(out.contains(" 1 compiled, 4 from cache"), "{out}");
    assert_eq!(num(&fx.cache_stats(), "provenance_bodies"), 2);
    let keymap = [
        "compile .build/obj_solo_default/keyboards/solo/keymaps/default/keymap.o",
        "link .build/solo_default.elf",
        "convert .build/solo_default.hex",
    ];
    let (changed, ran) = explain(&fx);
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].0, "keyboards/solo/keymaps/default/keymap.c");
    assert_eq!(changed[0].1, keymap);
    assert_eq!(ran, [&keymap[0][8..], &keymap[1][5..], &keymap[2][8..]]);

    // An index rebuilt from the blobs: the rows' notes come back with them.
    index_rebuilt_keeps_provenance(&fx);
    assert_eq!(explain(&fx), (changed, ran));
    fx.run_with(None, &["cache", "verify"]).ok();
}

/// Records as older keyfabs wrote them — schema 2 (a row naming a body
/// whose step notes say `cached`) and schema 1 (row and body in one record
/// blob) — explain as the records this keyfab writes do.
#[test]
fn older_records_still_explain() {
    use keyfab_build::provenance;
    use keyfab_cas::{record, LocalCas, Provenance};
    let fx = fixture();
    let epoch = Some("1700000000");
    fx.run_with(epoch, &["build", "solo:default"]).ok();
    fx.edit("keyboards/solo/keymaps/default/keymap.c", |t| {
        t.replacen("KC_A", "KC_B", 1)
    });
    fx.run_with(epoch, &["build", "solo:default"]).ok();
    let (changed, ran) = explain(&fx);
    assert_eq!(ran.len(), 3, "{ran:?}");
    let text = fx
        .run_with(None, &["explain", "solo:default"])
        .ok()
        .to_string();

    // The two records whole, oldest first, in the older form: the steps'
    // `cached` flags in the body, no `ran` note.
    let recs: Vec<(Provenance, Vec<(String, String)>)> = {
        let cas = LocalCas::open(&fx.cache).unwrap();
        let mut recs = cas.provenance("solo:default", 10).unwrap();
        recs.reverse();
        recs.into_iter()
            .map(|(_, p)| {
                let steps = provenance::steps(&p);
                let (mut body, row) = provenance::split_notes(
                    p.notes
                        .iter()
                        .filter(|(k, _)| k != "step")
                        .cloned()
                        .collect(),
                );
                let row: Vec<_> = row.into_iter().filter(|(k, _)| k != "ran").collect();
                for s in steps {
                    let note = serde_json::json!({
                        "kind": s.kind, "output": s.output, "inputs": s.inputs, "cached": s.cached,
                    });
                    body.push(("step".into(), note.to_string()));
                }
                (Provenance { notes: body, ..p }, row)
            })
            .collect()
    };
    assert_eq!(recs.len(), 2);
    std::fs::rename(&fx.cache, fx.tmp.path().join("cache-new")).unwrap();
    for schema in [2, 1] {
        let _ = std::fs::remove_dir_all(&fx.cache);
        {
            let cas = LocalCas::open(&fx.cache).unwrap();
            for (body, row) in &recs {
                let run = cas.begin_run("keyfab build").unwrap();
                if schema == 2 {
                    cas.record_provenance_with(run, "solo:default", body, row)
                        .unwrap();
                } else {
                    let mut whole = body.clone();
                    whole.notes.splice(0..0, row.iter().cloned());
                    let rec = record::encode(&record::Record::Provenance {
                        run: run.0,
                        run_started_ns: 1,
                        run_command: "keyfab build".into(),
                        target: "solo:default".into(),
                        provenance: whole,
                    })
                    .unwrap();
                    cas.put_bytes(&rec).unwrap();
                }
            }
        }
        if schema == 1 {
            // Rebuilt from the blobs: rows with their bodies inline.
            std::fs::remove_file(fx.cache.join("index.sqlite")).unwrap();
        }
        assert_eq!(
            explain(&fx),
            (changed.clone(), ran.clone()),
            "schema {schema}"
        );
        let now = fx.run_with(None, &["explain", "solo:default"]);
        assert_eq!(now.ok(), text, "schema {schema}");
    }
}

/// The rebuild's copy points at the checkout's git folder, but git there
/// uses an index of its own: `git diff` (version.h's) writes the index it
/// refreshed whatever `GIT_OPTIONAL_LOCKS` says, and the copy's inodes and
/// times in the checkout's index made its next `git status` read every
/// tracked file again.
#[test]
fn an_audit_leaves_the_checkouts_git_index_alone() {
    let fx = fixture();
    std::fs::write(fx.tree.join(".gitignore"), ".build/\n*.hex\n").unwrap();
    commit_all(&fx.tree);
    let epoch = Some("1700000000");
    fx.run_with(epoch, &["build", "solo:default"]).ok();
    // Settled: what git writes now, it would write anyway.
    git(&fx.tree, &["status", "--porcelain"]);
    let index = fx.tree.join(".git/index");
    let before = std::fs::read(&index).unwrap();
    let report = fx
        .run_with(None, &["audit", "solo:default", "--format", "json"])
        .json();
    assert_eq!(report["pass"], true, "{report:#}");
    assert!(
        std::fs::read(&index).unwrap() == before,
        "the audit rewrote the checkout's git index"
    );
}

/// The rebuild's git compares the copy's files with the index by size and
/// modification time, which the copy keeps: it hashes none of them again
/// (with git's defaults the copy's new inodes and change times made
/// version.h's `git diff` read every tracked file: ~3 s for QMK's tree).
#[test]
fn an_audits_git_reads_no_file_of_the_copy_again() {
    let fx = fixture();
    std::fs::write(fx.tree.join(".gitignore"), ".build/\n*.hex\ntrace\n").unwrap();
    // Files older than the index, as in any checkout (not racily clean).
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    set_times_under(&fx.tree, then);
    commit_all(&fx.tree);
    git(&fx.tree, &["status", "--porcelain"]);
    fx.run_with(Some("1700000000"), &["build", "solo:default"])
        .ok();
    let trace = fx.tree.join("trace");
    let mut audit = fx.keyfab();
    audit
        .env("GIT_TRACE2_EVENT", &trace)
        .args(["audit", "solo:default", "--format", "json"]);
    let report = run(&mut audit).json();
    assert_eq!(report["pass"], true, "{report:#}");
    let events = std::fs::read_to_string(&trace).unwrap();
    // git did compare the copy with an index (version.h's diffs) …
    assert!(
        events.contains(r#""argv":["git","diff","--name-only","-z","--exit-code"]"#),
        "{events}"
    );
    assert!(events.contains(r#""key":"read/cache_nr""#), "{events}");
    // … and found every entry up to date by its stat data alone.
    assert!(!events.contains(r#""key":"refresh/sum_scan""#), "{events}");
}

/// Sets the modification time of every file under `dir` (not `.git`).
fn set_times_under(dir: &std::path::Path, t: std::time::SystemTime) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let ft = entry.file_type().unwrap();
        if ft.is_dir() && entry.file_name() != ".git" {
            set_times_under(&entry.path(), t);
        } else if ft.is_file() {
            let f = std::fs::File::options()
                .write(true)
                .open(entry.path())
                .unwrap();
            f.set_modified(t).unwrap();
        }
    }
}

/// Every checkout in the tree is one in the rebuild's copy: the tree's and
/// a submodule's (a `.git` file naming the tree's `.git/modules/…`, whose
/// config names the checkout's folder as its work tree), each with its own
/// index there. version.h's git values, the submodule's changed work tree
/// among them, come out the same in the rebuild.
#[test]
fn an_audit_rebuilds_version_h_with_every_checkouts_git_state() {
    let fx = fixture();
    version_h_with_git(&fx.tree);
    std::fs::write(fx.tree.join(".gitignore"), ".build/\n*.hex\n").unwrap();
    commit_all(&fx.tree);
    let upstream = fx.tmp.path().join("contrib-upstream");
    std::fs::create_dir_all(&upstream).unwrap();
    std::fs::write(upstream.join("os.h"), "int a;\n").unwrap();
    commit_all(&upstream);
    git(&upstream, &["tag", "contrib-9"]);
    let file_protocol = ["-c", "protocol.file.allow=always"];
    let add = [&file_protocol[..], &["submodule", "add", "-q"]].concat();
    let upstream_arg = upstream.display().to_string();
    git(
        &fx.tree,
        &[&add[..], &[&upstream_arg, "lib/chibios-contrib"]].concat(),
    );
    git(&fx.tree, &["commit", "-q", "-m", "contrib"]);
    let contrib = fx.tree.join("lib/chibios-contrib");
    assert!(contrib.join(".git").is_file());
    std::fs::write(contrib.join("os.h"), "int b;\n").unwrap();

    fx.run_with(Some("1700000000"), &["build", "solo:default"])
        .ok();
    let version_h = ".build/obj_solo_default/src/version.h";
    let original = std::fs::read_to_string(fx.tree.join(version_h)).unwrap();
    assert!(
        original.contains("#define CHIBIOS_CONTRIB_VERSION \"contrib-9-dirty\"\n"),
        "{original}"
    );
    let qmk_version = original
        .lines()
        .find(|l| l.starts_with("#define QMK_VERSION "));
    assert!(qmk_version.unwrap().ends_with("-dirty\""), "{original}");
    let report = fx
        .run_with(
            None,
            &["audit", "solo:default", "--keep", "--format", "json"],
        )
        .json();
    assert_eq!(report["pass"], true, "{report:#}");
    let copy = std::path::PathBuf::from(report["targets"][0]["rebuild"]["tree"].as_str().unwrap());
    let rebuilt = std::fs::read_to_string(copy.join(version_h)).unwrap();
    assert_eq!(rebuilt, original);
    // The checkouts' own work trees and indexes are as they were.
    assert_eq!(git(&contrib, &["status", "--porcelain"]), "M os.h");
    std::fs::remove_dir_all(copy.parent().unwrap().parent().unwrap()).unwrap();
}
