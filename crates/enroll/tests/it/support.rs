//! Shared helpers: locating the real-capture fixtures and this crate's testdata.

use std::path::PathBuf;

use time::macros::datetime;
use time::OffsetDateTime;

/// `shared/fixtures/real`, found by walking up from this crate (worktree or CI layout).
pub fn fixtures() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("shared/fixtures/real");
        if candidate.is_dir() {
            return candidate;
        }
        assert!(
            dir.pop(),
            "shared/fixtures/real not found above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
}

pub fn fixture(path: &str) -> Vec<u8> {
    let p = fixtures().join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

pub fn fixture_text(path: &str) -> String {
    String::from_utf8(fixture(path)).unwrap()
}

pub fn testdata(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

pub const NOW: OffsetDateTime = datetime!(2026-11-26 10:00:00 UTC);

pub fn rst(bytes: &[u8]) -> enroll::RstRequest {
    match enroll::parse_message(bytes).unwrap() {
        enroll::EnrollMessage::RequestSecurityToken(r) => r,
        other => panic!("expected an RST, got {other:?}"),
    }
}

/// The pytune Entra RST template with its placeholders and marker lines filled in.
pub fn pytune_rst(csr_b64: &str, token_b64: &str) -> String {
    let dir = "pytune/";
    let template = fixture_text(&format!("{dir}rst-enroll-request.template.xml"));
    let domain = fixture_text(&format!("{dir}rst-fragment-domainname.template.xml"));
    let correlator = fixture_text(&format!(
        "{dir}rst-fragment-offline-autopilot-correlator.template.xml"
    ));
    let ztd = fixture_text(&format!(
        "{dir}rst-fragment-zerotouch-provisioning.template.xml"
    ))
    .replace("{ztdregistrationid}", "ztd-1234");
    template
        .replace("REPLACE_HEJD", &domain)
        .replace("REPLACE_MDM_ONLY_ENROLL", &correlator)
        .replace("REPLACE_ZEROTOUCH_PROVISIONING", &ztd)
        .replace("{message_id}", "5d8c7a63-8b9e-4bd4-9f50-1d7d2d3c9a10")
        .replace(
            "{enrollment_url}",
            "https://mdm.example.test/EnrollmentServer/Enrollment.svc",
        )
        .replace("{token_b64}", token_b64)
        .replace("{csr_pem}", csr_b64)
        .replace("{is_device}", "false")
        .replace("{self.device_name}", "PC-0042")
        .replace("{deviceid}", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
        .replace("{self.os_version}", "10.0.22631.4460")
}
