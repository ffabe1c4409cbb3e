//! Default templates are an interface: users call them from their own templates, and incident
//! titles and chat searches depend on their exact text. Every default template Alertmanager 0.25
//! defines is rendered by the real `amtool template render` over Alertmanager's own default.tmpl
//! (Debian package prometheus-alertmanager; .ci/run installs it) and by Tocsin, for several
//! notifications, and the outputs must be equal byte for byte. Skipped with a reason when
//! amtool or the file is missing (failing under CI=true).

#[path = "../../tocsin-notify/tests/support/skip.rs"]
mod skip;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};
use tocsin_template::data::{Alert, Data};
use tocsin_template::{Options, Template};

const AM_DEFAULTS: &str = "/usr/share/prometheus/alertmanager/default.tmpl";

/// Every template of Alertmanager 0.25's default.tmpl, with the argument it takes.
const TEMPLATES: [(&str, &str); 38] = [
    ("__alertmanager", "."),
    ("__alertmanagerURL", "."),
    ("__subject", "."),
    ("__description", "."),
    ("__text_alert_list", ".Alerts"),
    ("slack.default.title", "."),
    ("slack.default.username", "."),
    ("slack.default.fallback", "."),
    ("slack.default.callbackid", "."),
    ("slack.default.pretext", "."),
    ("slack.default.titlelink", "."),
    ("slack.default.iconemoji", "."),
    ("slack.default.iconurl", "."),
    ("slack.default.text", "."),
    ("slack.default.footer", "."),
    ("pagerduty.default.description", "."),
    ("pagerduty.default.client", "."),
    ("pagerduty.default.clientURL", "."),
    ("pagerduty.default.instances", ".Alerts.Firing"),
    ("opsgenie.default.message", "."),
    ("opsgenie.default.description", "."),
    ("opsgenie.default.source", "."),
    ("wechat.default.message", "."),
    ("wechat.default.to_user", "."),
    ("wechat.default.to_party", "."),
    ("wechat.default.to_tag", "."),
    ("wechat.default.agent_id", "."),
    ("victorops.default.state_message", "."),
    ("victorops.default.entity_display_name", "."),
    ("victorops.default.monitoring_tool", "."),
    ("pushover.default.title", "."),
    ("pushover.default.message", "."),
    ("pushover.default.url", "."),
    ("sns.default.subject", "."),
    ("sns.default.message", "."),
    ("telegram.default.message", "."),
    ("discord.default.title", "."),
    ("discord.default.message", "."),
];

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn alert(instance: &str, resolved: bool, extra: &[(&str, &str)]) -> Alert {
    let mut l = labels(&[
        ("alertname", "DiskFull"),
        ("instance", instance),
        ("job", "node"),
        ("team", "storage"),
    ]);
    l.extend(labels(extra));
    Alert {
        status: if resolved { "resolved" } else { "firing" }.into(),
        labels: l,
        annotations: labels(&[
            ("summary", &format!("disk on {instance} is > 95% <full>")),
            ("runbook", "r & b"),
        ]),
        starts_at: Some("2026-03-05T13:50:00Z".parse().unwrap()),
        ends_at: resolved.then(|| "2026-03-05T13:59:00Z".parse().unwrap()),
        generator_url: format!("http://prometheus:9090/graph?g0.expr=disk%7Binstance%3D%22{instance}%22%7D"),
        fingerprint: "0123456789abcdef".into(),
    }
}

/// Notifications that exercise every branch: firing and resolved together, firing only with
/// common annotations, resolved only with common labels equal to the group labels, no group
/// labels at all.
fn cases() -> Vec<Data> {
    let base = |alerts: Vec<Alert>, status: &str| Data {
        receiver: "storage\\-team".into(),
        status: status.into(),
        alerts,
        group_labels: labels(&[("alertname", "DiskFull")]),
        common_labels: labels(&[("alertname", "DiskFull"), ("job", "node"), ("team", "storage")]),
        common_annotations: BTreeMap::new(),
        external_url: "http://tocsin.example:9093".into(),
        notification_reason: String::new(),
        route_labels: Default::default(),
    };
    let mixed = base(
        vec![
            alert("db-1", false, &[("severity", "warning")]),
            alert("db-2", true, &[]),
        ],
        "firing",
    );
    let mut firing = base(vec![alert("db-1", false, &[]), alert("db-3", false, &[])], "firing");
    firing.common_annotations = labels(&[("runbook", "r & b"), ("a", "first")]);
    let mut resolved = base(vec![alert("db-2", true, &[])], "resolved");
    resolved.common_labels = resolved.group_labels.clone();
    let mut ungrouped = base(vec![alert("db-4", false, &[])], "firing");
    ungrouped.group_labels = BTreeMap::new();
    vec![mixed, firing, resolved, ungrouped]
}

fn to_json(d: &Data) -> Value {
    let alerts: Vec<Value> = d
        .alerts
        .iter()
        .map(|a| {
            json!({
                "status": a.status, "labels": a.labels, "annotations": a.annotations,
                "startsAt": a.starts_at.map(|t| t.to_string()),
                "endsAt": a.ends_at.map_or("0001-01-01T00:00:00Z".to_string(), |t| t.to_string()),
                "generatorURL": a.generator_url, "fingerprint": a.fingerprint,
            })
        })
        .collect();
    json!({
        "receiver": d.receiver, "status": d.status, "alerts": alerts,
        "groupLabels": d.group_labels, "commonLabels": d.common_labels,
        "commonAnnotations": d.common_annotations, "externalURL": d.external_url,
    })
}

#[test]
fn tocsins_defaults_render_what_alertmanagers_render() {
    if Command::new("amtool").arg("--version").output().is_err() || !std::path::Path::new(AM_DEFAULTS).exists() {
        skip::skip(&format!(
            "amtool or {AM_DEFAULTS} not found (Debian package prometheus-alertmanager; .ci/run installs it)"
        ));
        return;
    }
    let ours = Template::with_defaults();
    let opts = Options {
        html: false,
        now: "2026-03-05T14:00:00Z".parse().unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut differ = Vec::new();
    for (i, d) in cases().iter().enumerate() {
        let file = dir.path().join(format!("data{i}.json"));
        std::fs::write(&file, to_json(d).to_string()).unwrap();
        for (name, arg) in TEMPLATES {
            let text = format!("{{{{ template \"{name}\" {arg} }}}}");
            let out = Command::new("amtool")
                .args(["template", "render", &format!("--template.glob={AM_DEFAULTS}")])
                .arg(format!("--template.data={}", file.display()))
                .arg(format!("--template.text={text}"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "amtool {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let theirs = String::from_utf8(out.stdout).unwrap();
            let mine = ours
                .execute_str(&text, &d.to_value(), &opts)
                .unwrap_or_else(|e| format!("ERROR {e}"));
            if mine != theirs {
                differ.push(format!(
                    "case {i}, {name}:\n--- Alertmanager\n{theirs:?}\n--- Tocsin\n{mine:?}"
                ));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "{} renders differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
