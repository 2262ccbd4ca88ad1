//! Federated enrollment: an Entra-style JWT (RS256) in the WS-Security BinarySecurityToken,
//! checked against a configured issuer, audience, tenant and JSON Web Key Set (docs/protocol.md
//! §2.4, §2.7: "MDM must validate signature and audience").
//!
//! The key set comes from a file (read once) or a URL. A URL's keys are cached in memory for the
//! response's `Cache-Control: max-age` (else [`DEFAULT_TTL`]), refetched when they expire or when
//! a token names a key id the cache does not have (the issuer rotated its key), at most once per
//! [`REFETCH_INTERVAL`]; a failed fetch keeps the last good keys. The rules are the pure
//! [`KeyCache`]; [`JwksKeys`] does the I/O around them (the console's OpenID Connect sign-in,
//! [`crate::oidc`], uses it too) and [`FederatedAuth`] checks tokens with its keys.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use redeploy_core::Clock;
use time::OffsetDateTime;

use crate::settings::{FederatedSettings, JwksSource};

/// At most one fetch of the key set per this interval, whatever tokens arrive: a token with an
/// unknown key id inside it is refused at once instead of hammering the issuer.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// How long fetched keys are fresh when the response says nothing (`Cache-Control: max-age`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Fetched keys are refetched after at most this long, whatever the response says.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// A fetch that takes longer fails (the enrollment waiting on it is refused, not stuck).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(60);
/// A key set larger than this is refused.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Why a federated token was refused (all answered with `s:Authentication`).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("no signing key {0:?} in the issuer's key set")]
    UnknownKey(Option<String>),
    #[error("the token was refused: {0}")]
    Invalid(String),
}

/// The identity a valid token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedIdentity {
    /// `upn`, else `unique_name`, else `preferred_username`.
    pub upn: Option<String>,
    /// `oid` (Entra object id of the user), if present.
    pub object_id: Option<String>,
    /// `tid` (tenant), if present.
    pub tenant_id: Option<String>,
    /// `deviceid`: the Entra device the token was issued to (device-bound tokens of an
    /// Entra join), if present.
    pub device_id: Option<String>,
}

/// What to do for a token, given the cache ([`KeyCache::plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The cached keys answer: use them.
    UseCached,
    /// Fetch the key set first (none yet, expired, or the key id is unknown).
    Fetch,
    /// The key id is unknown and a fetch happened too recently: refuse the token.
    Refuse,
}

/// The cached key set of a JWKS URL and when it was fetched: the pure rules of caching, expiry,
/// rotation and rate limiting. Times come from the caller's clock.
#[derive(Debug, Clone, Default)]
pub struct KeyCache {
    /// The last key set fetched successfully.
    keys: Option<JwkSet>,
    /// Until when `keys` are fresh.
    fresh_until: Option<OffsetDateTime>,
    /// The last fetch attempt, successful or not (the rate limit counts both).
    last_attempt: Option<OffsetDateTime>,
}

impl KeyCache {
    /// A cache holding `keys` for ever (a key set read from a file).
    pub fn fixed(keys: JwkSet) -> Self {
        KeyCache {
            keys: Some(keys),
            fresh_until: Some(OffsetDateTime::now_utc() + time::Duration::days(365 * 1000)),
            last_attempt: None,
        }
    }

    /// The key a token names: by `kid`, or the only key of a one-key set when it names none.
    pub fn find(&self, kid: Option<&str>) -> Option<&Jwk> {
        let keys = self.keys.as_ref()?;
        match kid {
            Some(kid) => keys.find(kid),
            None if keys.keys.len() == 1 => keys.keys.first(),
            None => None,
        }
    }

    /// Whether a fetch may start at `now` ([`REFETCH_INTERVAL`] since the last attempt).
    pub fn may_fetch(&self, now: OffsetDateTime) -> bool {
        self.last_attempt
            .is_none_or(|at| now - at >= REFETCH_INTERVAL || now < at)
    }

    /// What to do for a token naming `kid` at `now`: use the cache when it is fresh and has the
    /// key; fetch when the keys expired or the key is unknown, if the rate limit allows; an
    /// expired cache that has the key is still used when it does not (and after a failed
    /// fetch: [`KeyCache::fetched`] keeps the last good keys).
    pub fn plan(&self, kid: Option<&str>, now: OffsetDateTime) -> Plan {
        let fresh = self.fresh_until.is_some_and(|until| now < until);
        let known = self.find(kid).is_some();
        match (known, fresh, self.may_fetch(now)) {
            (true, true, _) | (true, false, false) => Plan::UseCached,
            (_, _, true) => Plan::Fetch,
            (false, _, false) => Plan::Refuse,
        }
    }

    /// Records a fetch attempt made at `now`: a success replaces the keys, fresh for `max_age`
    /// (else [`DEFAULT_TTL`]) within [`REFETCH_INTERVAL`]..=[`MAX_TTL`]; a failure keeps the
    /// last good keys and their expiry.
    pub fn fetched(&mut self, now: OffsetDateTime, result: Result<Fetched, String>) {
        self.last_attempt = Some(now);
        if let Ok(f) = result {
            let ttl = f
                .max_age
                .unwrap_or(DEFAULT_TTL)
                .clamp(REFETCH_INTERVAL, MAX_TTL);
            self.fresh_until = Some(now + ttl);
            self.keys = Some(f.keys);
        }
    }
}

/// A key set as fetched, with the lifetime its response gave it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub keys: JwkSet,
    /// `Cache-Control: max-age` of the response, if any.
    pub max_age: Option<Duration>,
}

/// `max-age` of a `Cache-Control` header value (RFC 9111 §5.2.2.1); `no-store` and `no-cache`
/// count as 0.
pub fn cache_control_max_age(value: &str) -> Option<Duration> {
    let mut out = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            out = secs.trim_matches('"').parse().ok().map(Duration::from_secs);
        }
    }
    out
}

/// Fetches a key set (the I/O side of [`KeyCache`]).
#[async_trait::async_trait]
pub trait JwksFetcher: Send + Sync {
    async fn fetch(&self) -> Result<Fetched, String>;
}

/// Fetches a JWKS URL with `reqwest`.
#[derive(Debug)]
pub struct HttpFetcher {
    client: reqwest::Client,
    url: String,
}

/// Whether `url` may serve keys: `https`, or plain `http` to a loopback address (a local test
/// issuer such as `redeploy test-issuer`).
pub fn check_jwks_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "{url}: plain http is allowed only on a loopback address; use https"
                ))
            }
        }
        other => Err(format!("{url}: unsupported scheme {other:?}")),
    }
}

impl HttpFetcher {
    /// A fetcher for `url` over `client` (whose timeouts, roots and redirect policy it keeps).
    pub fn with_client(client: reqwest::Client, url: &str) -> Self {
        HttpFetcher {
            client,
            url: url.to_string(),
        }
    }

    /// A fetcher for `url`, trusting the public roots and the PEM certificates of `ca_file`.
    pub fn new(url: &str, ca_file: Option<&std::path::Path>) -> Result<Self, crate::Error> {
        check_jwks_url(url).map_err(|e| crate::Error::Config(format!("federated: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|source| crate::Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                crate::Error::Config(format!("{}: not PEM certificates: {e}", path.display()))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| crate::Error::Config(format!("federated: HTTP client: {e}")))?;
        Ok(HttpFetcher {
            client,
            url: url.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl JwksFetcher for HttpFetcher {
    async fn fetch(&self) -> Result<Fetched, String> {
        let response = self
            .client
            .get(&self.url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        if !response.status().is_success() {
            return Err(format!("{}: HTTP {}", self.url, response.status()));
        }
        let max_age = response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .and_then(cache_control_max_age);
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!("{}: key set larger than 1 MiB", self.url));
        }
        let keys: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| format!("{}: not a JSON Web Key Set: {e}", self.url))?;
        Ok(Fetched { keys, max_age })
    }
}

/// The keys of one issuer: a key set read once, or a JWKS URL behind the [`KeyCache`] rules,
/// fetched on the server's clock. Shared by federated enrollment and the console's OpenID
/// Connect sign-in ([`crate::oidc`]).
pub struct JwksKeys {
    /// The file or URL, for the log.
    source: String,
    clock: Arc<dyn Clock>,
    /// `None` for a key set read from a file (never refetched).
    fetcher: Option<Arc<dyn JwksFetcher>>,
    /// Held across a fetch, so concurrent tokens wait for one fetch (bounded by
    /// [`FETCH_TIMEOUT`]) instead of starting their own.
    cache: tokio::sync::Mutex<KeyCache>,
}

impl std::fmt::Debug for JwksKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksKeys")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl JwksKeys {
    /// Keys that never change (a key set read from a file).
    pub fn fixed(source: impl Into<String>, clock: Arc<dyn Clock>, keys: JwkSet) -> Self {
        JwksKeys {
            source: source.into(),
            clock,
            fetcher: None,
            cache: tokio::sync::Mutex::new(KeyCache::fixed(keys)),
        }
    }

    /// Keys fetched by `fetcher` when [`KeyCache::plan`] says so (nothing is fetched before the
    /// first token).
    pub fn fetched(
        source: impl Into<String>,
        clock: Arc<dyn Clock>,
        fetcher: Arc<dyn JwksFetcher>,
    ) -> Self {
        JwksKeys {
            source: source.into(),
            clock,
            fetcher: Some(fetcher),
            cache: tokio::sync::Mutex::new(KeyCache::default()),
        }
    }

    /// The key `kid` names, fetching the key set first when [`KeyCache::plan`] says so.
    pub async fn key(&self, kid: Option<&str>) -> Result<Jwk, TokenError> {
        let mut cache = self.cache.lock().await;
        let now = self.clock.now();
        let plan = match &self.fetcher {
            Some(_) => cache.plan(kid, now),
            None => Plan::UseCached,
        };
        if let (Plan::Fetch, Some(fetcher)) = (plan, &self.fetcher) {
            let result = match tokio::time::timeout(FETCH_TIMEOUT, fetcher.fetch()).await {
                Ok(r) => r,
                Err(_) => Err("timed out".into()),
            };
            match &result {
                Ok(f) => tracing::info!(
                    jwks = %self.source,
                    keys = f.keys.keys.len(),
                    "fetched the issuer's key set"
                ),
                Err(e) => tracing::warn!(
                    jwks = %self.source,
                    error = %e,
                    "fetching the issuer's key set failed; keeping the last good keys"
                ),
            }
            cache.fetched(now, result);
        }
        cache
            .find(kid)
            .cloned()
            .ok_or_else(|| TokenError::UnknownKey(kid.map(str::to_string)))
    }
}

/// A verifier for one issuer.
pub struct FederatedAuth {
    settings: FederatedSettings,
    clock: Arc<dyn Clock>,
    keys: JwksKeys,
}

impl std::fmt::Debug for FederatedAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederatedAuth")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl FederatedAuth {
    /// A verifier for `settings`: reads the JWKS file, or prepares the fetcher of the JWKS URL
    /// (nothing is fetched until the first token).
    pub fn load(settings: &FederatedSettings, clock: Arc<dyn Clock>) -> Result<Self, crate::Error> {
        match &settings.jwks {
            JwksSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| crate::Error::Io {
                    path: path.clone(),
                    source,
                })?;
                Self::from_jwks(settings.clone(), clock, &text)
            }
            JwksSource::Url(url) => {
                let fetcher = HttpFetcher::new(url, settings.jwks_ca_file.as_deref())?;
                Ok(Self::with_fetcher(
                    settings.clone(),
                    clock,
                    Arc::new(fetcher),
                ))
            }
        }
    }

    /// A verifier from the text of a JSON Web Key Set (never refetched).
    pub fn from_jwks(
        settings: FederatedSettings,
        clock: Arc<dyn Clock>,
        jwks_json: &str,
    ) -> Result<Self, crate::Error> {
        let keys: JwkSet = serde_json::from_str(jwks_json).map_err(|e| {
            crate::Error::Config(format!(
                "{}: not a JSON Web Key Set: {e}",
                settings.jwks.describe()
            ))
        })?;
        Ok(FederatedAuth {
            keys: JwksKeys::fixed(settings.jwks.describe(), Arc::clone(&clock), keys),
            settings,
            clock,
        })
    }

    /// A verifier whose keys come from `fetcher` (a JWKS URL; a fake one in tests).
    pub fn with_fetcher(
        settings: FederatedSettings,
        clock: Arc<dyn Clock>,
        fetcher: Arc<dyn JwksFetcher>,
    ) -> Self {
        FederatedAuth {
            keys: JwksKeys::fetched(settings.jwks.describe(), Arc::clone(&clock), fetcher),
            settings,
            clock,
        }
    }

    pub fn settings(&self) -> &FederatedSettings {
        &self.settings
    }

    /// Verifies signature (RS256 only), `iss`, `aud`, `exp` and `nbf` (with [`LEEWAY`], against
    /// the server's clock) and, when a tenant is configured, `tid`.
    pub async fn verify(&self, token: &str) -> Result<FederatedIdentity, TokenError> {
        let kid = read_header(token)?;
        let jwk = self.keys.key(kid.as_deref()).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| TokenError::Invalid(e.to_string()))?;
        verify_with_key(token, &key, &self.settings, self.clock.now())
    }
}

/// The untrusted header of a token, read before anything is checked: the key id it names.
/// Refuses what is not a JWT and any algorithm but RS256.
pub fn read_header(token: &str) -> Result<Option<String>, TokenError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
    if header.alg != Algorithm::RS256 {
        return Err(TokenError::Invalid(format!(
            "algorithm {:?}; only RS256 is accepted",
            header.alg
        )));
    }
    Ok(header.kid)
}

/// Checks a token with the key its header named: the RS256 signature, `iss` and `aud` of
/// `settings`, then [`check_claims`] at `now`. Pure: the key and the time are parameters.
pub fn verify_with_key(
    token: &str,
    key: &DecodingKey,
    settings: &FederatedSettings,
    now: OffsetDateTime,
) -> Result<FederatedIdentity, TokenError> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&[&settings.audience]);
    // Times are checked by `check_claims` against our clock, not the system's.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(token, key, &validation)
        .map_err(|e| TokenError::Invalid(e.to_string()))?;
    check_claims(&data.claims, now, settings.tenant_id.as_deref())
}

/// The identity of a token's claims: `exp` and `nbf` at `now` (with [`LEEWAY`]), the user,
/// object, tenant and device ids, and the tenant when one is configured.
pub fn check_claims(
    claims: &serde_json::Value,
    now: OffsetDateTime,
    tenant: Option<&str>,
) -> Result<FederatedIdentity, TokenError> {
    check_times(claims, now)?;
    let claim = |name: &str| {
        claims
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let identity = FederatedIdentity {
        upn: claim("upn")
            .or_else(|| claim("unique_name"))
            .or_else(|| claim("preferred_username")),
        object_id: claim("oid"),
        tenant_id: claim("tid"),
        device_id: claim("deviceid"),
    };
    if let Some(tenant) = tenant {
        if !identity
            .tenant_id
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(tenant))
        {
            return Err(TokenError::Invalid(format!(
                "tenant {:?} is not the configured tenant",
                identity.tenant_id
            )));
        }
    }
    Ok(identity)
}

/// `exp` (required) and `nbf` (if present) against `now`, with [`LEEWAY`].
pub(crate) fn check_times(
    claims: &serde_json::Value,
    now: OffsetDateTime,
) -> Result<(), TokenError> {
    let now = now.unix_timestamp();
    let leeway = LEEWAY.as_secs() as i64;
    let seconds = |name: &str| claims.get(name).and_then(serde_json::Value::as_f64);
    let exp = seconds("exp").ok_or_else(|| TokenError::Invalid("no exp claim".into()))?;
    // `as` saturates a huge or negative claim at the i64 bounds; the leeway must not overflow
    // past them (a signed `exp` of 1e30 is "never expires", not a panic).
    if (exp as i64).saturating_add(leeway) <= now {
        return Err(TokenError::Invalid("the token has expired".into()));
    }
    if let Some(nbf) = seconds("nbf") {
        if (nbf as i64).saturating_sub(leeway) > now {
            return Err(TokenError::Invalid("the token is not valid yet".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn set(kids: &[&str]) -> JwkSet {
        let keys: Vec<serde_json::Value> = kids
            .iter()
            .map(|kid| {
                serde_json::json!({"kty": "RSA", "kid": kid, "alg": "RS256", "n": "sXch", "e": "AQAB"})
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "keys": keys })).unwrap()
    }

    fn ok(kids: &[&str], max_age: Option<u64>) -> Result<Fetched, String> {
        Ok(Fetched {
            keys: set(kids),
            max_age: max_age.map(Duration::from_secs),
        })
    }

    const T0: OffsetDateTime = datetime!(2027-03-01 08:00 UTC);

    fn secs(n: i64) -> time::Duration {
        time::Duration::seconds(n)
    }

    #[test]
    fn an_empty_cache_fetches_then_answers_from_memory() {
        let mut c = KeyCache::default();
        assert_eq!(c.plan(Some("k1"), T0), Plan::Fetch);
        c.fetched(T0, ok(&["k1"], Some(600)));
        assert_eq!(c.plan(Some("k1"), T0 + secs(1)), Plan::UseCached);
        assert_eq!(c.plan(Some("k1"), T0 + secs(599)), Plan::UseCached);
        assert_eq!(
            c.plan(Some("k1"), T0 + secs(600)),
            Plan::Fetch,
            "max-age ran out"
        );
    }

    #[test]
    fn an_unknown_key_id_refetches_at_most_once_per_interval() {
        let mut c = KeyCache::default();
        c.fetched(T0, ok(&["k1"], None));
        // Rotation right after a fetch: refused until the interval has passed, never blocked.
        assert_eq!(c.plan(Some("k2"), T0 + secs(29)), Plan::Refuse);
        assert_eq!(c.plan(Some("k2"), T0 + secs(30)), Plan::Fetch);
        c.fetched(T0 + secs(30), ok(&["k1", "k2"], None));
        assert_eq!(c.plan(Some("k2"), T0 + secs(31)), Plan::UseCached);
        // A token naming a key the issuer never had costs one fetch per interval at most.
        assert_eq!(c.plan(Some("bogus"), T0 + secs(31)), Plan::Refuse);
        assert_eq!(c.plan(Some("bogus"), T0 + secs(60)), Plan::Fetch);
        c.fetched(T0 + secs(60), ok(&["k1", "k2"], None));
        assert_eq!(c.plan(Some("bogus"), T0 + secs(61)), Plan::Refuse);
        assert!(c.find(Some("bogus")).is_none());
    }

    #[test]
    fn a_failed_fetch_keeps_the_last_good_keys() {
        let mut c = KeyCache::default();
        c.fetched(T0, ok(&["k1"], Some(60)));
        let later = T0 + secs(120);
        assert_eq!(c.plan(Some("k1"), later), Plan::Fetch, "expired");
        c.fetched(later, Err("connection refused".into()));
        assert!(c.find(Some("k1")).is_some(), "still there");
        // Expired, and the rate limit holds the next fetch: the old key still verifies.
        assert_eq!(c.plan(Some("k1"), later + secs(10)), Plan::UseCached);
        assert_eq!(c.plan(Some("k1"), later + secs(30)), Plan::Fetch);
        // A failed first fetch leaves nothing to verify with.
        let mut empty = KeyCache::default();
        empty.fetched(T0, Err("down".into()));
        assert_eq!(empty.plan(Some("k1"), T0 + secs(5)), Plan::Refuse);
    }

    #[test]
    fn lifetimes_are_clamped() {
        let mut c = KeyCache::default();
        c.fetched(T0, ok(&["k1"], Some(0)));
        assert_eq!(c.plan(Some("k1"), T0 + secs(29)), Plan::UseCached);
        assert_eq!(c.plan(Some("k1"), T0 + secs(30)), Plan::Fetch);
        c.fetched(T0, ok(&["k1"], Some(10 * 86_400)));
        assert_eq!(c.plan(Some("k1"), T0 + secs(86_399)), Plan::UseCached);
        assert_eq!(c.plan(Some("k1"), T0 + secs(86_400)), Plan::Fetch);
        c.fetched(T0, ok(&["k1"], None));
        assert_eq!(c.plan(Some("k1"), T0 + secs(3599)), Plan::UseCached);
        assert_eq!(c.plan(Some("k1"), T0 + secs(3600)), Plan::Fetch);
    }

    #[test]
    fn a_token_without_key_id_needs_a_one_key_set() {
        let mut c = KeyCache::default();
        c.fetched(T0, ok(&["k1"], None));
        assert!(c.find(None).is_some());
        c.fetched(T0, ok(&["k1", "k2"], None));
        assert!(c.find(None).is_none());
    }

    #[test]
    fn cache_control_is_read() {
        assert_eq!(
            cache_control_max_age("public, max-age=86400"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(cache_control_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(cache_control_max_age("public"), None);
        assert_eq!(cache_control_max_age("max-age=soon"), None);
    }

    #[test]
    fn jwks_urls_are_https_or_loopback_http() {
        assert!(
            check_jwks_url("https://login.microsoftonline.com/common/discovery/v2.0/keys").is_ok()
        );
        assert!(check_jwks_url("http://127.0.0.1:8080/keys").is_ok());
        assert!(check_jwks_url("http://[::1]:8080/keys").is_ok());
        assert!(check_jwks_url("http://localhost/keys").is_ok());
        assert!(check_jwks_url("http://issuer.example/keys").is_err());
        assert!(check_jwks_url("ftp://127.0.0.1/keys").is_err());
        assert!(check_jwks_url("not a url").is_err());
    }

    #[test]
    fn times_are_checked_against_the_given_clock() {
        let now = T0.unix_timestamp();
        let claims = |exp: i64, nbf: i64| serde_json::json!({"exp": exp, "nbf": nbf});
        assert!(check_times(&claims(now + 10, now - 10), T0).is_ok());
        assert!(
            check_times(&claims(now - 30, now - 100), T0).is_ok(),
            "leeway"
        );
        assert!(check_times(&claims(now - 61, now - 100), T0).is_err());
        assert!(check_times(&claims(now + 600, now + 61), T0).is_err());
        assert!(check_times(&serde_json::json!({}), T0).is_err());
    }

    /// Found by the fuzzer (fuzz/regressions/jwt/exp-overflow.jwt): an `exp` beyond i64 made
    /// `exp + leeway` overflow.
    #[test]
    fn times_at_the_ends_of_the_range_do_not_overflow() {
        let at = |exp: f64, nbf: f64| check_times(&serde_json::json!({"exp": exp, "nbf": nbf}), T0);
        assert!(at(1.8e33, 0.0).is_ok());
        assert!(at(-1.8e33, 0.0).is_err());
        assert!(at(1.8e33, -1.8e33).is_ok());
        assert!(at(1.8e33, 1.8e33).is_err());
    }
}
