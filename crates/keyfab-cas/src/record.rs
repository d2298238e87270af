//! Records: the index's rows, also written as blobs so the index can be
//! rebuilt from the blob folder alone. A record blob is the magic line
//! followed by one JSON object.

use crate::action::ActionResult;
use crate::digest::Digest;
use crate::keys::ActionKey;
use crate::manifest::{Manifest, ManifestEntry};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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

/// A manifest entry as an action's record holds it: the manifest's direct
/// key and the headers (the entry's action is the record's own key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    pub direct: Digest,
    pub headers: Vec<(PathBuf, Digest)>,
}

impl EntryRecord {
    /// The manifest it belongs to (its direct key) and the entry, which
    /// leads to `action` (the key of the record that holds it).
    pub fn into_entry(self, action: ActionKey) -> (ActionKey, ManifestEntry) {
        let entry = ManifestEntry {
            headers: self.headers,
            action,
        };
        (ActionKey(self.direct), entry)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Action {
        key: Digest,
        result: ActionResult,
        /// The direct-mode manifest entry that leads to this action, when
        /// one does: manifests are rebuilt from these (and from the
        /// `Manifest` records older caches hold).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entry: Option<EntryRecord>,
    },
    Manifest {
        key: Digest,
        manifest: Manifest,
    },
    /// A provenance row as schema 1 wrote it: the run, the target and the
    /// whole body. Still read (rebuilding an index from old blobs), no
    /// longer written.
    Provenance {
        run: i64,
        run_started_ns: i64,
        run_command: String,
        target: String,
        provenance: Provenance,
    },
    /// A provenance body, stored once per distinct content: its blob's
    /// digest is what rows name.
    ProvenanceBody {
        provenance: Provenance,
    },
    /// A provenance row: a target's record in a run names its body (the
    /// blob of a `ProvenanceBody`, or of a schema-1 `Provenance` record).
    ProvenanceRef {
        run: i64,
        run_started_ns: i64,
        run_command: String,
        target: String,
        body: Digest,
        /// The row's own notes (what is the run's, not the body's).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        notes: Vec<(String, String)>,
    },
}

impl Record {
    /// The body a record carries, if it is a provenance body (or a schema-1
    /// provenance record, which holds its body).
    pub fn provenance_body(&self) -> Option<&Provenance> {
        match self {
            Record::ProvenanceBody { provenance } | Record::Provenance { provenance, .. } => {
                Some(provenance)
            }
            _ => None,
        }
    }
}

/// The JSON of a provenance body, as the index holds it. Fails only for
/// values JSON cannot hold.
pub fn provenance_json(p: &Provenance) -> Result<String, crate::error::CasError> {
    serde_json::to_string(p).map_err(|e| crate::error::CasError::Invalid {
        what: "provenance record (paths must be UTF-8)",
        value: e.to_string(),
    })
}

/// The blob of a `ProvenanceBody` record from the body's JSON
/// ([`provenance_json`]): the same bytes as `encode`, without serialising
/// the body a second time.
pub fn provenance_body_blob(json: &str) -> Vec<u8> {
    const HEAD: &str = r#"{"type":"provenance_body","provenance":"#;
    let mut out = Vec::with_capacity(MAGIC.len() + HEAD.len() + json.len() + 1);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(HEAD.as_bytes());
    out.extend_from_slice(json.as_bytes());
    out.push(b'}');
    out
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
            entry: None,
        };
        let bytes = encode(&r).unwrap();
        assert_eq!(decode(&bytes), Some(r.clone()));
        // without an entry, the record is what keyfab wrote before entries
        assert!(!String::from_utf8_lossy(&bytes).contains("entry"));
        let Record::Action { key, result, .. } = r else {
            unreachable!()
        };
        let with_entry = Record::Action {
            key,
            result,
            entry: Some(EntryRecord {
                direct: Digest::of(b"d"),
                headers: vec![("a.h".into(), Digest::of(b"a"))],
            }),
        };
        assert_eq!(decode(&encode(&with_entry).unwrap()), Some(with_entry));
        assert_eq!(decode(b"keyfab-record 1\n{not json"), None);
        assert_eq!(decode(b"\x7fELF"), None);
    }

    #[test]
    fn provenance_body_blob_is_the_encoded_record() {
        let p = Provenance {
            inputs: vec![("a.c".into(), Digest::of(b"a"))],
            toolchains: vec![("cc".into(), Digest::of(b"cc"))],
            outputs: vec![("a.o".into(), Digest::of(b"o"))],
            notes: vec![("step".into(), r#"{"kind":"compile"}"#.into())],
        };
        let r = Record::ProvenanceBody {
            provenance: p.clone(),
        };
        let blob = provenance_body_blob(&provenance_json(&p).unwrap());
        assert_eq!(blob, encode(&r).unwrap());
        assert_eq!(decode(&blob), Some(r));
    }
}
