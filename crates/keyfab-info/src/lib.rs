//! Merged keyboard info, as QMK's data-driven configuration computes it
//! (`qmk.info.info_json` and `keymap_json`): `info.json`/`keyboard.json`
//! down the folder chain, `LAYOUT` macros of `<keyboard>.h`, defaults,
//! `config.h` and `rules.mk` values through `data/mappings`, the hand-written
//! extractors, LED config from `<keyboard>.c`, validation against the tree's
//! `data/schemas`, and QMK's `parse_errors`/`parse_warnings`.
//!
//! Entry point: [`Engine`] (one per tree and process; shares every parsed
//! file between keyboards and threads), then [`Engine::info_json`] and
//! [`Engine::keymap_json`], which return an [`Info`]: the value plus
//! diagnostics. Bad input never fails the call.
//!
//! Architecture invariant: reads the tree, writes nothing, runs no process,
//! never panics on input; every problem is a [`Diagnostic`] naming its file.

mod cfile;
pub mod dotty; // pub for keyfab-gen (branch gen): dotted info keys of the mapping tables
mod engine;
mod info;
mod mapping;
mod memo;
pub mod py;
mod render;
mod schema;

pub use cfile::{find_layouts, remove_comments, HeaderLayouts};
pub use engine::{Engine, InfoQueries, Mappings};
pub use info::{community_layouts_of, deep_update};
pub use mapping::{
    config_to_json, parse_mappings, rules_to_json, Mapping, MappingSource, ValueType,
};
pub use render::{render_dotted, render_friendly, to_sorted_json, write_sorted_json};
pub use schema::{SchemaError, SchemaStore};

use serde::Serialize;
use serde_json::Value;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A problem found while merging, located in its file (tree-relative).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub path: String,
    /// 1-based line, 0 when the problem has no single line.
    pub line: usize,
    /// Dotted JSON path of the offending value (schema errors).
    pub json_path: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}", self.path)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        write!(f, ": {sev}: ")?;
        if let Some(p) = self.json_path.as_deref().filter(|p| !p.is_empty()) {
            write!(f, "{p}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// A merged info and what was found on the way.
#[derive(Debug, Clone)]
pub struct Info {
    /// The info as QMK's `info_json()`/`keymap_json()` returns it, including
    /// the API-only keys (`parse_errors`, `keyboard_folder`, …).
    pub value: Value,
    pub diagnostics: Vec<Diagnostic>,
    /// QMK itself would have stopped on this input (invalid JSON, data the
    /// API schema rejects, an exception in an extractor); `value` is our best
    /// effort past that point.
    pub fatal: bool,
}

/// What `qmk info` removes unless `--api` is given (QMK's
/// `_strip_api_content`); the result is what `qmk info -f json` prints.
pub fn strip_api_content(info: &mut Value) {
    let Value::Object(m) = info else { return };
    for k in [
        "platform",
        "platform_key",
        "processor_type",
        "protocol",
        "keymaps",
        "keyboard_folder",
        "parse_errors",
        "parse_warnings",
    ] {
        m.remove(k);
    }
    if let Some(Value::Object(layouts)) = m.get_mut("layouts") {
        for l in layouts.values_mut() {
            if let Value::Object(l) = l {
                l.remove("filename");
                l.remove("c_macro");
                l.remove("json_layout");
            }
        }
    }
    if m.contains_key("matrix_pins") {
        m.remove("matrix_size");
    }
    for feature in ["rgb_matrix", "led_matrix"] {
        if let Some(Value::Object(f)) = m.get_mut(feature) {
            if f.get("layout").is_some_and(py::truthy) {
                f.remove("led_count");
            }
        }
    }
}

/// The community layouts a keyboard supports, from its merged info (QMK's
/// `list_keymaps` and `locate_keymap` read them from `info_json`).
pub fn community_layouts(engine: &Engine, keyboard: &str) -> (Vec<String>, Vec<Diagnostic>) {
    let info = engine.info_json(keyboard);
    (community_layouts_of(&info.value), info.diagnostics)
}
