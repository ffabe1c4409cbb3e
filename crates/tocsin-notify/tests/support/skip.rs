//! A test that cannot run here says so, never passing silently: under `CI=true` it fails; else
//! it is printed and appended to `$TOCSIN_SKIP_LOG`, which `scripts/test` counts in its summary
//! line. Shared by the test binaries of tocsin-notify and tocsin-server (`#[path]`).

use std::io::Write;

/// Records that the calling test cannot run, and why; panics under `CI=true`.
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} cannot run under CI=true: {reason}"
    );
    eprintln!("skipped {test}: {reason}");
    if let Ok(path) = std::env::var("TOCSIN_SKIP_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = writeln!(f, "{test}: {reason}");
    }
}
