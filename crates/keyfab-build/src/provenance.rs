//! Provenance of one target's build: what the executor read, ran and wrote,
//! collected while it runs and turned into a [`keyfab_cas::Provenance`]
//! record (for `keyfab audit` and `keyfab explain`).
//!
//! Naming of the record's `inputs` (all `(name, digest)`):
//! - a tree-relative path: a file (source, header from a depfile, makefile,
//!   keyboard/keymap file, generated file under `.build/`, object read by
//!   the link);
//! - `argv:<output>`: the command line of the step that writes `<output>`;
//! - `env:<NAME>`: an environment variable that changes what the compiler or
//!   the generators produce (its value is also a note `env:<NAME>`);
//! - `make:<VAR>`: a `-e VAR=VALUE` of the build (value in the note too).
//!
//! `notes` hold the facts that are not digests: `tree` (absolute path),
//! `tree_revision`, `reproducible`, `env:*`/`make:*` values, one `step`
//! note per step (JSON of [`StepRecord`] without `cached`: its kind, output
//! and the names of its inputs; generators and compiles sorted by output,
//! so the order does not depend on which finished first), and `ran`: which
//! steps ran rather than came from the cache (see [`ran_note`]). The record
//! of an up-to-date build has the note `up_to_date` = `yes` and the steps
//! of the build it reproduced (none ran). `tree_revision`, `up_to_date` and
//! `ran` are the run's ([`ROW_NOTES`], with `tree`, the folder): the cache keeps them in the
//! record's row, apart from its body, so runs that read and wrote the same
//! bytes share one body whatever came from the cache. (Records written
//! before `ran` existed have a `cached` flag in each step note instead.)
//!
//! Records of failed builds carry the note `status` = `failed`, the
//! `stage` (`plan` or `build`) and the `error`, with the inputs known when
//! the build stopped (the step that failed is not among the steps); records
//! of successful builds carry `status` = `ok` (older records have no
//! `status`: they are all successful builds).
//!
//! Architecture invariant: pure bookkeeping; no IO here.

use keyfab_cas::{Digest, Provenance};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// One step of a build as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// `compile`, `link`, `convert`, `archive`, `generate`.
    pub kind: String,
    pub output: String,
    /// Names of its inputs (keys of the record's `inputs`).
    pub inputs: Vec<String>,
    /// Its output came from the cache (it did not run). Not in the step's
    /// note: the run's `ran` note says it.
    pub cached: bool,
}

/// A `step` note as the body holds it.
#[derive(Serialize, Deserialize)]
struct StepNote {
    kind: String,
    output: String,
    inputs: Vec<String>,
    /// Only in records written before the `ran` note existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cached: Option<bool>,
}

/// What the executor saw while building one target.
#[derive(Debug, Default, Clone)]
pub struct Collector {
    pub inputs: BTreeMap<String, Digest>,
    pub toolchains: BTreeMap<String, Digest>,
    pub outputs: BTreeMap<String, Digest>,
    pub steps: Vec<StepRecord>,
    /// The build was up to date: it read, ran and wrote what this earlier
    /// record says (then the fields above are empty; see
    /// [`Collector::from_previous`]).
    pub previous: Option<Box<Previous>>,
}

/// An earlier record that a build reproduces (an up-to-date build).
#[derive(Debug, Clone)]
pub struct Previous {
    /// Its body's digest in the cache.
    pub body: Digest,
    pub provenance: Provenance,
    /// Its steps (parsed from its `step` notes).
    pub steps: Vec<StepRecord>,
}

impl Previous {
    /// This build's record body would be the earlier one byte for byte:
    /// its notes before the steps are `notes` (the body's part of what
    /// `target::provenance_record` notes) and every step note was read.
    /// Inputs, toolchains, outputs and steps are the same by the up-to-date
    /// check.
    pub fn same_record(&self, notes: &[(String, String)]) -> bool {
        let p = &self.provenance;
        p.notes.len() == notes.len() + self.steps.len()
            && p.notes[..notes.len()] == *notes
            && p.notes[notes.len()..].iter().all(|(k, _)| k == "step")
    }
}

/// Notes that are a run's, not a build's: kept in the record's row, not in
/// its body, so builds that differ only in them share one body. The tree's
/// folder differs between checkouts (CI runners) that read and write the
/// same bytes; its revision changes with every commit; `up_to_date` (`yes`) marks a build
/// that reproduced the record it names: nothing ran, whatever the body's
/// steps say.
/// `ran` says which of the body's steps ran this time ([`ran_note`]).
pub const ROW_NOTES: [&str; 4] = ["tree", "tree_revision", "up_to_date", "ran"];

/// A record's notes: (name, value), in order.
pub type Notes = Vec<(String, String)>;

/// Splits notes into the body's and the row's ([`ROW_NOTES`]), each in order.
pub fn split_notes(notes: Notes) -> (Notes, Notes) {
    notes
        .into_iter()
        .partition(|(k, _)| !ROW_NOTES.contains(&k.as_str()))
}

/// One target's [`Collector`] while its build runs: the steps of one plan
/// run in parallel and each adds what it read and wrote. Every target of a
/// run has its own, so targets built side by side (a sweep) never mix.
#[derive(Debug, Default)]
pub struct Log(Mutex<Collector>);

impl Log {
    /// Adds to the collector.
    pub fn with<R>(&self, f: impl FnOnce(&mut Collector) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// What was collected.
    pub fn into_collector(self) -> Collector {
        self.0.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

/// The digest that stands for a command line (words NUL-separated).
pub fn argv_digest(argv: &[String]) -> Digest {
    Digest::of(argv.join("\0").as_bytes())
}

impl Collector {
    /// What an up-to-date build read, ran and wrote: the earlier record's
    /// (its steps, none of which ran this time).
    pub fn from_previous(previous: Previous) -> Collector {
        let p = previous.provenance;
        Collector {
            inputs: p.inputs.into_iter().collect(),
            toolchains: p.toolchains.into_iter().collect(),
            outputs: p.outputs.into_iter().collect(),
            steps: previous
                .steps
                .into_iter()
                .map(|s| StepRecord { cached: true, ..s })
                .collect(),
            previous: None,
        }
    }

    pub fn input(&mut self, name: impl Into<String>, digest: Digest) {
        self.inputs.insert(name.into(), digest);
    }

    pub fn tool(&mut self, name: &str, digest: Digest) {
        self.toolchains.insert(name.to_string(), digest);
    }

    /// A step: its argv (recorded as `argv:<output>`), its file inputs and
    /// its output digest.
    pub fn step(
        &mut self,
        kind: &str,
        argv: &[String],
        files: &[(String, Digest)],
        output: &str,
        output_digest: Option<Digest>,
        cached: bool,
    ) {
        let argv_name = format!("argv:{output}");
        self.input(argv_name.clone(), argv_digest(argv));
        let mut inputs = vec![argv_name];
        for (name, d) in files {
            self.input(name.clone(), *d);
            if !inputs.contains(name) {
                inputs.push(name.clone());
            }
        }
        if let Some(d) = output_digest {
            self.outputs.insert(output.to_string(), d);
        }
        self.steps.retain(|s| s.output != output);
        self.steps.push(StepRecord {
            kind: kind.to_string(),
            output: output.to_string(),
            inputs,
            cached,
        });
    }

    /// The record: inputs, toolchains and outputs sorted by name; `notes`
    /// first, then `ran` (a row note: which steps ran), then one `step` note
    /// per step: generators, then compiles (each group sorted by output:
    /// they run in parallel), then the rest in the order they ran (archive,
    /// link, conversions run one after another, in the plan's order).
    pub fn into_provenance(mut self, notes: Vec<(String, String)>) -> Provenance {
        let mut notes = notes;
        self.steps.sort_by(|a, b| step_order(a).cmp(&step_order(b)));
        notes.push(("ran".into(), ran_note(&self.steps)));
        for s in &self.steps {
            let note = StepNote {
                kind: s.kind.clone(),
                output: s.output.clone(),
                inputs: s.inputs.clone(),
                cached: None,
            };
            notes.push((
                "step".into(),
                serde_json::to_string(&note).expect("a step record is JSON"),
            ));
        }
        Provenance {
            inputs: self.inputs.into_iter().collect(),
            toolchains: self.toolchains.into_iter().collect(),
            outputs: self.outputs.into_iter().collect(),
            notes,
        }
    }
}

/// Where a step goes among a record's `step` notes: generators first, then
/// compiles, each sorted by output; the rest keep the order they ran in.
fn step_order(s: &StepRecord) -> (u8, &str) {
    match s.kind.as_str() {
        "generate" => (0, &s.output),
        "compile" => (1, &s.output),
        _ => (2, ""),
    }
}

/// The `ran` note of steps in record order: the positions (from 0) of the
/// steps that ran, as comma-separated ranges (`0-2,5`; empty when none ran).
pub fn ran_note(steps: &[StepRecord]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < steps.len() {
        if steps[i].cached {
            i += 1;
            continue;
        }
        let start = i;
        while i + 1 < steps.len() && !steps[i + 1].cached {
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == i {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{i}"));
        }
        i += 1;
    }
    out
}

/// The positions a `ran` note names; None when it is not one.
fn parse_ran(note: &str, steps: usize) -> Option<Vec<bool>> {
    let mut ran = vec![false; steps];
    for part in note.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
        if a > b || b >= steps {
            return None;
        }
        ran[a..=b].iter_mut().for_each(|r| *r = true);
    }
    Some(ran)
}

/// The steps of a record (its `step` notes), with whether each came from
/// the cache: in the record of an up-to-date build (note `up_to_date`)
/// every step did; else the `ran` note names those that ran. A record
/// without a `ran` note (written before it existed) says it in each step
/// note (`cached`); a step that says nothing counts as run. A `ran` note
/// that does not fit the steps is ignored like a missing one.
pub fn steps(p: &Provenance) -> Vec<StepRecord> {
    let up_to_date = note(p, "up_to_date") == Some("yes");
    // Positions count every step note, read or not.
    let notes: Vec<Option<StepNote>> = p
        .notes
        .iter()
        .filter(|(k, _)| k == "step")
        .map(|(_, v)| serde_json::from_str(v).ok())
        .collect();
    let ran = note(p, "ran").and_then(|r| parse_ran(r, notes.len()));
    notes
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i, s?)))
        .map(|(i, s)| StepRecord {
            cached: up_to_date
                || match &ran {
                    Some(ran) => !ran[i],
                    None => s.cached.unwrap_or(false),
                },
            kind: s.kind,
            output: s.output,
            inputs: s.inputs,
        })
        .collect()
}

/// The first note called `name`.
pub fn note<'a>(p: &'a Provenance, name: &str) -> Option<&'a str> {
    p.notes
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether a record is of a successful build (records without a `status`
/// note are).
pub fn is_ok(p: &Provenance) -> bool {
    note(p, "status").is_none_or(|s| s == "ok")
}

/// A file the build generated (under `.build/`), as opposed to a tree file.
pub fn is_generated(name: &str) -> bool {
    name.starts_with(".build/")
}

/// What kind of input a name is: `file`, `generated`, `argv`, `env`, `make`.
pub fn input_kind(name: &str) -> &'static str {
    if name.starts_with("argv:") {
        "argv"
    } else if name.starts_with("env:") {
        "env"
    } else if name.starts_with("make:") {
        "make"
    } else if is_generated(name) {
        "generated"
    } else {
        "file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_through_notes() {
        let mut c = Collector::default();
        let d = Digest::of(b"x");
        c.step(
            "compile",
            &["cc".into(), "-c".into()],
            &[("a.c".into(), d), ("a.h".into(), d)],
            "a.o",
            Some(d),
            false,
        );
        c.tool("cc", d);
        let p = c.into_provenance(vec![("tree".into(), "/t".into())]);
        assert_eq!(note(&p, "tree"), Some("/t"));
        let s = steps(&p);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].inputs, ["argv:a.o", "a.c", "a.h"]);
        assert_eq!(p.outputs, vec![("a.o".to_string(), d)]);
        assert_eq!(p.inputs.len(), 3);
        assert_eq!(input_kind("argv:a.o"), "argv");
        assert_eq!(input_kind(".build/obj_x/src/version.h"), "generated");
        assert_eq!(input_kind("quantum/main.c"), "file");
    }

    #[test]
    fn run_notes_and_up_to_date_records() {
        let n = |k: &str, v: &str| (k.to_string(), v.to_string());
        let (body, row) = split_notes(vec![
            n("tree", "/t"),
            n("tree_revision", "abc"),
            n("status", "ok"),
            n("up_to_date", "yes"),
        ]);
        assert_eq!(body, [n("status", "ok")]);
        assert_eq!(
            row,
            [
                n("tree", "/t"),
                n("tree_revision", "abc"),
                n("up_to_date", "yes")
            ]
        );

        let mut c = Collector::default();
        let d = Digest::of(b"x");
        c.step("compile", &["cc".into()], &[], "a.o", Some(d), false);
        let p = c.into_provenance(vec![n("status", "ok")]);
        assert!(!steps(&p)[0].cached);
        let (body, row) = split_notes(p.notes.clone());
        assert_eq!(row, [n("ran", "0")]);
        let mut p = Provenance { notes: body, ..p };
        let previous = Previous {
            body: d,
            steps: steps(&p),
            provenance: p.clone(),
        };
        assert!(previous.same_record(&[n("status", "ok")]));
        assert!(!previous.same_record(&[n("status", "ok"), n("reproducible", "yes")]));
        // The row of an up-to-date build says no step ran.
        p.notes.insert(0, n("up_to_date", "yes"));
        assert!(steps(&p)[0].cached);
    }

    fn collector(cached: &[(&str, &str, bool)]) -> Collector {
        let mut c = Collector::default();
        let d = Digest::of(b"x");
        for (kind, out, cached) in cached {
            c.step(
                kind,
                &["t".into(), out.to_string()],
                &[],
                out,
                Some(d),
                *cached,
            );
        }
        c
    }

    /// Two builds that read and wrote the same bytes have the same body,
    /// whichever steps came from the cache and whatever order parallel
    /// steps finished in; only the row's `ran` note differs.
    #[test]
    fn what_came_from_the_cache_is_the_rows() {
        let cold = collector(&[
            ("generate", "g.h", false),
            ("compile", "b.o", false),
            ("compile", "a.o", false),
            ("compile", "c.o", false),
            ("link", "x.elf", false),
            ("convert", "x.hex", false),
        ])
        .into_provenance(vec![]);
        let warm = collector(&[
            ("generate", "g.h", false),
            ("compile", "c.o", true),
            ("compile", "a.o", true),
            ("compile", "b.o", false),
            ("link", "x.elf", true),
            ("convert", "x.hex", true),
        ])
        .into_provenance(vec![]);
        let (cold_body, cold_row) = split_notes(cold.notes.clone());
        let (warm_body, warm_row) = split_notes(warm.notes.clone());
        assert_eq!(cold_body, warm_body);
        let n = |v: &str| vec![("ran".to_string(), v.to_string())];
        assert_eq!(cold_row, n("0-5"));
        assert_eq!(warm_row, n("0,2"));
        assert!(!cold_body.iter().any(|(_, v)| v.contains("cached")));
        let order: Vec<(String, bool)> = steps(&warm)
            .into_iter()
            .map(|s| (s.output, s.cached))
            .collect();
        let o = |s: &str, c| (s.to_string(), c);
        assert_eq!(
            order,
            [
                o("g.h", false),
                o("a.o", true),
                o("b.o", false),
                o("c.o", true),
                o("x.elf", true),
                o("x.hex", true)
            ]
        );
        assert!(steps(&cold).iter().all(|s| !s.cached));
        // Nothing ran: an empty note.
        let none = collector(&[("compile", "a.o", true), ("link", "x.elf", true)]);
        assert_eq!(ran_note(&none.steps), "");
        // Notes that are not ranges of the steps are ignored.
        for bad in ["7", "1-0", "x", "0-", "-1"] {
            let mut p = warm.clone();
            p.notes.retain(|(k, _)| k != "ran");
            p.notes.insert(0, ("ran".into(), bad.into()));
            assert!(steps(&p).iter().all(|s| !s.cached), "{bad}");
        }
    }

    /// Records written before the `ran` note carry `cached` in each step.
    #[test]
    fn older_step_notes_still_read() {
        let step = |out: &str, cached: bool| {
            (
                "step".to_string(),
                format!(
                    r#"{{"kind":"compile","output":"{out}","inputs":["argv:{out}"],"cached":{cached}}}"#
                ),
            )
        };
        let mut p = Provenance {
            notes: vec![
                ("status".into(), "ok".into()),
                step("a.o", true),
                step("b.o", false),
            ],
            ..Provenance::default()
        };
        let cached: Vec<bool> = steps(&p).iter().map(|s| s.cached).collect();
        assert_eq!(cached, [true, false]);
        assert_eq!(steps(&p)[1].inputs, ["argv:b.o"]);
        // An up-to-date row naming an old body: nothing ran.
        p.notes.insert(0, ("up_to_date".into(), "yes".into()));
        assert!(steps(&p).iter().all(|s| s.cached));
    }
}
