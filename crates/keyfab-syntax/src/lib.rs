//! Parsers for the file formats a QMK tree is written in.
//!
//! Everything here is a pure function of bytes: callers do the IO and pass the
//! path along only so that diagnostics can name it.
//!
//! Architecture invariant: this crate does no IO and knows nothing about
//! keyboards; it only turns text into values with file:line diagnostics.

mod config_h;
mod json;
mod rules_mk;

pub use config_h::{parse_config_h, ConfigH, ConfigValue};
pub use json::{parse_json, parse_json_member_fields, JsonError};
pub use rules_mk::{parse_rules_mk, RulesMk};

/// A problem found while parsing, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: String,
    /// 1-based line, 0 when the problem has no single line.
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.path, self.line, self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}
