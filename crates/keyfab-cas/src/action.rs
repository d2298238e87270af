//! What the action cache stores for one action, and what a caller hands in
//! to store one.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// One output file of an action, by the name the action gives it (a path
/// relative to the action's working folder, usually).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub name: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub executable: bool,
}

/// The cached result of a successful action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    pub outputs: Vec<OutputFile>,
    pub exit_code: i32,
    /// Blobs holding the captured output, replayed on a hit.
    pub stdout: Digest,
    pub stderr: Digest,
    pub duration_ns: u64,
}

impl ActionResult {
    pub fn output(&self, name: &str) -> Option<&OutputFile> {
        self.outputs.iter().find(|o| o.name == name)
    }

    /// Every blob this result needs, with sizes where known.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut v: Vec<Digest> = self.outputs.iter().map(|o| o.digest).collect();
        v.push(self.stdout);
        v.push(self.stderr);
        v
    }

    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.duration_ns)
    }
}

/// Where an output's bytes come from when storing an action.
#[derive(Clone, Copy, Debug)]
pub enum OutputSource<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// An action that just ran, to be stored.
#[derive(Clone, Debug)]
pub struct NewAction<'a> {
    pub outputs: Vec<NewOutput<'a>>,
    pub stdout: &'a [u8],
    pub stderr: &'a [u8],
    pub exit_code: i32,
    pub duration: Duration,
}

#[derive(Clone, Debug)]
pub struct NewOutput<'a> {
    pub name: String,
    pub source: OutputSource<'a>,
    pub executable: bool,
}

impl<'a> NewOutput<'a> {
    pub fn file(name: impl Into<String>, path: &'a Path) -> NewOutput<'a> {
        NewOutput {
            name: name.into(),
            source: OutputSource::File(path),
            executable: false,
        }
    }
    pub fn bytes(name: impl Into<String>, bytes: &'a [u8]) -> NewOutput<'a> {
        NewOutput {
            name: name.into(),
            source: OutputSource::Bytes(bytes),
            executable: false,
        }
    }
}

impl<'a> NewAction<'a> {
    /// A successful action with no captured output yet.
    pub fn success(outputs: Vec<NewOutput<'a>>) -> NewAction<'a> {
        NewAction {
            outputs,
            stdout: b"",
            stderr: b"",
            exit_code: 0,
            duration: Duration::ZERO,
        }
    }
}
