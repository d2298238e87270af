//! Dotted keys (`audio.pins.0`) into JSON values, with the semantics of the
//! `dotty_dict` package QMK uses: numeric parts index lists, `set` creates
//! missing (or falsy) intermediate containers and pads lists with nulls.

use crate::py::{is_digit_str, truthy};
use serde_json::{Map, Value};

/// `dotty(data).get(key)`: `Ok(None)` when absent; `Err` where Python raises
/// something other than `KeyError`/`IndexError` (QMK then logs a warning).
pub fn get<'a>(data: &'a Value, key: &str) -> Result<Option<&'a Value>, String> {
    let mut cur = data;
    let parts: Vec<&str> = key.split('.').collect();
    for (n, part) in parts.iter().enumerate() {
        let next = match cur {
            Value::Array(a) if is_digit_str(part) => match part.parse::<usize>() {
                Ok(i) => a.get(i),
                Err(_) => None,
            },
            Value::Array(_) => None,
            Value::Object(o) => o.get(*part),
            Value::String(_) => None,
            Value::Null => return Ok(None),
            other => {
                return Err(format!(
                    "argument of type '{}' is not iterable",
                    py_type(other)
                ))
            }
        };
        match next {
            None => return Ok(None),
            // dotty stops descending at a None value and returns it.
            Some(Value::Null) if n + 1 < parts.len() => return Ok(Some(&Value::Null)),
            Some(v) => cur = v,
        }
    }
    Ok(Some(cur))
}

/// `dotty(data)[key] = value`.
pub fn set(data: &mut Value, key: &str, value: Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    set_parts(data, &parts, value)
}

fn set_parts(data: &mut Value, parts: &[&str], value: Value) -> Result<(), String> {
    let it = parts[0];
    if parts.len() == 1 {
        if is_digit_str(it) {
            let idx: usize = it.parse().map_err(|_| "index too large".to_string())?;
            return set_list_index(data, idx, value);
        }
        let Value::Object(o) = data else {
            return Err(format!(
                "'{}' object does not support item assignment",
                py_type(data)
            ));
        };
        o.insert(it.to_string(), value);
        return Ok(());
    }
    let next_item = if is_digit_str(parts[1]) {
        Value::Array(Vec::new())
    } else {
        Value::Object(Map::new())
    };
    let child: &mut Value = if is_digit_str(it) {
        let idx: usize = it.parse().map_err(|_| "index too large".to_string())?;
        let Value::Array(a) = data else {
            return Err(format!(
                "'{}' object is not subscriptable by index",
                py_type(data)
            ));
        };
        if idx < a.len() {
            if !truthy(&a[idx]) {
                a[idx] = next_item;
            }
        } else {
            a.resize(idx + 1, Value::Null);
            a[idx] = next_item;
        }
        &mut a[idx]
    } else {
        let Value::Object(o) = data else {
            return Err(format!("'{}' object has no attribute 'get'", py_type(data)));
        };
        let slot = o.entry(it.to_string()).or_insert(Value::Null);
        if !truthy(slot) {
            *slot = next_item;
        }
        slot
    };
    set_parts(child, &parts[1..], value)
}

fn set_list_index(data: &mut Value, idx: usize, value: Value) -> Result<(), String> {
    let Value::Array(a) = data else {
        return Err(format!(
            "'{}' object has no attribute 'append'",
            py_type(data)
        ));
    };
    if a.len() <= idx {
        a.resize(idx + 1, Value::Null);
    }
    a[idx] = value;
    Ok(())
}

/// Python's type name of the value a JSON value becomes.
pub fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn get_walks_dicts_and_lists() {
        let v = json!({"a": {"b": [1, 2]}, "n": null, "i": 3});
        assert_eq!(get(&v, "a.b.1"), Ok(Some(&json!(2))));
        assert_eq!(get(&v, "a.b.5"), Ok(None));
        assert_eq!(get(&v, "a.c"), Ok(None));
        assert_eq!(get(&v, "n.x"), Ok(Some(&Value::Null)));
        assert!(get(&v, "i.x").is_err());
    }

    #[test]
    fn set_creates_containers_and_pads_lists() {
        let mut v = json!({});
        set(&mut v, "audio.pins.1", json!("B5")).unwrap();
        assert_eq!(v, json!({"audio": {"pins": [null, "B5"]}}));
        set(&mut v, "audio.pins.0", json!("B6")).unwrap();
        assert_eq!(v, json!({"audio": {"pins": ["B6", "B5"]}}));
    }

    #[test]
    fn set_replaces_falsy_intermediates() {
        let mut v = json!({"a": 0, "b": {"c": 1}});
        set(&mut v, "a.x", json!(1)).unwrap();
        set(&mut v, "b.d", json!(2)).unwrap();
        assert_eq!(v, json!({"a": {"x": 1}, "b": {"c": 1, "d": 2}}));
    }
}
