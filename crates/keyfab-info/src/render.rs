//! The text forms of `qmk info`: `-f json` (sorted keys), `-f text` (dotted
//! keys) and the default friendly summary. Pure: they return strings.

use crate::py::{repr_float, str_of};
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// A copy of `v` with every object's keys sorted, as `json.dumps(...,
/// sort_keys=True)` writes them.
pub fn to_sorted_json(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let mut m = Map::new();
            for k in keys {
                m.insert(k.clone(), to_sorted_json(&o[k]));
            }
            Value::Object(m)
        }
        Value::Array(a) => Value::Array(a.iter().map(to_sorted_json).collect()),
        other => other.clone(),
    }
}

/// Compact JSON of `v` with every object's keys sorted, written without
/// building a sorted copy (for printing thousands of infos fast).
pub fn write_sorted_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(k, out);
                out.push(':');
                write_sorted_json(&o[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted_json(x, out);
            }
            out.push(']');
        }
        Value::String(st) => push_json_str(st, out),
        other => out.push_str(&other.to_string()),
    }
}

fn push_json_str(s: &str, out: &mut String) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&Value::from(s).to_string());
    }
}

fn py_str(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => repr_float(n.as_f64().unwrap_or_default()),
        other => str_of(other),
    }
}

fn py_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// QMK's `print_dotted_output` (`qmk info -f text`), without colours.
pub fn render_dotted(info: &Value) -> String {
    let mut out = String::new();
    dotted(info, "", &mut out);
    out
}

fn dotted(v: &Value, prefix: &str, out: &mut String) {
    let Value::Object(o) = v else { return };
    let mut keys: Vec<&String> = o.keys().collect();
    keys.sort();
    for key in keys {
        let value = &o[key];
        let new_prefix = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if key == "parse_errors" || key == "parse_warnings" {
            continue;
        }
        if key == "layouts" && prefix.is_empty() {
            out.push_str(&format!("layouts: {}\n", sorted_keys(value).join(", ")));
        } else if value.is_object() {
            dotted(value, &new_prefix, out);
        } else if let Value::Array(a) = value {
            let mut items: Vec<&Value> = a.iter().collect();
            items.sort_by(|x, y| py_cmp(x, y));
            let shown: Vec<String> = items.iter().map(|x| py_str(x)).collect();
            out.push_str(&format!("{new_prefix}: {}\n", shown.join(", ")));
        } else {
            out.push_str(&format!("{new_prefix}: {}\n", py_str(value)));
        }
    }
}

fn sorted_keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// QMK's `print_friendly_output` (`qmk info`'s default), without colours.
pub fn render_friendly(info: &Value) -> String {
    let field = |k: &str, default: &str| info.get(k).map_or(default.to_string(), py_str);
    let mut out = String::new();
    out.push_str(&format!(
        "Keyboard Name: {}\n",
        field("keyboard_name", "Unknown")
    ));
    out.push_str(&format!(
        "Manufacturer: {}\n",
        field("manufacturer", "Unknown")
    ));
    if info.get("url").is_some() {
        out.push_str(&format!("Website: {}\n", field("url", "")));
    }
    match info.get("maintainer") {
        None => out.push_str("Maintainer: QMK Community\n"),
        Some(Value::String(m)) if m == "qmk" => out.push_str("Maintainer: QMK Community\n"),
        Some(m) => out.push_str(&format!("Maintainer: {}\n", py_str(m))),
    }
    let layouts = info.get("layouts").map(sorted_keys).unwrap_or_default();
    out.push_str(&format!("Layouts: {}\n", layouts.join(", ")));
    out.push_str(&format!("Processor: {}\n", field("processor", "Unknown")));
    out.push_str(&format!("Bootloader: {}\n", field("bootloader", "Unknown")));
    if let Some(Value::Object(aliases)) = info.get("layout_aliases") {
        let a: Vec<String> = aliases
            .iter()
            .map(|(k, v)| format!("{k}={}", py_str(v)))
            .collect();
        out.push_str(&format!("Layout aliases: {}\n", a.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_sorts_and_flattens() {
        let v = json!({"b": {"y": true, "x": [3, 1]}, "a": 1.5, "layouts": {"L2": {}, "L1": {}},
                       "parse_errors": ["e"]});
        assert_eq!(
            render_dotted(&v),
            "a: 1.5\nb.x: 1, 3\nb.y: True\nlayouts: L1, L2\n"
        );
    }

    #[test]
    fn friendly_summary() {
        let v = json!({"keyboard_name": "K", "maintainer": "qmk", "layouts": {"LAYOUT": {}},
                       "processor": "atmega32u4", "layout_aliases": {"A": "LAYOUT"}});
        let t = render_friendly(&v);
        assert!(t.contains("Maintainer: QMK Community\n"));
        assert!(t.contains("Manufacturer: Unknown\n"));
        assert!(t.contains("Layout aliases: A=LAYOUT\n"));
    }

    #[test]
    fn sorted_json_sorts_nested_keys() {
        let input = json!({"b": {"d": 1, "c": "x\"y"}, "a": [{"z": 1.5, "y": null}]});
        let v = to_sorted_json(&input);
        let expected = r#"{"a":[{"y":null,"z":1.5}],"b":{"c":"x\"y","d":1}}"#;
        assert_eq!(v.to_string(), expected);
        let mut s = String::new();
        write_sorted_json(&input, &mut s);
        assert_eq!(s, expected);
    }
}
