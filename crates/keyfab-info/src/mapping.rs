//! The mapping tables of `data/mappings/info_config.hjson` and
//! `info_rules.hjson`: which `config.h`/`rules.mk` name feeds which info key,
//! with its value type and flags. The generators read the same tables the
//! other way round (info → C/make), so everything is public.

use crate::py;
use keyfab_syntax::ConfigValue;
use serde_json::Value;

/// A mapping's `value_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueType {
    /// `raw` (the default): the text as is.
    Raw,
    /// `array`: `{ a, b }` → `["a", "b"]`.
    Array,
    /// `array.int`: `{ 1, 2 }` → `[1, 2]`.
    ArrayInt,
    /// `array.<x>.<y>` (e.g. `array.array.int`): only the generators can
    /// write these; reading one into JSON is an error, as in QMK.
    ArrayNested(String),
    /// `bool`: `true`/`1`/`on`/`yes` are true.
    Bool,
    /// `flag`: a define without a value is true.
    Flag,
    /// `hex`: `0x1234` → `"0x1234"` upper-cased after the prefix.
    Hex,
    /// `list`: whitespace separated words.
    List,
    /// `int`: a decimal integer.
    Int,
    /// `str`: a C string literal, unquoted.
    Str,
    /// `bcd_version`: `0x0123` → `"1.2.3"`.
    BcdVersion,
    /// `mapping`: kept as text when read (generators write a table).
    Mapping,
    /// Any other name: kept as text, as QMK does.
    Other(String),
}

impl ValueType {
    pub fn parse(name: &str) -> ValueType {
        match name {
            "raw" => ValueType::Raw,
            "array" => ValueType::Array,
            "array.int" => ValueType::ArrayInt,
            "bool" => ValueType::Bool,
            "flag" => ValueType::Flag,
            "hex" => ValueType::Hex,
            "list" => ValueType::List,
            "int" => ValueType::Int,
            "str" => ValueType::Str,
            "bcd_version" => ValueType::BcdVersion,
            "mapping" => ValueType::Mapping,
            n if n.starts_with("array") => {
                if n.matches('.').count() > 1 {
                    ValueType::ArrayNested(n.to_string())
                } else {
                    // `array.<other>` behaves as a plain array when read.
                    ValueType::Array
                }
            }
            n => ValueType::Other(n.to_string()),
        }
    }
}

/// One entry of a mapping table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The `config.h` macro or `rules.mk` variable.
    pub key: String,
    /// Dotted path into the info (`audio.pins.0`).
    pub info_key: String,
    pub value_type: ValueType,
    /// The `value_type` as written (`raw` when absent).
    pub value_type_name: String,
    /// Read into info.json (default true).
    pub to_json: bool,
    /// Written back into generated C/make (default true).
    pub to_c: bool,
    /// Warn when info.json already has a value (default true).
    pub warn_duplicate: bool,
    /// Warn when used (default false).
    pub deprecated: bool,
    /// Error when used (default false).
    pub invalid: bool,
    pub replace_with: Option<String>,
}

/// Which file a mapping table reads; also the name used in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingSource {
    ConfigH,
    RulesMk,
}

impl MappingSource {
    pub fn file_name(self) -> &'static str {
        match self {
            MappingSource::ConfigH => "config.h",
            MappingSource::RulesMk => "rules.mk",
        }
    }
}

/// Parses a mapping table (the value of `info_config.hjson` or
/// `info_rules.hjson`). Entries without an `info_key` are skipped with an
/// error message (QMK would stop).
pub fn parse_mappings(table: &Value) -> (Vec<Mapping>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let Some(obj) = table.as_object() else {
        errors.push("mapping table must be an object".to_string());
        return (out, errors);
    };
    for (key, entry) in obj {
        let Some(info_key) = entry.get("info_key").and_then(Value::as_str) else {
            errors.push(format!("{key}: missing \"info_key\""));
            continue;
        };
        let flag = |name: &str, default: bool| entry.get(name).map_or(default, py::truthy);
        let value_type_name = match entry.get("value_type") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => py::str_of(other),
            None => "raw".to_string(),
        };
        out.push(Mapping {
            key: key.clone(),
            info_key: info_key.to_string(),
            value_type: ValueType::parse(&value_type_name),
            value_type_name,
            to_json: flag("to_json", true),
            to_c: flag("to_c", true),
            warn_duplicate: flag("warn_duplicate", true),
            deprecated: flag("deprecated", false),
            invalid: flag("invalid", false),
            replace_with: entry
                .get("replace_with")
                .filter(|v| py::truthy(v))
                .map(py::str_of),
        });
    }
    (out, errors)
}

const TRUE_VALUES: [&str; 4] = ["true", "1", "on", "yes"];

/// QMK's `_config_to_json`: a `config.h`/`rules.mk` value converted for the
/// info. The error text is what Python's exception would say.
pub fn config_to_json(value_type: &ValueType, value: &ConfigValue) -> Result<Value, String> {
    let text = |method: &str| match value {
        ConfigValue::Text(s) => Ok(s.as_str()),
        ConfigValue::Flag(_) => Err(format!("'bool' object has no attribute '{method}'")),
    };
    let not_subscriptable = "'bool' object is not subscriptable".to_string();
    match value_type {
        ValueType::ArrayNested(name) => Err(format!("Conversion of {name} not possible")),
        ValueType::Array | ValueType::ArrayInt => {
            let s = text("replace")?.replace(['{', '}'], "");
            let s = py::strip(&s);
            if *value_type == ValueType::ArrayInt {
                s.split(',')
                    .map(|x| py::int(x).map(Value::from))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array)
            } else {
                Ok(Value::Array(
                    s.split(',').map(|x| Value::from(py::strip(x))).collect(),
                ))
            }
        }
        ValueType::Bool | ValueType::Flag => Ok(Value::Bool(match value {
            ConfigValue::Flag(b) => *b,
            ConfigValue::Text(s) => TRUE_VALUES.contains(&s.as_str()),
        })),
        ValueType::Hex => match value {
            ConfigValue::Text(s) => Ok(Value::from(format!(
                "0x{}",
                s.get(2..).unwrap_or("").to_uppercase()
            ))),
            ConfigValue::Flag(_) => Err(not_subscriptable),
        },
        ValueType::List => Ok(Value::Array(
            text("split")?.split_whitespace().map(Value::from).collect(),
        )),
        ValueType::Int => match value {
            ConfigValue::Flag(b) => Ok(Value::from(*b as i64)),
            ConfigValue::Text(s) => py::int(s).map(Value::from),
        },
        ValueType::Str => {
            let s = text("strip")?;
            Ok(Value::from(
                s.trim_matches('"')
                    .replace("\\\"", "\"")
                    .replace("\\\\", "\\"),
            ))
        }
        ValueType::BcdVersion => match value {
            ConfigValue::Text(s) => bcd_version(s),
            ConfigValue::Flag(_) => Err(not_subscriptable),
        },
        ValueType::Raw | ValueType::Mapping | ValueType::Other(_) => Ok(match value {
            ConfigValue::Flag(b) => Value::Bool(*b),
            ConfigValue::Text(s) => Value::from(s.as_str()),
        }),
    }
}

/// `0x0123` → `1.2.3`, by character positions as QMK slices them.
fn bcd_version(s: &str) -> Result<Value, String> {
    let chars: Vec<char> = s.chars().collect();
    let slice = |a: usize, b: usize| -> String {
        chars
            .get(a.min(chars.len())..b.min(chars.len()))
            .map(|c| c.iter().collect())
            .unwrap_or_default()
    };
    let major = py::int(&slice(2, 4))?;
    let minor = py::int(&slice(4, 5))?;
    let revision = py::int(&slice(5, 6))?;
    Ok(Value::from(format!("{major}.{minor}.{revision}")))
}

/// `rules.mk` values are always text.
pub fn rules_to_json(value_type: &ValueType, value: &str) -> Result<Value, String> {
    config_to_json(value_type, &ConfigValue::Text(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> ConfigValue {
        ConfigValue::Text(s.into())
    }

    #[test]
    fn every_value_type_converts() {
        let conv = |vt: &str, v: ConfigValue| config_to_json(&ValueType::parse(vt), &v);
        assert_eq!(conv("array", t("{ B1, B2 }")), Ok(json!(["B1", "B2"])));
        assert_eq!(conv("array.int", t("{ 1, 2 }")), Ok(json!([1, 2])));
        assert_eq!(
            conv("array.array.int", t("{{1}}")),
            Err("Conversion of array.array.int not possible".into())
        );
        assert_eq!(conv("bool", t("true")), Ok(json!(true)));
        assert_eq!(conv("bool", t("TRUE")), Ok(json!(false)));
        assert_eq!(conv("flag", ConfigValue::Flag(true)), Ok(json!(true)));
        assert_eq!(conv("flag", ConfigValue::Flag(false)), Ok(json!(false)));
        assert_eq!(conv("hex", t("0xfeed")), Ok(json!("0xFEED")));
        assert_eq!(conv("list", t("a  b c")), Ok(json!(["a", "b", "c"])));
        assert_eq!(conv("int", t("42")), Ok(json!(42)));
        assert_eq!(conv("int", ConfigValue::Flag(true)), Ok(json!(1)));
        assert!(conv("int", t("0x10")).is_err());
        assert_eq!(conv("str", t(r#""a \"b\" c""#)), Ok(json!("a \"b\" c")));
        assert_eq!(conv("bcd_version", t("0x0123")), Ok(json!("1.2.3")));
        assert_eq!(conv("raw", t("x y")), Ok(json!("x y")));
        assert_eq!(conv("mapping", t("x")), Ok(json!("x")));
        assert_eq!(
            conv("str", ConfigValue::Flag(true)),
            Err("'bool' object has no attribute 'strip'".into())
        );
        assert_eq!(
            conv("hex", ConfigValue::Flag(true)),
            Err("'bool' object is not subscriptable".into())
        );
    }

    #[test]
    fn flags_default_like_qmk() {
        let (m, errs) = parse_mappings(&json!({
            "A": {"info_key": "a"},
            "B": {"info_key": "b.c", "value_type": "int", "to_json": false, "to_c": false,
                  "warn_duplicate": false, "deprecated": true, "replace_with": "C"},
            "D": {"info_key": "d", "invalid": true},
            "E": {"value_type": "int"}
        }));
        assert_eq!(errs.len(), 1);
        assert_eq!(m.len(), 3);
        assert!(m[0].to_json && m[0].to_c && m[0].warn_duplicate);
        assert!(!m[0].deprecated && !m[0].invalid && m[0].value_type == ValueType::Raw);
        assert!(!m[1].to_json && !m[1].to_c && !m[1].warn_duplicate && m[1].deprecated);
        assert_eq!(m[1].replace_with.as_deref(), Some("C"));
        assert!(m[2].invalid);
    }
}
