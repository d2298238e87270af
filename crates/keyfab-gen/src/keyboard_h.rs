//! `qmk generate-keyboard-h`: `LAYOUT` macros from data-driven layouts,
//! layout aliases and keyboard-level keycodes.

use crate::{c_headers, err, py_str, Generated, Result, COL_LETTERS, ROW_LETTERS};
use serde_json::Value;

fn matrix_of(key: &Value) -> Option<(usize, usize)> {
    let m = key.get("matrix")?.as_array()?;
    if m.len() != 2 {
        return None;
    }
    Some((m[0].as_u64()? as usize, m[1].as_u64()? as usize))
}

fn size(info: &Value) -> Option<(usize, usize)> {
    let ms = info.get("matrix_size")?;
    Some((
        ms.get("rows")?.as_u64()? as usize,
        ms.get("cols")?.as_u64()? as usize,
    ))
}

/// `_generate_layouts`: empty when QMK logs an error and gives up.
fn layouts(keyboard: &str, info: &Value, g: &mut Generated) -> Result<Vec<String>> {
    let Some((rows, cols)) = size(info) else {
        if info.get("matrix_size").is_none() {
            g.errors.push(format!("{keyboard}: Invalid matrix config."));
            return Ok(Vec::new());
        }
        return err("matrix_size must have integer rows and cols");
    };
    let mut lines = vec![
        String::new(),
        "// Layout content".into(),
        String::new(),
        "#define XXX KC_NO".into(),
    ];
    let empty = serde_json::Map::new();
    let all = info
        .get("layouts")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (name, data) in all {
        if data.get("c_macro").is_some_and(crate::truthy) {
            continue;
        }
        let keys = data
            .get("layout")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if !keys.iter().all(|k| k.get("matrix").is_some()) {
            continue;
        }
        let mut ids = Vec::with_capacity(keys.len());
        let mut grid = vec![vec!["XXX".to_string(); cols]; rows];
        for k in keys {
            let Some((row, col)) = matrix_of(k) else {
                return err(format!("{name}: a key's matrix is not [row, col]"));
            };
            let (Some(r), Some(c)) = (ROW_LETTERS.get(row..row + 1), COL_LETTERS.get(col..col + 1))
            else {
                return err(format!(
                    "{name}: matrix position [{row}, {col}] is out of range"
                ));
            };
            let id = format!("k{r}{c}");
            if row >= rows || col >= cols {
                g.errors.push(format!(
                    "Skipping layouts due to {name} containing invalid matrix values"
                ));
                return Ok(Vec::new());
            }
            grid[row][col] = id.clone();
            ids.push(id);
        }
        lines.push(String::new());
        lines.push(format!("#define {name}({}) {{ \\", ids.join(", ")));
        let mut body = grid
            .iter()
            .map(|r| format!("    {{ {} }}", r.join(", ")))
            .collect::<Vec<_>>()
            .join(", \\\n");
        body.push_str(" \\");
        lines.push(body);
        lines.push("}".into());
    }
    if let Some(aliases) = info.get("layout_aliases").and_then(Value::as_object) {
        for (alias, target) in aliases {
            lines.push(String::new());
            lines.push(format!("#ifndef {alias}"));
            lines.push(format!("#   define {alias} {}", py_str(target)));
            lines.push("#endif".into());
        }
    }
    Ok(lines)
}

fn keycodes(info: &Value) -> Vec<String> {
    let Some(codes) = info.get("keycodes") else {
        return Vec::new();
    };
    let codes = codes.as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut lines = vec![
        String::new(),
        "// Keycode content".into(),
        String::new(),
        "enum keyboard_keycodes {".into(),
    ];
    for (i, item) in codes.iter().enumerate() {
        let key = item.get("key").map(py_str).unwrap_or_default();
        if i == 0 {
            lines.push(format!("  {key} = QK_KB_0,"));
        } else {
            lines.push(format!("  {key},"));
        }
    }
    lines.push("};".into());
    for item in codes {
        let key = item.get("key").map(py_str).unwrap_or_default();
        for alias in item
            .get("aliases")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            lines.push(format!("#define {} {key}", py_str(alias)));
        }
    }
    lines
}

/// `qmk generate-keyboard-h --keyboard KB [--include FILE]`. `include` is the
/// `--include` argument as given (only its file name is used).
pub fn keyboard_h(
    keyboard: &str,
    info: &Value,
    include: Option<&str>,
    year: i32,
) -> Result<Generated> {
    let mut g = Generated::default();
    let dd_layouts = layouts(keyboard, info, &mut g)?;
    let dd_keycodes = keycodes(info);
    let include = include.filter(|s| !s.is_empty());
    let valid = !dd_layouts.is_empty() || include.is_some();
    let mut lines = c_headers(year);
    lines.push("#pragma once".into());
    lines.push(String::new());
    lines.push("#include \"quantum.h\"".into());
    lines.extend(dd_layouts);
    if let Some(inc) = include {
        lines.push(format!("#include \"{}\"", crate::path_name(inc)));
    }
    lines.extend(dd_keycodes);
    if !valid {
        lines.push("#error(\"<keyboard>.h is required unless your keyboard uses data-driven configuration. Please rename your keyboard's header file to <keyboard>.h\")".into());
    }
    g.lines = lines;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info() -> Value {
        json!({
            "matrix_size": {"rows": 2, "cols": 3},
            "layouts": {
                "LAYOUT": {"c_macro": false, "layout": [
                    {"matrix": [0, 0], "x": 0, "y": 0}, {"matrix": [0, 2], "x": 1, "y": 0},
                    {"matrix": [1, 1], "x": 0, "y": 1}]},
                "LAYOUT_c": {"c_macro": true, "layout": [{"matrix": [0, 0], "x": 0, "y": 0}]},
                "LAYOUT_nomatrix": {"c_macro": false, "layout": [{"x": 0, "y": 0}]}
            },
            "layout_aliases": {"LAYOUT_all": "LAYOUT"},
            "keycodes": [{"key": "KB_A", "aliases": ["KA", "KAA"]}, {"key": "KB_B"}]
        })
    }

    #[test]
    fn layouts_aliases_keycodes() {
        let out = keyboard_h("kb", &info(), Some("keyboards/kb/kb.h"), 2025)
            .unwrap()
            .contents();
        let tail = "#pragma once\n\n#include \"quantum.h\"\n\n// Layout content\n\n#define XXX KC_NO\n\n\
#define LAYOUT(k0A, k0C, k1B) { \\\n    { k0A, XXX, k0C }, \\\n    { XXX, k1B, XXX } \\\n}\n\n\
#ifndef LAYOUT_all\n#   define LAYOUT_all LAYOUT\n#endif\n#include \"kb.h\"\n\n// Keycode content\n\n\
enum keyboard_keycodes {\n  KB_A = QK_KB_0,\n  KB_B,\n};\n#define KA KB_A\n#define KAA KB_A\n";
        assert!(out.ends_with(tail), "{out}");
    }

    #[test]
    fn out_of_range_skips_layouts_and_errors() {
        let mut i = info();
        i["matrix_size"]["rows"] = json!(1);
        i.as_object_mut().unwrap().remove("keycodes");
        let g = keyboard_h("kb", &i, None, 2025).unwrap();
        assert_eq!(
            g.errors,
            ["Skipping layouts due to LAYOUT containing invalid matrix values"]
        );
        assert!(g.contents().ends_with("#include \"quantum.h\"\n#error(\"<keyboard>.h is required unless your keyboard uses data-driven configuration. Please rename your keyboard's header file to <keyboard>.h\")\n"));
    }

    #[test]
    fn no_matrix_size() {
        let g = keyboard_h("kb", &json!({"layouts": {}}), Some("kb.h"), 2025).unwrap();
        assert_eq!(g.errors, ["kb: Invalid matrix config."]);
        assert!(g
            .contents()
            .ends_with("#include \"quantum.h\"\n#include \"kb.h\"\n"));
    }
}
