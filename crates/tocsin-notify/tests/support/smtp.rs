//! A real SMTP server for tests: `smtp_server.py` (aiosmtpd) as a child process, killed on drop.
//! Shared by tocsin-notify's and tocsin-server's email tests (`#[path]` module).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Debian's Python, where the python3-aiosmtpd package installs.
const PYTHON: &str = "/usr/bin/python3";

pub struct Smtp {
    child: Child,
    pub port: u16,
    pub out: tempfile::TempDir,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server with `args` (see smtp_server.py); `None` when aiosmtpd is not installed
/// (recorded as skipped; a failure under `CI=true`).
pub fn start(args: &[&str]) -> Option<Smtp> {
    let ok = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        crate::skip::skip(&format!(
            "{PYTHON} cannot import aiosmtpd (Debian package python3-aiosmtpd; .ci/run installs it)"
        ));
        return None;
    }
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(file!()).with_file_name("smtp_server.py");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(script);
    let mut child = Command::new(PYTHON)
        .arg(script)
        .arg(out.path())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(p) = line.strip_prefix("LISTENING ") {
                let _ = tx.send(p.parse::<u16>().unwrap());
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("smtp server did not start");
    Some(Smtp { child, port, out })
}

impl Smtp {
    /// Waits (bounded) for the n-th message and returns it as smtp_server.py recorded it.
    pub async fn message(&self, n: usize) -> Value {
        let path = self.out.path().join(format!("{n}.json"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !path.exists() {
            assert!(Instant::now() < deadline, "message {n} never arrived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// Whether the n-th message exists now.
    pub fn has(&self, n: usize) -> bool {
        self.out.path().join(format!("{n}.json")).exists()
    }
}
