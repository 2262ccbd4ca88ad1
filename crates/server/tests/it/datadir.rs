//! The data folder: created on first start with the right files and modes, reused after.

use std::os::unix::fs::PermissionsExt;

use redeploy_core::SecretHash;
use testkit::app::{spawn_app, Backend};

use crate::on_both_backends;

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
    assert_eq!(app.store.list_enrollment_tokens().await.unwrap().len(), 1);
    // The restarted server answers over TLS with the same CA.
    let health = app.client().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // And devices still enroll.
    crate::common::provisioning(&crate::common::enroll(&app, &"0".repeat(64), "Full").await);
}
