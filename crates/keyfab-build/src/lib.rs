//! Build planning and execution.
//!
//! The plan of a target comes from the tree's own makefiles, the way QMK's
//! compile-database code gets it: make's dry run of
//! `builddefs/build_keyboard.mk`, its recipes parsed into steps
//! ([`plan`]). The executor runs those steps itself ([`exec`]). The salsa
//! database ([`db`]) decides what is stale: whether a plan still holds, and
//! each object's key.
//!
//! Architecture invariant: parsing a plan is a pure function of make's
//! output; only [`plan::dry_run`] and the executor touch processes.

pub mod db;
pub mod exec;
pub mod generated;
pub mod info_db;
pub mod ldscript;
pub mod plan;
pub mod plan_cache;
mod plan_host;
pub mod probe;
pub mod provenance;
pub mod sweep;
pub mod target;
pub mod watch;
