//! A small local token issuer standing in for Microsoft Entra ID in tests and demos. Plain HTTP
//! on a loopback address (the server accepts `http` JWKS URLs only there):
//!
//! - `GET /.well-known/openid-configuration`: the OpenID discovery document (`issuer`,
//!   `jwks_uri`, `token_endpoint`), shaped like Entra's v2.0 one;
//! - `GET /keys`: the JSON Web Key Set (RS256 keys, `kid` each), with
//!   `Cache-Control: public, max-age=N`;
//! - `POST /token`: mints a token (JSON in, `{"access_token", "tenant_id"}` out) — a device
//!   token of an Entra join (`deviceid`, `tid`, no `upn`) or a user token (`upn`, `oid`, `tid`);
//!   this endpoint is the emulator's stand-in for the PC asking Entra for a token;
//! - `POST /rotate`: a new signing key; the previous one stays published (as Entra publishes
//!   both around a rollover) unless `?retire=true`;
//! - `GET /authorize` and `POST /oauth2/token`: an OpenID Connect provider for the console's
//!   sign-in ([`sign_in`]): the authorization endpoint sends the browser straight back with a code
//!   for the user set by [`RunningIssuer::set_sign_in_user`], the token endpoint checks the client
//!   secret and the PKCE verifier and answers with an ID token.
//!
//! While [`RunningIssuer::set_available`] is false, every endpoint answers 503 (an outage).
//! Claims follow the Entra token reference (Microsoft's "Access token claims reference":
//! `iss`, `aud`, `tid`, `oid`, `upn`, `deviceid`, `iat`, `nbf`, `exp`). Test code, not a
//! security boundary: anyone who can reach the port can mint tokens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub mod sign_in;
pub use sign_in::{IdTokenFault, SignInUser};

/// How long minted tokens live (Entra access tokens live 60–90 minutes).
pub const TOKEN_LIFETIME_SECS: i64 = 3600;
/// The file under the data folder holding the signing keys (PKCS#8 PEM, newest last).
pub const KEYS_FILE: &str = "issuer-keys.json";

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Key(String),
}

/// How the issuer is set up.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The tenant (`tid`) of every token unless a request names another.
    pub tenant_id: String,
    /// The audience (`aud`) of every token unless a request names another.
    pub audience: String,
    /// `Cache-Control: max-age` of `/keys`, in seconds.
    pub keys_max_age_secs: u64,
    /// Where the signing keys are kept across runs; `None` keeps them in memory.
    pub data_dir: Option<PathBuf>,
    /// The one OpenID Connect client the sign-in endpoints know: its id and secret.
    pub client_id: String,
    pub client_secret: String,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        IssuerConfig {
            tenant_id: "00000000-0000-4000-8000-00000000beef".into(),
            audience: "api://redeploy".into(),
            keys_max_age_secs: 3600,
            data_dir: None,
            client_id: "redeploy-console".into(),
            client_secret: "redeploy-console-test-secret".into(),
        }
    }
}

/// One RS256 signing key.
struct SigningKey {
    kid: String,
    pem: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn generate() -> Result<Self, IssuerError> {
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
            .map_err(|e| IssuerError::Key(e.to_string()))?;
        let pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| IssuerError::Key(e.to_string()))?;
        let kid = hex::encode(rand::random::<[u8; 8]>());
        Self::from_pem(kid, &pem)
    }

    /// `claims` as a JWT signed RS256 by this key (its `kid` in the header).
    fn sign(&self, claims: &Value) -> Result<String, IssuerError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| IssuerError::Key(e.to_string()))
    }

    fn from_pem(kid: String, pem: &str) -> Result<Self, IssuerError> {
        let private =
            rsa::RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| IssuerError::Key(e.to_string()))?;
        let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": b64(private.n().to_bytes_be()), "e": b64(private.e().to_bytes_be()),
        });
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| IssuerError::Key(e.to_string()))?;
        Ok(SigningKey {
            kid,
            pem: pem.to_string(),
            encoding,
            jwk,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    pem: String,
}

/// What a `POST /token` asks for. Every field is optional; the kind decides the claims.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenRequest {
    /// `device` (Entra join: `deviceid`, no `upn`) or `user` (`upn`, `oid`).
    pub kind: TokenKind,
    /// The Entra device id (`deviceid`); a user token carries it too when given (a token
    /// obtained on a joined PC).
    pub device_id: Option<String>,
    pub upn: Option<String>,
    /// The user's object id (`oid`).
    pub object_id: Option<String>,
    /// Another tenant than the issuer's (tests of a wrong tenant).
    pub tenant_id: Option<String>,
    /// Another audience than the issuer's.
    pub audience: Option<String>,
    /// Issue time in Unix seconds (the caller's clock, e.g. an emulator on a manual clock);
    /// the issuer's system clock when absent.
    pub issued_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    #[default]
    Device,
    User,
}

/// What a `POST /token` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    /// The token's `tid`.
    pub tenant_id: String,
}

struct Inner {
    config: IssuerConfig,
    /// `http://127.0.0.1:PORT`: the `iss` of every token.
    url: String,
    /// Published keys; the last one signs.
    keys: Mutex<Vec<SigningKey>>,
    available: AtomicBool,
    keys_served: AtomicU64,
    discovery_served: AtomicU64,
    sign_in: sign_in::Provider,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SigningKey>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn jwks(&self) -> Value {
        json!({ "keys": self.lock().iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }

    fn mint(&self, request: &TokenRequest) -> Result<TokenResponse, IssuerError> {
        let now = request.issued_at.unwrap_or_else(unix_now);
        let tenant = request
            .tenant_id
            .clone()
            .unwrap_or_else(|| self.config.tenant_id.clone());
        let mut claims = json!({
            "iss": self.url,
            "aud": request.audience.clone().unwrap_or_else(|| self.config.audience.clone()),
            "tid": tenant,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECS,
            "ver": "2.0",
        });
        let map = claims
            .as_object_mut()
            .ok_or_else(|| IssuerError::Key("claims".into()))?;
        if let Some(d) = &request.device_id {
            map.insert("deviceid".into(), json!(d));
        }
        match request.kind {
            TokenKind::Device => {
                // An Entra join's device token names the device, not a user.
                map.insert(
                    "sub".into(),
                    json!(request.device_id.clone().unwrap_or_default()),
                );
            }
            TokenKind::User => {
                let upn = request.upn.clone().unwrap_or_default();
                map.insert("upn".into(), json!(upn));
                map.insert("unique_name".into(), json!(upn));
                map.insert(
                    "oid".into(),
                    json!(request.object_id.clone().unwrap_or_default()),
                );
                map.insert("sub".into(), json!(upn));
            }
        }
        let token = self.sign(&claims)?;
        Ok(TokenResponse {
            access_token: token,
            token_type: "Bearer".into(),
            tenant_id: tenant,
        })
    }

    /// `claims` as a JWT signed RS256 by the newest key (its `kid` in the header).
    fn sign(&self, claims: &Value) -> Result<String, IssuerError> {
        let keys = self.lock();
        let key = keys
            .last()
            .ok_or_else(|| IssuerError::Key("no signing key".into()))?;
        key.sign(claims)
    }

    fn rotate(&self, retire: bool) -> Result<String, IssuerError> {
        let key = SigningKey::generate()?;
        let kid = key.kid.clone();
        {
            let mut keys = self.lock();
            if retire {
                keys.clear();
            }
            keys.push(key);
        }
        self.save()?;
        Ok(kid)
    }

    fn save(&self) -> Result<(), IssuerError> {
        let Some(dir) = &self.config.data_dir else {
            return Ok(());
        };
        let stored: Vec<StoredKey> = self
            .lock()
            .iter()
            .map(|k| StoredKey {
                kid: k.kid.clone(),
                pem: k.pem.clone(),
            })
            .collect();
        let path = dir.join(KEYS_FILE);
        let text =
            serde_json::to_string_pretty(&stored).map_err(|e| IssuerError::Key(e.to_string()))?;
        std::fs::write(&path, text).map_err(|source| IssuerError::Io { path, source })
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The keys of `dir` (created with one new key when there are none).
fn load_keys(dir: Option<&Path>) -> Result<Vec<SigningKey>, IssuerError> {
    if let Some(dir) = dir {
        let path = dir.join(KEYS_FILE);
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|source| IssuerError::Io {
                path: path.clone(),
                source,
            })?;
            let stored: Vec<StoredKey> = serde_json::from_str(&text)
                .map_err(|e| IssuerError::Key(format!("{}: {e}", path.display())))?;
            let keys = stored
                .into_iter()
                .map(|k| SigningKey::from_pem(k.kid, &k.pem))
                .collect::<Result<Vec<_>, _>>()?;
            if !keys.is_empty() {
                return Ok(keys);
            }
        }
        std::fs::create_dir_all(dir).map_err(|source| IssuerError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(vec![SigningKey::generate()?])
}

/// The issuer serving on its port; stops when dropped.
pub struct RunningIssuer {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RunningIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningIssuer")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl Drop for RunningIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RunningIssuer {
    /// Starts the issuer on `listen` (port 0 picks a free port). Keys come from
    /// `config.data_dir` when it has some, else a new one is made (and saved there).
    pub async fn start(listen: SocketAddr, config: IssuerConfig) -> Result<Self, IssuerError> {
        let keys = load_keys(config.data_dir.as_deref())?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| IssuerError::Io {
                path: PathBuf::from(listen.to_string()),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| IssuerError::Io {
            path: PathBuf::from(listen.to_string()),
            source,
        })?;
        let inner = Arc::new(Inner {
            config,
            url: format!("http://{local_addr}"),
            keys: Mutex::new(keys),
            available: AtomicBool::new(true),
            keys_served: AtomicU64::new(0),
            discovery_served: AtomicU64::new(0),
            sign_in: sign_in::Provider::default(),
        });
        inner.save()?;
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/keys", get(jwks))
            .route("/token", post(token))
            .route("/rotate", post(rotate))
            .route("/authorize", get(sign_in::authorize))
            .route("/oauth2/token", post(sign_in::token))
            .with_state(Arc::clone(&inner));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "test issuer stopped");
            }
        });
        Ok(RunningIssuer {
            inner,
            local_addr,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`: the issuer (`iss`) and the base of its endpoints.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The JWKS URL (`federated.jwks_url`).
    pub fn jwks_url(&self) -> String {
        format!("{}/keys", self.inner.url)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn tenant_id(&self) -> &str {
        &self.inner.config.tenant_id
    }

    pub fn audience(&self) -> &str {
        &self.inner.config.audience
    }

    /// A token as `POST /token` would mint it.
    pub fn mint(&self, request: &TokenRequest) -> Result<String, IssuerError> {
        self.inner.mint(request).map(|r| r.access_token)
    }

    /// A new signing key; the old ones stay published unless `retire`. Returns the new `kid`.
    pub fn rotate(&self, retire: bool) -> Result<String, IssuerError> {
        self.inner.rotate(retire)
    }

    /// The `kid` tokens are signed with now.
    pub fn current_kid(&self) -> Option<String> {
        self.inner.lock().last().map(|k| k.kid.clone())
    }

    /// While false, every endpoint answers 503.
    pub fn set_available(&self, available: bool) {
        self.inner.available.store(available, Ordering::SeqCst);
    }

    /// The user `/authorize` signs in from now on (`None`: it answers `access_denied`).
    pub fn set_sign_in_user(&self, user: Option<SignInUser>) {
        self.inner.sign_in.set_user(user);
    }

    /// How the next ID tokens are spoiled (tests of the relying party's checks).
    pub fn set_id_token_fault(&self, fault: IdTokenFault) {
        self.inner.sign_in.set_fault(fault);
    }

    /// The OpenID Connect client id and secret the sign-in endpoints accept.
    pub fn client_credentials(&self) -> (&str, &str) {
        (
            &self.inner.config.client_id,
            &self.inner.config.client_secret,
        )
    }

    /// How many times `/keys` was served (fetches of the key set).
    pub fn keys_served(&self) -> u64 {
        self.inner.keys_served.load(Ordering::SeqCst)
    }

    /// How many times the discovery document was served.
    pub fn discovery_served(&self) -> u64 {
        self.inner.discovery_served.load(Ordering::SeqCst)
    }
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the issuer is down").into_response()
}

async fn discovery(State(inner): State<Arc<Inner>>) -> Response {
    if !inner.available.load(Ordering::SeqCst) {
        return unavailable();
    }
    inner.discovery_served.fetch_add(1, Ordering::SeqCst);
    Json(json!({
        "issuer": inner.url,
        "jwks_uri": format!("{}/keys", inner.url),
        "authorization_endpoint": format!("{}/authorize", inner.url),
        "token_endpoint": format!("{}/oauth2/token", inner.url),
        "response_types_supported": ["code", "token"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "tenant_id": inner.config.tenant_id,
    }))
    .into_response()
}

async fn jwks(State(inner): State<Arc<Inner>>) -> Response {
    if !inner.available.load(Ordering::SeqCst) {
        return unavailable();
    }
    inner.keys_served.fetch_add(1, Ordering::SeqCst);
    (
        [(
            header::CACHE_CONTROL,
            format!("public, max-age={}", inner.config.keys_max_age_secs),
        )],
        Json(inner.jwks()),
    )
        .into_response()
}

async fn token(State(inner): State<Arc<Inner>>, Json(request): Json<TokenRequest>) -> Response {
    if !inner.available.load(Ordering::SeqCst) {
        return unavailable();
    }
    match inner.mint(&request) {
        Ok(r) => Json(r).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct RotateQuery {
    #[serde(default)]
    retire: bool,
}

async fn rotate(State(inner): State<Arc<Inner>>, Query(q): Query<RotateQuery>) -> Response {
    if !inner.available.load(Ordering::SeqCst) {
        return unavailable();
    }
    match inner.rotate(q.retire) {
        Ok(kid) => Json(json!({ "kid": kid })).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_discovery_keys_and_tokens_and_rotates() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("issuer");
        let config = IssuerConfig {
            data_dir: Some(dir.clone()),
            ..IssuerConfig::default()
        };
        let issuer = RunningIssuer::start(([127, 0, 0, 1], 0).into(), config.clone())
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let get = |url: String| {
            let request = http.get(url);
            async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
        };
        let doc = get(format!("{}/.well-known/openid-configuration", issuer.url())).await;
        assert_eq!(doc["issuer"], issuer.url());
        assert_eq!(doc["jwks_uri"], issuer.jwks_url());
        let response = http.get(issuer.jwks_url()).send().await.unwrap();
        assert_eq!(response.headers()["cache-control"], "public, max-age=3600");
        let keys: Value = response.json().await.unwrap();
        assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
        assert_eq!(issuer.keys_served(), 1);

        let minted: TokenResponse = http
            .post(format!("{}/token", issuer.url()))
            .json(&TokenRequest {
                kind: TokenKind::User,
                upn: Some("ada@contoso.test".into()),
                object_id: Some("oid-1".into()),
                ..TokenRequest::default()
            })
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let first_kid = issuer.current_kid().unwrap();
        let header = jsonwebtoken::decode_header(&minted.access_token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(first_kid.as_str()));
        assert_eq!(minted.tenant_id, config.tenant_id);

        let new_kid = issuer.rotate(false).unwrap();
        assert_ne!(new_kid, first_kid);
        let keys = get(issuer.jwks_url()).await;
        assert_eq!(
            keys["keys"].as_array().unwrap().len(),
            2,
            "old key still published"
        );

        issuer.set_available(false);
        let down = http.get(issuer.jwks_url()).send().await.unwrap();
        assert_eq!(down.status(), 503);
        drop(issuer);

        // The keys survive a restart from the same folder.
        let again = RunningIssuer::start(([127, 0, 0, 1], 0).into(), config)
            .await
            .unwrap();
        assert_eq!(again.current_kid(), Some(new_kid));
    }
}
