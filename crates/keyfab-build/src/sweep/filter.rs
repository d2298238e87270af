//! `qmk find`'s filters (`-f`), with the semantics of QMK's `qmk/search.py`:
//!
//! - `key==value`, `key!=value`: `str()` of the value at the dotted key
//!   (`False` when absent), matched case-insensitively against `value` as an
//!   fnmatch pattern (`*`, `?`, `[...]`).
//! - `key<n`, `key>n`, `key<=n`, `key>=n`: integer comparison (an absent key is 0).
//! - `exists(key)`, `absent(key)`, `length(key, n)`, `contains(key, value)`.
//!
//! Unlike QMK, which logs a warning and ignores what it does not recognise
//! (so `key=value` silently matches everything), an unrecognised filter is
//! an error here.
//!
//! Pure functions over a merged info `Value`.

use keyfab_info::{dotty, py};
use serde_json::Value;

/// One parsed filter.
#[derive(Debug, Clone)]
pub struct Filter {
    pub text: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Exists(String),
    Absent(String),
    Length(String, i64),
    Contains(String, String),
    Match {
        key: String,
        negate: bool,
        pattern: regex::Regex,
    },
    Compare {
        key: String,
        op: Cmp,
        value: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Lt,
    Gt,
    Le,
    Ge,
}

/// Why a filter could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter {text:?}: {message}")]
pub struct FilterError {
    pub text: String,
    pub message: String,
}

const HELP: &str = "expected key==value, key!=value, key<N, key>N, key<=N, key>=N, \
exists(key), absent(key), length(key, N) or contains(key, value)";

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

impl Filter {
    /// Parses one `-f` argument.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let err = |message: String| FilterError {
            text: text.to_string(),
            message,
        };
        let kind = if let Some(k) = parse_function(text) {
            let (func, key, value) = k;
            let need_value = || {
                value
                    .clone()
                    .ok_or_else(|| err(format!("{func}() needs a value: {func}(key, value)")))
            };
            match func.to_ascii_lowercase().as_str() {
                "exists" => Kind::Exists(key),
                "absent" => Kind::Absent(key),
                "length" => {
                    let v = need_value()?;
                    let n = py::int(&v).map_err(|_| err(format!("length wants an integer, not {v:?}")))?;
                    Kind::Length(key, n)
                }
                "contains" => Kind::Contains(key, need_value()?),
                other => {
                    return Err(err(format!(
                        "unknown function {other:?}; valid functions are exists, absent, length and contains"
                    )))
                }
            }
        } else if let Some((key, op, value)) = parse_comparison(text) {
            match op {
                "==" | "!=" => Kind::Match {
                    key,
                    negate: op == "!=",
                    pattern: glob_regex(&value).map_err(err)?,
                },
                _ => {
                    let n = py::int(&value)
                        .map_err(|_| err(format!("{op} wants an integer, not {value:?}")))?;
                    let op = match op {
                        "<" => Cmp::Lt,
                        ">" => Cmp::Gt,
                        "<=" => Cmp::Le,
                        _ => Cmp::Ge,
                    };
                    Kind::Compare { key, op, value: n }
                }
            }
        } else if text.contains('=') && !text.contains("==") {
            return Err(err(format!("a single '=' is not an operator; {HELP}")));
        } else {
            return Err(err(HELP.to_string()));
        };
        Ok(Filter {
            text: text.to_string(),
            kind,
        })
    }

    /// Whether a target's merged info (QMK's `keymap_json`) passes.
    /// `Err` where QMK's Python would raise (e.g. `<` on a non-number).
    pub fn matches(&self, info: &Value) -> Result<bool, String> {
        let get = |key: &str| dotty::get(info, key).map(|v| v.cloned());
        Ok(match &self.kind {
            Kind::Exists(k) => get(k)?.is_some(),
            Kind::Absent(k) => get(k)?.is_none(),
            Kind::Length(k, n) => match get(k)? {
                Some(Value::Array(a)) => a.len() as i64 == *n,
                Some(Value::Object(o)) => o.len() as i64 == *n,
                Some(Value::String(s)) => s.chars().count() as i64 == *n,
                Some(other) => {
                    return Err(format!(
                        "object of type '{}' has no len()",
                        dotty::py_type(&other)
                    ))
                }
                None => false,
            },
            Kind::Contains(k, v) => match get(k)? {
                Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(v.as_str())),
                Some(Value::Object(o)) => o.contains_key(v),
                Some(Value::String(s)) => s.contains(v.as_str()),
                Some(other) => {
                    return Err(format!(
                        "argument of type '{}' is not iterable",
                        dotty::py_type(&other)
                    ))
                }
                None => false,
            },
            Kind::Match {
                key,
                negate,
                pattern,
            } => {
                let lhs = match get(key)? {
                    None | Some(Value::Null) => "False".to_string(),
                    Some(v) => py::str_of(&v),
                };
                pattern.is_match(&lhs) != *negate
            }
            Kind::Compare { key, op, value } => {
                let lhs = match get(key)? {
                    None | Some(Value::Null) | Some(Value::Bool(false)) => 0,
                    Some(Value::Bool(true)) => 1,
                    Some(Value::Number(n)) => match n.as_i64() {
                        Some(i) => i,
                        None => n.as_f64().unwrap_or_default().trunc() as i64,
                    },
                    Some(Value::String(s)) => py::int(&s).map_err(|_| {
                        format!(
                            "invalid literal for int() with base 10: {}",
                            py::repr_str(&s)
                        )
                    })?,
                    Some(other) => {
                        return Err(format!(
                            "int() argument must be a string or a number, not '{}'",
                            dotty::py_type(&other)
                        ))
                    }
                };
                match op {
                    Cmp::Lt => lhs < *value,
                    Cmp::Gt => lhs > *value,
                    Cmp::Le => lhs <= *value,
                    Cmp::Ge => lhs >= *value,
                }
            }
        })
    }
}

/// `^(?P<function>[a-zA-Z]+)\((?P<key>[a-zA-Z0-9_\.]+)(,\s*(?P<value>[^#]+))?\)$`
fn parse_function(text: &str) -> Option<(String, String, Option<String>)> {
    let open = text.find('(')?;
    let func = &text[..open];
    if func.is_empty() || !func.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let inner = text[open + 1..].strip_suffix(')')?;
    let key_len = inner.find(|c: char| !is_key_char(c)).unwrap_or(inner.len());
    let (key, rest) = inner.split_at(key_len);
    if key.is_empty() {
        return None;
    }
    if rest.is_empty() {
        return Some((func.to_string(), key.to_string(), None));
    }
    let value = rest.strip_prefix(',')?.trim_start();
    if value.is_empty() || value.contains('#') {
        return None;
    }
    Some((func.to_string(), key.to_string(), Some(value.to_string())))
}

/// `^(?P<key>[a-zA-Z0-9_\.]+)\s*(?P<op>[\<\>\!=]=|\<|\>)\s*(?P<value>[^#]+)$`
fn parse_comparison(text: &str) -> Option<(String, &'static str, String)> {
    let key_len = text.find(|c: char| !is_key_char(c))?;
    let (key, rest) = text.split_at(key_len);
    if key.is_empty() {
        return None;
    }
    let rest = rest.trim_start();
    let op = ["==", "!=", "<=", ">=", "<", ">"]
        .into_iter()
        .find(|op| rest.starts_with(op))?;
    let value = rest[op.len()..].trim_start();
    if value.is_empty() || value.contains('#') {
        return None;
    }
    Some((key.to_string(), op, value.to_string()))
}

/// Python's `fnmatch.translate`, anchored, case-insensitive.
fn glob_regex(pattern: &str) -> Result<regex::Regex, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("(?is)^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                let mut j = i;
                if j < chars.len() && chars[j] == '!' {
                    j += 1;
                }
                if j < chars.len() && chars[j] == ']' {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    re.push_str("\\[");
                } else {
                    let mut stuff: String = chars[i..j].iter().collect();
                    i = j + 1;
                    stuff = stuff.replace('\\', "\\\\");
                    if let Some(rest) = stuff.strip_prefix('!') {
                        stuff = format!("^{rest}");
                    } else if stuff.starts_with('^') {
                        stuff = format!("\\{stuff}");
                    }
                    // Keep set operators literal for the regex crate.
                    let stuff = stuff.replace("&&", "\\&\\&").replace("--", "\\-\\-");
                    let stuff = stuff.replace('[', "\\[");
                    re.push('[');
                    re.push_str(&stuff);
                    re.push(']');
                }
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).map_err(|e| format!("bad pattern: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info() -> Value {
        json!({
            "processor": "atmega32u4",
            "bootloader": "atmel-dfu",
            "features": {"rgblight": true, "audio": false},
            "matrix_size": {"rows": 4, "cols": 12},
            "tags": ["ortho", "40%"],
            "layouts": {"LAYOUT_ortho_4x12": {}, "LAYOUT_planck_mit": {}},
            "name": "Planck",
            "debounce": "5",
        })
    }

    fn m(f: &str) -> bool {
        Filter::parse(f).unwrap().matches(&info()).unwrap()
    }

    #[test]
    fn equality_is_a_case_insensitive_glob_on_str() {
        assert!(m("processor==atmega32u4"));
        assert!(m("processor==ATMEGA*"));
        assert!(m("processor==atmega32u?"));
        assert!(m("processor==atmega32u[0-9]"));
        assert!(!m("processor==atmega32u[!4]"));
        assert!(!m("processor==atmega"));
        assert!(m("features.rgblight==true"));
        assert!(m("features.rgblight==True"));
        assert!(m("features.audio==false"));
        // absent is str(False)
        assert!(m("features.oled==false"));
        assert!(m("processor != stm32*"));
        assert!(!m("processor!=atmega32u4"));
        assert!(m("matrix_size.rows==4"));
    }

    #[test]
    fn integer_comparisons() {
        assert!(m("matrix_size.cols>10"));
        assert!(!m("matrix_size.cols<10"));
        assert!(m("matrix_size.cols>=12"));
        assert!(m("matrix_size.cols<=12"));
        assert!(m("debounce<6"));
        assert!(m("missing.key<1"));
        assert!(Filter::parse("processor<3")
            .unwrap()
            .matches(&info())
            .is_err());
        assert!(Filter::parse("a<b").is_err());
    }

    #[test]
    fn functions() {
        assert!(m("exists(features.rgblight)"));
        assert!(m("EXISTS(features.audio)"));
        assert!(!m("exists(features.oled)"));
        assert!(m("absent(features.oled)"));
        assert!(!m("absent(processor)"));
        assert!(m("length(tags, 2)"));
        assert!(m("length(layouts,2)"));
        assert!(!m("length(tags, 3)"));
        assert!(m("contains(tags, ortho)"));
        assert!(m("contains(layouts, LAYOUT_planck_mit)"));
        assert!(m("contains(name, lan)"));
        assert!(!m("contains(tags, split)"));
        assert!(m("exists(tags.0)"));
    }

    #[test]
    fn unrecognised_filters_are_errors() {
        for bad in [
            "processor=atmega32u4",
            "processor",
            "frobnicate(processor)",
            "contains(tags)",
            "length(tags, x)",
            "exists()",
            "==x",
            "key==",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
        let e = Filter::parse("processor=atmega32u4").unwrap_err();
        assert!(e.message.contains("single '='"), "{e}");
    }
}
