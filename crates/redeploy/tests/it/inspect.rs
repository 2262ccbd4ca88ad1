//! `redeploy inspect`: every real capture is decoded; malformed, oversized and entity-expanding
//! input is refused with exit code 2 and one line naming line, column and problem.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixtures() -> PathBuf {
    let start = Path::new(env!("CARGO_MANIFEST_DIR"));
    start
        .ancestors()
        .map(|dir| dir.join("shared/fixtures/real"))
        .find(|dir| dir.is_dir())
        .expect("shared/fixtures/real not found beside the checkout")
}

fn inspect(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_redeploy"))
        .arg("inspect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every capture that is a message (not a header dump, a log or a template) and is well formed.
fn capture_files() -> Vec<PathBuf> {
    let root = fixtures();
    let mut files = Vec::new();
    for dir in ["fleet-win10-21h1", "fleet-win10-21h1-readme", "mattrax"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // 06 is a real server response that is not well-formed XML (SOURCES.md says so);
            // it has its own test below.
            if name.ends_with(".xml") && !name.starts_with("06-") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_real_capture_is_decoded() {
    let files = capture_files();
    assert!(files.len() >= 14, "expected the captures, found {files:?}");
    for file in files {
        let out = inspect(&[file.to_str().unwrap()], None);
        assert!(
            out.status.success(),
            "{} was refused: {}",
            file.display(),
            stderr(&out)
        );
        assert!(!stdout(&out).is_empty());
    }
}

#[test]
fn a_checkin_summary_names_the_alerts_and_nodes() {
    let file = fixtures().join("fleet-win10-21h1/09-syncml-device-1.xml");
    let out = inspect(&[file.to_str().unwrap()], None);
    let text = stdout(&out);
    assert!(text.contains("session 1, message 1"), "{text}");
    assert!(text.contains("ClientInitiatedMgmt"), "{text}");
    assert!(
        text.contains("com.microsoft/MDM/LoginStatus = user"),
        "{text}"
    );
    assert!(text.contains("./DevInfo/Man = VMware, Inc."), "{text}");
}

#[test]
fn json_output_is_machine_readable() {
    let file = fixtures().join("mattrax/basic-1.xml");
    let out = inspect(&[file.to_str().unwrap(), "--json"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "syncml");
    assert_eq!(v["header"]["session_id"], "D");
    assert_eq!(v["commands"][0]["command"], "Status");
    assert_eq!(v["commands"][0]["code"], 500);

    let file = fixtures().join("fleet-win10-21h1/07-enroll-request.xml");
    let out = inspect(&[file.to_str().unwrap(), "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "request_security_token");
    assert_eq!(v["csr_valid"], true);
    // The UsernameToken password is never printed.
    assert!(!stdout(&out).contains("\"demo\""));
}

#[test]
fn standard_input_works() {
    let bytes = std::fs::read(fixtures().join("mattrax/discovery-1.xml")).unwrap();
    let out = inspect(&["-"], Some(&bytes));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Discover request"));
}

fn assert_refused(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "stdout: {}", stdout(out));
    let err = stderr(out);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.contains("line "), "no line number: {err}");
    assert!(err.contains("column "), "no column: {err}");
    assert!(
        err.to_lowercase().contains(needle),
        "expected {needle:?} in {err}"
    );
}

#[test]
fn the_malformed_real_policy_response_is_refused_with_its_position() {
    let file = fixtures().join("fleet-win10-21h1/06-policy-response.xml");
    let out = inspect(&[file.to_str().unwrap()], None);
    assert_refused(&out, "algorithmoidreferencexsi");
}

#[test]
fn entity_expansion_is_refused() {
    let bomb = br#"<?xml version="1.0"?>
<!DOCTYPE SyncML [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr/><SyncBody>&b;</SyncBody></SyncML>"#;
    let out = inspect(&["-"], Some(bomb));
    assert_refused(&out, "doctype");
}

#[test]
fn oversized_input_is_refused() {
    let mut big = b"<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr>".to_vec();
    big.extend(std::iter::repeat_n(b' ', 8 * 1024 * 1024));
    big.extend(b"</SyncHdr></SyncML>");
    let out = inspect(&["-"], Some(&big));
    assert_refused(&out, "limit");
}

#[test]
fn truncated_and_foreign_input_is_refused() {
    let out = inspect(
        &["-"],
        Some(b"<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr><VerDTD>1.2"),
    );
    assert_refused(&out, "line 1");
    let out = inspect(&["-"], Some(b"<html><body>hello</body></html>"));
    assert_refused(&out, "not a syncml message");
    let out = inspect(&["-"], Some(b"just text"));
    assert_refused(&out, "no xml root");
}
