//! keyfab's content-addressed store: blobs named by their blake3 digest in a
//! sharded folder, and a SQLite index holding the action cache, direct-mode
//! manifests, the stat cache, run records and per-target provenance.
//!
//! It knows nothing of keyboards. The on-disk format is documented in
//! `cache/README.md` at the top of the repository.
//!
//! Architecture invariants:
//! - This is the only crate that names rusqlite.
//! - Blobs are the source of truth; the index can be rebuilt from them
//!   (`LocalCas::rebuild_index`), except the stat cache, which is a hint.
//! - A missing or corrupt blob is a miss, never a wrong result or a panic.
//! - A failed action is never cached.
//! - Nothing is published before all its bytes are on disk: blobs by rename
//!   of a complete temp file, entries by one index transaction after that.

pub mod action;
pub mod blobs;
pub mod digest;
pub mod error;
mod fsutil;
pub mod index;
pub mod keys;
pub mod layout;
pub mod local;
pub mod maintenance;
pub mod manifest;
pub mod record;
mod schema;
pub mod size;
pub mod statcache;
pub mod storage;

pub use action::{ActionResult, NewAction, NewOutput, OutputFile, OutputSource};
pub use digest::{hash_file, Digest};
pub use error::{CasError, Result};
pub use index::{Counts, ProvenanceRow, RunInfo};
pub use keys::{
    ActionKey, CommandKey, CompileKey, DirectKey, GenerateKey, KeyHasher, ToolIdentity,
};
pub use layout::cache_dir;
pub use local::{LocalCas, OpenOptions, RunId};
pub use maintenance::{ClearReport, GcReport, RepairReport, Stats, VerifyReport};
pub use manifest::{Manifest, ManifestEntry};
pub use record::Provenance;
pub use size::{format_size, parse_size};
pub use statcache::{FileStat, RunClock};
pub use storage::{MultiLevel, ReadOnly, Storage};
