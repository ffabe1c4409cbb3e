//! Templated config fields of an integration, parsed once when the integration is built (into
//! a copy of the configuration's templates, each field under a name of its own) and rendered
//! per notification. A field whose template fails gives way to its fallback (the integration's
//! default template for that field) and the error is kept: a page goes out with the default
//! text rather than not at all (Alertmanager fails the notification, or sends empty fields).

use tocsin_template::{Options, Template, Value};

/// An integration's compiled fields.
pub struct Fields {
    set: Template,
}

/// The name a field is compiled under.
fn key(name: &str) -> String {
    format!("__tocsin_field.{name}")
}

impl Fields {
    /// Compiles `fields` (name, template text) on top of `templates`.
    ///
    /// # Errors
    /// Names the field whose template does not parse.
    pub fn compile<'a>(
        templates: &Template,
        fields: impl IntoIterator<Item = (String, &'a str)>,
    ) -> Result<Fields, String> {
        let mut set = templates.clone();
        for (name, src) in fields {
            set.parse(&key(&name), src).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(Fields { set })
    }

    /// A renderer for one notification's data.
    pub fn render<'a>(&'a self, data: &'a Value, now: jiff::Timestamp) -> Render<'a> {
        Render {
            fields: self,
            data,
            opts: Options { html: false, now },
            errors: Vec::new(),
        }
    }
}

/// Rendering one notification's fields.
pub struct Render<'a> {
    fields: &'a Fields,
    data: &'a Value,
    opts: Options,
    /// The errors met, by field.
    pub errors: Vec<String>,
}

impl Render<'_> {
    /// The time the templates see as now (a request's signing time too).
    pub fn now(&self) -> jiff::Timestamp {
        self.opts.now
    }

    /// The field `name`, or its error.
    ///
    /// # Errors
    /// The template failed.
    pub fn try_field(&mut self, name: &str) -> Result<String, String> {
        self.fields
            .set
            .execute(&key(name), self.data, &self.opts)
            .map_err(|e| e.to_string())
    }

    /// The field `name` rendered for HTML (printed values escaped), or `fallback` when it fails.
    pub fn field_html(&mut self, name: &str, fallback: &str) -> String {
        let opts = Options {
            html: true,
            now: self.opts.now,
        };
        match self.fields.set.execute(&key(name), self.data, &opts) {
            Ok(s) => s,
            Err(e) => {
                self.errors.push(format!("{name}: {e}"));
                self.fields
                    .set
                    .execute_str(fallback, self.data, &opts)
                    .unwrap_or_default()
            }
        }
    }

    /// An inline template (one not compiled with the fields), rendered now.
    ///
    /// # Errors
    /// It does not parse or fails.
    pub fn template(&self, src: &str) -> Result<String, tocsin_template::Error> {
        self.fields.set.execute_str(src, self.data, &self.opts)
    }

    /// The field `name`, or `fallback` (a template text) rendered when it fails.
    pub fn field(&mut self, name: &str, fallback: &str) -> String {
        match self.fields.set.execute(&key(name), self.data, &self.opts) {
            Ok(s) => s,
            Err(e) => {
                self.errors.push(format!("{name}: {e}"));
                self.fields
                    .set
                    .execute_str(fallback, self.data, &self.opts)
                    .unwrap_or_default()
            }
        }
    }
}

/// A YAML value's templates (its map keys, `#` after their path, and its string leaves), by
/// name, as a webhook `payload` or Jira's custom `fields` hold them.
pub fn value_leaves<'a>(path: &str, v: &'a serde_json::Value, out: &mut Vec<(String, &'a str)>) {
    match v {
        serde_json::Value::String(s) => out.push((path.to_string(), s)),
        serde_json::Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                value_leaves(&format!("{path}[{i}]"), x, out);
            }
        }
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                out.push((format!("{path}#{k}"), k));
                value_leaves(&format!("{path}.{k}"), x, out);
            }
        }
        _ => {}
    }
}

/// A value rendered (see [`value_leaves`]): keys and string leaves executed, each rendered leaf read as a value
/// when it reads as one (`toJson`'s output, numbers, booleans, null), as Alertmanager 0.34
/// does; a structured result is not rendered again.
pub fn render_value(path: &str, v: &serde_json::Value, r: &mut Render<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::String(_) => crate::pagerduty::interpret(&r.field(path, "")),
        J::Array(items) => J::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| render_value(&format!("{path}[{i}]"), x, r))
                .collect(),
        ),
        J::Object(m) => J::Object(
            m.iter()
                .map(|(k, x)| {
                    (
                        r.field(&format!("{path}#{k}"), k),
                        render_value(&format!("{path}.{k}"), x, r),
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    }
}
