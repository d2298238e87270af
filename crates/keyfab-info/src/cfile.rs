//! What QMK reads from C files: `LAYOUT` macros (and their aliases) in
//! `<keyboard>.h`, and `g_led_config` in `<keyboard>.c` (QMK's `c_parse.py`).

use serde_json::{json, Map, Value};

/// QMK's `comment_remover`: `//…` and `/*…*/` become one space, string and
/// character literals are kept (so comment markers inside them survive).
pub fn remove_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find('\n').map_or(b.len(), |e| i + e);
                out.push_str(&text[copied..i]);
                out.push(' ');
                i = end;
                copied = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => match text[i + 2..].find("*/") {
                Some(e) => {
                    let end = i + 2 + e + 2;
                    out.push_str(&text[copied..i]);
                    out.push(' ');
                    i = end;
                    copied = end;
                }
                None => i += 1,
            },
            q @ (b'\'' | b'"') => match literal_end(b, i, q) {
                Some(end) => i = end,
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// End (exclusive) of a quoted literal starting at `start`, if it closes.
fn literal_end(b: &[u8], start: usize, quote: u8) -> Option<usize> {
    let mut j = start + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => {
                if j + 1 >= b.len() {
                    return None;
                }
                // `\\.` matches one (possibly multi-byte) character
                j += 1;
                j += utf8_len(b[j]);
            }
            c if c == quote => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// QMK's `preprocess_c_file`: comments removed, then line continuations.
pub fn preprocess(text: &str) -> String {
    remove_comments(text).replace("\\\n", "")
}

/// A problem QMK logs (but does not record) while reading a LAYOUT macro.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroProblem {
    pub line: usize,
    pub message: String,
}

/// The layouts and aliases of one `<keyboard>.h`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderLayouts {
    /// `LAYOUT…` name → `{"layout": [...], "filename": …}`, in file order.
    pub layouts: Vec<(String, Value)>,
    /// Every non-function `#define NAME TEXT` (QMK keeps only those whose
    /// text names a known layout).
    pub aliases: Vec<(String, String)>,
    pub problems: Vec<MacroProblem>,
}

/// QMK's `find_layouts` over the text of `path`.
pub fn find_layouts(path: &str, text: &str) -> HeaderLayouts {
    let mut out = HeaderLayouts::default();
    let contents = preprocess(text);
    for (lineno, line) in contents.split('\n').enumerate() {
        let lstripped = line.trim_start_matches(|c: char| c.is_whitespace());
        let is_define = lstripped
            .strip_prefix('#')
            .map(|r| r.trim_start_matches(|c: char| c.is_whitespace()))
            .is_some_and(|r| r.starts_with("define"));
        if is_define && line.contains('(') && line.contains("LAYOUT") {
            let squashed = crate::py::strip(line)
                .replace(['\\', ' ', '\t'], "")
                .replace("#define", "");
            let Some((macro_name, rest)) = squashed.split_once('(') else {
                continue;
            };
            let Some((params, matrix)) = rest.split_once(')') else {
                out.problems.push(MacroProblem {
                    line: lineno + 1,
                    message: format!("{macro_name}: LAYOUT macro without a closing parenthesis"),
                });
                continue;
            };
            if macro_name.starts_with("LAYOUT_kc") || !macro_name.starts_with("LAYOUT") {
                continue;
            }
            let locations = matrix_locations(matrix, path, macro_name, lineno + 1, &mut out);
            let mut keys = Vec::new();
            for (x, label) in params.trim().split(',').enumerate() {
                let mut key = Map::new();
                key.insert("x".into(), json!(x));
                key.insert("y".into(), json!(0));
                if !label.is_empty() {
                    key.insert("label".into(), json!(label));
                }
                let problem = if label.is_empty() {
                    Some(format!(
                        "Invalid LAYOUT macro in {path}: Empty parameter name in macro {macro_name} at pos {x}."
                    ))
                } else {
                    match locations.iter().find(|(id, _)| id == label) {
                        None => Some(format!(
                            "Invalid LAYOUT macro in {path}: Key {label} in macro {macro_name} has no matrix position!"
                        )),
                        Some((_, pos)) if pos.len() > 1 => Some(format!(
                            "Invalid LAYOUT macro in {path}: Key {label} in macro {macro_name} has multiple matrix positions ({})",
                            pos.iter().map(|(r, c)| format!("[{r}, {c}]")).collect::<Vec<_>>().join(", ")
                        )),
                        Some((_, pos)) => {
                            key.insert("matrix".into(), json!([pos[0].0, pos[0].1]));
                            None
                        }
                    }
                };
                if let Some(message) = problem {
                    out.problems.push(MacroProblem {
                        line: lineno + 1,
                        message,
                    });
                }
                keys.push(Value::Object(key));
            }
            let entry = json!({"layout": keys, "filename": path});
            match out.layouts.iter_mut().find(|(n, _)| n == macro_name) {
                Some(slot) => slot.1 = entry,
                None => out.layouts.push((macro_name.to_string(), entry)),
            }
        } else if line.contains("#define") {
            let stripped = crate::py::strip(line);
            let mut parts = stripped.splitn(3, ' ');
            if let (Some(_), Some(name), Some(text)) = (parts.next(), parts.next(), parts.next()) {
                match out.aliases.iter_mut().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = text.to_string(),
                    None => out.aliases.push((name.to_string(), text.to_string())),
                }
            }
        }
    }
    out
}

type Locations = Vec<(String, Vec<(usize, usize)>)>;

fn matrix_locations(
    matrix: &str,
    path: &str,
    macro_name: &str,
    line: usize,
    out: &mut HeaderLayouts,
) -> Locations {
    let mut locs: Locations = Vec::new();
    for (row_num, row) in matrix.split("},{").enumerate() {
        if row.starts_with("LAYOUT") {
            out.problems.push(MacroProblem {
                line,
                message: format!(
                    "{path}: {macro_name}: Nested layout macro detected. Matrix data not available!"
                ),
            });
            break;
        }
        let row = row.replace(['{', '}'], "");
        for (col_num, id) in row.split(',').enumerate() {
            if id == "KC_NO" {
                continue;
            }
            match locs.iter_mut().find(|(n, _)| n == id) {
                Some(slot) => slot.1.push((row_num, col_num)),
                None => locs.push((id.to_string(), vec![(row_num, col_num)])),
            }
        }
    }
    locs
}

/// A value of `g_led_config`, as QMK's token coercion makes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LedToken {
    Int(i64),
    Float(f64),
    /// `NO_LED` and unknown names.
    None,
}

impl LedToken {
    fn to_json(self) -> Value {
        match self {
            LedToken::Int(i) => json!(i),
            LedToken::Float(f) => serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            LedToken::None => Value::Null,
        }
    }
}

/// The raw sections of a `g_led_config` initializer.
#[derive(Debug, Clone, PartialEq)]
pub struct RawLedConfig {
    pub matrix: Vec<Vec<LedToken>>,
    pub position: Vec<LedToken>,
    pub flags: Vec<LedToken>,
}

/// Scans a `.c` file for `led_config_t g_led_config = { … };` the way
/// QMK's pygments-based `_parse_led_config` does. `Ok(None)`: not found, or
/// a preprocessor line inside it. `Err`: a token QMK fails to convert.
pub fn scan_led_config(text: &str) -> Result<Option<RawLedConfig>, String> {
    let src = preprocess(text);
    let mut matrix = Vec::new();
    let mut position = Vec::new();
    let mut flags = Vec::new();
    let mut found_type = false;
    let mut found = false;
    let mut brackets = 0i32;
    let mut section = 0;
    let mut row: Vec<LedToken> = Vec::new();
    for tok in CLexer::new(&src) {
        if !found {
            if tok.text == "led_config_t" {
                found_type = true;
            } else if found_type && tok.text == "g_led_config" {
                found = true;
            }
            continue;
        }
        match tok.text {
            ";" => found = false,
            "{" => {
                brackets += 1;
                if brackets == 2 {
                    section += 1;
                }
            }
            "}" => {
                if section == 1 && brackets == 3 {
                    matrix.push(std::mem::take(&mut row));
                }
                brackets -= 1;
            }
            _ => match tok.kind {
                Kind::Int | Kind::Float | Kind::Hex | Kind::Name => {
                    let v = coerce(tok.kind, tok.text)?;
                    if section == 1 && brackets == 3 {
                        row.push(v);
                    }
                    if section == 2 && brackets == 3 {
                        position.push(v);
                    }
                    if section == 3 && brackets == 2 {
                        flags.push(v);
                    }
                }
                Kind::Preproc => return Ok(None),
                _ => {}
            },
        }
    }
    if section == 0 {
        return Ok(None);
    }
    Ok(Some(RawLedConfig {
        matrix,
        position,
        flags,
    }))
}

fn coerce(kind: Kind, text: &str) -> Result<LedToken, String> {
    let bad = || {
        format!(
            "invalid literal for int() with base 10: {}",
            crate::py::repr_str(text)
        )
    };
    Ok(match kind {
        Kind::Int => LedToken::Int(text.parse().map_err(|_| bad())?),
        Kind::Float => LedToken::Float(
            text.parse()
                .map_err(|_| format!("could not convert string to float: '{text}'"))?,
        ),
        Kind::Hex => {
            let (neg, digits) = match text.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text),
            };
            let v = i64::from_str_radix(&digits[2..], 16)
                .map_err(|_| format!("invalid literal for int() with base 0: '{text}'"))?;
            LedToken::Int(if neg { -v } else { v })
        }
        _ => match text {
            "LED_FLAG_ALL" => LedToken::Int(0xFF),
            "LED_FLAG_NONE" => LedToken::Int(0),
            "LED_FLAG_MODIFIER" => LedToken::Int(0x01),
            "LED_FLAG_UNDERGLOW" => LedToken::Int(0x02),
            "LED_FLAG_KEYLIGHT" => LedToken::Int(0x04),
            "LED_FLAG_INDICATOR" => LedToken::Int(0x08),
            _ => LedToken::None,
        },
    })
}

/// QMK's `find_led_config`: validates the raw config against the matrix size
/// and turns it into the info's `layout` list.
pub fn led_layout(raw: &RawLedConfig, cols: &Value, rows: &Value) -> Result<Value, String> {
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let (cols, rows) = (num(cols), num(rows));
    let m = &raw.matrix;
    if m.len() as f64 != rows && m.len() as f64 != rows / 2.0 {
        return Err("Unable to parse g_led_config matrix data".into());
    }
    for (i, r) in m.iter().enumerate() {
        if r.len() as f64 != cols {
            return Err(format!(
                "Number of columns in row {i} ({}) does not match matrix ({})",
                r.len(),
                fmt_num(cols)
            ));
        }
    }
    let positions: Vec<&[LedToken]> = raw.position.chunks(2).collect();
    if positions.len() != raw.flags.len() {
        return Err(format!(
            "Number of g_led_config physical positions ({}) does not match number of flags ({})",
            positions.len(),
            raw.flags.len()
        ));
    }
    let indexes: Vec<LedToken> = m
        .iter()
        .flatten()
        .copied()
        .filter(|t| *t != LedToken::None)
        .collect();
    let as_f = |t: &LedToken| match t {
        LedToken::Int(i) => *i as f64,
        LedToken::Float(f) => *f,
        LedToken::None => f64::NAN,
    };
    if let Some(max) = indexes.iter().map(as_f).reduce(f64::max) {
        if max >= raw.flags.len() as f64 {
            let shown = indexes
                .iter()
                .find(|t| as_f(t) == max)
                .map(|t| t.to_json().to_string())
                .unwrap_or_default();
            return Err(format!(
                "LED index {shown} is OOB in g_led_config - should be < {}",
                raw.flags.len()
            ));
        }
    }
    if !indexes.iter().all(|t| matches!(t, LedToken::Int(_))) {
        return Err("matrix indexes are not all ints".into());
    }
    if raw.position.len() & 1 == 1 {
        return Err("Malformed g_led_config position data".into());
    }
    let mut leds: Vec<Map<String, Value>> = positions
        .iter()
        .zip(&raw.flags)
        .map(|(p, f)| {
            let mut led = Map::new();
            led.insert("x".into(), p[0].to_json());
            led.insert("y".into(), p.get(1).map_or(Value::Null, |t| t.to_json()));
            led.insert("flags".into(), f.to_json());
            led
        })
        .collect();
    for (r, row) in m.iter().enumerate() {
        for (c, t) in row.iter().enumerate() {
            if let LedToken::Int(i) = t {
                let idx = if *i < 0 {
                    (leds.len() as i64 + i) as usize
                } else {
                    *i as usize
                };
                if let Some(led) = leds.get_mut(idx) {
                    led.insert("matrix".into(), json!([r, c]));
                }
            }
        }
    }
    Ok(Value::Array(leds.into_iter().map(Value::Object).collect()))
}

fn fmt_num(f: f64) -> String {
    if f.fract() == 0.0 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Hex,
    Name,
    Preproc,
    Other,
}

struct Token<'a> {
    kind: Kind,
    text: &'a str,
}

/// Just enough of pygments' C lexer: names, numbers, preprocessor lines
/// (`#if 0` blocks are comments), strings, punctuation.
struct CLexer<'a> {
    s: &'a str,
    i: usize,
    line_start: bool,
}

impl<'a> CLexer<'a> {
    fn new(s: &'a str) -> Self {
        CLexer {
            s,
            i: 0,
            line_start: true,
        }
    }
}

const KEYWORDS: &[&str] = &[
    "asm",
    "auto",
    "break",
    "case",
    "const",
    "continue",
    "default",
    "do",
    "else",
    "enum",
    "extern",
    "for",
    "goto",
    "if",
    "register",
    "restricted",
    "return",
    "sizeof",
    "struct",
    "static",
    "switch",
    "typedef",
    "volatile",
    "while",
    "union",
    "thread_local",
    "alignas",
    "alignof",
    "static_assert",
    "_Pragma",
    "inline",
    "restrict",
    "_Alignas",
    "_Alignof",
    "_Atomic",
    "_Generic",
    "_Noreturn",
    "_Static_assert",
    "_Thread_local",
    "int",
    "long",
    "float",
    "short",
    "double",
    "char",
    "unsigned",
    "signed",
    "void",
    "_Bool",
    "_Complex",
    "_Imaginary",
    "bool",
    "true",
    "false",
    "NULL",
    "nullptr",
    "size_t",
    "ssize_t",
    "off_t",
    "wchar_t",
    "ptrdiff_t",
    "sig_atomic_t",
    "fpos_t",
    "clock_t",
    "time_t",
    "va_list",
    "jmp_buf",
    "FILE",
    "DIR",
    "div_t",
    "ldiv_t",
    "mbstate_t",
    "wctrans_t",
    "wint_t",
    "wctype_t",
    "int8_t",
    "int16_t",
    "int32_t",
    "int64_t",
    "uint8_t",
    "uint16_t",
    "uint32_t",
    "uint64_t",
    "int_least8_t",
    "int_least16_t",
    "int_least32_t",
    "int_least64_t",
    "uint_least8_t",
    "uint_least16_t",
    "uint_least32_t",
    "uint_least64_t",
    "int_fast8_t",
    "int_fast16_t",
    "int_fast32_t",
    "int_fast64_t",
    "uint_fast8_t",
    "uint_fast16_t",
    "uint_fast32_t",
    "uint_fast64_t",
    "intptr_t",
    "uintptr_t",
    "intmax_t",
    "uintmax_t",
    "__asm",
    "__int8",
    "__based",
    "__except",
    "__int16",
    "__stdcall",
    "__cdecl",
    "__fastcall",
    "__int32",
    "__declspec",
    "__finally",
    "__int64",
    "__try",
    "__leave",
    "__inline",
    "__wchar_t",
    "__w64",
    "__restrict",
    "inline",
    "_inline",
    "__forceinline",
    "__attribute__",
];

impl<'a> Iterator for CLexer<'a> {
    type Item = Token<'a>;
    fn next(&mut self) -> Option<Token<'a>> {
        let s = self.s;
        let b = s.as_bytes();
        loop {
            if self.i >= b.len() {
                return None;
            }
            let c = b[self.i];
            if c == b'\n' {
                self.i += 1;
                self.line_start = true;
                continue;
            }
            if c.is_ascii_whitespace() {
                self.i += 1;
                continue;
            }
            let start = self.i;
            if c == b'#' && self.line_start {
                let end = s[start..].find('\n').map_or(b.len(), |e| start + e);
                let after_if = s[start + 1..end].strip_prefix("if");
                if after_if.is_some_and(|r| {
                    r.starts_with(char::is_whitespace) && r.trim_start().starts_with('0')
                }) {
                    self.i = skip_if0(s, end);
                    continue;
                }
                self.i = end;
                return Some(Token {
                    kind: Kind::Preproc,
                    text: &s[start..end],
                });
            }
            self.line_start = false;
            if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
                let mut j = self.i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'$')
                {
                    j += 1;
                }
                self.i = j;
                let text = &s[start..j];
                // a quote right after L/u/U/u8 starts a string literal
                let kind = if KEYWORDS.contains(&text) {
                    Kind::Other
                } else {
                    Kind::Name
                };
                return Some(Token { kind, text });
            }
            if let Some((kind, len)) = number_at(&b[start..]) {
                self.i = start + len;
                return Some(Token {
                    kind,
                    text: &s[start..start + len],
                });
            }
            if c == b'"' || c == b'\'' {
                let end = literal_end(b, start, c).unwrap_or(start + 1);
                self.i = end;
                return Some(Token {
                    kind: Kind::Other,
                    text: &s[start..end],
                });
            }
            let len = utf8_len(c).min(b.len() - start);
            self.i += len;
            return Some(Token {
                kind: Kind::Other,
                text: &s[start..start + len],
            });
        }
    }
}

/// Past an `#if 0` block that starts after `pos` (pygments' `if0` state:
/// nested `#if` pushes, `#else`/`#elif`/`#endif` pop).
fn skip_if0(s: &str, mut pos: usize) -> usize {
    let mut depth = 0usize;
    while pos < s.len() {
        let line_start = pos + 1;
        if line_start >= s.len() {
            return s.len();
        }
        let line_end = s[line_start..]
            .find('\n')
            .map_or(s.len(), |e| line_start + e);
        let l = s[line_start..line_end].trim_start();
        pos = line_end;
        let pops = l.starts_with("#endif") || l.starts_with("#else") || l.starts_with("#elif");
        if l.starts_with("#if") {
            depth += 1;
        } else if pops {
            if depth == 0 {
                return line_end;
            }
            depth -= 1;
        }
    }
    s.len()
}

fn digits(b: &[u8], mut j: usize) -> usize {
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    j
}

fn int_suffix(b: &[u8], mut j: usize) -> usize {
    // (([uU]?[zZ])|([zZ][uU])|([uU][lL]{0,2})|([lL]{1,2}[uU]?))?
    let at = |k: usize| b.get(k).map(|c| c.to_ascii_lowercase());
    match at(j) {
        Some(b'u') => {
            j += 1;
            if at(j) == Some(b'z') {
                return j + 1;
            }
            for _ in 0..2 {
                if at(j) == Some(b'l') {
                    j += 1;
                }
            }
            j
        }
        Some(b'z') => {
            j += 1;
            if at(j) == Some(b'u') {
                j += 1;
            }
            j
        }
        Some(b'l') => {
            j += 1;
            if at(j) == Some(b'l') {
                j += 1;
            }
            if at(j) == Some(b'u') {
                j += 1;
            }
            j
        }
        _ => j,
    }
}

/// The number token pygments' C lexer finds at the start of `b`, if any
/// (an optional leading `-` belongs to it), as (kind, length).
fn number_at(b: &[u8]) -> Option<(Kind, usize)> {
    let sign = usize::from(b.first() == Some(&b'-'));
    let d = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
    if !(d(sign) || (b.get(sign) == Some(&b'.') && d(sign + 1))) {
        return None;
    }
    let i = sign;
    // mantissa: dec.dec | .dec | dec
    let int_end = digits(b, i);
    let mut j = int_end;
    let mut has_point = false;
    if b.get(j) == Some(&b'.') {
        has_point = true;
        j = digits(b, j + 1);
    }
    // exponent float
    if matches!(b.get(j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        if matches!(b.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        if d(k) {
            let mut e = digits(b, k);
            if matches!(b.get(e), Some(b'f' | b'F' | b'l' | b'L')) {
                e += 1;
            }
            return Some((Kind::Float, e));
        }
    }
    if has_point {
        let mut e = j;
        if matches!(b.get(e), Some(b'f' | b'F' | b'l' | b'L')) {
            e += 1;
        }
        return Some((Kind::Float, e));
    }
    if sign == 0
        && matches!(b.get(int_end), Some(b'f' | b'F' | b'l' | b'L'))
        && !matches!(b.get(int_end), Some(b'l' | b'L'))
    {
        return Some((Kind::Float, int_end + 1));
    }
    if b[i] == b'0'
        && matches!(b.get(i + 1), Some(b'x' | b'X'))
        && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    {
        let mut e = i + 2;
        while e < b.len() && b[e].is_ascii_hexdigit() {
            e += 1;
        }
        return Some((Kind::Hex, int_suffix(b, e)));
    }
    if b[i] == b'0'
        && matches!(b.get(i + 1), Some(b'b' | b'B'))
        && matches!(b.get(i + 2), Some(b'0' | b'1'))
    {
        let mut e = i + 2;
        while matches!(b.get(e), Some(b'0' | b'1')) {
            e += 1;
        }
        return Some((Kind::Other, int_suffix(b, e)));
    }
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'0'..=b'7')) {
        let mut e = i + 1;
        while matches!(b.get(e), Some(b'0'..=b'7')) {
            e += 1;
        }
        // octal: not a token kind QMK looks at
        return Some((Kind::Other, int_suffix(b, e)));
    }
    Some((Kind::Int, int_suffix(b, int_end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_go_strings_stay() {
        let t = "a // x\nb /* y\n z */ c \"// not\" '/*'";
        assert_eq!(remove_comments(t), "a  \nb   c \"// not\" '/*'");
    }

    #[test]
    fn layout_macro_and_alias() {
        let h = "#pragma once\n#define LAYOUT( \\\n  k00, k01, \\\n  k10 \\\n) { \\\n { k00, k01 }, \\\n { k10, KC_NO } \\\n}\n#define LAYOUT_alias LAYOUT\n";
        let l = find_layouts("keyboards/x/x.h", h);
        assert_eq!(l.layouts.len(), 1);
        let (name, v) = &l.layouts[0];
        assert_eq!(name, "LAYOUT");
        assert_eq!(
            v["layout"][2],
            json!({"x": 2, "y": 0, "label": "k10", "matrix": [1, 0]})
        );
        assert_eq!(l.aliases, vec![("LAYOUT_alias".into(), "LAYOUT".into())]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
    }

    #[test]
    fn led_config_is_read() {
        let c = "#include \"x.h\"\nled_config_t g_led_config = { {\n { 0, NO_LED },\n { 1, 2 }\n}, {\n {0,0}, {112, 32}, {224, 64}\n}, {\n 4, LED_FLAG_MODIFIER, 2\n} };\n";
        let raw = scan_led_config(c).unwrap().unwrap();
        let l = led_layout(&raw, &json!(2), &json!(2)).unwrap();
        assert_eq!(l[0], json!({"x": 0, "y": 0, "flags": 4, "matrix": [0, 0]}));
        assert_eq!(
            l[2],
            json!({"x": 224, "y": 64, "flags": 2, "matrix": [1, 1]})
        );
        assert!(led_layout(&raw, &json!(3), &json!(2)).is_err());
    }

    #[test]
    fn preprocessor_inside_led_config_drops_it() {
        let c = "led_config_t g_led_config = { {\n#ifdef X\n { 0 }\n#endif\n}, {}, {} };\n";
        assert_eq!(scan_led_config(c), Ok(None));
    }
}
