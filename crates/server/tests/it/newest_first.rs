//! Audit paging in both directions over REST and in the console order, and a REST bulk
//! request's own daily cap surviving into the waves the worker releases.

use redeploy_core::audit::{AuditOutcome, NewAuditEvent};
use redeploy_core::{Device, DeviceId, Enrollment, EnrollmentId, EnrollmentType, JoinType};
use serde_json::{json, Value};
use testkit::app::{spawn_app, Backend, TestApp};
use time::{Duration, OffsetDateTime};

use testkit::on_both_backends;

on_both_backends!(
    rest_audit_pages_newest_first_on_request_and_oldest_first_by_default,
    a_rest_bulk_requests_daily_cap_governs_its_later_waves,
    actions_and_batches_page_with_cursors_over_rest,
);

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app
        .client()
        .get(app.url(path))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

async fn rest_audit_pages_newest_first_on_request_and_oldest_first_by_default(backend: Backend) {
    let app = spawn_app(backend).await;
    for i in 0..5 {
        app.store
            .append_audit(NewAuditEvent {
                at: OffsetDateTime::now_utc(),
                actor: "test".into(),
                action: format!("test.{i}"),
                targets: vec![],
                batch: None,
                outcome: AuditOutcome::Success,
                details: String::new(),
            })
            .await
            .unwrap();
    }
    let (status, all) = get(&app, "/api/v1/audit?limit=1000").await;
    assert_eq!(status, 200);
    let oldest_first = ids(&all);
    assert!(
        oldest_first.windows(2).all(|w| w[0] < w[1]),
        "default stays ascending"
    );

    // Newest first, two at a time, following `next`.
    let mut walked = Vec::new();
    let mut path = "/api/v1/audit?order=desc&limit=2".to_owned();
    loop {
        let (status, page) = get(&app, &path).await;
        assert_eq!(status, 200);
        walked.extend(ids(&page));
        match page["next"].as_i64() {
            Some(n) => path = format!("/api/v1/audit?order=desc&limit=2&after={n}"),
            None => break,
        }
    }
    let mut newest_first = oldest_first.clone();
    newest_first.reverse();
    assert_eq!(walked, newest_first);
    let (_, top) = get(&app, "/api/v1/audit?order=desc&limit=1").await;
    assert_eq!(top["items"][0]["action"], "test.4");

    let (status, problem) = get(&app, "/api/v1/audit?order=sideways").await;
    assert_eq!(status, 400);
    assert!(problem["detail"].as_str().unwrap().contains("asc or desc"));
}

/// A device that can be wiped (no check-in needed for a wipe's preflight).
async fn device(app: &TestApp, i: usize) -> DeviceId {
    let now = OffsetDateTime::now_utc();
    let mut d = Device::new(DeviceId::generate(), format!("CAP-{i}"), now);
    d.hw_dev_id = Some(format!("HW-CAP-{i}"));
    d.enrollment_type = Some(EnrollmentType::Device);
    d.join_type = JoinType::EntraJoined;
    d.join_evidence = redeploy_core::JoinEvidence::EntraToken;
    d.cert_not_after = Some(now + Duration::days(365));
    let e = Enrollment {
        id: EnrollmentId::generate(),
        device: d.id,
        enrollment_type: EnrollmentType::Device,
        upn: None,
        auth_method: "OnPremise".into(),
        context: vec![],
        raw_request: b"<s:Envelope/>".to_vec(),
        cert_thumbprint: format!("{i:040}"),
        cert_serial: "01".into(),
        cert_not_after: now + Duration::days(365),
        created_at: now,
        replaced_by: None,
    };
    app.store.create_enrollment(d, e).await.unwrap().device
}

async fn a_rest_bulk_requests_daily_cap_governs_its_later_waves(backend: Backend) {
    // The server has no cap of its own.
    let app = spawn_app(backend).await;
    assert_eq!(app.settings.daily_cap, None);
    let mut devices = Vec::new();
    for i in 0..3 {
        devices.push(device(&app, i).await.to_string());
    }
    let post = |body: Value| {
        app.client()
            .post(app.url("/api/v1/actions/bulk"))
            .bearer_auth(&app.admin_token)
            .json(&body)
            .send()
    };
    let zero = post(json!({"kind": "wipe", "devices": devices, "daily_cap": 0}))
        .await
        .unwrap();
    assert_eq!(zero.status().as_u16(), 400);

    // Waves of one, all due at once; the request allows one wipe a day.
    let r = post(json!({"kind": "wipe", "devices": devices, "wave_size": 1, "daily_cap": 1}))
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let result: Value = r.json().await.unwrap();
    assert_eq!(result["counts"]["queued"], 1);
    assert_eq!(result["counts"]["deferred"], 2);

    // The worker releases the two waves under the request's cap, not the server's (none): both
    // devices move on to the next UTC day instead of being wiped today.
    app.tick().await;
    let batch = redeploy_core::BatchId::parse(result["batch_id"].as_str().unwrap()).unwrap();
    let waves = app.store.waves_of_batch(batch).await.unwrap();
    // Waves 1 and 2 were released (by this tick or the server's own loop) and each handed its
    // device to a new wave at the next UTC midnight, with the same cap.
    assert_eq!(waves.len(), 4, "{waves:?}");
    assert!(waves[..2].iter().all(|w| w.released_at.is_some()));
    assert!(waves[2..]
        .iter()
        .all(|w| w.released_at.is_none() && w.daily_cap == Some(1)));
    let mut created = 0;
    for d in &devices {
        created += app
            .store
            .actions_of_device(DeviceId::parse(d).unwrap())
            .await
            .unwrap()
            .len();
    }
    assert_eq!(created, 1, "still one wipe today");
}

/// Every item of a list, following `next` as `cursor` page by page.
async fn walk(app: &TestApp, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut url = path.to_owned();
    for _ in 0..100 {
        let (status, page) = get(app, &url).await;
        assert_eq!(status, 200, "{url}: {page}");
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => url = format!("{path}&cursor={next}"),
            None => return items,
        }
    }
    panic!("{path}: no last page after 100 pages");
}

/// Issue #14 item 6: actions and batches (besides devices and audit) page with cursors, newest
/// first, each item once, with filters; bad sizes and cursors are 400 problems.
async fn actions_and_batches_page_with_cursors_over_rest(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut devices = Vec::new();
    for i in 0..3 {
        devices.push(device(&app, 100 + i).await.to_string());
    }
    // Three bulk restarts of the three devices (restart ends no earlier action).
    let mut batches = Vec::new();
    for _ in 0..3 {
        let r = app
            .client()
            .post(app.url("/api/v1/actions/bulk"))
            .bearer_auth(&app.admin_token)
            .json(&json!({"kind": "sync", "devices": devices}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let created: Value = r.json().await.unwrap();
        batches.push(created["batch_id"].as_str().unwrap().to_owned());
    }

    let listed = walk(&app, "/api/v1/batches?limit=2").await;
    let ids: Vec<&str> = listed
        .iter()
        .map(|b| b["batch_id"].as_str().unwrap())
        .collect();
    let mut newest_first: Vec<&str> = batches.iter().map(String::as_str).collect();
    newest_first.reverse();
    assert_eq!(ids, newest_first);
    let first = &listed[2];
    assert_eq!(first["kind"], "sync");
    assert_eq!(first["devices"], 3);
    assert_eq!(first["target"], "3 devices");
    assert_eq!(first["waves_waiting"], 0);
    let counted: u64 = first["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(counted, 3, "{first}");

    let actions = walk(&app, "/api/v1/actions?limit=2").await;
    let mut action_ids: Vec<&str> = actions.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(action_ids.len(), 9);
    action_ids.sort();
    action_ids.dedup();
    assert_eq!(action_ids.len(), 9, "each action once");
    let of_batch = walk(
        &app,
        &format!("/api/v1/actions?limit=1&batch={}", batches[1]),
    )
    .await;
    assert_eq!(of_batch.len(), 3);
    assert!(
        of_batch
            .iter()
            .all(|a| a["batch_id"] == batches[1].as_str()),
        "{of_batch:?}"
    );
    let of_device = walk(
        &app,
        &format!("/api/v1/actions?limit=2&device={}", devices[0]),
    )
    .await;
    assert_eq!(of_device.len(), 3);

    for bad in [
        "/api/v1/actions?limit=0",
        "/api/v1/actions?limit=501",
        "/api/v1/actions?cursor=zz",
        "/api/v1/batches?cursor=a1",
        "/api/v1/batches?limit=9999",
        "/api/v1/actions?batch=nope",
    ] {
        let (status, problem) = get(&app, bad).await;
        assert_eq!(status, 400, "{bad}: {problem}");
        assert!(problem["detail"].is_string(), "{bad}: {problem}");
    }
}
