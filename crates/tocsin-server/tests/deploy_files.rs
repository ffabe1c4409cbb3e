//! Every flag written in deploy/ and examples/ is one the binary accepts, and every example
//! Alertmanager config passes the config check.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use tocsin_core::config::LoadOptions;
use tocsin_server::flags::Flags;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root().join(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

#[test]
fn every_flag_in_deploy_and_examples_exists() {
    let known: Vec<String> = Flags::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(String::from))
        .collect();
    let mut checked = 0;
    for f in files("deploy").into_iter().chain(files("examples")) {
        if f.ends_with("prometheus/prometheus.yml") || f.ends_with("prometheus/rules.yml") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("--") {
            let rest = &text[i + 2..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                .collect();
            // Only Tocsin flags have a dot (`web.listen-address`); skip `--release`, `--no-install-recommends`, ….
            if !name.contains('.') {
                continue;
            }
            assert!(known.contains(&name), "{}: unknown flag --{name}", f.display());
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} flags found");
}

#[test]
fn example_configs_pass_the_config_check() {
    let configs: Vec<PathBuf> = files("examples")
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yml") && !p.to_string_lossy().contains("/prometheus/"))
        .collect();
    assert!(!configs.is_empty());
    for p in configs {
        // As `tocsin --config.check` reads it: the file and the template files it names.
        let config = match tocsin_server::reload::read_config(&p, &LoadOptions::default()) {
            Ok(c) => c,
            Err(e) => panic!("{}: {e}", p.display()),
        };
        // And every integration builds: each templated field parses, each client is made.
        let shared = tocsin_notify::Shared {
            templates: std::sync::Arc::new(tocsin_server::reload::load_templates(&config.templates).unwrap()),
            ..tocsin_notify::Shared::default()
        };
        for r in config.receivers.values() {
            if let Err(e) = tocsin_notify::build_integrations(r, "Tocsin/test", &shared) {
                panic!("{}: {e}", p.display());
            }
        }
    }
}
