//! Functions: Go's text/template built-ins and Alertmanager's function map (§2.8).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;

use crate::exec::Exec;
use crate::value::{Value, format_float_g};

/// Every function a template may call (checked at parse time, as Go does).
pub const NAMES: &[&str] = &[
    // Go built-ins.
    "and",
    "or",
    "not",
    "len",
    "index",
    "slice",
    "print",
    "printf",
    "println",
    "html",
    "js",
    "urlquery",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "call",
    // Alertmanager.
    "toUpper",
    "toLower",
    "title",
    "trimSpace",
    "join",
    "match",
    "reReplaceAll",
    "safeHtml",
    "safeUrl",
    "urlUnescape",
    "stringSlice",
    "date",
    "tz",
    "since",
    "humanizeDuration",
    "toJson",
    "now",
    "toDate",
    "mustToDate",
    "base64encode",
    "base64decode",
    "list",
    "append",
    "dict",
    "routeLabels",
];

type R<T> = Result<T, String>;

fn arity(name: &str, args: &[Value], n: usize) -> R<()> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("wrong number of args for {name}: want {n} got {}", args.len()))
    }
}

fn string_arg<'a>(name: &str, v: &'a Value) -> R<&'a str> {
    v.as_str().ok_or_else(|| {
        format!(
            "wrong type for value; expected string; got {} (in {name})",
            v.type_name()
        )
    })
}

fn int_arg(name: &str, v: &Value) -> R<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(format!(
            "wrong type for value; expected int; got {} (in {name})",
            other.type_name()
        )),
    }
}

/// Calls function `name`.
pub(crate) fn call(ex: &mut Exec<'_>, name: &str, a: &[Value]) -> R<Value> {
    let s1 = |f: fn(&str) -> String| -> R<Value> {
        arity(name, a, 1)?;
        Ok(Value::from(f(string_arg(name, &a[0])?)))
    };
    match name {
        "not" => {
            arity(name, a, 1)?;
            Ok(Value::Bool(!a[0].truthy()))
        }
        "len" => {
            arity(name, a, 1)?;
            let n = match &a[0] {
                Value::Str(s) | Value::SafeHtml(s) => s.len(),
                Value::List(l) | Value::Alerts(l) => l.len(),
                Value::Map(m) => m.len(),
                Value::Kv(m) => m.len(),
                other => return Err(format!("error calling len: len of type {}", other.type_name())),
            };
            Ok(Value::Int(n as i64))
        }
        "index" => {
            let (first, keys) = a
                .split_first()
                .ok_or("wrong number of args for index: want at least 1 got 0")?;
            let mut v = first.clone();
            for k in keys {
                v = index(&v, k)?;
            }
            Ok(v)
        }
        "slice" => slice(a),
        "print" => Ok(Value::from(sprint(a))),
        "println" => {
            let parts: Vec<String> = a.iter().map(Value::to_text).collect();
            Ok(Value::from(parts.join(" ") + "\n"))
        }
        "printf" => {
            let (f, rest) = a
                .split_first()
                .ok_or("wrong number of args for printf: want at least 1 got 0")?;
            Ok(Value::from(sprintf(string_arg(name, f)?, rest)))
        }
        "html" => Ok(Value::from(html_escape(&sprint(a)))),
        "js" => Ok(Value::from(js_escape(&sprint(a)))),
        "urlquery" => Ok(Value::from(query_escape(&sprint(a)))),
        "eq" => {
            let (x, ys) = a.split_first().ok_or("missing argument for comparison")?;
            if ys.is_empty() {
                return Err("missing argument for comparison".into());
            }
            for y in ys {
                if equal(x, y)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" => {
            arity(name, a, 2)?;
            Ok(Value::Bool(!equal(&a[0], &a[1])?))
        }
        "lt" | "le" | "gt" | "ge" => {
            arity(name, a, 2)?;
            let o = order(&a[0], &a[1])?;
            Ok(Value::Bool(match name {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            }))
        }
        "call" => Err("call of non-function: templates here have no function values".into()),
        "toUpper" => s1(str::to_uppercase),
        "toLower" => s1(str::to_lowercase),
        "trimSpace" => s1(|s| s.trim().to_string()),
        "title" => s1(title),
        "safeHtml" => {
            arity(name, a, 1)?;
            Ok(Value::SafeHtml(Arc::from(string_arg(name, &a[0])?)))
        }
        "safeUrl" => {
            arity(name, a, 1)?;
            Ok(Value::SafeHtml(Arc::from(string_arg(name, &a[0])?)))
        }
        "urlUnescape" => {
            arity(name, a, 1)?;
            query_unescape(string_arg(name, &a[0])?).map(Value::from)
        }
        "join" => {
            arity(name, a, 2)?;
            let sep = string_arg(name, &a[0])?;
            let items = a[1]
                .as_list()
                .ok_or_else(|| format!("join wants a list, got {}", a[1].type_name()))?;
            let parts: Vec<String> = items.iter().map(Value::to_text).collect();
            Ok(Value::from(parts.join(sep)))
        }
        "match" => {
            arity(name, a, 2)?;
            let re = regex(string_arg(name, &a[0])?)?;
            Ok(Value::Bool(re.is_match(string_arg(name, &a[1])?)))
        }
        "reReplaceAll" => {
            arity(name, a, 3)?;
            let re = regex(string_arg(name, &a[0])?)?;
            let repl = string_arg(name, &a[1])?;
            Ok(Value::from(re.replace_all(string_arg(name, &a[2])?, repl).into_owned()))
        }
        "stringSlice" | "list" => Ok(Value::List(Arc::new(a.to_vec()))),
        "append" => {
            let (l, rest) = a.split_first().ok_or("wrong number of args for append")?;
            let mut items = l.as_list().ok_or("append wants a list")?.to_vec();
            items.extend(rest.iter().cloned());
            Ok(Value::List(Arc::new(items)))
        }
        "dict" => {
            if !a.len().is_multiple_of(2) {
                return Err("dict wants an even number of arguments".into());
            }
            let mut m = BTreeMap::new();
            for kv in a.chunks(2) {
                m.insert(string_arg(name, &kv[0])?.to_string(), kv[1].clone());
            }
            Ok(Value::Map(Arc::new(m)))
        }
        "date" => {
            arity(name, a, 2)?;
            let layout = string_arg(name, &a[0])?;
            match &a[1] {
                Value::Time(t, tz) => Ok(Value::from(crate::gotime::format(*t, tz, layout))),
                other => Err(format!("date wants a time, got {}", other.type_name())),
            }
        }
        "tz" => {
            arity(name, a, 2)?;
            let zone = jiff::tz::TimeZone::get(string_arg(name, &a[0])?).map_err(|e| e.to_string())?;
            match &a[1] {
                Value::Time(t, _) => Ok(Value::Time(*t, zone)),
                other => Err(format!("tz wants a time, got {}", other.type_name())),
            }
        }
        // Alertmanager 0.34: a route label's value; "" for a name the route does not have.
        "routeLabels" => {
            arity(name, a, 1)?;
            let key = string_arg(name, &a[0])?;
            let value = match &ex.root {
                Value::Struct(_, f) => match f.get("RouteLabels") {
                    Some(Value::Kv(m)) => m.get(key).cloned().unwrap_or_default(),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            Ok(Value::from(value))
        }
        "now" => {
            arity(name, a, 0)?;
            Ok(Value::Time(ex.opts.now, jiff::tz::TimeZone::UTC))
        }
        "since" => {
            arity(name, a, 1)?;
            match &a[0] {
                Value::Time(t, _) => {
                    let d = ex.opts.now.duration_since(*t);
                    Ok(Value::Duration(
                        d.as_nanos().clamp(i64::MIN as i128, i64::MAX as i128) as i64
                    ))
                }
                other => Err(format!("since wants a time, got {}", other.type_name())),
            }
        }
        "toDate" | "mustToDate" => {
            arity(name, a, 2)?;
            let layout = string_arg(name, &a[0])?;
            if layout != "2006-01-02T15:04:05Z07:00" {
                return Err(format!("{name}: only the RFC 3339 layout is supported, got {layout:?}"));
            }
            let t: jiff::Timestamp = string_arg(name, &a[1])?.parse().map_err(|e| format!("{name}: {e}"))?;
            Ok(Value::Time(t, jiff::tz::TimeZone::UTC))
        }
        "humanizeDuration" => {
            arity(name, a, 1)?;
            let secs = match &a[0] {
                Value::Int(i) => *i as f64,
                Value::Float(f) => *f,
                Value::Duration(d) => *d as f64 / 1e9,
                Value::Str(s) => s.parse::<f64>().map_err(|e| format!("humanizeDuration: {e}"))?,
                other => return Err(format!("humanizeDuration wants a number, got {}", other.type_name())),
            };
            Ok(Value::from(humanize_duration(secs)))
        }
        "toJson" => {
            arity(name, a, 1)?;
            let mut out = String::new();
            go_json(&a[0], &mut out)?;
            Ok(Value::from(out))
        }
        "base64encode" => s1(|s| base64::engine::general_purpose::STANDARD.encode(s)),
        "base64decode" => {
            arity(name, a, 1)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(string_arg(name, &a[0])?)
                .map_err(|e| format!("base64decode: {e}"))?;
            Ok(Value::from(String::from_utf8_lossy(&bytes).into_owned()))
        }
        _ => Err(format!("function {name:?} not defined")),
    }
}

fn regex(re: &str) -> R<regex::Regex> {
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("error parsing regexp: {e}"))
}

fn index(v: &Value, k: &Value) -> R<Value> {
    match (v, k) {
        (Value::List(l) | Value::Alerts(l), Value::Int(i)) => usize::try_from(*i)
            .ok()
            .and_then(|i| l.get(i).cloned())
            .ok_or_else(|| format!("error calling index: index out of range: {i}")),
        (Value::Map(m), Value::Str(key)) => Ok(m.get(&**key).cloned().unwrap_or(Value::Nil)),
        (Value::Kv(m), Value::Str(key)) => Ok(Value::str(m.get(&**key).map_or("", String::as_str))),
        (Value::Str(s), Value::Int(i)) => usize::try_from(*i)
            .ok()
            .and_then(|i| s.as_bytes().get(i).copied())
            .map(|b| Value::Int(i64::from(b)))
            .ok_or_else(|| format!("error calling index: index out of range: {i}")),
        (Value::Nil, _) => Err("error calling index: index of untyped nil".into()),
        (v, k) => Err(format!(
            "error calling index: cannot index {} with {}",
            v.type_name(),
            k.type_name()
        )),
    }
}

fn slice(a: &[Value]) -> R<Value> {
    let (v, idx) = a
        .split_first()
        .ok_or("wrong number of args for slice: want at least 1 got 0")?;
    let len = match v {
        Value::Str(s) => s.len(),
        Value::List(l) | Value::Alerts(l) => l.len(),
        other => {
            return Err(format!(
                "error calling slice: can't slice item of type {}",
                other.type_name()
            ));
        }
    };
    if idx.len() > 2 {
        return Err("error calling slice: too many slice indexes".into());
    }
    let get = |i: usize, default: usize| -> R<usize> {
        match idx.get(i) {
            None => Ok(default),
            Some(x) => {
                let n = int_arg("slice", x)?;
                usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= len)
                    .ok_or_else(|| format!("error calling slice: index out of range: {n}"))
            }
        }
    };
    let (lo, hi) = (get(0, 0)?, get(1, len)?);
    if lo > hi {
        return Err(format!("error calling slice: invalid slice index: {lo} > {hi}"));
    }
    match v {
        Value::Str(s) => s
            .get(lo..hi)
            .map(Value::str)
            .ok_or_else(|| "error calling slice: not on a character boundary".to_string()),
        Value::List(l) => Ok(Value::List(Arc::new(l[lo..hi].to_vec()))),
        Value::Alerts(l) => Ok(Value::Alerts(Arc::new(l[lo..hi].to_vec()))),
        _ => unreachable!("checked above"),
    }
}

fn basic_kind(v: &Value) -> Option<u8> {
    match v {
        Value::Bool(_) => Some(0),
        Value::Int(_) | Value::Duration(_) => Some(1),
        Value::Float(_) => Some(2),
        Value::Str(_) | Value::SafeHtml(_) => Some(3),
        Value::Nil => Some(4),
        _ => None,
    }
}

fn equal(x: &Value, y: &Value) -> R<bool> {
    match (basic_kind(x), basic_kind(y)) {
        (Some(_), Some(_)) => {}
        _ => {
            return Err(format!(
                "error calling eq: incompatible types for comparison: {} and {}",
                x.type_name(),
                y.type_name()
            ));
        }
    }
    Ok(match (x, y) {
        (Value::Int(a), Value::Float(b)) | (Value::Float(b), Value::Int(a)) => (*a as f64) == *b,
        (Value::Nil, Value::Nil) => true,
        (Value::Nil, _) | (_, Value::Nil) => false,
        (a, b) if basic_kind(a) != basic_kind(b) => {
            return Err(format!(
                "error calling eq: incompatible types for comparison: {} and {}",
                a.type_name(),
                b.type_name()
            ));
        }
        (Value::Str(a) | Value::SafeHtml(a), Value::Str(b) | Value::SafeHtml(b)) => a == b,
        (a, b) => a == b,
    })
}

fn order(x: &Value, y: &Value) -> R<std::cmp::Ordering> {
    let bad = || {
        format!(
            "error calling lt: incompatible types for comparison: {} and {}",
            x.type_name(),
            y.type_name()
        )
    };
    match (x, y) {
        (Value::Int(a), Value::Int(b)) => Ok(a.cmp(b)),
        (Value::Duration(a), Value::Duration(b)) => Ok(a.cmp(b)),
        (Value::Int(a), Value::Float(b)) => (*a as f64).partial_cmp(b).ok_or_else(bad),
        (Value::Float(a), Value::Int(b)) => a.partial_cmp(&(*b as f64)).ok_or_else(bad),
        (Value::Float(a), Value::Float(b)) => a.partial_cmp(b).ok_or_else(bad),
        (Value::Str(a), Value::Str(b)) => Ok(a.cmp(b)),
        _ => Err(bad()),
    }
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(a: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && v.as_str().is_none() && a[i - 1].as_str().is_none() {
            out.push(' ');
        }
        out.push_str(&v.to_text());
    }
    out
}

/// Go's `html.EscapeString`-style escaping used by text/template's `html`.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            '\n' => out.push_str("\\u000A"),
            '\r' => out.push_str("\\u000D"),
            '\t' => out.push_str("\\u0009"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape` (the template function `urlquery`'s escaping; also the OAuth2 form's).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn query_unescape(s: &str) -> R<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .ok_or_else(|| format!("invalid URL escape {:?}", &s[i..]))?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("invalid URL escape \"%{hex}\""))?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `strings.Title`: the first letter of each word upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    out
}

/// Prometheus' `humanizeDuration`: `1d 2h 3m 4s`, or milli/micro seconds below one second.
fn humanize_duration(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return format!("{v:.4}");
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let v = v.abs();
        let (d, h, m) = ((v / 86400.0) as i64, (v / 3600.0) as i64 % 24, (v / 60.0) as i64 % 60);
        let s = v % 60.0;
        let mut out = String::from(sign);
        if d > 0 {
            return format!("{sign}{d}d {h}h {m}m {}s", s as i64);
        }
        if h > 0 {
            return format!("{sign}{h}h {m}m {}s", s as i64);
        }
        if m > 0 {
            return format!("{sign}{m}m {}s", s as i64);
        }
        out.push_str(&format!("{}s", trim_float(s, 4)));
        return out;
    }
    if v == 0.0 {
        return "0s".into();
    }
    let (prefix, scale) = if v.abs() >= 1e-3 {
        ("ms", 1e3)
    } else if v.abs() >= 1e-6 {
        ("us", 1e6)
    } else {
        ("ns", 1e9)
    };
    format!("{}{prefix}", trim_float(v * scale, 4))
}

/// `%.4g`-like: up to `sig` significant digits, trailing zeros dropped.
fn trim_float(v: f64, sig: i32) -> String {
    let digits = (sig - 1 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The json tags of the structs Go marshals, in declaration order (Go writes struct fields in
/// that order, map keys sorted).
fn json_fields(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "template.Alert" => &[
            ("Status", "status"),
            ("Labels", "labels"),
            ("Annotations", "annotations"),
            ("StartsAt", "startsAt"),
            ("EndsAt", "endsAt"),
            ("GeneratorURL", "generatorURL"),
            ("Fingerprint", "fingerprint"),
        ],
        "template.Data" => &[
            ("Receiver", "receiver"),
            ("Status", "status"),
            ("Alerts", "alerts"),
            ("GroupLabels", "groupLabels"),
            ("CommonLabels", "commonLabels"),
            ("CommonAnnotations", "commonAnnotations"),
            ("ExternalURL", "externalURL"),
        ],
        _ => &[("Name", "Name"), ("Value", "Value")],
    }
}

/// A string as Go's encoder writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped too.
fn go_json_str(s: &str, out: &mut String) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An object of `entries`, each value written by `write`.
fn go_json_object<'a, T: 'a>(
    entries: impl Iterator<Item = (&'a str, T)>,
    out: &mut String,
    mut write: impl FnMut(T, &mut String) -> R<()>,
) -> R<()> {
    out.push('{');
    for (i, (k, x)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        go_json_str(k, out);
        out.push(':');
        write(x, out)?;
    }
    out.push('}');
    Ok(())
}

/// `toJson`: Go's `json.Marshal` of a template value.
fn go_json(v: &Value, out: &mut String) -> R<()> {
    use std::fmt::Write as _;
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) | Value::Duration(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if !f.is_finite() => return Err(format!("json: unsupported value: {f}")),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e21 => {
            let _ = write!(out, "{f:.0}");
        }
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
        Value::Str(s) | Value::SafeHtml(s) => go_json_str(s, out),
        Value::List(l) | Value::Alerts(l) => {
            out.push('[');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(x, out)?;
            }
            out.push(']');
        }
        Value::Map(m) => go_json_object(m.iter().map(|(k, x)| (k.as_str(), x)), out, go_json)?,
        Value::Kv(m) => go_json_object(
            m.iter().map(|(k, x)| (k.as_str(), x)),
            out,
            |x: &String, out: &mut String| {
                go_json_str(x, out);
                Ok(())
            },
        )?,
        Value::Struct(kind, f) => go_json_object(
            json_fields(kind)
                .iter()
                .filter_map(|(field, tag)| f.get(field).map(|x| (*tag, x))),
            out,
            go_json,
        )?,
        Value::Time(t, _) => go_json_str(&t.to_string(), out),
    }
    Ok(())
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %f %e %g %q %x %X %o %b %c %t %T %%`
/// with flags `-+# 0`, width and precision; mismatches print Go's `%!verb(type=value)`.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut sharp, mut space, mut zero) = (false, false, false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '#' => sharp = true,
                ' ' => space = true,
                '0' => zero = true,
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize).min(10_000));
                chars.next();
            }
            n
        };
        let width = num(&mut chars);
        let prec = if chars.peek() == Some(&'.') {
            chars.next();
            Some(num(&mut chars).unwrap_or(0))
        } else {
            None
        };
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        let body = match format_verb(verb, arg, prec, plus, sharp, space) {
            Some(b) => b,
            None => {
                out.push_str(&format!("%!{verb}({}={})", arg.type_name(), arg.to_text()));
                continue;
            }
        };
        let w = width.unwrap_or(0);
        let len = body.chars().count();
        if len >= w {
            out.push_str(&body);
        } else if minus {
            out.push_str(&body);
            out.push_str(&" ".repeat(w - len));
        } else if zero && matches!(arg, Value::Int(_) | Value::Float(_)) {
            let (sign, digits) = match body.strip_prefix(['-', '+']) {
                Some(d) => (&body[..1], d),
                None => ("", body.as_str()),
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(w - len));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(w - len));
            out.push_str(&body);
        }
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.to_text()))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

fn format_verb(verb: char, arg: &Value, prec: Option<usize>, plus: bool, sharp: bool, space: bool) -> Option<String> {
    let sign = |s: String, neg: bool| {
        if neg {
            s
        } else if plus {
            format!("+{s}")
        } else if space {
            format!(" {s}")
        } else {
            s
        }
    };
    Some(match (verb, arg) {
        ('v', Value::Float(f)) => match prec {
            Some(p) => format!("{f:.p$}"),
            None => sign(format_float_g(*f), *f < 0.0),
        },
        ('v', Value::Str(s)) if sharp => go_quote(s),
        ('v', Value::Int(i)) => sign(i.to_string(), *i < 0),
        ('v', v) => v.to_text(),
        ('s', Value::Str(s) | Value::SafeHtml(s)) => match prec {
            Some(p) => s.chars().take(p).collect(),
            None => s.to_string(),
        },
        (
            's',
            v @ (Value::List(_)
            | Value::Map(_)
            | Value::Kv(_)
            | Value::Alerts(_)
            | Value::Time(..)
            | Value::Duration(_)),
        ) => v.to_text(),
        ('q', Value::Str(s)) => go_quote(s),
        ('q', Value::Int(i)) => format!("'{}'", char::from_u32(u32::try_from(*i).ok()?)?),
        ('d', Value::Int(i)) => sign(i.to_string(), *i < 0),
        ('d', Value::Duration(i)) => i.to_string(),
        ('x', Value::Int(i)) => sign(
            with_prefix(format!("{:x}", i.unsigned_abs()), *i < 0, sharp, "0x"),
            *i < 0,
        ),
        ('X', Value::Int(i)) => sign(
            with_prefix(format!("{:X}", i.unsigned_abs()), *i < 0, sharp, "0X"),
            *i < 0,
        ),
        ('o', Value::Int(i)) => sign(
            with_prefix(format!("{:o}", i.unsigned_abs()), *i < 0, sharp, "0"),
            *i < 0,
        ),
        ('b', Value::Int(i)) => sign(
            with_prefix(format!("{:b}", i.unsigned_abs()), *i < 0, false, ""),
            *i < 0,
        ),
        ('x', Value::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
        ('X', Value::Str(s)) => s.bytes().map(|b| format!("{b:02X}")).collect(),
        ('c', Value::Int(i)) => char::from_u32(u32::try_from(*i).ok()?)?.to_string(),
        ('t', Value::Bool(b)) => b.to_string(),
        ('f' | 'F', Value::Float(f)) => sign(format!("{f:.*}", prec.unwrap_or(6)), *f < 0.0),
        ('e', Value::Float(f)) => sign(go_exp(*f, prec.unwrap_or(6)), *f < 0.0),
        ('g', Value::Float(f)) => sign(
            match prec {
                Some(p) => trim_float(*f, p.max(1) as i32),
                None => format_float_g(*f),
            },
            *f < 0.0,
        ),
        ('T', v) => v.type_name().to_string(),
        _ => return None,
    })
}

fn with_prefix(digits: String, neg: bool, sharp: bool, prefix: &str) -> String {
    let p = if sharp { prefix } else { "" };
    format!("{}{p}{digits}", if neg { "-" } else { "" })
}

fn go_exp(f: f64, prec: usize) -> String {
    let s = format!("{f:.prec$e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_matches_go() {
        let s = |f: &str, a: &[Value]| sprintf(f, a);
        assert_eq!(s("%s=%d", &["a".into(), Value::Int(3)]), "a=3");
        assert_eq!(
            s(
                "%5.2f|%-4d|%04d",
                &[Value::Float(1.23456), Value::Int(7), Value::Int(-7)]
            ),
            " 1.23|7   |-007"
        );
        assert_eq!(
            s("%q %v %t", &["a\"b".into(), Value::Float(2.5), Value::Bool(true)]),
            r#""a\"b" 2.5 true"#
        );
        assert_eq!(
            s("%x %X %#x", &[Value::Int(255), "hi".into(), Value::Int(255)]),
            "ff 6869 0xff"
        );
        assert_eq!(s("%d", &["x".into()]), "%!d(string=x)");
        assert_eq!(s("%s %s", &["x".into()]), "x %!s(MISSING)");
        assert_eq!(s("%s", &["x".into(), Value::Int(1)]), "x%!(EXTRA int=1)");
        assert_eq!(s("100%%", &[]), "100%");
        assert_eq!(
            s("%.1e %g", &[Value::Float(12345.0), Value::Float(1e21)]),
            "1.2e+04 1e+21"
        );
    }

    #[test]
    fn escapes_and_strings() {
        assert_eq!(
            html_escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&#34;x&#34;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(query_escape("a b/c?d=é"), "a+b%2Fc%3Fd%3D%C3%A9");
        assert_eq!(query_unescape("a+b%2Fc").unwrap(), "a b/c");
        assert_eq!(title("hello wORLD-foo bar_baz"), "Hello WORLD-Foo Bar_baz");
        assert_eq!(js_escape("a'<b>\n"), "a\\'\\u003Cb\\u003E\\u000A");
        assert_eq!(humanize_duration(93784.0), "1d 2h 3m 4s");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(0.0125), "12.5ms");
    }
}
