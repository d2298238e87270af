//! Running a sweep: every target through [`crate::target::build_target`] on
//! one executor, so the targets and their objects share one pool of `jobs`
//! threads (no oversubscription; while one target waits for make or a link,
//! the pool compiles another's objects). A failing target is recorded and
//! the sweep goes on; after cancellation no new step starts and the targets
//! not yet built are reported as skipped.
//!
//! Each target collects its own provenance while it builds (a
//! [`crate::provenance::Log`] of its own, so targets built side by side never
//! mix) and, given a [`Recording`], stores it as it finishes, exactly as
//! `keyfab build` does: successful and failed builds, not interrupted ones.
//!
//! The engine never prints: it reports into a [`Sink`].

use crate::exec::{plain_text, Executor};
use crate::provenance::Log;
use crate::target::{self, Options, Recording, Target};
use keyfab_cas::LocalCas;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::time::Instant;

/// How a target ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    /// Not built: the sweep was interrupted first.
    Skipped,
}

/// One warning: the file or step, and what the compiler said.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Warning {
    pub file: String,
    pub log: String,
}

/// What happened to one target: a row of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetResult {
    pub target: String,
    pub keyboard: String,
    pub keymap: String,
    pub status: Status,
    /// Where it failed: `plan` or `build`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub time_ms: u64,
    pub plan_from_cache: bool,
    /// Objects compiled, and taken from the cache.
    pub compiled: usize,
    pub cached: usize,
    pub link_from_cache: bool,
    #[serde(default)]
    pub firmware: Option<String>,
    /// Firmware bytes as QMK counts them, and the MCU's limit.
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub max_size: Option<u64>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub warnings: Vec<Warning>,
    #[serde(default)]
    pub error: Option<String>,
    /// Why its provenance could not be recorded (the build itself is not
    /// affected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance_error: Option<String>,
}

impl TargetResult {
    fn new(t: &Target, status: Status) -> TargetResult {
        TargetResult {
            target: t.name(),
            keyboard: t.keyboard.clone(),
            keymap: t.keymap.clone(),
            status,
            stage: None,
            time_ms: 0,
            plan_from_cache: false,
            compiled: 0,
            cached: 0,
            link_from_cache: false,
            firmware: None,
            size: None,
            max_size: None,
            sha256: None,
            warnings: vec![],
            error: None,
            provenance_error: None,
        }
    }
}

/// Where a sweep reports progress. Called from the pool's threads.
pub trait Sink: Sync {
    fn started(&self, _target: &Target) {}
    fn finished(&self, result: &TargetResult);
}

/// A sink that drops everything.
pub struct NoSink;
impl Sink for NoSink {
    fn finished(&self, _: &TargetResult) {}
}

/// Builds `targets` on `exec`'s pool; results in the order of `targets`.
/// Stops starting targets once `exec`'s cancel flag is set. With `record`,
/// each target's provenance is stored in its run as the target finishes.
pub fn run(
    tree: &keyfab_tree::Tree,
    cas: &LocalCas,
    exec: &Executor<'_>,
    targets: &[Target],
    opts: &Options,
    record: Option<&Recording>,
    sink: &dyn Sink,
) -> Vec<TargetResult> {
    exec.install(|| {
        targets
            .par_iter()
            .with_max_len(1)
            .map(|t| {
                if exec.cancelled() {
                    let r = TargetResult::new(t, Status::Skipped);
                    sink.finished(&r);
                    return r;
                }
                sink.started(t);
                let r = build_one(tree, cas, exec, t, opts, record);
                sink.finished(&r);
                r
            })
            .collect()
    })
}

fn build_one(
    tree: &keyfab_tree::Tree,
    cas: &LocalCas,
    exec: &Executor<'_>,
    t: &Target,
    opts: &Options,
    record: Option<&Recording>,
) -> TargetResult {
    let started = Instant::now();
    let mut r = TargetResult::new(t, Status::Ok);
    let log = Log::default();
    let built = target::build_target(tree, cas, exec, t, opts, &log);
    let interrupted = built
        .as_ref()
        .is_err_and(|e| e.is_cancelled() || exec.cancelled());
    if let Some(rec) = record.filter(|_| !interrupted) {
        let outcome = built.as_ref().map(drop);
        if let Err(e) = target::record(tree, cas, rec, &t.name(), log, opts, outcome) {
            r.provenance_error = Some(e.to_string());
        }
    }
    match built {
        Ok((report, plan)) => {
            r.plan_from_cache = report.plan_from_cache;
            r.compiled = report.build.compiled;
            r.cached = report.build.compiled_from_cache;
            r.link_from_cache = report.build.linked_from_cache;
            r.size = report.size;
            r.max_size = report.max_size;
            // The firmware QMK delivers: the one copied to the tree's root
            // (its FIRMWARE_FORMAT: the .bin of a LUFA mass-storage board,
            // whose .hex comes first), else the first made.
            let copied = plan.steps.iter().find_map(|s| match s {
                crate::plan::Step::Copy { from, .. } => Some(from),
                _ => None,
            });
            r.firmware = copied.or(report.firmware.first()).cloned();
            r.sha256 = r
                .firmware
                .as_ref()
                .and_then(|f| std::fs::read(tree.root().join(f)).ok())
                .map(|bytes| hex(&Sha256::digest(&bytes)));
            r.warnings = report
                .build
                .warnings
                .into_iter()
                .map(|(file, log)| Warning {
                    file,
                    log: plain_text(&log),
                })
                .collect();
        }
        Err(e) => {
            r.status = if interrupted {
                Status::Skipped
            } else {
                Status::Failed
            };
            r.stage = Some(e.stage().to_string());
            r.error = Some(plain_text(&e.cause()));
        }
    }
    r.time_ms = started.elapsed().as_millis() as u64;
    r
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
