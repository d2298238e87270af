//! `keyfab build` end to end on the fixture firmware (host `cc`, `make`,
//! `objcopy`): cold builds, no-op rebuilds, fresh checkouts, and what
//! recompiles after each kind of edit.

mod util;

use std::path::Path;
use util::*;

/// (compiled, from cache, link from cache, plan from cache) from the summary line.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    compiled: usize,
    cached: usize,
    link_cached: bool,
    plan_cached: bool,
}

fn counts(line: &str) -> Counts {
    let num = |marker: &str| -> usize {
        let before = &line[..line
            .find(marker)
            .unwrap_or_else(|| panic!("no {marker:?} in {line}"))];
        before.rsplit(' ').next().unwrap().parse().unwrap()
    };
    Counts {
        compiled: num(" compiled"),
        cached: num(" from cache, link"),
        link_cached: line.contains("link from cache"),
        plan_cached: line.contains("plan from cache"),
    }
}

fn fixture() -> Fixture {
    Fixture::new()
}

impl Fixture {
    /// `keyfab build` with a fixed SOURCE_DATE_EPOCH, so the generated
    /// version.h is stable (without it, QMK's version.h changes every second).
    fn build_cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.keyfab();
        cmd.env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("build")
            .args(args);
        cmd
    }
    fn build(&self, target: &str) -> Run {
        run(&mut self.build_cmd(&[target]))
    }
    fn built(&self, target: &str) -> Counts {
        let r = self.build(target);
        let line = r.ok().lines().last().unwrap().to_string();
        counts(&line)
    }
}

fn firmware_runs(tree: &Path, target: &str) -> String {
    let out = std::process::Command::new(tree.join(format!(".build/{target}.elf")))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// A compiler's warning is shown when its object compiles and again when
/// the object comes from the cache. QMK's `COLOR=true` colours it
/// (`-fdiagnostics-color=always`): the colour reaches a terminal
/// (`CLICOLOR_FORCE` stands in for one here), never a pipe; a compile
/// error's message likewise.
#[test]
fn compiler_warnings_come_again_from_the_cache_in_colour_for_a_terminal_only() {
    let fx = fixture();
    fx.warn_in_solo_keymap();
    let warned = |r: &Run| {
        let err = &r.stderr;
        assert!(err.contains(SOLO_KEYMAP), "{err}");
        assert!(err.contains("never_read"), "{err}");
        err.contains('\x1b')
    };
    let cold = fx.build("solo:default");
    assert!(counts(cold.ok().lines().last().unwrap()).compiled > 0);
    assert!(!warned(&cold), "colour on a pipe: {}", cold.stderr);

    // A fresh .build/: every object from the cache, the warning with it.
    std::fs::remove_dir_all(fx.tree.join(".build")).unwrap();
    let cached = fx.build("solo:default");
    let c = counts(cached.ok().lines().last().unwrap());
    assert_eq!((c.compiled, c.cached > 0), (0, true));
    assert!(!warned(&cached), "colour on a pipe: {}", cached.stderr);

    std::fs::remove_dir_all(fx.tree.join(".build")).unwrap();
    let coloured = run(fx.build_cmd(&["solo:default"]).env("CLICOLOR_FORCE", "1"));
    assert_eq!(counts(coloured.ok().lines().last().unwrap()).compiled, 0);
    assert!(
        warned(&coloured),
        "no colour for a terminal: {}",
        coloured.stderr
    );

    // An error: the compiler's message, plain on a pipe.
    fx.break_solo_keymap();
    let failed = fx.build("solo:default");
    let err = failed.fails();
    assert!(err.contains("undeclared_name"), "{err}");
    assert!(!err.contains('\x1b'), "colour on a pipe: {err}");
}

/// A makefile missing from a git submodule that is not checked out (QMK's
/// ARM builds and `lib/chibios` in a fresh clone): make's message, and a
/// note saying what to run; once the submodule is there, the target builds.
#[test]
fn a_submodule_not_checked_out_is_named_with_what_to_run() {
    let fx = fixture();
    std::fs::write(
        fx.tree.join(".gitmodules"),
        "[submodule \"lib/vendor\"]\n\tpath = lib/vendor\n\turl = https://example.org/vendor.git\n[submodule \"lib/other\"]\n\tpath = lib/other\n\turl = https://example.org/other.git\n",
    )
    .unwrap();
    for m in ["lib/vendor", "lib/other"] {
        std::fs::create_dir_all(fx.tree.join(m)).unwrap();
    }
    std::fs::write(
        fx.tree.join("keyboards/solo/rules.mk"),
        "include lib/vendor/vendor.mk\n",
    )
    .unwrap();
    let failed = fx.build("solo:default");
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    let err = &failed.stderr;
    assert!(err.contains("lib/vendor/vendor.mk"), "{err}");
    assert!(
        err.contains(
            "note: lib/vendor is a git submodule that is not checked out: run `qmk git-submodule`"
        ),
        "{err}"
    );
    assert!(!err.contains("lib/other"), "{err}");

    std::fs::write(fx.tree.join("lib/vendor/vendor.mk"), "# checked out\n").unwrap();
    fx.build("solo:default").ok();
}

/// A keyboard with the LUFA mass-storage bootloader: its firmware is a
/// .bin that a bare objcopy line (no status line before it, as QMK's AVR
/// `bin` recipe prints) makes from the .hex, padded up to the bootloader;
/// copied to the tree root, and from the cache the next time.
#[test]
fn a_bin_made_from_the_hex_by_a_bare_objcopy() {
    let fx = fixture();
    let args = [
        "-e",
        "BOOTLOADER=lufa-ms",
        "-e",
        "BOOTLOADER_SIZE=6144",
        "solo:default",
    ];
    let r = run(&mut fx.build_cmd(&args));
    let line = r.ok().lines().last().unwrap().to_string();
    assert!(
        line.starts_with("solo:default: .build/solo_default.hex .build/solo_default.bin ("),
        "{line}"
    );
    let bin = std::fs::read(fx.tree.join(".build/solo_default.bin")).unwrap();
    assert_eq!(
        std::fs::read(fx.tree.join("solo_default.bin")).unwrap(),
        bin
    );
    // What objcopy itself makes of the .hex, padded to 32768 - 6144.
    let want = fx.tmp.path().join("want.bin");
    let status = std::process::Command::new("objcopy")
        .args(["-Iihex", "-Obinary", ".build/solo_default.hex"])
        .arg(&want)
        .args(["--pad-to", "26624"])
        .current_dir(&fx.tree)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(bin, std::fs::read(&want).unwrap());
    std::fs::remove_file(fx.tree.join("solo_default.bin")).unwrap();
    let again = run(&mut fx.build_cmd(&args));
    let line = again.ok().lines().last().unwrap().to_string();
    assert!(counts(&line).plan_cached, "{line}");
    assert_eq!(
        std::fs::read(fx.tree.join("solo_default.bin")).unwrap(),
        bin
    );
}

#[test]
fn cold_build_then_noop_then_fresh_checkout() {
    let fx = fixture();
    let cold = fx.build("solo:default");
    let line = cold.ok().lines().last().unwrap().to_string();
    assert!(
        line.starts_with("solo:default: .build/solo_default.hex ("),
        "{line}"
    );
    assert_eq!(
        counts(&line),
        Counts {
            compiled: 5,
            cached: 0,
            link_cached: false,
            plan_cached: false
        }
    );
    // QMK's layout: firmware in .build and copied to the tree root
    let hex = std::fs::read(fx.tree.join(".build/solo_default.hex")).unwrap();
    assert_eq!(
        std::fs::read(fx.tree.join("solo_default.hex")).unwrap(),
        hex
    );
    assert!(String::from_utf8_lossy(&hex).starts_with(':'));
    assert!(firmware_runs(&fx.tree, "solo_default").starts_with("solo:default "));

    // nothing changed: everything from the cache
    assert_eq!(
        fx.built("solo:default"),
        Counts {
            compiled: 0,
            cached: 5,
            link_cached: true,
            plan_cached: true
        }
    );

    // a fresh checkout (no .build/) with a warm cache: same bytes, nothing compiled
    std::fs::remove_dir_all(fx.tree.join(".build")).unwrap();
    assert_eq!(
        fx.built("solo:default"),
        Counts {
            compiled: 0,
            cached: 5,
            link_cached: true,
            plan_cached: true
        }
    );
    assert_eq!(
        std::fs::read(fx.tree.join(".build/solo_default.hex")).unwrap(),
        hex
    );
    // the restored ELF is still a program
    assert!(firmware_runs(&fx.tree, "solo_default").starts_with("solo:default "));
}

const CONFIGURATOR: &str = r#"{"version": 1, "notes": "exported", "keyboard": "hop1", "keymap": "mine",
  "layout": "LAYOUT", "layers": [["KC_Q", "KC_W", "KC_E", "KC_R"]]}"#;

#[test]
fn configurator_export_builds_from_a_file_and_from_stdin() {
    let fx = fixture();
    let file = fx.tmp.path().join("export.json");
    std::fs::write(&file, CONFIGURATOR).unwrap();
    let r = fx.build(file.to_str().unwrap());
    let line = r.ok().lines().last().unwrap().to_string();
    // the alias hop1 resolves to solo; the keymap name comes from the export
    assert!(
        line.starts_with("solo:mine: .build/solo_mine.hex"),
        "{line}"
    );
    assert_eq!(counts(&line).compiled, 5);
    let written =
        std::fs::read_to_string(fx.tree.join(".build/obj_solo_mine/src/keymap.json")).unwrap();
    assert!(
        written.starts_with(r#"{"version":1,"notes":"exported","keyboard":"solo","keymap":"mine""#),
        "{written}"
    );
    assert!(firmware_runs(&fx.tree, "solo_mine").starts_with("solo:mine "));

    // the same export on stdin: everything from the cache
    let mut child = fx
        .build_cmd(&["-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(CONFIGURATOR.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        counts(line.trim()),
        Counts {
            compiled: 0,
            cached: 5,
            link_cached: true,
            plan_cached: true
        }
    );

    // one key changed: only the generated keymap.c recompiles
    std::fs::write(&file, CONFIGURATOR.replace("KC_Q", "KC_Z")).unwrap();
    let c = fx.built(file.to_str().unwrap());
    assert_eq!((c.compiled, c.cached), (1, 4), "{c:?}");
}

#[test]
fn invalid_configurator_export_is_a_clear_error() {
    let fx = fixture();
    let file = fx.tmp.path().join("bad.json");
    std::fs::write(&file, r#"{"keyboard": "solo", "layers": "not a list"}"#).unwrap();
    let err = fx.build(file.to_str().unwrap()).fails().to_string();
    assert!(err.contains("bad.json: not a QMK keymap"), "{err}");
    std::fs::write(&file, "{\"keyboard\": ").unwrap();
    let err = fx.build(file.to_str().unwrap()).fails().to_string();
    assert!(err.contains("bad.json:1:"), "{err}");
}

#[test]
fn keymap_edit_recompiles_only_the_keymap() {
    let fx = fixture();
    fx.built("solo:default");
    fx.edit("keyboards/solo/keymaps/default/keymap.c", |t| {
        t.replace("KC_A, KC_A", "KC_B, KC_A")
    });
    assert_eq!(
        fx.built("solo:default"),
        Counts {
            compiled: 1,
            cached: 4,
            link_cached: false,
            plan_cached: true
        }
    );
    // and back: the old object is still in the cache
    fx.edit("keyboards/solo/keymaps/default/keymap.c", |t| {
        t.replace("KC_B, KC_A", "KC_A, KC_A")
    });
    assert_eq!(
        fx.built("solo:default"),
        Counts {
            compiled: 0,
            cached: 5,
            link_cached: true,
            plan_cached: true
        }
    );
}

#[test]
fn keymap_json_edit_regenerates_keymap_c() {
    let fx = fixture();
    fx.built("acme/pad:default");
    fx.edit("keyboards/acme/pad/keymaps/default/keymap.json", |t| {
        t.replacen("KC_B", "KC_C", 1)
    });
    // keymap.json is in the keymap folder the plan depends on: replanned;
    // only the generated keymap.c recompiles
    assert_eq!(
        fx.built("acme/pad:default"),
        Counts {
            compiled: 1,
            cached: 4,
            link_cached: false,
            plan_cached: false
        }
    );
}

#[test]
fn core_source_edit_recompiles_one_object() {
    let fx = fixture();
    fx.built("solo:default");
    fx.edit("quantum/matrix.c", |t| {
        t.replace("] ^= MATRIX_SCAN_TOGGLE;", "] ^= 3;")
    });
    assert_eq!(
        fx.built("solo:default"),
        Counts {
            compiled: 1,
            cached: 4,
            link_cached: false,
            plan_cached: true
        }
    );
    // an edit that leaves the object's bytes alone recompiles, but the link
    // is keyed on the objects' digests and comes from the cache
    fx.edit("quantum/matrix.c", |t| t.replace("tick++;", "tick += 1;"));
    assert_eq!(
        fx.built("solo:default"),
        Counts {
            compiled: 1,
            cached: 4,
            link_cached: true,
            plan_cached: true
        }
    );
}

#[test]
fn version_h_changes_every_build_without_source_date_epoch() {
    // QMK writes the build date into version.h on every build; main.c
    // includes it, so it recompiles (its object does not change, so the link
    // still comes from the cache).
    let fx = fixture();
    let plain = |fx: &Fixture| {
        let r = run(fx
            .keyfab()
            .env_remove("SOURCE_DATE_EPOCH")
            .args(["build", "solo:default"]));
        counts(r.ok().lines().last().unwrap())
    };
    plain(&fx);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        plain(&fx),
        Counts {
            compiled: 1,
            cached: 4,
            link_cached: true,
            plan_cached: true
        }
    );
}

#[test]
fn header_edit_recompiles_its_includers() {
    let fx = fixture();
    fx.built("solo:default");
    // keycodes.h reaches every object through quantum.h
    fx.edit("quantum/keycodes.h", |t| t + "#define KC_EXTRA KC_Z\n");
    assert_eq!(
        fx.built("solo:default"),
        Counts {
            compiled: 5,
            cached: 0,
            link_cached: true,
            plan_cached: true
        }
    );
    // the objects' code did not change, so the link comes from the cache
}

#[test]
fn keyboard_json_edit_regenerates_and_recompiles() {
    let fx = fixture();
    fx.built("solo:default");
    // a new matrix pin changes info_config.h, which every object includes
    fx.edit("keyboards/solo/keyboard.json", |t| {
        t.replace("\"D3\"", "\"D7\"")
    });
    let c = fx.built("solo:default");
    assert!(!c.plan_cached, "{c:?}");
    assert_eq!(c.compiled, 5, "{c:?}");
}

#[test]
fn makefile_edit_replans() {
    let fx = fixture();
    fx.built("solo:default");
    fx.edit("builddefs/build_keyboard.mk", |t| {
        t.replace(
            "OPT_DEFS += -DQMK_KEYBOARD",
            "OPT_DEFS += -DFIXTURE_EXTRA -DQMK_KEYBOARD",
        )
    });
    // every argv changed; the objects did not, so the link is reused
    assert_eq!(
        fx.built("solo:default"),
        Counts {
            compiled: 5,
            cached: 0,
            link_cached: true,
            plan_cached: false
        }
    );
    fx.edit("builddefs/build_keyboard.mk", |t| {
        t.replace("-std=gnu11 -Os", "-std=gnu11 -O1")
    });
    assert_eq!(
        fx.built("solo:default"),
        Counts {
            compiled: 5,
            cached: 0,
            link_cached: false,
            plan_cached: false
        }
    );
}

#[test]
fn make_parses_once_with_the_makefile_it_would_make_made_first() {
    // The fixture includes a makefile it has a rule for, as QMK includes
    // info_deps.d: keyfab makes it before make parses, so make never
    // starts over, and the file is where make would have put it.
    let fx = fixture();
    let deps = fx.tree.join(".build/obj_solo_default/src/info_deps.d");
    let planned = |fx: &Fixture, args: &[&str]| {
        let r = run(fx.build_cmd(args).env("KEYFAB_DEBUG_PLAN_KEY", "1"));
        r.ok();
        let restarts: Vec<&str> = r
            .stderr
            .lines()
            .filter_map(|l| l.strip_prefix("plan make restarts "))
            .collect();
        (r.stdout.clone(), restarts.join(","))
    };
    let (_, restarts) = planned(&fx, &["solo:default"]);
    assert_eq!(restarts, "0");
    let made = std::fs::read_to_string(&deps).unwrap();
    assert!(
        made.contains("generated-files: $(wildcard keyboards/solo/keyboard.json)"),
        "{made}"
    );
    // A fresh checkout plans from the cache and still gets the file: the
    // generator call is replayed with make's parse-time ones.
    std::fs::remove_dir_all(fx.tree.join(".build")).unwrap();
    assert!(fx.built("solo:default").plan_cached);
    assert_eq!(std::fs::read_to_string(&deps).unwrap(), made);

    // A makefile that makes it some other way is left to make: it makes
    // the file, starts over once, and plans the same steps.
    let (steps, _) = planned(&fx, &["-n", "solo:default"]);
    fx.edit("builddefs/build_keyboard.mk", |t| {
        t.replace("-km $(KEYMAP) -o", "-km $(KEYMAP)  -o")
    });
    std::fs::remove_dir_all(fx.tree.join(".build")).unwrap();
    let (steps_after, restarts) = planned(&fx, &["-n", "solo:default"]);
    assert_eq!(restarts, "1");
    assert_eq!(steps_after, steps);
    assert_eq!(std::fs::read_to_string(&deps).unwrap(), made);
}

#[test]
fn an_lto_link_in_parallel_writes_what_the_recipe_writes() {
    // QMK's `-flto=auto` link runs its LTRANS partitions with the pool's
    // idle slots (`-flto=4` here); the ELF must be the recipe's own bytes.
    let fx = fixture();
    // A `cc` first on PATH that notes its command line, then runs the real one.
    let (wrap, path) = wrapped_cc(|real, dir| {
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            dir.join("cc.log").display(),
            real.display()
        )
    });
    let log = wrap.path().join("cc.log");
    let args = ["solo:default", "-e", "LTO_ENABLE=yes", "-j", "4"];
    let r = run(fx.build_cmd(&args).env("PATH", &path));
    assert_eq!(counts(r.ok().lines().last().unwrap()).compiled, 5);
    // The link ran with the four idle slots.
    let ran = std::fs::read_to_string(&log).unwrap();
    let link = ran
        .lines()
        .find(|l| l.contains("--output .build/solo_default.elf"))
        .unwrap_or_else(|| panic!("no link in {ran}"));
    assert!(
        link.contains("-flto=4") && !link.contains("-flto=auto"),
        "{link}"
    );
    let elf = fx.tree.join(".build/solo_default.elf");
    let ours = std::fs::read(&elf).unwrap();
    assert!(firmware_runs(&fx.tree, "solo_default").starts_with("solo:default "));

    let plan = run(fx
        .build_cmd(&[&["-n"], &args[..]].concat())
        .env("PATH", &path));
    let link = dry_run_steps(plan.ok())
        .into_iter()
        .find(|s| s["kind"] == "link")
        .unwrap();
    let argv: Vec<&str> = link["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(argv.contains(&"-flto=auto"), "{argv:?}");
    std::fs::remove_file(&elf).unwrap();
    // QMK's own link command, with the real compiler.
    let real = keyfab_build_has("cc").expect("cc on PATH");
    let status = std::process::Command::new(&real)
        .args(&argv[1..])
        .env("MAKE", "make")
        .current_dir(&fx.tree)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read(&elf).unwrap(), ours);
}

#[test]
fn new_keymap_that_shadows_another_is_picked_up() {
    let fx = fixture();
    fx.built("acme/board/rev1:default");
    let dir = fx.tree.join("keyboards/acme/board/rev1/keymaps/default");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("keymap.c"),
        "#include QMK_KEYBOARD_H\nconst uint16_t PROGMEM keymaps[][MATRIX_ROWS][MATRIX_COLS] = {\n    [0] = LAYOUT(KC_Z, KC_Z, KC_Z, KC_Z, KC_Z, KC_Z)\n};\n",
    )
    .unwrap();
    let c = fx.built("acme/board/rev1:default");
    assert!(!c.plan_cached, "{c:?}");
    // the keymap folder is on every object's include path (as in QMK), so all recompile
    assert_eq!(c.compiled, 5, "{c:?}");
    assert!(!c.link_cached, "{c:?}");
    let json = in_tree(
        &fx.tree,
        &[
            "resolve",
            "-kb",
            "acme/board/rev1",
            "-km",
            "default",
            "--format",
            "json",
        ],
    )
    .json();
    assert_eq!(
        json["keymap"]["keymap_c"],
        "keyboards/acme/board/rev1/keymaps/default/keymap.c"
    );
}

#[test]
fn new_config_h_that_shadows_is_picked_up() {
    let fx = fixture();
    fx.built("solo:default");
    std::fs::write(
        fx.tree.join("keyboards/solo/config.h"),
        "#pragma once\n#define SOLO_TWEAK 1\n",
    )
    .unwrap();
    let c = fx.built("solo:default");
    assert!(!c.plan_cached, "{c:?}");
    assert_eq!(
        c.compiled, 5,
        "the new config.h is force-included everywhere: {c:?}"
    );
}

/// QMK's `check-size`: a firmware over the limit its recipe prints fails
/// the build (exit 1, the sizes named) and is removed, from `.build/` and
/// the tree's root, as QMK removes it. Within the limit again, it is
/// delivered from the cache; within the recipe's margin (1024) of the
/// limit, with QMK's warning.
#[test]
fn a_firmware_over_the_size_limit_fails_and_is_removed() {
    let fx = fixture();
    let first = fx.build("solo:default");
    let line = first.ok().lines().last().unwrap().to_string();
    assert!(!first.stderr.contains("approaching"), "{}", first.stderr);
    // "(N/65536 bytes, …)": the size, under the fixture's limit.
    let size: u64 = line
        .split(" (")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(line.contains(&format!("({size}/65536 bytes")), "{line}");
    let with_limit =
        |max: u64| run(&mut fx.build_cmd(&["-e", &format!("MAX_SIZE={max}"), "solo:default"]));
    let firmware = [".build/solo_default.hex", "solo_default.hex"];
    let over = with_limit(size - 1);
    let err = over.fails();
    let too_large = format!(
        "solo:default: the firmware is too large: {size}/{} bytes (1 bytes over)",
        size - 1
    );
    assert!(err.contains(&too_large), "{err}");
    for f in firmware {
        assert!(!fx.tree.join(f).exists(), "{f} is left");
    }
    // At the limit it is fine (QMK fails only above it), with the warning.
    let at = with_limit(size);
    let line = at.ok().lines().last().unwrap().to_string();
    assert!(
        line.contains(&format!("({size}/{size} bytes, 0 free)")),
        "{line}"
    );
    assert!(counts(&line).link_cached, "{line}");
    let near =
        format!("the firmware size is approaching the maximum: {size}/{size} bytes (0 free)");
    assert!(at.stderr.contains(&near), "{}", at.stderr);
    for f in firmware {
        assert!(fx.tree.join(f).is_file(), "{f} is missing");
    }
    // The margin's edge: 1024 free is no longer within it.
    let clear = with_limit(size + 1024);
    clear.ok();
    assert!(!clear.stderr.contains("approaching"), "{}", clear.stderr);
    let edge = with_limit(size + 1023);
    edge.ok();
    assert!(edge.stderr.contains("(1023 free)"), "{}", edge.stderr);
}

/// A keymap of a QMK userspace builds as `qmk compile` builds it there:
/// make is told the userspace (QMK_USERSPACE, resolved), finds the keymap
/// after the tree's folders, and copies the firmware to the userspace's
/// root as well (and `--compiledb` its compile database); the plan is
/// cached.
#[test]
fn a_userspace_keymap_builds_and_its_firmware_lands_there_too() {
    let fx = fixture();
    let (us, _) = copy_userspace(fx.tmp.path());
    // Named through a symlink: make gets the resolved folder, as QMK's CLI
    // gives it.
    let link = fx.tmp.path().join("us-link");
    std::os::unix::fs::symlink(&us, &link).unwrap();
    let usarg = format!("--userspace={}", link.display());
    // make compiles the keymap from the resolved folder.
    let r = run(fx.build_cmd(&[&usarg, "solo:mine"]).arg("-n"));
    let keymap = us
        .canonicalize()
        .unwrap()
        .join("keyboards/solo/keymaps/mine/keymap.c");
    let steps = dry_run_steps(r.ok());
    let compiles_keymap = |s: &serde_json::Value| s["source"] == keymap.display().to_string();
    assert!(steps.iter().any(compiles_keymap), "{steps:?}");
    let first = run(&mut fx.build_cmd(&[&usarg, "solo:mine"]));
    let line = first.ok().lines().last().unwrap().to_string();
    assert!(
        line.starts_with("solo:mine: .build/solo_mine.hex"),
        "{line}"
    );
    let hex = std::fs::read(fx.tree.join(".build/solo_mine.hex")).unwrap();
    assert_eq!(std::fs::read(fx.tree.join("solo_mine.hex")).unwrap(), hex);
    assert_eq!(std::fs::read(us.join("solo_mine.hex")).unwrap(), hex);
    assert!(firmware_runs(&fx.tree, "solo_mine").starts_with("solo:mine "));
    // The generators make calls see that userspace too (as make exports
    // QMK_USERSPACE to them): its keymap folder is among the dependencies.
    let deps =
        std::fs::read_to_string(fx.tree.join(".build/obj_solo_mine/src/info_deps.d")).unwrap();
    let folder = keymap.parent().unwrap().display().to_string();
    assert!(
        deps.contains(&format!("$(wildcard {folder}/rules.mk)")),
        "{deps}"
    );
    std::fs::remove_file(us.join("solo_mine.hex")).unwrap();
    let again = run(&mut fx.build_cmd(&[&usarg, "solo:mine"]));
    let line = again.ok().lines().last().unwrap().to_string();
    assert!(counts(&line).plan_cached, "{line}");
    assert_eq!(std::fs::read(us.join("solo_mine.hex")).unwrap(), hex);
    // QMK's compile database is copied to the userspace too.
    run(&mut fx.build_cmd(&[&usarg, "solo:mine", "--compiledb"])).ok();
    let db = std::fs::read(fx.tree.join("compile_commands.json")).unwrap();
    assert_eq!(std::fs::read(us.join("compile_commands.json")).unwrap(), db);
    // Without the userspace, the keymap is not found.
    let err = fx.build("solo:mine").fails().to_string();
    assert!(
        err.contains("keymap mine not found for keyboard solo"),
        "{err}"
    );
}

#[test]
fn compile_error_names_the_file_and_is_not_cached() {
    let fx = fixture();
    fx.edit("quantum/matrix.c", |t| t.replace("tick++;", "tick++ oops;"));
    let r = fx.build("solo:default");
    let err = r.fails();
    assert!(err.contains("compiling quantum/matrix.c"), "{err}");
    assert!(
        err.contains("quantum/matrix.c:"),
        "the compiler's file:line is shown: {err}"
    );
    fx.edit("quantum/matrix.c", |t| t.replace("tick++ oops;", "tick++;"));
    let c = fx.built("solo:default");
    assert!(c.compiled >= 1, "{c:?}");
}

#[test]
fn other_keymaps_and_targets_share_the_cache() {
    let fx = fixture();
    fx.built("solo:default");
    // same keyboard, other keymap: only the keymap differs
    assert_eq!(
        fx.built("solo:jsonmap"),
        Counts {
            compiled: 5,
            cached: 0,
            link_cached: false,
            plan_cached: false
        }
    );
    // (QMK_KEYMAP is a define on every object, as in QMK, so all recompile;
    // the rebuild of the first target is still free)
    assert_eq!(
        fx.built("solo:default"),
        Counts {
            compiled: 0,
            cached: 5,
            link_cached: true,
            plan_cached: true
        }
    );
}

/// The steps `keyfab build -n` printed: a JSON object a line.
fn dry_run_steps(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn dry_run_prints_the_plan() {
    let fx = fixture();
    let r = run(&mut fx.build_cmd(&["-kb", "solo", "-km", "default", "-n"]));
    let steps = dry_run_steps(r.ok());
    let kinds: Vec<&str> = steps.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "compile").count(),
        5,
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"generate") && kinds.contains(&"link") && kinds.contains(&"convert"),
        "{kinds:?}"
    );
    assert!(!fx.tree.join(".build/solo_default.hex").exists());
}

/// A dry run whose plan comes from the cache runs no git in a checkout:
/// it records nothing and no make asks for version.h (git started for
/// them would only outlive it).
#[test]
fn a_dry_run_from_the_cached_plan_runs_no_git() {
    let fx = fixture();
    std::fs::write(fx.tree.join(".gitignore"), ".build/\n*.hex\ntrace\n").unwrap();
    commit_all(&fx.tree);
    fx.build("solo:default").ok();
    let trace = fx.tree.join("trace");
    let r = run(fx
        .build_cmd(&["-n", "solo:default"])
        .env("GIT_TRACE2_EVENT", &trace));
    assert!(!dry_run_steps(r.ok()).is_empty());
    let gits = std::fs::read_to_string(&trace).unwrap_or_default();
    assert!(!gits.contains(r#""event":"start""#), "{gits}");
    // A build does ask git (version.h, the provenance's revision).
    run(fx
        .build_cmd(&["solo:default"])
        .env("GIT_TRACE2_EVENT", &trace))
    .ok();
    assert!(std::fs::read_to_string(&trace)
        .unwrap()
        .contains(r#""event":"start""#));
}

/// make plans with keyfab-shell: QMK's `echo | sed | tr` pipeline gives its
/// C name even where `sed` and `tr` would fail (they are never started).
#[test]
fn qmk_shell_pipelines_need_no_sed_or_tr() {
    let fx = fixture();
    let define = |r: &Run| {
        let steps = dry_run_steps(r.ok());
        let compile = steps.iter().find(|s| s["kind"] == "compile").unwrap();
        compile["argv"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str()?.strip_prefix("-DQMK_KEYBOARD_"))
            .filter(|a| !a.contains('='))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let plain = run(&mut fx.build_cmd(&["-n", "acme/pad:default"]));
    assert_eq!(define(&plain), ["ACME_PAD"]);
    let broken = fx.tmp.path().join("broken-bin");
    std::fs::create_dir(&broken).unwrap();
    for tool in ["sed", "tr"] {
        write_script(&broken.join(tool), "#!/bin/sh\nexit 1\n");
    }
    let path = path_with_first(&broken);
    let other = run(fx.build_cmd(&["-n", "acme/pad:default"]).env("PATH", path));
    assert_eq!(define(&other), ["ACME_PAD"]);
}

#[test]
fn bad_targets_are_clear_errors() {
    let fx = fixture();
    assert!(fx
        .build("solo:nope")
        .fails()
        .contains("keymap nope not found for keyboard solo"));
    assert!(fx
        .build("nosuch:default")
        .fails()
        .contains("invalid keyboard: nosuch"));
    assert!(fx.build("solo").fails().contains("missing keymap"));
}

#[test]
fn compiledb_and_clean() {
    let fx = fixture();
    fx.built("solo:default");
    let r = run(&mut fx.build_cmd(&["solo:default", "--clean", "--compiledb"]));
    let line = r.ok().lines().last().unwrap().to_string();
    // --clean removed the objects; the cache brought them back
    assert_eq!(
        counts(&line),
        Counts {
            compiled: 0,
            cached: 5,
            link_cached: true,
            plan_cached: true
        }
    );
    let db: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fx.tree.join("compile_commands.json")).unwrap(),
    )
    .unwrap();
    let entries = db.as_array().unwrap();
    assert_eq!(entries.len(), 5);
    let main = entries
        .iter()
        .find(|e| e["file"] == "quantum/main.c")
        .unwrap();
    assert_eq!(main["arguments"][0], "cc");
    assert_eq!(
        main["directory"],
        fx.tree.canonicalize().unwrap().to_str().unwrap()
    );
}

/// With avr-gcc installed (CI installs gcc-avr), the same fixture firmware
/// builds for the keyboard's MCU; switching back and forth is all cache.
#[test]
fn fixture_firmware_builds_for_avr_where_avr_gcc_is_installed() {
    if keyfab_build_has("avr-gcc").is_none() {
        eprintln!("avr-gcc not installed: skipping the AVR build");
        return;
    }
    let fx = fixture();
    fx.built("solo:default");
    let avr = |fx: &Fixture| {
        let r = run(&mut fx.build_cmd(&["solo:default", "-e", "PLATFORM=avr"]));
        counts(r.ok().lines().last().unwrap())
    };
    assert_eq!(avr(&fx).compiled, 5);
    let elf = std::fs::read(fx.tree.join(".build/solo_default.elf")).unwrap();
    // ELF e_machine 83 is Atmel AVR
    assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 83);
    assert_eq!(
        fx.built("solo:default"),
        Counts {
            compiled: 0,
            cached: 5,
            link_cached: true,
            plan_cached: true
        }
    );
    assert_eq!(
        avr(&fx),
        Counts {
            compiled: 0,
            cached: 5,
            link_cached: true,
            plan_cached: true
        }
    );
}

fn keyfab_build_has(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A `cc` first on PATH: the shell script `script(real cc, its folder)`
/// makes, in a folder of its own (for its logs too). Returns the folder
/// (kept while the tests use it) and the PATH.
fn wrapped_cc(
    script: impl FnOnce(&std::path::Path, &std::path::Path) -> String,
) -> (tempfile::TempDir, String) {
    let real = keyfab_build_has("cc").expect("cc on PATH");
    let wrap = tempfile::tempdir().unwrap();
    write_script(&wrap.path().join("cc"), &script(&real, wrap.path()));
    let path = path_with_first(wrap.path());
    (wrap, path)
}

#[test]
fn community_layout_keymaps_build() {
    let fx = fixture();
    // layouts/default/ortho_2x2/default_ortho, found through the keyboard's LAYOUTS
    let line = fx
        .build("ortho/two:default_ortho")
        .ok()
        .lines()
        .last()
        .unwrap()
        .to_string();
    assert!(
        line.starts_with("ortho/two:default_ortho: .build/ortho_two_default_ortho.hex"),
        "{line}"
    );
    // ortho/wide has no keymaps of its own: its default comes from the layouts too
    let line = fx
        .build("ortho/wide:default")
        .ok()
        .lines()
        .last()
        .unwrap()
        .to_string();
    assert!(
        line.starts_with("ortho/wide:default: .build/ortho_wide_default.hex"),
        "{line}"
    );
}

#[test]
fn in_process_generators_write_what_spawned_ones_write() {
    // Same tree contents at two paths; one build spawns `keyfab qmk` for
    // every generator call (as make would), the other runs them in-process.
    let spawned = fixture();
    let mut cmd = spawned.build_cmd(&["acme/pad:default"]);
    run(cmd.env("KEYFAB_SPAWN_GENERATORS", "1")).ok();
    let inproc = fixture();
    inproc.build("acme/pad:default").ok();
    let gen = ".build/obj_acme_pad_default/src";
    let mut names: Vec<String> = std::fs::read_dir(spawned.tree.join(gen))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.iter().any(|n| n == "keymap.c"), "{names:?}");
    for name in &names {
        let a = std::fs::read_to_string(spawned.tree.join(gen).join(name)).unwrap();
        let b = std::fs::read_to_string(inproc.tree.join(gen).join(name))
            .unwrap_or_else(|e| panic!("{name} not generated in-process: {e}"));
        // info_deps.d names the keymap's folder by its absolute path, as QMK's does.
        let here = |t: &str, fx: &Fixture| t.replace(&*fx.tree.to_string_lossy(), "TREE");
        assert_eq!(here(&a, &spawned), here(&b, &inproc), "{name} differs");
    }
    let fw = |fx: &Fixture| std::fs::read(fx.tree.join("acme_pad_default.hex")).ok();
    assert!(fw(&inproc).is_some(), "no firmware copied to the tree root");
    assert_eq!(fw(&spawned), fw(&inproc));
}

#[test]
fn an_unchanged_target_is_up_to_date_and_anything_changed_runs_again() {
    let fx = fixture();
    let last = |r: Run| r.ok().lines().last().unwrap().to_string();
    let up_to_date = |line: &str| line.contains("(up to date: nothing ran)");
    let cold = last(fx.build("solo:default"));
    assert!(!up_to_date(&cold), "{cold}");
    let noop = last(fx.build("solo:default"));
    assert!(up_to_date(&noop), "{noop}");
    assert_eq!(counts(&noop).cached, 5, "{noop}");

    // A source edit: compiled again, then up to date again.
    fx.edit("quantum/matrix.c", |t| t + "\nint up_to_date_check;\n");
    let edited = last(fx.build("solo:default"));
    assert!(
        !up_to_date(&edited) && counts(&edited).compiled == 1,
        "{edited}"
    );
    assert!(up_to_date(&last(fx.build("solo:default"))));

    // A header: it is an input of the record (from the depfiles).
    fx.edit("quantum/matrix_scan.h", |t| t + "\n#define UP_TO_DATE 1\n");
    let header = last(fx.build("solo:default"));
    assert!(
        !up_to_date(&header) && counts(&header).compiled == 1,
        "{header}"
    );

    // Outputs: a removed object, or the firmware copy at the tree root.
    std::fs::remove_file(fx.tree.join(".build/obj_solo_default/quantum/main.o")).unwrap();
    let restored = last(fx.build("solo:default"));
    assert!(
        !up_to_date(&restored) && counts(&restored).compiled == 0,
        "{restored}"
    );
    std::fs::write(fx.tree.join("solo_default.hex"), "tampered").unwrap();
    assert!(!up_to_date(&last(fx.build("solo:default"))));
    assert_eq!(
        std::fs::read(fx.tree.join("solo_default.hex")).unwrap(),
        std::fs::read(fx.tree.join(".build/solo_default.hex")).unwrap()
    );

    // Other options (`-e`): not the same build.
    let other = last(run(&mut fx.build_cmd(&[
        "-e",
        "EXTRA_NOTE=1",
        "solo:default",
    ])));
    assert!(!up_to_date(&other), "{other}");
    let back = last(fx.build("solo:default"));
    assert!(
        !up_to_date(&back),
        "the newest record is the -e build: {back}"
    );
    assert!(up_to_date(&last(fx.build("solo:default"))));

    // An up-to-date build is recorded like any other: explain finds nothing
    // changed, and the record still audits.
    let explain = run(fx.keyfab().args(["explain", "solo:default"]));
    assert!(
        explain.ok().contains("no input changed"),
        "{}",
        explain.stdout
    );
}

/// A library the linker loads from outside the tree (a toolchain's libc,
/// libgcc, crt objects; here an archive of our own named on the command
/// line) is part of the link's cache entry: when it changes under the same
/// compiler, the firmware relinks, and explain names it.
#[test]
fn a_changed_library_outside_the_tree_relinks() {
    let fx = fixture();
    let libs = tempfile::tempdir().unwrap();
    let lib = libs.path().join("libkfextra.a");
    let make_lib = |value: u32| {
        let src = libs.path().join("extra.c");
        std::fs::write(&src, format!("int keyfab_extra = {value};\n")).unwrap();
        let obj = libs.path().join("extra.o");
        let ok = std::process::Command::new("cc")
            .args(["-c", "-o"])
            .arg(&obj)
            .arg(&src)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let _ = std::fs::remove_file(&lib);
        let ok = std::process::Command::new("ar")
            .arg("rcs")
            .arg(&lib)
            .arg(&obj)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    make_lib(1);
    let ldflags = format!(
        "LDFLAGS=-Wl,--gc-sections -Wl,-Map=.build/solo_default.map {}",
        lib.display()
    );
    let build = || {
        let r = run(&mut fx.build_cmd(&["-e", &ldflags, "solo:default"]));
        r.ok().lines().last().unwrap().to_string()
    };
    let first = build();
    assert!(!counts(&first).link_cached, "{first}");
    let again = build();
    assert!(again.contains("up to date"), "{again}");

    // The archive changes (same compiler, same objects): the link runs.
    make_lib(2);
    let changed = build();
    let c = counts(&changed);
    assert_eq!(c.compiled, 0, "{changed}");
    assert!(!c.link_cached, "{changed}");
    let explain = run(fx.keyfab().args(["explain", "solo:default"]));
    assert!(explain.ok().contains("libkfextra.a"), "{}", explain.stdout);

    // Back to the first archive: that link comes from the cache.
    make_lib(1);
    let back = build();
    assert!(counts(&back).link_cached, "{back}");
}

/// Binutils are packaged apart from the compiler: a new assembler under the
/// same compiler driver produces other objects, so nothing may come from
/// the cache for it, the plan included. (Here `COMPILER_PATH` puts an `as`
/// of our own first.)
#[test]
fn a_changed_assembler_under_the_same_compiler_recompiles() {
    let fx = fixture();
    let tools = tempfile::tempdir().unwrap();
    let wrapper = tools.path().join("as");
    let write_as = |version| write_assembler(tools.path(), version);
    write_as(1);
    let build = || {
        let r = run(fx
            .build_cmd(&["solo:default"])
            .env("COMPILER_PATH", tools.path()));
        r.ok().lines().last().unwrap().to_string()
    };
    let first = build();
    let all = counts(&first).compiled;
    assert!(all > 0, "{first}");
    let again = build();
    assert!(again.contains("up to date"), "{again}");

    // Same compiler binary, same command lines, another assembler.
    write_as(2);
    let changed = build();
    let c = counts(&changed);
    assert_eq!((c.compiled, c.cached), (all, 0), "{changed}");
    assert!(!c.link_cached, "{changed}");
    // make planned again: QMK's `cc-option` probes ask the compiler, and
    // another one may be given other flags.
    assert!(!c.plan_cached, "{changed}");
    // `explain` names the file that changed, not only the toolchain.
    let explain = run(fx.keyfab().args(["explain", "solo:default"]));
    let as_changed = format!("{} (file, changed)", wrapper.display());
    assert!(explain.ok().contains(&as_changed), "{}", explain.stdout);

    // The first assembler again: everything comes from the cache.
    write_as(1);
    let back = build();
    let c = counts(&back);
    assert_eq!((c.compiled, c.cached), (0, all), "{back}");
    assert!(c.link_cached && c.plan_cached, "{back}");
}

/// CI runners and shards check the tree out into folders of their own. The
/// compiler writes no folder into objects built without debug info, and
/// plans and generated files are tree-relative, so a checkout elsewhere gets
/// its plan, objects and link from the cache, and the firmware is the one
/// the compilers make there; with `-g` it compiles.
#[test]
fn a_checkout_in_another_folder_shares_objects_and_links() {
    let fx = fixture();
    let first = fx.built("solo:default");
    assert!(first.compiled > 0);

    let (_other_tmp, other) = util::copy_fixture("tree");
    let build_other = |cache: &std::path::Path, args: &[&str]| {
        let r = run(util::keyfab(&other)
            .arg("--cache")
            .arg(cache)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("build")
            .args(args));
        r.ok().lines().last().unwrap().to_string()
    };
    let shared = build_other(&fx.cache, &["solo:default"]);
    let c = counts(&shared);
    assert_eq!((c.compiled, c.cached), (0, first.compiled), "{shared}");
    assert!(c.link_cached && c.plan_cached, "{shared}");
    let hex = |tree: &std::path::Path| std::fs::read(tree.join("solo_default.hex")).unwrap();
    let from_cache = hex(&other);
    // Its provenance is a row naming the first folder's body: the folder is
    // the run's, not the build's.
    let stats = fx.cache_stats();
    let n = |k| num(&stats, k);
    assert_eq!((n("provenance"), n("provenance_bodies")), (2, 1), "{stats}");

    // What the compilers make in that folder from nothing is the same.
    let fresh_cache = tempfile::tempdir().unwrap();
    std::fs::remove_dir_all(other.join(".build")).unwrap();
    let fresh = build_other(fresh_cache.path(), &["solo:default"]);
    assert_eq!(counts(&fresh).cached, 0, "{fresh}");
    assert_eq!(hex(&other), from_cache);
    assert_eq!(hex(&fx.tree), from_cache);

    // Debug info records the folder: those objects are the folder's own.
    let debug = ["-e", "EXTRAFLAGS=-g", "solo:default"];
    let first_g = run(&mut fx.build_cmd(&debug));
    let first_g = counts(first_g.ok().lines().last().unwrap());
    assert_eq!(first_g.cached, 0);
    let other_g = build_other(&fx.cache, &debug);
    assert_eq!(counts(&other_g).cached, 0, "{other_g}");
}

/// QMK's `cc-option` probes link a test program, and some ask the assembler
/// or linker (`-Wl,--no-warn-rwx-segments`). After an assembler that took an
/// option is replaced by one that refuses it, the probe must be asked again
/// (the plan made again) and the fallback used, never the old answer.
#[test]
fn probes_are_asked_again_when_the_assembler_changes() {
    let fx = fixture();
    let tools = tempfile::tempdir().unwrap();
    let write_as = |script: &str| write_assembler_script(tools.path(), script);
    // Takes `--kf-flag` (and drops it); the next one refuses it.
    let takes = r#"for a; do shift; [ "$a" = --kf-flag ] || set -- "$@" "$a"; done"#;
    let refuses = r#"for a; do [ "$a" = --kf-flag ] && { echo "as: unrecognized option '--kf-flag'" >&2; exit 1; }; done"#;
    let probed = [
        "-e",
        "kf_comma=,",
        "-e",
        "EXTRAFLAGS=$(call cc-option,-Wa$(kf_comma)--kf-flag,-DKF_NO_FLAG)",
        "solo:default",
    ];
    let build = || run(fx.build_cmd(&probed).env("COMPILER_PATH", tools.path()));
    let uses = |flag: &str| {
        let plan = run(fx
            .build_cmd(&["-n", probed[0], probed[1], probed[2], probed[3], probed[4]])
            .env("COMPILER_PATH", tools.path()));
        plan.ok().contains(flag)
    };
    write_as(takes);
    build().ok();
    assert!(uses("--kf-flag"));
    write_as(refuses);
    let line = build().ok().lines().last().unwrap().to_string();
    assert!(line.contains("plan made"), "{line}");
    assert!(uses("-DKF_NO_FLAG") && !uses("--kf-flag"));
}

/// What the `cc-option` probes answered while one target was planned is
/// given to make when the next is planned, in another process too: that
/// make asks no probe, and plans what a make that asked plans.
#[test]
fn probe_answers_are_given_to_later_plans() {
    let fx = fixture();
    let probes = |args: &[&str]| {
        let r = run(fx.build_cmd(args).env("KEYFAB_DEBUG_PLAN_KEY", "1"));
        r.ok();
        r.stderr
            .lines()
            .find(|l| l.starts_with("plan probes"))
            .unwrap_or_else(|| panic!("no plan made: {}", r.stderr))
            .to_string()
    };
    assert_eq!(
        probes(&["solo:default"]),
        "plan probes answered before make 0, asked 2"
    );
    assert_eq!(
        probes(&["-n", "acme/pad:default"]),
        "plan probes answered before make 2, asked 0"
    );
    let answered = run(&mut fx.build_cmd(&["-n", "acme/pad:default"]));
    let fresh_cache = tempfile::tempdir().unwrap();
    let asked = run(util::keyfab(&fx.tree)
        .arg("--cache")
        .arg(fresh_cache.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "-n", "acme/pad:default"]));
    assert_eq!(answered.ok(), asked.ok());
    assert!(answered.stdout.contains("-Wunused-but-set-variable"));
}

/// make's calls of keyfab while it plans (the parse-time generator calls
/// and the `cc-option` probes) are answered by the keyfab that runs make,
/// through keyfab-shell, and plan what calls started as processes plan.
#[test]
fn makes_keyfab_calls_are_answered_in_this_process() {
    let plan = |spawn: bool| {
        let fx = fixture();
        let mut cmd = fx.build_cmd(&["-n", "acme/pad:default"]);
        cmd.env("KEYFAB_DEBUG_PLAN_KEY", "1");
        if spawn {
            cmd.env("KEYFAB_SPAWN_GENERATORS", "1");
        }
        let r = run(&mut cmd);
        let steps = r.ok().replace(&*fx.tree.to_string_lossy(), "TREE");
        let answered = r
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("plan calls answered in process "))
            .unwrap_or_else(|| panic!("no plan made: {}", r.stderr))
            .to_string();
        (steps, answered)
    };
    let (in_process, answered) = plan(false);
    // generate-rules-mk and generate-version-h, and the fixture's two probes.
    assert_eq!(answered, "4");
    // Without in-process generators only the probes are answered here.
    let (spawned, answered) = plan(true);
    assert_eq!(answered, "2");
    assert_eq!(in_process, spawned);
}

#[test]
fn a_cache_and_temp_folder_with_blanks_and_dollars_still_plan_in_process() {
    let fx = fixture();
    let odd = fx.tmp.path().join("my $HOME's cache");
    let tmp = fx.tmp.path().join("temp $x y");
    std::fs::create_dir_all(&tmp).unwrap();
    let r = run(util::keyfab(&fx.tree)
        .arg("--cache")
        .arg(&odd)
        .args(["build", "acme/pad:default"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("TMPDIR", &tmp)
        .env("KEYFAB_DEBUG_PLAN_KEY", "1"));
    r.ok();
    // The generator calls and probes reached this keyfab through the
    // words make and the shell made of the quoted paths.
    assert!(
        r.stderr.contains("plan calls answered in process 4"),
        "{}",
        r.stderr
    );
    assert!(odd.join("index.sqlite").is_file());
    // The spawned recorder and prober take the same words.
    let r = run(util::keyfab(&fx.tree)
        .arg("--cache")
        .arg(fx.tmp.path().join("other $ cache"))
        .args(["build", "--clean", "acme/pad:default"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("TMPDIR", &tmp)
        .env("KEYFAB_SPAWN_GENERATORS", "1"));
    r.ok();
    assert!(!firmware_runs(&fx.tree, "acme_pad_default").is_empty());
}

/// Plans solo:default with a `cc` that, for each probe (a run ending
/// `-o /dev/null -x c /dev/null`; compiles and identity questions go
/// straight to the compiler), logs its option and runs `on_probe` (a shell
/// snippet given the log's and a marker file's paths). Returns the log's
/// lines, sorted; the plan must be the one the compiler itself gives.
fn probes_of_a_plan(fx: &Fixture, on_probe: impl FnOnce(&Path, &Path) -> String) -> Vec<String> {
    let (wrap, path) = wrapped_cc(|real, dir| {
        let (log, marker) = (dir.join("probes"), dir.join("marker"));
        format!(
            "#!/bin/sh\ncase \"$*\" in *' /dev/null') ;; *) exec '{cc}' \"$@\";; esac\necho \"$1\" >> '{l}'\n{on}\nexec '{cc}' \"$@\"\n",
            cc = real.display(),
            l = log.display(),
            on = on_probe(&log, &marker)
        )
    });
    let plan = run(fx.build_cmd(&["-n", "solo:default"]).env("PATH", &path));
    let probes = std::fs::read_to_string(wrap.path().join("probes")).unwrap();
    let again = run(&mut fx.build_cmd(&["-n", "solo:default"]));
    assert_eq!(plan.ok(), again.ok());
    let mut asked: Vec<String> = probes.lines().map(str::to_string).collect();
    asked.sort();
    asked
}

/// A shell snippet that waits until `marker` exists (10 s at most), then
/// writes `note` to `log` if it does.
fn wait_for(marker: &Path, log: &Path, note: &str) -> String {
    format!(
        "i=0; while [ ! -e '{m}' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; [ -e '{m}' ] && echo {note} >> '{l}'",
        m = marker.display(),
        l = log.display()
    )
}

/// make asks the fixture's two `cc-option` probes one after the other;
/// keyfab asks the second ahead of make, while make waits for the first,
/// also when it cannot tell the compiler before make names it (here the
/// platform's makefile picks it through a variable of its own). The
/// compiler's probe of the first waits for the probe of the second (10 s
/// at most): it sees it only when the two ran at once. Each probe still
/// runs once.
#[test]
fn the_trees_probes_are_asked_ahead_of_make() {
    let fx = fixture();
    std::fs::write(
        fx.tree.join("platforms/avr/platform.mk"),
        "TOOL :=\nCC = $(CC_PREFIX) $(TOOL)cc\nOBJCOPY = objcopy\n",
    )
    .unwrap();
    let asked = probes_of_a_plan(&fx, |log, marker| {
        format!(
            "case \"$1\" in\n  -fno-common) touch '{m}' ;;\n  -Wunused-but-set-variable=1) {wait} ;;\nesac",
            m = marker.display(),
            wait = wait_for(marker, log, "saw-second")
        )
    });
    assert_eq!(
        asked,
        ["-Wunused-but-set-variable=1", "-fno-common", "saw-second"]
    );
}

/// The probes of the target's platform are asked of the compiler its
/// platform makefile names (`CC = $(CC_PREFIX) cc`) when the plan starts,
/// before make reaches them: here make waits, in the keymap's rules.mk
/// (read before the probes), until the compiler has seen a probe (10 s at
/// most), and notes whether it did. Each probe still runs once.
#[test]
fn the_platforms_probes_are_asked_before_make_reaches_them() {
    let fx = fixture();
    let asked = probes_of_a_plan(&fx, |log, marker| {
        let wait = wait_for(marker, log, "before-make").replace('$', "$$");
        std::fs::write(
            fx.tree.join("keyboards/solo/keymaps/default/rules.mk"),
            format!("KF_WAITED := $(shell {wait})\n"),
        )
        .unwrap();
        format!("touch '{}'", marker.display())
    });
    assert_eq!(
        asked,
        ["-Wunused-but-set-variable=1", "-fno-common", "before-make"]
    );
}

/// A fresh plan's compiles start while make still prints it: here make's
/// last recipe (the size check) waits until an object exists (10 s at
/// most) and notes whether one did. What was compiled then is the
/// build's own: a build after `.build/` is gone takes every object from
/// the cache and makes the same firmware.
#[test]
fn compiles_start_while_make_still_prints_the_plan() {
    let fx = fixture();
    let notes = tempfile::tempdir().unwrap();
    let log = notes.path().join("waited");
    let wait = format!(
        "i=0; while [ -z \"$(find .build -name '*.o')\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; [ -n \"$(find .build -name '*.o')\" ] && echo early >> '{}'",
        log.display()
    )
    .replace('$', "$$");
    let mk = fx.tree.join("builddefs/build_keyboard.mk");
    let text = std::fs::read_to_string(&mk).unwrap();
    let check = "check-size: $(BUILD_DIR)/$(TARGET).hex\n";
    assert!(text.contains(check));
    let waits = format!("{check}\t$(eval KF_WAITED := $(shell {wait}))\n");
    std::fs::write(&mk, text.replacen(check, &waits, 1)).unwrap();

    let first = run(&mut fx.build_cmd(&["solo:default"]));
    assert_eq!(counts(first.ok().lines().last().unwrap()).compiled, 5);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "early\n");
    let hex = fx.tree.join(".build/solo_default.hex");
    let firmware = std::fs::read(&hex).unwrap();

    std::fs::remove_dir_all(fx.tree.join(".build")).unwrap();
    let again = run(&mut fx.build_cmd(&["solo:default"]));
    let c = counts(again.ok().lines().last().unwrap());
    assert_eq!((c.compiled, c.cached), (0, 5));
    assert_eq!(std::fs::read(&hex).unwrap(), firmware);
}

/// make failing after it printed the compiles (here in the size check,
/// its last recipe) fails the build with make's message, whatever the
/// compiles started meanwhile did; the next build, with the makefile
/// mended, makes the firmware.
#[test]
fn make_failing_after_the_compiles_fails_the_build() {
    let fx = fixture();
    let mk = fx.tree.join("builddefs/build_keyboard.mk");
    let text = std::fs::read_to_string(&mk).unwrap();
    let check = "check-size: $(BUILD_DIR)/$(TARGET).hex\n";
    let broken = format!("{check}\t$(error size check broken)\n");
    std::fs::write(&mk, text.replacen(check, &broken, 1)).unwrap();
    let r = run(&mut fx.build_cmd(&["solo:default"]));
    let err = r.fails();
    assert!(err.contains("size check broken"), "{err}");
    assert!(!fx.tree.join(".build/solo_default.hex").exists());

    std::fs::write(&mk, text).unwrap();
    let r = run(&mut fx.build_cmd(&["solo:default"]));
    let c = counts(r.ok().lines().last().unwrap());
    assert_eq!(c.compiled + c.cached, 5);
    assert!(fx.tree.join(".build/solo_default.hex").is_file());
}

#[test]
fn jobs_bound_the_compilers_running_at_once() {
    // `-j` compiles at once, no more (only compiles are counted:
    // identifying the compiler runs it too, from several threads).
    let most_at_once = |jobs: &str| {
        let fx = fixture();
        let (wrap, path) = wrapped_cc(|real, dir| {
            format!(
                "#!/bin/sh\ncase \" $* \" in *' -c '*) ;; *) exec '{cc}' \"$@\";; esac\ntouch '{r}'/$$\nls '{r}' | wc -l >> '{l}'\nsleep 0.3\n'{cc}' \"$@\"\ns=$?\nrm -f '{r}'/$$\nexit $s\n",
                r = dir.join("running").display(),
                l = dir.join("counts").display(),
                cc = real.display()
            )
        });
        let log = wrap.path().join("counts");
        std::fs::create_dir(wrap.path().join("running")).unwrap();
        let r = run(fx
            .build_cmd(&["solo:default", "-j", jobs])
            .env("PATH", &path));
        assert_eq!(counts(r.ok().lines().last().unwrap()).compiled, 5);
        let counts = std::fs::read_to_string(&log).unwrap();
        counts
            .lines()
            .map(|n| n.trim().parse::<usize>().unwrap())
            .max()
    };
    assert_eq!(most_at_once("1"), Some(1));
    assert_eq!(most_at_once("2"), Some(2));
}

/// QMK's own make (what `qmk compile` or `qmk flash` runs) in the same
/// `.build` after keyfab's build finds nothing to compile, link or convert,
/// as after a build of its own: keyfab writes QMK's stamp files
/// (`cflags.txt`, `compiler.txt`, …) before the objects, and a restored
/// object after its dependency file.
#[test]
fn a_plain_make_after_the_build_has_nothing_to_do() {
    let fx = fixture();
    let make = || {
        // `qmk compile solo:default`'s make, with the date keyfab pins
        // under SOURCE_DATE_EPOCH.
        let out = std::process::Command::new("make")
            .current_dir(&fx.tree)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["-r", "-R", "-f", "builddefs/build_keyboard.mk"])
            .args(["KEYBOARD=solo", "KEYMAP=default", "KEYBOARD_FILESAFE=solo"])
            .args(["TARGET=solo_default", "VERBOSE=false", "COLOR=true", "SILENT=false"])
            .arg(format!("QMK_BIN={} qmk", env!("CARGO_BIN_EXE_keyfab")))
            .arg(r#"EXTRAFLAGS=-Wno-builtin-macro-redefined -D__DATE__='"Nov 14 2023"' -D__TIME__='"22:13:20"'"#)
            .arg(".build/solo_default.hex")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let ran = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| {
                ["Compiling:", "Linking:", "Creating"]
                    .iter()
                    .any(|m| l.starts_with(m))
            })
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    // Compiled here, then every object from the cache into a fresh `.build`.
    assert_eq!(fx.built("solo:default").compiled, 5);
    assert_eq!(ran(&make()), Vec::<String>::new());
    std::fs::remove_dir_all(fx.tree.join(".build")).unwrap();
    assert_eq!(fx.built("solo:default").cached, 5);
    let stamps = fx.tree.join(".build/obj_solo_default");
    let compiler = std::fs::read_to_string(stamps.join("compiler.txt")).unwrap();
    assert!(
        compiler.starts_with("cc "),
        "as `cc --version` prints it: {compiler}"
    );
    assert!(std::fs::read_to_string(stamps.join("cflags.txt"))
        .unwrap()
        .contains(r#"-D__TIME__=22:13:20 -DQMK_KEYBOARD_SOLO -DQMK_KEYBOARD=\"solo\""#));
    assert_eq!(ran(&make()), Vec::<String>::new());
    // New flags: make's recipe rewrites cflags.txt, and make compiles again.
    fx.edit("builddefs/build_keyboard.mk", |t| {
        t.replace("-std=gnu11 -Os", "-std=gnu11 -O2")
    });
    assert_eq!(ran(&make()).len(), 7, "5 compiles, the link, the hex");
    // keyfab's next build leaves make nothing to do again.
    assert_eq!(fx.built("solo:default").compiled, 5);
    assert_eq!(ran(&make()), Vec::<String>::new());
}
