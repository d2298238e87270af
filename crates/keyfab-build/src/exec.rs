//! The executor: runs a plan's steps from the content-addressed cache.
//!
//! Compiles use direct mode: key = (compiler identity, argv, cwd when it
//! matters ([`key_cwd`]), source digest); the manifest for that key lists
//! the headers seen last time with their digests; when they all still
//! match, the object and its warnings come from the cache. Link and
//! conversions are keyed by the digests of their inputs. Failed steps are
//! never cached.

use crate::db::ObjectKey;
use crate::generated::{write_generated, write_if_changed, GeneratedRecord, Generation};
use crate::plan::{Plan, Stamped, Step};
use crate::provenance::Log;
use keyfab_cas::{
    ActionKey, ActionResult, CommandKey, CompileKey, Digest, DirectKey, LocalCas, NewAction,
    NewOutput, RunClock, ToolIdentity,
};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a build stopped.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{step} failed (exit {code}):\n{log}")]
    StepFailed {
        step: String,
        code: i32,
        log: String,
    },
    #[error("cannot run {program}: {message}")]
    Spawn { program: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error(transparent)]
    Cache(#[from] keyfab_cas::CasError),
    #[error("interrupted")]
    Cancelled,
}

/// What a build did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct BuildReport {
    pub compiled: usize,
    pub compiled_from_cache: usize,
    pub linked_from_cache: bool,
    /// Generator calls that ran, and those whose output came from the cache
    /// (or was in place already).
    pub generated: usize,
    pub generated_from_cache: usize,
    /// Nothing ran: the target's last build still held (see
    /// `target::build_target_in`).
    pub up_to_date: bool,
    /// (file, warnings) for every step that printed something.
    pub warnings: Vec<(String, String)>,
    /// Firmware files written (`.hex`/`.bin`/…), tree-relative.
    pub firmware: Vec<String>,
    pub duration_ms: u128,
}

/// `text` without its terminal colour codes. Compilers print them under
/// QMK's `COLOR=true` (`-fdiagnostics-color=always`, which keyfab passes
/// as QMK's CLI does, so objects are QMK's); reports and records are read
/// elsewhere than on a terminal.
pub fn plain_text(text: &str) -> String {
    anstream::adapter::strip_str(text).to_string()
}

/// Runs generator calls inside this process instead of spawning them (the
/// binary implements it for `keyfab qmk …` calls: its own generators).
pub trait GeneratorHost: Send + Sync {
    /// `None` when `argv` is not a call this host runs; then it is spawned.
    /// `Err` carries the generator's message. The executor writes the file.
    fn generate(&self, argv: &[String]) -> Option<Result<Generation, String>>;
    /// What its outputs depend on besides the call and the files they read
    /// (the year, the environment it reads): part of their cache key.
    fn salt(&self) -> String;
    /// The keyboard's platform (QMK's `platform_key`: `avr`, `chibios`, …)
    /// from its merged info, when the host knows it. A plan asks the probes
    /// of that platform's makefiles before make reaches them.
    fn platform(&self, _keyboard: &str) -> Option<String> {
        None
    }
}

/// One generator call to make (see [`Executor::run_generator_jobs`]).
#[derive(Debug, Clone)]
pub struct GenJob<'p> {
    pub argv: &'p [String],
    /// The file it writes, tree-relative.
    pub output: Option<&'p str>,
    /// Its head key in the cache ([`crate::generated::head_key`]); `None`:
    /// its output is not stored.
    pub head: Option<ActionKey>,
    /// The action holding the output the database says still holds
    /// ([`crate::db::generated`]).
    pub known: Option<ActionKey>,
    /// A step of the plan (recorded in provenance), not a call make made
    /// while reading the makefiles.
    pub step: bool,
}

/// A driver's helper files (`as`, `ld`, …) and their digests.
type HelperFiles = Arc<[(PathBuf, Digest)]>;

/// How far the executor's builds have got, for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Compiles finished (compiled or from the cache), early ones included.
    pub compiles_done: AtomicUsize,
    /// Compiles of the plans whose steps run (0 while make still plans:
    /// early compiles start before).
    pub compiles_planned: AtomicUsize,
    /// Links started.
    pub links_started: AtomicUsize,
}

/// Runs plans in one tree, with one cache.
pub struct Executor<'a> {
    tree: PathBuf,
    cas: &'a LocalCas,
    clock: RunClock,
    pool: rayon::ThreadPool,
    tools: Mutex<HashMap<String, Digest>>,
    /// The files a driver runs, by program and the identity they were
    /// found for (found once per run, not once per step).
    helpers: Mutex<HashMap<(String, Digest), HelperFiles>>,
    cancel: Option<Arc<AtomicBool>>,
    host: Mutex<Option<Arc<dyn GeneratorHost>>>,
    /// How many processes the pool's steps are running now.
    running: AtomicUsize,
    progress: Arc<Progress>,
}

impl<'a> Executor<'a> {
    pub fn new(tree: &Path, cas: &'a LocalCas, jobs: usize) -> Executor<'a> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(jobs.max(1))
            .build()
            .expect("thread pool");
        Executor {
            tree: tree.to_path_buf(),
            cas,
            clock: RunClock::now(),
            pool,
            tools: Mutex::new(HashMap::new()),
            helpers: Mutex::new(HashMap::new()),
            cancel: None,
            host: Mutex::new(None),
            running: AtomicUsize::new(0),
            progress: Arc::default(),
        }
    }

    /// How far this executor's builds have got (shared: a display reads it
    /// while they run).
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Program identities already known (from the database): no second
    /// `--version` run for them.
    pub fn know_tools(&self, known: &[(String, Digest)]) {
        let mut tools = self.tools.lock().unwrap();
        for (program, id) in known {
            // The database's are current (a watch refreshes them between
            // builds of one long-lived executor).
            tools.insert(program.clone(), *id);
        }
    }

    /// Runs the generator calls `host` knows in this process from now on
    /// (watch sets a fresh host per rebuild: hosts may keep parsed files).
    pub fn set_generator_host(&self, host: Option<Arc<dyn GeneratorHost>>) {
        *self.host.lock().unwrap() = host;
    }

    /// The host that runs generator calls in this process, if any.
    pub fn generator_host(&self) -> Option<Arc<dyn GeneratorHost>> {
        self.host.lock().unwrap().clone()
    }

    /// Stops starting new steps once `flag` is set (steps then fail with
    /// [`BuildError::Cancelled`]; nothing half-done is cached).
    pub fn with_cancel(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    fn check_cancel(&self) -> Result<(), BuildError> {
        if self.cancelled() {
            return Err(BuildError::Cancelled);
        }
        Ok(())
    }

    /// Whether the cancel flag (see [`Executor::with_cancel`]) is set.
    pub fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// Runs `f` in this executor's pool: the parallel work `f` starts (other
    /// targets, their compiles) shares the pool's threads, so a sweep never
    /// runs more than `jobs` steps at once.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// The number of threads of the pool.
    pub fn jobs(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// The pool's slots no process runs in now, counting the caller's.
    fn idle_slots(&self) -> usize {
        self.jobs()
            .saturating_sub(self.running.load(Ordering::Relaxed))
            .max(1)
    }

    fn abs(&self, rel: &str) -> PathBuf {
        self.tree.join(rel)
    }

    fn io(&self, path: &Path, e: impl std::fmt::Display) -> BuildError {
        BuildError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Digest of a tree file through the stat cache.
    fn digest(&self, rel: &Path) -> Result<Digest, BuildError> {
        Ok(self.cas.file_digest(&self.tree.join(rel), &self.clock)?)
    }

    /// Compiler identity: resolved path + `--version` output + binary digest
    /// (+ a driver's helper programs, see [`ToolProbe`]), computed once per
    /// program per run; recorded in `prov` with the helpers' files.
    pub fn tool(&self, program: &str, prov: &Log) -> Result<Digest, BuildError> {
        let id = self.tool_identity(program)?;
        // The files a driver runs are inputs of their own, so `explain`
        // names a new `as` or `ld`, not only a changed toolchain.
        let helpers = self
            .helpers
            .lock()
            .unwrap()
            .entry((program.to_string(), id))
            .or_insert_with(|| crate::db::tool_helpers(program).into())
            .clone();
        prov.with(|l| {
            l.tool(program, id);
            for (path, digest) in helpers.iter() {
                l.input(path.to_string_lossy(), *digest);
            }
        });
        Ok(id)
    }

    /// [`Executor::tool`] without recording it.
    fn tool_identity(&self, program: &str) -> Result<Digest, BuildError> {
        let known = self.tools.lock().unwrap().get(program).copied();
        let id = match known.or_else(|| crate::db::tool_identity(program)) {
            Some(id) => id,
            // No process-wide (cached) identity: identify it here, which
            // names what went wrong.
            None => identify_tool(program, |p| Ok(self.cas.file_digest(p, &self.clock)?))?,
        };
        if known.is_none() {
            self.tools.lock().unwrap().insert(program.to_string(), id);
        }
        Ok(id)
    }

    /// The part of generator cache keys the in-process host adds (`None`:
    /// calls spawn, and nothing they write comes from the cache).
    pub fn generator_salt(&self) -> Option<String> {
        Some(self.host.lock().unwrap().as_ref()?.salt())
    }

    /// Runs generator calls side by side: one the database answered
    /// (`known`) is written from the cache when its output differs; the
    /// others run, in this process when the host knows them, each output
    /// then stored under the call's head key with what it read. Returns,
    /// per job, whether it came from the cache and the output it stored.
    pub fn run_generator_jobs(
        &self,
        jobs: &[GenJob<'_>],
        prov: &Log,
    ) -> Result<Vec<(bool, Option<GeneratedRecord>)>, BuildError> {
        self.check_cancel()?;
        self.pool.install(|| {
            jobs.par_iter()
                .map(|j| self.generator_job(j, prov))
                .collect()
        })
    }

    fn generator_job(
        &self,
        job: &GenJob<'_>,
        prov: &Log,
    ) -> Result<(bool, Option<GeneratedRecord>), BuildError> {
        self.check_cancel()?;
        let step = || match job.output {
            Some(o) => format!("generating {o}"),
            None => format!("generator {}", job.argv.join(" ")),
        };
        let mut stored = None;
        let from_cache = match (job.known, job.output) {
            (Some(action), Some(o)) => match crate::generated::output_of(self.cas, &action, o)? {
                Some(d) => self.materialize_generated(&d, o)?,
                None => false,
            },
            _ => false,
        };
        if !from_cache {
            if let Some(dir) = job
                .output
                .and_then(|o| self.abs(o).parent().map(Path::to_path_buf))
            {
                std::fs::create_dir_all(&dir).map_err(|e| self.io(&dir, e))?;
            }
            let host = self.host.lock().unwrap().clone();
            let started = Instant::now();
            match host.and_then(|h| h.generate(job.argv)) {
                Some(Ok(g)) => {
                    write_generated(&g.output, &g.contents).map_err(|e| self.io(&g.output, e))?;
                    if let (Some(head), Some(reads), Some(o)) = (&job.head, &g.reads, job.output) {
                        if !self.cas.is_read_only() {
                            let reads = crate::generated::encode_reads(&self.tree, reads);
                            let took = started.elapsed();
                            stored = Some(crate::generated::store(
                                self.cas,
                                head,
                                &self.tree,
                                o,
                                reads,
                                &g.contents,
                                took,
                            )?);
                        }
                    }
                }
                Some(Err(log)) => {
                    return Err(BuildError::StepFailed {
                        step: step(),
                        code: 1,
                        log,
                    })
                }
                None => {
                    self.run_checked(job.argv, &[], step)?;
                }
            }
        }
        if let (true, Some(output)) = (job.step, job.output) {
            // Provenance: the tree files named on its command line, and what it wrote.
            let mut files = Vec::new();
            for word in &job.argv[1..] {
                let rel = Path::new(word);
                if word != output && !rel.is_absolute() && self.tree.join(rel).is_file() {
                    files.push((word.clone(), self.digest(rel)?));
                }
            }
            let written = self.digest(Path::new(output)).ok();
            prov.with(|l| l.step("generate", job.argv, &files, output, written, from_cache));
        }
        Ok((from_cache, stored))
    }

    /// Puts a cached generator output in place (left alone when it holds
    /// those bytes already). False when the cache lost the blob.
    fn materialize_generated(&self, digest: &Digest, output: &str) -> Result<bool, BuildError> {
        if self.digest(Path::new(output)).ok().as_ref() == Some(digest) {
            return Ok(true);
        }
        let Some(bytes) = self.cas.get_blob(digest)? else {
            return Ok(false);
        };
        let path = self.abs(output);
        write_generated(&path, &bytes).map_err(|e| self.io(&path, e))?;
        Ok(true)
    }

    /// Runs `argv` in the tree and returns what it printed; a non-zero exit
    /// is the failed `step`, or an interruption when Ctrl-C killed it.
    fn run_checked(
        &self,
        argv: &[String],
        env: &[(String, String)],
        step: impl FnOnce() -> String,
    ) -> Result<String, BuildError> {
        self.running.fetch_add(1, Ordering::Relaxed);
        let ran = run(&self.tree, argv, env);
        self.running.fetch_sub(1, Ordering::Relaxed);
        let (code, log) = ran?;
        if code != 0 {
            self.check_cancel()?;
            return Err(BuildError::StepFailed {
                step: step(),
                code,
                log,
            });
        }
        Ok(log)
    }

    /// Runs `f` with compiles that can start before the plan is complete:
    /// what `f` offers ([`EarlyCompiles::offer`], as make prints it) runs
    /// on `jobs` threads of their own, and [`Executor::run_steps`] given
    /// the same `early` takes their results. Make plans on one core, so
    /// the others compile meanwhile. Compiles still queued when `f`
    /// returns do not start.
    pub fn with_early<R>(&self, f: impl FnOnce(&EarlyCompiles<'_, '_, 'a>) -> R) -> R {
        let shared = EarlyShared {
            exec: self,
            queue: Mutex::new(EarlyQueue::default()),
            changed: std::sync::Condvar::new(),
        };
        // Closed however `f` ends, so the threads end too (a panic in `f`
        // then reaches the caller instead of waiting on them forever).
        struct Close<'x, 'e, 'a>(&'x EarlyShared<'e, 'a>);
        impl Drop for Close<'_, '_, '_> {
            fn drop(&mut self) {
                self.0.close();
            }
        }
        std::thread::scope(|scope| {
            let _close = Close(&shared);
            f(&EarlyCompiles {
                shared: &shared,
                scope,
                started: AtomicBool::new(false),
            })
        })
    }

    /// Every step but the generators: compiles in parallel (those `early`
    /// has started among them), then archive, link, conversions and copies.
    pub fn run_steps(
        &self,
        plan: &Plan,
        keys: &BTreeMap<String, ObjectKey>,
        prov: &Log,
        early: Option<&EarlyCompiles<'_, '_, 'a>>,
    ) -> Result<BuildReport, BuildError> {
        self.check_cancel()?;
        let start = Instant::now();
        let mut report = BuildReport::default();
        self.progress
            .compiles_planned
            .fetch_add(plan.compiles().count(), Ordering::Relaxed);
        // Before the compiles, whose objects must be the newer.
        for step in &plan.steps {
            if let Step::Stamp { file, holds } = step {
                self.stamp(file, holds)?;
            }
        }
        let early = early.filter(|e| e.started());
        let mut results: Vec<(usize, Result<CompileOutcome, BuildError>)> = match early {
            Some(early) => {
                let compiles: Vec<&Step> = plan.compiles().collect();
                let done = early.shared.finish(&compiles, keys);
                compiles
                    .into_iter()
                    .zip(done)
                    .enumerate()
                    .map(|(i, (s, d))| (i, d.and_then(|d| self.record_compile(s, d, prov))))
                    .collect()
            }
            None => self.pool.install(|| {
                longest_first(plan.compiles().collect(), |s| self.expected_cost(s))
                    .into_iter()
                    .par_bridge()
                    .map(|(i, s)| (i, self.compile(s, keys.get(s.output()), prov)))
                    .collect()
            }),
        };
        results.sort_by_key(|(i, _)| *i);
        let mut first_error = None;
        for (_, r) in results {
            match r {
                Ok(o) => {
                    if o.from_cache {
                        report.compiled_from_cache += 1;
                    } else {
                        report.compiled += 1;
                    }
                    if !o.log.is_empty() {
                        report.warnings.push((o.source, o.log));
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        for step in &plan.steps {
            match step {
                Step::Archive { argv, output } => {
                    // `ar r` adds to an existing archive; start from none, as a clean build does.
                    let out = self.abs(output);
                    if out.exists() {
                        std::fs::remove_file(&out).map_err(|e| self.io(&out, e))?;
                    }
                    self.command("archive", argv, &[], output, &[], &[], prov)?;
                }
                Step::Link { argv, env, output } => {
                    self.progress.links_started.fetch_add(1, Ordering::Relaxed);
                    let scripts = crate::ldscript::script_inputs(&self.tree, argv);
                    let (hit, log) =
                        self.command("link", argv, env, output, &scripts, &[], prov)?;
                    report.linked_from_cache = hit;
                    if !log.is_empty() {
                        report.warnings.push((output.clone(), log));
                    }
                }
                Step::Convert {
                    argv,
                    input,
                    output,
                    then,
                } => {
                    let input = std::slice::from_ref(input);
                    self.command("convert", argv, &[], output, input, then, prov)?;
                    report.firmware.push(output.clone());
                }
                Step::Copy { from, to } => {
                    let (src, dst) = (self.abs(from), self.abs(to));
                    copy_if_changed(&src, &dst).map_err(|e| self.io(&dst, e))?;
                }
                _ => {}
            }
        }
        // Steps from the cache store nothing: commit what the compiles left.
        self.cas.commit_batched()?;
        report.duration_ms = start.elapsed().as_millis();
        Ok(report)
    }

    /// Writes a [`Step::Stamp`]'s file when it does not hold what it
    /// should, as its recipe's `cmp -s - FILE || … > FILE` does. A
    /// compiler that cannot be identified is left to its compiles, which
    /// name it.
    fn stamp(&self, file: &str, holds: &Stamped) -> Result<(), BuildError> {
        let Some(bytes) = stamp_bytes(holds) else {
            return Ok(());
        };
        let path = self.abs(file);
        write_if_changed(&path, &bytes).map_err(|e| self.io(&path, e))?;
        Ok(())
    }

    /// What a compile is expected to cost, for ordering: its source's size
    /// (all a cold build knows; 0 when it cannot be read yet).
    fn expected_cost(&self, step: &Step) -> u64 {
        match step {
            Step::Compile { source, .. } => {
                std::fs::metadata(self.abs(source)).map_or(0, |m| m.len())
            }
            _ => 0,
        }
    }

    /// One compile of the plan, from the cache or run, recorded in `prov`.
    fn compile(
        &self,
        step: &Step,
        key: Option<&ObjectKey>,
        prov: &Log,
    ) -> Result<CompileOutcome, BuildError> {
        self.record_compile(step, self.compile_step(step, key)?, prov)
    }

    /// Records what [`Executor::compile_step`] did in `prov`.
    fn record_compile(
        &self,
        step: &Step,
        done: Compiled,
        prov: &Log,
    ) -> Result<CompileOutcome, BuildError> {
        let Step::Compile {
            source,
            object,
            argv,
            ..
        } = step
        else {
            unreachable!("compiles only")
        };
        self.tool(&argv[0], prov)?;
        let mut files = vec![(source.clone(), done.source)];
        files.extend(
            done.headers
                .iter()
                .map(|(p, d)| (p.to_string_lossy().into_owned(), *d)),
        );
        let cached = done.outcome.from_cache;
        prov.with(|l| l.step("compile", argv, &files, object, done.object, cached));
        Ok(done.outcome)
    }

    /// Compiles one source, or takes its object from the cache: `key` is
    /// the database's direct-mode key for it, computed here when `None`.
    fn compile_step(&self, step: &Step, key: Option<&ObjectKey>) -> Result<Compiled, BuildError> {
        let done = self.compile_or_restore(step, key);
        if done.is_ok() {
            self.progress.compiles_done.fetch_add(1, Ordering::Relaxed);
        }
        done
    }

    /// [`Executor::compile_step`] but the count.
    fn compile_or_restore(
        &self,
        step: &Step,
        key: Option<&ObjectKey>,
    ) -> Result<Compiled, BuildError> {
        let Step::Compile {
            source,
            object,
            argv,
            depfile_tmp,
            depfile,
        } = step
        else {
            unreachable!("compile_step() takes compile steps")
        };
        let compiler = self.tool_identity(&argv[0])?;
        let source_digest = self.digest(Path::new(source))?;
        // The database's key holds only while the source is what it hashed.
        let direct = match key {
            Some(k) if k.source == source_digest => k.key,
            _ => DirectKey {
                compiler,
                argv: argv[1..].iter().map(OsString::from).collect(),
                cwd: key_cwd(argv, &self.tree),
                env: compiler_env(),
                source: source_digest,
            }
            .key(),
        };
        let done = |headers: Vec<(PathBuf, Digest)>, object: Option<Digest>, from_cache, log| {
            Ok(Compiled {
                source: source_digest,
                headers,
                object,
                outcome: CompileOutcome {
                    source: source.clone(),
                    from_cache,
                    log,
                },
            })
        };
        let obj_path = self.abs(object);
        if let Some(dir) = obj_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
        }
        // Direct-mode hit: every header recorded last time still has its digest.
        if let Some(manifest) = self.cas.get_manifest(&direct)? {
            // What `Manifest::find` does, keeping the entry (its headers are provenance).
            let found = manifest.entries.iter().find(|e| {
                e.headers
                    .iter()
                    .all(|(p, d)| self.digest(p).ok().as_ref() == Some(d))
            });
            if let Some(entry) = found {
                if let Some(result) = self.cas.get_action(&entry.action)? {
                    if self.restore(&result, object, depfile.as_deref())? {
                        let log = self.replay(&result)?;
                        let object = result.output("object").map(|o| o.digest);
                        return done(entry.headers.clone(), object, true, log);
                    }
                }
            }
        }
        self.check_cancel()?;
        let started = Instant::now();
        let log = self.run_checked(argv, &[], || format!("compiling {source}"))?;
        let duration = started.elapsed();
        // The compiler wrote the depfile to depfile_tmp; make moves it.
        let mut headers = Vec::new();
        let mut dep_bytes = Vec::new();
        if let Some(tmp) = depfile_tmp {
            let tmp_path = self.abs(tmp);
            dep_bytes = std::fs::read(&tmp_path).map_err(|e| self.io(&tmp_path, e))?;
            for dep in depfile_inputs(&String::from_utf8_lossy(&dep_bytes)) {
                if dep != *source {
                    let digest = self.digest(Path::new(&dep))?;
                    headers.push((PathBuf::from(dep), digest));
                }
            }
            let dest = self.abs(depfile.as_deref().unwrap_or(tmp));
            std::fs::rename(&tmp_path, &dest).map_err(|e| self.io(&dest, e))?;
        }
        headers.sort();
        headers.dedup();
        let key = CompileKey { direct, headers };
        let mut outputs = vec![NewOutput::file("object", &obj_path)];
        if depfile.is_some() {
            outputs.push(NewOutput::bytes("depfile", &dep_bytes));
        }
        let action = NewAction {
            outputs,
            stdout: b"",
            stderr: log.as_bytes(),
            exit_code: 0,
            duration,
        };
        // Its index rows go with the next transaction (the link's, or one
        // per batch): one commit per object cost ~0.7 ms on its lane.
        let stored =
            self.cas
                .put_action_in_manifest_batched(&key.key(), &action, &direct, &key.headers)?;
        let object = stored.output("object").map(|o| o.digest);
        done(key.headers, object, false, log)
    }

    /// Writes a cached result's outputs where the build expects them;
    /// false when a blob is missing (then the step simply runs).
    fn restore(
        &self,
        result: &ActionResult,
        object: &str,
        depfile: Option<&str>,
    ) -> Result<bool, BuildError> {
        // The depfile first: make rebuilds an object older than it.
        let mut wanted = Vec::new();
        if let Some(d) = depfile {
            wanted.push(("depfile", d));
        }
        wanted.push(("object", object));
        for (name, rel) in wanted {
            let Some(out) = result.output(name) else {
                return Ok(false);
            };
            if !self.place(&out.digest, &self.abs(rel), out.executable)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Puts a cached output at `dest`, unless `dest` already holds exactly
    /// those bytes (by the stat cache, so an unchanged file is not even
    /// re-read): a no-op build then writes nothing. Ok(false) on a miss.
    fn place(&self, digest: &Digest, dest: &Path, executable: bool) -> Result<bool, BuildError> {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(dest) {
            let mode_ok = !executable || meta.permissions().mode() & 0o111 != 0;
            if mode_ok
                && meta.is_file()
                && self.cas.file_digest(dest, &self.clock).ok() == Some(*digest)
            {
                return Ok(true);
            }
        }
        Ok(self.cas.materialize(digest, dest, executable)?)
    }

    fn replay(&self, result: &ActionResult) -> Result<String, BuildError> {
        let err = self.cas.get_blob(&result.stderr)?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&err).into_owned())
    }

    /// A link or conversion, keyed by its tool, argv and input digests;
    /// `then` are commands run after it on what it wrote (their programs'
    /// identities join the key). Returns (from cache, log).
    #[allow(clippy::too_many_arguments)]
    fn command(
        &self,
        kind: &str,
        argv: &[String],
        env: &[(String, String)],
        output: &str,
        extra_inputs: &[String],
        then: &[Vec<String>],
        prov: &Log,
    ) -> Result<(bool, String), BuildError> {
        let tool = self.tool(&argv[0], prov)?;
        // What the chain writes is never its input (`objcopy … X.tmp` then
        // `uf2conv.py X.tmp --output X.uf2`; `dfu-suffix -a X.bin` in place).
        let mut written = vec![output];
        if !then.is_empty() {
            written.extend(argv.last().map(String::as_str));
        }
        let mut inputs = Vec::new();
        for word in argv[1..].iter().chain(extra_inputs) {
            let rel = Path::new(word);
            if !written.contains(&word.as_str())
                && !rel.is_absolute()
                && self.tree.join(rel).is_file()
            {
                inputs.push((rel.to_path_buf(), self.digest(rel)?));
            }
        }
        inputs.sort();
        inputs.dedup();
        let files: Vec<(String, Digest)> = inputs
            .iter()
            .map(|(p, d)| (p.to_string_lossy().into_owned(), *d))
            .collect();
        // The key covers the whole chain: its argv and its programs.
        for cmd in then {
            inputs.push((
                PathBuf::from(format!("tool:{}", cmd[0])),
                self.tool(&cmd[0], prov)?,
            ));
        }
        let chain = crate::plan::command_chain(argv, then);
        let command = CommandKey {
            kind: kind.to_string(),
            tool,
            argv: chain[1..].iter().map(OsString::from).collect(),
            cwd: key_cwd(&chain, &self.tree),
            env: env.iter().cloned().chain(compiler_env()).collect(),
            inputs,
        };
        let key = command.key();
        let map = map_file(argv);
        // A link with a map file is cached in direct mode: `key` heads a
        // manifest of the files outside the tree the linker loaded last time
        // (crt objects, libgcc, libc, libm from its `LOAD` lines), so a
        // toolchain library that changed under the same compiler relinks.
        let direct = map.is_some();
        let found = if direct {
            match self.cas.get_manifest(&key)? {
                Some(manifest) => {
                    let entry = manifest.entries.iter().find(|e| {
                        e.headers.iter().all(|(p, d)| {
                            self.cas.file_digest(p, &self.clock).ok().as_ref() == Some(d)
                        })
                    });
                    match entry {
                        Some(e) => self
                            .cas
                            .get_action(&e.action)?
                            .map(|r| (r, e.headers.clone())),
                        None => None,
                    }
                }
                None => None,
            }
        } else {
            self.cas.get_action(&key)?.map(|r| (r, Vec::new()))
        };
        if let Some((result, libraries)) = found {
            if self.restore_named(&result, output, map.as_deref())? {
                let files = with_libraries(&files, &libraries);
                self.record_command(
                    kind,
                    &chain,
                    &files,
                    output,
                    map.as_deref(),
                    &result,
                    true,
                    prov,
                );
                return Ok((true, self.replay(&result)?));
            }
        }
        self.check_cancel()?;
        let started = Instant::now();
        let run_argv = match kind {
            "link" => lto_jobs(argv, self.idle_slots()),
            _ => argv.to_vec(),
        };
        let log = self.run_checked(&run_argv, env, || format!("{kind} {output}"))?;
        for cmd in then {
            // Their output was sent to /dev/null by the recipe: shown only on failure.
            self.run_checked(cmd, &[], || format!("{kind} {output}: {}", cmd.join(" ")))?;
        }
        let out_path = self.abs(output);
        let map_path = map.as_deref().map(|m| self.abs(m));
        let mut primary = NewOutput::file("output", &out_path);
        primary.executable = is_executable(&out_path);
        let mut outputs = vec![primary];
        if let Some(p) = map_path.as_deref().filter(|p| p.is_file()) {
            outputs.push(NewOutput::file("map", p));
        }
        let action = NewAction {
            outputs,
            stdout: b"",
            stderr: log.as_bytes(),
            exit_code: 0,
            duration: started.elapsed(),
        };
        let mut libraries = Vec::new();
        let stored = if direct {
            let text = map_path
                .as_deref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            for lib in loaded_outside(&text, &self.tree) {
                let d = self.cas.file_digest(&lib, &self.clock)?;
                libraries.push((lib, d));
            }
            let mut full = command;
            full.inputs.extend(
                libraries
                    .iter()
                    .map(|(p, d)| (PathBuf::from(format!("lib:{}", p.display())), *d)),
            );
            self.cas
                .put_action_in_manifest(&full.key(), &action, &key, &libraries)?
        } else {
            self.cas.put_action(&key, &action)?
        };
        let files = with_libraries(&files, &libraries);
        self.record_command(
            kind,
            &chain,
            &files,
            output,
            map.as_deref(),
            &stored,
            false,
            prov,
        );
        Ok((false, log))
    }

    /// Provenance of a link or conversion (and its map file).
    #[allow(clippy::too_many_arguments)]
    fn record_command(
        &self,
        kind: &str,
        argv: &[String],
        files: &[(String, Digest)],
        output: &str,
        map: Option<&str>,
        result: &ActionResult,
        cached: bool,
        prov: &Log,
    ) {
        let digest = result.output("output").map(|o| o.digest);
        prov.with(|l| {
            l.step(kind, argv, files, output, digest, cached);
            if let (Some(m), Some(rel)) = (result.output("map"), map) {
                l.outputs.insert(rel.to_string(), m.digest);
            }
        });
    }

    fn restore_named(
        &self,
        result: &ActionResult,
        output: &str,
        map: Option<&str>,
    ) -> Result<bool, BuildError> {
        let Some(out) = result.output("output") else {
            return Ok(false);
        };
        if !self.place(&out.digest, &self.abs(output), out.executable)? {
            return Ok(false);
        }
        if let (Some(m), Some(rel)) = (result.output("map"), map) {
            self.place(&m.digest, &self.abs(rel), false)?;
        }
        Ok(true)
    }
}

/// The programs a GCC-style driver runs for it, by the names
/// `-print-prog-name` takes, and the LTO plugin its linker loads (role
/// `lto-plugin`, found with `-print-file-name`).
const DRIVER_HELPERS: &[&str] = &[
    "cc1",
    "cc1plus",
    "as",
    "collect2",
    "ld",
    "lto1",
    "lto-wrapper",
];
const LTO_PLUGIN: &str = "liblto_plugin.so";

/// What running a program tells about it, found once per binary: its
/// `--version` output and, for a compiler driver, where the programs it
/// runs are (`-print-prog-name` / `-print-file-name` answers: an absolute
/// path, or a bare name the driver looks up on `PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolProbe {
    pub version_output: Vec<u8>,
    /// (role, the driver's answer); empty when the program is no driver.
    pub helpers: Vec<(String, String)>,
}

impl ToolProbe {
    /// Runs the program at `path` (`program` names it in errors).
    pub fn run(program: &str, path: &Path) -> Result<ToolProbe, BuildError> {
        // One answer per run (the driver prints only the first `-print-*`),
        // so every question is a process; they run at once, in two rounds:
        // `--version` with the question only a driver answers, then the rest.
        let ask_all = |args: &[String]| -> Result<Vec<std::process::Output>, BuildError> {
            let children: Vec<_> = args
                .iter()
                .map(|arg| {
                    let mut command = Command::new(path);
                    if arg == "--version" {
                        // GCC names itself by its argv[0] there: what
                        // `$(CC) --version` prints (QMK's `compiler.txt`).
                        std::os::unix::process::CommandExt::arg0(&mut command, program);
                    }
                    command
                        .arg(arg)
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                })
                .collect();
            children
                .into_iter()
                .map(|c| {
                    c.and_then(|c| c.wait_with_output())
                        .map_err(|e| BuildError::Spawn {
                            program: program.to_string(),
                            message: e.to_string(),
                        })
                })
                .collect()
        };
        let answer = |out: &std::process::Output| {
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !text.is_empty() && !text.contains('\n')).then_some(text)
        };
        let (first, rest) = DRIVER_HELPERS.split_first().expect("helpers");
        let round = ask_all(&["--version".into(), format!("-print-prog-name={first}")])?;
        let version_output = round[0].stdout.clone();
        let mut helpers = Vec::new();
        // Programs that are no driver (objcopy, size, ar) reject the option.
        if let Some(at) = answer(&round[1]) {
            helpers.push((first.to_string(), at));
            let mut questions: Vec<String> = rest
                .iter()
                .map(|n| format!("-print-prog-name={n}"))
                .collect();
            questions.push(format!("-print-file-name={LTO_PLUGIN}"));
            let roles = rest.iter().copied().chain(["lto-plugin"]);
            for (role, out) in roles.zip(ask_all(&questions)?) {
                if let Some(at) = answer(&out) {
                    helpers.push((role.to_string(), at));
                }
            }
        }
        Ok(ToolProbe {
            version_output,
            helpers,
        })
    }

    /// The identity of the program at `path` whose binary has digest
    /// `binary`: the helpers' files are resolved now (a bare name on `PATH`,
    /// as the driver does) and hashed with `digest`.
    pub fn identity(
        &self,
        path: &Path,
        binary: Digest,
        digest: impl Fn(&Path) -> Option<Digest> + Sync,
    ) -> Digest {
        ToolIdentity {
            path: path.to_path_buf(),
            version_output: self.version_output.clone(),
            binary,
            helpers: self.helpers(digest),
        }
        .digest()
    }

    /// The helpers' files as they are now: (role, resolved path or the
    /// driver's answer, digest when found). Hashed side by side: a GCC's
    /// `cc1` and `lto1` are ~12 MB each, and the first build with a fresh
    /// cache waits for them while make plans.
    pub fn helpers(
        &self,
        digest: impl Fn(&Path) -> Option<Digest> + Sync,
    ) -> Vec<(String, PathBuf, Option<Digest>)> {
        self.helpers
            .par_iter()
            .map(|(role, at)| {
                let resolved = if Path::new(at).is_absolute() {
                    let p = Path::new(at);
                    p.is_file()
                        .then(|| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()))
                } else if role == "lto-plugin" {
                    None
                } else {
                    resolve_program(at)
                };
                let d = resolved.as_deref().and_then(&digest);
                (role.clone(), resolved.unwrap_or_else(|| at.into()), d)
            })
            .collect()
    }

    /// The helpers as text to keep in the cache: a line `role<TAB>answer`
    /// each (read back by [`Self::from_parts`]).
    pub fn helpers_text(&self) -> String {
        self.helpers
            .iter()
            .map(|(role, at)| format!("{role}\t{at}\n"))
            .collect()
    }

    /// The probe back from its `--version` output and [`Self::helpers_text`].
    pub fn from_parts(version: Vec<u8>, helpers: &[u8]) -> Option<ToolProbe> {
        let helpers = std::str::from_utf8(helpers)
            .ok()?
            .lines()
            .map(|l| {
                let (role, at) = l.split_once('\t')?;
                Some((role.to_string(), at.to_string()))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ToolProbe {
            version_output: version,
            helpers,
        })
    }
}

/// A program's identity: resolved path + `--version` output + the digest
/// of its binary (computed by `digest`), and for a compiler driver the
/// programs and plugin it runs with their digests.
pub fn identify_tool(
    program: &str,
    digest: impl Fn(&Path) -> Result<Digest, BuildError> + Sync,
) -> Result<Digest, BuildError> {
    let path = resolve_program(program).ok_or_else(|| BuildError::Spawn {
        program: program.to_string(),
        message: "not found on PATH".into(),
    })?;
    let probe = ToolProbe::run(program, &path)?;
    let binary = digest(&path)?;
    Ok(probe.identity(&path, binary, |p| digest(p).ok()))
}

/// The working folder as keys see it: the tree's path only when the
/// command's output depends on it, else empty, so checkouts of one tree in
/// different folders (CI runners, shards) share objects and links.
///
/// GCC writes the working folder into its output only for debug info and
/// coverage or profile data (as ccache's `hash_dir` assumes); QMK's compiles
/// pass every path tree-relative, and an absolute path in argv is in the key
/// as it is. Flags whose effect we cannot see (`@file`) keep the folder.
pub fn key_cwd(argv: &[String], cwd: &Path) -> PathBuf {
    let debug = |flag: &str| {
        (flag.starts_with("-g") && flag != "-g0")
            || ["--gdwarf", "--gstabs", "--gen-debug"]
                .iter()
                .any(|f| flag.starts_with(f))
    };
    let depends = argv.iter().skip(1).any(|a| {
        debug(a)
            || a == "--coverage"
            || a.starts_with("-ftest-coverage")
            || a.starts_with("-fprofile")
            || a.starts_with("-fauto-profile")
            || a.contains("prefix-map")
            || a.starts_with('@')
            // Flags handed to the assembler or linker: `-Wa,-g`, `-Wl,…`
            // (`-Xassembler -g` passes `-g` as an argument of its own).
            || (a.starts_with("-Wa,") || a.starts_with("-Wl,")) && a.split(',').skip(1).any(debug)
    });
    if depends {
        cwd.to_path_buf()
    } else {
        PathBuf::new()
    }
}

/// Environment variables that change what GCC produces (`__DATE__` follows
/// SOURCE_DATE_EPOCH; the others move include and program search paths).
const COMPILER_ENV: &[&str] = &[
    "SOURCE_DATE_EPOCH",
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "COMPILER_PATH",
    "GCC_EXEC_PREFIX",
    "LIBRARY_PATH",
];

/// The values of [`COMPILER_ENV`] that are set, for compile keys.
pub fn compiler_env() -> BTreeMap<String, String> {
    COMPILER_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect()
}

#[derive(Debug)]
struct CompileOutcome {
    source: String,
    from_cache: bool,
    log: String,
}

/// What [`Executor::compile_step`] did, for provenance: the digests of the
/// source, of the headers it read and of the object.
#[derive(Debug)]
struct Compiled {
    source: Digest,
    headers: Vec<(PathBuf, Digest)>,
    object: Option<Digest>,
    outcome: CompileOutcome,
}

/// Compiles started while make still prints the plan (see
/// [`Executor::with_early`]): `jobs` threads, started at the first compile
/// offered, take the queued compile that is expected to cost most, as
/// [`longest_first`] orders them.
pub struct EarlyCompiles<'s, 'e, 'a> {
    shared: &'e EarlyShared<'e, 'a>,
    scope: &'s std::thread::Scope<'s, 'e>,
    started: AtomicBool,
}

/// What the early threads and the build share.
struct EarlyShared<'e, 'a> {
    exec: &'e Executor<'a>,
    queue: Mutex<EarlyQueue>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct EarlyQueue {
    /// (expected cost, index) of the queued entries: the costliest
    /// first, then the one make printed first.
    waiting: std::collections::BinaryHeap<(u64, std::cmp::Reverse<usize>)>,
    /// Each compile taken, with the database's key when `finish` queued it.
    entries: Vec<(Step, Option<ObjectKey>, EarlyState)>,
    /// The entry that writes each object now.
    by_object: HashMap<String, usize>,
    /// No more compiles are taken from make's output: a generator came
    /// after a compile, or one could not run here.
    refused: bool,
    /// Every compile the build needs is queued; the threads stop when the
    /// queue is empty.
    complete: bool,
}

enum EarlyState {
    Queued,
    Running,
    Done(Result<Compiled, BuildError>),
    /// Its result was handed out.
    Taken,
}

impl EarlyQueue {
    /// Queues a compile; returns its entry.
    fn push(&mut self, step: &Step, key: Option<ObjectKey>, cost: u64) -> usize {
        let i = self.entries.len();
        self.by_object.insert(step.output().to_string(), i);
        self.entries.push((step.clone(), key, EarlyState::Queued));
        self.waiting.push((cost, std::cmp::Reverse(i)));
        i
    }
}

impl EarlyCompiles<'_, '_, '_> {
    /// Takes a step as make prints it. Generators run at once, here, while
    /// no compile has been seen: QMK's recipes make the headers every
    /// object includes before the first compile. A compile is queued (the
    /// first starts the threads). Anything else is left to the plan.
    pub fn offer(&self, step: &Step) {
        if self.shared.offer(step) && !self.started.swap(true, Ordering::SeqCst) {
            let shared = self.shared;
            for _ in 0..shared.exec.jobs() {
                self.scope.spawn(move || shared.work());
            }
        }
    }

    /// Whether a compile was taken: else the plan's compiles run as they
    /// do without early compiles, and no thread was started.
    fn started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }
}

impl EarlyShared<'_, '_> {
    /// [`EarlyCompiles::offer`]; true when it queued a compile.
    fn offer(&self, step: &Step) -> bool {
        let mut q = self.queue.lock().unwrap();
        if q.refused || q.complete {
            return false;
        }
        match step {
            Step::Generate { argv, .. } if q.entries.is_empty() => {
                drop(q);
                if !self.generate(argv) {
                    self.queue.lock().unwrap().refused = true;
                }
                false
            }
            Step::Generate { .. } => {
                q.refused = true;
                false
            }
            Step::Stamp { file, holds } => {
                drop(q);
                // Before the compiles it comes before; a failure is the
                // plan's own run's to report.
                let _ = self.exec.stamp(file, holds);
                false
            }
            Step::Compile { object, .. } if !q.by_object.contains_key(object) => {
                q.push(step, None, self.exec.expected_cost(step));
                self.changed.notify_all();
                true
            }
            _ => false,
        }
    }

    /// Runs a generator step in this process, as the plan's own run will
    /// again (through the database, which then finds the file in place).
    /// False when it cannot run here.
    fn generate(&self, argv: &[String]) -> bool {
        let host = self.exec.host.lock().unwrap().clone();
        match host.and_then(|h| h.generate(argv)) {
            Some(Ok(g)) => write_generated(&g.output, &g.contents).is_ok(),
            _ => false,
        }
    }

    /// One of the `jobs` threads: compiles what is queued until the build
    /// has queued all it needs and none is left, or the scope ends.
    fn work(&self) {
        loop {
            let mut q = self.queue.lock().unwrap();
            let i = loop {
                if let Some((_, std::cmp::Reverse(i))) = q.waiting.pop() {
                    break i;
                }
                if q.complete {
                    return;
                }
                q = self.changed.wait(q).unwrap();
            };
            q.entries[i].2 = EarlyState::Running;
            let (step, key) = (q.entries[i].0.clone(), q.entries[i].1);
            drop(q);
            // A panic still ends the entry, so the build waiting for it
            // ends too (the scope then passes the panic on).
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.exec
                    .check_cancel()
                    .and_then(|()| self.exec.compile_step(&step, key.as_ref()))
            }));
            let (done, panic) = match ran {
                Ok(done) => (done, None),
                Err(panic) => {
                    let failed = Err(BuildError::Io {
                        path: step.output().to_string(),
                        message: "the compile's thread panicked".into(),
                    });
                    (failed, Some(panic))
                }
            };
            self.queue.lock().unwrap().entries[i].2 = EarlyState::Done(done);
            self.changed.notify_all();
            if let Some(panic) = panic {
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// The plan's compiles, in its order: those queued already as make
    /// printed them, the others queued now (with the database's keys);
    /// waits until all are done.
    fn finish(
        &self,
        compiles: &[&Step],
        keys: &BTreeMap<String, ObjectKey>,
    ) -> Vec<Result<Compiled, BuildError>> {
        let mut q = self.queue.lock().unwrap();
        let mut wanted = Vec::new();
        for &step in compiles {
            let object = step.output();
            let same = q
                .by_object
                .get(object)
                .copied()
                .filter(|&i| q.entries[i].0 == *step && !wanted.contains(&i));
            let i = match same {
                Some(i) => i,
                None => {
                    // Not taken early. Taken otherwise, or for an earlier
                    // step (neither of which make prints, one recipe a
                    // target): queued once that one has run, so two never
                    // write one file.
                    while let Some(&i) = q.by_object.get(object) {
                        if matches!(q.entries[i].2, EarlyState::Queued | EarlyState::Running) {
                            // The threads may be waiting for what was queued.
                            self.changed.notify_all();
                            q = self.changed.wait(q).unwrap();
                        } else {
                            q.by_object.remove(object);
                        }
                    }
                    let key = keys.get(object).copied();
                    q.push(step, key, self.exec.expected_cost(step))
                }
            };
            wanted.push(i);
        }
        q.complete = true;
        self.changed.notify_all();
        let mut results = Vec::new();
        for i in wanted {
            loop {
                match std::mem::replace(&mut q.entries[i].2, EarlyState::Taken) {
                    EarlyState::Done(r) => {
                        results.push(r);
                        break;
                    }
                    other => {
                        q.entries[i].2 = other;
                        q = self.changed.wait(q).unwrap();
                    }
                }
            }
        }
        results
    }

    /// No more compiles start (the build failed, or needs none).
    fn close(&self) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.complete = true;
        q.waiting.clear();
        self.changed.notify_all();
    }
}

/// What a [`Step::Stamp`] file should hold; `None` for the version of a
/// program that cannot be identified.
pub(crate) fn stamp_bytes(holds: &Stamped) -> Option<Vec<u8>> {
    match holds {
        Stamped::Text(text) => Some(text.as_bytes().to_vec()),
        Stamped::VersionOf(program) => crate::db::tool_version(program),
    }
}

/// Whether a file has an execute bit (linked ELF files do; restored ones must too).
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// `-Wl,-Map=.build/x.map,--cref` → `.build/x.map`.
/// The files outside `tree` a GNU ld map file says the linker loaded
/// (`LOAD path` lines: crt objects, libgcc, libc, libm, linker scripts of
/// `.so` stubs), that still exist (an LTO link's partitions are gone),
/// sorted. Inside the tree, inputs are part of the key already.
fn loaded_outside(map: &str, tree: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = map
        .lines()
        .filter_map(|l| l.strip_prefix("LOAD "))
        .map(|p| PathBuf::from(p.trim()))
        .filter(|p| p.is_absolute() && !p.starts_with(tree) && p.is_file())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A step's input files plus the libraries it loaded (by absolute path).
fn with_libraries(
    files: &[(String, Digest)],
    libraries: &[(PathBuf, Digest)],
) -> Vec<(String, Digest)> {
    let mut all = files.to_vec();
    all.extend(libraries.iter().map(|(p, d)| (p.display().to_string(), *d)));
    all
}

fn map_file(argv: &[String]) -> Option<String> {
    argv.iter().find_map(|a| {
        let rest = a.strip_prefix("-Wl,")?;
        rest.split(',')
            .find_map(|p| p.strip_prefix("-Map=").map(str::to_string))
    })
}

/// A link's argv with QMK's `-flto=auto` turned into `-flto=<slots>`.
/// gcc before 10 reads `auto` as one job and compiles its LTRANS partitions
/// one after another (avr-gcc 5.4: ≈ 0.55 s alone at the end of a planck
/// build); gcc 10 and later start one per core whatever else runs. The
/// partitions are the same either way (their count comes from gcc's
/// partitioning parameters, not from the job count), and so is the
/// firmware; only how many run at once follows the pool's idle slots. The
/// cache key and provenance keep QMK's argv.
fn lto_jobs(argv: &[String], slots: usize) -> Vec<String> {
    argv.iter()
        .map(|a| match a.as_str() {
            "-flto=auto" => format!("-flto={slots}"),
            _ => a.clone(),
        })
        .collect()
}

/// Runs argv in `cwd`; returns (exit code, stdout+stderr as the build log).
fn run(cwd: &Path, argv: &[String], env: &[(String, String)]) -> Result<(i32, String), BuildError> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .output()
        .map_err(|e| BuildError::Spawn {
            program: argv[0].clone(),
            message: e.to_string(),
        })?;
    let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code().unwrap_or(-1), log))
}

/// `steps` with their places, costliest first (ties keep plan order); the
/// cost of each is asked once (it may stat a file). Handed out one at a
/// time to whichever slot is free (`par_bridge`), this is the
/// longest-first schedule: the last compiles are short ones, so the link
/// waits less for the slowest lane.
fn longest_first<T>(steps: Vec<T>, cost: impl Fn(&T) -> u64) -> Vec<(usize, T)> {
    let mut order: Vec<(usize, T)> = steps.into_iter().enumerate().collect();
    order.sort_by_cached_key(|(i, s)| (std::cmp::Reverse(cost(s)), *i));
    order
}

/// The inputs named in a make depfile (`out.o: a.c b.h \` …, plus `-MP`
/// phony targets `b.h:`), in order, without duplicates.
pub fn depfile_inputs(text: &str) -> Vec<String> {
    let joined = text.replace("\\\n", " ");
    let mut deps: Vec<String> = Vec::new();
    for line in joined.lines() {
        let Some((_, rest)) = split_rule(line) else {
            continue;
        };
        for word in split_make_words(rest) {
            if !deps.contains(&word) {
                deps.push(word);
            }
        }
    }
    deps
}

/// Splits `target: deps` at the first unescaped `: ` (targets may contain
/// `\ `-escaped spaces; Windows drive letters are not a concern here).
fn split_rule(line: &str) -> Option<(&str, &str)> {
    let i = line.find(':')?;
    Some((&line[..i], &line[i + 1..]))
}

/// Whitespace-separated words with `\ ` as an escaped space.
fn split_make_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                cur.push(' ');
                chars.next();
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Resolves a program name the way `execvp` would.
pub fn resolve_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then(|| std::fs::canonicalize(&p).unwrap_or(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
}

/// Copies unless the destination already has the same bytes (keeps its mtime).
fn copy_if_changed(src: &Path, dst: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(src)?;
    if std::fs::read(dst).ok().as_deref() == Some(&bytes[..]) {
        return Ok(());
    }
    std::fs::write(dst, bytes)
}

/// How long a step took, for reports.
pub fn millis(d: Duration) -> u128 {
    d.as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan whose step for an object is not the one taken early (make
    /// prints one recipe a target, so only a plan made otherwise could),
    /// or that names a step twice, still ends: each runs after the one
    /// writing the same object, none is lost.
    #[test]
    fn early_compiles_of_the_same_object_run_one_after_another() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("a.c"), "int a;\n").unwrap();
        let cas = LocalCas::open(dir.path().join("cache")).unwrap();
        let exec = Executor::new(&tree, &cas, 2);
        let a = host_compile("a");
        let mut other = a.clone();
        if let Step::Compile { argv, .. } = &mut other {
            argv.insert(1, "-DOTHER".into());
        }
        let report = exec.with_early(|early| {
            early.offer(&a);
            let plan = Plan {
                steps: vec![other.clone(), a.clone(), a.clone()],
                ..Plan::default()
            };
            exec.run_steps(&plan, &BTreeMap::new(), &Log::default(), Some(early))
                .unwrap()
        });
        // `other` compiles; `a` twice: early, then again or from the cache.
        assert_eq!(report.compiled + report.compiled_from_cache, 3);
        assert!(report.compiled >= 2, "{report:?}");
    }

    fn host_compile(name: &str) -> Step {
        Step::Compile {
            source: format!("{name}.c"),
            object: format!("obj/{name}.o"),
            argv: [
                "cc",
                "-c",
                &format!("{name}.c"),
                "-o",
                &format!("obj/{name}.o"),
            ]
            .map(String::from)
            .to_vec(),
            depfile_tmp: None,
            depfile: None,
        }
    }

    /// Compiles offered while make prints are queued and run; a generator
    /// after a compile (whose headers it might write) stops the taking, so
    /// a compile offered after it starts only when the plan runs it. Both
    /// are the plan's compiles in the end, each run once. With none
    /// offered, no thread starts and the plan runs as it would without.
    #[test]
    fn early_compiles_stop_at_a_generator_after_a_compile() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        for name in ["a", "b"] {
            std::fs::write(tree.join(format!("{name}.c")), format!("int {name};\n")).unwrap();
        }
        let cas = LocalCas::open(dir.path().join("cache")).unwrap();
        let exec = Executor::new(&tree, &cas, 1);
        let (a, b) = (host_compile("a"), host_compile("b"));
        let generate = Step::Generate {
            argv: vec!["true".into()],
            output: "gen.h".into(),
        };
        let report = exec.with_early(|early| {
            early.offer(&a);
            early.offer(&generate);
            early.offer(&b);
            {
                let q = early.shared.queue.lock().unwrap();
                assert!(q.refused);
                assert_eq!(q.by_object.keys().collect::<Vec<_>>(), ["obj/a.o"]);
            }
            let plan = Plan {
                steps: vec![a.clone(), b.clone()],
                ..Plan::default()
            };
            exec.run_steps(&plan, &BTreeMap::new(), &Log::default(), Some(early))
                .unwrap()
        });
        assert_eq!((report.compiled, report.compiled_from_cache), (2, 0));
        assert!(tree.join("obj/a.o").is_file() && tree.join("obj/b.o").is_file());
        assert!(!tree.join("gen.h").exists());

        // Nothing offered (a plan from the cache): no thread starts, and
        // the plan's compiles run as usual, here from the cache.
        let plan = Plan {
            steps: vec![a, b],
            ..Plan::default()
        };
        let report = exec.with_early(|early| {
            assert!(!early.started());
            exec.run_steps(&plan, &BTreeMap::new(), &Log::default(), Some(early))
                .unwrap()
        });
        assert_eq!((report.compiled, report.compiled_from_cache), (0, 2));
    }

    #[test]
    fn the_working_folder_is_keyed_only_where_output_depends_on_it() {
        let tree = Path::new("/work/tree");
        let keyed = |args: &[&str]| {
            let argv: Vec<String> = std::iter::once("avr-gcc")
                .chain(args.iter().copied())
                .map(String::from)
                .collect();
            !key_cwd(&argv, tree).as_os_str().is_empty()
        };
        assert!(!keyed(&[
            "-c",
            "-Os",
            "-Iquantum",
            "quantum/led.c",
            "-o",
            "led.o"
        ]));
        assert!(!keyed(&["-g0", "-c", "a.c"]));
        assert!(!keyed(&["-Wl,--gc-sections,-Map=x.map", "a.o"]));
        for flag in [
            "-g",
            "-ggdb3",
            "-gdwarf-4",
            "--coverage",
            "-fprofile-arcs",
            "-ftest-coverage",
            "-ffile-prefix-map=/work/tree=.",
            "-Wa,-g",
            "-Wa,--gdwarf-5",
            "@flags.txt",
        ] {
            assert!(keyed(&["-c", flag, "a.c"]), "{flag}");
        }
        assert_eq!(key_cwd(&["cc".into(), "-g".into()], tree), tree);
    }

    #[test]
    fn longest_first_orders_by_cost_then_plan_order() {
        let asked = std::cell::Cell::new(0);
        let order = longest_first(vec![5u64, 30, 5, 12, 30], |c| {
            asked.set(asked.get() + 1);
            *c
        });
        let places: Vec<usize> = order.iter().map(|(i, _)| *i).collect();
        assert_eq!(places, [1, 4, 3, 0, 2]);
        // once per step, not per comparison
        assert_eq!(asked.get(), 5);
    }

    #[test]
    fn depfile_with_phony_targets() {
        let text = ".build/o/led.o: quantum/led.c quantum/led.h \\\n .build/o/src/info_config.h\nquantum/led.h:\n.build/o/src/info_config.h:\n";
        assert_eq!(
            depfile_inputs(text),
            [
                "quantum/led.c",
                "quantum/led.h",
                ".build/o/src/info_config.h"
            ]
        );
    }

    #[test]
    fn escaped_spaces_in_depfile() {
        assert_eq!(
            depfile_inputs("a.o: my\\ dir/a.c b.h\n"),
            ["my dir/a.c", "b.h"]
        );
    }

    #[test]
    fn loaded_files_outside_the_tree_from_a_map() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        let lib = dir.path().join("lib/libc.a");
        std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(&lib, "!<arch>\n").unwrap();
        std::fs::write(tree.join("main.o"), "").unwrap();
        let map = format!(
            "Archive member included\nLOAD {}\nLOAD {}\nLOAD /tmp/keyfab-gone.ltrans0.o\nLOAD {}\n",
            tree.join("main.o").display(),
            lib.display(),
            lib.display()
        );
        assert_eq!(loaded_outside(&map, &tree), vec![lib]);
    }

    #[test]
    fn map_file_from_linker_flags() {
        let argv: Vec<String> = ["cc", "-Wl,--gc-sections", "-Wl,-Map=.build/x.map,--cref"]
            .map(String::from)
            .to_vec();
        assert_eq!(map_file(&argv).as_deref(), Some(".build/x.map"));
    }
}
