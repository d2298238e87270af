//! The few Python semantics QMK's info code leans on: truthiness, `int()`,
//! `str.strip()`, `repr()` (for messages), and `qmk.math_ops.compute`.

use serde_json::{Map, Number, Value};

/// Python's `bool(x)` for a JSON value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python's `str.strip()` with no argument.
pub fn strip(s: &str) -> &str {
    s.trim_matches(|c: char| {
        c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c) || c == '\u{85}'
    })
}

/// Python's `str.isdigit()` for the ASCII cases that occur in QMK trees.
pub fn is_digit_str(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// Python's `int(s)` (base 10): surrounding whitespace, a sign, and single
/// underscores between digits are accepted. The error text is Python's.
pub fn int(s: &str) -> Result<i64, String> {
    let err = || format!("invalid literal for int() with base 10: {}", repr_str(s));
    let t = strip(s);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return Err(err());
    }
    let mut n: i64 = 0;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(10).ok_or_else(err)? as i64;
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(d))
            .ok_or_else(err)?;
    }
    Ok(if neg { -n } else { n })
}

/// A float as Python's `repr` writes it (close enough for messages).
pub fn repr_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f:?}")
    }
}

/// Python's `repr()` of a string.
pub fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn repr_number(n: &Number) -> String {
    if n.is_f64() {
        repr_float(n.as_f64().unwrap_or_default())
    } else {
        n.to_string()
    }
}

/// Python's `repr()` of the value a JSON value would be in Python.
pub fn repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => repr_number(n),
        Value::String(s) => repr_str(s),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(o) => repr_map(o),
    }
}

fn repr_map(o: &Map<String, Value>) -> String {
    let items: Vec<String> = o
        .iter()
        .map(|(k, v)| format!("{}: {}", repr_str(k), repr(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// Python's `str()`: strings bare, everything else as `repr`.
pub fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => repr(other),
    }
}

/// A number of `compute`: Python keeps ints and floats apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// The JSON number Python's `json.dumps` would write.
    pub fn to_json(self) -> Value {
        match self {
            Num::Int(i) => match i64::try_from(i) {
                Ok(i) => Value::from(i),
                Err(_) => Value::from(i as f64),
            },
            Num::Float(f) => Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
        }
    }
}

/// `qmk.math_ops.compute`: a Python arithmetic expression of number literals
/// with `+ - * / ** ^` and unary minus. Anything else is an error (QMK's
/// would raise).
pub fn compute(expr: &str) -> Result<Num, String> {
    let tokens = tokenize(expr)?;
    let mut p = Parser { t: &tokens, i: 0 };
    let v = p.xor()?;
    if p.i != tokens.len() {
        return Err(format!("invalid syntax: {expr:?}"));
    }
    Ok(v)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(Num),
    Op(&'static str),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                // an exponent sign belongs to the literal
                if (b[i] == b'e' || b[i] == b'E')
                    && !s[start..].starts_with("0x")
                    && !s[start..].starts_with("0X")
                    && matches!(b.get(i + 1), Some(b'+') | Some(b'-'))
                {
                    i += 2;
                    continue;
                }
                i += 1;
            }
            out.push(Tok::Num(number_literal(&s[start..i])?));
            continue;
        }
        let two = s.get(i..i + 2);
        if two == Some("**") {
            out.push(Tok::Op("**"));
            i += 2;
            continue;
        }
        let op = match c {
            b'+' => "+",
            b'-' => "-",
            b'*' => "*",
            b'/' if two == Some("//") => return Err("unsupported operator //".into()),
            b'/' => "/",
            b'^' => "^",
            b'(' => "(",
            b')' => ")",
            _ => return Err(format!("unsupported expression: {s:?}")),
        };
        out.push(Tok::Op(op));
        i += 1;
    }
    Ok(out)
}

/// A Python number literal.
fn number_literal(lit: &str) -> Result<Num, String> {
    let bad = || format!("invalid number literal {lit:?}");
    let clean: String = lit.chars().filter(|&c| c != '_').collect();
    if lit.contains("__") || lit.ends_with('_') {
        return Err(bad());
    }
    let lower = clean.to_ascii_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            return i128::from_str_radix(rest, radix)
                .map(Num::Int)
                .map_err(|_| bad());
        }
    }
    if lower.contains(['.', 'e']) {
        return lower.parse::<f64>().map(Num::Float).map_err(|_| bad());
    }
    if lower.len() > 1 && lower.starts_with('0') && lower.bytes().any(|c| c != b'0') {
        return Err(bad()); // leading zeros are a syntax error in Python 3
    }
    lower.parse::<i128>().map(Num::Int).map_err(|_| bad())
}

struct Parser<'a> {
    t: &'a [Tok],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }
    fn eat(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn xor(&mut self) -> Result<Num, String> {
        let mut v = self.arith()?;
        while self.eat("^") {
            let r = self.arith()?;
            v = match (v, r) {
                (Num::Int(a), Num::Int(b)) => Num::Int(a ^ b),
                _ => return Err("unsupported operand type(s) for ^: 'float'".into()),
            };
        }
        Ok(v)
    }
    fn arith(&mut self) -> Result<Num, String> {
        let mut v = self.term()?;
        loop {
            if self.eat("+") {
                let r = self.term()?;
                v = bin(v, r, |a, b| a.checked_add(b), |a, b| a + b)?;
            } else if self.eat("-") {
                let r = self.term()?;
                v = bin(v, r, |a, b| a.checked_sub(b), |a, b| a - b)?;
            } else {
                return Ok(v);
            }
        }
    }
    fn term(&mut self) -> Result<Num, String> {
        let mut v = self.factor()?;
        loop {
            if self.eat("*") {
                let r = self.factor()?;
                v = bin(v, r, |a, b| a.checked_mul(b), |a, b| a * b)?;
            } else if self.eat("/") {
                let r = self.factor()?;
                if r.f() == 0.0 {
                    return Err("division by zero".into());
                }
                v = Num::Float(v.f() / r.f());
            } else {
                return Ok(v);
            }
        }
    }
    fn factor(&mut self) -> Result<Num, String> {
        if self.eat("-") {
            return Ok(match self.factor()? {
                Num::Int(i) => Num::Int(-i),
                Num::Float(f) => Num::Float(-f),
            });
        }
        if self.eat("+") {
            // ast.UAdd is not among compute's operators: QMK raises.
            return Err("unsupported unary +".into());
        }
        self.power()
    }
    fn power(&mut self) -> Result<Num, String> {
        let base = self.atom()?;
        if self.eat("**") {
            let exp = self.factor()?;
            return Ok(match (base, exp) {
                (Num::Int(b), Num::Int(e)) if e >= 0 => u32::try_from(e)
                    .ok()
                    .and_then(|e| b.checked_pow(e))
                    .map(Num::Int)
                    .unwrap_or(Num::Float((b as f64).powf(e as f64))),
                (b, e) => Num::Float(b.f().powf(e.f())),
            });
        }
        Ok(base)
    }
    fn atom(&mut self) -> Result<Num, String> {
        match self.peek().cloned() {
            Some(Tok::Num(n)) => {
                self.i += 1;
                Ok(n)
            }
            Some(Tok::Op("(")) => {
                self.i += 1;
                let v = self.xor()?;
                if !self.eat(")") {
                    return Err("unbalanced parenthesis".into());
                }
                Ok(v)
            }
            _ => Err("invalid syntax".into()),
        }
    }
}

fn bin(
    a: Num,
    b: Num,
    int: impl Fn(i128, i128) -> Option<i128>,
    float: impl Fn(f64, f64) -> f64,
) -> Result<Num, String> {
    Ok(match (a, b) {
        (Num::Int(x), Num::Int(y)) => Num::Int(int(x, y).ok_or("integer overflow")?),
        (x, y) => Num::Float(float(x.f(), y.f())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truthiness_follows_python() {
        for v in [
            json!(0),
            json!(0.0),
            json!(""),
            json!([]),
            json!({}),
            json!(null),
        ] {
            assert!(!truthy(&v), "{v}");
        }
        for v in [
            json!(1),
            json!("x"),
            json!([0]),
            json!({"a": 0}),
            json!(true),
        ] {
            assert!(truthy(&v), "{v}");
        }
    }

    #[test]
    fn int_parsing_follows_python() {
        assert_eq!(int(" 42 "), Ok(42));
        assert_eq!(int("-7"), Ok(-7));
        assert_eq!(int("1_000"), Ok(1000));
        assert_eq!(int("007"), Ok(7));
        assert_eq!(
            int("0x10").unwrap_err(),
            "invalid literal for int() with base 10: '0x10'"
        );
        assert!(int("").is_err());
        assert!(int("1__0").is_err());
    }

    #[test]
    fn compute_follows_python() {
        assert_eq!(compute("2^6"), Ok(Num::Int(4)));
        assert_eq!(compute("2**6"), Ok(Num::Int(64)));
        assert_eq!(compute("(8 * 2)"), Ok(Num::Int(16)));
        assert_eq!(compute("16/2"), Ok(Num::Float(8.0)));
        assert_eq!(compute("-2**2"), Ok(Num::Int(-4)));
        assert_eq!(compute("1 + 2*3**(4^5) / (6 + -7)"), Ok(Num::Float(-5.0)));
        assert_eq!(compute("0x10"), Ok(Num::Int(16)));
        assert!(compute("010").is_err());
        assert!(compute("MATRIX_ROWS * 2").is_err());
        assert!(compute("+3").is_err());
    }

    #[test]
    fn repr_is_pythonic() {
        assert_eq!(
            repr(&json!({"a": [true, null, 1.0, "it's"]})),
            "{'a': [True, None, 1.0, \"it's\"]}"
        );
    }
}
