//! `keyfab sweep` end to end on the fixture tree: the whole matrix, no-op
//! sweeps, an isolated failure, filters, shards, and the report files.

mod util;

use serde_json::Value;
use std::path::{Path, PathBuf};
use util::*;

/// Fixture keyboards the fixture firmware cannot build: the generator test
/// boards (their keymaps use QMK features the mini firmware lacks) and the
/// boards whose only keymaps are community layouts (the fixture makefile
/// looks in keyboard folders only).
const UNBUILDABLE: &[&str] = &["gentest", "ortho/big", "ortho/wide"];

fn fixture() -> Fixture {
    let fx = Fixture::new();
    for kb in UNBUILDABLE {
        std::fs::remove_dir_all(fx.tree.join("keyboards").join(kb)).unwrap();
    }
    fx
}

impl Fixture {
    fn report(&self) -> PathBuf {
        self.tmp.path().join("report")
    }
    fn sweep(&self, args: &[&str]) -> Run {
        run(self
            .keyfab()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("sweep")
            .arg("--report")
            .arg(self.report())
            .args(args))
    }
    fn list(&self, args: &[&str]) -> Vec<String> {
        let r = run(self.keyfab().args(["sweep", "--list"]).args(args));
        r.ok().lines().map(str::to_string).collect()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.report().join("sweep.json")).unwrap()).unwrap()
    }
}

fn target<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == name)
        .unwrap_or_else(|| panic!("{name} not in the report"))
}

/// The JUnit file parsed with quick-xml: (testsuites attributes, testcase
/// names, failure count); panics on malformed XML.
fn junit(dir: &Path) -> (Vec<(String, String)>, Vec<String>, usize) {
    use quick_xml::events::Event;
    let text = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut suites_attrs = Vec::new();
    let mut cases = Vec::new();
    let mut failures = 0;
    let mut ends = 0;
    let mut roots = 0;
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                let attrs: Vec<(String, String)> = e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap();
                        (
                            String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                            a.unescape_value().unwrap().into_owned(),
                        )
                    })
                    .collect();
                match name.as_str() {
                    "testsuites" => {
                        roots += 1;
                        suites_attrs = attrs;
                    }
                    "testcase" => {
                        cases.push(attrs.iter().find(|(k, _)| k == "name").unwrap().1.clone())
                    }
                    "failure" => failures += 1,
                    _ => {}
                }
            }
            Event::End(_) => ends += 1,
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(roots, 1, "one <testsuites> root");
    assert!(ends >= 2, "closing tags");
    (suites_attrs, cases, failures)
}

fn attr<'a>(attrs: &'a [(String, String)], key: &str) -> &'a str {
    &attrs.iter().find(|(k, _)| k == key).unwrap().1
}

#[test]
fn whole_matrix_then_noop_then_fresh_checkout() {
    let fx = fixture();
    let all = fx.list(&[]);
    assert!(all.len() >= 10, "{all:?}");
    assert!(all.contains(&"solo:default".to_string()));

    let cold = fx.sweep(&[]);
    let out = cold.ok();
    assert!(
        out.contains(&format!(
            "sweep: {} targets, {} ok, 0 failed",
            all.len(),
            all.len()
        )),
        "{out}"
    );
    let r = fx.json();
    assert_eq!(r["counts"]["total"], all.len());
    assert_eq!(r["counts"]["ok"], all.len());
    assert!(r["counts"]["compiled"].as_u64().unwrap() >= 3 * all.len() as u64);
    let solo = target(&r, "solo:default");
    assert_eq!(solo["status"], "ok");
    assert_eq!(solo["firmware"], ".build/solo_default.hex");
    assert!(solo["size"].as_u64().unwrap() > 0);
    assert!(solo["max_size"].as_u64().is_some());
    assert_eq!(solo["sha256"].as_str().unwrap().len(), 64);
    let sha = solo["sha256"].clone();

    // JUnit: well-formed, one testcase per target, no failures
    let (attrs, cases, failures) = junit(&fx.report());
    assert_eq!(attr(&attrs, "tests"), all.len().to_string());
    assert_eq!(attr(&attrs, "failures"), "0");
    assert_eq!(cases.len(), all.len());
    assert_eq!(failures, 0);
    // HTML: a row per target
    let html = std::fs::read_to_string(fx.report().join("index.html")).unwrap();
    for t in &all {
        assert!(html.contains(&format!("data-name=\"{t}\"")), "{t}");
    }
    assert!(html.contains("<table id=\"targets\">"));

    // nothing changed: nothing compiles, plans and links from the cache
    fx.sweep(&[]).ok();
    let r = fx.json();
    assert_eq!(r["counts"]["compiled"], 0);
    assert_eq!(r["counts"]["ok"], all.len());
    for t in r["targets"].as_array().unwrap() {
        assert_eq!(t["plan_from_cache"], true, "{t}");
        assert_eq!(t["link_from_cache"], true, "{t}");
    }
    assert_eq!(target(&r, "solo:default")["sha256"], sha);
    let cmp = &r["compare"];
    assert_eq!(cmp["new_failures"].as_array().unwrap().len(), 0);
    assert_eq!(cmp["hash_changes"].as_array().unwrap().len(), 0);

    // a fresh checkout (no .build/) with the warm cache: still nothing compiled
    std::fs::remove_dir_all(fx.tree.join(".build")).unwrap();
    fx.sweep(&[]).ok();
    let r = fx.json();
    assert_eq!(r["counts"]["compiled"], 0);
    assert_eq!(target(&r, "solo:default")["sha256"], sha);
}

#[test]
fn a_broken_keyboard_fails_alone_and_the_report_says_why() {
    let fx = fixture();
    let all = fx.list(&[]);
    fx.sweep(&[]).ok();
    fx.edit("keyboards/solo/keymaps/default/keymap.c", |t| {
        t + "\nthis is not C;\n"
    });
    let r = fx.sweep(&[]);
    let err = r.fails();
    assert!(err.contains("solo:default failed (build)"), "{err}");
    assert!(
        r.stdout
            .contains(&format!("{} ok, 1 failed", all.len() - 1)),
        "{}",
        r.stdout
    );
    let j = fx.json();
    let solo = target(&j, "solo:default");
    assert_eq!(solo["status"], "failed");
    assert_eq!(solo["stage"], "build");
    assert!(
        solo["error"].as_str().unwrap().contains("keymap.c"),
        "{solo}"
    );
    assert_eq!(
        j["compare"]["new_failures"],
        serde_json::json!(["solo:default"])
    );
    let (attrs, _, failures) = junit(&fx.report());
    assert_eq!(attr(&attrs, "failures"), "1");
    assert_eq!(failures, 1);
    let html = std::fs::read_to_string(fx.report().join("index.html")).unwrap();
    // failures first
    let first_row = html.find("<tr class=").unwrap();
    assert!(html[first_row..].starts_with("<tr class=\"failed\""));
    assert!(html.contains("id=\"new-failures\""));

    // fixed again: reported as fixed, the firmware identical to before
    fx.edit("keyboards/solo/keymaps/default/keymap.c", |t| {
        t.replace("\nthis is not C;\n", "")
    });
    fx.sweep(&[]).ok();
    let j = fx.json();
    assert_eq!(j["compare"]["fixed"], serde_json::json!(["solo:default"]));
    assert_eq!(
        j["counts"]["compiled"], 0,
        "the old object comes back from the cache"
    );
}

#[test]
fn a_core_change_recompiles_only_its_objects_everywhere() {
    let fx = fixture();
    let all = fx.list(&[]);
    fx.sweep(&[]).ok();
    fx.edit("quantum/matrix.c", |t| {
        t.replace("] ^= MATRIX_SCAN_TOGGLE;", "] ^= 3;")
    });
    fx.sweep(&[]).ok();
    let j = fx.json();
    assert_eq!(
        j["counts"]["compiled"],
        all.len(),
        "one matrix.o per target: {j:#}"
    );
    assert_eq!(
        j["compare"]["hash_changes"].as_array().unwrap().len(),
        all.len()
    );
}

#[test]
fn filters_select_like_qmk_find() {
    let fx = fixture();
    let all = fx.list(&[]);
    let f = |filter: &str| fx.list(&["-f", filter]);
    assert_eq!(f("processor==atmega32u4"), all);
    assert_eq!(f("processor==ATMEGA*"), all);
    assert!(f("processor!=atmega32u4").is_empty());
    let wide = f("matrix_size.cols>2");
    let narrow = f("matrix_size.cols<3");
    assert!(!wide.is_empty() && !narrow.is_empty());
    let mut both: Vec<String> = wide.iter().chain(&narrow).cloned().collect();
    both.sort();
    assert_eq!(both, all, "> and < partition the targets");
    assert_eq!(f("matrix_size.cols>=3"), wide);
    assert_eq!(f("matrix_size.cols<=2"), narrow);
    assert!(f("exists(features.mousekey)").contains(&"solo:default".to_string()));
    let absent = f("absent(features.mousekey)");
    assert!(absent
        .iter()
        .all(|t| !f("exists(features.mousekey)").contains(t)));
    assert_eq!(
        f("contains(community_layouts, ortho_2x2)"),
        ["ortho/two:default"]
    );
    let three = f("length(matrix_pins.cols, 3)");
    assert!(
        !three.is_empty() && three.iter().all(|t| wide.contains(t)),
        "{three:?}"
    );
    // several filters: all must match
    assert_eq!(
        fx.list(&["-f", "processor==atmega32u4", "-f", "matrix_size.cols<3"]),
        narrow
    );
    // keymap.json config counts (QMK filters keymap_json, not info_json)
    assert_eq!(
        fx.list(&["-km", "jsonmap", "-f", "exists(layouts)"]),
        ["solo:jsonmap"]
    );

    // unrecognised filters are errors, never silently ignored
    for bad in [
        "processor=atmega32u4",
        "frob(processor)",
        "contains(tags)",
        "cols<x",
    ] {
        let r = run(keyfab(&fx.tree).args(["sweep", "--list", "-f", bad]));
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        assert!(r.stderr.contains(bad), "{}", r.stderr);
    }
}

#[test]
fn shards_partition_the_targets() {
    let fx = fixture();
    let all = fx.list(&["-km", "all"]);
    for n in [1, 2, 3, 5] {
        let mut union = Vec::new();
        for i in 1..=n {
            let part = fx.list(&["-km", "all", "--shard", &format!("{i}/{n}")]);
            assert!(!part.is_empty() || all.len() < n);
            assert_eq!(
                part,
                fx.list(&["-km", "all", "--shard", &format!("{i}/{n}")])
            );
            union.extend(part);
        }
        union.sort();
        assert_eq!(union, all, "shards of {n}");
    }
    let r = run(keyfab(&fx.tree).args(["sweep", "--list", "--shard", "4/3"]));
    assert_eq!(r.code, 2);
}

/// CI runs each shard on a runner of its own, with a cache of its own
/// (fresh, or kept from that shard's last night): every runner must cut
/// the matrix the same way whatever its cache holds, so the shards, built
/// one after another with one cache or listed with another, still hold
/// every target once.
#[test]
fn shards_do_not_depend_on_what_a_cache_holds() {
    let fx = fixture();
    let all = fx.list(&["-km", "all"]);
    let n = 3;
    let fresh: Vec<Vec<String>> = (1..=n)
        .map(|i| fx.list(&["-km", "all", "--shard", &format!("{i}/{n}")]))
        .collect();
    let mut built = Vec::new();
    for i in 1..=n {
        let shard = format!("{i}/{n}");
        let part = fx.list(&["-km", "all", "--shard", &shard]);
        assert_eq!(
            part,
            fresh[i - 1],
            "shard {shard} after the shards before it"
        );
        // The fixture has one keymap that fails on purpose.
        fx.sweep(&["-km", "all", "--shard", &shard]);
        let report = fx.json();
        let names = report["targets"].as_array().unwrap().iter();
        built.extend(names.map(|t| t["target"].as_str().unwrap().to_string()));
    }
    built.sort();
    assert_eq!(built, all, "the shards built one after another");
    let other = fx.tmp.path().join("other-runner");
    for i in 1..=n {
        let shard = format!("{i}/{n}");
        let r = run(keyfab(&fx.tree)
            .arg("--cache")
            .arg(&other)
            .args(["sweep", "--list", "-km", "all", "--shard", &shard]));
        let part: Vec<String> = r.ok().lines().map(str::to_string).collect();
        assert_eq!(part, fresh[i - 1], "shard {shard} with another cache");
    }
}

/// The report names the firmware QMK delivers, the one copied to the
/// tree's root: a LUFA mass-storage board's .bin (made after its .hex),
/// with that file's hash.
#[test]
fn the_report_names_the_delivered_firmware() {
    let fx = fixture();
    fx.sweep(&["-e", "BOOTLOADER=lufa-ms", "solo:default"]).ok();
    let r = fx.json();
    let solo = target(&r, "solo:default");
    assert_eq!(solo["firmware"], ".build/solo_default.bin");
    // coreutils' sha256sum of the copy at the root.
    let out = std::process::Command::new("sha256sum")
        .arg(fx.tree.join("solo_default.bin"))
        .output()
        .unwrap();
    let sum = String::from_utf8(out.stdout).unwrap();
    assert_eq!(solo["sha256"], sum.split_whitespace().next().unwrap());
}

/// `--no-copy` leaves the firmware in `.build/`; without it, it is copied
/// to the tree's root as QMK's build copies it.
#[test]
fn no_copy_leaves_the_firmware_in_build() {
    let fx = fixture();
    let (built, delivered) = (
        fx.tree.join(".build/solo_default.hex"),
        fx.tree.join("solo_default.hex"),
    );
    fx.sweep(&["--no-copy", "solo:default"]).ok();
    assert!(built.is_file());
    assert!(!delivered.exists());
    let t = target(&fx.json(), "solo:default").clone();
    assert_eq!(t["status"], "ok");
    assert_eq!(t["firmware"], ".build/solo_default.hex");
    fx.sweep(&["solo:default"]).ok();
    assert_eq!(
        std::fs::read(&delivered).unwrap(),
        std::fs::read(&built).unwrap()
    );
}

/// `keyfab userspace-compile` builds the targets of the userspace's
/// qmk.json as `qmk userspace-compile` does: a keymap of the userspace, one
/// with a make variable of its own, a configurator export; each firmware
/// copied to the userspace's root too. An entry naming no keyboard stops it
/// before any build, named.
#[test]
fn userspace_compile_builds_the_targets_of_qmk_json() {
    let fx = fixture();
    let (us, usarg) = copy_userspace(fx.tmp.path());
    let compile = |extra: &[&str]| {
        run(fx
            .keyfab()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([usarg.as_str(), "userspace-compile", "--report"])
            .arg(fx.report())
            .args(extra))
    };
    compile(&[]).ok();
    let report = fx.json();
    let mut built: Vec<(&str, &str)> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["target"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    built.sort();
    assert_eq!(
        built,
        [
            ("acme/pad:default", "ok"),
            ("solo:from_json", "ok"),
            ("solo:mine", "ok")
        ]
    );
    for firmware in [
        "solo_mine.hex",
        "acme_pad_default.hex",
        "solo_from_json.hex",
    ] {
        assert!(
            us.join(firmware).is_file(),
            "{firmware} not in the userspace"
        );
    }
    // qmk.json gives acme/pad DEBUG_ENABLE=yes, and solo:mine nothing.
    let cflags = |t: &str| {
        std::fs::read_to_string(fx.tree.join(format!(".build/obj_{t}/cflags.txt"))).unwrap()
    };
    assert!(cflags("acme_pad_default").contains("-DDEBUG_ENABLE"));
    assert!(!cflags("solo_mine").contains("-DDEBUG_ENABLE"));

    let qmk_json = us.join("qmk.json");
    let text = std::fs::read_to_string(&qmk_json).unwrap();
    std::fs::write(&qmk_json, text.replace("acme/pad", "acme/nope")).unwrap();
    let err = compile(&[]).fails().to_string();
    assert!(err.contains("qmk.json: acme/nope:default"), "{err}");

    let none = run(fx.keyfab().arg("userspace-compile"))
        .fails()
        .to_string();
    assert!(none.contains("no QMK userspace found"), "{none}");
}

/// The report holds what the compiler said as plain text: QMK's
/// `COLOR=true` colours it for a terminal, and a report is no terminal.
#[test]
fn the_report_holds_compiler_messages_without_colour() {
    let fx = fixture();
    fx.warn_in_solo_keymap();
    fx.sweep(&["solo:default"]).ok();
    let warned = target(&fx.json(), "solo:default")["warnings"][0]["log"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(warned.contains("never_read"), "{warned}");
    assert!(!warned.contains('\x1b'), "{warned:?}");

    fx.break_solo_keymap();
    fx.sweep(&["solo:default"]).fails();
    let error = target(&fx.json(), "solo:default")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("undeclared_name"), "{error}");
    assert!(!error.contains('\x1b'), "{error:?}");
}

/// A firmware over QMK's size limit fails its target (QMK's CI counts it a
/// failure too), at the stage "size", with the sizes; one near it passes
/// with QMK's warning among the target's warnings.
#[test]
fn a_firmware_over_the_size_limit_fails_its_target() {
    let fx = fixture();
    fx.sweep(&["solo:default"]).ok();
    let size = target(&fx.json(), "solo:default")["size"].as_u64().unwrap();
    fx.sweep(&["-e", &format!("MAX_SIZE={}", size + 10), "solo:default"])
        .ok();
    let near = target(&fx.json(), "solo:default").clone();
    assert_eq!(near["status"], "ok");
    assert_eq!(
        near["warnings"][0]["log"],
        format!(
            "the firmware size is approaching the maximum: {size}/{} bytes (10 free)",
            size + 10
        )
    );
    let err = fx
        .sweep(&["-e", "MAX_SIZE=10", "solo:default"])
        .fails()
        .to_string();
    let r = fx.json();
    let solo = target(&r, "solo:default");
    assert_eq!(solo["status"], "failed", "{err}");
    assert_eq!(solo["stage"], "size");
    let cause = solo["error"].as_str().unwrap();
    assert!(cause.starts_with("the firmware is too large: "), "{cause}");
    assert!(cause.contains("/10 bytes ("), "{cause}");
    assert!(!fx.tree.join("solo_default.hex").exists());
}

#[test]
fn named_targets_and_keymaps() {
    let fx = fixture();
    assert_eq!(
        fx.list(&["-km", "all", "solo"]),
        ["solo:default", "solo:jsonmap", "solo:odd"]
    );
    assert_eq!(
        fx.list(&["numpad", "solo:jsonmap"]),
        ["numpad:default", "solo:jsonmap"]
    );
    let r = run(keyfab(&fx.tree).args(["sweep", "--list", "solo:nosuch"]));
    assert!(r.fails().contains("nosuch"), "{}", r.stderr);
    // a sweep of named targets builds just those
    fx.sweep(&["solo", "numpad"]).ok();
    assert_eq!(fx.json()["counts"]["total"], 2);
}

/// The HTML page renders in a real browser and its script runs (the count
/// of shown rows is filled in; filtering by status hides rows). Runs only
/// where Chromium is installed (CI does not install it).
#[test]
fn html_report_renders_in_headless_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|c| keyfab_build::exec::resolve_program(c))
    else {
        eprintln!("no chromium: skipped");
        return;
    };
    let fx = fixture();
    fx.edit("keyboards/numpad/keymaps/default/keymap.c", |t| {
        t + "\nbroken(\n"
    });
    assert_eq!(fx.sweep(&["solo", "numpad"]).code, 1);
    let page = fx.report().join("index.html");
    let out = std::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<span id=\"shown\">2</span>"),
        "script ran: {dom}"
    );
    assert!(dom.contains("data-name=\"numpad:default\""));
    let failed_row = dom.find("data-name=\"numpad:default\"").unwrap();
    let ok_row = dom.find("data-name=\"solo:default\"").unwrap();
    assert!(failed_row < ok_row, "failures first");
}

/// Ctrl-C: the sweep stops starting work, reports what it did (the rest as
/// skipped), exits 130, and the cache stays consistent for the next sweep.
#[test]
fn interrupt_stops_promptly_and_leaves_the_cache_consistent() {
    use std::io::{BufRead, BufReader};
    let fx = fixture();
    let all = fx.list(&[]);
    let mut child = keyfab(&fx.tree)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("--cache")
        .arg(&fx.cache)
        .args([
            "sweep",
            "-km",
            "all",
            "-j",
            "1",
            "--progress",
            "plain",
            "--report",
        ])
        .arg(fx.report())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with('['), "{line}");
    let asked = std::time::Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(10),
        "stops promptly"
    );
    assert_eq!(status.code(), Some(130));
    let j = fx.json();
    assert_eq!(j["interrupted"], true);
    assert!(j["counts"]["skipped"].as_u64().unwrap() > 0, "{j:#}");
    assert_eq!(j["counts"]["failed"], 0, "an interruption is not a failure");
    // interrupted targets have no provenance record
    for t in j["targets"].as_array().unwrap() {
        if t["status"] == "skipped" {
            let e = run(fx.keyfab().args(["explain", t["target"].as_str().unwrap()]));
            assert!(e.fails().contains("no recorded build"), "{}", e.stderr);
        }
    }

    let v = run(keyfab(&fx.tree)
        .arg("--cache")
        .arg(&fx.cache)
        .args(["cache", "verify"]));
    v.ok();
    // the next sweep finishes the job
    fx.sweep(&[]).ok();
    assert_eq!(fx.json()["counts"]["ok"], all.len());
}

impl Fixture {
    /// `keyfab explain TARGET --format json`.
    fn explain(&self, target: &str) -> Value {
        run(self.keyfab().args(["explain", target, "--format", "json"])).json()
    }
}

/// The outputs of the steps that ran (were not taken from the cache).
fn ran(explain: &Value) -> Vec<&str> {
    explain["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ran"] == true)
        .map(|s| s["step"].as_str().unwrap())
        .collect()
}

fn changed(explain: &Value) -> Vec<(&str, &str)> {
    explain["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["input"].as_str().unwrap(), c["how"].as_str().unwrap()))
        .collect()
}

#[test]
fn a_sweep_records_each_targets_provenance_as_build_does() {
    let fx = fixture();
    let all = fx.list(&[]);
    fx.sweep(&[]).ok();
    // one record per target, holding that target's steps only: the targets
    // were built side by side on one pool, each into its own record
    for t in &all {
        let j = fx.explain(t);
        assert_eq!(j["status"], "ok", "{t}: {j:#}");
        assert!(j["previous_run"].is_null(), "{t}");
        let stem = t.replace(['/', ':'], "_");
        let steps = j["steps"].as_array().unwrap();
        let compiles = steps.iter().filter(|s| s["kind"] == "compile").count();
        assert_eq!(compiles, 5, "{t}: {j:#}");
        assert!(steps.iter().any(|s| s["kind"] == "link"), "{t}");
        for s in steps {
            let out = s["step"].as_str().unwrap();
            assert!(
                out.starts_with(&format!(".build/obj_{stem}/"))
                    || out.starts_with(&format!(".build/{stem}.")),
                "{t}: a step of another target in its record: {out}"
            );
        }
    }
    // `keyfab build` right after records the very same inputs: nothing
    // changed, nothing ran
    run(fx
        .keyfab()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "solo:default"]))
    .ok();
    let j = fx.explain("solo:default");
    assert!(j["previous_run"].is_i64(), "{j:#}");
    assert_eq!(changed(&j), [], "{j:#}");
    assert_eq!(ran(&j), Vec::<&str>::new());

    // a target last built by a sweep can be audited
    let a = run(fx
        .keyfab()
        .env_remove("SOURCE_DATE_EPOCH")
        .args(["audit", "ortho/two:default"]));
    assert!(
        a.ok().starts_with("ortho/two:default: PASS"),
        "{}",
        a.stdout
    );

    // a keymap edit and another sweep: explain names it, for that target only
    fx.edit("keyboards/solo/keymaps/default/keymap.c", |t| {
        t.replacen("KC_A", "KC_B", 1)
    });
    fx.sweep(&[]).ok();
    let j = fx.explain("solo:default");
    assert_eq!(
        changed(&j),
        [("keyboards/solo/keymaps/default/keymap.c", "changed")]
    );
    assert_eq!(
        ran(&j),
        [
            ".build/obj_solo_default/keyboards/solo/keymaps/default/keymap.o",
            ".build/solo_default.elf",
            ".build/solo_default.hex"
        ]
    );
    let other = fx.explain("ortho/two:default");
    assert_eq!(changed(&other), [], "{other:#}");
    assert_eq!(ran(&other), Vec::<&str>::new());
}

#[test]
fn failed_builds_are_recorded_with_what_was_known() {
    let fx = fixture();
    fx.sweep(&["solo", "numpad"]).ok();
    let first = fx.explain("solo:default")["run"].as_i64().unwrap();
    let keymap = "keyboards/solo/keymaps/default/keymap.c";
    fx.edit(keymap, |t| t + "\nthis is not C;\n");
    fx.sweep(&["solo", "numpad"]).fails();
    let j = fx.explain("solo:default");
    let failed = j["run"].as_i64().unwrap();
    assert_eq!(j["status"], "failed", "{j:#}");
    assert_eq!(j["stage"], "build");
    assert!(j["error"].as_str().unwrap().contains("keymap.c"), "{j:#}");
    assert_eq!(j["previous_run"], first);
    // compared with the last good build: the keymap changed; nothing the
    // failed build did not get to is reported as removed
    assert_eq!(changed(&j), [(keymap, "changed")], "{j:#}");
    // the compiles that finished are in the record (from the cache); the
    // failing one and the link are not
    let steps: Vec<&str> = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert!(
        steps.contains(&".build/obj_solo_default/quantum/main.o"),
        "{steps:?}"
    );
    assert!(!steps
        .iter()
        .any(|s| s.ends_with("keymap.o") || s.ends_with(".elf")));
    let text = run(fx.keyfab().args(["explain", "solo:default"]));
    let text = text.ok();
    assert!(
        text.contains(&format!(
            "failed build {failed} (build) compared with build {first}"
        )),
        "{text}"
    );
    // the other target of the sweep is fine
    assert_eq!(fx.explain("numpad:default")["status"], "ok");

    // fixed: compared with the last good build again, the failure named
    fx.edit(keymap, |t| t.replace("\nthis is not C;\n", ""));
    fx.sweep(&["solo", "numpad"]).ok();
    let j = fx.explain("solo:default");
    assert_eq!(j["status"], "ok");
    assert_eq!(j["previous_run"], first);
    assert_eq!(j["failed_between"], serde_json::json!([failed]));
    assert_eq!(changed(&j), []);
    assert_eq!(ran(&j), Vec::<&str>::new(), "the old objects come back");

    // `keyfab build` records its failures too
    fx.edit(keymap, |t| t + "\nneither is this;\n");
    run(fx
        .keyfab()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "solo:default"]))
    .fails();
    let j = fx.explain("solo:default");
    assert_eq!(j["status"], "failed", "{j:#}");
    assert!(j["run"].as_i64().unwrap() > failed);
}
