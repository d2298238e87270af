//! The engine: the tree, its mapping tables and schemas, and the parsed files
//! shared by every keyboard, read once per process.

use crate::cfile::{self, HeaderLayouts, RawLedConfig};
use crate::mapping::{parse_mappings, Mapping};
use crate::memo::{Memo, Recorded};
use crate::schema::{SchemaError, SchemaStore};
use crate::{Diagnostic, Severity};
use keyfab_syntax::{ConfigH, JsonError};
use keyfab_tree::Tree;
use serde_json::Value;
use std::sync::Arc;

/// A JSON/HJSON file of the tree, parsed once.
pub(crate) enum JsonFile {
    Missing,
    Unreadable(String),
    Invalid(JsonError),
    Parsed {
        value: Value,
        /// Validation against `qmk.keyboard.v1`, computed on first use.
        keyboard_schema: Recorded<Result<(), SchemaError>>,
    },
}

/// A `config.h` file, parsed on its own (QMK parses each into a fresh dict).
pub(crate) struct ConfigFile {
    pub config: ConfigH,
    pub diags: Vec<keyfab_syntax::Diagnostic>,
    pub text: Arc<str>,
}

/// The mapping tables and defaults of `data/mappings`.
#[derive(Debug, Clone, Default)]
pub struct Mappings {
    /// `info_config.hjson`: `config.h` macro → info key.
    pub config: Vec<Mapping>,
    /// `info_rules.hjson`: `rules.mk` variable → info key.
    pub rules: Vec<Mapping>,
    /// `defaults.hjson` (applied by `info_json`).
    pub defaults: Value,
    /// `info_defaults.hjson` (the values QMK assumes when info omits them;
    /// used by lint and the generators, not merged into the info).
    pub info_defaults: Value,
}

/// Queries that answer for an engine what outlives one call: keyfab-build's
/// salsa database, which keeps each keyboard's resolution and merged info
/// while the files they read stay the same (and replays those reads to the
/// caller's [`keyfab_tree::reads`] recording).
pub trait InfoQueries: Send + Sync {
    /// QMK's `keyboard_folder(requested)`: aliases and `DEFAULT_FOLDER`
    /// resolved; `None` when the result is no keyboard.
    fn keyboard_folder(&self, requested: &str) -> Result<Option<String>, keyfab_tree::TreeError>;
    /// The keyboard's merged info (see [`Engine::info_json`]).
    fn info_json(&self, keyboard: &str) -> crate::Info;
}

/// Merged-info engine for one tree. `Send + Sync`: share it across threads.
pub struct Engine {
    /// Answers in place of this engine's own memo tables, when set.
    pub(crate) queries: Option<Arc<dyn InfoQueries>>,
    pub(crate) tree: Tree,
    /// The mapping tables and the problems reading them, loaded on first
    /// use (a keymap.json's `keymap.c` needs none).
    /// Shared with [`Engine::renewed`] engines.
    mappings: Arc<Recorded<(Mappings, Vec<Diagnostic>)>>,
    /// The schemas and the problems reading them, loaded on first use
    /// (those compiled stay compiled in renewed engines).
    schemas: Arc<Recorded<(SchemaStore, Vec<Diagnostic>)>>,
    /// Problems with the mapping and schema files themselves.
    setup: Arc<Recorded<Vec<Diagnostic>>>,
    json: Memo<String, JsonFile>,
    config: Memo<String, Option<ConfigFile>>,
    rules: Memo<String, Option<Arc<str>>>,
    headers: Memo<String, Option<HeaderLayouts>>,
    led: Memo<String, Option<Result<Option<RawLedConfig>, String>>>,
    exists: Memo<String, bool>,
    /// `SKIP_SCHEMA_VALIDATION` was set (truthy) when the engine was made:
    /// QMK then validates neither the files nor the merged info.
    pub(crate) skip_schema_validation: bool,
}

impl Engine {
    /// The engine of `tree`; its mapping tables and schemas are read when
    /// first needed. Never fails: problems become
    /// [`Engine::setup_diagnostics`].
    pub fn new(tree: Tree) -> Engine {
        Engine::with_tables(tree, Arc::default(), Arc::default(), Arc::default())
    }

    /// The same tree with the same mapping tables and schemas (those
    /// compiled stay compiled), every other file to be read again: for a
    /// process that sees the tree change while `data/` does not (watch).
    pub fn renewed(&self) -> Engine {
        let mut e = Engine::with_tables(
            self.tree.clone(),
            self.mappings.clone(),
            self.schemas.clone(),
            self.setup.clone(),
        );
        e.queries = self.queries.clone();
        e
    }

    /// This engine computing resolution and merged infos itself.
    pub fn without_queries(mut self) -> Engine {
        self.queries = None;
        self
    }

    /// This engine answering resolution and merged infos with `queries`.
    pub fn with_queries(mut self, queries: Arc<dyn InfoQueries>) -> Engine {
        self.queries = Some(queries);
        self
    }

    /// QMK's `keyboard_folder(requested)`: the keyboard folder a name
    /// resolves to (aliases, `DEFAULT_FOLDER`); `None` when it is no keyboard.
    pub fn keyboard_folder(
        &self,
        requested: &str,
    ) -> Result<Option<String>, keyfab_tree::TreeError> {
        if let Some(q) = &self.queries {
            return q.keyboard_folder(requested);
        }
        self.resolve_keyboard_folder(requested)
    }

    /// [`Engine::keyboard_folder`] computed now, from the files.
    pub fn resolve_keyboard_folder(
        &self,
        requested: &str,
    ) -> Result<Option<String>, keyfab_tree::TreeError> {
        let res = self.tree.resolve_keyboard(requested)?;
        Ok(self.tree.is_keyboard(&res.keyboard).then_some(res.keyboard))
    }

    fn with_tables(
        tree: Tree,
        mappings: Arc<Recorded<(Mappings, Vec<Diagnostic>)>>,
        schemas: Arc<Recorded<(SchemaStore, Vec<Diagnostic>)>>,
        setup: Arc<Recorded<Vec<Diagnostic>>>,
    ) -> Engine {
        Engine {
            queries: None,
            tree,
            mappings,
            schemas,
            setup,
            json: Memo::default(),
            config: Memo::default(),
            rules: Memo::default(),
            headers: Memo::default(),
            led: Memo::default(),
            exists: Memo::default(),
            skip_schema_validation: std::env::var("SKIP_SCHEMA_VALIDATION").is_ok_and(|v| {
                let v = v.trim().to_lowercase();
                ["1", "true", "t", "yes", "y", "on"].contains(&v.as_str())
            }),
        }
    }

    /// Reads `data/mappings`.
    fn load_mappings(tree: &Tree) -> (Mappings, Vec<Diagnostic>) {
        let mut setup = Vec::new();
        let table = |name: &str, setup: &mut Vec<Diagnostic>| -> Value {
            let rel = format!("data/mappings/{name}");
            match read_text(tree, &rel) {
                Ok(Some(text)) => match keyfab_syntax::parse_json(&rel, &text) {
                    Ok(v) => v,
                    Err(e) => {
                        setup.push(Diagnostic::error(&rel, e.line, e.message));
                        Value::Null
                    }
                },
                Ok(None) => Value::Null,
                Err(e) => {
                    setup.push(Diagnostic::error(&rel, 0, e));
                    Value::Null
                }
            }
        };
        let config_table = table("info_config.hjson", &mut setup);
        let rules_table = table("info_rules.hjson", &mut setup);
        let defaults = table("defaults.hjson", &mut setup);
        let info_defaults = table("info_defaults.hjson", &mut setup);
        let mut load = |v: &Value, rel: &str| -> Vec<Mapping> {
            if v.is_null() {
                return Vec::new();
            }
            let (m, errs) = parse_mappings(v);
            for e in errs {
                setup.push(Diagnostic::error(rel, 0, e));
            }
            m
        };
        let mappings = Mappings {
            config: load(&config_table, "data/mappings/info_config.hjson"),
            rules: load(&rules_table, "data/mappings/info_rules.hjson"),
            defaults,
            info_defaults,
        };
        (mappings, setup)
    }

    /// Reads `data/schemas`.
    fn load_schemas(tree: &Tree) -> (SchemaStore, Vec<Diagnostic>) {
        let mut schema_files = Vec::new();
        {
            let names = keyfab_tree::reads::list(&tree.path("data/schemas"));
            for name in names.into_iter().filter(|n| n.ends_with(".jsonschema")) {
                let rel = format!("data/schemas/{name}");
                let parsed = match read_text(tree, &rel) {
                    Ok(Some(text)) => {
                        keyfab_syntax::parse_json(&rel, &text).map_err(|e| e.to_string())
                    }
                    Ok(None) => continue,
                    Err(e) => Err(e),
                };
                schema_files.push((name, parsed));
            }
        }
        let schemas = SchemaStore::new(schema_files);
        let setup = schemas
            .load_errors
            .iter()
            .map(|(name, e)| Diagnostic::error(&format!("data/schemas/{name}"), 0, e.clone()))
            .collect();
        (schemas, setup)
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The mapping tables (`info_config.hjson`, `info_rules.hjson`) and
    /// defaults, as parsed from the tree.
    pub fn mappings(&self) -> &Mappings {
        &self
            .mappings
            .get_or_init(|| Self::load_mappings(&self.tree))
            .0
    }

    /// Problems found loading `data/mappings` and `data/schemas` (both are
    /// read now if they were not yet).
    pub fn setup_diagnostics(&self) -> &[Diagnostic] {
        self.setup.get_or_init(|| {
            self.mappings();
            self.schemas();
            let m = &self.mappings.get().expect("read above").1;
            let s = &self.schemas.get().expect("read above").1;
            m.iter().chain(s).cloned().collect()
        })
    }

    /// Problems with the schemas that showed while validating (a schema that
    /// does not compile is reported here and validates nothing).
    pub fn schema_problems(&self) -> Vec<Diagnostic> {
        self.schemas()
            .problems()
            .into_iter()
            .map(|m| Diagnostic::error("data/schemas", 0, m))
            .collect()
    }

    /// The tree's schemas.
    pub fn schemas(&self) -> &SchemaStore {
        &self
            .schemas
            .get_or_init(|| Self::load_schemas(&self.tree))
            .0
    }

    /// Validates any value against a schema of the tree by `$id`
    /// (`qmk.keyboard.v1`, `qmk.keymap.v1`, …).
    pub fn validate(&self, data: &Value, schema: &str) -> Result<(), SchemaError> {
        self.schemas().validate(data, schema)
    }

    pub(crate) fn json_file(&self, rel: &str) -> Arc<JsonFile> {
        self.json.get(&rel.to_string(), || self.load_json(rel))
    }

    /// Reads and parses a JSON/HJSON file, uncached.
    pub(crate) fn load_json(&self, rel: &str) -> JsonFile {
        match read_text(&self.tree, rel) {
            Ok(None) => JsonFile::Missing,
            Err(e) => JsonFile::Unreadable(e),
            Ok(Some(text)) => match keyfab_syntax::parse_json(rel, &text) {
                Ok(value) => JsonFile::Parsed {
                    value,
                    keyboard_schema: Recorded::default(),
                },
                Err(e) => JsonFile::Invalid(e),
            },
        }
    }

    /// Whether the file validates against `qmk.keyboard.v1` (cached).
    pub(crate) fn keyboard_schema_ok(&self, file: &JsonFile) -> Result<(), SchemaError> {
        if self.skip_schema_validation {
            return Ok(());
        }
        match file {
            JsonFile::Parsed {
                value,
                keyboard_schema,
            } => keyboard_schema
                .get_or_init(|| self.schemas().validate(value, "qmk.keyboard.v1"))
                .clone(),
            _ => Ok(()),
        }
    }

    pub(crate) fn config_file(&self, rel: &str) -> Arc<Option<ConfigFile>> {
        self.config.get(&rel.to_string(), || {
            let text = read_text(&self.tree, rel).ok().flatten()?;
            let mut config = ConfigH::new();
            let diags = keyfab_syntax::parse_config_h(rel, &text, &mut config);
            Some(ConfigFile {
                config,
                diags,
                text: Arc::from(text),
            })
        })
    }

    pub(crate) fn rules_file(&self, rel: &str) -> Arc<Option<Arc<str>>> {
        self.rules.get(&rel.to_string(), || {
            read_text(&self.tree, rel).ok().flatten().map(Arc::from)
        })
    }

    pub(crate) fn header(&self, rel: &str) -> Arc<Option<HeaderLayouts>> {
        self.headers.get(&rel.to_string(), || {
            let text = read_text(&self.tree, rel).ok().flatten()?;
            Some(cfile::find_layouts(rel, &text))
        })
    }

    pub(crate) fn led_config(
        &self,
        rel: &str,
    ) -> Arc<Option<Result<Option<RawLedConfig>, String>>> {
        self.led.get(&rel.to_string(), || {
            let text = read_text(&self.tree, rel).ok().flatten()?;
            Some(cfile::scan_led_config(&text))
        })
    }

    pub(crate) fn exists(&self, rel: &str) -> bool {
        *self.exists.get(&rel.to_string(), || {
            keyfab_tree::reads::exists(&self.tree.path(rel))
        })
    }
}

/// Reads a tree-relative file: `Ok(None)` when absent.
pub(crate) fn read_text(tree: &Tree, rel: &str) -> Result<Option<String>, String> {
    match keyfab_tree::reads::read(&tree.path(rel)) {
        Ok(Some(bytes)) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| "not valid UTF-8".to_string()),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("cannot read: {e}")),
    }
}

impl Diagnostic {
    pub fn error(path: &str, line: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            path: path.to_string(),
            line,
            json_path: None,
            message: message.into(),
        }
    }

    pub fn warning(path: &str, line: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(path, line, message)
        }
    }
}
