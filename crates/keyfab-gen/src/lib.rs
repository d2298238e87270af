//! The files QMK's build generates through `$(QMK_BIN)`, as pure functions:
//! merged info (or a keymap.json) in, the exact bytes QMK's Python writes out.
//!
//! Every generator returns a [`Generated`]: the lines QMK's `dump_lines`
//! would join, plus the messages QMK would log on the way (errors that do
//! not stop it, such as a layout with out-of-range matrix positions).
//!
//! Architecture invariant: this crate does no IO, reads no clock and no
//! environment, runs no process. The copyright year, the build date and the
//! git versions are arguments; the command-line layer finds them.

mod community;
mod config_h;
mod keyboard_c;
mod keyboard_h;
mod keymap;
mod make_deps;
mod rules_mk;
mod version_h;

pub use community::{
    community_config_h, community_modules_c, community_modules_h, community_rules_mk,
    include_per_module, modules_of, split_transaction_id_inc, ModuleApi, ModuleApis, ModuleInfo,
    PerModuleInclude,
};
pub use config_h::config_h;
pub use keyboard_c::keyboard_c;
pub use keyboard_h::keyboard_h;
pub use keymap::{keymap_c, keymap_h};
pub use make_deps::make_dependencies;
pub use rules_mk::rules_mk;
pub use version_h::{triplet_to_bcd, version_h, VersionInfo};

/// One row of a mapping table (`data/mappings/info_config.hjson` or
/// `info_rules.hjson`) as the generators read it back: the `config.h`/
/// `rules.mk` name, the dotted info key, the `value_type` as written
/// (`raw` when absent) and `to_c`. The CLI builds these from
/// `keyfab_info::mapping::Mapping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapEntry<'a> {
    pub key: &'a str,
    pub info_key: &'a str,
    pub value_type: &'a str,
    pub to_c: bool,
}

/// A generated file: its lines (joined with `\n`, plus a final `\n`, as
/// QMK's `dump_lines` does) and what QMK would have logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generated {
    pub lines: Vec<String>,
    /// Collapse runs of blank lines (`dump_lines(remove_repeated_newlines=True)`).
    pub squash_blank_lines: bool,
    /// Messages QMK logs at error level without failing.
    pub errors: Vec<String>,
}

impl Generated {
    fn new(lines: Vec<String>) -> Generated {
        Generated {
            lines,
            ..Generated::default()
        }
    }

    /// The file's contents, byte for byte as QMK writes them.
    pub fn contents(&self) -> String {
        let mut out = self.lines.join("\n");
        out.push('\n');
        if self.squash_blank_lines {
            while out.contains("\n\n\n") {
                out = out.replace("\n\n\n", "\n\n");
            }
        }
        out
    }

    /// What QMK prints when there is no output file (`print(generated)`).
    pub fn stdout(&self) -> String {
        let mut out = self.contents();
        out.push('\n');
        out
    }
}

/// A generator could not run: QMK would have stopped with a traceback or an
/// error. The message says what in the input is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenError(pub String);

impl std::fmt::Display for GenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GenError {}

pub type Result<T> = std::result::Result<T, GenError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(GenError(msg.into()))
}

/// `GPL2_HEADER_C_LIKE`: the copyright line carries the year QMK's
/// `date.today()` gives (local time) when the generator runs.
pub fn gpl2_header_c(year: i32) -> String {
    format!("// Copyright {year} QMK\n// SPDX-License-Identifier: GPL-2.0-or-later\n")
}

/// `GPL2_HEADER_SH_LIKE`.
pub fn gpl2_header_sh(year: i32) -> String {
    format!("# Copyright {year} QMK\n# SPDX-License-Identifier: GPL-2.0-or-later\n")
}

/// `GENERATED_HEADER_C_LIKE`: the "This file is generated" banner.
pub const GENERATED_HEADER_C: &str = include_str!("generated_header_c.txt");
/// `GENERATED_HEADER_SH_LIKE`.
pub const GENERATED_HEADER_SH: &str = include_str!("generated_header_sh.txt");

fn c_headers(year: i32) -> Vec<String> {
    vec![gpl2_header_c(year), GENERATED_HEADER_C.to_string()]
}

fn sh_headers(year: i32) -> Vec<String> {
    vec![gpl2_header_sh(year), GENERATED_HEADER_SH.to_string()]
}

/// QMK's `COL_LETTERS`, typo included (`…ghijilmn…`).
pub const COL_LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijilmnopqrstuvwxyz";
/// QMK's `ROW_LETTERS`.
pub const ROW_LETTERS: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop";

/// Python's `str.upper()` for the identifiers QMK upper-cases.
fn upper(s: &str) -> String {
    s.to_uppercase()
}

/// The last component of a `/`-separated path (`Path(x).name`).
fn path_name(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    t.rsplit('/').next().unwrap_or(t)
}

// Python's formatting and dotted access, shared with keyfab-info.
use keyfab_info::dotty::get as dotty_get;
use keyfab_info::py::{str_of as py_str, truthy};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_joins_and_squashes() {
        let mut g = Generated::new(vec!["a".into(), "".into(), "".into(), "b".into()]);
        assert_eq!(g.contents(), "a\n\n\nb\n");
        assert_eq!(g.stdout(), "a\n\n\nb\n\n");
        g.squash_blank_lines = true;
        assert_eq!(g.contents(), "a\n\nb\n");
    }

    #[test]
    fn headers_carry_the_year() {
        assert!(gpl2_header_c(2031).starts_with("// Copyright 2031 QMK\n"));
        assert!(gpl2_header_sh(1999).starts_with("# Copyright 1999 QMK\n"));
        assert!(GENERATED_HEADER_C.starts_with("/****"));
        assert!(GENERATED_HEADER_C.ends_with("*/\n"));
        assert!(GENERATED_HEADER_SH.ends_with("#\n"));
    }

    #[test]
    fn letters() {
        assert_eq!(COL_LETTERS.len(), 52);
        assert_eq!(&COL_LETTERS[34..38], "ijil");
        assert_eq!(path_name("qmk/hello_world"), "hello_world");
        assert_eq!(path_name("x"), "x");
    }
}
