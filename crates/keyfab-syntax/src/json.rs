//! JSON and HJSON, loaded the way QMK's `json_load` does: every `.json` and
//! `.hjson` file goes through an HJSON parser, and duplicate keys are an error.

use indexmap::IndexMap;
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
    let value = match strict_json(text) {
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
        // HJSON written as JSON but for comments and line ends in place of
        // commas (most of `data/`: the mapping tables, keyboard_aliases.hjson,
        // keyboard.jsonschema) is read directly, far faster than by the HJSON
        // parser; anything else, errors included, is the HJSON parser's.
        Err(_) => match commented_json(text) {
            Some(v) => v,
            None => {
                let StrictJson(v) = deser_hjson::from_str(text).map_err(|e| to_error(path, e))?;
                v
            }
        },
    };
    Ok(value)
}

/// For a JSON/HJSON object whose members are objects (`keyboard_aliases.hjson`:
/// `{"alias": {"target": "kb"}, …}`): each member's name and the value of its
/// `field` when that is a string, in file order; `Ok(None)` when the root is
/// not an object. What [`parse_json`] and a walk over its result give, errors
/// included, without building thousands of small objects.
pub fn parse_json_member_fields(
    path: &str,
    text: &str,
    field: &str,
) -> Result<Option<IndexMap<String, Option<String>>>, JsonError> {
    let mut p = Lax {
        text,
        b: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    if let Some(found) = p.member_fields(field) {
        return Ok(Some(found));
    }
    let value = parse_json(path, text)?;
    Ok(value.as_object().map(|members| {
        members
            .iter()
            .map(|(name, v)| {
                let f = v.get(field).and_then(Value::as_str).map(str::to_string);
                (name.clone(), f)
            })
            .collect()
    }))
}

/// Strict JSON (duplicate keys rejected).
fn strict_json(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    StrictValue
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|_| v))
}

/// HJSON that is JSON but for comments (`#…` and `//…` to the end of the
/// line, `/*…*/`), commas left out at line ends, and trailing commas; `None`
/// for anything else (quoteless keys or strings, single quotes, multi-line
/// strings, a root without braces, duplicate keys, deep nesting), which the
/// HJSON parser then reads. What this accepts means the same in HJSON.
fn commented_json(text: &str) -> Option<Value> {
    let mut p = Lax {
        text,
        b: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    p.skip()?;
    if !matches!(p.peek()?, b'{' | b'[') {
        return None;
    }
    let v = p.value()?;
    p.skip()?;
    (p.i == p.b.len()).then_some(v)
}

/// The reader of [`commented_json`].
struct Lax<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    depth: usize,
}

impl Lax<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skips white space and comments; `Some(true)` when a line ended on
    /// the way (not inside a `/*…*/`), `None` at a `/*` never closed.
    fn skip(&mut self) -> Option<bool> {
        let mut newline = false;
        loop {
            match (self.peek(), self.b.get(self.i + 1)) {
                (Some(b'\n'), _) => {
                    newline = true;
                    self.i += 1;
                }
                (Some(b' ' | b'\t' | b'\r'), _) => self.i += 1,
                (Some(b'#'), _) | (Some(b'/'), Some(b'/')) => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.i += 1;
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    let close = self.b[self.i + 2..].windows(2).position(|w| w == b"*/")?;
                    self.i += 2 + close + 2;
                }
                _ => return Some(newline),
            }
        }
    }

    fn value(&mut self) -> Option<Value> {
        match self.peek()? {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string().map(Value::String),
            b't' => self.word("true", Value::Bool(true)),
            b'f' => self.word("false", Value::Bool(false)),
            b'n' => self.word("null", Value::Null),
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                while matches!(
                    self.peek(),
                    Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                ) {
                    self.i += 1;
                }
                let n: Number = serde_json::from_str(&self.text[start..self.i]).ok()?;
                let n = match n.as_f64().filter(|_| n.is_f64()) {
                    Some(f) => float(f)?,
                    None => n,
                };
                self.ends_here(Value::Number(n))
            }
            _ => None,
        }
    }

    /// A keyword.
    fn word(&mut self, word: &str, v: Value) -> Option<Value> {
        if !self.b[self.i..].starts_with(word.as_bytes()) {
            return None;
        }
        self.i += word.len();
        self.ends_here(v)
    }

    /// `v`, a number or keyword, if nothing but spaces comes before the
    /// punctuation, comment or line end that follows it (else HJSON would
    /// read the rest of the line as a quoteless string).
    fn ends_here(&mut self, v: Value) -> Option<Value> {
        let mut j = self.i;
        while matches!(self.b.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        match (self.b.get(j), self.b.get(j + 1)) {
            (None | Some(b',' | b'}' | b']' | b'\n' | b'\r' | b'#'), _)
            | (Some(b'/'), Some(b'/' | b'*')) => Some(v),
            _ => None,
        }
    }

    /// A double-quoted string, JSON escapes and all.
    fn string(&mut self) -> Option<String> {
        let start = self.i;
        let mut j = start + 1;
        let mut escaped = false;
        loop {
            match *self.b.get(j)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    j += 2;
                }
                c if c < 0x20 => return None,
                _ => j += 1,
            }
        }
        self.i = j + 1;
        if escaped {
            serde_json::from_str(&self.text[start..self.i]).ok()
        } else {
            Some(self.text[start + 1..j].to_string())
        }
    }

    /// The items of an array or the members of an object, up to `close`:
    /// separated by a comma or a line end, a trailing comma allowed.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.depth += 1;
        if self.depth > 100 {
            return None;
        }
        self.i += 1;
        self.skip()?;
        loop {
            if self.peek()? == close {
                self.i += 1;
                self.depth -= 1;
                return Some(());
            }
            item(self)?;
            let newline = self.skip()?;
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.skip()?;
                    if self.peek()? == b',' {
                        return None;
                    }
                }
                c if c == close => {}
                _ if newline => {}
                _ => return None,
            }
        }
    }

    fn array(&mut self) -> Option<Value> {
        let mut items = Vec::new();
        self.items(b']', |p| {
            items.push(p.value()?);
            Some(())
        })?;
        Some(Value::Array(items))
    }

    /// [`parse_json_member_fields`] of a root object, `None` for anything
    /// else (the general path answers).
    fn member_fields(&mut self, field: &str) -> Option<IndexMap<String, Option<String>>> {
        self.skip()?;
        if self.peek()? != b'{' {
            return None;
        }
        let mut out = IndexMap::new();
        self.items(b'}', |p| {
            let name = p.key()?;
            let found = if p.peek()? == b'{' {
                p.field_of(field)?
            } else {
                let v = p.value()?;
                v.get(field).and_then(Value::as_str).map(str::to_string)
            };
            match out.entry(name) {
                indexmap::map::Entry::Occupied(_) => None,
                indexmap::map::Entry::Vacant(e) => {
                    e.insert(found);
                    Some(())
                }
            }
        })?;
        self.skip()?;
        (self.i == self.b.len()).then_some(out)
    }

    /// The string value of `field` in the object here, the rest read but not
    /// kept.
    fn field_of(&mut self, field: &str) -> Option<Option<String>> {
        let mut names: Vec<String> = Vec::new();
        let mut found = None;
        self.items(b'}', |p| {
            let name = p.key()?;
            if names.contains(&name) || names.len() > 64 {
                return None;
            }
            if name == field && p.peek()? == b'"' {
                found = Some(p.string()?);
            } else {
                p.value()?;
            }
            names.push(name);
            Some(())
        })?;
        Some(found)
    }

    /// A member's name and its colon; the value follows.
    fn key(&mut self) -> Option<String> {
        if self.peek()? != b'"' {
            return None;
        }
        let key = self.string()?;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        if self.peek()? != b':' {
            return None;
        }
        self.i += 1;
        self.skip()?;
        Some(key)
    }

    fn object(&mut self) -> Option<Value> {
        let mut map = Map::new();
        self.items(b'}', |p| {
            let key = p.key()?;
            let v = p.value()?;
            if map.insert(key, v).is_some() {
                return None; // a duplicate: the HJSON parser's error
            }
            Some(())
        })?;
        Some(Value::Object(map))
    }
}

/// serde_json appends " at line L column C"; we print the position first.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// A number as hjson-py reads it: a fraction or exponent whose value is
/// whole (`1.0`, `1e3`) is an integer.
fn float(f: f64) -> Option<Number> {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Some(Number::from(f as i64))
    } else {
        Number::from_f64(f)
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
        float(v)
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
        let StrictJson(v) = deser_hjson::from_str(text).unwrap();
        v
    }

    #[test]
    fn json_with_comments_reads_as_hjson_does() {
        let texts = [
            "// head\n{\n  // c\n  \"a\": 1, /* b */ \"b\": [true, null] # x\n}\n",
            "{\"u\": \"http://x/*y*/ # z\", \"n\": 2.0 // two\n, \"q\": \"\\\"//\"}",
            "{\n  /* many\n lines */ \"k\": {\"v\": -3e2} // é\n}",
            "{\n \"a\": {\"t\": \"x\"}\n \"b\": [1\n 2, 3,\n ]\n \"c\": false,\n}",
            "[\"\\u00e9\\n\", 1.5e3, -0, {}]",
            "{\"a\":\n 1}",
        ];
        for t in texts {
            assert!(commented_json(t).is_some(), "{t}");
            assert_eq!(parse_json("c.hjson", t).unwrap(), hjson(t), "{t}");
        }
        let v = parse_json("c.hjson", texts[1]).unwrap();
        assert_eq!(v["u"], "http://x/*y*/ # z");
        assert_eq!(v["q"], "\"//");
        assert!(v["n"].is_i64(), "{v}");
        // Left to the HJSON parser: quoteless keys and strings, a number
        // or keyword that is the start of a quoteless string, two items on
        // a line without a comma, …
        let hjson_only = [
            "{a: 1 // c\n}",
            "{\"a\": x // c\n}",
            "{\"a\": 1 2\n}",
            "{\"a\": true that\n}",
            "{\"a\": 1 \"b\": 2}",
            "{\"a\": \"x\" \"b\": 2}",
            "{\"a\": 1,, \"b\": 2}",
            "{\"a\": \'x\'}",
            "\"a\": 1",
            "{\"a\": 1} /* open",
            "{\"a\": 01}",
            "{\"a\": 1, \"a\": 2 // c\n}",
            "{\"a\": 1 /* x\n */ \"b\": 2}",
        ];
        for t in hjson_only {
            assert_eq!(commented_json(t), None, "{t}");
        }
    }

    /// Every file of a real tree (`KEYFAB_QMK_TREE`) that is not JSON but
    /// [`commented_json`] reads, reads as the HJSON parser reads it.
    #[test]
    fn real_tree_json_with_comments_reads_as_hjson_does() {
        let Some(root) = std::env::var_os("KEYFAB_QMK_TREE") else {
            return;
        };
        let root_path = std::path::PathBuf::from(root);
        let mut dirs = vec![root_path.clone()];
        let (mut checked, mut left, mut differ) = (0, 0, Vec::new());
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
                let Some(fast) = commented_json(&text) else {
                    left += 1;
                    continue;
                };
                checked += 1;
                let same = deser_hjson::from_str::<StrictJson>(&text)
                    .map(|StrictJson(h)| h == fast)
                    .unwrap_or(false);
                if !same {
                    differ.push(p.display().to_string());
                }
            }
        }
        eprintln!("{checked} HJSON files read as JSON with comments, {left} by the HJSON parser");
        let aliases = root_path.join("data/mappings/keyboard_aliases.hjson");
        if let Ok(text) = std::fs::read_to_string(&aliases) {
            let fast = parse_json_member_fields("a", &text, "target")
                .unwrap()
                .unwrap();
            let v = parse_json("a", &text).unwrap();
            let general: IndexMap<String, Option<String>> = v
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, m)| {
                    let f = m.get("target").and_then(Value::as_str).map(str::to_string);
                    (k.clone(), f)
                })
                .collect();
            assert!(fast.len() > 100 && fast.iter().eq(general.iter()));
        }
        assert!(differ.is_empty(), "{differ:#?}");
    }

    #[test]
    fn member_fields_are_those_of_the_parsed_value() {
        type Fields = Option<Vec<(String, Option<String>)>>;
        let general = |t: &str| -> Result<Fields, JsonError> {
            let v = parse_json("a.hjson", t)?;
            Ok(v.as_object().map(|o| {
                o.iter()
                    .map(|(k, m)| {
                        let f = m.get("target").and_then(Value::as_str).map(str::to_string);
                        (k.clone(), f)
                    })
                    .collect()
            }))
        };
        let fast = |t: &str| {
            parse_json_member_fields("a.hjson", t, "target")
                .map(|o| o.map(|m| m.into_iter().collect::<Vec<_>>()))
        };
        let texts = [
            "// c\n{\n \"a\": {\"target\": \"x/y\"}\n \"b\": {\"target\": \"z\", \"n\": [1, {\"k\": null}]},\n}",
            "{\"a\": {}, \"b\": {\"target\": 5}, \"c\": \"s\", \"d\": [1], \"e\": {\"other\": {\"target\": \"no\"}}}",
            "{\"\\u0061\": {\"t\\u0061rget\": \"\\u00e9\"}}",
            "[{\"target\": \"x\"}]",
            "{}",
            "{a: {target: x}}",
            "{\"a\": {\"target\": \"x\"}, \"a\": {}}",
            "{\"a\": {\"target\": \"x\", \"target\": \"y\"}}",
            "{\"a\": {\"b\": {\"c\": 1, \"c\": 2}}}",
            "{\"a\": {\"target\": \"x\"} junk\n}",
            "{\"a\": {\"target\": \"x\"}",
        ];
        for t in texts {
            assert_eq!(fast(t), general(t), "{t}");
        }
        assert_eq!(
            fast(texts[0]).unwrap().unwrap()[0],
            ("a".to_string(), Some("x/y".to_string()))
        );
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
