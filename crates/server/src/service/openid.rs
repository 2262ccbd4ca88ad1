//! Console sign-in through an OpenID Connect provider (OpenID Connect Core 1.0 §3.1, the
//! authorization code flow, with PKCE, RFC 7636); the protocol itself is [`crate::oidc`]:
//!
//! 1. [`begin`] makes a random `state`, `nonce` and PKCE verifier, and hands back the provider's
//!    authorization URL (from its discovery document) and a *flow cookie*: the three values and
//!    an expiry (10 minutes), signed with HMAC-SHA-256 under a key derived from the client
//!    secret (so every server process sharing the configuration accepts it, and nothing is
//!    stored);
//! 2. [`finish`] takes the provider's redirect back: the flow cookie must verify and be live, the
//!    `state` must equal the cookie's, the code is exchanged with the PKCE verifier (and the
//!    client secret), and the ID token must pass the checks of Core §3.1.3.7 — signature against
//!    the provider's JWKS, `iss`, `aud` (our client id), `exp`, `iat` and our `nonce`;
//! 3. the group claim is mapped to a role (the highest one of the user's mapped groups); a user
//!    none of whose groups is mapped is refused. Every outcome is audited (`console.sign_in`,
//!    `openid`).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use redeploy_core::{AuditOutcome, OpenIdUser, Principal, Role, SecretHash};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::console_sessions::audit_sign_in;
use super::Result;
use crate::oidc::{self, FlowSecrets, OidcError};
use crate::settings::OidcSettings;
use crate::state::AppState;

/// Name of the flow cookie.
pub const FLOW_COOKIE: &str = "redeploy_oidc";
/// Where the provider sends the browser back (under the public URL).
pub const CALLBACK_PATH: &str = "/console/sign-in/oidc/callback";
/// How long a started sign-in may take at the provider.
pub const FLOW_LIFETIME: Duration = Duration::from_secs(600);

/// What the flow cookie carries between [`begin`] and [`finish`].
#[derive(Debug, Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    /// Unix seconds after which the flow is refused.
    expires: i64,
}

/// Why an OpenID Connect sign-in was refused, in words for the person signing in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenIdRefusal {
    /// The provider could not be asked (discovery, network, configuration).
    ProviderUnreachable(String),
    /// The provider answered with an error instead of a code (the user canceled, consent...).
    ProviderError(String),
    /// No flow cookie, a forged one, or one older than [`FLOW_LIFETIME`].
    NoFlow,
    /// The `state` in the answer is not the one this browser's sign-in started with.
    StateMismatch,
    /// The code was not exchanged (wrong PKCE verifier, a used code...).
    Exchange(String),
    /// The ID token failed validation.
    IdToken(String),
    /// Signed in at the provider, but no group of the user maps to a role.
    NoRole { name: String },
}

impl std::fmt::Display for OpenIdRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ProviderUnreachable(e) => write!(f, "The sign-in provider could not be reached ({e}). Try again later, or sign in with an account."),
            Self::ProviderError(e) => write!(f, "The sign-in provider refused the sign-in: {e}."),
            Self::NoFlow => f.write_str("This sign-in was not started in this browser, or took longer than 10 minutes. Start again."),
            Self::StateMismatch => f.write_str("The sign-in provider's answer does not belong to the sign-in this browser started (state mismatch). Start again."),
            Self::Exchange(e) => write!(f, "The sign-in provider did not accept the sign-in code ({e}). Start again."),
            Self::IdToken(e) => write!(f, "The sign-in provider's identity token was refused ({e})."),
            Self::NoRole { name } => write!(f, "You are signed in at the provider as {name}, but none of your groups is given a role in Redeploy, so you cannot use the console. Ask an admin to map one of your groups to a role (setting oidc.roles)."),
        }
    }
}

/// The signed flow cookie's key: HMAC-SHA-256 of a fixed label under the client secret.
fn flow_key(oidc: &OidcSettings) -> ring::hmac::Key {
    let derive = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, oidc.client_secret.as_bytes());
    let key = ring::hmac::sign(&derive, b"redeploy console sign-in flow cookie v1");
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_ref())
}

fn seal(oidc: &OidcSettings, flow: &Flow) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(flow).unwrap_or_default());
    let tag = ring::hmac::sign(&flow_key(oidc), payload.as_bytes());
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// The flow of a cookie whose signature verifies and whose expiry is after `now` (Unix s).
fn open_flow(oidc: &OidcSettings, cookie: &str, now: i64) -> Option<Flow> {
    let (payload, tag) = cookie.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    ring::hmac::verify(&flow_key(oidc), payload.as_bytes(), &tag).ok()?;
    let flow: Flow = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (flow.expires > now).then_some(flow)
}

impl From<OidcError> for OpenIdRefusal {
    fn from(e: OidcError) -> Self {
        match e {
            OidcError::Unreachable(e) => OpenIdRefusal::ProviderUnreachable(e),
            OidcError::Exchange(e) => OpenIdRefusal::Exchange(e),
            OidcError::IdToken(e) => OpenIdRefusal::IdToken(e),
        }
    }
}

/// The provider's client of this server (built at start-up from the `[oidc]` settings).
fn client(state: &AppState) -> std::result::Result<&oidc::Client, OpenIdRefusal> {
    state.openid.as_deref().ok_or_else(|| {
        OpenIdRefusal::ProviderUnreachable("single sign-on is not configured".into())
    })
}

/// Starts a sign-in: the provider's authorization URL to send the browser to, and the flow
/// cookie's value.
pub async fn begin(
    state: &AppState,
    oidc: &OidcSettings,
) -> std::result::Result<(String, String), OpenIdRefusal> {
    let secrets = FlowSecrets::random();
    let url = client(state)?.authorization_url(&secrets).await?;
    let flow = Flow {
        state: secrets.state,
        nonce: secrets.nonce,
        verifier: secrets.verifier,
        expires: state.clock.now().unix_timestamp() + FLOW_LIFETIME.as_secs() as i64,
    };
    Ok((url, seal(oidc, &flow)))
}

/// What the provider's redirect back carries (OAuth 2.0, RFC 6749 §4.1.2 and §4.1.2.1).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// The highest role that `groups` map to under `roles`, if any.
pub fn role_of(roles: &[(String, Role)], groups: &[String]) -> Option<Role> {
    roles
        .iter()
        .filter(|(group, _)| groups.iter().any(|g| g == group))
        .map(|(_, role)| *role)
        .max_by(|a, b| {
            if a.includes(*b) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Less
            }
        })
}

/// The user's groups: the claim as a list of strings, or one string.
fn groups_of(payload: &Value, claim: &str) -> Vec<String> {
    match payload.get(claim) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// Finishes a sign-in from the provider's redirect and the browser's flow cookie: the user and
/// role to open a session for, or why not (audited either way).
pub async fn finish(
    state: &AppState,
    oidc: &OidcSettings,
    cookie: Option<&str>,
    callback: &Callback,
) -> Result<std::result::Result<OpenIdUser, OpenIdRefusal>> {
    let outcome = check(state, oidc, cookie, callback).await;
    let (actor, why) = match &outcome {
        Ok(user) => (Principal::OpenId(user.clone()).actor(), None),
        Err(OpenIdRefusal::NoRole { name }) => (
            format!("{name} (openid)"),
            Some("no group of the user maps to a role".to_owned()),
        ),
        Err(refusal) => ("(openid)".to_owned(), Some(format!("{refusal:?}"))),
    };
    if let Some(why) = why {
        audit_sign_in(state, actor, "openid", AuditOutcome::Refused, Some(&why)).await?;
    }
    Ok(outcome)
}

async fn check(
    state: &AppState,
    oidc: &OidcSettings,
    cookie: Option<&str>,
    callback: &Callback,
) -> std::result::Result<OpenIdUser, OpenIdRefusal> {
    if let Some(error) = &callback.error {
        let description = callback.error_description.as_deref().unwrap_or_default();
        return Err(OpenIdRefusal::ProviderError(
            format!("{error} {description}").trim().to_owned(),
        ));
    }
    let flow = cookie
        .and_then(|c| open_flow(oidc, c, state.clock.now().unix_timestamp()))
        .ok_or(OpenIdRefusal::NoFlow)?;
    // Compared as hashes, so the comparison's time says nothing about the expected value.
    let returned = callback.state.as_deref().unwrap_or_default();
    if SecretHash::of_secret(returned) != SecretHash::of_secret(&flow.state) {
        return Err(OpenIdRefusal::StateMismatch);
    }
    let code = callback
        .code
        .clone()
        .ok_or_else(|| OpenIdRefusal::ProviderError("no code in the answer".into()))?;
    let secrets = FlowSecrets {
        state: flow.state,
        nonce: flow.nonce,
        verifier: flow.verifier,
    };
    let payload = client(state)?.sign_in(&code, &secrets).await?;
    let text = |claim: &str| {
        payload
            .get(claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let subject = text("sub").unwrap_or_default();
    let name = text("preferred_username")
        .or_else(|| text("email"))
        .or_else(|| text("name"))
        .unwrap_or_else(|| subject.clone());
    let groups = groups_of(&payload, &oidc.groups_claim);
    let role = role_of(&oidc.roles, &groups).ok_or(OpenIdRefusal::NoRole { name: name.clone() })?;
    Ok(OpenIdUser {
        subject,
        name,
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OidcSettings {
        OidcSettings {
            issuer: "https://login.example".into(),
            client_id: "console".into(),
            client_secret: "secret".into(),
            groups_claim: "groups".into(),
            roles: vec![
                ("helpdesk".into(), Role::Helpdesk),
                ("admins".into(), Role::Admin),
            ],
            provider_name: "Example".into(),
        }
    }

    #[test]
    fn the_highest_mapped_role_wins_and_none_maps_to_nothing() {
        let roles = settings().roles;
        let g = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            role_of(&roles, &g(&["helpdesk", "admins"])),
            Some(Role::Admin)
        );
        assert_eq!(
            role_of(&roles, &g(&["x", "helpdesk"])),
            Some(Role::Helpdesk)
        );
        assert_eq!(role_of(&roles, &g(&["x"])), None);
        assert_eq!(role_of(&roles, &[]), None);
    }

    #[test]
    fn a_flow_cookie_opens_only_unchanged_live_and_under_its_key() {
        let oidc = settings();
        let flow = Flow {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            expires: 1000,
        };
        let cookie = seal(&oidc, &flow);
        assert_eq!(open_flow(&oidc, &cookie, 999).unwrap().verifier, "v");
        assert!(open_flow(&oidc, &cookie, 1000).is_none(), "expired");
        let other_key = OidcSettings {
            client_secret: "other".into(),
            ..settings()
        };
        assert!(open_flow(&other_key, &cookie, 1).is_none(), "another key");
        let (payload, tag) = cookie.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Flow {
                expires: 99_999,
                ..flow
            })
            .unwrap(),
        );
        assert!(
            open_flow(&oidc, &format!("{forged}.{tag}"), 1).is_none(),
            "tampered"
        );
        assert!(open_flow(&oidc, payload, 1).is_none(), "no tag");
    }

    #[test]
    fn groups_are_a_list_or_one_string() {
        let payload = serde_json::json!({ "groups": ["a", 1, "b"], "role": "c" });
        assert_eq!(groups_of(&payload, "groups"), ["a", "b"]);
        assert_eq!(groups_of(&payload, "role"), ["c"]);
        assert!(groups_of(&payload, "none").is_empty());
    }
}
