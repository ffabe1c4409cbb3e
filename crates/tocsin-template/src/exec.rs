//! Executes parsed templates over [`Value`]s with Go's semantics: pipelines, variables scoped to
//! their control structure, `missingkey=zero`, lazy `and`/`or`, and recursion limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;

use crate::funcs;
use crate::parse::{Arg, Branch, Node, Pipe, Trees};
use crate::value::Value;

/// Go's limit on nested template calls, lowered: the executor recurses on the Rust stack.
const MAX_DEPTH: usize = 200;
/// Output above this is an error, so a runaway template cannot exhaust memory.
const MAX_OUTPUT: usize = 16 << 20;
/// Steps (nodes executed and loop iterations) one execution may take: a template from the
/// configuration runs at send time, and `{{ range 10000000000 }}` must end in an error, not
/// in minutes of CPU. The default templates take a few hundred steps per alert, so this is
/// ample for thousands of alerts in one notification.
pub const MAX_STEPS: u64 = 20_000_000;
/// The largest string one function call may make, or take in to build one (`print`, `printf`,
/// `println`, `join`): doubling a string thirty times with `printf "%s%s" $s $s` must end in an
/// error, not in a 2 GiB allocation (found by tocsin-fuzz).
pub const MAX_VALUE_BYTES: usize = 16 << 20;
/// The bytes of strings all function calls of one execution may make together.
pub const MAX_MADE_BYTES: usize = 256 << 20;

/// Functions whose result grows with their string arguments.
const BUILDERS: [&str; 4] = ["print", "printf", "println", "join"];

/// An execution error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecError(pub String);

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExecError {}

/// Settings of one execution.
#[derive(Debug, Clone)]
pub struct Options {
    /// Escape printed values for HTML (values made by `safeHtml` excepted).
    pub html: bool,
    /// What `now` and `since` consider the current time (templates never read the clock).
    pub now: Timestamp,
}

enum Flow {
    Normal,
    Break,
    Continue,
}

pub(crate) struct Exec<'a> {
    trees: &'a Trees,
    pub(crate) opts: &'a Options,
    /// The data the execution started with (`routeLabels` reads its `RouteLabels`, whatever
    /// `$` is inside a called template).
    pub(crate) root: Value,
    out: String,
    vars: Vec<(String, Value)>,
    depth: usize,
    steps: u64,
    /// Bytes of strings function calls made so far (see [`MAX_MADE_BYTES`]).
    made: usize,
    name: String,
    line: usize,
}

type R<T> = Result<T, String>;

/// Runs template `name` of `trees` on `data`.
pub(crate) fn execute(trees: &Trees, name: &str, data: &Value, opts: &Options) -> Result<String, ExecError> {
    let Some(body) = trees.get(name) else {
        return Err(ExecError(format!(
            "template: no template {name:?} associated with template"
        )));
    };
    let mut e = Exec {
        trees,
        opts,
        root: data.clone(),
        out: String::new(),
        vars: vec![("$".into(), data.clone())],
        depth: 0,
        steps: 0,
        made: 0,
        name: name.to_string(),
        line: 0,
    };
    match e.walk(data, body) {
        Ok(_) => Ok(e.out),
        Err(msg) => Err(ExecError(format!(
            "template: {}:{}: executing {:?}: {msg}",
            e.name, e.line, e.name
        ))),
    }
}

impl Exec<'_> {
    /// Counts one step of work; past [`MAX_STEPS`] the execution fails.
    fn step(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(format!("exceeded the work budget of {MAX_STEPS} steps"));
        }
        Ok(())
    }

    /// Calls a function within the value budgets.
    fn call(&mut self, name: &str, args: &[Value]) -> R<Value> {
        if BUILDERS.contains(&name) {
            let str_len = |v: &Value| match v {
                Value::Str(s) | Value::SafeHtml(s) => s.len(),
                _ => 0,
            };
            let input: usize = args
                .iter()
                .map(|a| match a {
                    Value::List(l) => l.iter().map(str_len).sum(),
                    v => str_len(v),
                })
                .sum();
            if input > MAX_VALUE_BYTES {
                return Err(format!(
                    "{name} of {input} bytes of strings exceeds the budget of {MAX_VALUE_BYTES} bytes per value"
                ));
            }
        }
        let v = funcs::call(self, name, args)?;
        if let Value::Str(s) | Value::SafeHtml(s) = &v {
            if s.len() > MAX_VALUE_BYTES {
                return Err(format!(
                    "{name} made {} bytes, over the budget of {MAX_VALUE_BYTES} bytes per value",
                    s.len()
                ));
            }
            self.made += s.len();
            if self.made > MAX_MADE_BYTES {
                return Err(format!(
                    "exceeded the budget of {MAX_MADE_BYTES} bytes of strings made by one execution"
                ));
            }
        }
        Ok(v)
    }

    fn walk(&mut self, dot: &Value, nodes: &[Node]) -> R<Flow> {
        for n in nodes {
            self.step()?;
            match n {
                Node::Text(t) => self.emit(t)?,
                Node::Action(p) => {
                    self.line = p.line;
                    let v = self.pipe(dot, p)?;
                    if p.decl.is_empty() {
                        self.print(&v)?;
                    }
                }
                Node::If(b) | Node::With(b) => {
                    let mark = self.vars.len();
                    self.line = b.line;
                    let v = self.pipe(dot, &b.pipe)?;
                    let flow = if v.truthy() {
                        let d = if matches!(n, Node::With(_)) { &v } else { dot };
                        self.walk(d, &b.list)?
                    } else {
                        self.walk(dot, &b.else_list)?
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(b) => self.range(dot, b)?,
                Node::Template(name, pipe) => {
                    let arg = match pipe {
                        Some(p) => self.pipe(dot, p)?,
                        None => Value::Nil,
                    };
                    let Some(body) = self.trees.get(name) else {
                        return Err(format!("template: no such template {name:?}"));
                    };
                    if self.depth >= MAX_DEPTH {
                        return Err(format!("exceeded maximum template depth ({MAX_DEPTH})"));
                    }
                    self.depth += 1;
                    let saved = std::mem::replace(&mut self.vars, vec![("$".into(), arg.clone())]);
                    let saved_name = std::mem::replace(&mut self.name, name.clone());
                    let r = self.walk(&arg, body);
                    self.vars = saved;
                    self.depth -= 1;
                    r?;
                    self.name = saved_name;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn range(&mut self, dot: &Value, b: &Branch) -> R<()> {
        self.line = b.line;
        let plain = Pipe {
            decl: vec![],
            assign: false,
            cmds: b.pipe.cmds.clone(),
            line: b.pipe.line,
        };
        let v = self.pipe(dot, &plain)?;
        // An integer is iterated without materialising its range (`range 10000000000` took
        // gigabytes before the first iteration).
        let items: Box<dyn Iterator<Item = (Value, Value)>> = match &v {
            Value::List(l) | Value::Alerts(l) => Box::new(
                l.iter()
                    .enumerate()
                    .map(|(i, e)| (Value::Int(i as i64), e.clone()))
                    .collect::<Vec<_>>()
                    .into_iter(),
            ),
            Value::Map(m) => Box::new(
                m.iter()
                    .map(|(k, e)| (Value::str(k), e.clone()))
                    .collect::<Vec<_>>()
                    .into_iter(),
            ),
            Value::Kv(m) => Box::new(
                m.iter()
                    .map(|(k, e)| (Value::str(k), Value::str(e)))
                    .collect::<Vec<_>>()
                    .into_iter(),
            ),
            Value::Int(n) => Box::new((0..*n).map(|i| (Value::Int(i), Value::Int(i)))),
            Value::Nil => Box::new(std::iter::empty()),
            other => return Err(format!("range can't iterate over {}", other.to_text())),
        };
        let mut items = items.peekable();
        if items.peek().is_none() {
            let mark = self.vars.len();
            self.walk(dot, &b.else_list)?;
            self.vars.truncate(mark);
            return Ok(());
        }
        for (k, e) in items {
            self.step()?;
            let mark = self.vars.len();
            match b.pipe.decl.as_slice() {
                [] => {}
                [one] => self.bind(one, e.clone(), b.pipe.assign)?,
                [key, elem, ..] => {
                    self.bind(key, k, b.pipe.assign)?;
                    self.bind(elem, e.clone(), b.pipe.assign)?;
                }
            }
            let flow = self.walk(&e, &b.list)?;
            self.vars.truncate(mark);
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        Ok(())
    }

    fn bind(&mut self, name: &str, v: Value, assign: bool) -> R<()> {
        if assign {
            match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = v,
                None => return Err(format!("undefined variable: {name}")),
            }
        } else {
            self.vars.push((name.to_string(), v));
        }
        Ok(())
    }

    fn emit(&mut self, s: &str) -> R<()> {
        if self.out.len() + s.len() > MAX_OUTPUT {
            return Err(format!("output exceeds {MAX_OUTPUT} bytes"));
        }
        self.out.push_str(s);
        Ok(())
    }

    fn print(&mut self, v: &Value) -> R<()> {
        let text = match v {
            Value::Nil => "<no value>".to_string(),
            Value::SafeHtml(s) => s.to_string(),
            other if self.opts.html => funcs::html_escape(&other.to_text()),
            other => other.to_text(),
        };
        self.emit(&text)
    }

    pub(crate) fn pipe(&mut self, dot: &Value, p: &Pipe) -> R<Value> {
        let mut val: Option<Value> = None;
        for cmd in &p.cmds {
            val = Some(self.command(dot, cmd, val)?);
        }
        let v = val.unwrap_or(Value::Nil);
        for name in &p.decl {
            self.bind(name, v.clone(), p.assign)?;
        }
        Ok(v)
    }

    fn command(&mut self, dot: &Value, args: &[Arg], piped: Option<Value>) -> R<Value> {
        let rest = &args[1..];
        match &args[0] {
            Arg::Func(name) => {
                if name == "and" || name == "or" {
                    return self.and_or(dot, name == "and", rest, piped);
                }
                let mut vals = Vec::with_capacity(rest.len() + 1);
                for a in rest {
                    vals.push(self.arg(dot, a)?);
                }
                vals.extend(piped);
                self.call(name, &vals)
            }
            Arg::Field(chain) => {
                let extra = self.extra_args(dot, rest, piped)?;
                self.fields(dot.clone(), chain, extra)
            }
            Arg::Var(name, chain) => {
                let base = self.var(name)?;
                let extra = self.extra_args(dot, rest, piped)?;
                self.fields(base, chain, extra)
            }
            Arg::Chain(p, chain) => {
                let base = self.pipe(dot, p)?;
                let extra = self.extra_args(dot, rest, piped)?;
                self.fields(base, chain, extra)
            }
            lit => {
                if !rest.is_empty() || piped.is_some() {
                    return Err(format!(
                        "can't give argument to non-function {}",
                        self.arg(dot, lit)?.to_text()
                    ));
                }
                self.arg(dot, lit)
            }
        }
    }

    /// Arguments after a field chain, for a method call; `None` when there are none.
    fn extra_args(&mut self, dot: &Value, rest: &[Arg], piped: Option<Value>) -> R<Option<Vec<Value>>> {
        if rest.is_empty() && piped.is_none() {
            return Ok(None);
        }
        let mut vals = Vec::new();
        for a in rest {
            vals.push(self.arg(dot, a)?);
        }
        vals.extend(piped);
        Ok(Some(vals))
    }

    fn and_or(&mut self, dot: &Value, and: bool, rest: &[Arg], piped: Option<Value>) -> R<Value> {
        if rest.is_empty() && piped.is_none() {
            return Err(format!(
                "wrong number of args for {}: want at least 1 got 0",
                if and { "and" } else { "or" }
            ));
        }
        let mut last = Value::Nil;
        for a in rest {
            last = self.arg(dot, a)?;
            if last.truthy() != and {
                return Ok(last);
            }
        }
        if let Some(p) = piped {
            last = p;
        }
        Ok(last)
    }

    fn var(&self, name: &str) -> R<Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("undefined variable: {name}"))
    }

    fn arg(&mut self, dot: &Value, a: &Arg) -> R<Value> {
        Ok(match a {
            Arg::Dot => dot.clone(),
            Arg::Nil => Value::Nil,
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Int(i) => Value::Int(*i),
            Arg::Float(f) => Value::Float(*f),
            Arg::Str(s) => Value::str(s),
            Arg::Field(chain) => self.fields(dot.clone(), chain, None)?,
            Arg::Var(name, chain) => {
                let base = self.var(name)?;
                self.fields(base, chain, None)?
            }
            Arg::Chain(p, chain) => {
                let base = self.pipe(dot, p)?;
                self.fields(base, chain, None)?
            }
            Arg::Func(name) => self.call(name, &[])?,
        })
    }

    /// Follows a field chain; `args` go to the last element (a method call).
    fn fields(&mut self, mut v: Value, chain: &[String], args: Option<Vec<Value>>) -> R<Value> {
        let n = chain.len();
        if n == 0 {
            return match args {
                None => Ok(v),
                Some(_) => Err(format!("can't give argument to non-function {}", v.to_text())),
            };
        }
        for (i, f) in chain.iter().enumerate() {
            let a = if i + 1 == n { args.as_deref() } else { None };
            v = field(&v, f, a.unwrap_or(&[]), a.is_some())?;
        }
        Ok(v)
    }
}

fn want_args(name: &str, args: &[Value], n: usize) -> R<()> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("wrong number of args for {name}: want {n} got {}", args.len()))
    }
}

fn no_args(name: &str, args: &[Value], has: bool) -> R<()> {
    if has { want_args(name, args, 0) } else { Ok(()) }
}

/// Field or method `name` of `v`.
fn field(v: &Value, name: &str, args: &[Value], has_args: bool) -> R<Value> {
    let not_method = || {
        if has_args {
            Err(format!("{name} is not a method but has arguments"))
        } else {
            Ok(())
        }
    };
    match v {
        Value::Map(m) => {
            not_method()?;
            Ok(m.get(name).cloned().unwrap_or(Value::Nil))
        }
        Value::Kv(m) => match name {
            "SortedPairs" => {
                no_args(name, args, has_args)?;
                Ok(sorted_pairs(m))
            }
            "Names" | "Values" => {
                no_args(name, args, has_args)?;
                pair_column(&sorted_pairs(m), name)
            }
            "String" => {
                no_args(name, args, has_args)?;
                let parts: Vec<String> = sorted_keys(m).into_iter().map(|k| format!("{k}={}", m[k])).collect();
                Ok(Value::from(parts.join(", ")))
            }
            "Remove" => {
                want_args(name, args, 1)?;
                let Some(keys) = args[0].as_list() else {
                    return Err(format!(
                        "wrong type for value; expected []string; got {}",
                        args[0].type_name()
                    ));
                };
                let drop: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
                let kept = m
                    .iter()
                    .filter(|(k, _)| !drop.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Ok(Value::Kv(Arc::new(kept)))
            }
            _ => {
                not_method()?;
                Ok(Value::str(m.get(name).map_or("", String::as_str)))
            }
        },
        Value::Alerts(l) => {
            match name {
                "Firing" | "Resolved" => {
                    no_args(name, args, has_args)?;
                    let want = if name == "Firing" { "firing" } else { "resolved" };
                    let keep = l
                    .iter()
                    .filter(|a| matches!(a, Value::Struct(_, f) if f.get("Status").and_then(Value::as_str) == Some(want)))
                    .cloned()
                    .collect();
                    Ok(Value::Alerts(Arc::new(keep)))
                }
                _ => Err(format!("can't evaluate field {name} in type template.Alerts")),
            }
        }
        // `template.Pairs` (what `.SortedPairs` returns) has `.Names` and `.Values`.
        Value::List(_) if name == "Names" || name == "Values" => {
            no_args(name, args, has_args)?;
            pair_column(v, name)
        }
        Value::Struct(tn, fields) => {
            not_method()?;
            fields
                .get(name)
                .cloned()
                .ok_or_else(|| format!("can't evaluate field {name} in type {tn}"))
        }
        Value::Time(t, tz) => match name {
            "Format" => {
                want_args(name, args, 1)?;
                let layout = args[0].as_str().ok_or("Format wants a string layout")?;
                Ok(Value::from(crate::gotime::format(*t, tz, layout)))
            }
            "Unix" => {
                no_args(name, args, has_args)?;
                Ok(Value::Int(t.as_second()))
            }
            "UnixMilli" => {
                no_args(name, args, has_args)?;
                Ok(Value::Int(t.as_millisecond()))
            }
            "UTC" => {
                no_args(name, args, has_args)?;
                Ok(Value::Time(*t, jiff::tz::TimeZone::UTC))
            }
            "IsZero" => {
                no_args(name, args, has_args)?;
                Ok(Value::Bool(*t == go_zero_time()))
            }
            "String" => {
                no_args(name, args, has_args)?;
                Ok(Value::from(v.to_text()))
            }
            _ => Err(format!("can't evaluate field {name} in type time.Time")),
        },
        Value::Nil => Err(format!("nil pointer evaluating interface {{}}.{name}")),
        other => Err(format!("can't evaluate field {name} in type {}", other.type_name())),
    }
}

/// Go's zero `time.Time` (0001-01-01T00:00:00Z).
pub fn go_zero_time() -> Timestamp {
    Timestamp::from_second(-62_135_596_800).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The names or the values of a list of `template.Pair`.
fn pair_column(pairs: &Value, name: &str) -> R<Value> {
    let field = if name == "Names" { "Name" } else { "Value" };
    let items = pairs.as_list().unwrap_or(&[]);
    let mut out = Vec::with_capacity(items.len());
    for p in items {
        match p {
            Value::Struct("template.Pair", f) => out.push(f.get(field).cloned().unwrap_or(Value::Nil)),
            other => return Err(format!("can't evaluate field {name} in type {}", other.type_name())),
        }
    }
    Ok(list(out.into_iter()))
}

fn sorted_keys(m: &BTreeMap<String, String>) -> Vec<&String> {
    m.keys().collect()
}

/// Alertmanager's `KV.SortedPairs`: `alertname` first, then the rest by name.
fn sorted_pairs(m: &BTreeMap<String, String>) -> Value {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort_by_key(|k| (k.as_str() != "alertname", k.as_str()));
    list(keys.into_iter().map(|k| {
        let mut f = BTreeMap::new();
        f.insert("Name", Value::str(k));
        f.insert("Value", Value::str(&m[k]));
        Value::Struct("template.Pair", Arc::new(f))
    }))
}

fn list(it: impl Iterator<Item = Value>) -> Value {
    Value::List(Arc::new(it.collect()))
}
