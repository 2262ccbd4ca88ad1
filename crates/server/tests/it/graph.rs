//! The Graph-compatible subset over real HTTPS with emulated PCs: list with `$filter`, `$select`,
//! `$top` and `@odata.nextLink`, get with deviceActionResults, the wipe flag mapping, sync and
//! reboot, roles (403) and Graph-shaped errors.

use api::{Client, NewApiToken};
use device::client::{self, EnrollOptions};
use device::state::JoinType as PcJoin;
use device::{DeviceProfile, HttpsTransport};
use redeploy_core::{ActionKind, DeviceId};
use serde_json::{json, Value};
use testkit::app::{spawn_app, Backend, TestApp};
use time::OffsetDateTime;

use testkit::on_both_backends;

on_both_backends!(graph_lists_gets_and_acts_like_intune);

const DEVICES: &str = "/graph/v1.0/deviceManagement/managedDevices";

async fn enrolled_pc(
    app: &TestApp,
    transport: &HttpsTransport,
    name: &str,
    seed: u64,
    join: PcJoin,
) -> String {
    let now = OffsetDateTime::now_utc();
    let profile = DeviceProfile {
        join,
        ..DeviceProfile::default()
    };
    let mut pc = profile.build_seeded(name, seed, now);
    let options = EnrollOptions {
        server: app.base_url.clone(),
        token: app.enrollment_token.clone(),
        issuer: None,
    };
    client::enroll(transport, &mut pc, &options, now)
        .await
        .unwrap();
    client::check_in(transport, &mut pc, now).await.unwrap();
    app.store
        .device_by_mdm_device_id(&pc.dev_id)
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string()
}

async fn call(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = if path.starts_with("https://") {
        path.to_owned()
    } else {
        app.url(path)
    };
    let mut rb = match method {
        "GET" => app.client().get(url),
        _ => app.client().post(url),
    }
    .bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    (status, value)
}

fn assert_graph_error(status: u16, body: &Value, expected: u16, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

async fn kinds(app: &TestApp, device: &str) -> Vec<ActionKind> {
    let id = DeviceId::parse(device).unwrap();
    let mut acts = app.store.actions_of_device(id).await.unwrap();
    acts.reverse();
    acts.iter().map(|a| a.kind).collect()
}

async fn graph_lists_gets_and_acts_like_intune(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token.clone();
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let a = enrolled_pc(&app, &transport, "pc-a", 1, PcJoin::Joined).await;
    let b = enrolled_pc(&app, &transport, "pc-b", 2, PcJoin::Hybrid).await;
    let c = enrolled_pc(&app, &transport, "pc-c", 3, PcJoin::Joined).await;

    // Paging with $top and the nextLink, Graph property names.
    let (status, page) = call(&app, &admin, "GET", &format!("{DEVICES}?$top=2"), None).await;
    assert_eq!(status, 200, "{page}");
    assert!(page["@odata.context"]
        .as_str()
        .unwrap()
        .contains("$metadata#deviceManagement/managedDevices"));
    let first = page["value"].as_array().unwrap();
    assert_eq!(first.len(), 2);
    for key in [
        "id",
        "deviceName",
        "serialNumber",
        "operatingSystem",
        "osVersion",
        "lastSyncDateTime",
        "userPrincipalName",
        "joinType",
        "azureADDeviceId",
        "manufacturer",
        "model",
        "enrolledDateTime",
        "managementState",
        "deviceActionResults",
    ] {
        assert!(
            first[0].get(key).is_some(),
            "{key} missing from {}",
            first[0]
        );
    }
    assert_eq!(first[0]["operatingSystem"], "Windows");
    let next = page["@odata.nextLink"]
        .as_str()
        .expect("a nextLink")
        .to_owned();
    let next = next.replace(&app.server().public_url, &app.base_url);
    let (_, page2) = call(&app, &admin, "GET", &next, None).await;
    let second = page2["value"].as_array().unwrap();
    assert_eq!(second.len(), 1, "{page2}");
    assert!(page2.get("@odata.nextLink").is_none(), "{page2}");
    let mut ids: Vec<&str> = first
        .iter()
        .chain(second)
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![a.as_str(), b.as_str(), c.as_str()];
    want.sort();
    assert_eq!(ids, want, "every device once across pages");

    // $filter and $select.
    let (status, hybrid) = call(
        &app,
        &admin,
        "GET",
        &format!("{DEVICES}?$filter=joinType%20eq%20'hybridAzureADJoined'&$select=id,joinType"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{hybrid}");
    assert_eq!(
        hybrid["value"],
        json!([{"id": b, "joinType": "hybridAzureADJoined"}])
    );
    let name_a = first
        .iter()
        .chain(second)
        .find(|d| d["id"] == a.as_str())
        .unwrap()["deviceName"]
        .as_str()
        .unwrap()
        .to_owned();
    let filter = format!(
        "startswith(deviceName,'{}') and (joinType eq 'azureADJoined' or joinType eq 'unknown') and lastSyncDateTime ge 2020-01-01T00:00:00Z",
        &name_a[..name_a.len() - 1]
    );
    let url = format!("{DEVICES}?$filter={}", filter.replace(' ', "%20"));
    let (status, matched) = call(&app, &admin, "GET", &url, None).await;
    assert_eq!(status, 200, "{matched}");
    assert!(
        matched["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == a.as_str()),
        "{matched}"
    );
    assert!(!matched["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["id"] == b.as_str()));

    for bad in [
        "deviceName%20gt%20'a'",
        "model%20eq%20'x'",
        "deviceName%20eq",
        "contains(deviceName,'x')",
    ] {
        let (status, body) = call(
            &app,
            &admin,
            "GET",
            &format!("{DEVICES}?$filter={bad}"),
            None,
        )
        .await;
        assert_graph_error(status, &body, 400, "BadRequest");
    }
    let (status, body) = call(
        &app,
        &admin,
        "GET",
        &format!("{DEVICES}?$orderby=deviceName"),
        None,
    )
    .await;
    assert_graph_error(status, &body, 400, "BadRequest");
    let (status, body) = call(&app, &admin, "GET", &format!("{DEVICES}?$top=0"), None).await;
    assert_graph_error(status, &body, 400, "BadRequest");

    // Wipe flags → our action kinds; 204 like Graph.
    let wipe = |d: &str| format!("{DEVICES}/{d}/wipe");
    let (status, _) = call(
        &app,
        &admin,
        "POST",
        &wipe(&a),
        Some(json!({"keepEnrollmentData": true, "keepUserData": false})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(kinds(&app, &a).await, [ActionKind::AutopilotReset]);
    let (status, body) = call(
        &app,
        &admin,
        "POST",
        &wipe(&a),
        Some(json!({"keepEnrollmentData": true, "keepUserData": true})),
    )
    .await;
    assert_graph_error(status, &body, 400, "BadRequest");
    let (status, _) = call(&app, &admin, "POST", &wipe(&c), Some(json!({"keepEnrollmentData": false, "keepUserData": true, "persistEsimDataPlan": false}))).await;
    assert_eq!(status, 204);
    assert_eq!(kinds(&app, &c).await, [ActionKind::WipeKeepUserData]);
    let (status, _) = call(&app, &admin, "POST", &wipe(&b), None).await;
    assert_eq!(status, 204, "an empty body is a full wipe");
    assert_eq!(kinds(&app, &b).await, [ActionKind::Wipe]);
    // Preflight refusals are 409 with the reason: the running wipe on B blocks a reset.
    let (status, body) = call(
        &app,
        &admin,
        "POST",
        &wipe(&b),
        Some(json!({"keepEnrollmentData": true})),
    )
    .await;
    assert_graph_error(status, &body, 409, "Conflict");

    // Sync and reboot.
    for (action, kind) in [
        ("syncDevice", ActionKind::Sync),
        ("rebootNow", ActionKind::Restart),
    ] {
        let (status, body) = call(
            &app,
            &admin,
            "POST",
            &format!("{DEVICES}/{c}/{action}"),
            None,
        )
        .await;
        assert_eq!(status, 204, "{action}: {body}");
        assert_eq!(kinds(&app, &c).await.last(), Some(&kind));
    }

    // Get: deviceActionResults with Graph's words.
    let (status, one) = call(&app, &admin, "GET", &format!("{DEVICES}/{a}"), None).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["id"], a.as_str());
    assert_eq!(one["managementState"], "wipePending");
    let results = one["deviceActionResults"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["actionName"], "wipe");
    assert_eq!(results[0]["actionState"], "pending");
    assert!(
        results[0]["startDateTime"].is_string() && results[0]["lastUpdatedDateTime"].is_string()
    );
    let (status, body) = call(
        &app,
        &admin,
        "GET",
        &format!("{DEVICES}/{}", DeviceId::generate()),
        None,
    )
    .await;
    assert_graph_error(status, &body, 404, "ResourceNotFound");

    // Roles and auth, in Graph's error shape.
    let viewer = Client::new(&app.base_url, &app.admin_token, Some(&app.ca_pem))
        .unwrap()
        .create_api_token(&NewApiToken {
            name: "reader".into(),
            role: "viewer".into(),
        })
        .await
        .unwrap()
        .secret;
    let (status, list) = call(&app, &viewer, "GET", DEVICES, None).await;
    assert_eq!(status, 200, "a viewer may read: {list}");
    let (status, body) = call(
        &app,
        &viewer,
        "POST",
        &format!("{DEVICES}/{c}/syncDevice"),
        None,
    )
    .await;
    assert_graph_error(status, &body, 403, "Forbidden");
    let (status, body) = call(&app, &viewer, "POST", &wipe(&c), None).await;
    assert_graph_error(status, &body, 403, "Forbidden");
    let (status, body) = call(&app, "not-a-token", "GET", DEVICES, None).await;
    assert_graph_error(status, &body, 401, "Unauthorized");
}
