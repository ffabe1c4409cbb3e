//! Golden accept/reject cases for `alertmanager.yml`, covering what Alertmanager's own config
//! tests exercise. Each file under `testdata/config/bad` starts with `# error: <text>`, and the
//! load error must contain that text.

use std::path::Path;

use tocsin_core::config::{LoadOptions, load};

fn cases(kind: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/config")
        .join(kind);
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(out.len() > 5, "fixtures missing in {}", dir.display());
    out
}

#[test]
fn good_configs_load() {
    let mut failures = Vec::new();
    for (name, text) in cases("good") {
        if let Err(e) = load(&text, Path::new("/etc/tocsin"), &LoadOptions::default()) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn bad_configs_are_rejected_with_their_message() {
    let mut failures = Vec::new();
    for (name, text) in cases("bad") {
        let want = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# error: "))
            .expect("first line is # error:");
        match load(&text, Path::new("/etc/tocsin"), &LoadOptions::default()) {
            Ok(_) => failures.push(format!("{name}: accepted, expected error containing {want:?}")),
            Err(e) if !e.0.contains(want) => failures.push(format!("{name}: got {:?}, expected {want:?}", e.0)),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn loaded_values_are_inherited_and_resolved() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/config/good");
    let text = std::fs::read_to_string(dir.join("routing-tree.yml")).unwrap();
    let c = load(&text, Path::new("/etc/tocsin"), &LoadOptions::default()).unwrap();
    let r = &c.route.nodes;
    assert_eq!(r[1].key, r#"{}/{service="database"}"#);
    assert_eq!(r[2].receiver, "db-pager");
    assert_eq!(r[2].group_wait, std::time::Duration::from_secs(10));
    assert_eq!(r[2].group_by, tocsin_core::route::GroupBy::All);
    assert_eq!(r[3].group_by, tocsin_core::route::GroupBy::Labels(vec![]));
    assert_eq!(r[3].key, r#"{}/{env!="dev",owner="ops",team=~"front.*"}"#);
    assert_eq!(r[4].key, r#"{}/{"label with space"="x"}"#);
    let text = std::fs::read_to_string(dir.join("http-config.yml")).unwrap();
    let c = load(&text, Path::new("/etc/tocsin"), &LoadOptions::default()).unwrap();
    let hooks = &c.receivers["default"].webhooks;
    assert_eq!(
        hooks[0].http.tls.ca_file.as_deref(),
        Some(Path::new("/etc/tocsin/certs/ca.pem"))
    );
    // An integration's own http_config replaces the global one whole, as in Alertmanager.
    assert!(hooks[0].http.follow_redirects);
    assert_eq!(hooks[1].http.authorization.as_ref().unwrap().0, "Bearer");
    assert!(!hooks[2].http.enable_http2);
    assert_eq!(hooks[2].http.proxy_url, None);
}

#[test]
fn email_defaults_come_from_global_and_alertmanager() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/config/good");
    let text = std::fs::read_to_string(dir.join("email.yml")).unwrap();
    let c = load(&text, Path::new("/etc/tocsin"), &LoadOptions::default()).unwrap();
    let e = &c.receivers["ops"].emails;
    assert_eq!((e[0].host.as_str(), e[0].port), ("mail.example", 587));
    assert_eq!(e[0].from, "tocsin@example.org");
    assert_eq!(e[0].hello, "localhost");
    assert!(e[0].require_tls && !e[0].implicit_tls && !e[0].send_resolved);
    assert_eq!(e[0].auth_username.as_deref(), Some("tocsin"));
    assert_eq!(
        e[0].auth_password,
        Some(tocsin_core::config::SecretSource::File(
            "/etc/tocsin/secrets/smtp".into()
        ))
    );
    // Header names are canonicalised; Subject, To and From default as in Alertmanager.
    let h: Vec<(&str, &str)> = e[0].headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        h,
        [
            ("From", "tocsin@example.org"),
            ("Reply-To", "noc@example.org"),
            ("Subject", "{{ .Status | toUpper }}: {{ .CommonLabels.alertname }}"),
            ("To", "ops@example.org, {{ .CommonLabels.team }}@example.org"),
        ]
    );
    assert_eq!(e[0].html, r#"{{ template "email.default.html" . }}"#);
    assert_eq!(e[1].headers["Subject"], r#"{{ template "email.default.subject" . }}"#);
    assert!(e[1].implicit_tls && !e[1].require_tls && e[1].send_resolved && e[1].tls.insecure_skip_verify);
}
