//! Validation against the tree's own `data/schemas/*.jsonschema`, as QMK's
//! `json_schema.validate` does (draft 2020-12, formats not checked). Schemas
//! refer to each other by `$id` (`qmk.definitions.v1#/…`) or by file name
//! (`./definitions.jsonschema#/…`); both are resolved here.
//!
//! A generator call validates a handful of values in a process that lives a
//! few milliseconds, while compiling a whole schema (`qmk.keyboard.v1`, and
//! `qmk.api.keyboard.v1` and `qmk.keymap.v1` which contain it) costs more than
//! the rest of the call. So the first [`SPECIALIZED_USES`] validations against
//! a schema each compile only the part the value can reach (the subschemas of
//! `properties` the value does not have become `true`); after that the whole
//! schema is compiled once and shared, as a process validating many values
//! (`info --all`, a build) wants.

use crate::memo::Memo;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

const BASE: &str = "keyfab-schema:///";

/// Validations per schema done with a validator specialised to the value
/// before the whole schema is compiled and kept.
pub const SPECIALIZED_USES: usize = 8;

/// A schema failure: the JSON path of the offending value (dotted, as QMK
/// prints it) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub json_path: String,
    pub message: String,
}

/// The schemas of one tree.
pub struct SchemaStore {
    /// File name → schema, as read.
    files: HashMap<String, Value>,
    /// The files with `$id`s and `$ref`s rewritten to our URIs, for the
    /// validator's registry (made when a reference is left to resolve).
    registry_files: OnceLock<Vec<(String, Value)>>,
    /// `$id` → file name.
    ids: HashMap<String, String>,
    compiled: Memo<String, Result<jsonschema::Validator, String>>,
    /// Validations so far, per schema.
    uses: Mutex<HashMap<String, usize>>,
    /// Regular expressions of `pattern`s, compiled once for every validator
    /// built (the specialised ones repeat the same `pattern`s).
    patterns: jsonschema::PatternCache,
    /// Problems loading the schema files.
    pub load_errors: Vec<(String, String)>,
    problems: Mutex<Vec<String>>,
}

impl SchemaStore {
    /// Builds the store from `(file name, parsed schema)` pairs.
    pub fn new(files: Vec<(String, Result<Value, String>)>) -> SchemaStore {
        let mut load_errors = Vec::new();
        let mut raw = Vec::new();
        let mut ids = HashMap::new();
        for (name, parsed) in files {
            match parsed {
                Ok(v) if v.is_object() => {
                    if let Some(id) = v.get("$id").and_then(Value::as_str) {
                        ids.insert(id.to_string(), name.clone());
                    }
                    raw.push((name, v));
                }
                Ok(_) => {} // QMK skips schema files that are not objects
                Err(e) => load_errors.push((name, e)),
            }
        }
        SchemaStore {
            files: raw.into_iter().collect(),
            ids,
            registry_files: OnceLock::new(),
            compiled: Memo::default(),
            uses: Mutex::new(HashMap::new()),
            patterns: jsonschema::PatternCache::new(),
            load_errors,
            problems: Mutex::new(Vec::new()),
        }
    }

    /// Schemas that could not be compiled (validation against them was
    /// skipped).
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// True when a schema of that `$id` (or file name) exists.
    pub fn has(&self, schema: &str) -> bool {
        self.file_of(schema).is_some()
    }

    fn file_of(&self, schema: &str) -> Option<String> {
        if let Some(f) = self.ids.get(schema) {
            return Some(f.clone());
        }
        self.files.contains_key(schema).then(|| schema.to_string())
    }

    /// The validator of `schema`; with `data`, one that validates `data`
    /// (and only it) exactly as the whole schema's validator does.
    fn compile(&self, schema: &str, data: Option<&Value>) -> Result<jsonschema::Validator, String> {
        // QMK falls back to `false.jsonschema` (absent: rejects everything)
        // when a schema is unknown.
        let file = self
            .file_of(schema)
            .ok_or_else(|| format!("unknown schema {schema}"))?;
        let mut stack = Vec::new();
        let mut unresolved = false;
        let root = self.inline(
            &self.files[&file],
            &file,
            &mut stack,
            true,
            data,
            &mut unresolved,
        );
        // Once every reference is inlined, a schema that uses no keyword
        // whose meaning changed after draft 7 validates the same under draft 7,
        // whose meta-schema is far cheaper to set up than 2020-12's.
        let draft = if needs_2020_12(&root) {
            jsonschema::Draft::Draft202012
        } else {
            jsonschema::Draft::Draft7
        };
        let mut root = root;
        if let Value::Object(o) = &mut root {
            o.remove("$schema");
            o.remove("$id");
        }
        let opts = jsonschema::options()
            .with_draft(draft)
            .should_validate_formats(false)
            .with_pattern_cache(self.patterns.clone())
            .with_base_uri(format!("{BASE}{file}"));
        if !unresolved {
            // Every reference inlined: the schema files are not needed.
            return opts.build(&root).map_err(|e| format!("{file}: {e}"));
        }
        let files = self.registry_files.get_or_init(|| {
            let mut files: Vec<(String, Value)> = self
                .files
                .iter()
                .map(|(name, v)| (name.clone(), v.clone()))
                .collect();
            for (name, v) in &mut files {
                rewrite(v, &self.ids, true, name);
            }
            files
        });
        let mut builder = jsonschema::Registry::new();
        for (name, v) in files {
            builder = builder
                .add(format!("{BASE}{name}"), v)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        let registry = builder.prepare().map_err(|e| format!("{file}: {e}"))?;
        opts.with_registry(&registry)
            .build(&root)
            .map_err(|e| format!("{file}: {e}"))
    }

    /// A copy of `node` (of schema file `doc`) with every non-recursive
    /// `$ref` replaced by its target: compiling an inlined schema is much
    /// cheaper than letting the validator resolve each reference. With
    /// `data` (the value `node` applies to), the subschemas of `properties`
    /// that `data` does not have become `true`: they apply to nothing
    /// (see [`SchemaStore::inline_properties`]). `unresolved` is set when a
    /// `$ref` is left for the validator to resolve.
    fn inline(
        &self,
        node: &Value,
        doc: &str,
        stack: &mut Vec<String>,
        top: bool,
        data: Option<&Value>,
        unresolved: &mut bool,
    ) -> Value {
        match node {
            Value::Object(o) => {
                let mut out = serde_json::Map::new();
                for (k, v) in o {
                    if k == "$ref" || (!top && (k == "$id" || k == "$schema")) {
                        continue;
                    }
                    let v = match k.as_str() {
                        "enum" | "const" | "examples" => v.clone(),
                        "properties" => self.inline_properties(v, doc, stack, data, unresolved),
                        // Applied to the same value. (Not `not`: its schema
                        // is part of its error message.)
                        "allOf" | "anyOf" | "oneOf" | "if" | "then" | "else" => {
                            self.inline(v, doc, stack, false, data, unresolved)
                        }
                        _ => self.inline(v, doc, stack, false, None, unresolved),
                    };
                    out.insert(k.clone(), v);
                }
                let Some(Value::String(r)) = o.get("$ref") else {
                    return Value::Object(out);
                };
                let (target_doc, pointer) = self.resolve_ref(r, doc);
                let key = format!("{target_doc}#{pointer}");
                let target = self
                    .files
                    .get(&target_doc)
                    .and_then(|d| d.pointer(&pointer));
                let inlined = match target {
                    Some(t) if !stack.contains(&key) => {
                        stack.push(key);
                        let t = self.inline(t, &target_doc, stack, false, data, unresolved);
                        stack.pop();
                        t
                    }
                    // recursive or unknown: leave it to the validator
                    _ => {
                        *unresolved = true;
                        serde_json::json!({"$ref": format!("{BASE}{target_doc}#{pointer}")})
                    }
                };
                if out.is_empty() {
                    return inlined;
                }
                match out.get_mut("allOf") {
                    Some(Value::Array(a)) => a.push(inlined),
                    _ => {
                        out.insert("allOf".into(), Value::Array(vec![inlined]));
                    }
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|v| self.inline(v, doc, stack, false, data, unresolved))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// A `properties` map, inlined; with `data` (an object), the subschemas
    /// of the names `data` does not have become `true`. The names all stay:
    /// which validator jsonschema builds for `properties` (and
    /// `additionalProperties`), and so the order it reports errors in,
    /// depends on how many there are.
    fn inline_properties(
        &self,
        props: &Value,
        doc: &str,
        stack: &mut Vec<String>,
        data: Option<&Value>,
        unresolved: &mut bool,
    ) -> Value {
        let (Value::Object(map), Some(Value::Object(members))) = (props, data) else {
            return self.inline(props, doc, stack, false, None, unresolved);
        };
        let out = map
            .iter()
            .map(|(name, schema)| {
                let v = match members.get(name) {
                    Some(value) => self.inline(schema, doc, stack, false, Some(value), unresolved),
                    None => Value::Bool(true),
                };
                (name.clone(), v)
            })
            .collect();
        Value::Object(out)
    }

    /// `(file, JSON pointer)` a `$ref` points to from within `doc`.
    fn resolve_ref(&self, r: &str, doc: &str) -> (String, String) {
        let (target, frag) = r.split_once('#').unwrap_or((r, ""));
        let target = target.strip_prefix(BASE).unwrap_or(target);
        let target = target.strip_prefix("./").unwrap_or(target);
        let file = if target.is_empty() {
            doc.to_string()
        } else if let Some(f) = self.ids.get(target) {
            f.clone()
        } else {
            target.to_string()
        };
        (file, frag.to_string())
    }

    /// Validates `data` against the schema named by `$id` (or file name);
    /// `Err` carries the first failure, as Python's `validate` raises it.
    pub fn validate(&self, data: &Value, schema: &str) -> Result<(), SchemaError> {
        let specialized = {
            let mut uses = self.uses.lock().unwrap_or_else(|e| e.into_inner());
            let n = uses.entry(schema.to_string()).or_default();
            *n += 1;
            *n <= SPECIALIZED_USES
        };
        self.validate_as(data, schema, specialized)
    }

    /// [`SchemaStore::validate`] with its choice made: a validator
    /// specialised to `data`, or the whole schema's (compiled once, kept).
    /// Both answer the same; the tests compare them.
    pub fn validate_as(
        &self,
        data: &Value,
        schema: &str,
        specialized: bool,
    ) -> Result<(), SchemaError> {
        let compiled = if specialized {
            std::sync::Arc::new(self.compile(schema, Some(data)))
        } else {
            self.compiled
                .get(&schema.to_string(), || self.compile(schema, None))
        };
        let validator = match compiled.as_ref() {
            Ok(v) => v,
            Err(e) => {
                // Our problem, not the data's: report it once, validate nothing.
                let mut p = self.problems.lock().unwrap_or_else(|e| e.into_inner());
                let msg = format!("schema {schema} cannot be used: {e}");
                if !p.contains(&msg) {
                    p.push(msg);
                }
                return Ok(());
            }
        };
        if validator.is_valid(data) {
            return Ok(());
        }
        let err = validator.iter_errors(data).next();
        Err(match err {
            Some(e) => SchemaError {
                json_path: dotted(e.instance_path().as_str()),
                message: e.to_string(),
            },
            None => SchemaError {
                json_path: String::new(),
                message: "invalid".into(),
            },
        })
    }
}

/// Whether a (ref-inlined) schema uses keywords that draft 7 reads
/// differently or not at all.
fn needs_2020_12(v: &Value) -> bool {
    const NEWER: &[&str] = &[
        "$ref",
        "$defs",
        "$dynamicRef",
        "$dynamicAnchor",
        "$anchor",
        "$recursiveRef",
        "prefixItems",
        "unevaluatedItems",
        "unevaluatedProperties",
        "dependentRequired",
        "dependentSchemas",
        "minContains",
        "maxContains",
        "additionalItems",
        "dependencies",
        "$vocabulary",
    ];
    match v {
        Value::Object(o) => o.iter().any(|(k, child)| {
            NEWER.contains(&k.as_str())
                || (k == "items" && child.is_array())
                || (k != "enum" && k != "const" && k != "examples" && needs_2020_12(child))
        }),
        Value::Array(a) => a.iter().any(needs_2020_12),
        _ => false,
    }
}

/// `/a/b/0` → `a.b.0` (QMK joins `absolute_path` with dots).
fn dotted(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

/// Gives every schema an absolute `$id` under [`BASE`] (its file name) and
/// turns `$ref`s by `$id` into references to that file.
fn rewrite(v: &mut Value, ids: &HashMap<String, String>, top: bool, file: &str) {
    match v {
        Value::Object(o) => {
            if top {
                o.insert("$id".into(), Value::from(format!("{BASE}{file}")));
            } else if let Some(Value::String(id)) = o.get("$id") {
                if let Some(f) = ids.get(id) {
                    let f = f.clone();
                    o.insert("$id".into(), Value::from(format!("{BASE}{f}")));
                }
            }
            if let Some(Value::String(r)) = o.get_mut("$ref") {
                let (target, frag) = match r.split_once('#') {
                    Some((t, f)) => (t.to_string(), format!("#{f}")),
                    None => (r.clone(), String::new()),
                };
                if let Some(f) = ids.get(&target) {
                    *r = format!("{BASE}{f}{frag}");
                }
            }
            for (k, child) in o.iter_mut() {
                // `enum`/`const` values are data, not schemas
                if k != "enum" && k != "const" && k != "examples" {
                    rewrite(child, ids, false, file);
                }
            }
        }
        Value::Array(a) => {
            for child in a {
                rewrite(child, ids, false, file);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> SchemaStore {
        SchemaStore::new(vec![
            (
                "definitions.jsonschema".into(),
                Ok(json!({"$id": "t.definitions.v1", "small": {"type": "integer", "maximum": 9}})),
            ),
            (
                "thing.jsonschema".into(),
                Ok(json!({
                    "$id": "t.thing.v1",
                    "type": "object",
                    "properties": {
                        "a": {"$ref": "./definitions.jsonschema#/small"},
                        "b": {"$ref": "t.definitions.v1#/small"},
                        "c": {"type": "string", "format": "uri"}
                    }
                })),
            ),
        ])
    }

    #[test]
    fn refs_by_file_and_by_id() {
        let s = store();
        assert!(s
            .validate(&json!({"a": 1, "b": 2, "c": "not a uri"}), "t.thing.v1")
            .is_ok());
        let e = s
            .validate(&json!({"a": {"x": 1}}), "t.thing.v1")
            .unwrap_err();
        assert_eq!(e.json_path, "a");
        let e = s.validate(&json!({"b": 10}), "t.thing.v1").unwrap_err();
        assert_eq!(e.json_path, "b");
    }

    /// A schema with wide and narrow `properties`, closed and open objects,
    /// references (one recursive), combinators and `not`.
    fn wide_store() -> SchemaStore {
        let mut wide = serde_json::Map::new();
        for i in 0..20 {
            wide.insert(
                format!("p{i:02}"),
                json!({"$ref": "./definitions.jsonschema#/small"}),
            );
        }
        SchemaStore::new(vec![
            (
                "definitions.jsonschema".into(),
                Ok(json!({
                    "$id": "t.definitions.v1",
                    "small": {"type": "integer", "maximum": 9},
                    "tree": {"type": "object", "properties": {
                        "n": {"type": "integer"},
                        "kids": {"type": "array", "items": {"$ref": "#/tree"}}
                    }}
                })),
            ),
            (
                "wide.jsonschema".into(),
                Ok(json!({
                    "$id": "t.wide.v1",
                    "type": "object",
                    "not": {"required": ["forbidden"]},
                    "properties": {
                        "wide": {"type": "object", "properties": wide},
                        "closed": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["x", "y"],
                            "properties": {
                                "x": {"type": "string"},
                                "y": {"type": "string"},
                                "z": {"enum": ["a", "b"]}
                            }
                        },
                        "either": {"oneOf": [
                            {"type": "object", "properties": {"k": {"const": 1}}, "required": ["k"]},
                            {"type": "object", "properties": {"k": {"const": 2}}, "required": ["k"]}
                        ]},
                        "tree": {"$ref": "t.definitions.v1#/tree"},
                        "list": {"type": "array", "items": {"type": "object", "properties": {
                            "v": {"$ref": "./definitions.jsonschema#/small"}
                        }}},
                        "narrow": {"type": "object", "properties": {
                            "a": {"type": "integer"}, "b": {"type": "integer"}
                        }}
                    },
                    "allOf": [{"properties": {"wide": {"minProperties": 1}}}]
                })),
            ),
        ])
    }

    #[test]
    fn specialised_validators_answer_as_the_whole_schema() {
        let s = wide_store();
        let values = [
            json!({}),
            json!([]),
            json!({"wide": {"p00": 1, "p05": 3}}),
            json!({"wide": {"p19": 10, "p03": "x", "p07": 99, "zz": 1}}),
            json!({"wide": {}}),
            json!({"closed": {"x": "1", "y": "2", "z": "a"}}),
            json!({"closed": {"x": 1, "w": 2, "v": 3}}),
            json!({"closed": {"w": 2}}),
            json!({"closed": {}}),
            json!({"either": {"k": 3}, "tree": {"n": 1, "kids": [{"n": "x"}]}}),
            json!({"tree": {"kids": [{"kids": [{"n": 1.5}]}]}, "forbidden": 1}),
            json!({"list": [{"v": 1}, {"v": 12}, {"w": 1}]}),
            json!({"narrow": {"c": 1, "d": 2, "e": 3, "f": 4, "g": 5, "h": 6, "i": 7, "j": 8, "k": 9, "b": "x", "a": "y"}}),
            json!({"narrow": {"b": "x", "a": "y"}, "wide": {"p02": 11}}),
        ];
        for v in &values {
            let whole = s.validate_as(v, "t.wide.v1", false);
            let special = s.validate_as(v, "t.wide.v1", true);
            assert_eq!(whole, special, "{v}");
        }
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        // Some of them fail, at a depth.
        let e = s.validate_as(&values[3], "t.wide.v1", true).unwrap_err();
        assert!(e.json_path.starts_with("wide."), "{e:?}");
    }

    #[test]
    fn unknown_schema_is_a_problem_not_a_panic() {
        let s = store();
        assert!(s.validate(&json!({}), "nope").is_ok());
        assert_eq!(s.problems().len(), 1);
    }
}
