//! MDM certificate renewal end to end: emulated PCs renew over real HTTPS with mutual TLS
//! against the real server on a manual clock (certificates live three days here, renewal starts
//! one day before expiry), so a PC lives through several certificate lifetimes in a second; a
//! lost renewal answer does not lock a PC out; and every renewal that must be refused is a SOAP
//! fault.

use std::sync::Arc;

use device::client;
use device::state::DeviceState;
use device::{schedule, DeviceError, DeviceProfile, HttpsTransport, Identity, Transport};
use enroll::ca::CertificateAuthority;
use enroll::{EnrollResponse, EnrollmentErrorType, FaultCode};
use redeploy_core::store::{AuditOrder, AuditQuery};
use redeploy_core::{Clock, Device, DeviceId, ManualClock};
use testkit::app::{spawn_app_with_clock, Backend, TestApp};
use testkit::on_both_backends;
use time::Duration;

on_both_backends!(
    a_pc_lives_through_several_certificate_lifetimes,
    a_lost_renewal_answer_does_not_lock_the_pc_out,
    renewals_that_must_be_refused_are_soap_faults,
    an_expired_certificate_is_refused_however_often_it_was_accepted,
    another_pcs_accepted_certificate_without_its_key_is_refused,
);

const LIFETIME: Duration = Duration::days(3);

/// The server on a manual clock at the present second, with three-day certificates renewed
/// from one day before expiry.
async fn app(backend: Backend) -> (TestApp, Arc<ManualClock>) {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let clock = Arc::new(ManualClock::new(now));
    let app = spawn_app_with_clock(backend, clock.clone(), |s| {
        s.enroll_rate.per_second = 0.0;
        s.device_cert_validity = std::time::Duration::from_secs(LIFETIME.whole_seconds() as u64);
        s.device_cert_renew_period_days = 1;
    })
    .await;
    (app, clock)
}

/// A PC enrolled and synced once, and the server's record of it.
async fn enrolled_pc(
    app: &TestApp,
    transport: &HttpsTransport,
    name: &str,
    seed: u64,
    clock: &ManualClock,
) -> (DeviceState, Device) {
    let now = clock.now();
    let mut pc = DeviceProfile::default().build_seeded(name, seed, now);
    testkit::pc::enroll_and_sync(app, transport, &mut pc, now).await;
    let device = app
        .store
        .device_by_mdm_device_id(&pc.dev_id)
        .await
        .unwrap()
        .expect("the server knows the PC");
    (pc, device)
}

fn thumbprint(pc: &DeviceState) -> String {
    pc.mdm_enrollment.as_ref().unwrap().thumbprint.clone()
}

async fn renew_audits(app: &TestApp, device: DeviceId) -> Vec<String> {
    let query = AuditQuery {
        device: Some(device),
        limit: 1000,
        order: AuditOrder::OldestFirst,
        ..AuditQuery::default()
    };
    app.store
        .list_audit(&query)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "device.renew")
        .map(|e| format!("{:?}: {}", e.outcome, e.details))
        .collect()
}

async fn a_pc_lives_through_several_certificate_lifetimes(backend: Backend) {
    let (app, clock) = app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (mut pc, device) = enrolled_pc(&app, &transport, "RENEW-0001", 71, &clock).await;
    let renewal = pc.mdm_enrollment.as_ref().unwrap().renewal.clone();
    let renewal = renewal.expect("the enrollment provisions renewal");
    assert!(renewal.robo_support);
    assert_eq!(renewal.renew_period_days, 1);

    // Twelve days in six-hour steps: four certificate lifetimes, a check-in at every step.
    let mut thumbprints = vec![thumbprint(&pc)];
    for step in 0..48 {
        clock.advance(Duration::hours(6));
        let now = clock.now();
        pc.dm_client.sync_now = true;
        let tick = schedule::tick(&transport, &mut pc, now).await;
        if let Some(renewed) = tick.renewal {
            let renewed = renewed.unwrap_or_else(|e| panic!("step {step}: renewal: {e}"));
            assert_eq!(renewed.old_thumbprint, *thumbprints.last().unwrap());
            assert!(renewed.not_after > now + Duration::days(2));
            thumbprints.push(renewed.new_thumbprint);
        }
        let session = tick.session.expect("a check-in at every step");
        session.unwrap_or_else(|e| panic!("step {step}: check-in refused: {e}"));
    }
    let renewals = thumbprints.len() - 1;
    assert!(renewals >= 5, "renewed {renewals} times in 12 days");

    // The same device record throughout, with the newest certificate and the whole history.
    let now_device = app.store.device(device.id).await.unwrap().unwrap();
    assert_eq!(
        now_device.cert_thumbprint.as_deref(),
        Some(thumbprint(&pc).to_ascii_lowercase().as_str())
    );
    assert!(now_device.cert_not_after.unwrap() > clock.now());
    assert_eq!(now_device.enrolled_at, device.enrolled_at);
    let by_dev_id = app.store.device_by_mdm_device_id(&pc.dev_id).await.unwrap();
    assert_eq!(by_dev_id.map(|d| d.id), Some(device.id));
    let enrollments = app.store.enrollments_of_device(device.id).await.unwrap();
    assert_eq!(enrollments.len(), 1 + renewals);
    assert!(enrollments[1..].iter().all(|e| e.auth_method == "Renewal"));
    let history = app.store.renewals_of_device(device.id).await.unwrap();
    assert_eq!(history.len(), renewals);
    assert!(
        history.iter().all(|r| r.new_seen_at.is_some()),
        "every new certificate was used"
    );
    assert_eq!(renew_audits(&app, device.id).await.len(), renewals);
    assert_eq!(
        pc.mdm_enrollment
            .as_ref()
            .unwrap()
            .renewal
            .as_ref()
            .unwrap()
            .renewals as usize,
        renewals
    );

    // The REST API shows the expiry per device and counts the fleet's: the PC's certificate
    // expires within two days (renewal starts one day before), so within 30 days.
    let api = api::Client::new(&app.base_url, &app.admin_token, Some(&app.ca_pem)).unwrap();
    let shown = api.device(&device.id.to_string()).await.unwrap().device;
    let expires = time::OffsetDateTime::parse(
        shown.certificate_expires_at.as_deref().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(Some(expires), now_device.cert_not_after);
    let fleet = api.readiness().await.unwrap();
    assert_eq!(
        (fleet.certificates_expired, fleet.certificates_expiring_30d),
        (0, 1)
    );
    clock.advance(LIFETIME);
    let fleet = api.readiness().await.unwrap();
    assert_eq!(
        (fleet.certificates_expired, fleet.certificates_expiring_30d),
        (1, 0)
    );
}

/// The server keeps the client certificate chains it verified (`server::tls::chain_cache`), so
/// that a check-in does not verify our CA's signature again; a kept certificate must still be
/// judged on its dates at every handshake.
async fn an_expired_certificate_is_refused_however_often_it_was_accepted(backend: Backend) {
    let (app, clock) = app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (mut pc, device) = enrolled_pc(&app, &transport, "EXPIRE-0001", 72, &clock).await;
    // Check-ins across the certificate's life, without renewing it.
    check_in_every(&transport, &mut pc, &clock, Duration::hours(12), 5).await;
    let last_seen = || last_seen(&app, device.id);
    let seen = last_seen().await;
    clock.advance(LIFETIME - Duration::hours(60) + Duration::seconds(1));
    let refused = client::check_in(&transport, &mut pc, clock.now()).await;
    // Refused by the TLS handshake itself (the check-in's own certificate judgement would
    // answer 403 after it).
    assert!(
        matches!(refused, Err(DeviceError::Connect(_))),
        "a certificate past its notAfter must fail the handshake: {refused:?}"
    );
    let after = last_seen().await;
    assert_eq!(after, seen, "the refused PC was not seen");
    // And it stays refused: the refusal does not come from a cold cache.
    let again = client::check_in(&transport, &mut pc, clock.now()).await;
    assert!(matches!(again, Err(DeviceError::Connect(_))), "{again:?}");
}

/// The server keeps the client certificate chains it accepted (`tls/chain_cache.rs`), so a
/// second client presenting those exact bytes hits the cache. It must still prove it holds the
/// PC's key: a client with PC A's certificate and PC B's key (sent as is, where the emulator
/// would refuse the mismatched pair) gets no HTTP answer, however often A itself was accepted;
/// the same client with A's own key gets one; and A is not seen through the impostor.
async fn another_pcs_accepted_certificate_without_its_key_is_refused(backend: Backend) {
    let (app, clock) = app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (mut a, device_a) = enrolled_pc(&app, &transport, "OWNER-0001", 73, &clock).await;
    let (b, _) = enrolled_pc(&app, &transport, "OTHER-0002", 74, &clock).await;
    check_in_every(&transport, &mut a, &clock, Duration::minutes(5), 3).await;
    let last_seen = || last_seen(&app, device_a.id);
    let seen = last_seen().await;
    let enrollment = |pc: &DeviceState| pc.mdm_enrollment.clone().unwrap();
    let (a_tls, b_tls) = (enrollment(&a), enrollment(&b));

    let owner = raw_mutual_tls_get(&app, &a_tls.client_cert_pem, &a_tls.client_key_pem).await;
    assert!(
        owner.starts_with("HTTP/1.1 "),
        "the raw client with the PC's own key is answered: {owner:?}"
    );
    let impostor = raw_mutual_tls_get(&app, &a_tls.client_cert_pem, &b_tls.client_key_pem).await;
    assert!(
        !impostor.contains("HTTP/1.1"),
        "a certificate without its key must fail the handshake: {impostor:?}"
    );
    let after = last_seen().await;
    assert_eq!(after, seen, "the impostor was not seen as the PC");
    client::check_in(&transport, &mut a, clock.now())
        .await
        .expect("the owner still checks in");
}

/// `times` check-ins of `pc`, `every` apart on the manual clock, each accepted.
async fn check_in_every(
    transport: &HttpsTransport,
    pc: &mut DeviceState,
    clock: &ManualClock,
    every: Duration,
    times: usize,
) {
    for _ in 0..times {
        clock.advance(every);
        client::check_in(transport, pc, clock.now())
            .await
            .expect("a valid certificate is accepted");
    }
}

/// When the server last saw device `id`.
async fn last_seen(app: &TestApp, id: DeviceId) -> Option<time::OffsetDateTime> {
    let device = app.store.device(id).await.unwrap();
    device.expect("the PC's record").last_seen
}

/// One GET over mutual TLS to `app` presenting `cert_pem` and signing with `key_pem`, whether
/// or not they belong together; what came back (or the error), as text.
async fn raw_mutual_tls_get(app: &TestApp, cert_pem: &str, key_pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use std::io::{Read, Write};

    #[derive(Debug)]
    struct Presented(Arc<rustls::sign::CertifiedKey>);
    impl rustls::client::ResolvesClientCert for Presented {
        fn resolve(
            &self,
            _: &[&[u8]],
            _: &[rustls::SignatureScheme],
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
        fn has_certs(&self) -> bool {
            true
        }
    }

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap())
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(app.ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Presented(Arc::new(
            rustls::sign::CertifiedKey::new(certs, key),
        ))));
    let addr = app.addr;
    tokio::task::spawn_blocking(move || {
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
        let request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        let mut answer = Vec::new();
        let outcome = stream
            .write_all(request.as_bytes())
            .and_then(|()| stream.read_to_end(&mut answer));
        match outcome {
            Ok(_) => String::from_utf8_lossy(&answer).into_owned(),
            Err(e) => format!("{} (error: {e})", String::from_utf8_lossy(&answer)),
        }
    })
    .await
    .unwrap()
}

async fn a_lost_renewal_answer_does_not_lock_the_pc_out(backend: Backend) {
    let (app, clock) = app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (original, device) = enrolled_pc(&app, &transport, "RENEW-0002", 72, &clock).await;
    clock.advance(Duration::days(2) + Duration::hours(1));
    let now = clock.now();
    assert!(client::renewal_due(&original, now));

    // The server renews; the answer never reaches the PC, which keeps its old certificate.
    let mut answered = original.clone();
    let first = client::renew_certificate(&transport, &mut answered, now)
        .await
        .expect("first renewal");
    let mut pc = original.clone();
    client::check_in(&transport, &mut pc, now)
        .await
        .expect("the old certificate still checks in while the new one is unused");

    // It renews again with the old certificate and uses the result.
    clock.advance(Duration::hours(1));
    let now = clock.now();
    let second = client::renew_certificate(&transport, &mut pc, now)
        .await
        .expect("renewal with the old certificate, whose first renewal went unseen");
    assert_ne!(second.new_thumbprint, first.new_thumbprint);
    client::check_in(&transport, &mut pc, now)
        .await
        .expect("the newest certificate checks in");

    // From now on neither the old certificate nor the orphaned first renewal's is accepted.
    for (what, mut stale) in [("old", original), ("orphaned", answered)] {
        let refused = client::check_in(&transport, &mut stale, now).await;
        assert!(
            matches!(refused, Err(DeviceError::Unauthorized { code: 403, .. })),
            "{what} certificate: {refused:?}"
        );
    }
    let stored = app.store.device(device.id).await.unwrap().unwrap();
    assert_eq!(
        stored.cert_thumbprint.as_deref(),
        Some(second.new_thumbprint.to_ascii_lowercase().as_str())
    );
    assert_eq!(renew_audits(&app, device.id).await.len(), 2);
}

/// A renewal request the test writes itself: the PKCS#7 signed with `signer` around a new CSR,
/// over TLS as `tls` (or none), with `pc`'s AdditionalContext.
fn renewal_body(pc: &DeviceState, pkcs7: Vec<u8>, url: &str) -> String {
    enroll::write_rst_request(&enroll::RstRequest {
        message_id: "urn:uuid:00000000-0000-0000-0000-000000000013".into(),
        to: Some(url.to_owned()),
        request_type: enroll::ns::REQUEST_TYPE_RENEW.into(),
        csr_value_type: enroll::ns::VALUE_TYPE_PKCS7.into(),
        csr_der: pkcs7,
        context: enroll::AdditionalContext::new(client::additional_context(pc)),
        ..enroll::RstRequest::default()
    })
}

fn identity(pc: &DeviceState) -> Identity {
    let e = pc.mdm_enrollment.as_ref().unwrap();
    Identity {
        cert_pem: e.client_cert_pem.clone(),
        key_pem: e.client_key_pem.clone(),
    }
}

fn cert_and_key(pc: &DeviceState) -> (Vec<u8>, String) {
    let e = pc.mdm_enrollment.as_ref().unwrap();
    (
        enroll::decode_base64(&e.client_cert_pem).unwrap(),
        e.client_key_pem.clone(),
    )
}

fn signed_by(pc: &DeviceState) -> Vec<u8> {
    let (cert, key) = cert_and_key(pc);
    let (_, csr) = enroll::ca::new_device_key_and_csr("renewal").unwrap();
    enroll::pkcs7::sign_renewal(&csr, &cert, &key).unwrap()
}

/// Posts a renewal and returns the fault it must be answered with.
async fn refused(
    app: &TestApp,
    transport: &HttpsTransport,
    body: String,
    tls: Option<&Identity>,
) -> enroll::Fault {
    let url = app.url("/EnrollmentServer/Enrollment.svc");
    let answer = transport
        .post(&url, client::SOAP_CONTENT_TYPE, body.into_bytes(), tls)
        .await
        .expect("an answer");
    let text = String::from_utf8_lossy(&answer.body).to_string();
    assert_eq!(answer.status, 500, "SOAP faults travel with 500: {text}");
    match enroll::parse_response(&answer.body) {
        Ok(EnrollResponse::Fault { fault, .. }) => fault,
        other => panic!("not a SOAP fault: {other:?}: {text}"),
    }
}

fn assert_fault(fault: &enroll::Fault, code: FaultCode, reason: &str, case: &str) {
    assert_eq!(fault.code, code, "{case}: {}", fault.reason);
    assert!(fault.reason.contains(reason), "{case}: {}", fault.reason);
}

fn not_eligible(fault: &enroll::Fault) -> bool {
    fault.code == FaultCode::Authorization
        && fault
            .detail
            .as_ref()
            .is_some_and(|d| d.error_type == EnrollmentErrorType::NotEligibleToRenew)
}

async fn renewals_that_must_be_refused_are_soap_faults(backend: Backend) {
    let (app, clock) = app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (pc1, d1) = enrolled_pc(&app, &transport, "RENEW-0003", 73, &clock).await;
    let (pc2, d2) = enrolled_pc(&app, &transport, "RENEW-0004", 74, &clock).await;
    clock.advance(Duration::days(2) + Duration::hours(1));
    let url = app.url("/EnrollmentServer/Enrollment.svc");

    // Another device's certificate: signed by PC 2 over PC 1's TLS connection, or signed and
    // presented by PC 2 while the request names PC 1's hardware.
    let fault = refused(
        &app,
        &transport,
        renewal_body(&pc1, signed_by(&pc2), &url),
        Some(&identity(&pc1)),
    )
    .await;
    assert_fault(
        &fault,
        FaultCode::Authentication,
        "TLS client certificate",
        "signed by another PC",
    );
    let fault = refused(
        &app,
        &transport,
        renewal_body(&pc1, signed_by(&pc2), &url),
        Some(&identity(&pc2)),
    )
    .await;
    assert_fault(
        &fault,
        FaultCode::Authorization,
        "HWDevID",
        "another PC's context",
    );

    // A certificate from a foreign CA that names PC 1.
    let foreign = CertificateAuthority::generate("Foreign CA", clock.now()).unwrap();
    let (key, csr) = enroll::ca::new_device_key_and_csr("pc").unwrap();
    let forged = foreign
        .issue_device_certificate(
            &enroll::ca::verify_csr(&csr).unwrap(),
            &d1.id.to_string(),
            clock.now(),
            30,
        )
        .unwrap();
    let pkcs7 = enroll::pkcs7::sign_renewal(&csr, &forged.der, &key).unwrap();
    let fault = refused(&app, &transport, renewal_body(&pc1, pkcs7, &url), None).await;
    assert_fault(
        &fault,
        FaultCode::Authentication,
        "not issued by this server",
        "foreign CA",
    );

    // Unsigned (a bare PKCS#10 where the PKCS#7 belongs) and badly signed.
    let (_, bare) = enroll::ca::new_device_key_and_csr("pc").unwrap();
    let fault = refused(&app, &transport, renewal_body(&pc1, bare, &url), None).await;
    assert_fault(&fault, FaultCode::Authentication, "PKCS#7", "unsigned");
    let mut tampered = signed_by(&pc1);
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let fault = refused(
        &app,
        &transport,
        renewal_body(&pc1, tampered, &url),
        Some(&identity(&pc1)),
    )
    .await;
    assert_fault(
        &fault,
        FaultCode::Authentication,
        "does not verify",
        "badly signed",
    );

    // An unenrolled device.
    let mut gone = app.store.device(d1.id).await.unwrap().unwrap();
    gone.unenrolled_at = Some(clock.now());
    app.store.update_device(&gone).await.unwrap();
    let fault = refused(
        &app,
        &transport,
        renewal_body(&pc1, signed_by(&pc1), &url),
        Some(&identity(&pc1)),
    )
    .await;
    assert!(not_eligible(&fault), "unenrolled: {fault:?}");

    // An expired certificate (the PC itself no longer tries; TLS would refuse it, so the
    // PKCS#7 comes alone).
    clock.advance(Duration::days(1));
    assert!(!client::renewal_due(&pc2, clock.now()));
    let fault = refused(
        &app,
        &transport,
        renewal_body(&pc2, signed_by(&pc2), &url),
        None,
    )
    .await;
    assert!(not_eligible(&fault), "expired: {fault:?}");
    assert!(fault.reason.contains("expired"), "{}", fault.reason);

    // Nothing was renewed; every refusal was audited.
    for (pc, d) in [(&pc1, d1.id), (&pc2, d2.id)] {
        let stored = app.store.device(d).await.unwrap().unwrap();
        assert_eq!(
            stored.cert_thumbprint.as_deref(),
            Some(thumbprint(pc).to_ascii_lowercase().as_str())
        );
        assert!(app.store.renewals_of_device(d).await.unwrap().is_empty());
    }
    let refusals = app
        .store
        .list_audit(&AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "device.renew")
        .count();
    assert_eq!(refusals, 7);
}
