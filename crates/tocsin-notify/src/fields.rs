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
