//! The management endpoint through the router: identity from the client certificate, refusals
//! with audit entries, problem documents for malformed SyncML, and a full check-in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, StatusCode};
use redeploy_core::store::AuditQuery;
use redeploy_core::trail::{Direction, TrailMessage};
use redeploy_core::{
    Device, DeviceId, Enrollment, EnrollmentId, EnrollmentType, JoinType, ManualClock, Store,
};
use rustls_pki_types::CertificateDer;
use server::mgmt::{ClientCertProxy, MANAGEMENT_PATH};
use server::tls::PeerCertificate;
use server::{AppState, Settings};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tower::ServiceExt;

const DEV_ID: &str = "B5B954E81FBCB94EB79BD08BE625F4EE";
const NOW: OffsetDateTime = datetime!(2026-05-04 9:00 UTC);

struct Fixture {
    state: AppState,
    /// The client certificate (DER) of the enrolled device with DevId [`DEV_ID`].
    cert: Vec<u8>,
    device: DeviceId,
    _dir: tempfile::TempDir,
}

fn fixtures() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("shared/fixtures/real");
        if candidate.is_dir() {
            return candidate;
        }
        assert!(dir.pop(), "shared/fixtures/real not found above the crate");
    }
}

/// Enrolls a device with this DevId and returns its id and client certificate.
async fn enroll(
    store: &dyn Store,
    ca: &enroll::ca::CertificateAuthority,
    dev_id: &str,
) -> (DeviceId, Vec<u8>) {
    let (id, der, _) = enroll_with_key(store, ca, dev_id).await;
    (id, der)
}

/// Like [`enroll`], also returning the certificate and key as one PEM (a client identity).
async fn enroll_with_key(
    store: &dyn Store,
    ca: &enroll::ca::CertificateAuthority,
    dev_id: &str,
) -> (DeviceId, Vec<u8>, String) {
    let id = DeviceId::generate();
    let (key, csr) = enroll::ca::new_device_key_and_csr("pc").unwrap();
    let csr = enroll::ca::verify_csr(&csr).unwrap();
    let cert = ca
        .issue_device_certificate(&csr, &id.to_string(), NOW - Duration::days(1), 365)
        .unwrap();
    let mut d = Device::new(id, "pc", NOW - Duration::days(1));
    d.mdm_device_id = Some(dev_id.into());
    d.hw_dev_id = Some(format!("HW-{dev_id}"));
    d.enrollment_type = Some(EnrollmentType::Device);
    d.join_type = JoinType::EntraJoined;
    d.join_evidence = redeploy_core::JoinEvidence::EntraToken;
    d.cert_thumbprint = Some(cert.thumbprint.to_ascii_lowercase());
    d.cert_not_after = Some(cert.not_after);
    let e = Enrollment {
        id: EnrollmentId::generate(),
        device: id,
        enrollment_type: EnrollmentType::Device,
        upn: None,
        auth_method: "OnPremise".into(),
        context: Vec::new(),
        raw_request: Vec::new(),
        cert_thumbprint: cert.thumbprint.to_ascii_lowercase(),
        cert_serial: cert.serial.clone(),
        cert_not_after: cert.not_after,
        created_at: NOW - Duration::days(1),
        replaced_by: None,
    };
    store.create_enrollment(d, e).await.unwrap();
    (id, cert.der, format!("{}\n{key}", cert.pem))
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = store_sqlite::SqliteStore::connect(dir.path().join("t.db").to_str().unwrap())
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let ca =
        enroll::ca::CertificateAuthority::generate("Test CA", NOW - Duration::days(2)).unwrap();
    let (device, cert) = enroll(store.as_ref(), &ca, DEV_ID).await;
    let state = AppState::new(
        store,
        Arc::new(ca),
        Settings::default(),
        Arc::new(ManualClock::new(NOW)),
        "https://mdm.test",
    );
    Fixture {
        state,
        cert,
        device,
        _dir: dir,
    }
}

fn post(body: impl Into<Body>, cert: Option<&[u8]>) -> Request<Body> {
    let mut r = Request::post(format!("{MANAGEMENT_PATH}?mode=Maintenance&Platform=WoA"))
        .header("content-type", "application/vnd.syncml.dm+xml")
        .body(body.into())
        .unwrap();
    r.extensions_mut().insert(PeerCertificate(
        cert.map(|c| CertificateDer::from(c.to_vec())),
    ));
    r
}

async fn call(state: &AppState, request: Request<Body>) -> (StatusCode, String, String) {
    let response = server::app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, ct, String::from_utf8(body.to_vec()).unwrap())
}

fn package1() -> String {
    std::fs::read_to_string(fixtures().join("fleet-win10-21h1/09-syncml-device-1.xml")).unwrap()
}

async fn refusals(state: &AppState) -> Vec<redeploy_core::AuditEvent> {
    state
        .store
        .list_audit(&AuditQuery {
            device: None,
            after: None,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "mgmt.refused")
        .collect()
}

#[tokio::test]
async fn no_client_certificate_is_401_and_audited() {
    let f = fixture().await;
    let (status, ct, body) = call(&f.state, post(package1(), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(ct, "application/problem+json");
    assert!(body.contains("client certificate"), "{body}");
    assert_eq!(refusals(&f.state).await.len(), 1);
    assert_eq!(
        f.state
            .store
            .device(f.device)
            .await
            .unwrap()
            .unwrap()
            .last_seen,
        None
    );
}

#[tokio::test]
async fn another_devices_certificate_is_403_and_audited() {
    let f = fixture().await;
    // A second enrolled PC presents its own certificate but claims the first PC's DevId.
    let ca = f.state.ca.clone();
    let (other, other_cert) = enroll(f.state.store.as_ref(), &ca, "OTHER-DEVICE").await;
    let (status, ct, body) = call(&f.state, post(package1(), Some(&other_cert))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(ct, "application/problem+json");
    assert!(body.contains(DEV_ID), "{body}");
    let audit = refusals(&f.state).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].targets, [other]);
    assert_eq!(
        f.state
            .store
            .device(f.device)
            .await
            .unwrap()
            .unwrap()
            .last_seen,
        None
    );
}

#[tokio::test]
async fn an_unenrolled_device_is_refused() {
    let f = fixture().await;
    let mut d = f.state.store.device(f.device).await.unwrap().unwrap();
    d.unenrolled_at = Some(NOW - Duration::hours(1));
    f.state.store.update_device(&d).await.unwrap();
    let (status, _, _) = call(&f.state, post(package1(), Some(&f.cert))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refusals(&f.state).await.len(), 1);
}

#[tokio::test]
async fn malformed_syncml_is_400_with_line_and_column_and_nothing_is_stored() {
    let f = fixture().await;
    let bad = "<SyncML xmlns=\"SYNCML:SYNCML1.2\">\n<SyncHdr><VerDTD>1.2</VerDTD>\n<Oops></SyncML>";
    let (status, ct, body) = call(&f.state, post(bad, Some(&f.cert))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(ct, "application/problem+json");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("line ") && detail.contains("column "),
        "{detail}"
    );
    let d = f.state.store.device(f.device).await.unwrap().unwrap();
    assert_eq!(d.last_seen, None);
    assert!(f.state.store.inventory(f.device).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_full_check_in_stores_inventory() {
    let f = fixture().await;
    let (status, ct, body) = call(&f.state, post(package1(), Some(&f.cert))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ct, "application/vnd.syncml.dm+xml");
    let reply = syncml::parse(body.as_bytes()).unwrap();
    assert_eq!(reply.hdr.target.as_ref().unwrap().as_str(), DEV_ID);
    assert_eq!(
        reply.hdr.source.as_ref().unwrap().as_str(),
        "https://mdm.test/ManagementServer/MDM.svc"
    );
    // The device answers our Gets.
    let mut answer = String::from(
        "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>",
    );
    let mut id = 2;
    for c in &reply.body.commands {
        if let syncml::Command::Get(g) = c {
            let uri = g.items[0].target.as_ref().unwrap().as_str();
            let value = match uri {
                "./DevDetail/SwV" => "10.0.22631.4037",
                "./DevDetail/Ext/Microsoft/SMBIOSSerialNumber" => "SN-42",
                _ => "x",
            };
            answer.push_str(&format!(
                "<Status><CmdID>{id}</CmdID><MsgRef>1</MsgRef><CmdRef>{}</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status>\
                 <Results><CmdID>{}</CmdID><MsgRef>1</MsgRef><CmdRef>{}</CmdRef><Item><Source><LocURI>{uri}</LocURI></Source><Data>{value}</Data></Item></Results>",
                g.cmd_id, id + 1, g.cmd_id
            ));
            id += 2;
        }
    }
    assert!(id > 10, "inventory Gets were sent");
    let msg2 = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>2</MsgID><Target><LocURI>https://mdm.test/ManagementServer/MDM.svc</LocURI></Target><Source><LocURI>{DEV_ID}</LocURI></Source></SyncHdr><SyncBody>{answer}<Final/></SyncBody></SyncML>"#
    );
    let (status, _, body) = call(&f.state, post(msg2, Some(&f.cert))).await;
    assert_eq!(status, StatusCode::OK);
    let end = syncml::parse(body.as_bytes()).unwrap();
    assert_eq!(
        end.body.commands.len(),
        1,
        "only the header Status: the session ends"
    );
    let d = f.state.store.device(f.device).await.unwrap().unwrap();
    assert_eq!(d.os_version.as_deref(), Some("10.0.22631.4037"));
    assert_eq!(d.serial.as_deref(), Some("SN-42"));
    assert_eq!(
        d.manufacturer.as_deref(),
        Some("x"),
        "DevDetail Get overrides DevInfo"
    );
    assert_eq!(d.last_seen, Some(NOW));
    let inv = f.state.store.inventory(f.device).await.unwrap();
    assert!(inv
        .iter()
        .any(|v| v.uri == "./DevInfo/Lang" && v.value == "en-US"));
    assert!(f.state.metrics.render().contains("outcome=\"ok\""));
}

#[tokio::test]
async fn a_proxy_header_is_accepted_only_from_a_trusted_peer() {
    let f = fixture().await;
    let proxy = ClientCertProxy {
        header: "x-client-cert".into(),
        trusted: vec!["10.0.0.5".parse().unwrap()],
    };
    let router = axum::Router::new()
        .merge(server::mgmt::routes_with_proxy(proxy))
        .with_state(f.state.clone());
    let pem = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&f.cert);
        format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n")
            .replace(' ', "%20")
            .replace('\n', "%0A")
    };
    for (peer, want) in [
        ("10.0.0.5:4000", StatusCode::OK),
        ("10.0.0.6:4000", StatusCode::UNAUTHORIZED),
    ] {
        let mut r = post(package1(), None);
        r.headers_mut()
            .insert("x-client-cert", pem.parse().unwrap());
        r.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        let response = router.clone().oneshot(r).await.unwrap();
        assert_eq!(response.status(), want, "{peer}");
    }
}

// ---------------------------------------------------------------------------------------------
// Over real HTTPS with mutual TLS (testkit::app::spawn_app), on both backends.

fn https_client(app: &testkit::app::TestApp, identity_pem: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(app.ca_pem.as_bytes()).unwrap());
    if let Some(pem) = identity_pem {
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn https_post(
    client: &reqwest::Client,
    app: &testkit::app::TestApp,
    body: String,
) -> (u16, String, String) {
    let r = client
        .post(app.url(&format!("{MANAGEMENT_PATH}?mode=Machine&Platform=WoA")))
        .header("content-type", "application/vnd.syncml.dm+xml")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

async fn audit_refusals(store: &dyn Store) -> usize {
    store
        .list_audit(&AuditQuery {
            device: None,
            after: None,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "mgmt.refused")
        .count()
}

async fn https_refusals(backend: testkit::app::Backend) {
    let app = testkit::app::spawn_app(backend).await;
    let ca = app.server().state.ca.clone();
    let store = app.store.clone();
    let (_, _, mine) = enroll_with_key(store.as_ref(), &ca, DEV_ID).await;
    let (_, _, other) = enroll_with_key(store.as_ref(), &ca, "OTHER-DEVICE").await;

    let (status, ct, _) = https_post(&https_client(&app, None), &app, package1()).await;
    assert_eq!((status, ct.as_str()), (401, "application/problem+json"));
    assert_eq!(audit_refusals(store.as_ref()).await, 1);

    // Another device's certificate with this device's DevId in the SyncHdr Source.
    let (status, _, body) = https_post(&https_client(&app, Some(&other)), &app, package1()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(audit_refusals(store.as_ref()).await, 2);

    let (status, ct, body) = https_post(
        &https_client(&app, Some(&mine)),
        &app,
        "<SyncML><SyncHdr>".into(),
    )
    .await;
    assert_eq!(
        (status, ct.as_str()),
        (400, "application/problem+json"),
        "{body}"
    );
    assert!(body.contains("line"), "{body}");
}

async fn https_full_check_in(backend: testkit::app::Backend) {
    let app = testkit::app::spawn_app(backend).await;
    let ca = app.server().state.ca.clone();
    let (device, _, identity) = enroll_with_key(app.store.as_ref(), &ca, DEV_ID).await;
    let client = https_client(&app, Some(&identity));
    let (status, ct, body) = https_post(&client, &app, package1()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ct, "application/vnd.syncml.dm+xml");
    let reply = syncml::parse(body.as_bytes()).unwrap();
    assert_eq!(
        reply.hdr.source.as_ref().unwrap().as_str(),
        format!("{}{MANAGEMENT_PATH}", app.server().public_url)
    );
    let gets: Vec<_> = reply
        .body
        .commands
        .iter()
        .filter_map(|c| match c {
            syncml::Command::Get(g)
                if g.items[0].target.as_ref().map(|t| t.as_str()) == Some("./DevDetail/SwV") =>
            {
                Some(g.cmd_id.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(gets.len(), 1, "SwV is read once");
    let swv = &gets[0];
    let answer = format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>2</MsgID><Target><LocURI>x</LocURI></Target><Source><LocURI>{DEV_ID}</LocURI></Source></SyncHdr><SyncBody><Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status><Status><CmdID>2</CmdID><MsgRef>1</MsgRef><CmdRef>{swv}</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status><Results><CmdID>3</CmdID><MsgRef>1</MsgRef><CmdRef>{swv}</CmdRef><Item><Source><LocURI>./DevDetail/SwV</LocURI></Source><Data>10.0.26100.1</Data></Item></Results><Final/></SyncBody></SyncML>"#
    );
    let (status, _, body) = https_post(&client, &app, answer).await;
    assert_eq!(status, 200, "{body}");
    let d = app.store.device(device).await.unwrap().unwrap();
    assert_eq!(d.os_version.as_deref(), Some("10.0.26100.1"));
    assert_eq!(d.manufacturer.as_deref(), Some("VMware, Inc."));
    assert!(d.last_seen.is_some());
    let swv = app
        .store
        .inventory_value(device, "./DevDetail/SwV")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(swv.value, "10.0.26100.1");
}

/// Issue #13, replay: a message that does not follow the last one of its session (a replay, a
/// skipped or an old session's message) is answered with SyncHdr Status 400 and nothing of it
/// counts; two copies of one message sent at once are taken once.
async fn https_replayed_and_out_of_order_messages_are_refused(backend: testkit::app::Backend) {
    let app = testkit::app::spawn_app(backend).await;
    let ca = app.server().state.ca.clone();
    let (device, _, identity) = enroll_with_key(app.store.as_ref(), &ca, DEV_ID).await;
    let client = https_client(&app, Some(&identity));
    let message = |session: &str, msg_id: u32, body: &str| {
        format!(
            r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{session}</SessionID><MsgID>{msg_id}</MsgID><Target><LocURI>x</LocURI></Target><Source><LocURI>{DEV_ID}</LocURI></Source></SyncHdr><SyncBody>{body}<Final/></SyncBody></SyncML>"#
        )
    };
    let header_status = |body: &str| {
        syncml::parse(body.as_bytes())
            .unwrap()
            .body
            .commands
            .iter()
            .find_map(|c| match c {
                syncml::Command::Status(s) if s.cmd == "SyncHdr" => {
                    Some(s.code.as_u16().to_string())
                }
                _ => None,
            })
            .unwrap()
    };
    let out_of_order = || async {
        app.store
            .list_audit(&AuditQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .iter()
            .filter(|e| e.action == "mgmt.out_of_order" && e.targets == [device])
            .count()
    };
    let (status, _, first) = https_post(&client, &app, package1()).await;
    assert_eq!(status, 200, "{first}");
    let session = syncml::parse(package1().as_bytes()).unwrap().hdr.session_id;
    let swv = syncml::parse(first.as_bytes())
        .unwrap()
        .body
        .commands
        .iter()
        .find_map(|c| match c {
            syncml::Command::Get(g)
                if g.items[0].target.as_ref().map(|t| t.as_str()) == Some("./DevDetail/SwV") =>
            {
                Some(g.cmd_id.clone())
            }
            _ => None,
        })
        .unwrap();
    let answer = message(
        &session,
        2,
        &format!(
            "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>\
             <Results><CmdID>2</CmdID><MsgRef>1</MsgRef><CmdRef>{swv}</CmdRef><Item><Source><LocURI>./DevDetail/SwV</LocURI></Source><Data>10.0.26100.1</Data></Item></Results>"
        ),
    );
    let (status, _, body) = https_post(&client, &app, answer.clone()).await;
    assert_eq!(
        (status, header_status(&body).as_str()),
        (200, "200"),
        "{body}"
    );
    let seen = app.store.device(device).await.unwrap().unwrap();

    // The same message again, one skipping ahead, and one of a session that is not running.
    let replayed = answer.replace("10.0.26100.1", "10.0.99999.1");
    for (what, body) in [
        ("a replay", replayed),
        ("a skipped message", message(&session, 4, "")),
        ("another session", message("FF", 3, "")),
    ] {
        let (status, ct, reply) = https_post(&client, &app, body).await;
        assert_eq!(
            (status, ct.as_str(), header_status(&reply).as_str()),
            (200, "application/vnd.syncml.dm+xml", "400"),
            "{what}: {reply}"
        );
        let reply = syncml::parse(reply.as_bytes()).unwrap();
        assert_eq!(
            reply.body.commands.len(),
            1,
            "{what}: nothing but the refusal"
        );
    }
    assert_eq!(out_of_order().await, 3);
    let after = app.store.device(device).await.unwrap().unwrap();
    assert_eq!(
        after.os_version.as_deref(),
        Some("10.0.26100.1"),
        "nothing counted"
    );
    assert_eq!(after.last_seen, seen.last_seen);

    // A new session goes on as usual; two copies of its next message sent at once count once.
    let (status, _, _) = https_post(
        &client,
        &app,
        package1().replace(
            &format!("<SessionID>{session}</SessionID>"),
            "<SessionID>A1</SessionID>",
        ),
    )
    .await;
    assert_eq!(status, 200);
    let second = message("A1", 2, "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>");
    let (a, b) = tokio::join!(
        https_post(&client, &app, second.clone()),
        https_post(&client, &app, second.clone())
    );
    let mut statuses = [header_status(&a.2), header_status(&b.2)];
    statuses.sort();
    assert_eq!(statuses, ["200", "400"], "one taken, one refused");
    assert_eq!(out_of_order().await, 4);
}

testkit::on_both_backends!(
    https_refusals,
    https_full_check_in,
    https_replayed_and_out_of_order_messages_are_refused
);

/// The device's trail once everything received so far is stored.
async fn trail_of(state: &AppState, device: DeviceId) -> Vec<TrailMessage> {
    state.trail.flush().await;
    state.store.trail(device, 10).await.unwrap()
}

/// The support trail: each exchange is kept (what the PC sent, then our answer), secrets are
/// redacted before they are stored, a message we could not read is kept too, and a device's
/// trail never grows past `support_trail_messages`.
#[tokio::test]
async fn the_support_trail_keeps_each_exchange_redacted_and_bounded() {
    let f = fixture().await;
    let mut settings = (*f.state.settings).clone();
    settings.support_trail_messages = 3;
    let state = AppState {
        settings: Arc::new(settings),
        ..f.state.clone()
    };
    let jwt = "eyJhbGciOiJub25lIn0.eyJ1cG4iOiJhZGFAZXhhbXBsZS5vcmcifQ.c2ln";
    let with_token = package1().replace(
        "</SyncBody>",
        &format!(
            "<Alert><CmdID>99</CmdID><Data>1224</Data><Item><Meta><Type \
             xmlns=\"syncml:metinf\">com.microsoft/MDM/AADUserToken</Type></Meta>\
             <Data>{jwt}</Data></Item></Alert></SyncBody>"
        ),
    );
    let (status, _, answer) = call(&state, post(with_token.clone(), Some(&f.cert))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let kept = trail_of(&state, f.device).await;
    assert_eq!(kept.len(), 2, "the message and our answer");
    assert_eq!(kept[0].direction, Direction::ToDevice, "newest first");
    assert_eq!(kept[0].body, answer, "our answer as sent");
    assert_eq!(kept[1].direction, Direction::FromDevice);
    assert_eq!(kept[1].size, with_token.len());
    assert!(!kept[1].body.contains(jwt), "the user token is not kept");
    assert!(kept[1].body.contains("AADUserToken") && kept[1].body.contains("[redacted]"));
    assert_eq!(
        kept[1].session_id,
        syncml::parse(with_token.as_bytes()).unwrap().hdr.session_id
    );

    let bad = "<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr><Oops></SyncML>";
    let (status, _, _) = call(&state, post(bad, Some(&f.cert))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let kept = trail_of(&state, f.device).await;
    assert_eq!(kept.len(), 3, "bounded at 3");
    assert_eq!(
        kept[0].body, bad,
        "what the PC sent, though it could not be read"
    );
    assert_eq!(kept[0].direction, Direction::FromDevice);
    assert_eq!(
        kept[2].direction,
        Direction::FromDevice,
        "the oldest went first"
    );

    // Keeping nothing is a setting, not an error.
    let mut off = (*state.settings).clone();
    off.support_trail_messages = 0;
    let state = AppState {
        settings: Arc::new(off),
        ..state
    };
    call(&state, post(bad, Some(&f.cert))).await;
    assert_eq!(trail_of(&state, f.device).await[0].body, bad);
    assert_eq!(trail_of(&state, f.device).await.len(), 3);
}

/// Check-ins hand their messages to the trail buffer from many tasks at once: after a flush
/// every message is stored, none twice, and a message for a device that does not exist does
/// not cost the others theirs.
#[tokio::test]
async fn the_trail_buffer_keeps_every_message_handed_over_concurrently() {
    let f = fixture().await;
    let ghost = DeviceId::generate();
    let tasks: Vec<_> = (0..20)
        .map(|task| {
            let trail = f.state.trail.clone();
            let device = f.device;
            tokio::spawn(async move {
                for i in 0..10 {
                    let msg_id = format!("{task}-{i}");
                    let mut messages = vec![TrailMessage::new(
                        device,
                        NOW,
                        Direction::FromDevice,
                        "1",
                        &msg_id,
                        b"<SyncML/>",
                    )];
                    if i == 5 {
                        messages.push(TrailMessage::new(
                            ghost,
                            NOW,
                            Direction::FromDevice,
                            "1",
                            &msg_id,
                            b"<SyncML/>",
                        ));
                    }
                    trail.push(messages, 500);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    f.state.trail.flush().await;
    let mut ids: Vec<_> = f
        .state
        .store
        .trail(f.device, 500)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.msg_id)
        .collect();
    assert_eq!(ids.len(), 200, "every message, once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "none twice");
    assert!(f.state.store.trail(ghost, 10).await.unwrap().is_empty());
}
