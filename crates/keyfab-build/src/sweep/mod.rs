//! `keyfab sweep`: the whole keyboard matrix (or a filtered, sharded part of
//! it) built on one job pool, with a report.
//!
//! - [`filter`]: `qmk find`'s filter expressions over merged info (pure).
//! - [`select`]: which targets (every keyboard with the keymap, or the named ones).
//! - [`shard`]: equal shards cut by the targets' names alone, the same on every runner (pure).
//! - [`run`]: builds the targets on one executor; failures isolated; cancellable.
//! - [`report`]: JSON, JUnit XML and HTML, and the comparison with a previous sweep (pure rendering).
//!
//! Architecture invariant: nothing here prints; progress goes to a
//! [`run::Sink`], and only [`report::write`] and the builds touch the disk.

pub mod filter;
pub mod report;
pub mod run;
pub mod select;
pub mod shard;
