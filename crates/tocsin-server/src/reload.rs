//! Configuration: reading and validating the file and its templates, building each receiver's
//! integrations, and swapping a new configuration in on reload (§3.2).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use tocsin_core::config::{Config, LoadOptions, load};
use tocsin_core::inhibit::Inhibitor;
use tocsin_notify::Shared;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::app::{Active, App, NotifierFactory};

/// Parses the default templates and then every file matched by the config's `templates:` globs,
/// in name order per glob (later definitions win, as in Alertmanager).
///
/// # Errors
/// A bad glob, an unreadable file or a template that does not parse.
pub fn load_templates(globs: &[PathBuf]) -> Result<tocsin_template::Template, String> {
    let mut t = tocsin_template::Template::with_defaults();
    for g in globs {
        let pattern = g.to_string_lossy();
        let mut files: Vec<PathBuf> = glob::glob(&pattern)
            .map_err(|e| format!("invalid template glob {pattern:?}: {e}"))?
            .filter_map(Result::ok)
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("read template {}: {e}", f.display()))?;
            let name = f
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            t.parse(&name, &text)
                .map_err(|e| format!("failed to parse template {}: {e}", f.display()))?;
        }
    }
    Ok(t)
}

pub(crate) fn build_active(
    config: Config,
    factory: &NotifierFactory,
    template_errors: &Counter,
    capture: Option<tocsin_notify::capture::Capture>,
) -> Result<Active, String> {
    build_active_for(config, factory, template_errors, capture, |_| true)
}

/// [`build_active`] with the integrations of the receivers `wanted` keeps only (a dry run
/// builds those its alert routes to, not every client of a large configuration).
pub(crate) fn build_active_for(
    config: Config,
    factory: &NotifierFactory,
    template_errors: &Counter,
    capture: Option<tocsin_notify::capture::Capture>,
    wanted: impl Fn(&str) -> bool,
) -> Result<Active, String> {
    let shared = Shared {
        templates: Arc::new(load_templates(&config.templates)?),
        template_errors: template_errors.clone(),
        capture,
    };
    let mut integrations = HashMap::new();
    for r in config.active_receivers().into_iter().filter(|r| wanted(&r.name)) {
        integrations.insert(r.name.clone(), factory(r, &shared)?);
    }
    let route_labels = config
        .route
        .nodes
        .iter()
        .map(|r| {
            if r.labels.is_empty() {
                return Ok(None);
            }
            tocsin_notify::route_labels::RouteLabels::compile(&r.labels, &shared.templates)
                .map(|l| Some(Arc::new(l)))
                .map_err(|e| format!("route {}: {e}", r.key))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let (cancel, _) = watch::channel(false);
    Ok(Active {
        config: Arc::new(config),
        integrations,
        route_labels,
        cancel,
    })
}

/// Reads and validates the config file and the template files it names.
///
/// # Errors
/// Returns the read or validation error, prefixed with nothing (callers add context).
pub fn read_config(path: &Path, opts: &LoadOptions) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let config = load(&text, base, opts).map_err(|e| e.to_string())?;
    load_templates(&config.templates)?;
    Ok(config)
}

impl App {
    /// Reloads the config file; on error the running configuration stays.
    ///
    /// # Errors
    /// Returns why the new file was rejected.
    pub async fn reload(self: &Arc<Self>) -> Result<(), String> {
        let _guard = self.reload_lock.lock().await;
        let config = match read_config(&self.settings.config_path, &self.settings.load) {
            Ok(c) => c,
            Err(e) => {
                self.metrics.reload_ok.set(0);
                return Err(e);
            }
        };
        for w in &config.warnings {
            warn!(warning = %w, "configuration warning");
        }
        let applied = self.apply(config);
        if applied.is_err() {
            self.metrics.reload_ok.set(0);
        }
        applied
    }

    /// Swaps in a validated configuration: in-flight notifications are cancelled, groups are
    /// rebuilt from the stored alerts and their timers restart (§3.2).
    ///
    /// # Errors
    /// Returns a message when an integration cannot be built (the old configuration stays).
    pub fn apply(self: &Arc<Self>, config: Config) -> Result<(), String> {
        let mut inhibitor = Inhibitor::new(config.inhibit_rules.clone());
        let active = Arc::new(build_active(
            config,
            &self.factory,
            &self.metrics.template_errors,
            None,
        )?);
        let alerts = self.store.list();
        for a in &alerts {
            inhibitor.observe(a);
        }
        let now = self.clock.now();
        let old = {
            let mut d = self.dispatcher.lock();
            d.reset();
            let old = std::mem::replace(&mut *self.active.write(), active.clone());
            *self.inhibitor.write() = inhibitor;
            d.insert(&active.config.route, &alerts, Instant::now(), now, None);
            old
        };
        self.state
            .set_bounds(self.settings.max_clock_skew, crate::app::claim_cap(&active.config));
        self.start_event_outputs(&active.config);
        let _ = old.cancel.send(true);
        self.wake.notify_one();
        self.metrics.reload_ok.set(1);
        self.metrics.reload_ts.set(self.clock.now().as_second() as f64);
        self.metrics
            .config_hash
            .set(crate::metrics::config_hash(&active.config.original));
        info!("completed loading of configuration file");
        Ok(())
    }
}
