//! The console's OpenID Connect client: the authorization code flow (OpenID Connect Core 1.0
//! §3.1) with PKCE (RFC 7636), on `reqwest` and `jsonwebtoken`. The sign-in's cookie, roles and
//! audit are `service::openid`; this module speaks to the provider:
//!
//! - the provider's discovery document (OpenID Connect Discovery 1.0 §4), kept for
//!   [`DISCOVERY_TTL`] on the server's clock; its `issuer` must be the configured one (§4.3);
//! - its JWKS (`jwks_uri`) through [`crate::federated::JwksKeys`], the same cache as federated
//!   enrollment: kept for the response's `max-age`, fetched again when an ID token names a key
//!   id it does not have (the provider rolled its keys over);
//! - the authorization URL ([`authorization_url`]) and the code exchange at the token endpoint;
//! - the ID token's checks of Core §3.1.3.7: signature with the provider's key, `iss`, `aud`,
//!   `azp`, `exp`, `iat` and `nonce` ([`check_claims`], pure).

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use redeploy_core::Clock;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::federated::{self, HttpFetcher, JwksKeys, LEEWAY};

/// How long a discovery document is used before it is read again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// A request to the provider that takes longer fails (the sign-in says so, nothing hangs).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A discovery document or token response larger than this is refused.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why the provider could not sign someone in, by step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// Discovery, the network, or the configuration.
    #[error("{0}")]
    Unreachable(String),
    /// The token endpoint refused the code (its `error: error_description`, RFC 6749 §5.2).
    #[error("{0}")]
    Exchange(String),
    /// The ID token failed a check of Core §3.1.3.7.
    #[error("{0}")]
    IdToken(String),
}

/// What this server is at the provider.
#[derive(Clone)]
pub struct ClientConfig {
    /// The issuer URL, exactly as the provider's tokens name it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Where the provider sends the browser back (registered at the provider).
    pub redirect_uri: String,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// The parts of a discovery document this client uses (Discovery 1.0 §3).
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    /// Absent means `client_secret_basic` (Discovery 1.0 §3).
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// Discovery 1.0 §3 requires it and that it includes RS256.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// `issuer` + `/.well-known/openid-configuration`, a trailing `/` of the issuer removed first
/// (Discovery 1.0 §4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// The discovery document `body` when its `issuer` is exactly `issuer` (Discovery 1.0 §4.3: a
/// document naming another issuer must not be used).
pub fn parse_metadata(issuer: &str, body: &[u8]) -> Result<ProviderMetadata, String> {
    let metadata: ProviderMetadata =
        serde_json::from_slice(body).map_err(|e| format!("not a discovery document: {e}"))?;
    if metadata.issuer != issuer {
        return Err(format!(
            "the discovery document names issuer {:?}, not the configured {issuer:?}",
            metadata.issuer
        ));
    }
    Ok(metadata)
}

/// The random values of one sign-in: `state` (RFC 6749 §10.12), `nonce` (Core §3.1.2.1) and
/// the PKCE `code_verifier` (RFC 7636 §4.1: 32 random octets, base64url, 43 characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSecrets {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

impl FlowSecrets {
    pub fn random() -> Self {
        let random = || URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        FlowSecrets {
            state: random(),
            nonce: random(),
            verifier: random(),
        }
    }
}

/// The `S256` code challenge of `verifier`: BASE64URL(SHA256(ASCII(verifier))) (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The authentication request (Core §3.1.2.1): the provider's authorization endpoint with
/// `response_type=code`, `scope=openid profile email`, our client id and redirect URI, `state`,
/// `nonce` and the PKCE challenge (RFC 7636 §4.3).
pub fn authorization_url(
    metadata: &ProviderMetadata,
    config: &ClientConfig,
    secrets: &FlowSecrets,
) -> Result<String, String> {
    let mut url = url::Url::parse(&metadata.authorization_endpoint)
        .map_err(|e| format!("authorization endpoint: {e}"))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &config.client_id)
        .append_pair("redirect_uri", &config.redirect_uri)
        .append_pair("scope", "openid profile email")
        .append_pair("state", &secrets.state)
        .append_pair("nonce", &secrets.nonce)
        .append_pair("code_challenge", &pkce_challenge(&secrets.verifier))
        .append_pair("code_challenge_method", "S256");
    Ok(url.into())
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the form-urlencoded id and secret.
    Basic,
    /// `client_id` and `client_secret` in the form.
    Post,
}

/// `client_secret_basic` unless the provider advertises only `client_secret_post`.
pub fn client_auth(metadata: &ProviderMetadata) -> ClientAuth {
    match &metadata.token_endpoint_auth_methods_supported {
        Some(methods)
            if !methods.iter().any(|m| m == "client_secret_basic")
                && methods.iter().any(|m| m == "client_secret_post") =>
        {
            ClientAuth::Post
        }
        _ => ClientAuth::Basic,
    }
}

/// What an ID token must say to be accepted (Core §3.1.3.7).
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
}

/// The claim checks of Core §3.1.3.7 on a token whose signature verified, at `now` (the
/// server's clock) with [`LEEWAY`]: `iss` exactly the issuer (2); `aud` our client id and no
/// other audience, which we do not trust (3); `azp`, when present, our client id (4, 5); `exp`
/// not passed (9); `iat` present and not in the future (10); `nonce` the one sent in the
/// authentication request (11). `sub` is required (Core §2).
pub fn check_claims(
    claims: &Value,
    expected: &Expected<'_>,
    now: OffsetDateTime,
) -> Result<(), String> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    match text("iss") {
        Some(iss) if iss == expected.issuer => {}
        other => return Err(format!("issuer {other:?} is not {:?}", expected.issuer)),
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if audiences.is_empty() || audiences.iter().any(|a| *a != expected.client_id) {
        return Err(format!(
            "issued for audience {audiences:?}, not this client ({:?})",
            expected.client_id
        ));
    }
    if let Some(azp) = claims.get("azp") {
        if azp.as_str() != Some(expected.client_id) {
            return Err(format!("authorized party {azp} is not this client"));
        }
    }
    if text("sub").is_none_or(str::is_empty) {
        return Err("no subject (sub)".into());
    }
    federated::check_times(claims, now).map_err(|e| match e {
        federated::TokenError::Invalid(words) => words,
        other => other.to_string(),
    })?;
    let iat = claims
        .get("iat")
        .and_then(Value::as_f64)
        .ok_or("no issue time (iat)")?;
    if (iat as i64).saturating_sub(LEEWAY.as_secs() as i64) > now.unix_timestamp() {
        return Err("issued in the future (iat)".into());
    }
    if text("nonce") != Some(expected.nonce) {
        return Err("the nonce is not the one of this sign-in".into());
    }
    Ok(())
}

/// The signing algorithms accepted: asymmetric ones (a key from the JWKS; never `none`, never
/// an HMAC over the client secret) that the provider advertises, RS256 when it lists none
/// (Core §3.1.3.7 item 7; Discovery 1.0 §3).
fn algorithm_allowed(alg: Algorithm, metadata: &ProviderMetadata) -> bool {
    use Algorithm::*;
    let asymmetric = matches!(
        alg,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 | ES256 | ES384 | EdDSA
    );
    let name = format!("{alg:?}");
    let advertised = if metadata.id_token_signing_alg_values_supported.is_empty() {
        alg == RS256
    } else {
        metadata
            .id_token_signing_alg_values_supported
            .contains(&name)
    };
    asymmetric && advertised
}

/// A provider as configured: its discovery document and keys, cached.
pub struct Client {
    config: ClientConfig,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    /// Held across a discovery fetch, so concurrent sign-ins wait for one fetch.
    discovered: tokio::sync::Mutex<Option<Discovered>>,
}

struct Discovered {
    metadata: Arc<ProviderMetadata>,
    fetched_at: OffsetDateTime,
    keys: Arc<JwksKeys>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the token endpoint answers, success or error (RFC 6749 §5.1, §5.2; Core §3.1.3.3).
#[derive(Debug, Default, Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

impl Client {
    /// A client for `config`; nothing is fetched before the first sign-in.
    pub fn new(config: ClientConfig, clock: Arc<dyn Clock>) -> Result<Self, crate::Error> {
        // No redirects: a provider's answer must not send our requests elsewhere (SSRF).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| crate::Error::Config(format!("oidc: HTTP client: {e}")))?;
        Ok(Client {
            config,
            clock,
            http,
            discovered: tokio::sync::Mutex::new(None),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The provider's metadata and keys: the cached document while younger than
    /// [`DISCOVERY_TTL`], else read again (the key cache is kept while `jwks_uri` stays).
    async fn discover(&self) -> Result<(Arc<ProviderMetadata>, Arc<JwksKeys>), OidcError> {
        let mut discovered = self.discovered.lock().await;
        let now = self.clock.now();
        if let Some(d) = discovered.as_ref() {
            if now >= d.fetched_at && now - d.fetched_at < DISCOVERY_TTL {
                return Ok((Arc::clone(&d.metadata), Arc::clone(&d.keys)));
            }
        }
        let url = discovery_url(&self.config.issuer);
        let metadata = self
            .read(self.http.get(&url))
            .await
            .and_then(|(status, body)| {
                if status.is_success() {
                    Ok(body)
                } else {
                    Err(format!("HTTP {status}"))
                }
            })
            .and_then(|body| parse_metadata(&self.config.issuer, &body))
            .map_err(|e| OidcError::Unreachable(format!("{url}: {e}")))?;
        let metadata = Arc::new(metadata);
        let keys = match discovered.take() {
            Some(d) if d.metadata.jwks_uri == metadata.jwks_uri => d.keys,
            _ => Arc::new(JwksKeys::fetched(
                metadata.jwks_uri.clone(),
                Arc::clone(&self.clock),
                Arc::new(HttpFetcher::with_client(
                    self.http.clone(),
                    &metadata.jwks_uri,
                )),
            )),
        };
        tracing::info!(issuer = %self.config.issuer, "read the OpenID provider's discovery document");
        *discovered = Some(Discovered {
            metadata: Arc::clone(&metadata),
            fetched_at: now,
            keys: Arc::clone(&keys),
        });
        Ok((metadata, keys))
    }

    /// Sends `request` and reads at most [`MAX_BODY_BYTES`] of the answer.
    async fn read(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), String> {
        let response = request
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_BODY_BYTES {
            return Err("answer larger than 1 MiB".into());
        }
        Ok((status, body.to_vec()))
    }

    /// Where to send the browser to sign in with `secrets`.
    pub async fn authorization_url(&self, secrets: &FlowSecrets) -> Result<String, OidcError> {
        let (metadata, _) = self.discover().await?;
        authorization_url(&metadata, &self.config, secrets).map_err(OidcError::Unreachable)
    }

    /// Exchanges `code` with the sign-in's PKCE verifier (RFC 7636 §4.5) and returns the claims
    /// of the ID token once it passed every check of Core §3.1.3.7.
    pub async fn sign_in(&self, code: &str, secrets: &FlowSecrets) -> Result<Value, OidcError> {
        let (metadata, keys) = self.discover().await?;
        let id_token = self.exchange(&metadata, code, &secrets.verifier).await?;
        let header = jsonwebtoken::decode_header(&id_token)
            .map_err(|e| OidcError::IdToken(format!("not a JWT: {e}")))?;
        if !algorithm_allowed(header.alg, &metadata) {
            return Err(OidcError::IdToken(format!(
                "signing algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let jwk = keys
            .key(header.kid.as_deref())
            .await
            .map_err(|e| OidcError::IdToken(e.to_string()))?;
        // A key that names its algorithm is used with that one only (RFC 7517 §4.4).
        if let Some(key_alg) = jwk.common.key_algorithm {
            if format!("{key_alg:?}") != format!("{:?}", header.alg) {
                return Err(OidcError::IdToken(format!(
                    "key {:?} is for {key_alg:?}, the token says {:?}",
                    header.kid, header.alg
                )));
            }
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| OidcError::IdToken(e.to_string()))?;
        // The signature only: the claims are checked by `check_claims`, times on our clock.
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Value>(&id_token, &key, &validation)
            .map_err(|e| OidcError::IdToken(e.to_string()))?
            .claims;
        let expected = Expected {
            issuer: &metadata.issuer,
            client_id: &self.config.client_id,
            nonce: &secrets.nonce,
        };
        check_claims(&claims, &expected, self.clock.now()).map_err(OidcError::IdToken)?;
        Ok(claims)
    }

    /// The token request (RFC 6749 §4.1.3 with RFC 7636 §4.5's `code_verifier`): the ID token
    /// of a successful answer, else the provider's words.
    async fn exchange(
        &self,
        metadata: &ProviderMetadata,
        code: &str,
        verifier: &str,
    ) -> Result<String, OidcError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.config.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ];
        let mut request = self.http.post(&metadata.token_endpoint);
        match client_auth(metadata) {
            ClientAuth::Basic => {
                // Each part form-urlencoded before joining (RFC 6749 §2.3.1).
                let part = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect();
                let id: String = part(&self.config.client_id);
                let secret: String = part(&self.config.client_secret);
                request = request.header(
                    "authorization",
                    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
                );
            }
            ClientAuth::Post => {
                form.push(("client_id", self.config.client_id.as_str()));
                form.push(("client_secret", self.config.client_secret.as_str()));
            }
        }
        let (status, body) = self
            .read(request.form(&form))
            .await
            .map_err(|e| OidcError::Unreachable(format!("{}: {e}", metadata.token_endpoint)))?;
        let answer: TokenResponse = serde_json::from_slice(&body).unwrap_or_default();
        if !status.is_success() || answer.error.is_some() {
            let words = match (answer.error, answer.error_description) {
                (Some(e), Some(d)) if !d.is_empty() => format!("{e}: {d}"),
                (Some(e), _) => e,
                (None, _) => format!("HTTP {status}"),
            };
            return Err(OidcError::Exchange(words));
        }
        answer
            .id_token
            .ok_or_else(|| OidcError::IdToken("the provider sent no ID token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-06 12:00 UTC);

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "https://login.example/tenant/v2.0",
            client_id: "console",
            nonce: "n-0S6_WzA2Mj",
        }
    }

    fn claims() -> Value {
        let now = NOW.unix_timestamp();
        json!({
            "iss": "https://login.example/tenant/v2.0",
            "aud": "console",
            "sub": "248289761001",
            "iat": now,
            "exp": now + 3600,
            "nonce": "n-0S6_WzA2Mj",
        })
    }

    fn with(changes: Value) -> Value {
        let mut c = claims();
        for (k, v) in changes.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let secrets = FlowSecrets::random();
        assert_eq!(secrets.verifier.len(), 43, "RFC 7636 §4.1: 43 to 128");
        assert_ne!(secrets.state, secrets.nonce);
    }

    #[test]
    fn a_sound_id_token_passes_and_each_wrong_claim_is_refused() {
        let now = NOW.unix_timestamp();
        assert_eq!(check_claims(&claims(), &expected(), NOW), Ok(()));
        assert_eq!(
            check_claims(&with(json!({"aud": ["console"]})), &expected(), NOW),
            Ok(())
        );
        let refused = |changes: Value, words: &str| {
            let e = check_claims(&with(changes.clone()), &expected(), NOW).unwrap_err();
            assert!(e.contains(words), "{changes}: {e}");
        };
        refused(json!({"aud": "another-client"}), "audience");
        refused(json!({"aud": ["console", "another-client"]}), "audience");
        refused(json!({"azp": "another-client"}), "authorized party");
        refused(json!({"iss": "https://evil.example"}), "issuer");
        refused(
            json!({"iss": "https://login.example/tenant/v2.0/"}),
            "issuer",
        );
        refused(json!({"exp": now - 61}), "expired");
        refused(json!({"iat": now + 120}), "future");
        refused(json!({"iat": null}), "iat");
        refused(json!({"nonce": "another"}), "nonce");
        refused(json!({"nonce": null}), "nonce");
        refused(json!({"sub": ""}), "subject");
        // Within the leeway: a clock a little behind or ahead is not a refusal.
        assert_eq!(
            check_claims(
                &with(json!({"exp": now - 30, "iat": now + 30})),
                &expected(),
                NOW
            ),
            Ok(())
        );
    }

    fn metadata(auth: Option<&[&str]>, algs: &[&str]) -> ProviderMetadata {
        ProviderMetadata {
            issuer: "https://login.example".into(),
            authorization_endpoint: "https://login.example/authorize?tenant=x".into(),
            token_endpoint: "https://login.example/token".into(),
            jwks_uri: "https://login.example/keys".into(),
            token_endpoint_auth_methods_supported: auth
                .map(|a| a.iter().map(|s| s.to_string()).collect()),
            id_token_signing_alg_values_supported: algs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_authorization_url_carries_the_flow_and_keeps_the_endpoint_query() {
        let config = ClientConfig {
            issuer: "https://login.example".into(),
            client_id: "con sole".into(),
            client_secret: "s".into(),
            redirect_uri: "https://mdm.example/console/sign-in/oidc/callback".into(),
        };
        let secrets = FlowSecrets {
            state: "st".into(),
            nonce: "no".into(),
            verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
        };
        let url = authorization_url(&metadata(None, &[]), &config, &secrets).unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("tenant"), Some("x"));
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some("con sole"));
        assert_eq!(get("scope"), Some("openid profile email"));
        assert_eq!(get("state"), Some("st"));
        assert_eq!(get("nonce"), Some("no"));
        assert_eq!(
            get("code_challenge"),
            Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        );
        assert_eq!(get("code_challenge_method"), Some("S256"));
    }

    #[test]
    fn discovery_client_auth_and_algorithms_follow_the_document() {
        assert_eq!(
            discovery_url("https://login.example/tenant/v2.0/"),
            "https://login.example/tenant/v2.0/.well-known/openid-configuration"
        );
        let doc =
            br#"{"issuer":"https://a.example","authorization_endpoint":"https://a.example/auth",
            "token_endpoint":"https://a.example/token","jwks_uri":"https://a.example/keys"}"#;
        assert!(parse_metadata("https://a.example", doc).is_ok());
        let e = parse_metadata("https://b.example", doc).unwrap_err();
        assert!(e.contains("not the configured"), "{e}");
        assert!(parse_metadata("https://a.example", b"{}").is_err());

        assert_eq!(client_auth(&metadata(None, &[])), ClientAuth::Basic);
        let both = ["client_secret_post", "client_secret_basic"];
        assert_eq!(client_auth(&metadata(Some(&both), &[])), ClientAuth::Basic);
        let post = ["client_secret_post"];
        assert_eq!(client_auth(&metadata(Some(&post), &[])), ClientAuth::Post);

        assert!(algorithm_allowed(Algorithm::RS256, &metadata(None, &[])));
        assert!(!algorithm_allowed(Algorithm::ES256, &metadata(None, &[])));
        let listed = metadata(None, &["RS256", "ES256", "HS256"]);
        assert!(algorithm_allowed(Algorithm::ES256, &listed));
        assert!(!algorithm_allowed(Algorithm::HS256, &listed), "no HMAC");
    }
}
