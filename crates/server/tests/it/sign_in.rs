//! Console sign-in by local account and through OpenID Connect, over real HTTPS with a
//! browser-like client that follows no redirect and keeps cookies by hand: accounts managed over
//! `/api/v1/accounts` (admin only), a password sign-in and its refusals (wrong password, unknown
//! name, too many failures, a disabled account, whose session ends), and the OpenID Connect flow
//! against the test issuer acting as provider: a user's group maps to its role; a user without a
//! mapped group, a changed `state`, a code redeemed with another sign-in's PKCE verifier, and
//! spoiled ID tokens are refused; the provider's discovery document is read once an hour and a
//! signing-key rollover is followed.

use std::sync::Arc;

use api::{Client, NewAccount, NewApiToken};
use redeploy_core::store::AuditQuery;
use redeploy_core::ManualClock;
use redeploy_core::{AuditOutcome, Role};
use server::state::OidcSettings;
use test_issuer::{IdTokenFault, IssuerConfig, RunningIssuer, SignInUser};
use testkit::app::{spawn_app, spawn_app_with, spawn_app_with_clock, Backend, TestApp};
use time::{Duration, OffsetDateTime};

use testkit::on_both_backends;

/// What one request answered.
struct Answer {
    status: u16,
    location: Option<String>,
    cookies: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn get(http: &reqwest::Client, url: &str, cookies: &[(&str, &str)]) -> Answer {
    let mut request = http.get(url);
    let header: Vec<String> = cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
    if !header.is_empty() {
        request = request.header("cookie", header.join("; "));
    }
    answer(request).await
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let r = request.send().await.expect("request");
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cookies = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next()?.split_once('='))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    Answer {
        status: r.status().as_u16(),
        location,
        cookies,
        body: r.text().await.unwrap(),
    }
}

async fn post_form(http: &reqwest::Client, url: &str, fields: &[(&str, &str)]) -> Answer {
    answer(http.post(url).form(fields)).await
}

/// The dashboard's "name · role" for the session `id`, or `None` when it is not signed in.
async fn who(app: &TestApp, http: &reqwest::Client, id: &str) -> Option<String> {
    let page = get(http, &app.url("/console"), &[("redeploy_session", id)]).await;
    if page.status != 200 {
        return None;
    }
    let start = page.body.find("<span class=\"who\">")? + "<span class=\"who\">".len();
    let end = start + page.body[start..].find("</span>")?;
    Some(page.body[start..end].replace("&middot;", "·"))
}

async fn sign_in_events(app: &TestApp) -> Vec<redeploy_core::AuditEvent> {
    app.store
        .list_audit(&AuditQuery {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "console.sign_in")
        .collect()
}

on_both_backends!(local_accounts_sign_in_and_refusals_say_nothing_about_which_part_was_wrong);

async fn local_accounts_sign_in_and_refusals_say_nothing_about_which_part_was_wrong(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let admin = Client::new(&app.base_url, &app.admin_token, Some(&app.ca_pem)).unwrap();
    let http = common_http(&app);

    // Only admins manage accounts; a short password is refused.
    let viewer = admin
        .create_api_token(&NewApiToken {
            name: "viewer".into(),
            role: "viewer".into(),
        })
        .await
        .unwrap();
    let as_viewer = Client::new(&app.base_url, &viewer.secret, Some(&app.ca_pem)).unwrap();
    let refused = as_viewer.accounts().await.unwrap_err();
    assert!(refused.to_string().contains("admin"), "{refused}");
    let new = |name: &str, password: &str| NewAccount {
        name: name.into(),
        role: "operator".into(),
        password: password.into(),
    };
    let short = admin
        .create_account(&new("ada", "short"))
        .await
        .unwrap_err();
    assert!(short.to_string().contains("12 characters"), "{short}");
    let ada = admin
        .create_account(&new("ada", "correct horse battery"))
        .await
        .unwrap();
    assert_eq!((ada.name.as_str(), ada.role.as_str()), ("ada", "operator"));
    let taken = admin
        .create_account(&new("ada", "another long password"))
        .await
        .unwrap_err();
    assert!(taken.to_string().contains("exists"), "{taken}");
    assert_eq!(
        admin.accounts().await.unwrap().items,
        std::slice::from_ref(&ada)
    );

    // The right password opens a session with the account's role.
    let sign_in = app.url("/console/sign-in/password");
    let ok = post_form(
        &http,
        &sign_in,
        &[("name", "ada"), ("password", "correct horse battery")],
    )
    .await;
    assert_eq!((ok.status, ok.location.as_deref()), (303, Some("/console")));
    let session = ok.cookie("redeploy_session").expect("a session").to_owned();
    assert_eq!(
        who(&app, &http, &session).await.as_deref(),
        Some("ada · operator")
    );

    // A wrong password and an unknown name get the same words.
    for (name, password) in [("ada", "wrong horse battery"), ("nobody", "whatever it is")] {
        let refused = post_form(&http, &sign_in, &[("name", name), ("password", password)]).await;
        assert_eq!(refused.status, 401, "{name}");
        assert!(refused.body.contains("The name or the password is wrong."));
        assert!(refused.cookie("redeploy_session").is_none());
    }
    let events = sign_in_events(&app).await;
    let refusals: Vec<&str> = events
        .iter()
        .filter(|e| e.outcome == AuditOutcome::Refused)
        .map(|e| e.details.as_str())
        .collect();
    assert!(
        refusals.contains(&"password: wrong password"),
        "{refusals:?}"
    );
    assert!(
        refusals.contains(&"password: no account has this name"),
        "{refusals:?}"
    );
    assert!(events.iter().any(|e| e.outcome == AuditOutcome::Success
        && e.actor.starts_with("ada (account ")
        && e.details == "password"));

    // Five failures (the default burst, per name and per address): the next attempt, even a
    // right one, waits.
    for _ in 0..4 {
        let r = post_form(
            &http,
            &sign_in,
            &[("name", "ada"), ("password", "guess guess guess")],
        )
        .await;
        assert!(matches!(r.status, 401 | 429), "{}", r.status);
    }
    let throttled = post_form(
        &http,
        &sign_in,
        &[("name", "ada"), ("password", "correct horse battery")],
    )
    .await;
    assert_eq!(throttled.status, 429, "{}", throttled.body);
    assert!(throttled.body.contains("Too many failed sign-ins"));

    // Disabling ends the session.
    let disabled = admin.disable_account("ada").await.unwrap();
    assert!(disabled.disabled_at.is_some());
    assert_eq!(who(&app, &http, &session).await, None, "the session ended");
    let audit = app
        .store
        .list_audit(&AuditQuery {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    for action in ["account.create", "account.disable"] {
        assert!(
            audit
                .iter()
                .any(|e| e.action == action && e.actor.starts_with("first admin")),
            "{action} audited"
        );
    }
}

fn common_http(app: &TestApp) -> reqwest::Client {
    crate::common::browser_client(app)
}

/// The test issuer as the console's OpenID Connect provider, and the server's settings for it:
/// group `lab-admins` → admin, `lab-helpdesk` → helpdesk.
pub async fn provider() -> (RunningIssuer, OidcSettings) {
    let issuer = RunningIssuer::start(([127, 0, 0, 1], 0).into(), IssuerConfig::default())
        .await
        .unwrap();
    let (client_id, client_secret) = issuer.client_credentials();
    let settings = OidcSettings {
        issuer: issuer.url().to_owned(),
        client_id: client_id.to_owned(),
        client_secret: client_secret.to_owned(),
        groups_claim: "groups".into(),
        roles: vec![
            ("lab-admins".into(), Role::Admin),
            ("lab-helpdesk".into(), Role::Helpdesk),
        ],
        provider_name: "Test provider".into(),
    };
    (issuer, settings)
}

pub fn user(name: &str, groups: &[&str]) -> SignInUser {
    SignInUser {
        subject: format!("sub-{name}"),
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// A started sign-in: the provider's redirect back (code and state) and the flow cookie.
struct Started {
    callback: String,
    flow: String,
}

async fn start(app: &TestApp, http: &reqwest::Client) -> Started {
    let begin = get(http, &app.url("/console/sign-in/oidc"), &[]).await;
    assert_eq!(begin.status, 303, "{}", begin.body);
    let flow = begin
        .cookie("redeploy_oidc")
        .expect("the flow cookie")
        .to_owned();
    let at_provider = begin.location.expect("to the provider");
    assert!(
        at_provider.contains("code_challenge_method=S256"),
        "{at_provider}"
    );
    let back = get(http, &at_provider, &[]).await;
    assert_eq!(back.status, 303, "{}", back.body);
    Started {
        callback: back.location.expect("back to the console"),
        flow,
    }
}

async fn finish(http: &reqwest::Client, callback: &str, flow: Option<&str>) -> Answer {
    let cookies: Vec<(&str, &str)> = flow.map(|f| ("redeploy_oidc", f)).into_iter().collect();
    get(http, callback, &cookies).await
}

/// `url` with its query parameter `name` set to `value`.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = reqwest::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

fn param(url: &str, name: &str) -> String {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

on_both_backends!(openid_sign_in_maps_groups_to_roles_and_refuses_what_does_not_check_out);

async fn openid_sign_in_maps_groups_to_roles_and_refuses_what_does_not_check_out(backend: Backend) {
    let (issuer, oidc) = provider().await;
    let app = spawn_app_with(backend, |s| s.oidc = Some(oidc)).await;
    let http = common_http(&app);
    let page = get(&http, &app.url("/console/sign-in"), &[]).await;
    assert!(page.body.contains("Sign in with Test provider"));

    // A helpdesk user signs in with the helpdesk role.
    issuer.set_sign_in_user(Some(user("grace@contoso.test", &["other", "lab-helpdesk"])));
    let started = start(&app, &http).await;
    let done = finish(&http, &started.callback, Some(&started.flow)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("url=/console"),
        "moves on to the dashboard"
    );
    let session = done
        .cookie("redeploy_session")
        .expect("a session")
        .to_owned();
    assert_eq!(
        done.cookie("redeploy_oidc"),
        Some(""),
        "the flow cookie is cleared"
    );
    assert_eq!(
        who(&app, &http, &session).await.as_deref(),
        Some("grace@contoso.test · helpdesk")
    );
    // The same answer again: the provider redeems a code once.
    let again = finish(&http, &started.callback, Some(&started.flow)).await;
    assert_eq!(again.status, 401);
    assert!(
        again.body.contains("did not accept the sign-in code"),
        "{}",
        again.body
    );

    // Another state than the one this browser's sign-in started with.
    let started = start(&app, &http).await;
    let forged = with_param(&started.callback, "state", "someone-elses-state");
    let refused = finish(&http, &forged, Some(&started.flow)).await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("state mismatch"), "{}", refused.body);
    assert!(refused.cookie("redeploy_session").is_none());

    // A code redeemed with another sign-in's PKCE verifier (its flow cookie and state).
    let first = start(&app, &http).await;
    let second = start(&app, &http).await;
    let crossed = with_param(&first.callback, "state", &param(&second.callback, "state"));
    let refused = finish(&http, &crossed, Some(&second.flow)).await;
    assert_eq!(refused.status, 401);
    assert!(
        refused.body.contains("PKCE verification failed"),
        "{}",
        refused.body
    );

    // No flow cookie: not started in this browser.
    let started = start(&app, &http).await;
    let refused = finish(&http, &started.callback, None).await;
    assert_eq!(refused.status, 401);
    assert!(
        refused.body.contains("not started in this browser"),
        "{}",
        refused.body
    );

    // Spoiled ID tokens.
    for fault in [
        IdTokenFault::TamperedPayload,
        IdTokenFault::WrongAudience,
        IdTokenFault::Expired,
        IdTokenFault::WrongNonce,
    ] {
        issuer.set_id_token_fault(fault);
        let started = start(&app, &http).await;
        let refused = finish(&http, &started.callback, Some(&started.flow)).await;
        assert_eq!(refused.status, 401, "{fault:?}");
        assert!(
            refused.body.contains("identity token was refused"),
            "{fault:?}: {}",
            refused.body
        );
        assert!(refused.cookie("redeploy_session").is_none(), "{fault:?}");
    }
    issuer.set_id_token_fault(IdTokenFault::None);

    // Signed in at the provider, but no group maps to a role.
    issuer.set_sign_in_user(Some(user("mallory@contoso.test", &["students"])));
    let started = start(&app, &http).await;
    let refused = finish(&http, &started.callback, Some(&started.flow)).await;
    assert_eq!(refused.status, 403);
    assert!(
        refused.body.contains("none of your groups is given a role"),
        "{}",
        refused.body
    );

    let events = sign_in_events(&app).await;
    assert!(events.iter().any(|e| e.outcome == AuditOutcome::Success
        && e.actor == "grace@contoso.test (openid sub-grace@contoso.test)"
        && e.details == "openid"));
    assert!(events
        .iter()
        .any(|e| e.outcome == AuditOutcome::Refused && e.actor == "mallory@contoso.test (openid)"));
}

on_both_backends!(openid_reads_discovery_once_an_hour_and_follows_a_signing_key_rollover);

/// The provider's discovery document is read once within the hour (then again), its key set
/// is fetched again when an ID token names a key the server does not have (the provider rolled
/// its keys over), and a token signed with a key that is not in the refreshed set either is
/// refused. On a clock the test moves.
async fn openid_reads_discovery_once_an_hour_and_follows_a_signing_key_rollover(backend: Backend) {
    let (issuer, oidc) = provider().await;
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let app = spawn_app_with_clock(backend, clock.clone(), |s| s.oidc = Some(oidc)).await;
    let http = common_http(&app);
    issuer.set_sign_in_user(Some(user("grace@contoso.test", &["lab-admins"])));
    let sign_in = || async {
        let started = start(&app, &http).await;
        finish(&http, &started.callback, Some(&started.flow)).await
    };

    for _ in 0..2 {
        let done = sign_in().await;
        assert_eq!(done.status, 200, "{}", done.body);
        assert!(done.cookie("redeploy_session").is_some());
    }
    assert_eq!(issuer.discovery_served(), 1, "read once for two sign-ins");
    assert_eq!(issuer.keys_served(), 1);

    // The provider retires its key and signs with a new one, a while after the server last
    // fetched the keys (at most one fetch per REFETCH_INTERVAL, whatever tokens arrive).
    clock.advance(Duration::seconds(31));
    let old = issuer.current_kid();
    issuer.rotate(true).unwrap();
    assert_ne!(issuer.current_kid(), old);
    let done = sign_in().await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(issuer.keys_served(), 2, "the key set was fetched again");

    // A token signed with a key the provider does not publish: looked up again, then refused.
    clock.advance(Duration::seconds(31));
    issuer.set_id_token_fault(IdTokenFault::UnknownKey);
    let refused = sign_in().await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(
        refused.body.contains("identity token was refused"),
        "{}",
        refused.body
    );
    assert!(refused.cookie("redeploy_session").is_none());
    assert_eq!(issuer.keys_served(), 3);
    issuer.set_id_token_fault(IdTokenFault::None);
    assert_eq!(issuer.discovery_served(), 1, "still within the hour");

    // An hour on, the next sign-in reads the document again.
    clock.advance(Duration::minutes(60));
    let begin = get(&http, &app.url("/console/sign-in/oidc"), &[]).await;
    assert_eq!(begin.status, 303, "{}", begin.body);
    assert_eq!(issuer.discovery_served(), 2);
}
