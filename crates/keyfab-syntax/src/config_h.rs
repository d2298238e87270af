//! The `config.h` subset QMK reads: `#define` and `#undef`, after joining
//! line continuations and removing comments (QMK's `parse_config_h_file`).

use crate::Diagnostic;
use indexmap::IndexMap;

/// A define's value: `#define X` is `Flag(true)`; `#undef X` of a valued
/// define leaves `Flag(false)` behind, as QMK does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigValue {
    Flag(bool),
    Text(String),
}

/// Macro name → value, in first-definition order.
pub type ConfigH = IndexMap<String, ConfigValue>;

/// Apply the defines of `text` on top of `config`; returns the diagnostics
/// QMK would log (incomplete `#define`/`#undef`), with QMK's line numbers
/// (0-based, counted after continuations and block comments are removed).
pub fn parse_config_h(path: &str, text: &str, config: &mut ConfigH) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let joined = text.replace("\\\n", "");
    let stripped = strip_block_comments(&joined);
    for (linenum, line) in stripped.split('\n').enumerate() {
        let line = strip_line_comment(line);
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = words.first() else { continue };
        match *first {
            "#define" => match words.len() {
                1 => diags.push(Diagnostic {
                    path: path.to_string(),
                    line: linenum,
                    message: format!("Incomplete #define! On or around line {linenum}"),
                }),
                2 => {
                    config.insert(words[1].to_string(), ConfigValue::Flag(true));
                }
                _ => {
                    config.insert(
                        words[1].to_string(),
                        ConfigValue::Text(words[2..].join(" ")),
                    );
                }
            },
            "#undef" => {
                if words.len() == 2 {
                    if let Some(v) = config.get_mut(words[1]) {
                        if *v == ConfigValue::Flag(true) {
                            config.shift_remove(words[1]);
                        } else {
                            *v = ConfigValue::Flag(false);
                        }
                    }
                } else {
                    diags.push(Diagnostic {
                        path: path.to_string(),
                        line: linenum,
                        message: format!("Incomplete #undef! On or around line {linenum}"),
                    });
                }
            }
            _ => {}
        }
    }
    diags
}

/// QMK's `multi_comment_regex`: `/\*(.|\n)*?\*/`, non-greedy.
fn strip_block_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find("*/") {
            Some(end) => rest = &rest[start + 2 + end + 2..],
            None => {
                // No terminator: the regex does not match, the text stays.
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// QMK's `single_comment_regex`: `\s+/[/*].*$`, then `.strip()`. A comment
/// needs whitespace before it; `#define A 1//x` keeps its `//x`.
fn strip_line_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut i = 1;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/'
            && (bytes[i + 1] == b'/' || bytes[i + 1] == b'*')
            && (bytes[i - 1] as char).is_ascii_whitespace()
        {
            let mut start = i - 1;
            while start > 0 && (bytes[start - 1] as char).is_ascii_whitespace() {
                start -= 1;
            }
            return crate::rules_mk::py_strip(&line[..start]);
        }
        i += 1;
    }
    crate::rules_mk::py_strip(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ConfigH {
        let mut c = ConfigH::new();
        assert!(parse_config_h("config.h", text, &mut c).is_empty());
        c
    }

    #[test]
    fn defines_flags_and_values() {
        let c =
            parse("#pragma once\n#define MATRIX_ROWS 4\n#define NKRO\n#define PINS { B0, B1 }\n");
        assert_eq!(c["MATRIX_ROWS"], ConfigValue::Text("4".into()));
        assert_eq!(c["NKRO"], ConfigValue::Flag(true));
        assert_eq!(c["PINS"], ConfigValue::Text("{ B0, B1 }".into()));
    }

    #[test]
    fn continuations_and_comments() {
        let c = parse(
            "/* block\n #define HIDDEN 1 */\n#define A \\\n  5 // five\n#define B 6 /* six */\n",
        );
        assert_eq!(c["A"], ConfigValue::Text("5".into()));
        assert_eq!(c["B"], ConfigValue::Text("6".into()));
        assert!(!c.contains_key("HIDDEN"));
    }

    #[test]
    fn undef_removes_flags_and_falsifies_values() {
        let c = parse("#define F\n#define V 3\n#undef F\n#undef V\n#undef NEVER\n");
        assert!(!c.contains_key("F"));
        assert_eq!(c["V"], ConfigValue::Flag(false));
        assert!(!c.contains_key("NEVER"));
    }

    #[test]
    fn incomplete_define_is_reported_with_its_line() {
        let mut c = ConfigH::new();
        let d = parse_config_h("kb/config.h", "#pragma once\n#define\n", &mut c);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].line, 1);
        assert!(d[0].to_string().contains("kb/config.h"));
    }
}
