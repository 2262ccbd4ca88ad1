//! `redeploy serve` as a user runs it: zero configuration, prints its URLs, answers /healthz.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Kills the child even when an assertion fails.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_prints_urls_and_answers_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_redeploy"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redeploy runs"),
    );
    let stdout = child.0.stdout.take().unwrap();
    // Read until the discovery line (blocking reads on their own thread; EOF = it died).
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains("Database:");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    })
    .await
    .unwrap();
    let text = lines.join("\n");
    let discovery = lines
        .iter()
        .find_map(|l| l.split("Discovery URL:").nth(1))
        .unwrap_or_else(|| panic!("no discovery URL in:\n{text}"))
        .trim()
        .to_string();
    assert!(discovery.starts_with("https://127.0.0.1:"), "{text}");
    assert!(
        discovery.ends_with("/EnrollmentServer/Discovery.svc"),
        "{text}"
    );
    let base = discovery.trim_end_matches("/EnrollmentServer/Discovery.svc");
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0, "the real port is printed");
    let console = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Console:"))
        .unwrap_or_else(|| panic!("no console URL in:\n{text}"))
        .trim()
        .to_string();
    assert_eq!(console, format!("{base}/console"), "{text}");
    assert!(
        text.contains(&data.join("admin-token").display().to_string()),
        "{text}"
    );
    assert!(
        text.contains(&data.join("ca.pem").display().to_string()),
        "{text}"
    );

    let ca = std::fs::read(data.join("ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // The printed console URL leads a new admin to the sign-in page, which says where the token is.
    let page = client.get(&console).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.url().path().starts_with("/console/sign-in"),
        "{}",
        page.url()
    );
    let body = page.text().await.unwrap();
    assert!(body.contains("admin-token"), "{body}");
}

#[test]
fn migrate_creates_and_migrates_a_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.db");
    let output = Command::new(env!("CARGO_BIN_EXE_redeploy"))
        .args(["migrate", "--database"])
        .arg(format!("sqlite://{}", db.display()))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("migrations applied"));
    assert!(db.is_file());
    let bad = Command::new(env!("CARGO_BIN_EXE_redeploy"))
        .args(["migrate", "--database", "mysql://nope/db"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1), "an unsupported URL is refused");
}

/// `redeploy bench --hostile` as an operator runs it (issue #14 item 4): hostile sessions from
/// enrolled PCs and strangers get answers, never a server error, and normal sessions are
/// served again afterwards; the memory readings are reported (their figures are benchmarks,
/// recorded in docs/benchmarks.md, not asserted here).
#[test]
fn bench_hostile_gets_no_server_error_and_reports_memory() {
    let out = Command::new(env!("CARGO_BIN_EXE_redeploy"))
        .args([
            "bench",
            "--devices",
            "3",
            "--duration",
            "0.5",
            "--concurrency",
            "2",
            "--hostile",
            "1",
            "--json",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("redeploy bench runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hostile = &report["hostile"];
    assert!(hostile["requests"].as_u64().unwrap() > 0, "{report}");
    // A body over the limit may be cut off mid-upload (413 and the connection closed): no answer.
    assert!(hostile["answered"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(hostile["server_errors"], 0, "{report}");
    assert_eq!(hostile["normal_again"]["failed_sessions"], 0, "{report}");
    assert!(
        hostile["normal_again"]["sessions_per_second"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        hostile["rss_kib_after_quiet_5s"].as_u64().unwrap() > 0,
        "{report}"
    );
}
