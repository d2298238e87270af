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
///
/// Strict JSON is tried first (fast, and most files are JSON); text that is
/// not JSON is parsed as HJSON. Like hjson-py, a number written with a
/// fraction or exponent whose value is whole (`1.0`, `1e3`) becomes an integer.
pub fn parse_json(path: &str, text: &str) -> Result<Value, JsonError> {
    let mut value = match strict_json(text) {
        Ok(v) => v,
        Err(e) if e.is_data() => {
            // A duplicate key in otherwise valid JSON.
            return Err(JsonError {
                path: path.to_string(),
                line: e.line(),
                col: e.column(),
                message: strip_position(&e.to_string()),
            });
        }
        // JSON with comments (most of `data/`: the mapping tables, the
        // keyboard schema) means the same in HJSON: strict JSON once the
        // comments are blanked out is far faster than the HJSON parser.
        // Anything else, errors included, is the HJSON parser's to answer.
        Err(_) => match blank_comments(text).and_then(|t| strict_json(&t).ok()) {
            Some(v) => v,
            None => {
                let StrictJson(v) = deser_hjson::from_str(text).map_err(|e| to_error(path, e))?;
                v
            }
        },
    };
    normalize_numbers(&mut value);
    Ok(value)
}

/// Strict JSON (duplicate keys rejected).
fn strict_json(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    StrictValue
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|_| v))
}

/// `text` with its HJSON comments (`#…`, `//…` to the end of the line,
/// `/*…*/`) outside quoted strings replaced by spaces, newlines kept (lines
/// and columns stay where they were); `None` when there is no comment or a
/// `/*` is never closed. If the result is strict JSON, HJSON reads the
/// original the same way: every value is then quoted, a number, a keyword,
/// an object or an array, and HJSON ends a number or keyword at a comment.
fn blank_comments(text: &str) -> Option<String> {
    let mut b = text.as_bytes().to_vec();
    let mut found = false;
    let mut i = 0;
    let blank = |b: &mut [u8], from: usize, to: usize| {
        for c in &mut b[from..to] {
            if *c != b'\n' && *c != b'\r' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'"' | b'\n' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b'#' | b'/' if b[i] == b'#' || b.get(i + 1) == Some(&b'/') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |n| i + n);
                blank(&mut b, i, end);
                found = true;
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let close = b[i + 2..].windows(2).position(|w| w == b"*/")?;
                let end = i + 2 + close + 2;
                blank(&mut b, i, end);
                found = true;
                i = end;
            }
            _ => i += 1,
        }
    }
    // Only ASCII bytes were replaced, by ASCII: still UTF-8.
    found.then(|| String::from_utf8(b).ok()).flatten()
}

/// serde_json appends " at line L column C"; we print the position first.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn normalize_numbers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    *n = Number::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(map) => map.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

fn to_error(path: &str, e: deser_hjson::Error) -> JsonError {
    let (line, col, message) = match &e {
        deser_hjson::Error::Syntax {
            line,
            col,
            code,
            at,
        } if at.is_empty() => (*line, *col, describe(code)),
        deser_hjson::Error::Syntax {
            line,
            col,
            code,
            at,
        } => (*line, *col, format!("{} near {at:?}", describe(code))),
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

/// Words for the parser's error codes.
fn describe(code: &deser_hjson::ErrorCode) -> String {
    use deser_hjson::ErrorCode as C;
    match code {
        C::Eof => "unexpected end of file (unclosed { or [?)".into(),
        C::ExpectedMapColon => "expected ':' after a key".into(),
        C::ExpectedMapComma => "expected ',' or '}' between members".into(),
        C::ExpectedArrayComma => "expected ',' or ']' between items".into(),
        C::ExpectedMapEnd => "expected '}'".into(),
        C::ExpectedArrayEnd => "expected ']'".into(),
        C::TrailingCharacters => "unexpected text after the value".into(),
        C::InvalidEscapeSequence => "invalid escape sequence in a string".into(),
        C::UnexpectedChar => "unexpected character".into(),
        other => format!("{other:?}"),
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

    /// The HJSON parser's answer, for comparison with the fast paths.
    fn hjson(text: &str) -> Value {
        let StrictJson(mut v) = deser_hjson::from_str(text).unwrap();
        normalize_numbers(&mut v);
        v
    }

    #[test]
    fn json_with_comments_reads_as_hjson_does() {
        let texts = [
            "// head\n{\n  // c\n  \"a\": 1, /* b */ \"b\": [true, null] # x\n}\n",
            "{\"u\": \"http://x/*y*/ # z\", \"n\": 2.0 // two\n, \"q\": \"\\\"//\"}",
            "{\n  /* many\n lines */ \"k\": {\"v\": -3e2} // é\n}",
        ];
        for t in texts {
            assert!(blank_comments(t).is_some(), "{t}");
            assert_eq!(parse_json("c.hjson", t).unwrap(), hjson(t), "{t}");
        }
        let v = parse_json("c.hjson", texts[1]).unwrap();
        assert_eq!(v["u"], "http://x/*y*/ # z");
        assert_eq!(v["q"], "\"//");
        // Not JSON once the comments are gone: left to the HJSON parser.
        for t in ["{a: 1 // c\n}", "{\"a\": x // c\n}", "{\"a\": 1, // c\n}"] {
            assert_eq!(parse_json("h.hjson", t).unwrap(), hjson(t), "{t}");
        }
        assert_eq!(blank_comments("{\"a\": 1} /* open"), None);
        assert_eq!(blank_comments("{\"a\": \"//\"}"), None);
    }

    /// Every JSON/HJSON file of a real tree that takes the comment fast path
    /// (with `KEYFAB_QMK_TREE`) reads as the HJSON parser reads it.
    #[test]
    fn real_tree_json_with_comments_reads_as_hjson_does() {
        let Some(root) = std::env::var_os("KEYFAB_QMK_TREE") else {
            return;
        };
        let mut dirs = vec![std::path::PathBuf::from(root)];
        let (mut checked, mut differ) = (0, Vec::new());
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().unwrap().is_dir() {
                    if !name.starts_with('.') && name != "lib" {
                        dirs.push(p);
                    }
                    continue;
                }
                if ![".json", ".hjson", ".jsonschema"]
                    .iter()
                    .any(|x| name.ends_with(x))
                {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&p) else {
                    continue;
                };
                if strict_json(&text).is_ok() {
                    continue;
                }
                let Some(fast) = blank_comments(&text).and_then(|t| strict_json(&t).ok()) else {
                    continue;
                };
                checked += 1;
                let mut fast = fast;
                normalize_numbers(&mut fast);
                let same = deser_hjson::from_str::<StrictJson>(&text)
                    .map(|StrictJson(mut h)| {
                        normalize_numbers(&mut h);
                        h == fast
                    })
                    .unwrap_or(false);
                if !same {
                    differ.push(p.display().to_string());
                }
            }
        }
        eprintln!("{checked} files read through the comment fast path");
        assert!(differ.is_empty(), "{differ:#?}");
    }

    #[test]
    fn duplicate_key_in_json_with_comments_is_the_hjson_error() {
        let t = "{\n // c\n \"a\": 1,\n \"a\": 2\n}";
        let e = parse_json("m.hjson", t).unwrap_err();
        let h = deser_hjson::from_str::<StrictJson>(t).err().unwrap();
        assert_eq!(e, to_error("m.hjson", h));
    }

    #[test]
    fn key_order_is_kept() {
        let v = parse_json("a.json", r#"{"b": 1, "a": 2, "c": 3}"#).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "a", "c"]);
    }

    #[test]
    fn whole_floats_become_integers_like_hjson_py() {
        let v = parse_json(
            "a.json",
            r#"{"i": 3, "f": 3.0, "e": 1e3, "h": 2.5, "n": -2}"#,
        )
        .unwrap();
        assert!(v["i"].is_u64());
        assert_eq!(v["f"], serde_json::json!(3));
        assert!(v["f"].is_i64());
        assert_eq!(v["e"], serde_json::json!(1000));
        assert_eq!(v["h"], 2.5);
        assert_eq!(v["n"].as_i64(), Some(-2));
        let h = parse_json("a.hjson", "{a: 4.0 // c\n}").unwrap();
        assert_eq!(h["a"], serde_json::json!(4));
    }

    #[test]
    fn duplicate_key_in_hjson_is_an_error() {
        let e = parse_json("m.hjson", "{\n // c\n a: 1\n a: 2\n}").unwrap_err();
        assert!(e.message.contains("duplicate key"), "{e}");
    }

    #[test]
    fn mismatched_bracket_is_an_error() {
        let e = parse_json("x.json", "{\n \"x\": {\"a\": 1]\n}").unwrap_err();
        assert_eq!(e.line, 2, "{e:?}");
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
