//! Golden renders of the default templates for a group with one firing and one resolved alert.
//! `TOCSIN_UPDATE_GOLDEN=1 cargo test -p tocsin-template --test defaults` rewrites the files;
//! review the diff before committing.

use std::collections::BTreeMap;

use tocsin_template::data::{Alert, Data};
use tocsin_template::{Options, Template};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn data() -> Data {
    let alert = |instance: &str, status: &str, ends: Option<&str>| Alert {
        status: status.into(),
        labels: labels(&[
            ("alertname", "DiskFull"),
            ("instance", instance),
            ("job", "node"),
            ("team", "storage"),
        ]),
        annotations: labels(&[("summary", &format!("disk on {instance} is > 95% <full>"))]),
        starts_at: Some("2026-03-05T13:50:00Z".parse().unwrap()),
        ends_at: ends.map(|e| e.parse().unwrap()),
        generator_url: format!("http://prometheus:9090/graph?g0.expr=disk%7Binstance%3D%22{instance}%22%7D"),
        fingerprint: "0123456789abcdef".into(),
    };
    Data {
        receiver: "storage\\-team".into(),
        status: "firing".into(),
        alerts: vec![
            alert("db-1", "firing", None),
            alert("db-2", "resolved", Some("2026-03-05T13:59:00Z")),
        ],
        group_labels: labels(&[("alertname", "DiskFull")]),
        common_labels: labels(&[("alertname", "DiskFull"), ("job", "node"), ("team", "storage")]),
        common_annotations: BTreeMap::new(),
        external_url: "http://tocsin.example:9093".into(),
        notification_reason: "first notification".into(),
        route_labels: Default::default(),
    }
}

fn check(name: &str, html: bool, file: &str) {
    let t = Template::with_defaults();
    let opts = Options {
        html,
        now: "2026-03-05T14:00:00Z".parse().unwrap(),
    };
    let got = t.execute(name, &data().to_value(), &opts).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(file);
    if std::env::var_os("TOCSIN_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(got, want, "{name} differs from {}", path.display());
}

#[test]
fn subject_has_alertmanagers_format() {
    let t = Template::with_defaults();
    let opts = Options {
        html: false,
        now: "2026-03-05T14:00:00Z".parse().unwrap(),
    };
    let mut d = data();
    let s = |d: &Data| t.execute("email.default.subject", &d.to_value(), &opts).unwrap();
    assert_eq!(s(&d), "[FIRING:1] DiskFull (node storage)");
    d.status = "resolved".into();
    d.common_labels = d.group_labels.clone();
    // Alertmanager's subject keeps the space before the (here absent) parenthesis.
    assert_eq!(s(&d), "[RESOLVED] DiskFull ");
}

#[test]
fn user_templates_call_the_defaults_as_they_call_alertmanagers() {
    // Tried as a user would (issue 19): Slack configs everywhere pass a list of alerts.
    let t = Template::with_defaults();
    let opts = Options {
        html: false,
        now: "2026-03-05T14:00:00Z".parse().unwrap(),
    };
    let v = data().to_value();
    let out = t
        .execute_str(
            r#"{{ template "__subject" . }}|{{ template "__text_alert_list" .Alerts.Firing }}"#,
            &v,
            &opts,
        )
        .unwrap();
    assert!(
        out.starts_with("[FIRING:1] DiskFull (node storage)|Labels:\n - alertname = DiskFull\n - instance = db-1\n"),
        "{out}"
    );
    assert!(!out.contains("db-2"), "only the firing alert: {out}");
    let md = t.execute("msteams.default.text", &v, &opts).unwrap();
    assert!(
        md.contains("# Alerts Firing:\n\nLabels:\n  - alertname = DiskFull\n"),
        "{md:?}"
    );
    assert!(md.contains("# Alerts Resolved:\n"), "{md:?}");
    assert_eq!(t.execute("slack.default.color", &v, &opts).unwrap(), "danger");
}

#[test]
fn jira_priority_follows_the_highest_severity() {
    let t = Template::with_defaults();
    let opts = Options {
        html: false,
        now: "2026-03-05T14:00:00Z".parse().unwrap(),
    };
    let with = |firing: &[&str], resolved: &[&str]| {
        let mut d = data();
        d.alerts.clear();
        for (sev, status) in firing
            .iter()
            .map(|s| (s, "firing"))
            .chain(resolved.iter().map(|s| (s, "resolved")))
        {
            let mut a = data().alerts[0].clone();
            a.status = status.into();
            a.labels.insert("severity".into(), sev.to_string());
            d.alerts.push(a);
        }
        t.execute("jira.default.priority", &d.to_value(), &opts).unwrap()
    };
    assert_eq!(with(&["info", "warning"], &[]), "Medium");
    assert_eq!(with(&["warning", "critical", "info"], &[]), "High");
    assert_eq!(
        with(&["info"], &["critical"]),
        "Low",
        "firing alerts decide when one matched"
    );
    assert_eq!(with(&["none"], &["critical"]), "High", "else the resolved ones");
    assert_eq!(with(&["none"], &[]), "");
}

#[test]
fn email_html() {
    check("email.default.html", true, "email.default.html.golden");
}

#[test]
fn text_alert_list() {
    check("email.default.text", false, "email.default.text.golden");
}

#[test]
fn alertmanager_url() {
    let t = Template::with_defaults();
    let opts = Options {
        html: false,
        now: "2026-03-05T14:00:00Z".parse().unwrap(),
    };
    let got = t.execute("__alertmanagerURL", &data().to_value(), &opts).unwrap();
    assert_eq!(got, "http://tocsin.example:9093/#/alerts?receiver=storage%5C-team");
}

#[test]
fn alerts_marshal_to_json_by_their_json_tags() {
    // Go's json.Marshal of template.Alert uses its tags: PagerDuty's default `details` are
    // `{{ .Alerts.Firing | toJson }}`, which receivers parse by these keys.
    let t = Template::with_defaults();
    let opts = Options {
        html: false,
        now: "2026-03-05T14:00:00Z".parse().unwrap(),
    };
    let got = t
        .execute_str("{{ .Alerts.Resolved | toJson }}", &data().to_value(), &opts)
        .unwrap();
    assert_eq!(
        got,
        concat!(
            r#"[{"status":"resolved","labels":{"alertname":"DiskFull","instance":"db-2","job":"node","team":"storage"},"#,
            r#""annotations":{"summary":"disk on db-2 is \u003e 95% \u003cfull\u003e"},"#,
            r#""startsAt":"2026-03-05T13:50:00Z","endsAt":"2026-03-05T13:59:00Z","#,
            r#""generatorURL":"http://prometheus:9090/graph?g0.expr=disk%7Binstance%3D%22db-2%22%7D","#,
            r#""fingerprint":"0123456789abcdef"}]"#
        )
    );
}
