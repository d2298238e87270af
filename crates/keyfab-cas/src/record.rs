//! Records: the index's rows, also written as blobs so the index can be
//! rebuilt from the blob folder alone. A record blob is the magic line
//! followed by one JSON object.

use crate::action::ActionResult;
use crate::digest::Digest;
use crate::manifest::Manifest;
use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8] = b"keyfab-record 1\n";

/// What a build recorded about one target in one run: enough for audit
/// ("prove it is the same") and explain ("why was it rebuilt").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// Input files (paths as the build names them) and their digests.
    pub inputs: Vec<(String, Digest)>,
    /// Toolchain name → `ToolIdentity::digest()`.
    pub toolchains: Vec<(String, Digest)>,
    /// Output files and their digests.
    pub outputs: Vec<(String, Digest)>,
    /// Free-form facts (status, sizes, …).
    #[serde(default)]
    pub notes: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Action {
        key: Digest,
        result: ActionResult,
    },
    Manifest {
        key: Digest,
        manifest: Manifest,
    },
    Provenance {
        run: i64,
        run_started_ns: i64,
        run_command: String,
        target: String,
        provenance: Provenance,
    },
}

/// Fails only for values JSON cannot hold (a header path that is not
/// UTF-8).
pub fn encode(r: &Record) -> Result<Vec<u8>, crate::error::CasError> {
    let mut out = MAGIC.to_vec();
    serde_json::to_writer(&mut out, r).map_err(|e| crate::error::CasError::Invalid {
        what: "cache record (paths must be UTF-8)",
        value: e.to_string(),
    })?;
    Ok(out)
}

/// None for a blob that is not a record (most blobs are not).
pub fn decode(bytes: &[u8]) -> Option<Record> {
    let body = bytes.strip_prefix(MAGIC)?;
    serde_json::from_slice(body).ok()
}

pub fn is_record(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let r = Record::Action {
            key: Digest::of(b"k"),
            result: ActionResult {
                outputs: vec![],
                exit_code: 0,
                stdout: Digest::empty(),
                stderr: Digest::empty(),
                duration_ns: 5,
            },
        };
        assert_eq!(decode(&encode(&r).unwrap()), Some(r));
        assert_eq!(decode(b"keyfab-record 1\n{not json"), None);
        assert_eq!(decode(b"\x7fELF"), None);
    }
}
