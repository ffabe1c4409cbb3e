//! Go RE2-compatible regular expressions on top of the `regex` crate.
//!
//! Alertmanager anchors every matcher regex as `^(?:RE)$` and compiles it with Go's `regexp`. Rust's
//! `regex` is the same family (linear time, no backreferences) but differs in a few places: Perl
//! classes (`\d \w \s \b`) are ASCII-only in Go and Unicode in Rust, Go knows `\Q…\E`, caps repeat
//! counts at 1000 and has no `(?x)` or `\<`/`\>`. We rewrite the pattern so both agree.

use regex::Regex;

const D: &str = "0-9";
const W: &str = "0-9A-Za-z_";
const S: &str = r"\t\n\x0C\r ";
const ND: &str = r"\x00-\x2F\x3A-\x{10FFFF}";
const NW: &str = r"\x00-\x2F\x3A-\x40\x5B-\x5E\x60\x7B-\x{10FFFF}";
const NS: &str = r"\x00-\x08\x0B\x0E-\x1F\x21-\x{10FFFF}";
const MAX_REPEAT: u32 = 1000;

/// Compiles `pattern` fully anchored, with Go semantics.
///
/// # Errors
/// Returns Go-style text such as `error parsing regexp: …` when the pattern is invalid in Go.
pub fn compile_anchored(pattern: &str) -> Result<Regex, String> {
    let translated = translate(pattern)?;
    Regex::new(&format!("^(?:{translated})$")).map_err(|e| format!("error parsing regexp: {e}"))
}

/// Compiles `pattern` unanchored, with Go semantics (template `match`, `reReplaceAll`).
///
/// # Errors
/// As [`compile_anchored`].
pub fn compile(pattern: &str) -> Result<Regex, String> {
    let translated = translate(pattern)?;
    Regex::new(&translated).map_err(|e| format!("error parsing regexp: {e}"))
}

fn translate(p: &str) -> Result<String, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&n) = chars.get(i + 1) else {
                    return Err("error parsing regexp: trailing backslash at end of expression: ``".into());
                };
                i += 2;
                match (n, in_class) {
                    ('d', false) => out.push_str(&format!("[{D}]")),
                    ('w', false) => out.push_str(&format!("[{W}]")),
                    ('s', false) => out.push_str(&format!("[{S}]")),
                    ('D', false) => out.push_str(&format!("[{ND}]")),
                    ('W', false) => out.push_str(&format!("[{NW}]")),
                    ('S', false) => out.push_str(&format!("[{NS}]")),
                    ('d', true) => out.push_str(D),
                    ('w', true) => out.push_str(W),
                    ('s', true) => out.push_str(S),
                    ('D', true) => out.push_str(ND),
                    ('W', true) => out.push_str(NW),
                    ('S', true) => out.push_str(NS),
                    ('b', false) => out.push_str(r"(?-u:\b)"),
                    ('B', false) => out.push_str(r"(?-u:\B)"),
                    ('<' | '>', _) => {
                        return Err(format!("error parsing regexp: invalid escape sequence: `\\{n}`"));
                    }
                    ('Q', _) => {
                        // Literal text up to \E (or the end).
                        let mut lit = String::new();
                        while i < chars.len() {
                            if chars[i] == '\\' && chars.get(i + 1) == Some(&'E') {
                                i += 2;
                                break;
                            }
                            lit.push(chars[i]);
                            i += 1;
                        }
                        out.push_str(&regex::escape(&lit));
                    }
                    (n, _) => {
                        out.push('\\');
                        out.push(n);
                    }
                }
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                i += 1;
                // A leading `^` and a leading `]` are part of the class syntax.
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push_str(r"\]");
                    i += 1;
                }
                continue;
            }
            '[' if in_class => {
                // POSIX class `[:alpha:]` inside a bracket expression.
                if chars.get(i + 1) == Some(&':')
                    && let Some(end) = find_seq(&chars, i + 2, &[':', ']'])
                {
                    out.extend(&chars[i..end + 2]);
                    i = end + 2;
                    continue;
                }
                out.push_str(r"\[");
                i += 1;
                continue;
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '(' if !in_class && chars.get(i + 1) == Some(&'?') => {
                // Flag groups: Go knows i, m, s, U only.
                let mut j = i + 2;
                while j < chars.len() && chars[j] != ')' && chars[j] != ':' {
                    let f = chars[j];
                    if !matches!(f, 'i' | 'm' | 's' | 'U' | '-') {
                        if f == 'P' || f == '<' {
                            break;
                        }
                        return Err(format!(
                            "error parsing regexp: invalid or unsupported Perl syntax: `(?{f}`"
                        ));
                    }
                    j += 1;
                }
                out.push(c);
            }
            '{' if !in_class => {
                if let Some((end, lo, hi)) = parse_repeat(&chars, i) {
                    if lo > MAX_REPEAT || hi.is_some_and(|h| h > MAX_REPEAT) {
                        let text: String = chars[i..=end].iter().collect();
                        return Err(format!("error parsing regexp: invalid repeat count: `{text}`"));
                    }
                    out.extend(&chars[i..=end]);
                    i = end + 1;
                    continue;
                }
                // Go treats a `{` that is not a repeat as a literal; Rust rejects it.
                out.push_str(r"\{");
            }
            '}' if !in_class => out.push_str(r"\}"),
            c => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

fn find_seq(chars: &[char], from: usize, seq: &[char]) -> Option<usize> {
    (from..chars.len().saturating_sub(seq.len() - 1)).find(|&k| chars[k..k + seq.len()] == *seq)
}

/// Parses `{n}`, `{n,}` or `{n,m}` at `start`; returns the index of `}` and the bounds.
fn parse_repeat(chars: &[char], start: usize) -> Option<(usize, u32, Option<u32>)> {
    let mut j = start + 1;
    let num = |j: &mut usize| -> Option<u32> {
        let s = *j;
        while *j < chars.len() && chars[*j].is_ascii_digit() {
            *j += 1;
        }
        if s == *j {
            return None;
        }
        chars[s..*j].iter().collect::<String>().parse().ok().or(Some(u32::MAX))
    };
    let lo = num(&mut j)?;
    let mut hi = Some(lo);
    if chars.get(j) == Some(&',') {
        j += 1;
        hi = if chars.get(j) == Some(&'}') {
            None
        } else {
            Some(num(&mut j)?)
        };
    }
    (chars.get(j) == Some(&'}')).then_some((j, lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        compile_anchored(p).unwrap().is_match(s)
    }

    #[test]
    fn perl_classes_are_ascii_like_go() {
        assert!(!m(r"\d+", "١٢٣"));
        assert!(m(r"\d+", "123"));
        assert!(!m(r"\w+", "héllo"));
        assert!(m(r"[\w.]+", "a.b_c"));
        assert!(!m(r"\s", "\u{a0}"));
        assert!(m(r"[^\d]+", "abc"));
        assert!(m(r"\D+", "é"));
    }

    #[test]
    fn anchoring_and_literals() {
        assert!(m("foo|bar", "bar"));
        assert!(!m("foo", "foobar"));
        assert!(m(r"\Qa.b\E", "a.b"));
        assert!(!m(r"\Qa.b\E", "axb"));
        assert!(m("a{2}", "aa"));
        assert!(m("a{", "a{"));
        assert!(m("[]a]+", "]a"));
        assert!(m("[[:alpha:]]+", "abc"));
        assert!(m("(?i)ABC", "abc"));
        assert!(m("(?P<x>a)b", "ab"));
    }

    #[test]
    fn go_rejections() {
        assert!(compile_anchored("a{1001}").is_err());
        assert!(compile_anchored("(?x) a").is_err());
        assert!(compile_anchored(r"\<a").is_err());
        assert!(compile_anchored("(a").is_err());
        assert!(compile_anchored("a{2,1000}").is_ok());
    }
}
