//! `qmk generate-config-h`: `info_config.h` of a keyboard (every mapping of
//! `data/mappings/info_config.hjson` read back into C, plus matrix, pins,
//! encoders, split and LED settings), or the `config.h` of a keymap.json's
//! `config` (then every define is `#undef`/`#define`).

use crate::{c_headers, dotty_get, err, py_str, truthy, GenError, Generated, MapEntry, Result};
use serde_json::Value;

struct Ctx {
    keymap: bool,
}

impl Ctx {
    fn flag(&self, define: &str, on: bool) -> String {
        match (self.keymap, on) {
            (_, true) => format!("\n#define {define}"),
            (true, false) => format!("\n#undef {define}"),
            (false, false) => String::new(),
        }
    }

    fn define(&self, define: &str, value: Option<&str>) -> String {
        let value = value.map(|v| format!(" {v}")).unwrap_or_default();
        if self.keymap {
            format!("\n#undef {define}\n#define {define}{value}")
        } else {
            format!("\n#ifndef {define}\n#    define {define}{value}\n#endif // {define}")
        }
    }

    /// `generate_define(define, value)` with a JSON value (`None` → no value).
    fn define_value(&self, define: &str, value: &Value) -> String {
        match value {
            Value::Null => self.define(define, None),
            v => self.define(define, Some(&py_str(v))),
        }
    }
}

/// `map(str, x)` over what Python would iterate: list items, a string's
/// characters, an object's keys.
fn py_iter_str(v: &Value) -> Result<Vec<String>> {
    Ok(match v {
        Value::Array(a) => a.iter().map(py_str).collect(),
        Value::String(s) => s.chars().map(String::from).collect(),
        Value::Object(o) => o.keys().cloned().collect(),
        other => {
            return err(format!(
                "'{}' object is not iterable",
                keyfab_info::dotty::py_type(other)
            ))
        }
    })
}

/// `x or 'NO_PIN'`, then `str`.
fn pin_or_no_pin(v: &Value) -> String {
    if truthy(v) {
        py_str(v)
    } else {
        "NO_PIN".into()
    }
}

fn items(v: &Value) -> Result<Vec<&Value>> {
    match v {
        Value::Array(a) => Ok(a.iter().collect()),
        other => err(format!("expected a list, found {other}")),
    }
}

fn matrix_pins(ctx: &Ctx, pins: &Value, postfix: &str) -> Result<String> {
    let mut out = Vec::new();
    if let Some(direct) = pins.get("direct") {
        let rows = items(direct)?
            .into_iter()
            .map(|row| {
                let cols: Vec<String> = items(row)?.into_iter().map(pin_or_no_pin).collect();
                Ok(format!("{{{}}}", cols.join(",")))
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(ctx.define(
            &format!("DIRECT_PINS{postfix}"),
            Some(&format!("{{ {} }}", rows.join(", "))),
        ));
    }
    for (key, name) in [("cols", "MATRIX_COL"), ("rows", "MATRIX_ROW")] {
        if let Some(list) = pins.get(key) {
            let p: Vec<String> = items(list)?.into_iter().map(pin_or_no_pin).collect();
            out.push(ctx.define(
                &format!("{name}_PINS{postfix}"),
                Some(&format!("{{ {} }}", p.join(", "))),
            ));
        }
    }
    Ok(out.join("\n"))
}

fn config_items(ctx: &Ctx, info: &Value, maps: &[MapEntry], lines: &mut Vec<String>) -> Result<()> {
    for m in maps {
        if !m.to_c {
            continue;
        }
        let value = match dotty_get(info, m.info_key) {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(e) => return err(format!("{}: {e}", m.info_key)),
        };
        let t = m.value_type;
        let key = m.key;
        if t.starts_with("array.array") {
            let inner = py_iter_str_values(value)?
                .iter()
                .map(|x| Ok(format!("{{{}}}", py_iter_str(x)?.join(","))))
                .collect::<Result<Vec<_>>>()?;
            lines.push(ctx.define(key, Some(&format!("{{ {} }}", inner.join(", ")))));
        } else if t.starts_with("array") {
            let v = py_iter_str(value)?;
            lines.push(ctx.define(key, Some(&format!("{{ {} }}", v.join(", ")))));
        } else if t == "bool" {
            lines.push(ctx.define(key, Some(if truthy(value) { "true" } else { "false" })));
        } else if t == "flag" {
            lines.push(ctx.flag(key, truthy(value)));
        } else if t == "mapping" {
            let Value::Object(o) = value else {
                return err(format!("{}: a mapping value must be an object", m.info_key));
            };
            for (k, v) in o {
                lines.push(ctx.define_value(k, v));
            }
        } else if t == "str" {
            let Value::String(s) = value else {
                return err(format!("{}: a str value must be a string", m.info_key));
            };
            let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
            lines.push(ctx.define(key, Some(&format!("\"{escaped}\""))));
        } else if t == "bcd_version" {
            let Value::String(s) = value else {
                return err(format!("{}: a bcd_version must be a string", m.info_key));
            };
            let parts: Vec<&str> = s.split('.').collect();
            let [major, minor, rev] = parts.as_slice() else {
                return err(format!("{}: {s:?} is not MAJOR.MINOR.REVISION", m.info_key));
            };
            let major = if major.chars().count() < 2 {
                format!("{major:0>2}")
            } else {
                major.to_string()
            };
            lines.push(ctx.define(key, Some(&format!("0x{major}{minor}{rev}"))));
        } else {
            lines.push(ctx.define_value(key, value));
        }
    }
    Ok(())
}

fn py_iter_str_values(v: &Value) -> Result<Vec<Value>> {
    Ok(match v {
        Value::Array(a) => a.clone(),
        Value::String(s) => s.chars().map(|c| Value::String(c.to_string())).collect(),
        Value::Object(o) => o.keys().map(|k| Value::String(k.clone())).collect(),
        other => {
            return err(format!(
                "'{}' object is not iterable",
                keyfab_info::dotty::py_type(other)
            ))
        }
    })
}

fn str_list(v: &Value, what: &str) -> Result<Vec<String>> {
    items(v)?
        .into_iter()
        .map(|x| {
            x.as_str().map(String::from).ok_or_else(|| {
                GenError(format!(
                    "{what}: sequence item: expected str instance, found {x}"
                ))
            })
        })
        .collect()
}

fn encoder_config(ctx: &Ctx, enc: &Value, lines: &mut Vec<String>, postfix: &str) -> Result<()> {
    let rotary = match enc.get("rotary") {
        Some(r) => items(r)?,
        None => Vec::new(),
    };
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut res: Vec<Option<&Value>> = Vec::new();
    for e in &rotary {
        let pin = |k: &str| -> Result<String> {
            match e.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(o) => err(format!("encoder {k} must be a string, not {o}")),
                None => err(format!("an encoder has no {k}")),
            }
        };
        a.push(pin("pin_a")?);
        b.push(pin("pin_b")?);
        res.push(e.get("resolution").filter(|v| !v.is_null()));
    }
    lines.push(ctx.define(
        &format!("ENCODER_A_PINS{postfix}"),
        Some(&format!("{{ {} }}", a.join(", "))),
    ));
    lines.push(ctx.define(
        &format!("ENCODER_B_PINS{postfix}"),
        Some(&format!("{{ {} }}", b.join(", "))),
    ));
    if res.iter().all(Option::is_none) {
        return Ok(());
    }
    let four = Value::from(4);
    let res: Vec<&Value> = res.into_iter().map(|r| r.unwrap_or(&four)).collect();
    let same = |x: &Value, y: &Value| match (x.as_f64(), y.as_f64()) {
        (Some(p), Some(q)) => p == q,
        _ => x == y,
    };
    if res.iter().all(|r| same(r, res[0])) {
        lines.push(ctx.define_value(&format!("ENCODER_RESOLUTION{postfix}"), res[0]));
    } else {
        let all: Vec<String> = res.iter().map(|r| py_str(r)).collect();
        lines.push(ctx.define(
            &format!("ENCODER_RESOLUTIONS{postfix}"),
            Some(&format!("{{ {} }}", all.join(", "))),
        ));
    }
    Ok(())
}

fn split_config(ctx: &Ctx, split: &Value, lines: &mut Vec<String>) -> Result<()> {
    if let Some(grid) = split.get("handedness").and_then(|h| h.get("matrix_grid")) {
        let g = str_list(grid, "split.handedness.matrix_grid")?;
        lines.push(ctx.define("SPLIT_HAND_MATRIX_GRID", Some(&g.join(", "))));
    }
    if split
        .get("transport")
        .and_then(|t| t.get("protocol"))
        .is_some_and(|p| p.as_str() == Some("i2c"))
    {
        lines.push(ctx.define("USE_I2C", None));
    }
    if let Some(right) = split.get("matrix_pins").and_then(|m| m.get("right")) {
        lines.push(matrix_pins(ctx, right, "_RIGHT")?);
    }
    if let Some(right) = split.get("encoder").and_then(|m| m.get("right")) {
        encoder_config(ctx, right, lines, "_RIGHT")?;
    }
    Ok(())
}

fn led_animations(
    ctx: &Ctx,
    feature: &str,
    json: &Value,
    lines: &mut Vec<String>,
    enable_prefix: &str,
    animation_prefix: &str,
) {
    if let Some(anim) = json.get("default").and_then(|d| d.get("animation")) {
        lines.push(ctx.define(
            &format!("{}_DEFAULT_MODE", crate::upper(feature)),
            Some(&format!(
                "{animation_prefix}{}",
                crate::upper(&py_str(anim))
            )),
        ));
    }
    if let Some(Value::Object(anims)) = json.get("animations") {
        for (name, on) in anims {
            lines.push(ctx.flag(
                &format!("{enable_prefix}{}", crate::upper(name)),
                truthy(on),
            ));
        }
    }
}

/// `qmk generate-config-h`. For a keyboard, `info` is its merged info and
/// `keymap` false; for a keymap.json, `info` is the keymap's `config` object
/// (or `{}`) and `keymap` true. `maps` is `info_config.hjson` in file order.
pub fn config_h(info: &Value, maps: &[MapEntry], keymap: bool, year: i32) -> Result<Generated> {
    let ctx = Ctx { keymap };
    let mut lines = c_headers(year);
    lines.push("#pragma once".into());
    config_items(&ctx, info, maps, &mut lines)?;
    if let Some(ms) = info.get("matrix_size") {
        let get = |k: &str| {
            ms.get(k)
                .ok_or_else(|| GenError(format!("matrix_size has no {k}")))
        };
        lines.push(ctx.define_value("MATRIX_COLS", get("cols")?));
        lines.push(ctx.define_value("MATRIX_ROWS", get("rows")?));
    }
    if let Some(p) = info.get("matrix_pins") {
        lines.push(matrix_pins(&ctx, p, "")?);
    }
    if let Some(e) = info.get("encoder") {
        encoder_config(&ctx, e, &mut lines, "")?;
    }
    if let Some(s) = info.get("split") {
        split_config(&ctx, s, &mut lines)?;
    }
    for (feature, enable, anim) in [
        ("led_matrix", "ENABLE_LED_MATRIX_", "LED_MATRIX_"),
        ("rgb_matrix", "ENABLE_RGB_MATRIX_", "RGB_MATRIX_"),
        ("rgblight", "RGBLIGHT_EFFECT_", "RGBLIGHT_MODE_"),
    ] {
        if let Some(j) = info.get(feature) {
            led_animations(&ctx, feature, j, &mut lines, enable, anim);
        }
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

    fn body(info: Value, maps: &[MapEntry], keymap: bool) -> String {
        let out = config_h(&info, maps, keymap, 2026).unwrap().contents();
        out.split_once("#pragma once").unwrap().1.to_string()
    }

    #[test]
    fn value_types() {
        let maps = [
            m("A", "a", "array"),
            m("AA", "aa", "array.array.int"),
            m("B", "b", "bool"),
            m("F", "f", "flag"),
            m("F0", "f0", "flag"),
            m("M", "m", "mapping"),
            m("S", "s", "str"),
            m("V", "v", "bcd_version"),
            m("R", "r.x", "raw"),
            m("MISSING", "nope", "raw"),
            MapEntry {
                to_c: false,
                ..m("H", "a", "raw")
            },
        ];
        let info = json!({"a": ["B1", 2], "aa": [[1, 2], [3]], "b": 0, "f": true, "f0": false,
            "m": {"X": 1, "Y": null}, "s": "a\"b\\", "v": "1.2.3", "r": {"x": 1.5}});
        assert_eq!(
            body(info, &maps, false),
            "\n\n#ifndef A\n#    define A { B1, 2 }\n#endif // A\n\
             \n#ifndef AA\n#    define AA { {1,2}, {3} }\n#endif // AA\n\
             \n#ifndef B\n#    define B false\n#endif // B\n\
             \n#define F\n\n\
             \n#ifndef X\n#    define X 1\n#endif // X\n\
             \n#ifndef Y\n#    define Y\n#endif // Y\n\
             \n#ifndef S\n#    define S \"a\\\"b\\\\\"\n#endif // S\n\
             \n#ifndef V\n#    define V 0x0123\n#endif // V\n\
             \n#ifndef R\n#    define R 1.5\n#endif // R\n"
        );
    }

    #[test]
    fn keymap_style_undefs() {
        let maps = [m("F", "f", "flag"), m("N", "n", "int")];
        assert_eq!(
            body(json!({"f": false, "n": 3}), &maps, true),
            "\n\n#undef F\n\n#undef N\n#define N 3\n"
        );
    }

    #[test]
    fn matrix_pins_encoders_split_leds() {
        let info = json!({
            "matrix_size": {"cols": 2, "rows": 1},
            "matrix_pins": {"direct": [["A0", null]], "cols": ["B0", "B1"]},
            "encoder": {"rotary": [{"pin_a": "C0", "pin_b": "C1"}, {"pin_a": "C2", "pin_b": "C3", "resolution": 2}]},
            "split": {"handedness": {"matrix_grid": ["A1", "B2"]}, "transport": {"protocol": "i2c"},
                      "matrix_pins": {"right": {"rows": ["D0"]}}, "encoder": {"right": {"rotary": []}}},
            "rgb_matrix": {"default": {"animation": "cycle_all"}, "animations": {"breathing": true, "band": false}}
        });
        let b = body(info, &[], false);
        assert!(b.contains("#    define MATRIX_COLS 2\n"));
        assert!(b.contains("#    define DIRECT_PINS { {A0,NO_PIN} }\n#endif // DIRECT_PINS\n\n#ifndef MATRIX_COL_PINS\n#    define MATRIX_COL_PINS { B0, B1 }\n"));
        assert!(b.contains("#    define ENCODER_RESOLUTIONS { 4, 2 }\n"));
        assert!(b.contains("#    define SPLIT_HAND_MATRIX_GRID A1, B2\n"));
        assert!(b.contains("\n#ifndef USE_I2C\n#    define USE_I2C\n#endif // USE_I2C\n"));
        assert!(b.contains("#    define MATRIX_ROW_PINS_RIGHT { D0 }\n"));
        assert!(b.contains("#    define ENCODER_A_PINS_RIGHT {  }\n"));
        assert!(b.ends_with("#    define RGB_MATRIX_DEFAULT_MODE RGB_MATRIX_CYCLE_ALL\n#endif // RGB_MATRIX_DEFAULT_MODE\n\n#define ENABLE_RGB_MATRIX_BREATHING\n\n"));
    }
}
