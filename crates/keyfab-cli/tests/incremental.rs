//! What re-runs after each kind of edit, asserted from salsa's event log
//! (which tracked functions executed) and from the executor's counts (what
//! compiled), on a temp copy of the fixture tree with one long-lived
//! database, as `keyfab watch` keeps it.

mod util;

use keyfab_build::db::BuildDb;
use keyfab_build::exec::{Executor, GeneratorHost};
use keyfab_build::provenance::Log;
use keyfab_build::target::{self, Options, TargetReport};
use keyfab_cas::LocalCas;
use keyfab_tree::Tree;
use std::collections::BTreeMap;
use std::path::PathBuf;

struct Session {
    fx: util::Fixture,
    tree: Tree,
    cas: LocalCas,
    db: BuildDb,
    opts: Options,
    keymap: &'static str,
    /// Generators run in this process (as `keyfab build` runs them), where
    /// what they read is recorded and their outputs are cached.
    in_process: bool,
}

/// What one rebuild did: tracked functions executed (name → times), and
/// objects compiled.
#[derive(Debug)]
struct Rebuild {
    executed: BTreeMap<String, usize>,
    compiled: usize,
    from_cache: usize,
    /// Generator calls that ran.
    generated: usize,
    generated_from_cache: usize,
    /// The plan's generator steps: output → came from the cache.
    generate_steps: BTreeMap<String, bool>,
    /// The executor's progress at the end: (compiles done, planned, links started).
    progress: (usize, usize, usize),
}

impl Rebuild {
    fn ran(&self, query: &str) -> usize {
        self.executed.get(query).copied().unwrap_or(0)
    }
}

impl Session {
    fn new() -> Session {
        Session::of("default", false)
    }

    fn of(keymap: &'static str, in_process: bool) -> Session {
        let fx = util::Fixture::new();
        let tree = Tree::open(&fx.tree).unwrap();
        let cas = LocalCas::open(&fx.cache).unwrap();
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_keyfab"));
        // Pins version.h, which generators and compilers read from the
        // environment (this file's only test, so no other thread reads it).
        std::env::set_var("SOURCE_DATE_EPOCH", "1700000000");
        let opts = Options {
            env: Vec::new(),
            color: false,
            qmk_bin: format!("{} qmk", exe.display()),
            keyfab_exe: exe,
            cache_dir: fx.cache.clone(),
            clean: false,
            probe_answers: Default::default(),
            make_shell: Some(PathBuf::from(env!("CARGO_BIN_EXE_keyfab-shell"))),
            // As `keyfab build` and watch mode plan: compiling as make prints.
            early_compiles: true,
            copy_firmware: true,
        };
        let db = BuildDb::new(tree.root());
        Session {
            fx,
            tree,
            cas,
            db,
            opts,
            keymap,
            in_process,
        }
    }

    /// Tells the database which files changed (as watch does), then builds
    /// `solo:default`.
    fn rebuild(&mut self, changed: &[&str]) -> Rebuild {
        let paths: Vec<PathBuf> = changed.iter().map(PathBuf::from).collect();
        self.db.refresh(&paths);
        self.db.take_executed();
        let (report, log, progress) = self.build();
        let generate_steps = log
            .into_collector()
            .steps
            .into_iter()
            .filter(|s| s.kind == "generate")
            .map(|s| (s.output, s.cached))
            .collect();
        let mut executed = BTreeMap::new();
        for name in self.db.take_executed() {
            *executed.entry(name).or_insert(0) += 1;
        }
        Rebuild {
            executed,
            compiled: report.build.compiled,
            from_cache: report.build.compiled_from_cache,
            generated: report.build.generated,
            generated_from_cache: report.build.generated_from_cache,
            generate_steps,
            progress,
        }
    }

    fn build(&mut self) -> (TargetReport, Log, (usize, usize, usize)) {
        let exec = Executor::new(self.tree.root(), &self.cas, 2);
        if self.in_process {
            let host = keyfab_cli::qmk_cmds::in_process_generators(
                &self.tree,
                &self.opts.keyfab_exe,
                &self.opts.env,
                None,
            );
            assert!(host.is_some(), "KEYFAB_SPAWN_GENERATORS is set");
            exec.set_generator_host(host.map(|h| h as std::sync::Arc<dyn GeneratorHost>));
        }
        let t = target::resolve(&self.tree, "solo", self.keymap, &[]).unwrap();
        let log = Log::default();
        let (report, _) = target::build_target_in(
            &mut self.db,
            &self.tree,
            &self.cas,
            &exec,
            &t,
            &self.opts,
            &log,
        )
        .unwrap_or_else(|e| panic!("build failed: {e:?}"));
        let p = exec.progress();
        let load =
            |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::Relaxed);
        let progress = (
            load(&p.compiles_done),
            load(&p.compiles_planned),
            load(&p.links_started),
        );
        (report, log, progress)
    }

    fn append(&self, rel: &str, text: &str) {
        self.fx.edit(rel, |s| s + text);
    }
}

#[test]
fn each_kind_of_edit_reruns_only_what_depends_on_it() {
    let mut s = Session::new();

    let cold = s.rebuild(&[]);
    let objects = cold.compiled;
    assert!(objects >= 4, "{cold:?}");
    assert_eq!(cold.ran("plan_inputs"), 1, "{cold:?}");
    assert_eq!(cold.ran("object_key"), objects, "{cold:?}");
    // What a progress display reads: every compile done, early ones too, and the link.
    assert_eq!(cold.progress, (objects, objects, 1), "{cold:?}");

    // Nothing changed: no query re-executes, nothing compiles.
    let noop = s.rebuild(&[]);
    assert!(noop.executed.is_empty(), "{noop:?}");
    assert_eq!((noop.compiled, noop.from_cache), (0, objects), "{noop:?}");
    // No provenance is recorded here, so the steps run, all from the cache.
    assert_eq!(noop.progress, (objects, objects, 1), "{noop:?}");

    // The keymap: its object's key, and nothing about the plan.
    let km = "keyboards/solo/keymaps/default/keymap.c";
    s.append(km, "\nint keyfab_incremental_km;\n");
    let r = s.rebuild(&[km]);
    assert_eq!(r.ran("object_key"), 1, "{r:?}");
    assert_eq!(r.ran("object_keys"), 1, "{r:?}");
    assert_eq!(r.ran("plan_inputs"), 0, "{r:?}");
    assert_eq!(r.compiled, 1, "{r:?}");
    assert_eq!(r.progress, (objects, objects, 1), "{r:?}");

    // A core .c: the same, for its object only.
    s.append("quantum/matrix.c", "\nint keyfab_incremental_core;\n");
    let r = s.rebuild(&["quantum/matrix.c"]);
    assert_eq!(r.ran("object_key"), 1, "{r:?}");
    assert_eq!(r.ran("plan_fresh"), 0, "{r:?}");
    assert_eq!(r.compiled, 1, "{r:?}");

    // A header: no key changes (headers live in the executor's manifests);
    // the objects that include it recompile.
    s.append("quantum/matrix_scan.h", "\n#define KEYFAB_INCREMENTAL 1\n");
    let r = s.rebuild(&["quantum/matrix_scan.h"]);
    assert!(r.executed.is_empty(), "{r:?}");
    assert_eq!(r.compiled, 1, "only matrix.c includes it: {r:?}");

    // A makefile: the plan is found stale (make re-plans, then the new
    // record is checked once more); the same compiles leave every object key
    // as it was.
    s.append("builddefs/message.mk", "\n# keyfab incremental test\n");
    let r = s.rebuild(&["builddefs/message.mk"]);
    assert_eq!(r.ran("plan_fresh"), 2, "{r:?}");
    assert_eq!(r.ran("plan_inputs"), 0, "{r:?}");
    assert_eq!(r.ran("object_key"), 0, "{r:?}");
    assert_eq!(r.compiled, 0, "{r:?}");

    // The keyboard's info: the plan's inputs change, so it is re-planned; the
    // generated info_config.h changes, and every object includes it.
    s.fx.edit("keyboards/solo/keyboard.json", |t| {
        t.replacen("keyfab fixtures", "keyfab incremental", 1)
    });
    let r = s.rebuild(&["keyboards/solo/keyboard.json"]);
    assert_eq!(r.ran("folder_inputs"), 1, "{r:?}");
    assert_eq!(r.ran("plan_inputs"), 1, "{r:?}");
    assert_eq!(r.ran("plan_fresh"), 2, "{r:?}");
    assert_eq!(r.compiled, objects, "{r:?}");

    // A new config.h in the keyboard's folder (it shadows none before; make
    // force-includes it): the folder's listing changes, the plan with it.
    std::fs::write(
        s.fx.tree.join("keyboards/solo/config.h"),
        "#pragma once\n#define KEYFAB_SHADOW 1\n",
    )
    .unwrap();
    let r = s.rebuild(&["keyboards/solo/config.h"]);
    assert_eq!(r.ran("folder_inputs"), 1, "{r:?}");
    assert_eq!(r.ran("plan_fresh"), 2, "{r:?}");
    assert_eq!(r.compiled, objects, "{r:?}");

    // And all quiet again.
    let r = s.rebuild(&[]);
    assert!(r.executed.is_empty(), "{r:?}");
    assert_eq!(r.compiled, 0, "{r:?}");
}

#[test]
fn generator_calls_rerun_only_when_what_they_read_changes() {
    let mut s = Session::of("jsonmap", true);
    let src = ".build/obj_solo_jsonmap/src";
    let keymap_c = format!("{src}/keymap.c");
    let info_config = format!("{src}/info_config.h");

    let cold = s.rebuild(&[]);
    assert!(cold.generate_steps.len() >= 4, "{cold:?}");
    assert!(
        cold.generate_steps.values().all(|cached| !cached),
        "{cold:?}"
    );
    // The calls make made while planning were remembered too: the first
    // no-op computes nothing new.
    let first_noop = s.rebuild(&[]);
    assert_eq!(first_noop.generated, 1, "only version.h: {first_noop:?}");
    let noop = s.rebuild(&[]);
    assert!(noop.executed.is_empty(), "{noop:?}");
    assert!(
        noop.generate_steps.values().all(|cached| *cached),
        "{noop:?}"
    );
    // Only version.h (git, the clock: never reused) runs again.
    assert_eq!(noop.generated, 1, "{noop:?}");
    assert!(noop.generated_from_cache >= 4, "{noop:?}");

    // The keymap.json: keymap.c is generated again (and compiled); the
    // keyboard's generated files hold.
    let km = "keyboards/solo/keymaps/jsonmap/keymap.json";
    s.fx.edit(km, |t| t.replacen("KC_B", "KC_C", 1));
    let r = s.rebuild(&[km]);
    assert_eq!(r.generate_steps.get(&keymap_c), Some(&false), "{r:?}");
    assert_eq!(r.generate_steps.get(&info_config), Some(&true), "{r:?}");
    assert!(r.ran("generated") >= 1, "{r:?}");
    assert!(r.generated < cold.generate_steps.len() + 1, "{r:?}");
    assert_eq!(r.compiled, 1, "{r:?}");

    // Back to the old bytes: every output is known, nothing generates anew.
    s.fx.edit(km, |t| t.replacen("KC_C", "KC_B", 1));
    let r = s.rebuild(&[km]);
    assert!(r.generate_steps.values().all(|cached| *cached), "{r:?}");
    assert_eq!(r.generated, 1, "{r:?}");

    // The keyboard's info: its generated files again, the keymap's hold.
    let kb = "keyboards/solo/keyboard.json";
    s.fx.edit(kb, |t| {
        t.replacen("keyfab fixtures", "keyfab incremental", 1)
    });
    let r = s.rebuild(&[kb]);
    assert_eq!(r.generate_steps.get(&info_config), Some(&false), "{r:?}");
    assert_eq!(r.generate_steps.get(&keymap_c), Some(&true), "{r:?}");

    // A file only a memo read (the mapping tables, parsed once per process
    // and shared by every call) still counts for each call that used it.
    let mapping = "data/mappings/info_config.hjson";
    s.append(mapping, "\n");
    let r = s.rebuild(&[mapping]);
    assert_eq!(r.generate_steps.get(&info_config), Some(&false), "{r:?}");

    // Another process (a fresh database), no build folder: every generated
    // file comes from the cache.
    std::fs::remove_dir_all(s.fx.tree.join(".build")).unwrap();
    s.db = BuildDb::new(s.tree.root());
    let r = s.rebuild(&[]);
    assert!(r.generate_steps.values().all(|cached| *cached), "{r:?}");
    assert!(s.fx.tree.join(&keymap_c).is_file());
    // The same bytes as before: every object from the cache.
    assert_eq!(r.compiled, 0, "{r:?}");
}
