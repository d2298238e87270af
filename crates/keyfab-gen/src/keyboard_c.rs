//! `qmk generate-keyboard-c`: `g_led_config`, `matrix_mask`, joystick axes
//! and the guessed `chordal_hold_layout`.

use crate::{c_headers, err, py_str, Generated, Result};
use serde_json::Value;

const JOYSTICK_AXES: [&str; 6] = ["x", "y", "z", "rx", "ry", "rz"];

fn size(info: &Value) -> Result<(usize, usize)> {
    let ms = info.get("matrix_size");
    let get = |k: &str| ms.and_then(|m| m.get(k)).and_then(Value::as_u64);
    match (get("rows"), get("cols")) {
        (Some(r), Some(c)) => Ok((r as usize, c as usize)),
        _ => err("the info has no integer matrix_size.rows/cols"),
    }
}

fn matrix_of(v: &Value) -> Result<(usize, usize)> {
    match v.as_array().map(Vec::as_slice) {
        Some([r, c]) => match (r.as_u64(), c.as_u64()) {
            (Some(r), Some(c)) => Ok((r as usize, c as usize)),
            _ => err(format!("matrix position {v} is not two integers")),
        },
        _ => err(format!("matrix position {v} is not [row, col]")),
    }
}

fn led_config(info: &Value, kind: &str) -> Result<Vec<String>> {
    let (rows, cols) = size(info)?;
    let mut matrix = vec![vec!["NO_LED".to_string(); cols]; rows];
    let mut pos = Vec::new();
    let mut flags = Vec::new();
    let zero = Value::from(0);
    let layout = info[kind]["layout"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for (i, led) in layout.iter().enumerate() {
        if let Some(m) = led.get("matrix") {
            let (r, c) = matrix_of(m)?;
            let Some(cell) = matrix.get_mut(r).and_then(|row| row.get_mut(c)) else {
                return err(format!(
                    "{kind}.layout[{i}]: matrix {m} is outside the matrix"
                ));
            };
            *cell = i.to_string();
        }
        pos.push(format!(
            "{{{}, {}}}",
            py_str(led.get("x").unwrap_or(&zero)),
            py_str(led.get("y").unwrap_or(&zero))
        ));
        flags.push(py_str(led.get("flags").unwrap_or(&zero)));
    }
    let mut lines = Vec::new();
    if kind == "rgb_matrix" {
        lines.push("#ifdef RGB_MATRIX_ENABLE".to_string());
        lines.push("#include \"rgb_matrix.h\"".into());
    } else {
        lines.push("#ifdef LED_MATRIX_ENABLE".into());
        lines.push("#include \"led_matrix.h\"".into());
    }
    lines.push("__attribute__ ((weak)) led_config_t g_led_config = {".into());
    lines.push("  {".into());
    for row in &matrix {
        lines.push(format!("    {{ {} }},", row.join(", ")));
    }
    lines.push("  },".into());
    lines.push(format!("  {{ {} }},", pos.join(", ")));
    lines.push(format!("  {{ {} }},", flags.join(", ")));
    lines.push("};".into());
    lines.push("#endif".into());
    lines.push(String::new());
    Ok(lines)
}

fn layouts(info: &Value) -> impl Iterator<Item = (&String, &Value)> {
    info.get("layouts")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.iter())
}

fn layout_keys(data: &Value) -> &[Value] {
    data.get("layout")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn matrix_mask(info: &Value, g: &mut Generated) -> Result<Vec<String>> {
    let (rows, cols) = size(info)?;
    let mut mask = vec![vec!['0'; cols]; rows];
    for (name, data) in layouts(info) {
        for key in layout_keys(data) {
            let Some(m) = key.get("matrix") else {
                return err(format!("{name}: a key has no matrix position"));
            };
            let (r, c) = matrix_of(m)?;
            if r >= rows || c >= cols {
                g.errors.push(format!(
                    "Skipping matrix_mask due to {name} containing invalid matrix values"
                ));
                return Ok(Vec::new());
            }
            mask[r][c] = '1';
        }
    }
    let mut lines = vec![
        "#ifdef MATRIX_MASKED".to_string(),
        "__attribute__((weak)) const matrix_row_t matrix_mask[] = {".into(),
    ];
    for row in &mask {
        let bits: String = row.iter().rev().collect();
        lines.push(format!("    0b{bits},"));
    }
    lines.push("};".into());
    lines.push("#endif".into());
    lines.push(String::new());
    Ok(lines)
}

fn joystick_axes(info: &Value) -> Result<Vec<String>> {
    let Some(axes) = info
        .get("joystick")
        .and_then(|j| j.get("axes"))
        .and_then(Value::as_object)
    else {
        return Ok(Vec::new());
    };
    let mut remaining: Vec<&String> = axes.keys().collect();
    let mut lines = vec![
        "#ifdef JOYSTICK_ENABLE".to_string(),
        "joystick_config_t joystick_axes[JOYSTICK_AXIS_COUNT] = {".into(),
    ];
    for (i, cur) in JOYSTICK_AXES.iter().enumerate() {
        if remaining.is_empty() {
            break;
        }
        let mut axis = None;
        if let Some(a) = axes.get(*cur) {
            remaining.retain(|k| k.as_str() != *cur);
            if a.as_str() != Some("virtual") {
                axis = Some(a);
            }
        }
        match axis {
            None => lines.push(format!("    [{i}] = JOYSTICK_AXIS_VIRTUAL,")),
            Some(a) => {
                let f = |k: &str| -> Result<String> {
                    a.get(k)
                        .map(py_str)
                        .ok_or_else(|| crate::GenError(format!("joystick axis {cur} has no {k}")))
                };
                lines.push(format!(
                    "    [{i}] = JOYSTICK_AXIS_IN({}, {}, {}, {}),",
                    f("input_pin")?,
                    f("low")?,
                    f("rest")?,
                    f("high")?
                ));
            }
        }
    }
    lines.push("};".into());
    lines.push("#endif".into());
    lines.push(String::new());
    Ok(lines)
}

/// One key of a layout, with the geometry the chordal-hold guess uses.
struct Key {
    row: usize,
    col: usize,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    hand: Option<String>,
}

impl Key {
    fn cx(&self) -> f64 {
        self.x + self.w / 2.0
    }
    fn cy(&self) -> f64 {
        self.y + self.h / 2.0
    }
}

fn num(v: Option<&Value>, default: Option<f64>, what: &str) -> Result<f64> {
    match v {
        Some(n) => n
            .as_f64()
            .ok_or_else(|| crate::GenError(format!("key {what} {n} is not a number"))),
        None => default.ok_or_else(|| crate::GenError(format!("a key has no {what}"))),
    }
}

/// Python's `bisect.bisect_left`.
fn bisect_left(xs: &[f64], v: f64) -> usize {
    xs.partition_point(|&x| x < v)
}

fn chordal_hold(info: &Value) -> Result<Vec<String>> {
    let Some((name, data)) = layouts(info).next() else {
        return err("the keyboard has no layouts (QMK fails here too)");
    };
    let mut keys = Vec::new();
    for k in layout_keys(data) {
        let Some(m) = k.get("matrix") else {
            return err(format!("{name}: a key has no matrix position"));
        };
        let (row, col) = matrix_of(m)?;
        keys.push(Key {
            row,
            col,
            x: num(k.get("x"), None, "x")?,
            y: num(k.get("y"), None, "y")?,
            w: num(k.get("w"), Some(1.0), "w")?,
            h: num(k.get("h"), Some(1.0), "h")?,
            hand: match k.get("hand") {
                None | Some(Value::Null) => None,
                Some(h) => Some(py_str(h)),
            },
        });
    }
    if keys.is_empty() {
        return err(format!("{name} has no keys (QMK fails here too)"));
    }
    let x_min = keys.iter().map(Key::cx).fold(f64::INFINITY, f64::min);
    let x_max = keys.iter().map(Key::cx).fold(f64::NEG_INFINITY, f64::max);
    let x_mid = (x_min + x_max) / 2.0;
    let wide: Vec<usize> = (0..keys.len()).filter(|&i| keys[i].w >= 6.0).collect();
    let spacebar = if wide.len() == 1 { Some(wide[0]) } else { None };

    let mut xs: Vec<f64> = keys.iter().map(Key::cx).collect();
    xs.sort_by(f64::total_cmp);
    let tol = 0.02;
    let symmetric = xs.iter().all(|&x| {
        let mirrored = 2.0 * x_mid - x;
        let j = bisect_left(&xs, mirrored - tol);
        j < xs.len() && (xs[j] - mirrored).abs() <= tol
    });

    let signs: Vec<f64> = if symmetric {
        keys.iter().map(|k| k.x - x_mid).collect()
    } else if let Some(s) = spacebar {
        let x0 = keys[s].cx() - 0.05;
        let y0 = keys[s].cy() - 1.0;
        keys.iter().map(|k| (k.x - x0) - (k.y - y0) / 3.0).collect()
    } else {
        let mut mid = x_mid;
        let mut max_sep = 0.0;
        for w in xs.windows(2) {
            let sep = w[1] - w[0];
            if sep > max_sep {
                max_sep = sep;
                mid = (w[1] + w[0]) / 2.0;
            }
        }
        keys.iter().map(|k| k.x - mid).collect()
    };
    // Python compares keys with the dataclass `==` (field by field), so any
    // key equal to the spacebar counts as the spacebar.
    let is_spacebar = |i: usize| {
        spacebar.is_some_and(|s| {
            let (a, b) = (&keys[i], &keys[s]);
            a.row == b.row
                && a.col == b.col
                && a.x == b.x
                && a.y == b.y
                && a.w == b.w
                && a.h == b.h
                && a.hand == b.hand
        })
    };
    let mut hands = Vec::with_capacity(keys.len());
    for (i, sign) in signs.iter().enumerate() {
        hands.push(match &keys[i].hand {
            Some(h) => h.clone(),
            None if is_spacebar(i) || sign.abs() <= 0.02 => "*".to_string(),
            None if *sign < 0.0 => "L".to_string(),
            None => "R".to_string(),
        });
    }

    let mut lines = vec!["#ifdef CHORDAL_HOLD".to_string()];
    let mut line = format!(
        "__attribute__((weak)) const char chordal_hold_layout[MATRIX_ROWS][MATRIX_COLS] PROGMEM = {name}("
    );
    let mut x_prev: Option<f64> = None;
    for (k, hand) in keys.iter().zip(&hands) {
        if x_prev.is_none_or(|p| k.x < p) {
            lines.push(std::mem::replace(&mut line, "  ".to_string()));
        }
        line.push_str(&format!("'{hand}', "));
        x_prev = Some(k.x);
    }
    line.truncate(line.len().saturating_sub(2));
    lines.push(line);
    lines.push(");".into());
    lines.push("#endif".into());
    Ok(lines)
}

/// `qmk generate-keyboard-c --keyboard KB`.
pub fn keyboard_c(info: &Value, year: i32) -> Result<Generated> {
    let mut g = Generated::default();
    let mut lines = c_headers(year);
    lines.push("#include QMK_KEYBOARD_H".into());
    lines.push(String::new());
    if info
        .get("rgb_matrix")
        .and_then(|m| m.get("layout"))
        .is_some()
    {
        lines.extend(led_config(info, "rgb_matrix")?);
    }
    if info
        .get("led_matrix")
        .and_then(|m| m.get("layout"))
        .is_some()
    {
        lines.extend(led_config(info, "led_matrix")?);
    }
    lines.extend(matrix_mask(info, &mut g)?);
    lines.extend(joystick_axes(info)?);
    lines.extend(chordal_hold(info)?);
    g.lines = lines;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(r: u64, c: u64, x: f64, y: f64) -> Value {
        json!({"matrix": [r, c], "x": x, "y": y})
    }

    #[test]
    fn symmetric_split() {
        let info = json!({
            "matrix_size": {"rows": 2, "cols": 2},
            "layouts": {"LAYOUT": {"layout": [key(0, 0, 0.0, 0.0), key(1, 0, 3.0, 0.0), key(0, 1, 0.0, 1.0), key(1, 1, 3.0, 1.0)]}}
        });
        let out = keyboard_c(&info, 2026).unwrap().contents();
        assert!(out.contains("#include QMK_KEYBOARD_H\n\n#ifdef MATRIX_MASKED\n__attribute__((weak)) const matrix_row_t matrix_mask[] = {\n    0b11,\n    0b11,\n};\n#endif\n\n#ifdef CHORDAL_HOLD\n"));
        assert!(
            out.ends_with("PROGMEM = LAYOUT(\n  'L', 'R', \n  'L', 'R'\n);\n#endif\n"),
            "{out}"
        );
    }

    #[test]
    fn spacebar_and_explicit_hand() {
        let mut keys = vec![
            key(0, 0, 0.0, 0.0),
            key(0, 1, 1.0, 0.0),
            key(0, 2, 5.0, 0.0),
        ];
        keys.push(json!({"matrix": [1, 0], "x": 0, "y": 1, "w": 6.25}));
        keys[1]["hand"] = json!("R");
        let info =
            json!({"matrix_size": {"rows": 2, "cols": 3}, "layouts": {"L": {"layout": keys}}});
        let out = keyboard_c(&info, 2026).unwrap().contents();
        assert!(out.contains("    0b111,\n    0b001,\n"));
        assert!(
            out.ends_with("= L(\n  'L', 'R', 'R', \n  '*'\n);\n#endif\n"),
            "{out}"
        );
    }

    #[test]
    fn led_config_and_joystick() {
        let info = json!({
            "matrix_size": {"rows": 1, "cols": 2},
            "layouts": {"L": {"layout": [key(0, 0, 0.0, 0.0), key(0, 1, 1.0, 0.0)]}},
            "rgb_matrix": {"layout": [{"matrix": [0, 1], "x": 224, "y": 32.5, "flags": 4}, {"x": 0, "y": 0}]},
            "joystick": {"axes": {"y": {"input_pin": "B4", "low": 0, "rest": 512, "high": 1023}, "rx": "virtual"}}
        });
        let out = keyboard_c(&info, 2026).unwrap().contents();
        assert!(out.contains("#ifdef RGB_MATRIX_ENABLE\n#include \"rgb_matrix.h\"\n__attribute__ ((weak)) led_config_t g_led_config = {\n  {\n    { NO_LED, 0 },\n  },\n  { {224, 32.5}, {0, 0} },\n  { 4, 0 },\n};\n#endif\n\n"));
        assert!(out.contains("joystick_config_t joystick_axes[JOYSTICK_AXIS_COUNT] = {\n    [0] = JOYSTICK_AXIS_VIRTUAL,\n    [1] = JOYSTICK_AXIS_IN(B4, 0, 512, 1023),\n    [2] = JOYSTICK_AXIS_VIRTUAL,\n    [3] = JOYSTICK_AXIS_VIRTUAL,\n};\n#endif\n\n"));
    }

    #[test]
    fn invalid_matrix_skips_mask() {
        let info = json!({"matrix_size": {"rows": 1, "cols": 1}, "layouts": {"L": {"layout": [key(0, 0, 0.0, 0.0), key(0, 3, 1.0, 0.0)]}}});
        let g = keyboard_c(&info, 2026).unwrap();
        assert_eq!(
            g.errors,
            ["Skipping matrix_mask due to L containing invalid matrix values"]
        );
        assert!(!g.contents().contains("MATRIX_MASKED"));
    }
}
