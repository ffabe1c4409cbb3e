//! Lexer and parser for Go's text/template language: text and `{{ }}` actions with `{{-`/`-}}`
//! trimming, comments, pipelines with declarations, and the control structures.

use std::collections::HashMap;

/// A parse error, with the template name and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// A node of a template body.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Literal text.
    Text(String),
    /// `{{pipeline}}`: printed unless it declares variables.
    Action(Pipe),
    /// `{{if}}`.
    If(Branch),
    /// `{{with}}`.
    With(Branch),
    /// `{{range}}`.
    Range(Branch),
    /// `{{template "name" pipeline}}`.
    Template(String, Option<Pipe>),
    /// `{{break}}`.
    Break,
    /// `{{continue}}`.
    Continue,
}

/// The pipeline, body and else body of `if`, `with` and `range`.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// The condition / value.
    pub pipe: Pipe,
    /// Body.
    pub list: Vec<Node>,
    /// Else body.
    pub else_list: Vec<Node>,
    /// Line of the keyword (for error messages).
    pub line: usize,
}

/// `$x := cmd | cmd`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipe {
    /// Declared or assigned variables.
    pub decl: Vec<String>,
    /// `=` rather than `:=`.
    pub assign: bool,
    /// Commands; each one's result is the last argument of the next.
    pub cmds: Vec<Vec<Arg>>,
    /// Line of the action.
    pub line: usize,
}

/// An operand of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// `.`
    Dot,
    /// `nil`
    Nil,
    /// `true` / `false`
    Bool(bool),
    /// An integer constant (also characters).
    Int(i64),
    /// A floating-point constant.
    Float(f64),
    /// A string constant.
    Str(String),
    /// `.A.B`: fields of dot.
    Field(Vec<String>),
    /// `$x.A.B`.
    Var(String, Vec<String>),
    /// A function name.
    Func(String),
    /// `(pipeline).A.B`.
    Chain(Box<Pipe>, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Pipe,
    Declare,
    Assign,
    Comma,
    Dot,
    Field(String),
    Var(String),
    Ident(String),
    Str(String),
    Char(i64),
    Num(String),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// Whitespace precedes it (separates arguments; `$x.A` vs `$x .A`).
    spaced: bool,
}

enum Item {
    Text(String),
    Action(Vec<Token>, usize),
}

fn err<T>(name: &str, line: usize, msg: impl std::fmt::Display) -> Result<T, ParseError> {
    Err(ParseError(format!("template: {name}:{line}: {msg}")))
}

/// Splits the source into text and tokenised actions, applying trim markers and dropping comments.
fn lex(name: &str, src: &str) -> Result<Vec<Item>, ParseError> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next = false;
    loop {
        let Some(open) = rest.find("{{") else {
            let mut t = rest;
            if trim_next {
                t = t.trim_start();
            }
            if !t.is_empty() {
                items.push(Item::Text(t.to_string()));
            }
            return Ok(items);
        };
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_left =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n") || after.starts_with("-\r");
        if trim_left {
            text = text.trim_end();
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        line += rest[..open].matches('\n').count();
        let body_start = if trim_left { 2 } else { 0 };
        let (tokens, consumed, trim_right) = lex_action(name, &after[body_start..], line)?;
        let action_src = &after[..body_start + consumed];
        if let Some(tokens) = tokens {
            items.push(Item::Action(tokens, line));
        }
        line += action_src.matches('\n').count();
        trim_next = trim_right;
        rest = &after[body_start + consumed..];
    }
}

/// Lexes one action body up to and including `}}`. Returns the tokens (`None` for a comment),
/// the bytes consumed and whether the right delimiter trims.
#[allow(clippy::type_complexity)]
fn lex_action(name: &str, s: &str, line: usize) -> Result<(Option<Vec<Token>>, usize, bool), ParseError> {
    let b = s.as_bytes();
    let mut i = 0;
    // Comments: `/* ... */` directly after the delimiter (and its trim marker).
    let ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\r' | b'\n') {
            *i += 1;
        }
    };
    if s.starts_with("/*") {
        let Some(end) = s.find("*/") else {
            return err(name, line, "unclosed comment");
        };
        let mut j = end + 2;
        ws(&mut j);
        return close(name, s, j, line).map(|(n, t)| (None, n, t));
    }
    let mut toks = Vec::new();
    let mut spaced = true;
    loop {
        let start = i;
        ws(&mut i);
        if i > start {
            spaced = true;
        }
        if i >= b.len() {
            return err(name, line, "unclosed action");
        }
        if s[i..].starts_with("}}") || (s[i..].starts_with("-}}") && spaced) {
            return close(name, s, i, line).map(|(n, t)| (Some(toks), n, t));
        }
        let c = b[i];
        let tok = match c {
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b'|' => {
                i += 1;
                Tok::Pipe
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Declare
            }
            b'=' => {
                i += 1;
                Tok::Assign
            }
            b'"' => {
                let (v, n) = lex_quoted(name, &s[i..], line)?;
                i += n;
                Tok::Str(v)
            }
            b'`' => {
                let Some(end) = s[i + 1..].find('`') else {
                    return err(name, line, "unterminated raw quoted string");
                };
                let v = s[i + 1..i + 1 + end].to_string();
                i += end + 2;
                Tok::Str(v)
            }
            b'\'' => {
                let (v, n) = lex_char(name, &s[i..], line)?;
                i += n;
                Tok::Char(v)
            }
            b'.' if b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                let n = number_len(&s[i..]);
                let t = Tok::Num(s[i..i + n].to_string());
                i += n;
                t
            }
            b'.' => {
                let n = ident_len(&s[i + 1..]);
                let t = if n == 0 {
                    Tok::Dot
                } else {
                    Tok::Field(s[i + 1..i + 1 + n].to_string())
                };
                i += 1 + n;
                t
            }
            b'$' => {
                let n = ident_len(&s[i + 1..]);
                let t = Tok::Var(s[i..i + 1 + n].to_string());
                i += 1 + n;
                t
            }
            b'-' | b'+' | b'0'..=b'9' => {
                let n = number_len(&s[i..]);
                if n == 0 {
                    return err(name, line, format!("bad character {:?}", c as char));
                }
                let t = Tok::Num(s[i..i + n].to_string());
                i += n;
                t
            }
            _ if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 => {
                let n = ident_len(&s[i..]);
                if n == 0 {
                    return err(
                        name,
                        line,
                        format!("bad character {:?}", s[i..].chars().next().unwrap_or('?')),
                    );
                }
                let t = Tok::Ident(s[i..i + n].to_string());
                i += n;
                t
            }
            _ => return err(name, line, format!("bad character {:?}", c as char)),
        };
        toks.push(Token { tok, spaced });
        spaced = false;
    }
}

/// Consumes the right delimiter at `i` (`}}` or ` -}}`).
fn close(name: &str, s: &str, i: usize, line: usize) -> Result<(usize, bool), ParseError> {
    if s[i..].starts_with("-}}") {
        Ok((i + 3, true))
    } else if s[i..].starts_with("}}") {
        Ok((i + 2, false))
    } else {
        err(name, line, "unclosed comment or action")
    }
}

fn ident_len(s: &str) -> usize {
    s.char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map_or(s.len(), |(i, _)| i)
}

fn number_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits_start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
        // Exponent signs: 1e-3.
        i += 1;
        if i < b.len()
            && matches!(b[i], b'+' | b'-')
            && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P')
            && !s[..i].starts_with("0x")
        {
            i += 1;
        }
    }
    if i == digits_start { 0 } else { i }
}

fn lex_quoted(name: &str, s: &str, line: usize) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' | '"' | '\'' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
                        let v = u32::from_str_radix(&hex, 16).ok().filter(|_| hex.len() == n);
                        let Some(ch) = v.and_then(char::from_u32) else {
                            return err(name, line, format!("invalid escape \\{e}{hex}"));
                        };
                        out.push(ch);
                    }
                    _ => return err(name, line, format!("unknown escape sequence \\{e}")),
                }
            }
            _ => out.push(c),
        }
    }
    err(name, line, "unterminated quoted string")
}

fn lex_char(name: &str, s: &str, line: usize) -> Result<(i64, usize), ParseError> {
    let Some(end) = s[1..].find('\'') else {
        return err(name, line, "unterminated character constant");
    };
    let body = &s[1..1 + end];
    let quoted = format!("\"{}\"", body.replace('"', "\\\""));
    let (v, _) = lex_quoted(name, &quoted, line)?;
    let mut cs = v.chars();
    match (cs.next(), cs.next()) {
        (Some(c), None) => Ok((c as i64, end + 2)),
        _ => err(name, line, format!("malformed character constant: '{body}'")),
    }
}

/// A parsed set of named templates.
pub type Trees = HashMap<String, Vec<Node>>;

struct Parser<'a> {
    name: &'a str,
    items: Vec<Item>,
    pos: usize,
    defs: Trees,
    /// Nesting of range, for break/continue.
    ranges: usize,
    /// Variables in scope (Go checks them at parse time).
    vars: Vec<String>,
    /// Nesting of blocks and parentheses now: the parser and the executor recurse on the
    /// stack, so it is bounded by [`MAX_NESTING`].
    nesting: usize,
}

/// The deepest nesting of blocks (`if`, `range`, `with`…) and parentheses a template may use:
/// 100,000 nested parentheses overflowed the stack and aborted the process.
pub const MAX_NESTING: usize = 100;

enum Stop {
    Eof,
    EndKw,
    Else(Vec<Token>, usize),
}

/// Parses `src` as template `name`; returns its body and every `define`d/`block` template.
///
/// # Errors
/// The first syntax error, as `template: <name>:<line>: <message>`.
pub fn parse(name: &str, src: &str) -> Result<Trees, ParseError> {
    let items = lex(name, src)?;
    let mut p = Parser {
        name,
        items,
        pos: 0,
        defs: HashMap::new(),
        ranges: 0,
        vars: vec!["$".into()],
        nesting: 0,
    };
    let (body, end) = p.list()?;
    match end {
        Stop::Eof => {}
        Stop::EndKw => return err(name, p.line(), "unexpected {{end}}"),
        Stop::Else(_, l) => return err(name, l, "unexpected {{else}}"),
    }
    let mut defs = p.defs;
    // A file that only defines templates does not replace an existing body with emptiness.
    if body.iter().any(|n| !matches!(n, Node::Text(t) if t.trim().is_empty())) || !defs.contains_key(name) {
        defs.insert(name.to_string(), body);
    }
    Ok(defs)
}

impl Parser<'_> {
    fn line(&self) -> usize {
        match self.items.get(self.pos.saturating_sub(1)) {
            Some(Item::Action(_, l)) => *l,
            _ => 0,
        }
    }

    fn list(&mut self) -> Result<(Vec<Node>, Stop), ParseError> {
        let mut out = Vec::new();
        while self.pos < self.items.len() {
            let idx = self.pos;
            self.pos += 1;
            let (toks, line) = match &self.items[idx] {
                Item::Text(t) => {
                    out.push(Node::Text(t.clone()));
                    continue;
                }
                Item::Action(t, l) => (t.clone(), *l),
            };
            let kw = match toks.first().map(|t| &t.tok) {
                Some(Tok::Ident(k)) => k.as_str(),
                None => return err(self.name, line, "missing value for command"),
                _ => "",
            };
            match kw {
                "end" => {
                    self.no_args(&toks, "end", line)?;
                    return Ok((out, Stop::EndKw));
                }
                "else" => return Ok((out, Stop::Else(toks[1..].to_vec(), line))),
                "if" | "with" | "range" => out.push(self.branch(kw, &toks[1..], line)?),
                "define" | "block" => {
                    let (tname, rest) = self.template_name(&toks[1..], kw, line)?;
                    let pipe = if kw == "block" {
                        Some(self.pipe(&rest, line, false)?)
                    } else {
                        self.no_args_slice(&rest, kw, line)?;
                        None
                    };
                    let saved = std::mem::take(&mut self.ranges);
                    let saved_vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
                    self.nest(line)?;
                    let listed = self.list();
                    self.nesting -= 1;
                    let (body, end) = listed?;
                    self.ranges = saved;
                    self.vars = saved_vars;
                    if !matches!(end, Stop::EndKw) {
                        return err(self.name, line, format!("unexpected EOF in {kw}"));
                    }
                    self.defs.insert(tname.clone(), body);
                    if kw == "block" {
                        out.push(Node::Template(tname, pipe));
                    }
                }
                "template" => {
                    let (tname, rest) = self.template_name(&toks[1..], kw, line)?;
                    let pipe = if rest.is_empty() {
                        None
                    } else {
                        Some(self.pipe(&rest, line, false)?)
                    };
                    out.push(Node::Template(tname, pipe));
                }
                "break" | "continue" => {
                    self.no_args(&toks, kw, line)?;
                    if self.ranges == 0 {
                        return err(self.name, line, format!("{{{{{kw}}}}} outside {{{{range}}}}"));
                    }
                    out.push(if kw == "break" { Node::Break } else { Node::Continue });
                }
                _ => out.push(Node::Action(self.pipe(&toks, line, true)?)),
            }
        }
        Ok((out, Stop::Eof))
    }

    fn no_args(&self, toks: &[Token], kw: &str, line: usize) -> Result<(), ParseError> {
        self.no_args_slice(&toks[1..], kw, line)
    }

    fn no_args_slice(&self, rest: &[Token], kw: &str, line: usize) -> Result<(), ParseError> {
        if rest.is_empty() {
            Ok(())
        } else {
            err(self.name, line, format!("unexpected {:?} in {kw}", rest[0].tok))
        }
    }

    fn template_name(&self, toks: &[Token], kw: &str, line: usize) -> Result<(String, Vec<Token>), ParseError> {
        match toks.first().map(|t| &t.tok) {
            Some(Tok::Str(s)) => Ok((s.clone(), toks[1..].to_vec())),
            _ => err(
                self.name,
                line,
                format!("unexpected token in {kw} clause: want quoted name"),
            ),
        }
    }

    fn branch(&mut self, kw: &str, toks: &[Token], line: usize) -> Result<Node, ParseError> {
        self.nest(line)?;
        let mark = self.vars.len();
        let b = self.branch_inner(kw, toks, line);
        self.vars.truncate(mark);
        self.nesting -= 1;
        b
    }

    /// Enters one level of nesting, or fails past [`MAX_NESTING`].
    fn nest(&mut self, line: usize) -> Result<(), ParseError> {
        if self.nesting >= MAX_NESTING {
            return err(self.name, line, format!("nested deeper than {MAX_NESTING} levels"));
        }
        self.nesting += 1;
        Ok(())
    }

    fn branch_inner(&mut self, kw: &str, toks: &[Token], line: usize) -> Result<Node, ParseError> {
        let pipe = self.pipe(toks, line, true)?;
        if kw == "range" {
            self.ranges += 1;
        }
        let body = self.list();
        if kw == "range" {
            self.ranges -= 1;
        }
        let (list, end) = body?;
        let else_list = match end {
            Stop::Eof => return err(self.name, line, format!("unexpected EOF in {kw}")),
            Stop::EndKw => Vec::new(),
            Stop::Else(rest, eline) => {
                // `else if` / `else with`: the rest of the chain is the else branch.
                match rest.first().map(|t| &t.tok) {
                    Some(Tok::Ident(k)) if (k == "if" || k == "with") && kw == k => {
                        vec![self.branch(kw, &rest[1..], eline)?]
                    }
                    None => {
                        let (l, end) = self.list()?;
                        if !matches!(end, Stop::EndKw) {
                            return err(self.name, eline, format!("expected end; found else in {kw}"));
                        }
                        l
                    }
                    _ => return err(self.name, eline, "unexpected tokens after else"),
                }
            }
        };
        if kw == "range" && pipe.decl.len() > 2 {
            return err(self.name, line, "too many declarations in range");
        }
        let b = Branch {
            pipe,
            list,
            else_list,
            line,
        };
        Ok(match kw {
            "if" => Node::If(b),
            "with" => Node::With(b),
            _ => Node::Range(b),
        })
    }

    fn pipe(&mut self, toks: &[Token], line: usize, allow_decl: bool) -> Result<Pipe, ParseError> {
        let mut i = 0;
        let mut decl = Vec::new();
        let mut assign = false;
        // `$x :=`, `$k, $v :=`, `$x =`.
        let mut j = 0;
        let mut vars = Vec::new();
        while let Some(Token { tok: Tok::Var(v), .. }) = toks.get(j) {
            vars.push(v.clone());
            match toks.get(j + 1).map(|t| &t.tok) {
                Some(Tok::Comma) if vars.len() < 2 => j += 2,
                Some(Tok::Declare | Tok::Assign) => {
                    assign = toks[j + 1].tok == Tok::Assign;
                    decl = vars.clone();
                    i = j + 2;
                    break;
                }
                _ => break,
            }
        }
        if !decl.is_empty() && !allow_decl {
            return err(self.name, line, "variable declaration not allowed here");
        }
        for v in &decl {
            if assign {
                self.known(v, line)?;
            } else {
                self.vars.push(v.clone());
            }
        }
        let mut cmds = Vec::new();
        let mut cmd = Vec::new();
        while i < toks.len() {
            match &toks[i].tok {
                Tok::Pipe => {
                    if cmd.is_empty() {
                        return err(self.name, line, "missing command");
                    }
                    cmds.push(std::mem::take(&mut cmd));
                    i += 1;
                }
                _ => {
                    let (arg, n) = self.operand(&toks[i..], line)?;
                    cmd.push(arg);
                    i += n;
                    if let Some(t) = toks.get(i)
                        && !t.spaced
                        && !matches!(t.tok, Tok::Pipe | Tok::RParen)
                    {
                        return err(self.name, line, format!("unexpected {:?} in operand", t.tok));
                    }
                }
            }
        }
        if cmd.is_empty() {
            return err(self.name, line, "missing value for command");
        }
        cmds.push(cmd);
        Ok(Pipe {
            decl,
            assign,
            cmds,
            line,
        })
    }

    fn known(&self, v: &str, line: usize) -> Result<(), ParseError> {
        if self.vars.iter().any(|k| k == v) {
            Ok(())
        } else {
            err(self.name, line, format!("undefined variable {v:?}"))
        }
    }

    /// Parses one operand with its field chain; returns it and the tokens used.
    fn operand(&mut self, toks: &[Token], line: usize) -> Result<(Arg, usize), ParseError> {
        let n = 1;
        let base = match &toks[0].tok {
            Tok::Dot => Arg::Dot,
            Tok::Field(_) => {
                let (fields, n) = field_chain(toks, 0);
                return Ok((Arg::Field(fields), n));
            }
            Tok::Var(v) => {
                self.known(v, line)?;
                let (fields, n) = field_chain(toks, 1);
                return Ok((Arg::Var(v.clone(), fields), n));
            }
            Tok::Str(s) => Arg::Str(s.clone()),
            Tok::Char(c) => Arg::Int(*c),
            Tok::Num(s) => parse_number(s)
                .ok_or_else(|| ParseError(format!("template: {}:{line}: bad number syntax: {s:?}", self.name)))?,
            Tok::Ident(id) => match id.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block" | "break" | "continue" => {
                    return err(self.name, line, format!("unexpected keyword {id} in command"));
                }
                _ => Arg::Func(id.clone()),
            },
            Tok::LParen => {
                self.nest(line)?;
                let mut depth = 1;
                let mut j = 1;
                while j < toks.len() {
                    match toks[j].tok {
                        Tok::LParen => depth += 1,
                        Tok::RParen => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if depth != 0 {
                    return err(self.name, line, "unclosed left paren");
                }
                let inner = self.pipe(&toks[1..j], line, false);
                self.nesting -= 1;
                let inner = inner?;
                let (fields, n) = field_chain(toks, j + 1);
                return Ok((Arg::Chain(Box::new(inner), fields), n));
            }
            t => return err(self.name, line, format!("unexpected {t:?} in operand")),
        };
        Ok((base, n))
    }
}

/// The fields directly attached (no space) from `toks[from]` on: `.A.B` after `$x` or `(…)`.
/// Returns them and the index after the last one.
fn field_chain(toks: &[Token], from: usize) -> (Vec<String>, usize) {
    let mut n = from;
    let mut fields = Vec::new();
    while let Some(Token {
        tok: Tok::Field(f),
        spaced,
    }) = toks.get(n)
    {
        // Only an operand's own first token (index 0) may follow a space.
        if *spaced && n != 0 {
            break;
        }
        fields.push(f.clone());
        n += 1;
    }
    (fields, n)
}

fn parse_number(s: &str) -> Option<Arg> {
    let clean = s.replace('_', "");
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let int = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
        i64::from_str_radix(b, 2).ok()
    } else if body.len() > 1 && body.starts_with('0') && body.bytes().all(|c| c.is_ascii_digit()) {
        i64::from_str_radix(&body[1..], 8).ok()
    } else {
        body.parse::<i64>().ok()
    };
    if let Some(v) = int {
        return Some(Arg::Int(if neg { -v } else { v }));
    }
    let f: f64 = body.parse().ok()?;
    Some(Arg::Float(if neg { -f } else { f }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(src: &str) -> Vec<Node> {
        parse("t", src).unwrap().remove("t").unwrap()
    }

    #[test]
    fn trims_and_comments() {
        assert_eq!(
            body("a  {{- /* c */ -}}  b"),
            vec![Node::Text("a".into()), Node::Text("b".into())]
        );
        // `{{-3}}` is the number -3, not a trim marker.
        assert!(matches!(&body("{{-3}}")[0], Node::Action(p) if p.cmds[0] == vec![Arg::Int(-3)]));
    }

    #[test]
    fn pipelines_fields_and_declarations() {
        let n = body(r#"{{ $x := .A.B | printf "%s-%d" 3 }}"#);
        let Node::Action(p) = &n[0] else { panic!() };
        assert_eq!(p.decl, vec!["$x".to_string()]);
        assert_eq!(p.cmds[0], vec![Arg::Field(vec!["A".into(), "B".into()])]);
        assert_eq!(
            p.cmds[1],
            vec![Arg::Func("printf".into()), Arg::Str("%s-%d".into()), Arg::Int(3)]
        );
        let n = body("{{ (index .X 0).Name }}");
        let Node::Action(p) = &n[0] else { panic!() };
        assert!(matches!(&p.cmds[0][0], Arg::Chain(_, f) if f == &vec!["Name".to_string()]));
    }

    #[test]
    fn errors_name_the_template_and_line() {
        let e = |s: &str| parse("mail", s).unwrap_err().0;
        assert_eq!(e("x\n{{ if .A }}"), "template: mail:2: unexpected EOF in if");
        assert_eq!(e("{{ end }}"), "template: mail:1: unexpected {{end}}");
        assert_eq!(e("{{ .A"), "template: mail:1: unclosed action");
        assert_eq!(e("{{ break }}"), "template: mail:1: {{break}} outside {{range}}");
        assert_eq!(e(r#"{{ "abc }}"#), "template: mail:1: unterminated quoted string");
        assert_eq!(
            e("{{ template .X }}"),
            "template: mail:1: unexpected token in template clause: want quoted name"
        );
    }

    #[test]
    fn define_and_else_if_chains() {
        let t = parse(
            "t",
            r#"{{ define "a" }}A{{ end }}{{ if .X }}1{{ else if .Y }}2{{ else }}3{{ end }}"#,
        )
        .unwrap();
        assert_eq!(t["a"], vec![Node::Text("A".into())]);
        let Node::If(b) = &t["t"][0] else { panic!() };
        assert!(matches!(&b.else_list[0], Node::If(inner) if inner.else_list == vec![Node::Text("3".into())]));
    }
}
