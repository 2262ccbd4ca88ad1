//! The web console over real HTTPS with a browser-like client (cookies kept by hand, redirects
//! not followed): sign-in and its cookie, CSRF and Origin checks on posts, roles (a viewer's
//! refused reset is audited), a reset reaching the store, sign-out and token revocation.

use device::client::{self, EnrollOptions};
use device::{DeviceProfile, HttpsTransport};
use redeploy_core::store::AuditQuery;
use redeploy_core::{
    ActionKind, ActionState, ApiToken, AuditOutcome, DeviceId, GroupKind, Role, SecretHash,
    TextMatch, TokenId,
};
use testkit::app::{spawn_app, Backend, TestApp};
use time::OffsetDateTime;

use testkit::on_both_backends;

/// A browser: one HTTPS client that does not follow redirects, and the session cookie.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    set_cookie: Option<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        Browser {
            http: crate::common::browser_client(app),
            base: app.base_url.clone(),
            cookie: None,
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(c) => request.header("cookie", format!("redeploy_session={c}")),
            None => request,
        };
        let r = request.send().await.expect("request");
        let header = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (location, set_cookie) = (header("location"), header("set-cookie"));
        if let Some(c) = &set_cookie {
            let value = c
                .split(';')
                .next()
                .and_then(|kv| kv.strip_prefix("redeploy_session="))
                .unwrap_or_default();
            self.cookie = (!value.is_empty()).then(|| value.to_owned());
        }
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        Page {
            status,
            location,
            set_cookie,
            headers,
            body: r.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let req = self.http.post(format!("{}{path}", self.base)).form(fields);
        self.send(req).await
    }

    async fn post_with_origin(
        &mut self,
        path: &str,
        origin: &str,
        fields: &[(&str, &str)],
    ) -> Page {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("origin", origin)
            .form(fields);
        self.send(req).await
    }

    /// A file upload form as a browser sends it (`multipart/form-data`, RFC 7578).
    async fn post_multipart(&mut self, path: &str, csrf: &str, csv: &str) -> Page {
        let boundary = "----RedeployTestBoundary7MA4YWxk";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"csv\"; filename=\"devices.csv\"\r\n\
             Content-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n"
        );
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        self.send(req).await
    }

    async fn sign_in(&mut self, token: &str) -> Page {
        self.post("/console/sign-in", &[("token", token)]).await
    }
}

/// The CSRF token the page's forms carry.
fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a form with a CSRF field") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

async fn enrolled_pc(app: &TestApp, name: &str, seed: u64) -> DeviceId {
    enrolled_pc_with(app, name, seed, DeviceProfile::default()).await
}

async fn enrolled_pc_with(
    app: &TestApp,
    name: &str,
    seed: u64,
    profile: DeviceProfile,
) -> DeviceId {
    let now = OffsetDateTime::now_utc();
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let mut state = profile.build_seeded(name, seed, now);
    let options = EnrollOptions {
        server: app.base_url.clone(),
        token: app.enrollment_token.clone(),
        issuer: None,
    };
    client::enroll(&transport, &mut state, &options, now)
        .await
        .expect("enrollment");
    client::check_in(&transport, &mut state, now)
        .await
        .expect("first check-in");
    app.store
        .device_by_mdm_device_id(&state.dev_id)
        .await
        .unwrap()
        .expect("device known")
        .id
}

async fn new_token(app: &TestApp, role: Role) -> (TokenId, String) {
    let secret = format!("rdp_api_test_{}", uuid::Uuid::new_v4().simple());
    let token = ApiToken {
        id: TokenId::generate(),
        name: format!("{role}-tester"),
        secret_hash: SecretHash::of_secret(&secret),
        role,
        created_at: OffsetDateTime::now_utc(),
        revoked_at: None,
    };
    app.store.create_api_token(&token).await.unwrap();
    (token.id, secret)
}

async fn audit_actions(app: &TestApp) -> Vec<(String, AuditOutcome, String)> {
    app.store
        .list_audit(&AuditQuery {
            device: None,
            after: None,
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.outcome, e.actor))
        .collect()
}

on_both_backends!(
    console_actions_page_down_with_a_cursor,
    console_device_page_flags_an_identity_clash,
    console_sign_in_refuses_a_bad_token_and_sets_a_strict_session_cookie,
    console_posts_without_the_right_csrf_token_or_origin_are_refused_and_change_nothing,
    console_viewer_cannot_reset_and_the_refusal_is_audited,
    console_sign_out_and_token_revocation_end_the_session,
    console_pages_render_with_their_empty_states,
    console_device_list_pages_group_reset_needs_the_typed_name_schedules_and_autopilot_import,
    console_device_settings_primary_user_local_reset_and_cancel,
    console_audit_lists_newest_first_and_pages_down,
    console_filter_group_form_builds_the_device_filter_and_refuses_bad_numbers,
    console_offers_a_hybrid_pc_the_wipe_family_and_shows_inventory_by_name,
    console_device_list_acts_on_the_ticked_devices_and_exports_csv,
);

/// The groups page's filter form: filled fields become the group's `DeviceFilter` (blank ones impose
/// nothing), members are the devices matching it, and bad numbers are explained, not stored.
async fn console_filter_group_form_builds_the_device_filter_and_refuses_bad_numbers(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let first = enrolled_pc(&app, "pc-f1", 31).await;
    let _second = enrolled_pc(&app, "pc-f2", 32).await;
    let first_name = app.store.device(first).await.unwrap().unwrap().name;
    let mut b = Browser::new(&app);
    b.sign_in(&app.admin_token).await;
    let page = b.get("/console/groups").await;
    assert!(page.body.contains("New filter group"));
    assert!(page.body.contains("OS build at least"));
    let csrf = csrf_of(&page.body);
    let post = |extra: Vec<(&'static str, String)>| {
        let mut f = vec![
            ("csrf", csrf.clone()),
            ("kind", "filter".to_owned()),
            ("serial_prefix", String::new()),
            ("group_tag", String::new()),
        ];
        f.extend(extra);
        f
    };
    for (field, value, words) in [
        (
            "os_build_min",
            "22H2",
            "OS build at least must be a whole number",
        ),
        ("seen_within_days", "0", "at least 1"),
        ("join_type", "workgroup", "join type"),
    ] {
        let fields = post(vec![("name", "Bad".to_owned()), (field, value.to_owned())]);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = b.post("/console/groups", &fields).await;
        assert_eq!(refused.status, 400, "{field}: {}", refused.body);
        assert!(refused.body.contains(words), "{field}: {}", refused.body);
    }
    assert!(app.store.list_groups().await.unwrap().is_empty());

    let fields = post(vec![
        ("name", "Just one".to_owned()),
        ("name_contains", first_name.to_uppercase()),
        ("join_type", String::new()),
        ("os_build_min", "10000".to_owned()),
        ("seen_within_days", "7".to_owned()),
    ]);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let made = b.post("/console/groups", &fields).await;
    assert_eq!(made.status, 303, "{}", made.body);
    let groups = app.store.list_groups().await.unwrap();
    assert_eq!(groups.len(), 1);
    let GroupKind::Filter { filter } = &groups[0].kind else {
        panic!("a static group was made: {:?}", groups[0].kind)
    };
    assert_eq!(
        filter.name,
        Some(TextMatch::Contains(first_name.to_uppercase()))
    );
    assert_eq!(
        (
            filter.serial.clone(),
            filter.join_type,
            filter.group_tag.clone()
        ),
        (None, None, None)
    );
    assert_eq!(filter.os_build_min, Some(10000));
    assert_eq!(filter.last_seen_within, Some(time::Duration::days(7)));
    assert!(!filter.include_unenrolled);
    let members = app
        .store
        .group_member_ids(groups[0].id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(members, vec![first]);
    let list = b.get("/console/groups").await;
    assert!(list.body.contains("Just one") && list.body.contains("filter "));
}

/// The console's audit log starts with what just happened and pages towards older events;
/// `order=asc` gives the oldest first.
async fn console_audit_lists_newest_first_and_pages_down(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut b = Browser::new(&app);
    b.sign_in(&app.admin_token).await;
    // 120 events after the sign-in: more than one page of 100.
    for i in 0..120 {
        app.store
            .append_audit(redeploy_core::NewAuditEvent {
                at: OffsetDateTime::now_utc(),
                actor: "test".into(),
                action: format!("test.n{i:03}"),
                targets: vec![],
                batch: None,
                outcome: redeploy_core::AuditOutcome::Success,
                details: String::new(),
            })
            .await
            .unwrap();
    }
    let first = b.get("/console/audit").await;
    assert_eq!(first.status, 200);
    let at = |body: &str, what: &str| body.find(what).unwrap_or_else(|| panic!("{what} missing"));
    assert!(at(&first.body, "test.n119") < at(&first.body, "test.n118"));
    assert!(first.body.contains("test.n020"));
    assert!(!first.body.contains("test.n019"), "100 per page");
    assert!(!first.body.contains("console.sign_in"));
    // The next page continues downwards and ends with the oldest event, the sign-in.
    let marker = "rel=\"next\" href=\"";
    let start = at(&first.body, marker) + marker.len();
    let next =
        first.body[start..start + first.body[start..].find('"').unwrap()].replace("&amp;", "&");
    let second = b.get(&next).await;
    assert!(at(&second.body, "test.n019") < at(&second.body, "test.n000"));
    assert!(at(&second.body, "test.n000") < at(&second.body, "console.sign_in"));
    assert!(!second.body.contains("test.n020"));
    let oldest = b.get("/console/audit?order=asc").await;
    assert!(at(&oldest.body, "console.sign_in") < at(&oldest.body, "test.n000"));
}

/// Issue #14 item 6: the console's action list pages with a cursor, newest first, 100 a page.
async fn console_actions_page_down_with_a_cursor(backend: Backend) {
    let app = spawn_app(backend).await;
    let device = enrolled_pc(&app, "pc-pages", 9).await;
    let mut ids = Vec::new();
    for _ in 0..105 {
        let a = redeploy_core::Action::new(
            redeploy_core::ActionId::generate(),
            device,
            redeploy_core::ActionKind::Sync,
            "test",
            None,
            OffsetDateTime::now_utc(),
        );
        app.store.create_action(&a, &[]).await.unwrap();
        ids.push(a.id.to_string());
    }
    let mut b = Browser::new(&app);
    b.sign_in(&app.admin_token).await;
    let first = b.get("/console/actions").await;
    assert_eq!(first.status, 200);
    let at = |body: &str, what: &str| body.find(what).unwrap_or_else(|| panic!("{what} missing"));
    assert!(
        at(&first.body, &ids[104]) < at(&first.body, &ids[103]),
        "newest first"
    );
    assert!(first.body.contains(&ids[5]));
    assert!(!first.body.contains(&ids[4]), "100 per page");
    let marker = "rel=\"next\" href=\"";
    let start = at(&first.body, marker) + marker.len();
    let next =
        first.body[start..start + first.body[start..].find('"').unwrap()].replace("&amp;", "&");
    let second = b.get(&next).await;
    assert_eq!(second.status, 200);
    assert!(at(&second.body, &ids[4]) < at(&second.body, &ids[0]));
    assert!(!second.body.contains(&ids[5]));
    assert!(!second.body.contains("rel=\"next\""), "the last page");
}

async fn console_sign_in_refuses_a_bad_token_and_sets_a_strict_session_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut b = Browser::new(&app);

    let root = b.get("/").await;
    assert_eq!(
        (root.status, root.location.as_deref()),
        (303, Some("/console"))
    );
    let anonymous = b.get("/console/devices").await;
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.location.as_deref(), Some("/console/sign-in"));
    let form = b.get("/console/sign-in").await;
    assert_eq!(form.status, 200);
    assert!(
        form.body.contains("./redeploy-data/admin-token"),
        "the page says where the token is"
    );
    assert!(
        form.body.contains("<label for=\"token\">"),
        "the input is labelled"
    );

    let bad = b.sign_in("rdp_api_not-a-real-token").await;
    assert_eq!(bad.status, 401);
    assert!(bad.body.contains("Unknown API token"), "{}", bad.body);
    assert!(bad.set_cookie.is_none() && b.cookie.is_none());

    let good = b.sign_in(&app.admin_token).await;
    assert_eq!(good.status, 303);
    assert_eq!(good.location.as_deref(), Some("/console"));
    let cookie = good.set_cookie.expect("a session cookie");
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(
            cookie.split(';').any(|a| a.trim() == attribute),
            "{attribute} missing from {cookie}"
        );
    }
    let session_id = b.cookie.clone().unwrap();
    assert!(session_id.len() >= 64, "a long random session id");
    // Only the hash is stored.
    let stored = app
        .store
        .console_session(
            &SecretHash::of_secret(&session_id),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap()
        .expect("the session is in the database");
    assert_eq!(stored.1.name(), "first admin");

    let dashboard = b.get("/console").await;
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("<h1>Dashboard</h1>"));
    assert!(dashboard.body.contains("<main id=\"main\">"));
    assert!(dashboard.body.contains("No devices yet"));
    assert_eq!(
        dashboard.headers.get("x-frame-options").unwrap(),
        "DENY",
        "the console cannot be framed"
    );

    // The session lives in the database: a restarted server (or another process on the same
    // database) accepts the same cookie.
    let mut app = app;
    app.restart().await;
    let mut after_restart = Browser::new(&app);
    after_restart.cookie = b.cookie.clone();
    assert_eq!(after_restart.get("/console/devices").await.status, 200);
    let mut b = after_restart;

    let css = b.get("/console/assets/console.css").await;
    assert_eq!(css.status, 200);
    assert!(css.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert!(css.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    assert!(css.body.contains(":focus-visible"), "visible focus");
    assert_eq!(b.get("/console/assets/nope.css").await.status, 404);
}

async fn console_posts_without_the_right_csrf_token_or_origin_are_refused_and_change_nothing(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let device = enrolled_pc(&app, "pc-csrf", 7).await;
    let mut b = Browser::new(&app);
    b.sign_in(&app.admin_token).await;
    let page = b.get(&format!("/console/devices/{device}")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Ready for a remote Autopilot Reset"),
        "{}",
        page.body
    );
    let csrf = csrf_of(&page.body);
    let path = format!("/console/devices/{device}/actions");

    let missing = b.post(&path, &[("kind", "autopilot_reset")]).await;
    assert_eq!(missing.status, 403);
    assert!(missing.body.contains("security token"), "{}", missing.body);
    let wrong = b
        .post(
            &path,
            &[("kind", "autopilot_reset"), ("csrf", "0123456789abcdef")],
        )
        .await;
    assert_eq!(wrong.status, 403);
    let cross_site = b
        .post_with_origin(
            &path,
            "https://evil.example",
            &[("kind", "autopilot_reset"), ("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(cross_site.status, 403);
    assert!(cross_site.body.contains("another site"));
    assert!(
        app.store
            .actions_of_device(device)
            .await
            .unwrap()
            .is_empty(),
        "a refused post changes nothing"
    );

    // The confirmation page names the device and what goes and stays, then the reset goes out.
    let confirm = b.get(&format!("/console/devices/{device}/reset")).await;
    assert_eq!(confirm.status, 200);
    assert!(
        confirm.body.contains("Autopilot Reset pc-csrf?")
            || confirm.body.contains("Autopilot Reset ")
    );
    assert!(confirm.body.contains("Removed") && confirm.body.contains("Kept"));
    let origin = app.base_url.clone();
    let done = b
        .post_with_origin(
            &path,
            &origin,
            &[
                ("kind", "autopilot_reset"),
                ("csrf", csrf_of(&confirm.body).as_str()),
            ],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let acts = app.store.actions_of_device(device).await.unwrap();
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0].kind, ActionKind::AutopilotReset);
    assert_eq!(acts[0].state, ActionState::Pending, "{:?}", acts[0].reason);
    assert!(acts[0].requested_by.starts_with("first admin ("));
    assert_eq!(
        done.location.as_deref(),
        Some(format!("/console/actions/{}", acts[0].id).as_str())
    );
    let action_page = b.get(done.location.as_deref().unwrap()).await;
    assert!(action_page.body.contains("id=\"action-state\""));
    assert!(
        action_page.body.contains(">pending<"),
        "{}",
        action_page.body
    );
    assert!(audit_actions(&app)
        .await
        .iter()
        .any(|(a, o, actor)| a == "action.create"
            && *o == AuditOutcome::Success
            && actor.starts_with("first admin")));
}

async fn console_viewer_cannot_reset_and_the_refusal_is_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let device = enrolled_pc(&app, "pc-viewer", 9).await;
    let (_, secret) = new_token(&app, Role::Viewer).await;
    let mut b = Browser::new(&app);
    assert_eq!(b.sign_in(&secret).await.status, 303);
    let page = b.get(&format!("/console/devices/{device}")).await;
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("Autopilot Reset…"),
        "no reset button for a viewer"
    );
    assert!(!page.body.contains("Sync now"));
    let csrf = csrf_of(&page.body); // the sign-out form carries it
    let refused = b
        .post(
            &format!("/console/devices/{device}/actions"),
            &[("kind", "autopilot_reset"), ("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("operator"), "{}", refused.body);
    assert!(app
        .store
        .actions_of_device(device)
        .await
        .unwrap()
        .is_empty());
    let audit = app
        .store
        .list_audit(&AuditQuery {
            device: Some(device),
            after: None,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let refusal = audit
        .iter()
        .find(|e| e.action == "api.forbidden")
        .expect("the refused reset is audited");
    assert_eq!(refusal.outcome, AuditOutcome::Refused);
    assert!(refusal.actor.starts_with("viewer-tester"));
    assert!(
        refusal.details.contains("autopilot_reset"),
        "{}",
        refusal.details
    );
}

async fn console_sign_out_and_token_revocation_end_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut b = Browser::new(&app);
    b.sign_in(&app.admin_token).await;
    let session = b.cookie.clone().unwrap();
    let page = b.get("/console").await;
    let csrf = csrf_of(&page.body);

    // Sign-out is a form post too.
    assert_eq!(b.post("/console/sign-out", &[]).await.status, 403);
    let out = b
        .post("/console/sign-out", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location.as_deref(), Some("/console/sign-in"));
    assert!(
        out.set_cookie.unwrap().contains("Max-Age=0"),
        "the cookie is cleared"
    );
    assert!(app
        .store
        .console_session(&SecretHash::of_secret(&session), OffsetDateTime::now_utc())
        .await
        .unwrap()
        .is_none());
    // Replaying the old cookie gets nothing.
    b.cookie = Some(session);
    assert_eq!(
        b.get("/console").await.location.as_deref(),
        Some("/console/sign-in")
    );

    // Revoking the token ends a live session.
    let (id, secret) = new_token(&app, Role::Operator).await;
    let mut c = Browser::new(&app);
    c.sign_in(&secret).await;
    assert_eq!(c.get("/console").await.status, 200);
    app.store
        .revoke_api_token(id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        c.get("/console").await.location.as_deref(),
        Some("/console/sign-in")
    );
    let again = c.sign_in(&secret).await;
    assert_eq!(again.status, 401);
    assert!(again.body.contains("revoked"));
}

async fn console_pages_render_with_their_empty_states(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut b = Browser::new(&app);
    b.sign_in(&app.admin_token).await;
    for (path, expected) in [
        ("/console/devices", "No devices yet"),
        ("/console/actions", "No actions"),
        ("/console/groups", "No groups yet"),
        ("/console/schedules", "No schedules yet"),
        ("/console/audit", "console.sign_in"),
        ("/console/autopilot", "No Autopilot devices registered yet"),
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(page.body.contains(expected), "{path}: {}", page.body);
        assert!(
            page.body.contains("aria-current=\"page\""),
            "{path}: nav marks the page"
        );
    }
    let bad = b.get("/console/devices/not-an-id").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("is not a device id"));
    let missing = b
        .get(&format!("/console/devices/{}", DeviceId::generate()))
        .await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("There is no device"));
    assert!(
        missing.body.contains("Sign out"),
        "an error page keeps the nav for a signed-in admin"
    );
    let csv = b.get("/console/audit.csv").await;
    assert!(csv
        .body
        .starts_with("id,at,actor,action,targets,outcome,details,batch"));
    assert!(csv.body.contains("console.sign_in"));
}

async fn console_device_list_pages_group_reset_needs_the_typed_name_schedules_and_autopilot_import(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let a = enrolled_pc(&app, "pc-g1", 21).await;
    let b_id = enrolled_pc(&app, "pc-g2", 22).await;
    let names: Vec<String> = {
        let mut v = Vec::new();
        for id in [a, b_id] {
            v.push(app.store.device(id).await.unwrap().unwrap().name);
        }
        v
    };
    let mut b = Browser::new(&app);
    b.sign_in(&app.admin_token).await;
    let csrf = csrf_of(&b.get("/console/groups").await.body);

    // A static group from device names; an unknown name is refused in words.
    let unknown = b
        .post(
            "/console/groups",
            &[
                ("csrf", csrf.as_str()),
                ("name", "Lab"),
                ("members", "no-such-pc"),
            ],
        )
        .await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.body.contains("no-such-pc"));
    let members = names.join("\n");
    let created = b
        .post(
            "/console/groups",
            &[
                ("csrf", csrf.as_str()),
                ("name", "Lab"),
                ("members", members.as_str()),
            ],
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let group_path = created.location.unwrap();
    // Device list: search, and next-page links that keep the filters.
    let first = b.get("/console/devices?limit=1&sort=name").await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.body.matches("href=\"/console/devices/").count(),
        1,
        "one row"
    );
    let marker = "rel=\"next\" href=\"";
    let start = first.body.find(marker).expect("a next-page link") + marker.len();
    let next =
        first.body[start..start + first.body[start..].find('"').unwrap()].replace("&amp;", "&");
    assert!(
        next.contains("limit=1") && next.contains("sort=name"),
        "{next}"
    );
    let second = b.get(&next).await;
    assert_eq!(second.status, 200);
    assert!(
        !second.body.contains("rel=\"next\""),
        "two devices: the second page is the last"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert!(first.body.contains(&sorted[0]) && second.body.contains(&sorted[1]));
    let found = b
        .get(&format!("/console/devices?q={}", sorted[1].to_lowercase()))
        .await;
    assert!(found.body.contains(&sorted[1]) && !found.body.contains(&sorted[0]));
    let none = b.get("/console/devices?q=zzz-nothing").await;
    assert!(none.body.contains("No devices match"));
    let unknown_page = b.get("/console/nowhere").await;
    assert_eq!(unknown_page.status, 404);
    assert!(unknown_page.body.contains("There is no console page"));

    let group_page = b.get(&group_path).await;
    assert!(
        group_page
            .body
            .contains("2 of 2 device(s) would be reset now"),
        "{}",
        group_page.body
    );

    // The group reset needs the group's name typed in.
    let reset_path = format!("{group_path}/reset");
    let wrong = b
        .post(&reset_path, &[("csrf", csrf.as_str()), ("confirm", "lab")])
        .await;
    assert_eq!(wrong.status, 409, "{}", wrong.body);
    assert!(wrong.body.contains("type the group name"), "{}", wrong.body);
    assert!(app.store.actions_of_device(a).await.unwrap().is_empty());
    let ok = b
        .post(
            &reset_path,
            &[
                ("csrf", csrf.as_str()),
                ("confirm", "Lab"),
                ("wave_size", "1"),
                ("interval", "30"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    // The batch's own page: the flash, its progress by wave, and a pause button.
    let batch_path = ok.location.clone().unwrap();
    assert!(batch_path.starts_with("/console/batches/"), "{batch_path}");
    let flash = b.get(&batch_path).await;
    assert!(
        flash.body.contains("1 queued, 0 blocked, 1 in later waves"),
        "{}",
        flash.body
    );
    assert!(flash.body.contains("Pause waiting waves"), "{}", flash.body);
    let batch_path = batch_path.split('?').next().unwrap().to_owned();
    // The dashboard counts the PC in the waiting wave; the group page no longer offers it.
    let dash = b.get("/console").await;
    assert!(
        dash.body.contains("devices in 1 waiting waves"),
        "{}",
        dash.body
    );
    let group_again = b.get(&group_path).await;
    assert!(
        group_again.body.contains("already waits in wave 1"),
        "{}",
        group_again.body
    );
    // Paused from its page (audited), then canceled: the waiting wave is dropped.
    let paused = b
        .post(&format!("{batch_path}/pause"), &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(paused.status, 303, "{}", paused.body);
    let page = b.get(paused.location.as_deref().unwrap()).await;
    assert!(page.body.contains("Paused: 1 waves held."), "{}", page.body);
    assert!(page.body.contains("held (paused)"), "{}", page.body);
    assert!(b.get("/console").await.body.contains("(1 paused)"));
    let listed = b.get("/console/batches").await;
    assert!(listed.body.contains(">paused<"), "{}", listed.body);
    let canceled = b
        .post(&format!("{batch_path}/cancel"), &[("csrf", csrf.as_str())])
        .await;
    let page = b.get(canceled.location.as_deref().unwrap()).await;
    assert!(
        page.body
            .contains("Canceled: 1 waves dropped, 1 actions canceled"),
        "{}",
        page.body
    );
    assert!(page.body.contains("never (canceled)"), "{}", page.body);
    let again = b
        .post(&format!("{batch_path}/resume"), &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(again.status, 409, "{}", again.body);

    // Schedules: a bad recurrence is explained; a good one is listed, disabled, deleted.
    let group_id = group_path.rsplit('/').next().unwrap().to_owned();
    let bad = b
        .post(
            "/console/schedules",
            &[
                ("csrf", csrf.as_str()),
                ("name", "Nightly"),
                ("group", group_id.as_str()),
                ("kind", "sync"),
                ("tz", "Europe/Berlin"),
                ("recurrence", "every night"),
            ],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("is not a recurrence"));
    let made = b
        .post(
            "/console/schedules",
            &[
                ("csrf", csrf.as_str()),
                ("name", "Nightly"),
                ("group", group_id.as_str()),
                ("kind", "sync"),
                ("tz", "Europe/Berlin"),
                ("repeats", "daily"),
                ("date", ""),
                ("time", "02:00"),
                ("window", "22:00-05:00"),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let schedules = app.store.list_schedules().await.unwrap();
    assert_eq!(schedules.len(), 1);
    assert!(
        schedules[0].enabled && schedules[0].next_run.is_some() && schedules[0].window.is_some()
    );
    assert_eq!(schedules[0].recurrence.to_text(), "daily:02:00:00");
    let list = b.get("/console/schedules").await;
    assert!(list.body.contains("Nightly") && list.body.contains("22:00–05:00"));
    assert!(
        list.body.contains("every day at 02:00 Europe/Berlin"),
        "{}",
        list.body
    );
    // The plain fields: weekly needs a ticked day; ticked days become the weekly text form, shown
    // in words; a raw recurrence text from older scripts is still accepted.
    let weekly = |days: &'static [&'static str]| {
        let mut f = vec![
            ("csrf", csrf.clone()),
            ("name", "Weekend".to_owned()),
            ("group", group_id.clone()),
            ("kind", "sync".to_owned()),
            ("tz", "UTC".to_owned()),
            ("repeats", "weekly".to_owned()),
            ("time", "22:30".to_owned()),
        ];
        for d in days {
            f.push((*d, "on".to_owned()));
        }
        f
    };
    let no_day = weekly(&[]);
    let no_day: Vec<(&str, &str)> = no_day.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = b.post("/console/schedules", &no_day).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("at least one weekday"),
        "{}",
        refused.body
    );
    let two_days = weekly(&["day_mon", "day_fri"]);
    let two_days: Vec<(&str, &str)> = two_days.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(b.post("/console/schedules", &two_days).await.status, 303);
    let weekend = app
        .store
        .list_schedules()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "Weekend")
        .unwrap();
    assert_eq!(weekend.recurrence.to_text(), "weekly:mon,fri:22:30:00");
    let list = b.get("/console/schedules").await;
    assert!(
        list.body.contains("every Monday and Friday at 22:30 UTC"),
        "{}",
        list.body
    );
    let once_bad_date = b
        .post(
            "/console/schedules",
            &[
                ("csrf", csrf.as_str()),
                ("name", "One-off"),
                ("group", group_id.as_str()),
                ("kind", "sync"),
                ("tz", "UTC"),
                ("repeats", "once"),
                ("date", "24.12.2099"),
                ("time", "18:00"),
            ],
        )
        .await;
    assert_eq!(once_bad_date.status, 400);
    assert!(once_bad_date.body.contains("is not a date"));
    let raw = b
        .post(
            "/console/schedules",
            &[
                ("csrf", csrf.as_str()),
                ("name", "One-off"),
                ("group", group_id.as_str()),
                ("kind", "sync"),
                ("tz", "UTC"),
                ("recurrence", "once:2099-12-24T18:00:00"),
            ],
        )
        .await;
    assert_eq!(raw.status, 303, "{}", raw.body);
    let list = b.get("/console/schedules").await;
    assert!(list.body.contains("once on 2099-12-24 at 18:00 UTC"));
    // A reset schedule: created and switched back on only with the group's name typed.
    let reset_schedule = |confirm: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "Nightly reset".to_owned()),
            ("group", group_id.clone()),
            ("kind", "autopilot_reset".to_owned()),
            ("tz", "UTC".to_owned()),
            ("recurrence", "daily:03:00:00".to_owned()),
            ("confirm", confirm.to_owned()),
        ]
    };
    let unconfirmed = reset_schedule("lab");
    let unconfirmed: Vec<(&str, &str)> =
        unconfirmed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(b.post("/console/schedules", &unconfirmed).await.status, 409);
    let confirmed = reset_schedule("Lab");
    let confirmed: Vec<(&str, &str)> = confirmed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(b.post("/console/schedules", &confirmed).await.status, 303);
    let rs = app
        .store
        .list_schedules()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "Nightly reset")
        .unwrap();
    let off = format!("/console/schedules/{}/disable", rs.id);
    assert_eq!(b.post(&off, &[("csrf", csrf.as_str())]).await.status, 303);
    let list = b.get("/console/schedules").await.body;
    assert!(
        list.contains("Type the group name Lab to enable Nightly reset"),
        "{list}"
    );
    let on = format!("/console/schedules/{}/enable", rs.id);
    let refused = b.post(&on, &[("csrf", csrf.as_str())]).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(!app.store.schedule(rs.id).await.unwrap().unwrap().enabled);
    let ok = b
        .post(&on, &[("csrf", csrf.as_str()), ("confirm", "Lab")])
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert!(app.store.schedule(rs.id).await.unwrap().unwrap().enabled);
    for s in app.store.list_schedules().await.unwrap() {
        if s.name != "Nightly" {
            app.store.delete_schedule(s.id).await.unwrap();
        }
    }
    let sid = schedules[0].id;
    assert_eq!(
        b.post(
            &format!("/console/schedules/{sid}/disable"),
            &[("csrf", csrf.as_str())]
        )
        .await
        .status,
        303
    );
    assert!(!app.store.schedule(sid).await.unwrap().unwrap().enabled);
    assert_eq!(
        b.post(
            &format!("/console/schedules/{sid}/delete"),
            &[("csrf", csrf.as_str())]
        )
        .await
        .status,
        303
    );
    assert!(app.store.list_schedules().await.unwrap().is_empty());

    // Autopilot CSV upload: good rows imported, each bad line shown with its reason; the CSRF
    // token travels in the multipart body.
    let csv = "Device Serial Number,Windows Product ID,Hardware Hash,Group Tag\nSN-1,,QUJD,lab\nSN-2,,not base64!,lab\n";
    assert_eq!(
        b.post_multipart("/console/autopilot", "wrong", csv)
            .await
            .status,
        403
    );
    let imported = b.post_multipart("/console/autopilot", &csrf, csv).await;
    assert_eq!(imported.status, 200, "{}", imported.body);
    assert!(
        imported
            .body
            .contains("Imported <strong>1</strong> device(s)"),
        "{}",
        imported.body
    );
    assert!(imported.body.contains("Line 3: "), "{}", imported.body);
    assert!(imported.body.contains("base64"));
    assert!(app.store.autopilot_record("sn-1").await.unwrap().is_some());
}

async fn console_device_settings_primary_user_local_reset_and_cancel(backend: Backend) {
    let app = spawn_app(backend).await;
    let device = enrolled_pc(&app, "pc-set", 31).await;
    let mut b = Browser::new(&app);
    b.sign_in(&app.admin_token).await;
    let base = format!("/console/devices/{device}");
    let page = b.get(&base).await.body;
    let csrf = csrf_of(&page);
    // The support trail: the PC's first session, both ways.
    assert!(page.contains("Recent messages"), "{page}");
    assert!(
        page.contains("from the PC") && page.contains("to the PC"),
        "{page}"
    );
    assert!(page.contains("&lt;SyncML"), "the message itself, escaped");

    let saved = b
        .post(
            &format!("{base}/primary-user"),
            &[("csrf", csrf.as_str()), ("user", "ada@example.org")],
        )
        .await;
    assert_eq!(saved.status, 303);
    assert_eq!(
        app.store
            .device(device)
            .await
            .unwrap()
            .unwrap()
            .primary_user
            .as_deref(),
        Some("ada@example.org")
    );
    let shared = b
        .post(
            &format!("{base}/primary-user"),
            &[
                ("csrf", csrf.as_str()),
                ("user", "ada@example.org"),
                ("shared", "on"),
            ],
        )
        .await;
    assert_eq!(shared.status, 303);
    let d = app.store.device(device).await.unwrap().unwrap();
    assert!(
        d.shared && d.primary_user.is_none(),
        "a shared device has no primary user"
    );
    assert!(b.get(&base).await.body.contains("(shared device)"));

    let allow = b
        .post(
            &format!("{base}/local-reset"),
            &[("csrf", csrf.as_str()), ("allowed", "true")],
        )
        .await;
    assert_eq!(allow.status, 303);
    let acts = app.store.actions_of_device(device).await.unwrap();
    assert_eq!(acts[0].kind, ActionKind::SetLocalResetPolicy(true));

    // A queued sync can be canceled from its page.
    let sync = b
        .post(
            &format!("{base}/actions"),
            &[("csrf", csrf.as_str()), ("kind", "sync")],
        )
        .await;
    let action_path = sync.location.unwrap();
    assert!(b
        .get(&action_path)
        .await
        .body
        .contains("Cancel this action"));
    let canceled = b
        .post(&format!("{action_path}/cancel"), &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(canceled.status, 303);
    let id = redeploy_core::ActionId::parse(action_path.rsplit('/').next().unwrap()).unwrap();
    assert_eq!(
        app.store.action(id).await.unwrap().unwrap().state,
        ActionState::Canceled
    );
    let bad_kind = b
        .post(
            &format!("{base}/actions"),
            &[("csrf", csrf.as_str()), ("kind", "format_c")],
        )
        .await;
    assert_eq!(bad_kind.status, 400);
    assert!(bad_kind.body.contains("unknown action"));
}

/// Issue #13: two enrolled PCs that report one identity (here: the same emulated PC enrolled
/// twice with the enrollment token, as a cloned image would) are two records, and each device
/// page says so and links the other.
async fn console_device_page_flags_an_identity_clash(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = enrolled_pc(&app, "pc-twin", 41).await;
    let second = enrolled_pc(&app, "pc-twin", 41).await;
    assert_ne!(first, second, "no takeover");
    let mut b = Browser::new(&app);
    b.sign_in(&app.admin_token).await;
    for (me, other) in [(first, second), (second, first)] {
        let page = b.get(&format!("/console/devices/{me}")).await.body;
        assert!(page.contains("Identity clash"), "{page}");
        assert!(
            page.contains(&format!("href=\"/console/devices/{other}\"")),
            "links the other record: {page}"
        );
    }
    let lone = enrolled_pc(&app, "pc-lone", 42).await;
    let page = b.get(&format!("/console/devices/{lone}")).await.body;
    assert!(!page.contains("Identity clash"), "{page}");
}

/// Issue #15 item 2: a hybrid-joined PC cannot take Autopilot Reset; its page says why and offers
/// the wipe family, whose confirmation needs the PC's name typed. Inventory reads as names.
async fn console_offers_a_hybrid_pc_the_wipe_family_and_shows_inventory_by_name(backend: Backend) {
    let app = spawn_app(backend).await;
    let hybrid = enrolled_pc_with(
        &app,
        "pc-hybrid",
        61,
        DeviceProfile {
            join: device::state::JoinType::Hybrid,
            ..DeviceProfile::default()
        },
    )
    .await;
    let joined = enrolled_pc(&app, "pc-joined", 62).await;
    let mut b = Browser::new(&app);
    b.sign_in(&app.admin_token).await;

    let page = b.get(&format!("/console/devices/{hybrid}")).await.body;
    assert!(page.contains("No Autopilot Reset for this PC"), "{page}");
    assert!(page.contains("hybrid joined"), "{page}");
    assert!(!page.contains("id=\"autopilot-reset\""), "{page}");
    // Inventory by name, the OMA-URI kept as a tooltip.
    assert!(page.contains(">Windows version<"), "{page}");
    assert!(page.contains("title=\"./DevDetail/SwV\""), "{page}");
    let joined_page = b.get(&format!("/console/devices/{joined}")).await.body;
    assert!(
        joined_page.contains("id=\"autopilot-reset\""),
        "{joined_page}"
    );

    let confirm = b.get(&format!("/console/devices/{hybrid}/wipe")).await.body;
    assert!(
        confirm.contains("Autopilot Reset is not possible"),
        "{confirm}"
    );
    for kind in [
        "wipe",
        "wipe_keep_provisioning",
        "wipe_keep_user_data",
        "wipe_protected",
    ] {
        assert!(
            confirm.contains(&format!("value=\"{kind}\"")),
            "{kind}: {confirm}"
        );
    }
    let csrf = csrf_of(&confirm);
    let name = app.store.device(hybrid).await.unwrap().unwrap().name;
    let path = format!("/console/devices/{hybrid}/actions");
    let wrong = b
        .post(
            &path,
            &[("csrf", csrf.as_str()), ("kind", "wipe"), ("confirm", "pc")],
        )
        .await;
    assert_eq!(wrong.status, 409, "{}", wrong.body);
    assert!(
        wrong.body.contains(&format!("type &quot;{name}&quot;")),
        "{}",
        wrong.body
    );
    assert!(app
        .store
        .actions_of_device(hybrid)
        .await
        .unwrap()
        .is_empty());
    let ok = b
        .post(
            &path,
            &[
                ("csrf", csrf.as_str()),
                ("kind", "wipe"),
                ("confirm", name.as_str()),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let acts = app.store.actions_of_device(hybrid).await.unwrap();
    assert_eq!(acts.len(), 1);
    assert_eq!(
        (acts[0].kind, acts[0].state),
        (ActionKind::Wipe, ActionState::Pending)
    );
}

/// Issue #15 item 2: devices ticked in the list are synced at once, or reset after a preview and
/// their number typed; the list's filters export as CSV, every page.
async fn console_device_list_acts_on_the_ticked_devices_and_exports_csv(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ids = Vec::new();
    for i in 0..3u64 {
        ids.push(enrolled_pc(&app, &format!("tick-{i}"), 70 + i).await);
    }
    let mut b = Browser::new(&app);
    b.sign_in(&app.admin_token).await;
    let list = b.get("/console/devices?limit=2").await.body;
    assert!(list.contains("id=\"select-all\""), "{list}");
    assert!(list.contains("form=\"bulk\""), "{list}");
    let csrf = csrf_of(&list);
    let (a, c) = (ids[0].to_string(), ids[2].to_string());

    // Sync two of them: one batch, straight to its page.
    let sync = b
        .post(
            "/console/devices/bulk",
            &[
                ("csrf", csrf.as_str()),
                ("kind", "sync"),
                ("device", &a),
                ("device", &c),
            ],
        )
        .await;
    assert_eq!(sync.status, 303, "{}", sync.body);
    let page = b.get(sync.location.as_deref().unwrap()).await.body;
    assert!(page.contains("2 queued, 0 blocked"), "{page}");

    // A reset shows the plan first and needs the number typed; nothing happens before.
    let reset = [
        ("csrf", csrf.as_str()),
        ("kind", "autopilot_reset"),
        ("device", &a),
        ("device", &c),
    ];
    let preview = b.post("/console/devices/bulk", &reset).await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(
        preview.body.contains("Autopilot Reset 2 devices?"),
        "{}",
        preview.body
    );
    assert!(
        preview.body.contains("id=\"bulk-preview\""),
        "{}",
        preview.body
    );
    let wrong = b
        .post(
            "/console/devices/bulk",
            &[reset.as_slice(), &[("confirm", "3")]].concat(),
        )
        .await;
    assert!(
        wrong.body.contains("The number typed was not 2"),
        "{}",
        wrong.body
    );
    let resets = |acts: &[redeploy_core::Action]| {
        acts.iter()
            .filter(|x| x.kind == ActionKind::AutopilotReset)
            .count()
    };
    assert_eq!(
        resets(&app.store.actions_of_device(ids[0]).await.unwrap()),
        0
    );
    let done = b
        .post(
            "/console/devices/bulk",
            &[reset.as_slice(), &[("confirm", "2")]].concat(),
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    for (i, id) in ids.iter().enumerate() {
        let n = resets(&app.store.actions_of_device(*id).await.unwrap());
        assert_eq!(n, usize::from(i != 1), "device {i}");
    }
    // The dashboard charts them: readiness of the fleet, resets per day.
    let dash = b.get("/console").await.body;
    assert!(dash.contains("id=\"readiness-chart\""), "{dash}");
    assert!(dash.contains("devices ready for Autopilot Reset"), "{dash}");
    assert!(
        dash.contains("2 Autopilot Resets requested in the last 30 days: 0 done, 0 failed"),
        "{dash}"
    );
    let none = b
        .post(
            "/console/devices/bulk",
            &[("csrf", csrf.as_str()), ("kind", "sync")],
        )
        .await;
    assert_eq!(none.status, 400, "{}", none.body);

    // The CSV has every matching device, not only the page.
    let csv = b.get("/console/devices.csv?q=DESKTOP").await;
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(
        lines[0].starts_with("name,serial,primary_user"),
        "{}",
        csv.body
    );
    assert_eq!(lines.len(), 4, "{}", csv.body);
    for id in &ids {
        assert!(csv.body.contains(&id.to_string()), "{}", csv.body);
    }
}
