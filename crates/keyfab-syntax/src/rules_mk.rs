//! `rules.mk` assignments, read exactly as QMK's `parse_rules_mk_file` reads
//! them (a line-based approximation of make, not make itself).

use indexmap::IndexMap;

/// Variable name → value, in first-assignment order.
pub type RulesMk = IndexMap<String, String>;

/// Apply the assignments in `text` on top of `rules`.
///
/// QMK quirks kept on purpose, because the merged info must match QMK's:
/// a `#` anywhere cuts the line, `+=`/`?=` are found anywhere in the line,
/// and `:=` keeps the colon in the variable name (QMK's `line.replace` result
/// is discarded), so `FOO := 1` sets `"FOO :"`.
pub fn parse_rules_mk(text: &str, rules: &mut RulesMk) {
    for line in text.split('\n') {
        if line.trim().starts_with('#') {
            continue;
        }
        let line = match line.find('#') {
            Some(i) => py_strip(&line[..i]),
            None => line,
        };
        if !line.contains('=') {
            continue;
        }
        if let Some((key, value)) = line.split_once("+=") {
            let (key, value) = (py_strip(key), py_strip(value));
            match rules.get_mut(key) {
                Some(existing) => {
                    existing.push(' ');
                    existing.push_str(value);
                }
                None => {
                    rules.insert(key.to_string(), value.to_string());
                }
            }
        } else if let Some((key, value)) = line.split_once("?=") {
            let key = py_strip(key);
            if !rules.contains_key(key) {
                rules.insert(key.to_string(), py_strip(value).to_string());
            }
        } else if let Some((key, value)) = line.split_once('=') {
            rules.insert(py_strip(key).to_string(), py_strip(value).to_string());
        }
    }
}

/// Python's `str.strip()` with no argument: strips Unicode whitespace.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| {
        c.is_whitespace() || c == '\u{1c}' || c == '\u{1d}' || c == '\u{1e}' || c == '\u{1f}'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RulesMk {
        let mut r = RulesMk::new();
        parse_rules_mk(text, &mut r);
        r
    }

    #[test]
    fn plain_assignment_and_comments() {
        let r = parse("# comment\nMCU = atmega32u4  # trailing\nBOOTLOADER=atmel-dfu\n");
        assert_eq!(r["MCU"], "atmega32u4");
        assert_eq!(r["BOOTLOADER"], "atmel-dfu");
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn append_and_conditional() {
        let mut r = parse("SRC = a.c\nSRC += b.c\nX ?= 1\nX ?= 2\nY += only\n");
        assert_eq!(r["SRC"], "a.c b.c");
        assert_eq!(r["X"], "1");
        assert_eq!(r["Y"], "only");
        parse_rules_mk("X = 3\n", &mut r);
        assert_eq!(r["X"], "3");
    }

    #[test]
    fn colon_equals_keeps_the_colon_like_qmk() {
        let r = parse("FOO := bar\n");
        assert_eq!(r["FOO :"], "bar");
        assert!(!r.contains_key("FOO"));
    }

    #[test]
    fn lines_without_equals_are_ignored() {
        let r = parse("include foo.mk\nifeq ($(A),yes)\nendif\n");
        assert!(r.is_empty());
    }
}
