//! JSON and HJSON, loaded the way QMK's `json_load` does: every `.json` and
//! `.hjson` file goes through an HJSON parser, and duplicate keys are an error.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// A file that is not valid JSON/HJSON, with the position of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}:{col}: invalid JSON: {message}")]
pub struct JsonError {
    pub path: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Parse JSON or HJSON text into a value that keeps key order, rejecting
/// duplicate keys like QMK's `_dict_raise_on_duplicates`.
pub fn parse_json(path: &str, text: &str) -> Result<Value, JsonError> {
    // A UTF-8 byte order mark is accepted by Python's reader only when asked
    // for; QMK opens files as plain utf-8, where a BOM is a syntax error.
    //
    // Most files are plain JSON, which a JSON parser reads to the same value
    // many times faster; anything it rejects (HJSON syntax, errors) goes
    // through the HJSON parser, which also words the errors.
    if !text.starts_with('\u{feff}') {
        let mut de = serde_json::Deserializer::from_str(text);
        if let Ok(StrictJson(value)) = de::Deserialize::deserialize(&mut de) {
            if de.end().is_ok() {
                return Ok(value);
            }
        }
    }
    let StrictJson(value) = deser_hjson::from_str(text).map_err(|e| to_error(path, e))?;
    Ok(value)
}

fn to_error(path: &str, e: deser_hjson::Error) -> JsonError {
    let (line, col, message) = match &e {
        deser_hjson::Error::Syntax {
            line,
            col,
            code,
            at,
        } => (*line, *col, format!("{code:?} near {at:?}")),
        deser_hjson::Error::Serde { line, col, message } => (*line, *col, message.clone()),
        other => (0, 0, other.to_string()),
    };
    JsonError {
        path: path.to_string(),
        line,
        col,
        message,
    }
}

/// A value deserialized with [`StrictValue`].
struct StrictJson(Value);

impl<'de> de::Deserialize<'de> for StrictJson {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StrictValue.deserialize(d).map(StrictJson)
    }
}

/// Deserializes any value into `serde_json::Value`, failing on duplicate keys.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // Checked before the value is read, so the error names the key's line.
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key: {key:?}")));
            }
            let v = map.next_value_seed(StrictValue)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hjson_comments_and_quoteless_keys() {
        let v = parse_json(
            "a.hjson",
            "{\n // c\n /* b */ \"x\": {target: \"y\"},\n z: 1.5\n}",
        )
        .unwrap();
        assert_eq!(v["x"]["target"], "y");
        assert_eq!(v["z"], 1.5);
    }

    #[test]
    fn key_order_is_kept() {
        let v = parse_json("a.json", r#"{"b": 1, "a": 2, "c": 3}"#).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "a", "c"]);
    }

    #[test]
    fn integers_stay_integers() {
        let v = parse_json("a.json", r#"{"i": 3, "f": 3.0, "n": -2}"#).unwrap();
        assert!(v["i"].is_u64());
        assert!(v["f"].is_f64());
        assert_eq!(v["n"].as_i64(), Some(-2));
    }

    #[test]
    fn duplicate_key_is_an_error_with_a_line() {
        let e = parse_json("kb/info.json", "{\n \"a\": 1,\n \"a\": 2\n}").unwrap_err();
        assert!(e.message.contains("duplicate key"), "{e}");
        assert_eq!(e.path, "kb/info.json");
        assert!(e.line >= 2, "{e:?}");
    }

    #[test]
    fn malformed_json_names_the_line() {
        let e = parse_json("x.json", "{\n \"a\": [1, 2,\n \"b\": }\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
        assert!(e.to_string().starts_with("x.json:"));
    }
}
