//! Email end to end through the `tocsin` binary and a real SMTP server (aiosmtpd): `templates:`
//! files override the default templates, and a template file that no longer parses on reload is
//! refused while the running configuration keeps sending. Skipped, with the reason printed,
//! where python3-aiosmtpd is not installed.

use serde_json::json;

mod common;
use common::start_in;

#[path = "../../tocsin-notify/tests/support/skip.rs"]
mod skip;
#[path = "../../tocsin-notify/tests/support/smtp.rs"]
mod smtp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_files_shape_the_email_and_a_broken_one_is_refused_on_reload() {
    let Some(s) = smtp::start(&[]) else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    let tmpl = dir.path().join("templates/ours.tmpl");
    std::fs::write(
        &tmpl,
        r#"{{ define "email.default.subject" }}[{{ .Status }}] {{ .CommonLabels.alertname }} on {{ .CommonLabels.instance }}{{ end }}"#,
    )
    .unwrap();
    let config = format!(
        "global:\n  smtp_smarthost: 127.0.0.1:{}\n  smtp_from: tocsin@example.org\n  smtp_require_tls: false\ntemplates: ['templates/*.tmpl']\nroute:\n  receiver: mail\n  group_by: [alertname]\n  group_wait: 0s\nreceivers:\n- name: mail\n  email_configs:\n  - to: oncall@example.org\n",
        s.port
    );
    let t = start_in(dir.path(), &config, &[]);
    let c = reqwest::Client::new();
    let post = |name: &'static str| {
        let (c, base) = (c.clone(), t.base.clone());
        async move {
            let r = c
                .post(format!("{base}/api/v2/alerts"))
                .json(&json!([{"labels": {"alertname": name, "instance": "db-1"}}]))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    post("DiskFull").await;
    let m = s.message(1).await;
    assert_eq!(m["headers"]["Subject"], "[firing] DiskFull on db-1");
    assert_eq!(m["rcpt_tos"], json!(["oncall@example.org"]));
    assert!(
        m["html"].as_str().unwrap().contains("View in Alertmanager"),
        "the default HTML body"
    );

    // The template file breaks: reload is refused with the parse error, the old templates stay.
    std::fs::write(&tmpl, r#"{{ define "email.default.subject" }}{{ .Status "#).unwrap();
    let r = c.post(format!("{}/-/reload", t.base)).send().await.unwrap();
    assert_eq!(r.status(), 500, "as Alertmanager answers a failed reload");
    let text = r.text().await.unwrap();
    assert!(
        text.contains("failed to parse template") && text.contains("ours.tmpl"),
        "{text}"
    );
    post("CpuHigh").await;
    assert_eq!(s.message(2).await["headers"]["Subject"], "[firing] CpuHigh on db-1");
}
