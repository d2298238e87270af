//! Validation against the tree's own `data/schemas/*.jsonschema`, as QMK's
//! `json_schema.validate` does (draft 2020-12, formats not checked). Schemas
//! refer to each other by `$id` (`qmk.definitions.v1#/…`) or by file name
//! (`./definitions.jsonschema#/…`); both are resolved here. Validators are
//! compiled once per schema and shared.

use crate::memo::Memo;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;

const BASE: &str = "keyfab-schema:///";

/// A schema failure: the JSON path of the offending value (dotted, as QMK
/// prints it) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub json_path: String,
    pub message: String,
}

/// The schemas of one tree.
pub struct SchemaStore {
    /// File name → schema with `$id`s and `$ref`s rewritten to our URIs.
    files: HashMap<String, Value>,
    /// `$id` → file name.
    ids: HashMap<String, String>,
    compiled: Memo<String, Result<jsonschema::Validator, String>>,
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
        let files = raw
            .into_iter()
            .map(|(name, mut v)| {
                rewrite(&mut v, &ids, true, &name);
                (name, v)
            })
            .collect();
        SchemaStore {
            files,
            ids,
            compiled: Memo::default(),
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

    fn compile(&self, schema: &str) -> Result<jsonschema::Validator, String> {
        // QMK falls back to `false.jsonschema` (absent: rejects everything)
        // when a schema is unknown.
        let file = self
            .file_of(schema)
            .ok_or_else(|| format!("unknown schema {schema}"))?;
        let mut stack = Vec::new();
        let root = self.inline(&self.files[&file], &file, &mut stack, true);
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
        let mut builder = jsonschema::Registry::new();
        for (name, v) in &self.files {
            builder = builder
                .add(format!("{BASE}{name}"), v)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        let registry = builder.prepare().map_err(|e| format!("{file}: {e}"))?;
        let opts = jsonschema::options()
            .with_draft(draft)
            .should_validate_formats(false)
            .with_base_uri(format!("{BASE}{file}"))
            .with_registry(&registry);
        opts.build(&root).map_err(|e| format!("{file}: {e}"))
    }

    /// A copy of `node` (of schema file `doc`) with every non-recursive
    /// `$ref` replaced by its target: compiling an inlined schema is much
    /// cheaper than letting the validator resolve each reference.
    fn inline(&self, node: &Value, doc: &str, stack: &mut Vec<String>, top: bool) -> Value {
        match node {
            Value::Object(o) => {
                let mut out = serde_json::Map::new();
                for (k, v) in o {
                    if k == "$ref" || (!top && (k == "$id" || k == "$schema")) {
                        continue;
                    }
                    let v = if k == "enum" || k == "const" || k == "examples" {
                        v.clone()
                    } else {
                        self.inline(v, doc, stack, false)
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
                        let t = self.inline(t, &target_doc, stack, false);
                        stack.pop();
                        t
                    }
                    // recursive or unknown: leave it to the validator
                    _ => serde_json::json!({"$ref": format!("{BASE}{target_doc}#{pointer}")}),
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
                    .map(|v| self.inline(v, doc, stack, false))
                    .collect(),
            ),
            other => other.clone(),
        }
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
        let compiled = self
            .compiled
            .get(&schema.to_string(), || self.compile(schema));
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

    #[test]
    fn unknown_schema_is_a_problem_not_a_panic() {
        let s = store();
        assert!(s.validate(&json!({}), "nope").is_ok());
        assert_eq!(s.problems().len(), 1);
    }
}
