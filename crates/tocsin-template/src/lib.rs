//! Tocsin's engine for Go's text/template language, written from the language definition, with
//! Alertmanager's function map and template data model so that existing `templates:` files keep
//! working.
//!
//! Entry points: [`Template`] (parse files and inline strings, execute by name), [`Value`] (what
//! templates see; typed values carry Alertmanager's methods such as `.Alerts.Firing` and
//! `.SortedPairs`), [`data::Data`] (the notification data model) and [`Template::with_defaults`]
//! (our default `email.default.*` and `__subject` definitions). HTML output escapes every printed
//! value unless it went through `safeHtml`.
//!
//! This crate is pure: no sockets, files or clock (`now` comes in [`Options`]) and no other Tocsin
//! crate, so it can be fuzzed alone.

pub mod data;
mod exec;
mod funcs;
pub mod gotime;
pub mod parse;
mod value;

pub use exec::{ExecError, Options, go_zero_time};
pub use funcs::query_escape;
pub use parse::ParseError;
pub use value::Value;

use parse::{Arg, Node, Pipe, Trees};

/// Tocsin's default templates (our own text; same names and information as Alertmanager's).
pub const DEFAULT_TEMPLATES: &str = include_str!("default.tmpl");

/// A set of named templates.
#[derive(Debug, Clone, Default)]
pub struct Template {
    trees: Trees,
}

/// Parse or execution failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text does not parse.
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// Execution failed.
    #[error("{0}")]
    Exec(#[from] ExecError),
}

impl Template {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding the default templates.
    pub fn with_defaults() -> Self {
        let mut t = Self::new();
        // Our own text, covered by tests: it always parses.
        t.parse("default.tmpl", DEFAULT_TEMPLATES)
            .unwrap_or_else(|e| unreachable!("default templates: {e}"));
        t
    }

    /// Parses `src` as template `name`, adding its definitions; a later definition replaces an
    /// earlier one of the same name (how `templates:` files override the defaults).
    ///
    /// # Errors
    /// Syntax errors and calls of undefined functions, as `template: <name>:<line>: …`.
    pub fn parse(&mut self, name: &str, src: &str) -> Result<(), ParseError> {
        let trees = parse::parse(name, src)?;
        check_functions(name, &trees)?;
        self.trees.extend(trees);
        Ok(())
    }

    /// Whether a template of that name is defined.
    pub fn has(&self, name: &str) -> bool {
        self.trees.contains_key(name)
    }

    /// Executes the template `name`.
    ///
    /// # Errors
    /// An unknown name or a failure during execution.
    pub fn execute(&self, name: &str, data: &Value, opts: &Options) -> Result<String, ExecError> {
        exec::execute(&self.trees, name, data, opts)
    }

    /// Checks that an inline template parses (config fields are checked at load).
    ///
    /// # Errors
    /// As [`Template::parse`].
    pub fn check(&self, src: &str) -> Result<(), ParseError> {
        let trees = parse::parse("__inline", src)?;
        check_functions("__inline", &trees)
    }

    /// Parses and executes an inline template (a config field such as `subject` or `html`) that
    /// may call every template of the set.
    ///
    /// # Errors
    /// The text does not parse, or execution failed.
    pub fn execute_str(&self, src: &str, data: &Value, opts: &Options) -> Result<String, Error> {
        if !src.contains("{{") {
            return Ok(src.to_string());
        }
        const INLINE: &str = "__inline";
        let inline = parse::parse(INLINE, src)?;
        check_functions(INLINE, &inline)?;
        let mut trees = self.trees.clone();
        trees.extend(inline);
        Ok(exec::execute(&trees, INLINE, data, opts)?)
    }
}

/// Go rejects calls of undefined functions at parse time; so do we.
fn check_functions(name: &str, trees: &Trees) -> Result<(), ParseError> {
    fn pipe(p: &Pipe) -> Result<(), (String, usize)> {
        for cmd in &p.cmds {
            for a in cmd {
                match a {
                    Arg::Func(f) if !funcs::NAMES.contains(&f.as_str()) => return Err((f.clone(), p.line)),
                    Arg::Chain(inner, _) => pipe(inner)?,
                    _ => {}
                }
            }
        }
        Ok(())
    }
    fn nodes(list: &[Node]) -> Result<(), (String, usize)> {
        for n in list {
            match n {
                Node::Action(p) => pipe(p)?,
                Node::If(b) | Node::With(b) | Node::Range(b) => {
                    pipe(&b.pipe)?;
                    nodes(&b.list)?;
                    nodes(&b.else_list)?;
                }
                Node::Template(_, Some(p)) => pipe(p)?,
                _ => {}
            }
        }
        Ok(())
    }
    for list in trees.values() {
        if let Err((f, line)) = nodes(list) {
            return Err(ParseError(format!(
                "template: {name}:{line}: function {f:?} not defined"
            )));
        }
    }
    Ok(())
}
