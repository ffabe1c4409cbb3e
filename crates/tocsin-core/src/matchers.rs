//! Label matchers (`=`, `!=`, `=~`, `!~`) and Alertmanager's two matcher parsers.
//!
//! The classic parser is the one of Alertmanager ≤ 0.26; the UTF-8 parser came with 0.27. The
//! default mode (fallback) tries UTF-8 first and falls back to classic, as Alertmanager does.

use std::cmp::Ordering;
use std::fmt;

use regex::Regex;

use crate::labels::{LabelSet, go_quote};
use crate::regex_go;

/// The operator of a matcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchType {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regexp,
    /// `!~`
    NotRegexp,
}

impl MatchType {
    /// Returns the operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regexp => "=~",
            MatchType::NotRegexp => "!~",
        }
    }

    /// Returns whether the operator is a regex operator.
    pub fn is_regex(self) -> bool {
        matches!(self, MatchType::Regexp | MatchType::NotRegexp)
    }

    /// Returns whether the operator is a negative one.
    pub fn is_negative(self) -> bool {
        matches!(self, MatchType::NotEqual | MatchType::NotRegexp)
    }
}

/// One label matcher; regexes are compiled once, anchored, with Go semantics.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Operator.
    pub op: MatchType,
    /// Value or regex source as written.
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}
impl Eq for Matcher {}

impl Matcher {
    /// Builds a matcher, compiling the regex for `=~`/`!~`.
    ///
    /// # Errors
    /// Returns Go's regex error text when the regex does not compile.
    pub fn new(op: MatchType, name: impl Into<String>, value: impl Into<String>) -> Result<Self, String> {
        let value = value.into();
        let re = if op.is_regex() {
            Some(regex_go::compile_anchored(&value)?)
        } else {
            None
        };
        Ok(Matcher {
            name: name.into(),
            op,
            value,
            re,
        })
    }

    /// Returns whether the matcher accepts `v` (the label value, `""` when absent).
    pub fn matches_value(&self, v: &str) -> bool {
        match self.op {
            MatchType::Equal => self.value == v,
            MatchType::NotEqual => self.value != v,
            MatchType::Regexp => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchType::NotRegexp => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// Returns whether the matcher accepts the label set.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.matches_value(labels.get(&self.name).unwrap_or(""))
    }
}

fn is_reserved(c: char) -> bool {
    c.is_whitespace() || "{}!=~,\\\"'`".contains(c)
}

impl fmt::Display for Matcher {
    /// Formats as Alertmanager's `Matcher.String()`: `name="value"` with OpenMetrics escaping.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.chars().any(is_reserved) {
            f.write_str(&go_quote(&self.name))?;
        } else {
            f.write_str(&self.name)?;
        }
        f.write_str(self.op.as_str())?;
        f.write_str("\"")?;
        for c in self.value.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '"' => f.write_str("\\\"")?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

/// Returns whether every matcher accepts the label set (an empty list matches everything).
pub fn all_match(matchers: &[Matcher], labels: &LabelSet) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// Sorts matchers as Alertmanager does for route keys: by name, then value, then operator.
pub fn sort_matchers(ms: &mut [Matcher]) {
    ms.sort_by(|a, b| match a.name.cmp(&b.name) {
        Ordering::Equal => a.value.cmp(&b.value).then(a.op.cmp(&b.op)),
        o => o,
    });
}

/// Formats a list as `{a="x",b=~"y"}` (Alertmanager's `Matchers.String()`).
pub fn matchers_to_string(ms: &[Matcher]) -> String {
    let mut s = String::from("{");
    for (i, m) in ms.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&m.to_string());
    }
    s.push('}');
    s
}

/// Which parser(s) to use (`--enable-feature=classic-mode|utf8-strict-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ParseMode {
    /// UTF-8 parser, falling back to the classic one when it fails.
    #[default]
    Fallback,
    /// UTF-8 parser only.
    Utf8Strict,
    /// Classic parser only.
    Classic,
}

/// Parses a matcher list (`{a="b", c=~"d"}` or `a=b,c=~d`) in the given mode.
///
/// # Errors
/// Returns the parser's message (`bad matcher format: …` for the classic parser).
pub fn parse_matchers(input: &str, mode: ParseMode) -> Result<Vec<Matcher>, String> {
    match mode {
        ParseMode::Classic => parse_matchers_classic(input),
        ParseMode::Utf8Strict => parse_matchers_utf8(input),
        ParseMode::Fallback => match parse_matchers_utf8(input) {
            Ok(ms) => {
                // When both parsers accept but disagree, Alertmanager keeps the classic result.
                match parse_matchers_classic(input) {
                    Ok(cms) if cms != ms => Ok(cms),
                    _ => Ok(ms),
                }
            }
            Err(_) => parse_matchers_classic(input),
        },
    }
}

/// Parses a single matcher (API `filter` parameters, silence matchers in amtool form).
///
/// # Errors
/// As [`parse_matchers`]; additionally braces are rejected in UTF-8 modes.
pub fn parse_matcher(input: &str, mode: ParseMode) -> Result<Matcher, String> {
    let single = |ms: Vec<Matcher>| -> Result<Matcher, String> {
        let n = ms.len();
        let mut it = ms.into_iter();
        match (it.next(), n) {
            (Some(m), 1) => Ok(m),
            _ => Err(format!("expected 1 matcher, found {n}")),
        }
    };
    let utf8 = || -> Result<Matcher, String> {
        let t = input.trim();
        if t.starts_with('{') || t.ends_with('}') {
            return Err(format!("unexpected open or close brace: {input}"));
        }
        single(parse_matchers_utf8(input)?)
    };
    match mode {
        ParseMode::Classic => single(parse_matchers_classic(input)?),
        ParseMode::Utf8Strict => utf8(),
        ParseMode::Fallback => match utf8() {
            Ok(m) => match parse_matchers_classic(input).and_then(single) {
                Ok(c) if c != m => Ok(c),
                _ => Ok(m),
            },
            Err(_) => single(parse_matchers_classic(input)?),
        },
    }
}

/// The classic (pre-0.27) parser.
fn parse_matchers_classic(input: &str) -> Result<Vec<Matcher>, String> {
    let s = input.strip_prefix('{').unwrap_or(input);
    let s = s.strip_suffix('}').unwrap_or(s);
    let mut tokens = Vec::new();
    let mut token = String::new();
    let (mut in_quotes, mut escaped) = (false, false);
    for c in s.chars() {
        match c {
            ',' if !in_quotes => {
                tokens.push(std::mem::take(&mut token));
                continue;
            }
            ',' => {}
            '"' => {
                if escaped {
                    escaped = false;
                } else {
                    in_quotes = !in_quotes;
                }
            }
            '\\' => escaped = !escaped,
            _ => escaped = false,
        }
        token.push(c);
    }
    let last = token.trim();
    if !last.is_empty() {
        tokens.push(last.to_string());
    }
    tokens.iter().map(|t| parse_matcher_classic(t)).collect()
}

fn parse_matcher_classic(s: &str) -> Result<Matcher, String> {
    let bad = || format!("bad matcher format: {s}");
    let t = s.trim_start();
    // Name: [a-zA-Z_:][a-zA-Z0-9_:]*
    let name_len = t
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())))
        .map(|(i, _)| i)
        .unwrap_or(t.len());
    if name_len == 0 {
        return Err(bad());
    }
    let name = &t[..name_len];
    let rest = t[name_len..].trim_start();
    let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
        (MatchType::Regexp, r)
    } else if let Some(r) = rest.strip_prefix("!=") {
        (MatchType::NotEqual, r)
    } else if let Some(r) = rest.strip_prefix("!~") {
        (MatchType::NotRegexp, r)
    } else if let Some(r) = rest.strip_prefix('=') {
        (MatchType::Equal, r)
    } else {
        return Err(bad());
    };
    let raw_full = rest.trim();
    let (raw, mut expect_quote) = match raw_full.strip_prefix('"') {
        Some(r) => (r, true),
        None => (raw_full, false),
    };
    let mut value = String::with_capacity(raw.len());
    let mut escaped = false;
    let n = raw.chars().count();
    for (i, c) in raw.chars().enumerate() {
        if escaped {
            escaped = false;
            match c {
                'n' => value.push('\n'),
                '"' | '\\' => value.push(c),
                c => {
                    value.push('\\');
                    value.push(c);
                }
            }
            continue;
        }
        match c {
            '\\' if i < n - 1 => escaped = true,
            '"' => {
                if !expect_quote || i < n - 1 {
                    return Err(format!("matcher value contains unescaped double quote: {raw_full}"));
                }
                expect_quote = false;
            }
            c => value.push(c),
        }
    }
    if expect_quote {
        return Err(format!("matcher value contains unescaped double quote: {raw_full}"));
    }
    Matcher::new(op, name, value)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Comma,
    Op(MatchType),
    Quoted(String),
    Unquoted(String),
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Open => "{".into(),
        Tok::Close => "}".into(),
        Tok::Comma => ",".into(),
        Tok::Op(o) => o.as_str().into(),
        Tok::Quoted(s) => go_quote(s),
        Tok::Unquoted(s) => s.clone(),
    }
}

/// Lexes the UTF-8 matcher syntax; positions are character columns (start, end).
fn lex(input: &str) -> Result<Vec<(usize, usize, Tok)>, String> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '{' => out.push((start, i + 1, Tok::Open)),
            '}' => out.push((start, i + 1, Tok::Close)),
            ',' => out.push((start, i + 1, Tok::Comma)),
            '=' | '!' => {
                let next = chars.get(i + 1).copied();
                let op = match (c, next) {
                    ('=', Some('~')) => Some(MatchType::Regexp),
                    ('!', Some('=')) => Some(MatchType::NotEqual),
                    ('!', Some('~')) => Some(MatchType::NotRegexp),
                    ('=', _) => None,
                    _ => return Err(format!("{start}:{}: {c}: invalid input", start + 1)),
                };
                match op {
                    Some(op) => {
                        i += 1;
                        out.push((start, i + 1, Tok::Op(op)));
                    }
                    None => out.push((start, i + 1, Tok::Op(MatchType::Equal))),
                }
            }
            '"' => {
                let mut j = i + 1;
                let mut raw = String::from('"');
                let mut closed = false;
                while j < chars.len() {
                    let d = chars[j];
                    raw.push(d);
                    if d == '\\' && j + 1 < chars.len() {
                        raw.push(chars[j + 1]);
                        j += 2;
                        continue;
                    }
                    j += 1;
                    if d == '"' {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err(format!("{start}:{j}: {raw}: missing end \""));
                }
                let s = go_unquote(&raw).ok_or_else(|| format!("{start}:{j}: {raw}: invalid input"))?;
                out.push((start, j, Tok::Quoted(s)));
                i = j;
                continue;
            }
            '~' | '\'' | '`' | '\\' => {
                return Err(format!("{start}:{}: {c}: invalid input", start + 1));
            }
            _ => {
                let mut j = i;
                while j < chars.len() && !chars[j].is_whitespace() && !"{}!=~,\\\"'`".contains(chars[j]) {
                    j += 1;
                }
                out.push((start, j, Tok::Unquoted(chars[i..j].iter().collect())));
                i = j;
                continue;
            }
        }
        i += 1;
    }
    Ok(out)
}

/// Decodes a Go double-quoted string literal (`strconv.Unquote`).
fn go_unquote(raw: &str) -> Option<String> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut bytes: Vec<u8> = Vec::new();
    let mut it = inner.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            if c == '"' || c == '\n' {
                return None;
            }
            let mut b = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            continue;
        }
        let e = it.next()?;
        let ch = match e {
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\x0b',
            '\\' => '\\',
            '"' => '"',
            'x' => {
                let h: String = (0..2).filter_map(|_| it.next()).collect();
                bytes.push(u8::from_str_radix(&h, 16).ok()?);
                continue;
            }
            'u' | 'U' => {
                let n = if e == 'u' { 4 } else { 8 };
                let h: String = (0..n).filter_map(|_| it.next()).collect();
                char::from_u32(u32::from_str_radix(&h, 16).ok()?)?
            }
            '0'..='7' => {
                let mut s = String::from(e);
                s.extend((0..2).filter_map(|_| it.next()));
                bytes.push(u8::from_str_radix(&s, 8).ok()?);
                continue;
            }
            _ => return None,
        };
        let mut b = [0u8; 4];
        bytes.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
    }
    out.push_str(std::str::from_utf8(&bytes).ok()?);
    Some(out)
}

/// The UTF-8 (0.27+) parser.
fn parse_matchers_utf8(input: &str) -> Result<Vec<Matcher>, String> {
    let toks = lex(input)?;
    let end = input.chars().count();
    let mut i = 0;
    let mut out = Vec::new();
    let opened = matches!(toks.first(), Some((_, _, Tok::Open)));
    if opened {
        i += 1;
    }
    let unexpected = |t: &(usize, usize, Tok), what: &str| {
        format!("{}:{}: unexpected {}: expected {what}", t.0, t.1, describe(&t.2))
    };
    loop {
        match toks.get(i) {
            None => {
                if opened {
                    return Err("end of input: expected close brace".into());
                }
                break;
            }
            Some((_, _, Tok::Close)) if opened => {
                i += 1;
                if let Some(t) = toks.get(i) {
                    return Err(unexpected(t, "end of input"));
                }
                break;
            }
            Some(_) => {}
        }
        // name
        let name = match toks.get(i) {
            Some((_, _, Tok::Quoted(s) | Tok::Unquoted(s))) => s.clone(),
            Some(t) => return Err(unexpected(t, "label name")),
            None => return Err("end of input: expected label name".into()),
        };
        i += 1;
        let op = match toks.get(i) {
            Some((_, _, Tok::Op(o))) => *o,
            Some(t) => {
                return Err(unexpected(t, "an operator such as '=', '!=', '=~' or '!~'"));
            }
            None => {
                return Err("end of input: expected an operator such as '=', '!=', '=~' or '!~'".into());
            }
        };
        i += 1;
        let value = match toks.get(i) {
            Some((_, _, Tok::Quoted(s) | Tok::Unquoted(s))) => s.clone(),
            Some(t) => return Err(unexpected(t, "label value")),
            None => return Err("end of input: expected label value".into()),
        };
        i += 1;
        let m = Matcher::new(op, name, value).map_err(|e| format!("{}:{end}: {e}", 0))?;
        out.push(m);
        match toks.get(i) {
            Some((_, _, Tok::Comma)) => i += 1,
            Some((_, _, Tok::Close)) if opened => {}
            None => {}
            Some(t) => return Err(unexpected(t, "comma or close brace")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn matching_semantics() {
        let m = Matcher::new(MatchType::Regexp, "a", "b|c").unwrap();
        assert!(m.matches(&ls(&[("a", "c")])));
        assert!(!m.matches(&ls(&[("a", "cc")])));
        let absent = Matcher::new(MatchType::Equal, "foo", "").unwrap();
        assert!(absent.matches(&ls(&[])));
        let present = Matcher::new(MatchType::NotEqual, "foo", "").unwrap();
        assert!(!present.matches(&ls(&[])));
        assert!(present.matches(&ls(&[("foo", "x")])));
    }

    #[test]
    fn classic_parser_cases() {
        let ms = parse_matchers("{foo = \"bar\", dings != \"bums\", }", ParseMode::Classic).unwrap();
        assert_eq!(matchers_to_string(&ms), r#"{foo="bar",dings!="bums"}"#);
        let ms = parse_matchers(r#"{quote="She said: \"Hi, ladies!\""}"#, ParseMode::Classic).unwrap();
        assert_eq!(ms[0].value, "She said: \"Hi, ladies!\"");
        let ms = parse_matchers("statuscode=~5..,foo=", ParseMode::Classic).unwrap();
        assert_eq!(ms[0].op, MatchType::Regexp);
        assert_eq!(ms[1].value, "");
        assert_eq!(
            parse_matchers("foo", ParseMode::Classic).unwrap_err(),
            "bad matcher format: foo"
        );
        assert!(parse_matchers(r#"foo="b"ar""#, ParseMode::Classic).is_err());
    }

    #[test]
    fn utf8_parser_cases() {
        let ms = parse_matchers(r#"{"fooΣ"="bar🙂", a=~"x.*"}"#, ParseMode::Utf8Strict).unwrap();
        assert_eq!(ms[0].name, "fooΣ");
        assert_eq!(ms[0].value, "bar🙂");
        let ms = parse_matchers(r#""\xf0\x9f\x99\x82"=dΘ"#, ParseMode::Utf8Strict).unwrap();
        assert_eq!(ms[0].name, "🙂");
        assert_eq!(
            parse_matchers("foo=", ParseMode::Utf8Strict).unwrap_err(),
            "end of input: expected label value"
        );
        assert_eq!(
            parse_matchers("foo", ParseMode::Utf8Strict).unwrap_err(),
            "end of input: expected an operator such as '=', '!=', '=~' or '!~'"
        );
        assert!(parse_matchers("{a=b", ParseMode::Utf8Strict).is_err());
        assert!(parse_matcher("{a=b}", ParseMode::Utf8Strict).is_err());
    }

    #[test]
    fn fallback_mode_uses_classic_when_utf8_fails() {
        // `foo=` is an error in UTF-8 but valid classic.
        let ms = parse_matchers("foo=", ParseMode::Fallback).unwrap();
        assert_eq!(ms[0].value, "");
        assert_eq!(
            parse_matcher("foo", ParseMode::Fallback).unwrap_err(),
            "bad matcher format: foo"
        );
        let m = parse_matcher("00=b", ParseMode::Fallback).unwrap();
        assert_eq!(m.name, "00");
    }

    #[test]
    fn display_escapes_like_alertmanager() {
        let m = Matcher::new(MatchType::Equal, "team", "a\"b\\c\nd").unwrap();
        assert_eq!(m.to_string(), r#"team="a\"b\\c\nd""#);
        let m = Matcher::new(MatchType::Equal, "a b", "x").unwrap();
        assert_eq!(m.to_string(), r#""a b"="x""#);
    }
}
