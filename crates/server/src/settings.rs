//! The server's typed settings (defaults here; `config` layers `redeploy.toml`, `REDEPLOY_*` and
//! flags over them), handed to every part inside [`crate::state::AppState`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use enroll::provisioning::PollSchedule;

use crate::crash::CrashPoints;

/// Typed server settings: defaults, then `redeploy.toml`, then `REDEPLOY_*`, then flags
/// (see [`crate::config`]; `docs/operations.md` lists every key).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the HTTPS listener binds (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Bind the listener with `SO_REUSEPORT`, so several `serve` processes (on one PostgreSQL
    /// database) listen on the same address and the kernel spreads connections over them.
    pub reuse_port: bool,
    /// Data folder: database (SQLite), CA, TLS certificate, first tokens.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; `None` means `<data_dir>/redeploy.db`.
    pub database: Option<String>,
    /// Extra DNS names (or IP literals) for the TLS certificate and the URLs handed to devices.
    pub hostnames: Vec<String>,
    /// Base URL devices use to reach us (e.g. `https://mdm.example.org:8443`); derived from
    /// the first hostname (else the listen address) and the bound port when not set.
    pub public_url: Option<String>,
    /// Largest request body accepted on any endpoint, in bytes (larger → 413).
    pub max_body_bytes: usize,
    /// A request that takes longer than this is answered 503.
    pub request_timeout: Duration,
    /// Timeouts and caps on connections, before any request ([`crate::net`]).
    pub connections: ConnectionLimits,
    /// The longest a request waits for the database: for a pooled connection (both backends;
    /// PostgreSQL being down or unreachable included) and, on SQLite, for the write lock. Past
    /// it the request fails with 503 rather than hang (issue #14 item 2).
    pub database_timeout: Duration,
    /// `/readyz` answers 503 when the database has not answered its check within this.
    pub readiness_timeout: Duration,
    /// `Retry-After` of every 503 answer (database unavailable, request timeout): when a
    /// client should try again.
    pub retry_after: Duration,
    /// Per-client-IP token bucket on the enrollment endpoints.
    pub enroll_rate: RateLimit,
    /// Failed console password sign-ins: one bucket per account name and one per client IP.
    pub sign_in_rate: RateLimit,
    /// Console sign-in through an OpenID Connect provider; `None` = accounts and tokens only.
    pub oidc: Option<OidcSettings>,
    /// The w7 `PROVIDER-ID` and `DMClient/Provider/<id>` name given to devices.
    pub provider_id: String,
    /// Lifetime of issued device certificates (config `device_cert_validity_days`, or
    /// `device_cert_validity_secs` for short test lifetimes).
    pub device_cert_validity: Duration,
    /// How many days before its certificate expires a PC starts renewing it: the provisioning
    /// document's `CertificateStore/My/WSTEP/Renew/RenewPeriod` (ITPRO certificatestore-csp.md;
    /// 0 leaves renewal out of the document).
    pub device_cert_renew_period_days: u32,
    /// DMClient Poll schedule sent in the provisioning document (minutes).
    pub poll: PollSchedule,
    /// Federated (Entra-style JWT) enrollment; `None` = OnPremise only.
    pub federated: Option<FederatedSettings>,
    /// Accept a device's client certificate from this header (PEM, URL-encoded, as nginx's
    /// `$ssl_client_escaped_cert` sends it) — only from `trusted_proxies`. `None` = TLS only.
    pub client_cert_header: Option<String>,
    /// Addresses of TLS-terminating proxies allowed to set `client_cert_header`.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How often the background worker ticks (stuck actions, due waves, due schedules).
    pub worker_interval: Duration,
    /// An active or blocked action without any transition for this long is expired by the worker.
    pub action_expiry: Duration,
    /// At most this many erasing actions (resets, wipes) requested per UTC day by waves and
    /// schedules the worker releases; `None` = no cap.
    pub daily_cap: Option<u32>,
    /// An action in `sent`, `acknowledged` or `in_progress` without any transition for this long
    /// raises a webhook `stuck` event (long before `action_expiry` ends it).
    pub webhook_stuck_after: Duration,
    /// How many raw messages per device the support trail keeps (redacted; 0 = none).
    pub support_trail_messages: u32,
    /// How often a PC's `FirstSyncStatus/IsSyncDone` is read at a check-in to notice a reset the
    /// server did not send (a local Autopilot Reset): once this long after the last read; zero
    /// reads it at every check-in (`redeploy_core::session::SessionConfig::reset_watch_interval`).
    pub reset_watch: Duration,
    /// `/metrics` on the main listener answers anyone (`true`), or only a valid API token of
    /// any role (`false`, the default: Prometheus sends it as a bearer token).
    pub metrics_public: bool,
    /// A second, plain-HTTP listener serving only `/metrics`, without a token (for a scraper
    /// on a private address or loopback); `None` = none.
    pub metrics_listen: Option<SocketAddr>,
    /// The SMTP server e-mail notifications go through; `None` = e-mail subscriptions fail
    /// their deliveries with "no SMTP server configured".
    pub smtp: Option<SmtpSettings>,
    /// `[push]`: waking PCs with WNS raw notifications when an action is queued; `None` = push
    /// off (PCs get their actions at their poll; sessions carry no push commands).
    pub push: Option<PushSettings>,
    /// Test-only: where the process kills itself on purpose (`REDEPLOY_CRASH_POINTS`,
    /// [`crate::crash`]); empty = never.
    pub crash_points: CrashPoints,
}

/// How long a connection may take before and between requests, and how many may be open.
/// A connection over a cap is accepted and closed at once (so it never waits in the kernel's
/// backlog); one past a timeout is closed. Counted on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the TCP connection to the end of the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// From the first byte of a request (or the end of the handshake, for a connection's first
    /// request) to the end of its headers.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and nothing sent or received for this long.
    pub idle_timeout: Duration,
    /// Connections open at once, all clients together.
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv6 client: its /64); 0 = no cap.
    /// `trusted_proxies` are exempt. A school behind one NAT address counts as one client.
    pub max_connections_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            // A Windows OMA-DM session is a few request/answer pairs in quick succession; a
            // minute keeps its connection between them with room to spare.
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            // A whole school behind one NAT address checks in on a spread-out poll schedule;
            // 256 connections at once is far beyond its need and far below `max_connections`.
            max_connections_per_ip: 256,
        }
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_second`. `per_second <= 0`
/// disables the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_second: f64,
}

/// Where federated enrollment tokens come from and how they are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedSettings {
    /// Expected `iss` claim.
    pub issuer: String,
    /// Expected `aud` claim.
    pub audience: String,
    /// Where the issuer's RS256 signing keys (a JSON Web Key Set) come from.
    pub jwks: JwksSource,
    /// Expected `tid` claim (the Entra tenant); `None` accepts any tenant.
    pub tenant_id: Option<String>,
    /// Extra CA certificate(s) (PEM) trusted for an `https` JWKS URL, besides the public roots.
    pub jwks_ca_file: Option<PathBuf>,
    /// `AuthenticationServiceUrl` for the traditional federated flow (the web authentication
    /// broker page); not used by Entra join, which skips it (docs/protocol.md §2.7).
    pub authentication_service_url: Option<String>,
}

/// Console sign-in through an OpenID Connect provider (authorization code flow with PKCE).
#[derive(Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The issuer URL (`iss`; its `/.well-known/openid-configuration` is read at most once an hour).
    pub issuer: String,
    /// The client id registered at the provider (the ID token's audience).
    pub client_id: String,
    /// The client secret (from `client_secret_file`).
    pub client_secret: String,
    /// The ID token claim listing the user's groups (Entra: `groups`, or `roles` for app roles).
    pub groups_claim: String,
    /// Group → role; a user gets the highest role of its groups, and no sign-in without one.
    pub roles: Vec<(String, redeploy_core::Role)>,
    /// What the sign-in button says after "Sign in with".
    pub provider_name: String,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("groups_claim", &self.groups_claim)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// Where a JSON Web Key Set is read from: exactly one of the config keys `jwks_file` and
/// `jwks_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Read once at start-up; a rotation needs a restart.
    File(PathBuf),
    /// Fetched over HTTPS (plain `http` only on a loopback address, for test issuers), cached,
    /// refetched when it expires or a token names an unknown key ([`crate::federated`]).
    Url(String),
}

impl JwksSource {
    /// The file or URL, for messages.
    pub fn describe(&self) -> String {
        match self {
            JwksSource::File(p) => p.display().to_string(),
            JwksSource::Url(u) => u.clone(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            reuse_port: false,
            data_dir: PathBuf::from("./redeploy-data"),
            database: None,
            hostnames: Vec::new(),
            public_url: None,
            max_body_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            connections: ConnectionLimits::default(),
            database_timeout: Duration::from_secs(3),
            readiness_timeout: Duration::from_secs(2),
            retry_after: Duration::from_secs(5),
            // Generous: an emulated fleet enrolls from one address (3 requests per PC).
            enroll_rate: RateLimit {
                burst: 600,
                per_second: 100.0,
            },
            // Five wrong passwords at once, then one every 30 seconds: a person who mistyped
            // waits a little, a guesser gets 2,880 tries a day per name instead of millions.
            sign_in_rate: RateLimit {
                burst: 5,
                per_second: 1.0 / 30.0,
            },
            oidc: None,
            provider_id: "Redeploy".into(),
            device_cert_validity: Duration::from_secs(365 * 86_400),
            // Microsoft advises 40-60 days (ITPRO certificate-renewal-windows-mdm.md); what we
            // sent before renewal worked.
            device_cert_renew_period_days: 42,
            client_cert_header: None,
            trusted_proxies: Vec::new(),
            poll: PollSchedule::recommended(),
            federated: None,
            worker_interval: Duration::from_secs(10),
            // A PC that is off for a holiday week still gets its reset when it comes back.
            action_expiry: Duration::from_secs(7 * 24 * 3600),
            daily_cap: None,
            // An Autopilot Reset takes well under an hour once the PC has the command; two hours
            // of silence is worth an admin's look while the day is still on.
            webhook_stuck_after: Duration::from_secs(120 * 60),
            support_trail_messages: redeploy_core::trail::DEFAULT_KEEP,
            // One more round trip per PC per hour at most; a local reset shows within the hour.
            reset_watch: Duration::from_secs(60 * 60),
            metrics_public: false,
            metrics_listen: None,
            smtp: None,
            push: None,
            crash_points: CrashPoints::default(),
        }
    }
}

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (RFC 3207), required; port 587 by default.
    StartTls,
    /// TLS from the first byte ("implicit TLS", RFC 8314); port 465 by default.
    Tls,
    /// No TLS at all (a relay on the same host or network only); port 25 by default.
    None,
}

impl SmtpSecurity {
    /// `starttls`, `tls` or `none`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "starttls" => Some(Self::StartTls),
            "tls" => Some(Self::Tls),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    /// The usual port of this kind of connection.
    pub fn default_port(self) -> u16 {
        match self {
            Self::StartTls => 587,
            Self::Tls => 465,
            Self::None => 25,
        }
    }
}

/// `[smtp]`: where e-mail notifications are sent from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpSettings {
    /// The SMTP server's host name (also the name its TLS certificate must carry).
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Sign-in name; `None` = no authentication.
    pub user: Option<String>,
    /// A file whose content (trimmed) is the password (keeps it out of the config).
    pub password_file: Option<std::path::PathBuf>,
    /// The `From:` address, e.g. `Redeploy <redeploy@example.org>`.
    pub from: String,
}

/// `[push]`: the Microsoft Store app registration the server pushes with (its package SID and
/// secret authenticate to WNS; PCs are given its package family name as `Push/PFN`) and where
/// WNS lives. Docs: "Windows Push Notification Services (WNS) overview", "Push notification
/// service request and response headers", ITPRO push-notification-windows-mdm.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushSettings {
    /// The package SID (`ms-app://S-1-15-2-…`), WNS's `client_id`.
    pub package_sid: String,
    /// The client secret, given inline (`client_secret`)…
    pub client_secret: Option<String>,
    /// …or as a file whose content (trimmed) is the secret, read at each token request.
    pub client_secret_file: Option<std::path::PathBuf>,
    /// The package family name sent to PCs as `DMClient/Provider/<id>/Push/PFN`.
    pub pfn: String,
    /// The OAuth token endpoint (default `https://login.live.com/accesstoken.srf`).
    pub token_url: String,
    /// Where channel URIs may point: https host suffixes (default `notify.windows.com`), or
    /// `http://host:port` for one local stand-in service.
    pub channel_hosts: Vec<redeploy_core::push::ChannelHost>,
    /// Most notifications in flight at once.
    pub max_in_flight: usize,
    /// `X-WNS-TTL`: how long WNS keeps a notification for an offline PC.
    pub ttl: Duration,
    /// Pending actions created longer ago than this are not pushed (their PCs poll).
    pub lookback: Duration,
}

impl PushSettings {
    /// WNS's token endpoint ("Push notification service request and response headers").
    pub const TOKEN_URL: &'static str = "https://login.live.com/accesstoken.srf";
}
