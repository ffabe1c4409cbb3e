//! The values templates operate on: Go's basic kinds, lists and maps, plus the few typed values
//! Alertmanager's templates call methods on (`KV`, `Alerts`, `time.Time`).

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;

/// A template value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Go's nil (and a missing map key under `missingkey=zero` for interface maps).
    Nil,
    /// bool
    Bool(bool),
    /// int
    Int(i64),
    /// float64
    Float(f64),
    /// string
    Str(Arc<str>),
    /// A string marked safe for HTML (`safeHtml`): not escaped in HTML templates.
    SafeHtml(Arc<str>),
    /// A slice.
    List(Arc<Vec<Value>>),
    /// `map[string]any`: fields and `index` by key, ranged in key order.
    Map(Arc<BTreeMap<String, Value>>),
    /// Alertmanager's `template.KV` (`map[string]string` with methods).
    Kv(Arc<BTreeMap<String, String>>),
    /// Alertmanager's `template.Alerts` (a slice with `.Firing` and `.Resolved`).
    Alerts(Arc<Vec<Value>>),
    /// A struct: named fields only (a missing field is an error, as in Go).
    Struct(&'static str, Arc<BTreeMap<&'static str, Value>>),
    /// `time.Time`, with its offset for printing.
    Time(Timestamp, jiff::tz::TimeZone),
    /// `time.Duration` in nanoseconds.
    Duration(i64),
}

impl Value {
    /// A string value.
    pub fn str(s: impl AsRef<str>) -> Value {
        Value::Str(Arc::from(s.as_ref()))
    }

    /// Go's truth: false, 0, nil and empty strings, lists and maps are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) | Value::SafeHtml(s) => !s.is_empty(),
            Value::List(l) | Value::Alerts(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Kv(m) => !m.is_empty(),
            Value::Struct(..) | Value::Time(..) => true,
            Value::Duration(d) => *d != 0,
        }
    }

    /// Go's type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::SafeHtml(_) => "template.HTML",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
            Value::Kv(_) => "template.KV",
            Value::Alerts(_) => "template.Alerts",
            Value::Struct(n, _) => n,
            Value::Time(..) => "time.Time",
            Value::Duration(_) => "time.Duration",
        }
    }

    /// The string inside a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::SafeHtml(s) => Some(s),
            _ => None,
        }
    }

    /// The elements of a list-like value.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) | Value::Alerts(l) => Some(l),
            _ => None,
        }
    }

    /// Formats as Go's `%v` / `print` does.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write_text(&mut s);
        s
    }

    fn write_text(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("<nil>"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => out.push_str(&format_float_g(*f)),
            Value::Str(s) | Value::SafeHtml(s) => out.push_str(s),
            Value::List(l) | Value::Alerts(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_text(out);
                }
                out.push(']');
            }
            Value::Map(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.write_text(out);
                }
                out.push(']');
            }
            Value::Kv(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    out.push_str(v);
                }
                out.push(']');
            }
            Value::Struct(_, fields) => {
                out.push('{');
                for (i, v) in fields.values().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_text(out);
                }
                out.push('}');
            }
            Value::Time(t, tz) => out.push_str(&crate::gotime::format(
                *t,
                tz,
                "2006-01-02 15:04:05.999999999 -0700 MST",
            )),
            Value::Duration(d) => out.push_str(&crate::gotime::duration_string(*d)),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::str(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(Arc::from(s))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

/// Go's `%v` for float64 (`strconv.FormatFloat(f, 'g', -1, 64)` with Go's exponent form).
pub fn format_float_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let exp = f.abs().log10().floor() as i32;
    if !(-4..21).contains(&exp) {
        // Shortest round-trip mantissa, Go style exponent: 1e+21, 1.5e-05.
        let s = format!("{f:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        let sign = if e < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", e.abs());
    }
    format!("{f}")
}
