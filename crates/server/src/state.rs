//! Shared server state handed to every handler: the store, the CA, the settings, the clock,
//! metrics and the federated (JWT) verifier.

use std::sync::Arc;

use enroll::ca::CertificateAuthority;
use redeploy_core::{Clock, Store};

use crate::federated::FederatedAuth;
use crate::metrics::Metrics;
use crate::oidc;
use crate::ratelimit::SignInLimits;
pub use crate::settings::{FederatedSettings, JwksSource, OidcSettings, RateLimit, Settings};
use crate::trail_buffer::TrailBuffer;

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ca: Arc<CertificateAuthority>,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    /// The base URL devices are told to use (discovery response, provisioning ADDR), no
    /// trailing slash.
    pub public_url: String,
    /// Counters and histograms served on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The JWT verifier when federated enrollment is configured.
    pub federated: Option<Arc<FederatedAuth>>,
    /// Support-trail messages on their way to the store.
    pub trail: Arc<TrailBuffer>,
    /// Failed console password sign-ins, per account name and per client address.
    pub sign_in_limits: Arc<SignInLimits>,
    /// The OpenID Connect provider's client when console single sign-on is configured.
    pub openid: Option<Arc<oidc::Client>>,
    /// WNS push, when `[push]` is configured ([`crate::push`]).
    pub push: Option<Arc<crate::push::Pusher>>,
}

impl AppState {
    /// State with fresh metrics and no federated verifier (see [`AppState::with_federated`]).
    pub fn new(
        store: Arc<dyn Store>,
        ca: Arc<CertificateAuthority>,
        settings: Settings,
        clock: Arc<dyn Clock>,
        public_url: impl Into<String>,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let sign_in_limits = Arc::new(SignInLimits::new(settings.sign_in_rate));
        let trail = Arc::new(TrailBuffer::new(store.clone(), metrics.clone()));
        let push = settings
            .push
            .as_ref()
            .and_then(|p| match crate::push::Pusher::http(p) {
                Ok(pusher) => Some(Arc::new(pusher)),
                Err(e) => {
                    tracing::error!(error = %e, "push is configured but its HTTP client is not");
                    None
                }
            });
        AppState {
            store,
            ca,
            settings: Arc::new(settings),
            clock,
            public_url: public_url.into().trim_end_matches('/').to_string(),
            metrics,
            federated: None,
            trail,
            sign_in_limits,
            openid: None,
            push,
        }
    }

    /// Enables federated enrollment with this verifier.
    pub fn with_federated(mut self, federated: FederatedAuth) -> Self {
        self.federated = Some(Arc::new(federated));
        self
    }

    /// Enables console single sign-on through this provider's client.
    pub fn with_openid(mut self, client: oidc::Client) -> Self {
        self.openid = Some(Arc::new(client));
        self
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Passes crash point `name` of this server's settings ([`crate::crash::CrashPoints::hit`]).
    pub fn crash_point(&self, name: &str) {
        self.settings.crash_points.hit(name);
    }

    /// Tells the push dispatcher that actions were queued (nothing without `[push]`).
    pub fn wake_push(&self) {
        if let Some(pusher) = &self.push {
            pusher.wake();
        }
    }
}
