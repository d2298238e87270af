//! `qmk generate-rules-mk`: `info_rules.mk` of a keyboard (mappings of
//! `data/mappings/info_rules.hjson`, features, split transport, custom
//! matrix) or the `rules.mk` of a keymap.json's `config`.

use crate::{dotty_get, err, py_str, sh_headers, truthy, Generated, MapEntry, Result};
use serde_json::Value;

fn rule(keymap: bool, key: &str, value: &str) -> String {
    format!("{key} {} {value}", if keymap { "=" } else { "?=" })
}

fn mapping_rule(info: &Value, m: &MapEntry, keymap: bool) -> Result<Option<String>> {
    if !m.to_c {
        return Ok(None);
    }
    let value = match dotty_get(info, m.info_key) {
        Ok(Some(v)) => v,
        Ok(None) => return Ok(None),
        Err(e) => return err(format!("{}: {e}", m.info_key)),
    };
    let key = m.key;
    Ok(Some(match m.value_type {
        "array" | "list" => {
            let words = match value {
                Value::Array(a) => a
                    .iter()
                    .map(|x| {
                        x.as_str().map(String::from).ok_or_else(|| {
                            crate::GenError(format!(
                                "{}: sequence item: expected str instance, found {x}",
                                m.info_key
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
                Value::String(s) => s.chars().map(String::from).collect(),
                other => return err(format!("{}: cannot join {other}", m.info_key)),
            };
            rule(keymap, key, &words.join(" "))
        }
        "bool" => rule(keymap, key, if truthy(value) { "yes" } else { "no" }),
        "mapping" => {
            let Value::Object(o) = value else {
                return err(format!("{}: a mapping value must be an object", m.info_key));
            };
            o.iter()
                .map(|(k, v)| rule(keymap, k, &py_str(v)))
                .collect::<Vec<_>>()
                .join("\n")
        }
        "str" => rule(keymap, key, &format!("\"{}\"", py_str(value))),
        _ => rule(keymap, key, &py_str(value)),
    }))
}

/// `qmk generate-rules-mk`. For a keyboard, `info` is its merged info and
/// `keymap` false (rules use `?=`); for a keymap.json, `info` is its
/// `config` (or `{}`), `keymap` true (`=`), and `converter` its `converter`.
/// `maps` is `info_rules.hjson` in file order.
pub fn rules_mk(
    info: &Value,
    maps: &[MapEntry],
    keymap: bool,
    converter: Option<&Value>,
    year: i32,
) -> Result<Generated> {
    let mut lines = sh_headers(year);
    for m in maps {
        if let Some(entry) = mapping_rule(info, m, keymap)? {
            if !entry.is_empty() {
                lines.push(entry);
            }
        }
    }
    if let Some(features) = info.get("features") {
        let Value::Object(f) = features else {
            return err("features must be an object");
        };
        for (name, on) in f {
            let on = if truthy(on) { "yes" } else { "no" };
            lines.push(rule(keymap, &format!("{}_ENABLE", crate::upper(name)), on));
        }
    }
    let get2 = |a: &str, b: &str| info.get(a).and_then(|x| x.get(b));
    if get2("split", "transport")
        .and_then(|t| t.get("protocol"))
        .and_then(Value::as_str)
        == Some("custom")
    {
        lines.push(rule(keymap, "SPLIT_TRANSPORT", "custom"));
    }
    if get2("matrix_pins", "custom_lite").is_some_and(truthy) {
        lines.push(rule(keymap, "CUSTOM_MATRIX", "lite"));
    } else if get2("matrix_pins", "custom").is_some_and(truthy) {
        lines.push(rule(keymap, "CUSTOM_MATRIX", "yes"));
    }
    if let Some(c) = converter.filter(|c| truthy(c)) {
        lines.push(rule(keymap, "CONVERT_TO", &py_str(c)));
    }
    Ok(Generated::new(lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m<'a>(key: &'a str, info_key: &'a str, t: &'a str) -> MapEntry<'a> {
        MapEntry {
            key,
            info_key,
            value_type: t,
            to_c: true,
        }
    }

    #[test]
    fn keyboard_rules() {
        let maps = [
            m("BOOTLOADER", "bootloader", "raw"),
            m("L", "l", "list"),
            m("B", "b", "bool"),
            m("S", "s", "str"),
            m("M", "m", "mapping"),
            m("E", "e", "mapping"),
            m("X", "nope", "raw"),
        ];
        let info = json!({"bootloader": "atmel-dfu", "l": ["a", "b"], "b": 1, "s": "x", "m": {"K": 2}, "e": {},
            "features": {"bootmagic": true, "rgblight": false},
            "split": {"transport": {"protocol": "custom"}}, "matrix_pins": {"custom_lite": true}});
        let out = rules_mk(&info, &maps, false, None, 2026)
            .unwrap()
            .contents();
        assert!(out.ends_with("#\n\nBOOTLOADER ?= atmel-dfu\nL ?= a b\nB ?= yes\nS ?= \"x\"\nK ?= 2\nBOOTMAGIC_ENABLE ?= yes\nRGBLIGHT_ENABLE ?= no\nSPLIT_TRANSPORT ?= custom\nCUSTOM_MATRIX ?= lite\n"), "{out}");
    }

    #[test]
    fn keymap_rules_and_converter() {
        let out = rules_mk(
            &json!({"features": {"x": false}}),
            &[],
            true,
            Some(&json!("rp2040_ce")),
            2026,
        )
        .unwrap()
        .contents();
        assert!(out.ends_with("#\n\nX_ENABLE = no\nCONVERT_TO = rp2040_ce\n"));
        assert!(out.starts_with("# Copyright 2026 QMK\n"));
    }
}
