//! The data folder: created on first start with the right files and modes, reused after.

use std::os::unix::fs::PermissionsExt;

use redeploy_core::SecretHash;
use testkit::app::{spawn_app, Backend};

use testkit::on_both_backends;

on_both_backends!(data_dir_is_created_then_reused);

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn data_dir_is_created_then_reused(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let dir = app.data_dir.clone();
    assert_eq!(mode(&dir), 0o700);
    for private in [
        "ca-key.pem",
        "server-key.pem",
        "admin-token",
        "enrollment-token",
    ] {
        assert_eq!(mode(&dir.join(private)), 0o600, "{private}");
    }
    assert!(dir.join("ca.pem").is_file());
    assert!(dir.join("server.pem").is_file());
    assert_eq!(
        dir.join("redeploy.db").is_file(),
        backend == Backend::Sqlite,
        "SQLite lives in the data folder"
    );
    // The store keeps only the hash of the admin token, with the admin role.
    let admin = app
        .store
        .api_token_by_hash(&SecretHash::of_secret(&app.admin_token))
        .await
        .unwrap()
        .expect("admin token stored");
    assert_eq!(admin.role, redeploy_core::Role::Admin);
    assert_eq!(app.store.list_api_tokens().await.unwrap().len(), 1);

    let ca_before = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let server_before = std::fs::read_to_string(dir.join("server.pem")).unwrap();
    let admin_before = std::fs::read_to_string(dir.join("admin-token")).unwrap();
    app.restart().await;
    assert_eq!(
        std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        ca_before,
        "same CA"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("server.pem")).unwrap(),
        server_before
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("admin-token")).unwrap(),
        admin_before
    );
    assert_eq!(
        app.store.list_api_tokens().await.unwrap().len(),
        1,
        "no second admin token"
    );
    let firsts = app
        .store
        .list_enrollment_tokens()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.label == "first enrollment token")
        .count();
    assert_eq!(firsts, 1, "no second first enrollment token");
    // The restarted server answers over TLS with the same CA.
    let health = app.client().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // And devices still enroll.
    crate::common::provisioning(&crate::common::enroll(&app, &"0".repeat(64), "Full").await);
}

/// Two `serve` processes on one PostgreSQL database, each with a copy of the data folder's CA:
/// a device enrolled through one is known to the other, and no second set of tokens is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_postgres_database() {
    let first = spawn_app(Backend::Postgres).await;
    let second_dir = tempfile::tempdir().unwrap();
    let second_data = second_dir.path().join("data");
    std::fs::create_dir(&second_data).unwrap();
    for file in ["ca.pem", "ca-key.pem"] {
        std::fs::copy(first.data_dir.join(file), second_data.join(file)).unwrap();
    }
    let second = server::start(server::Settings {
        data_dir: second_data.clone(),
        ..first.settings.clone()
    })
    .await
    .unwrap();
    assert!(!second.first_tokens.admin_created && !second.first_tokens.enrollment_created);
    assert!(!second_data.join("admin-token").exists());

    // Enroll through the second process with the token the first one created.
    let ca = reqwest::Certificate::from_pem(first.ca_pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let body = crate::common::rst_xml(
        &first,
        crate::common::password(&first.enrollment_token),
        crate::common::new_csr(),
        crate::common::context(&"5".repeat(64), "Device"),
    );
    let response = client
        .post(format!(
            "https://127.0.0.1:{}/EnrollmentServer/Enrollment.svc",
            second.local_addr.port()
        ))
        .header("content-type", crate::common::SOAP_XML)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let enroll::EnrollResponse::Rstr { response, .. } =
        enroll::parse_response(text.as_bytes()).unwrap()
    else {
        panic!("{text}")
    };
    let doc = response.provisioning.enrollment().unwrap();
    crate::common::assert_chains_to(&doc.client_certificate_der, &first.ca_pem);
    let id = enroll::ca::device_id_from_certificate(&doc.client_certificate_der).unwrap();
    let id = redeploy_core::DeviceId::parse(&id).unwrap();
    assert!(
        first.store.device(id).await.unwrap().is_some(),
        "the first process sees the device"
    );
    second.shutdown().await;
}
