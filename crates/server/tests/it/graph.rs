//! The Graph-compatible subset over real HTTPS with emulated PCs: list with `$filter`, `$select`,
//! `$top` and `@odata.nextLink`, get with deviceActionResults, the wipe flag mapping, sync and
//! reboot, roles (403) and Graph-shaped errors; then requests exactly as the Microsoft Graph
//! PowerShell SDK sends them (`$orderby`, `$count`, `contains`/`startswith`, complianceState,
//! `-All` paging, `/beta`, retire, sync and wipe).

use api::{Client, NewApiToken};
use device::client::{self, EnrollOptions};
use device::state::JoinType as PcJoin;
use device::{DeviceProfile, HttpsTransport};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use redeploy_core::{ActionKind, Clock, DeviceId};
use serde_json::{json, Value};
use std::sync::Arc;
use testkit::app::{spawn_app, spawn_app_with_clock, Backend, TestApp};
use time::{Duration, OffsetDateTime};

use testkit::on_both_backends;

on_both_backends!(
    graph_lists_gets_and_acts_like_intune,
    graph_answers_the_powershell_sdk
);

const DEVICES: &str = "/graph/v1.0/deviceManagement/managedDevices";

async fn enrolled_pc(
    app: &TestApp,
    transport: &HttpsTransport,
    name: &str,
    seed: u64,
    join: PcJoin,
) -> String {
    let profile = DeviceProfile {
        join,
        ..DeviceProfile::default()
    };
    enroll(
        app,
        transport,
        &profile,
        name,
        seed,
        OffsetDateTime::now_utc(),
    )
    .await
    .1
}

/// Enrolls a PC of `profile` at `now` and checks it in once: the PC and its device id.
async fn enroll(
    app: &TestApp,
    transport: &HttpsTransport,
    profile: &DeviceProfile,
    name: &str,
    seed: u64,
    now: OffsetDateTime,
) -> (device::state::DeviceState, String) {
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
    let id = app
        .store
        .device_by_mdm_device_id(&pc.dev_id)
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string();
    (pc, id)
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
        "complianceState",
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
        "deviceName%20eq",
        "endswith(deviceName,'x')",
        "managementState%20eq%20'managed'",
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
        &format!("{DEVICES}?$orderby=model"),
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

// ---------------------------------------------------------------------------------------------
// The Microsoft Graph PowerShell SDK (v2): its cmdlets are AutoRest-generated and build each URL
// as the path plus `$option=` + `Uri.EscapeDataString(value)` joined by `&` (query option names
// keep their `$`; everything but RFC 3986's unreserved characters is percent-encoded, so a space
// is `%20`, a quote `%27`, parentheses `%28`/`%29`, a comma `%2C`). `-All` follows
// `@odata.nextLink` as given; `-CountVariable` adds `$count=true` and reads `@odata.count`; the
// SDK's list cmdlets take `ConsistencyLevel` as a header. Cmdlets named per Microsoft Learn's
// Microsoft.Graph.DeviceManagement reference.

/// What .NET's `Uri.EscapeDataString` leaves alone: RFC 3986 unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A user agent of the shape the SDK sends (PowerShell host, then the SDK module); the server
/// must not depend on it.
const SDK_USER_AGENT: &str =
    "Mozilla/5.0 (Windows NT 10.0; Microsoft Windows 10.0.22631; en-US) PowerShell/7.4.6";

/// `GET`/`POST` with the SDK's headers (bearer token, `Accept`, `User-Agent`, `SdkVersion`,
/// a fresh `client-request-id`) and, for lists, `ConsistencyLevel: eventual`.
fn sdk(app: &TestApp, token: &str, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
    app.client()
        .request(method, url)
        .bearer_auth(token)
        .header("Accept", "application/json")
        .header("User-Agent", SDK_USER_AGENT)
        .header("SdkVersion", "graph-powershell/2.25.0")
        .header("client-request-id", DeviceId::generate().to_string())
}

/// The URL a list cmdlet builds from its parameters, in the SDK's order.
fn sdk_list_url(app: &TestApp, version: &str, options: &[(&str, &str)]) -> String {
    let query: Vec<String> = options
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, UNRESERVED)))
        .collect();
    app.url(&format!(
        "/graph/{version}/deviceManagement/managedDevices?{}",
        query.join("&")
    ))
}

/// `Get-MgDeviceManagementManagedDevice … -All`: every page from `url` on, following
/// `@odata.nextLink`; the devices, the first page's `@odata.count` and the number of pages.
async fn sdk_all(app: &TestApp, token: &str, url: &str) -> (Vec<Value>, Option<u64>, usize) {
    let (mut devices, mut count, mut pages) = (Vec::new(), None, 0);
    let mut next = Some(url.to_owned());
    while let Some(url) = next {
        let response = sdk(app, token, reqwest::Method::GET, &url)
            .header("ConsistencyLevel", "eventual")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let page: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{url}: {page}");
        pages += 1;
        if pages == 1 {
            count = page["@odata.count"].as_u64();
        }
        devices.extend(page["value"].as_array().unwrap().iter().cloned());
        next = page["@odata.nextLink"]
            .as_str()
            .map(|l| l.replace(&app.server().public_url, &app.base_url));
    }
    (devices, count, pages)
}

/// One `GET` with the SDK's headers: the JSON answer.
async fn sdk_get(app: &TestApp, token: &str, url: &str) -> Value {
    sdk(app, token, reqwest::Method::GET, url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn field<'a>(devices: &'a [Value], name: &str) -> Vec<&'a str> {
    devices.iter().map(|d| d[name].as_str().unwrap()).collect()
}

async fn graph_answers_the_powershell_sdk(backend: Backend) {
    let start = OffsetDateTime::now_utc();
    let clock = Arc::new(redeploy_core::ManualClock::new(start));
    let app = spawn_app_with_clock(backend, clock.clone(), |_| {}).await;
    let admin = app.admin_token.clone();
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let joined = DeviceProfile {
        join: PcJoin::Joined,
        ..DeviceProfile::default()
    };
    // Two PCs last seen 8 days ago (past preflight's 7-day window: in grace), three seen now
    // (one hybrid joined, one with WinRE off).
    let mut old = Vec::new();
    for seed in [11, 12] {
        let name = format!("old-{seed}");
        old.push(
            enroll(&app, &transport, &joined, &name, seed, clock.now())
                .await
                .1,
        );
    }
    clock.advance(Duration::days(8));
    let now = clock.now();
    let (mut fresh_pc, fresh) = enroll(&app, &transport, &joined, "fresh", 13, now).await;
    let hybrid_profile = DeviceProfile {
        join: PcJoin::Hybrid,
        ..DeviceProfile::default()
    };
    let hybrid = enroll(&app, &transport, &hybrid_profile, "hybrid", 14, now)
        .await
        .1;
    let no_winre = DeviceProfile {
        winre_enabled: false,
        ..joined.clone()
    };
    let broken = enroll(&app, &transport, &no_winre, "broken", 15, now)
        .await
        .1;

    // complianceState on every device, from check-in recency and health.
    let url = sdk_list_url(
        &app,
        "v1.0",
        &[("$select", "id,deviceName,complianceState")],
    );
    let (all, _, _) = sdk_all(&app, &admin, &url).await;
    assert_eq!(all.len(), 5);
    let state_of = |id: &str| {
        all.iter().find(|d| d["id"] == id).unwrap()["complianceState"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for id in &old {
        assert_eq!(state_of(id), "inGracePeriod");
    }
    assert_eq!(state_of(&fresh), "compliant");
    assert_eq!(
        state_of(&hybrid),
        "compliant",
        "compliance is not reset eligibility"
    );
    assert_eq!(state_of(&broken), "noncompliant", "WinRE not configured");
    let mut names: Vec<String> = field(&all, "deviceName")
        .iter()
        .map(|n| n.to_string())
        .collect();
    names.sort();

    // Get-MgDeviceManagementManagedDevice -Filter "complianceState eq 'compliant' and
    //   startswith(deviceName,'DESKTOP-')" -Sort "lastSyncDateTime desc" -Top 1
    //   -CountVariable n -All -Headers @{ConsistencyLevel = 'eventual'}
    let url = sdk_list_url(
        &app,
        "v1.0",
        &[
            (
                "$filter",
                "complianceState eq 'compliant' and startswith(deviceName,'DESKTOP-')",
            ),
            ("$orderby", "lastSyncDateTime desc"),
            ("$count", "true"),
            ("$top", "1"),
        ],
    );
    assert!(url.contains("$filter=complianceState%20eq%20%27compliant%27%20and%20startswith%28deviceName%2C%27DESKTOP-%27%29"), "{url}");
    let (compliant, count, pages) = sdk_all(&app, &admin, &url).await;
    assert_eq!(count, Some(2), "@odata.count counts every page");
    assert_eq!(pages, 2);
    // Both checked in at the same instant: the tie is broken by id, descending too.
    let mut want = vec![fresh.as_str(), hybrid.as_str()];
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(field(&compliant, "id"), want);

    // -Sort deviceName, serialNumber and enrolledDateTime, both ways, one device per page: every
    // device exactly once, in order.
    for (sort, key) in [
        ("deviceName", "deviceName"),
        ("deviceName desc", "deviceName"),
        ("serialNumber desc", "serialNumber"),
        ("enrolledDateTime", "enrolledDateTime"),
    ] {
        let url = sdk_list_url(&app, "v1.0", &[("$orderby", sort), ("$top", "1")]);
        let (walked, count, pages) = sdk_all(&app, &admin, &url).await;
        assert_eq!((count, pages), (None, 5), "{sort}");
        let keys = field(&walked, key);
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        if sort.ends_with("desc") {
            sorted.reverse();
        }
        assert_eq!(keys, sorted, "{sort}");
        if key == "deviceName" {
            let mut seen: Vec<&str> = keys.clone();
            seen.sort_unstable();
            assert_eq!(seen, names, "{sort}: every device once");
        }
    }

    // contains() and startswith() with not, or, ne; text compares without regard to case.
    let fresh_name = all.iter().find(|d| d["id"] == fresh.as_str()).unwrap()["deviceName"]
        .as_str()
        .unwrap()
        .to_owned();
    let middle = fresh_name["DESKTOP-".len()..fresh_name.len() - 1].to_lowercase();
    for (filter, want) in [
        (
            format!("contains(deviceName,'{middle}')"),
            vec![fresh.clone()],
        ),
        (
            format!("not contains(deviceName,'{middle}') and joinType ne 'hybridAzureADJoined'"),
            vec![old[0].clone(), old[1].clone(), broken.clone()],
        ),
        (
            "joinType eq 'hybridAzureADJoined' or complianceState eq 'inGracePeriod'".to_owned(),
            vec![old[0].clone(), old[1].clone(), hybrid.clone()],
        ),
        (
            format!("lastSyncDateTime lt {}", ts(now - Duration::days(1))),
            old.clone(),
        ),
        (
            "startswith(deviceName,'desktop-') and operatingSystem eq 'Windows'".to_owned(),
            vec![
                old[0].clone(),
                old[1].clone(),
                fresh.clone(),
                hybrid.clone(),
                broken.clone(),
            ],
        ),
    ] {
        let url = sdk_list_url(&app, "v1.0", &[("$filter", &filter), ("$count", "true")]);
        let (found, count, _) = sdk_all(&app, &admin, &url).await;
        let mut got: Vec<&str> = field(&found, "id");
        got.sort_unstable();
        let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(got, want, "{filter}");
        assert_eq!(count, Some(want.len() as u64), "{filter}");
    }

    // Get-MgDeviceManagementManagedDeviceCount -Filter …: …/managedDevices/$count, plain text.
    let url = app.url(&format!(
        "/graph/v1.0/deviceManagement/managedDevices/$count?$filter={}",
        utf8_percent_encode("complianceState eq 'inGracePeriod'", UNRESERVED)
    ));
    let response = sdk(&app, &admin, reqwest::Method::GET, &url)
        .header("ConsistencyLevel", "eventual")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "2");

    // The beta cmdlets (Get-MgBetaDeviceManagementManagedDevice) reach the same list under
    // /beta, and its links stay there.
    let url = sdk_list_url(&app, "beta", &[("$top", "4")]);
    let first = sdk_get(&app, &admin, &url).await;
    assert!(
        first["@odata.context"]
            .as_str()
            .unwrap()
            .contains("/graph/beta/$metadata#"),
        "{first}"
    );
    assert!(
        first["@odata.nextLink"]
            .as_str()
            .unwrap()
            .contains("/graph/beta/deviceManagement/managedDevices?"),
        "{first}"
    );
    let (beta, _, _) = sdk_all(&app, &admin, &url).await;
    assert_eq!(beta.len(), 5);

    // Sync-MgDeviceManagementManagedDevice -ManagedDeviceId X: an empty POST, 204; the PC's next
    // check-in finishes it.
    let action = |version: &str, id: &str, name: &str| {
        app.url(&format!(
            "/graph/{version}/deviceManagement/managedDevices/{id}/{name}"
        ))
    };
    let response = sdk(
        &app,
        &admin,
        reqwest::Method::POST,
        &action("v1.0", &fresh, "syncDevice"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert!(response.text().await.unwrap().is_empty());
    assert_eq!(kinds(&app, &fresh).await, [ActionKind::Sync]);
    client::check_in(&transport, &mut fresh_pc, clock.now())
        .await
        .unwrap();
    let one = sdk_get(&app, &admin, &app.url(&format!("{DEVICES}/{fresh}"))).await;
    assert_eq!(
        one["deviceActionResults"],
        json!([{"actionName": "syncDevice", "actionState": "done",
                "startDateTime": one["deviceActionResults"][0]["startDateTime"],
                "lastUpdatedDateTime": one["deviceActionResults"][0]["lastUpdatedDateTime"]}])
    );

    // Invoke-MgRetireDeviceManagementManagedDevice -ManagedDeviceId X: 204, our retire action.
    let response = sdk(
        &app,
        &admin,
        reqwest::Method::POST,
        &action("v1.0", &old[0], "retire"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(kinds(&app, &old[0]).await, [ActionKind::Retire]);
    let url = sdk_list_url(
        &app,
        "v1.0",
        &[
            (
                "$filter",
                &format!(
                    "deviceName eq '{}'",
                    all.iter().find(|d| d["id"] == old[0].as_str()).unwrap()["deviceName"]
                        .as_str()
                        .unwrap()
                ),
            ),
            ("$select", "id,managementState"),
        ],
    );
    let (retiring, _, _) = sdk_all(&app, &admin, &url).await;
    assert_eq!(
        retiring,
        [json!({"id": old[0], "managementState": "retirePending"})]
    );

    // Clear-MgDeviceManagementManagedDevice -ManagedDeviceId X -KeepEnrollmentData
    //   -KeepUserData:$false: the switches given, as JSON; Autopilot Reset.
    let response = sdk(
        &app,
        &admin,
        reqwest::Method::POST,
        &action("v1.0", &fresh, "wipe"),
    )
    .header("Content-Type", "application/json")
    .body(r#"{"keepEnrollmentData":true,"keepUserData":false}"#)
    .send()
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(
        kinds(&app, &fresh).await,
        [ActionKind::Sync, ActionKind::AutopilotReset]
    );
    // Clear-MgBetaDeviceManagementManagedDevice -ManagedDeviceId X -UseProtectedWipe.
    let response = sdk(
        &app,
        &admin,
        reqwest::Method::POST,
        &action("beta", &hybrid, "wipe"),
    )
    .header("Content-Type", "application/json")
    .body(r#"{"useProtectedWipe":true}"#)
    .send()
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(kinds(&app, &hybrid).await, [ActionKind::WipeProtected]);

    // What the subset does not do is a 400 in Graph's shape, never ignored.
    let walk = sdk_list_url(&app, "v1.0", &[("$orderby", "deviceName"), ("$top", "1")]);
    let first = sdk_get(&app, &admin, &walk).await;
    let token = reqwest::Url::parse(first["@odata.nextLink"].as_str().unwrap())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "$skipToken")
        .unwrap()
        .1
        .into_owned();
    for options in [
        vec![("$orderby", "model")],
        vec![("$orderby", "deviceName,serialNumber")],
        vec![("$skip", "2")],
        vec![("$search", "\"desktop\"")],
        vec![("$count", "maybe")],
        vec![("$filter", "managementState eq 'managed'")],
        vec![("$filter", "contains(lastSyncDateTime,'2026')")],
        vec![
            ("$orderby", "lastSyncDateTime"),
            ("$skipToken", token.as_str()),
        ],
        vec![("$skipToken", "garbage")],
    ] {
        let url = sdk_list_url(&app, "v1.0", &options);
        let response = sdk(&app, &admin, reqwest::Method::GET, &url)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_graph_error(status, &body, 400, "BadRequest");
    }
}

fn ts(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}
