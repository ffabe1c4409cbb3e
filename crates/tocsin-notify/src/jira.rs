//! Jira (`jira_configs`, reference §4 jira): one issue per group, labelled `ALERT{<hash of the
//! group key>}`. Each notification searches for the group's issue, creates it or updates it,
//! and moves an existing one with the configured transition (reopen while firing, resolve once
//! resolved). The issue's fields come from [`issue`] (pure) and the search from [`jql`] (pure).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value as Json, json};
use tocsin_core::config::{JiraConfig, SecretSource};
use tracing::warn;

use crate::fields::{Fields, Render, render_value, value_leaves};
use crate::integration::{all_resolved, group_hash, truncate_runes};
use crate::sender::{HttpSender, Reply, Request, check_status};
use crate::{BoxFuture, FailureReason, Kept, Notifier, NotifyData, NotifyError, Shared};

const MAX_SUMMARY_RUNES: usize = 255;
const MAX_DESCRIPTION_RUNES: usize = 32767;

fn templated(c: &JiraConfig) -> Vec<(String, &str)> {
    let mut v: Vec<(String, &str)> = vec![
        ("project".into(), &c.project),
        ("issue_type".into(), &c.issue_type),
        ("summary".into(), &c.summary.0),
        ("description".into(), &c.description.0),
        ("priority".into(), &c.priority),
    ];
    for (i, l) in c.labels.iter().enumerate() {
        v.push((format!("labels[{i}]"), l));
    }
    for (k, x) in &c.fields {
        v.push((format!("fields#{k}"), k));
        value_leaves(&format!("fields.{k}"), x, &mut v);
    }
    v
}

/// The search for a group's issue.
pub fn jql(c: &JiraConfig, project: &str, group_hash: &str, firing: bool) -> String {
    let mut q = String::new();
    if !c.wont_fix_resolution.is_empty() {
        q += &format!(
            "(resolution is EMPTY or resolution != {:?}) and ",
            c.wont_fix_resolution
        );
    }
    let minutes = c.reopen_duration.as_secs() / 60;
    if firing && !c.reopen_transition.is_empty() && minutes > 0 {
        q += &format!("(resolutiondate is EMPTY OR resolutiondate >= -{minutes}m) and ");
    } else {
        q += "statusCategory != Done and ";
    }
    q += &format!("project={project:?} and labels=\"ALERT{{{group_hash}}}\" order by status ASC,resolutiondate DESC");
    q
}

/// Whether the API URL is version 3 (descriptions in the Atlassian document format).
fn is_v3(api_url: &str) -> bool {
    let path = reqwest::Url::parse(api_url)
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    path.trim_end_matches('/').ends_with("/3")
}

/// The issue's fields for a create, and for an update of an existing issue (the same, without
/// the summary and description whose `enable_update` is false): rendered once.
///
/// # Errors
/// An API v3 description that is not JSON.
pub fn issue(c: &JiraConfig, d: &NotifyData, r: &mut Render<'_>) -> Result<(Json, Json), String> {
    let mut fields: BTreeMap<String, Json> = BTreeMap::new();
    let (summary, cut) = truncate_runes(
        &r.field("summary", r#"{{ template "jira.default.summary" . }}"#),
        MAX_SUMMARY_RUNES,
    );
    if cut {
        warn!(
            integration = "jira",
            max_runes = MAX_SUMMARY_RUNES,
            "truncated the summary"
        );
    }
    fields.insert("summary".into(), Json::String(summary));
    let (description, _) = truncate_runes(
        &r.field("description", r#"{{ template "jira.default.description" . }}"#),
        MAX_DESCRIPTION_RUNES,
    );
    if is_v3(&c.api_url) {
        let trimmed = description.trim();
        if !trimmed.is_empty() {
            let v: Json = serde_json::from_str(trimmed)
                .map_err(|_| "description template: invalid JSON for API v3".to_string())?;
            fields.insert("description".into(), v);
        }
    } else if !description.is_empty() {
        fields.insert("description".into(), Json::String(description));
    }
    fields.insert("issuetype".into(), json!({"name": r.field("issue_type", "")}));
    let mut labels: Vec<String> = (0..c.labels.len())
        .map(|i| r.field(&format!("labels[{i}]"), ""))
        .collect();
    labels.push(format!("ALERT{{{}}}", group_hash(&d.group_key)));
    labels.sort();
    fields.insert("labels".into(), json!(labels));
    let priority = r.field("priority", r#"{{ template "jira.default.priority" . }}"#);
    if !priority.is_empty() {
        fields.insert("priority".into(), json!({"name": priority}));
    }
    fields.insert("project".into(), json!({"key": r.field("project", "")}));
    // Custom fields last: they may replace the built-in ones, as in Alertmanager.
    for (k, x) in &c.fields {
        let key = r.field(&format!("fields#{k}"), k);
        fields.insert(key, render_value(&format!("fields.{k}"), x, r));
    }
    let mut update = fields.clone();
    // Custom fields named like them stay: they were laid over the built-in ones.
    if !c.summary.1 && !c.fields.contains_key("summary") {
        update.remove("summary");
    }
    if !c.description.1 && !c.fields.contains_key("description") {
        update.remove("description");
    }
    Ok((json!({ "fields": fields }), json!({ "fields": update })))
}

/// A configured Jira integration.
pub struct Jira {
    cfg: Arc<JiraConfig>,
    fields: Arc<Fields>,
    sender: HttpSender,
    shared: Shared,
}

/// What one notification renders before its requests.
struct Rendered {
    project: String,
    create: Json,
    update: Json,
    errors: Vec<String>,
}

impl Jira {
    /// Compiles the templates and builds the client.
    ///
    /// # Errors
    /// A template that does not parse, or a client that cannot be built.
    pub fn new(cfg: JiraConfig, user_agent: &str, shared: &Shared) -> Result<Self, String> {
        let fields = Fields::compile(&shared.templates, templated(&cfg)).map_err(|e| format!("jira_configs {e}"))?;
        let sender = HttpSender::new("jira", &cfg.http, user_agent)?.with_capture(shared.capture.clone());
        Ok(Jira {
            cfg: Arc::new(cfg),
            fields: Arc::new(fields),
            sender,
            shared: shared.clone(),
        })
    }

    /// `{api_url}/{path}`, the API URL's query kept.
    fn url(&self, path: &str) -> String {
        let (base, query) = match self.cfg.api_url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (self.cfg.api_url.as_str(), None),
        };
        let mut u = format!("{}/{path}", base.trim_end_matches('/'));
        if let Some(q) = query {
            u = format!("{u}?{q}");
        }
        u
    }

    fn search_url(&self) -> String {
        let host = reqwest::Url::parse(&self.cfg.api_url)
            .ok()
            .and_then(|u| u.host_str().map(String::from))
            .unwrap_or_default();
        let cloud = self.cfg.api_type == "cloud" || (self.cfg.api_type == "auto" && host.ends_with("atlassian.net"));
        if cloud {
            self.url("search/jql").replacen("/rest/api/2/", "/rest/api/3/", 1)
        } else {
            self.url("search")
        }
    }

    async fn request(&self, method: &'static str, url: String, body: Option<&Json>) -> Result<Reply, NotifyError> {
        let ep = self.sender.endpoint(SecretSource::Inline(url));
        let mut bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| NotifyError::fatal(FailureReason::Other, e.to_string()))?,
            None => Vec::new(),
        };
        if body.is_some() {
            bytes.push(b'\n');
        }
        let reply = self
            .sender
            .post(Request {
                endpoint: &ep,
                method,
                content_type: "application/json",
                body: bytes,
                authorization: None,
                headers: vec![("Accept-Language".into(), "en".into())],
            })
            .await?;
        check_status(reply.status, &reply.quoted(), &[429]).map_err(|e| reply.annotate(e))?;
        Ok(reply)
    }

    async fn send(&self, d: &NotifyData) -> Result<(), NotifyError> {
        let fatal = |m: String| NotifyError::fatal(FailureReason::Other, m);
        let (cfg, fields, d2) = (self.cfg.clone(), self.fields.clone(), d.clone());
        let rendered = tokio::task::spawn_blocking(move || {
            let data = crate::email::template_data(&d2).to_value();
            let mut r = fields.render(&data, jiff::Timestamp::now());
            let project = r.field("project", "");
            let (create, update) = issue(&cfg, &d2, &mut r)?;
            Ok::<_, String>(Rendered {
                project,
                create,
                update,
                errors: r.errors,
            })
        })
        .await
        .map_err(|e| fatal(format!("rendering the templates failed: {e}")))?
        .map_err(fatal)?;
        if !rendered.errors.is_empty() {
            self.shared.template_errors.inc();
            warn!(group_key = %d.group_key, receiver = %d.receiver, integration = "jira", errors = ?rendered.errors, "template error; sending the default text for those fields");
        }
        let resolved = all_resolved(d);
        let q = jql(&self.cfg, &rendered.project, &group_hash(&d.group_key), !resolved);
        let search = json!({"fields": ["status"], "jql": q, "maxResults": 2});
        let reply = self
            .request("POST", self.search_url(), Some(&search))
            .await
            .map_err(|e| NotifyError {
                message: format!("failed to look up existing issues: {}", e.message),
                ..e
            })?;
        let found: Json = serde_json::from_slice(&reply.body)
            .map_err(|e| fatal(format!("failed to look up existing issues: {e}")))?;
        let issues = found["issues"].as_array().cloned().unwrap_or_default();
        if issues.len() > 1 {
            warn!(
                integration = "jira",
                count = issues.len(),
                "more than one issue matches the group; using the first"
            );
        }
        let Some(existing) = issues.first() else {
            if resolved {
                return Ok(());
            }
            self.request("POST", self.url("issue"), Some(&rendered.create))
                .await
                .map_err(|e| NotifyError {
                    message: format!("failed to POST request to \"issue\": {}", e.message),
                    ..e
                })?;
            return Ok(());
        };
        let key = existing["key"].as_str().unwrap_or_default().to_string();
        let path = format!("issue/{key}");
        self.request("PUT", self.url(&path), Some(&rendered.update))
            .await
            .map_err(|e| NotifyError {
                message: format!("failed to PUT request to {path:?}: {}", e.message),
                ..e
            })?;
        let done = existing["fields"]["status"]["statusCategory"]["key"].as_str() == Some("done");
        let transition = match (resolved, done) {
            (false, true) => &self.cfg.reopen_transition,
            (true, false) => &self.cfg.resolve_transition,
            _ => return Ok(()),
        };
        if transition.is_empty() || key.is_empty() {
            return Ok(());
        }
        let tpath = format!("issue/{key}/transitions");
        let reply = self.request("GET", self.url(&tpath), None).await?;
        let list: Json =
            serde_json::from_slice(&reply.body).map_err(|e| fatal(format!("transitions of {key}: {e}")))?;
        let id = list["transitions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["name"].as_str() == Some(transition.as_str()))
            .and_then(|t| t["id"].as_str().map(String::from))
            .ok_or_else(|| fatal(format!("can't find transition {transition} for issue {key}")))?;
        self.request("POST", self.url(&tpath), Some(&json!({"transition": {"id": id}})))
            .await?;
        Ok(())
    }
}

impl Notifier for Jira {
    fn notify<'a>(&'a self, data: &'a NotifyData) -> BoxFuture<'a, Result<Kept, NotifyError>> {
        Box::pin(async move { self.send(data).await.map(|()| None) })
    }
}
