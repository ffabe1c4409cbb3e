//! Log output in Alertmanager's formats: logfmt (default) or JSON, `msg` plus structured fields.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Which line format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `ts=… level=info msg="…" key=value`.
    Logfmt,
    /// One JSON object per line.
    Json,
}

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name().to_string(), format!("{value:?}")));
    }
}

fn logfmt_value(out: &mut String, v: &str) {
    if !v.is_empty() && !v.chars().any(|c| c == ' ' || c == '"' || c == '=' || c.is_control()) {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A formatter for both formats; span fields (group_key, receiver, …) are included.
pub struct Format(pub LogFormat);

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut all: Vec<(String, String)> = Vec::new();
        all.push((
            "ts".into(),
            jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        ));
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            _ => "debug",
        };
        all.push(("level".into(), level.into()));
        let msg = fields
            .0
            .iter()
            .position(|(k, _)| k == "message")
            .map(|i| fields.0.remove(i).1);
        all.push(("msg".into(), msg.unwrap_or_default()));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<tracing_subscriber::fmt::FormattedFields<N>>() {
                    // FormattedFields renders `k=v k2=v2` with the default field formatter.
                    for part in split_fields(f.as_str()) {
                        all.push(part);
                    }
                }
            }
        }
        all.extend(fields.0);
        let mut line = String::with_capacity(128);
        match self.0 {
            LogFormat::Logfmt => {
                for (i, (k, v)) in all.iter().enumerate() {
                    if i > 0 {
                        line.push(' ');
                    }
                    line.push_str(k);
                    line.push('=');
                    logfmt_value(&mut line, v);
                }
            }
            LogFormat::Json => {
                let map: serde_json::Map<String, serde_json::Value> = all
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect();
                let _ = write!(line, "{}", serde_json::Value::Object(map));
            }
        }
        writeln!(w, "{line}")
    }
}

fn split_fields(s: &str) -> Vec<(String, String)> {
    // Values formatted by the default formatter: `a=1 b="x y"`; split on spaces outside quotes.
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    for c in s.chars() {
        if c == '"' {
            in_q = !in_q;
        }
        if c == ' ' && !in_q {
            if let Some((k, v)) = cur.split_once('=') {
                out.push((k.to_string(), v.trim_matches('"').to_string()));
            }
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    if let Some((k, v)) = cur.split_once('=') {
        out.push((k.to_string(), v.trim_matches('"').to_string()));
    }
    out
}

/// Installs the global subscriber writing to stderr.
pub fn init(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::new(format!("{level},hyper=warn,reqwest=warn,h2=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Span fields are pre-rendered by the field formatter: no terminal colours in them.
        .with_ansi(false)
        .event_format(Format(format))
        .try_init();
}

/// A warning logged at most once per period, with how many events it stands for: a hostile
/// peer or client must not flood the log, and none of its events goes unseen.
#[derive(Default)]
pub struct RateLimited(parking_lot::Mutex<(Option<tokio::time::Instant>, u64)>);

impl RateLimited {
    /// The least time between two warnings.
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    /// Counts one event; returns the number of events since the last warning when one is due.
    pub fn hit(&self) -> Option<u64> {
        let mut s = self.0.lock();
        s.1 += 1;
        let now = tokio::time::Instant::now();
        if s.0.is_none_or(|at| now >= at + Self::EVERY) {
            let n = s.1;
            *s = (Some(now), 0);
            return Some(n);
        }
        None
    }
}
