//! Building [`Settings`]: defaults, then the `redeploy.toml` file, then `REDEPLOY_*` environment
//! variables (the binary applies its flags last). Every key is listed in `docs/operations.md`;
//! unknown keys are refused so a typo never silently does nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::settings::{
    FederatedSettings, JwksSource, OidcSettings, PushSettings, Settings, SmtpSecurity, SmtpSettings,
};
use crate::Error;

/// The TOML file: every key optional, same names as the settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database: Option<String>,
    /// A file whose content is the database URL (keeps a password out of the config).
    pub database_file: Option<PathBuf>,
    pub hostnames: Option<Vec<String>>,
    pub public_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub request_timeout_secs: Option<u64>,
    pub tls_handshake_timeout_secs: Option<u64>,
    pub header_read_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    /// 0 = no per-address cap.
    pub max_connections_per_ip: Option<usize>,
    pub database_timeout_secs: Option<u64>,
    pub readiness_timeout_secs: Option<u64>,
    pub retry_after_secs: Option<u64>,
    pub enroll_rate_burst: Option<u32>,
    pub enroll_rate_per_second: Option<f64>,
    pub sign_in_rate_burst: Option<u32>,
    pub sign_in_rate_per_second: Option<f64>,
    pub oidc: Option<OidcFile>,
    pub provider_id: Option<String>,
    pub device_cert_validity_days: Option<u32>,
    /// The lifetime in seconds (wins over `device_cert_validity_days`; short lifetimes for tests).
    pub device_cert_validity_secs: Option<u64>,
    /// `CertificateStore/My/WSTEP/Renew/RenewPeriod` handed to PCs: days before expiry.
    pub device_cert_renew_period_days: Option<u32>,
    pub client_cert_header: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub poll: Option<PollFile>,
    pub federated: Option<FederatedFile>,
    pub worker_interval_secs: Option<u64>,
    pub action_expiry_hours: Option<u64>,
    /// 0 = no cap.
    pub daily_cap: Option<u32>,
    pub webhook_stuck_after_minutes: Option<u64>,
    /// 0 = keep no messages.
    pub support_trail_messages: Option<u32>,
    /// 0 = read IsSyncDone at every check-in.
    pub reset_watch_minutes: Option<u64>,
    pub metrics_public: Option<bool>,
    pub reuse_port: Option<bool>,
    pub metrics_listen: Option<String>,
    pub smtp: Option<SmtpFile>,
    pub push: Option<PushFile>,
    /// Test-only, from `REDEPLOY_CRASH_POINTS` alone (not a file key): see [`crate::crash`].
    #[serde(skip)]
    pub crash_points: Option<String>,
}

/// `[poll]`: the DMClient Poll schedule (minutes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollFile {
    pub number_of_first_retries: Option<u32>,
    pub interval_for_first_set_of_retries: Option<u32>,
    pub number_of_second_retries: Option<u32>,
    pub interval_for_second_set_of_retries: Option<u32>,
    pub number_of_remaining_scheduled_retries: Option<u32>,
    pub interval_for_remaining_scheduled_retries: Option<u32>,
    pub poll_on_login: Option<bool>,
    pub all_users_poll_on_first_login: Option<bool>,
}

/// `[smtp]`: the SMTP server of e-mail notifications.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    pub security: Option<String>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub from: Option<String>,
}

impl SmtpFile {
    fn into_settings(self) -> Result<SmtpSettings, Error> {
        let host = self
            .host
            .filter(|h| !h.trim().is_empty())
            .ok_or_else(|| Error::Config("smtp: host is required".into()))?;
        let from = self
            .from
            .filter(|f| !f.trim().is_empty())
            .ok_or_else(|| Error::Config("smtp: from is required".into()))?;
        let security = match self.security.as_deref() {
            None => SmtpSecurity::StartTls,
            Some(v) => SmtpSecurity::parse(v)
                .ok_or_else(|| bad("smtp.security", v, "expected starttls, tls or none"))?,
        };
        Ok(SmtpSettings {
            host: host.trim().to_owned(),
            port: self.port.unwrap_or(security.default_port()),
            security,
            user: self.user.filter(|u| !u.is_empty()),
            password_file: self.password_file,
            from,
        })
    }
}

/// `[push]`: WNS push (see [`PushSettings`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushFile {
    pub package_sid: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub pfn: Option<String>,
    pub token_url: Option<String>,
    pub channel_hosts: Option<Vec<String>>,
    pub max_in_flight: Option<usize>,
    pub ttl_secs: Option<u64>,
    pub lookback_minutes: Option<u64>,
}

impl PushFile {
    fn into_settings(self) -> Result<PushSettings, Error> {
        let required = |v: Option<String>, key: &str| {
            v.map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::Config(format!("push: {key} is required")))
        };
        let package_sid = required(self.package_sid, "package_sid")?;
        let pfn = required(self.pfn, "pfn")?;
        if self.client_secret.is_none() && self.client_secret_file.is_none() {
            return Err(Error::Config(
                "push: client_secret or client_secret_file is required".into(),
            ));
        }
        let hosts = self
            .channel_hosts
            .unwrap_or_else(|| vec!["notify.windows.com".into()]);
        let channel_hosts = hosts
            .iter()
            .map(|h| {
                redeploy_core::push::ChannelHost::parse(h).ok_or_else(|| {
                    bad(
                        "push.channel_hosts",
                        h,
                        "expected a host suffix or http://host:port",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PushSettings {
            package_sid,
            client_secret: self.client_secret,
            client_secret_file: self.client_secret_file,
            pfn,
            token_url: self
                .token_url
                .unwrap_or_else(|| PushSettings::TOKEN_URL.to_owned()),
            channel_hosts,
            max_in_flight: self.max_in_flight.unwrap_or(16).max(1),
            ttl: Duration::from_secs(self.ttl_secs.unwrap_or(4 * 3600)),
            lookback: Duration::from_secs(60 * self.lookback_minutes.unwrap_or(60)),
        })
    }
}

/// `[federated]`: JWT enrollment.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatedFile {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub jwks_file: Option<PathBuf>,
    /// The issuer's JWKS URL (instead of `jwks_file`): https, or http on a loopback address.
    pub jwks_url: Option<String>,
    /// Extra CA certificate(s) (PEM file) trusted for `jwks_url`.
    pub jwks_ca_file: Option<PathBuf>,
    /// Expected `tid` claim; unset accepts any tenant.
    pub tenant_id: Option<String>,
    pub authentication_service_url: Option<String>,
}

/// `[oidc]`: console sign-in through an OpenID Connect provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFile {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    /// A file whose content is the client secret.
    pub client_secret_file: Option<PathBuf>,
    /// The ID token claim with the user's groups; `groups` when unset.
    pub groups_claim: Option<String>,
    /// The sign-in button's "Sign in with …"; `single sign-on` when unset.
    pub provider_name: Option<String>,
    /// Group (as the claim lists it) → role.
    pub roles: Option<std::collections::BTreeMap<String, String>>,
}

impl OidcFile {
    fn settings(self) -> Result<OidcSettings, Error> {
        let (Some(issuer), Some(client_id), Some(secret_file)) =
            (self.issuer, self.client_id, self.client_secret_file)
        else {
            return Err(Error::Config(
                "oidc: issuer, client_id and client_secret_file are required".into(),
            ));
        };
        crate::federated::check_jwks_url(&issuer).map_err(|e| bad("oidc.issuer", &issuer, e))?;
        let client_secret = std::fs::read_to_string(&secret_file)
            .map_err(|source| Error::Io {
                path: secret_file.clone(),
                source,
            })?
            .trim()
            .to_owned();
        let mut roles = Vec::new();
        for (group, role) in self.roles.unwrap_or_default() {
            let parsed = redeploy_core::Role::parse(&role)
                .map_err(|e| bad(&format!("oidc.roles.{group}"), &role, e))?;
            roles.push((group, parsed));
        }
        if roles.is_empty() {
            return Err(Error::Config(
                "oidc: roles maps no group to a role, so nobody could sign in".into(),
            ));
        }
        Ok(OidcSettings {
            issuer,
            client_id,
            client_secret,
            groups_claim: self.groups_claim.unwrap_or_else(|| "groups".into()),
            roles,
            provider_name: self
                .provider_name
                .unwrap_or_else(|| "single sign-on".into()),
        })
    }
}

fn bad(key: &str, value: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("{key} = {value:?}: {why}"))
}

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, Error>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e| bad(key, value, e))
}

/// `REDEPLOY_<KEY>` for top-level keys, `REDEPLOY_POLL_<KEY>` and `REDEPLOY_FEDERATED_<KEY>`
/// for the tables; lists are comma-separated. Unknown `REDEPLOY_*` names are ignored here,
/// because clients (`REDEPLOY_SERVER`, `REDEPLOY_TOKEN`…) share the prefix.
fn apply_env(file: &mut ConfigFile, vars: &[(String, String)]) -> Result<(), Error> {
    for (name, value) in vars {
        let Some(key) = name.strip_prefix("REDEPLOY_") else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        let v = value.clone();
        match key.as_str() {
            "listen" => file.listen = Some(v),
            "data_dir" => file.data_dir = Some(v.into()),
            "database" => file.database = Some(v),
            "database_file" => file.database_file = Some(v.into()),
            "hostnames" => {
                file.hostnames = Some(
                    v.split(',')
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .collect(),
                )
            }
            "public_url" => file.public_url = Some(v),
            "max_body_bytes" => file.max_body_bytes = Some(parse(name, &v)?),
            "request_timeout_secs" => file.request_timeout_secs = Some(parse(name, &v)?),
            "tls_handshake_timeout_secs" => {
                file.tls_handshake_timeout_secs = Some(parse(name, &v)?)
            }
            "header_read_timeout_secs" => file.header_read_timeout_secs = Some(parse(name, &v)?),
            "idle_timeout_secs" => file.idle_timeout_secs = Some(parse(name, &v)?),
            "max_connections" => file.max_connections = Some(parse(name, &v)?),
            "max_connections_per_ip" => file.max_connections_per_ip = Some(parse(name, &v)?),
            "database_timeout_secs" => file.database_timeout_secs = Some(parse(name, &v)?),
            "readiness_timeout_secs" => file.readiness_timeout_secs = Some(parse(name, &v)?),
            "retry_after_secs" => file.retry_after_secs = Some(parse(name, &v)?),
            "enroll_rate_burst" => file.enroll_rate_burst = Some(parse(name, &v)?),
            "enroll_rate_per_second" => file.enroll_rate_per_second = Some(parse(name, &v)?),
            "provider_id" => file.provider_id = Some(v),
            "device_cert_validity_days" => file.device_cert_validity_days = Some(parse(name, &v)?),
            "device_cert_validity_secs" => file.device_cert_validity_secs = Some(parse(name, &v)?),
            "device_cert_renew_period_days" => {
                file.device_cert_renew_period_days = Some(parse(name, &v)?)
            }
            "client_cert_header" => file.client_cert_header = Some(v),
            "trusted_proxies" => {
                file.trusted_proxies = Some(
                    v.split(',')
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .collect(),
                )
            }
            "worker_interval_secs" => file.worker_interval_secs = Some(parse(name, &v)?),
            "action_expiry_hours" => file.action_expiry_hours = Some(parse(name, &v)?),
            "daily_cap" => file.daily_cap = Some(parse(name, &v)?),
            "webhook_stuck_after_minutes" => {
                file.webhook_stuck_after_minutes = Some(parse(name, &v)?)
            }
            "support_trail_messages" => file.support_trail_messages = Some(parse(name, &v)?),
            "reset_watch_minutes" => file.reset_watch_minutes = Some(parse(name, &v)?),
            "metrics_public" => file.metrics_public = Some(parse(name, &v)?),
            "reuse_port" => file.reuse_port = Some(parse(name, &v)?),
            "metrics_listen" => file.metrics_listen = Some(v),
            "crash_points" => file.crash_points = Some(v),
            k if k.starts_with("poll_") => {
                let poll = file.poll.get_or_insert_with(PollFile::default);
                match &k["poll_".len()..] {
                    "number_of_first_retries" => {
                        poll.number_of_first_retries = Some(parse(name, &v)?)
                    }
                    "interval_for_first_set_of_retries" => {
                        poll.interval_for_first_set_of_retries = Some(parse(name, &v)?)
                    }
                    "number_of_second_retries" => {
                        poll.number_of_second_retries = Some(parse(name, &v)?)
                    }
                    "interval_for_second_set_of_retries" => {
                        poll.interval_for_second_set_of_retries = Some(parse(name, &v)?)
                    }
                    "number_of_remaining_scheduled_retries" => {
                        poll.number_of_remaining_scheduled_retries = Some(parse(name, &v)?)
                    }
                    "interval_for_remaining_scheduled_retries" => {
                        poll.interval_for_remaining_scheduled_retries = Some(parse(name, &v)?)
                    }
                    "poll_on_login" => poll.poll_on_login = Some(parse(name, &v)?),
                    "all_users_poll_on_first_login" => {
                        poll.all_users_poll_on_first_login = Some(parse(name, &v)?)
                    }
                    _ => return Err(bad(name, &v, "unknown poll setting")),
                }
            }
            "sign_in_rate_burst" => file.sign_in_rate_burst = Some(parse(name, &v)?),
            "sign_in_rate_per_second" => file.sign_in_rate_per_second = Some(parse(name, &v)?),
            k if k.starts_with("oidc_") => {
                let oidc = file.oidc.get_or_insert_with(OidcFile::default);
                match &k["oidc_".len()..] {
                    "issuer" => oidc.issuer = Some(v),
                    "client_id" => oidc.client_id = Some(v),
                    "client_secret_file" => oidc.client_secret_file = Some(v.into()),
                    "groups_claim" => oidc.groups_claim = Some(v),
                    "provider_name" => oidc.provider_name = Some(v),
                    // `GROUP=ROLE,GROUP=ROLE`
                    "roles" => {
                        let mut roles = std::collections::BTreeMap::new();
                        for pair in v.split(',').filter(|p| !p.trim().is_empty()) {
                            let (group, role) = pair
                                .split_once('=')
                                .ok_or_else(|| bad(name, &v, "expected GROUP=ROLE,…"))?;
                            roles.insert(group.trim().to_owned(), role.trim().to_owned());
                        }
                        oidc.roles = Some(roles);
                    }
                    _ => return Err(bad(name, &v, "unknown oidc setting")),
                }
            }
            k if k.starts_with("push_") => {
                let push = file.push.get_or_insert_with(PushFile::default);
                match &k["push_".len()..] {
                    "package_sid" => push.package_sid = Some(v),
                    "client_secret" => push.client_secret = Some(v),
                    "client_secret_file" => push.client_secret_file = Some(v.into()),
                    "pfn" => push.pfn = Some(v),
                    "token_url" => push.token_url = Some(v),
                    "channel_hosts" => {
                        push.channel_hosts = Some(
                            v.split(',')
                                .map(|h| h.trim().to_owned())
                                .filter(|h| !h.is_empty())
                                .collect(),
                        )
                    }
                    "max_in_flight" => push.max_in_flight = Some(parse(name, &v)?),
                    "ttl_secs" => push.ttl_secs = Some(parse(name, &v)?),
                    "lookback_minutes" => push.lookback_minutes = Some(parse(name, &v)?),
                    _ => return Err(bad(name, &v, "unknown push setting")),
                }
            }
            k if k.starts_with("smtp_") => {
                let smtp = file.smtp.get_or_insert_with(SmtpFile::default);
                match &k["smtp_".len()..] {
                    "host" => smtp.host = Some(v),
                    "port" => smtp.port = Some(parse(name, &v)?),
                    "security" => smtp.security = Some(v),
                    "user" => smtp.user = Some(v),
                    "password_file" => smtp.password_file = Some(v.into()),
                    "from" => smtp.from = Some(v),
                    _ => return Err(bad(name, &v, "unknown smtp setting")),
                }
            }
            k if k.starts_with("federated_") => {
                let fed = file.federated.get_or_insert_with(FederatedFile::default);
                match &k["federated_".len()..] {
                    "issuer" => fed.issuer = Some(v),
                    "audience" => fed.audience = Some(v),
                    "jwks_file" => fed.jwks_file = Some(v.into()),
                    "jwks_url" => fed.jwks_url = Some(v),
                    "jwks_ca_file" => fed.jwks_ca_file = Some(v.into()),
                    "tenant_id" => fed.tenant_id = Some(v),
                    "authentication_service_url" => fed.authentication_service_url = Some(v),
                    _ => return Err(bad(name, &v, "unknown federated setting")),
                }
            }
            _ => {}
        }
    }
    Ok(())
}

impl Settings {
    /// Defaults, then `config_file` (if given; it must exist), then the `REDEPLOY_*` entries
    /// of `env` (pass `std::env::vars().collect()`). Relative paths in the file are relative
    /// to the directory the server runs in.
    pub fn load(config_file: Option<&Path>, env: &[(String, String)]) -> Result<Settings, Error> {
        let mut file = match config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str::<ConfigFile>(&text)
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
            }
            None => ConfigFile::default(),
        };
        apply_env(&mut file, env)?;
        file.apply_to(Settings::default())
    }
}

impl ConfigFile {
    /// `base` with every key present in this file replaced.
    pub fn apply_to(self, mut s: Settings) -> Result<Settings, Error> {
        if let Some(v) = self.listen {
            s.listen = v.parse::<SocketAddr>().map_err(|e| bad("listen", &v, e))?;
        }
        if let Some(v) = self.data_dir {
            s.data_dir = v;
        }
        if let Some(path) = self.database_file {
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            s.database = Some(text.trim().to_string());
        }
        if let Some(v) = self.database {
            s.database = Some(v);
        }
        if let Some(v) = self.hostnames {
            s.hostnames = v;
        }
        if let Some(v) = self.public_url {
            s.public_url = Some(v);
        }
        if let Some(v) = self.max_body_bytes {
            s.max_body_bytes = v;
        }
        if let Some(v) = self.request_timeout_secs {
            s.request_timeout = Duration::from_secs(v.max(1));
        }
        let secs = |v: u64| Duration::from_secs(v.max(1));
        let limits = &mut s.connections;
        if let Some(v) = self.tls_handshake_timeout_secs {
            limits.tls_handshake_timeout = secs(v);
        }
        if let Some(v) = self.header_read_timeout_secs {
            limits.header_read_timeout = secs(v);
        }
        if let Some(v) = self.idle_timeout_secs {
            limits.idle_timeout = secs(v);
        }
        if let Some(v) = self.max_connections {
            limits.max_connections = v.max(1);
        }
        if let Some(v) = self.max_connections_per_ip {
            limits.max_connections_per_ip = v;
        }
        if let Some(v) = self.database_timeout_secs {
            s.database_timeout = secs(v);
        }
        if let Some(v) = self.readiness_timeout_secs {
            s.readiness_timeout = secs(v);
        }
        if let Some(v) = self.retry_after_secs {
            s.retry_after = secs(v);
        }
        if let Some(v) = self.enroll_rate_burst {
            s.enroll_rate.burst = v;
        }
        if let Some(v) = self.enroll_rate_per_second {
            s.enroll_rate.per_second = v;
        }
        if let Some(v) = self.sign_in_rate_burst {
            s.sign_in_rate.burst = v;
        }
        if let Some(v) = self.sign_in_rate_per_second {
            s.sign_in_rate.per_second = v;
        }
        if let Some(oidc) = self.oidc {
            s.oidc = Some(oidc.settings()?);
        }
        if let Some(v) = self.provider_id {
            s.provider_id = v;
        }
        if let Some(v) = self.client_cert_header {
            s.client_cert_header = Some(v).filter(|h| !h.trim().is_empty());
        }
        if let Some(list) = self.trusted_proxies {
            s.trusted_proxies = list
                .iter()
                .map(|ip| {
                    ip.parse()
                        .map_err(|_| bad("trusted_proxies", ip, "not an IP address"))
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = self.device_cert_validity_days {
            s.device_cert_validity = Duration::from_secs(u64::from(v.max(1)) * 86_400);
        }
        if let Some(v) = self.device_cert_validity_secs {
            s.device_cert_validity = Duration::from_secs(v.max(60));
        }
        if let Some(v) = self.device_cert_renew_period_days {
            s.device_cert_renew_period_days = v;
        }
        if let Some(v) = self.worker_interval_secs {
            s.worker_interval = Duration::from_secs(v.max(1));
        }
        if let Some(v) = self.action_expiry_hours {
            s.action_expiry = Duration::from_secs(v.max(1) * 3600);
        }
        if let Some(v) = self.daily_cap {
            s.daily_cap = Some(v).filter(|&cap| cap > 0);
        }
        if let Some(v) = self.support_trail_messages {
            s.support_trail_messages = v;
        }
        if let Some(v) = self.webhook_stuck_after_minutes {
            s.webhook_stuck_after = Duration::from_secs(v.max(1) * 60);
        }
        if let Some(v) = self.reset_watch_minutes {
            s.reset_watch = Duration::from_secs(v.saturating_mul(60));
        }
        if let Some(v) = self.metrics_public {
            s.metrics_public = v;
        }
        if let Some(v) = self.reuse_port {
            s.reuse_port = v;
        }
        if let Some(v) = self.metrics_listen.filter(|v| !v.trim().is_empty()) {
            s.metrics_listen = Some(
                v.parse::<SocketAddr>()
                    .map_err(|e| bad("metrics_listen", &v, e))?,
            );
        }
        if let Some(smtp) = self.smtp {
            s.smtp = Some(smtp.into_settings()?);
        }
        if let Some(push) = self.push {
            s.push = Some(push.into_settings()?);
        }
        if let Some(v) = self.crash_points {
            s.crash_points =
                crate::crash::CrashPoints::parse(&v).map_err(|e| bad("crash_points", &v, e))?;
        }
        if let Some(p) = self.poll {
            let poll = &mut s.poll;
            let set = |field: &mut Option<u32>, v: Option<u32>| {
                if v.is_some() {
                    *field = v;
                }
            };
            set(&mut poll.number_of_first_retries, p.number_of_first_retries);
            set(
                &mut poll.interval_for_first_set_of_retries,
                p.interval_for_first_set_of_retries,
            );
            set(
                &mut poll.number_of_second_retries,
                p.number_of_second_retries,
            );
            set(
                &mut poll.interval_for_second_set_of_retries,
                p.interval_for_second_set_of_retries,
            );
            set(
                &mut poll.number_of_remaining_scheduled_retries,
                p.number_of_remaining_scheduled_retries,
            );
            set(
                &mut poll.interval_for_remaining_scheduled_retries,
                p.interval_for_remaining_scheduled_retries,
            );
            if p.poll_on_login.is_some() {
                poll.poll_on_login = p.poll_on_login;
            }
            if p.all_users_poll_on_first_login.is_some() {
                poll.all_users_poll_on_first_login = p.all_users_poll_on_first_login;
            }
        }
        if let Some(f) = self.federated {
            let (Some(issuer), Some(audience)) = (f.issuer, f.audience) else {
                return Err(Error::Config(
                    "federated: issuer and audience are required".into(),
                ));
            };
            let jwks = match (f.jwks_file, f.jwks_url) {
                (Some(file), None) => JwksSource::File(file),
                (None, Some(url)) => {
                    crate::federated::check_jwks_url(&url)
                        .map_err(|e| bad("federated.jwks_url", &url, e))?;
                    JwksSource::Url(url)
                }
                _ => {
                    return Err(Error::Config(
                        "federated: exactly one of jwks_file and jwks_url is required".into(),
                    ))
                }
            };
            s.federated = Some(FederatedSettings {
                issuer,
                audience,
                jwks,
                tenant_id: f.tenant_id.filter(|t| !t.trim().is_empty()),
                jwks_ca_file: f.jwks_ca_file,
                authentication_service_url: f.authentication_service_url,
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn push_comes_from_the_file_table_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redeploy.toml");
        std::fs::write(
            &path,
            "[push]\npackage_sid = \"ms-app://s-1-15-2-1\"\npfn = \"Contoso.Mdm_8wekyb3d8bbwe\"\nclient_secret_file = \"/run/secrets/wns\"\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&path),
            &env(&[("REDEPLOY_PUSH_LOOKBACK_MINUTES", "5")]),
        )
        .unwrap();
        let push = s.push.unwrap();
        assert_eq!(push.token_url, "https://login.live.com/accesstoken.srf");
        assert_eq!(
            push.channel_hosts,
            [redeploy_core::push::ChannelHost::parse("notify.windows.com").unwrap()]
        );
        assert_eq!(push.lookback, Duration::from_secs(300));
        let s = Settings::load(
            Some(&path),
            &env(&[(
                "REDEPLOY_PUSH_CHANNEL_HOSTS",
                "notify.windows.com, http://127.0.0.1:4000",
            )]),
        )
        .unwrap();
        assert_eq!(s.push.unwrap().channel_hosts.len(), 2);
        assert!(Settings::load(None, &env(&[("REDEPLOY_PUSH_PFN", "p")])).is_err());
        assert!(Settings::load(None, &env(&[])).unwrap().push.is_none());
    }

    #[test]
    fn smtp_comes_from_the_file_table_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redeploy.toml");
        std::fs::write(
            &path,
            "[smtp]\nhost = \"mail.example.org\"\nfrom = \"Redeploy <r@example.org>\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&path), &env(&[("REDEPLOY_SMTP_USER", "r")])).unwrap();
        let smtp = s.smtp.unwrap();
        assert_eq!(smtp.host, "mail.example.org");
        assert_eq!((smtp.security, smtp.port), (SmtpSecurity::StartTls, 587));
        assert_eq!(smtp.user.as_deref(), Some("r"));
        let s = Settings::load(
            Some(&path),
            &env(&[
                ("REDEPLOY_SMTP_SECURITY", "tls"),
                ("REDEPLOY_SMTP_PORT", "2465"),
            ]),
        )
        .unwrap();
        let smtp = s.smtp.unwrap();
        assert_eq!((smtp.security, smtp.port), (SmtpSecurity::Tls, 2465));
        assert!(Settings::load(None, &env(&[("REDEPLOY_SMTP_SECURITY", "ssl")])).is_err());
        assert!(
            Settings::load(None, &env(&[("REDEPLOY_SMTP_HOST", "h")])).is_err(),
            "from is required"
        );
    }

    #[test]
    fn file_then_env_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redeploy.toml");
        std::fs::write(
            &path,
            r#"
listen = "0.0.0.0:9443"
hostnames = ["mdm.example.org"]
max_body_bytes = 1000
[poll]
interval_for_remaining_scheduled_retries = 60
[federated]
issuer = "https://login.example/tenant/v2.0"
audience = "api://redeploy"
jwks_file = "keys.json"
"#,
        )
        .unwrap();
        let s = Settings::load(
            Some(&path),
            &env(&[
                ("REDEPLOY_MAX_BODY_BYTES", "2000"),
                ("REDEPLOY_POLL_NUMBER_OF_FIRST_RETRIES", "2"),
                ("REDEPLOY_SERVER", "https://ignored"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.listen, "0.0.0.0:9443".parse().unwrap());
        assert_eq!(s.hostnames, vec!["mdm.example.org".to_string()]);
        assert_eq!(s.max_body_bytes, 2000);
        assert_eq!(s.poll.interval_for_remaining_scheduled_retries, Some(60));
        assert_eq!(s.poll.number_of_first_retries, Some(2));
        assert_eq!(s.poll.interval_for_first_set_of_retries, Some(15));
        assert_eq!(s.federated.unwrap().audience, "api://redeploy");
        assert_eq!(s.data_dir, PathBuf::from("./redeploy-data"));
    }

    #[test]
    fn oidc_sign_in_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("oidc-secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let path = dir.path().join("redeploy.toml");
        std::fs::write(
            &path,
            format!(
                r#"
[oidc]
issuer = "https://login.example/tenant/v2.0"
client_id = "redeploy-console"
client_secret_file = "{}"
[oidc.roles]
"lab-admins" = "admin"
"#,
                secret.display()
            ),
        )
        .unwrap();
        let s = Settings::load(
            Some(&path),
            &env(&[("REDEPLOY_OIDC_ROLES", "lab-admins=admin, helpdesk=helpdesk")]),
        )
        .unwrap();
        let oidc = s.oidc.unwrap();
        assert_eq!(oidc.client_secret, "s3cret");
        assert_eq!(oidc.groups_claim, "groups");
        assert_eq!(
            oidc.roles,
            [
                ("helpdesk".to_string(), redeploy_core::Role::Helpdesk),
                ("lab-admins".to_string(), redeploy_core::Role::Admin)
            ]
        );
        let refused = Settings::load(
            Some(&path),
            &env(&[("REDEPLOY_OIDC_ROLES", "lab-admins=root")]),
        );
        assert!(refused.is_err(), "an unknown role is refused");
        let refused = Settings::load(Some(&path), &env(&[("REDEPLOY_OIDC_ROLES", "")]));
        assert!(refused.is_err(), "a mapping of no group is refused");
    }

    #[test]
    fn worker_settings_from_file_and_env() {
        let d = Settings::default();
        assert_eq!(d.worker_interval, Duration::from_secs(10));
        assert_eq!(d.action_expiry, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(d.daily_cap, None);
        assert_eq!(d.webhook_stuck_after, Duration::from_secs(120 * 60));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redeploy.toml");
        std::fs::write(
            &path,
            "worker_interval_secs = 30\naction_expiry_hours = 48\ndaily_cap = 200\n",
        )
        .unwrap();
        let s = Settings::load(Some(&path), &[]).unwrap();
        assert_eq!(s.worker_interval, Duration::from_secs(30));
        assert_eq!(s.action_expiry, Duration::from_secs(48 * 3600));
        assert_eq!(s.daily_cap, Some(200));
        let s = Settings::load(
            Some(&path),
            &env(&[
                ("REDEPLOY_WORKER_INTERVAL_SECS", "5"),
                ("REDEPLOY_DAILY_CAP", "0"),
                ("REDEPLOY_WEBHOOK_STUCK_AFTER_MINUTES", "30"),
            ]),
        )
        .unwrap();
        assert_eq!(s.webhook_stuck_after, Duration::from_secs(30 * 60));
        assert_eq!(s.worker_interval, Duration::from_secs(5));
        assert_eq!(s.daily_cap, None, "0 means no cap");
        assert_eq!(d.support_trail_messages, 20);
        let s = Settings::load(None, &env(&[("REDEPLOY_SUPPORT_TRAIL_MESSAGES", "0")])).unwrap();
        assert_eq!(s.support_trail_messages, 0, "0 keeps nothing");
        assert_eq!(d.reset_watch, Duration::from_secs(3600));
        let s = Settings::load(None, &env(&[("REDEPLOY_RESET_WATCH_MINUTES", "0")])).unwrap();
        assert_eq!(s.reset_watch, Duration::ZERO, "0 reads at every check-in");
        std::fs::write(&path, "reset_watch_minutes = 15\n").unwrap();
        let s = Settings::load(Some(&path), &[]).unwrap();
        assert_eq!(s.reset_watch, Duration::from_secs(15 * 60));
        assert!(Settings::load(None, &env(&[("REDEPLOY_WORKER_INTERVAL_SECS", "soon")])).is_err());
    }

    #[test]
    fn connection_and_outage_settings_from_file_and_env() {
        let d = Settings::default();
        assert_eq!(d.connections.tls_handshake_timeout, Duration::from_secs(10));
        assert_eq!(d.connections.header_read_timeout, Duration::from_secs(10));
        assert_eq!(d.connections.idle_timeout, Duration::from_secs(60));
        assert_eq!(d.connections.max_connections, 10_000);
        assert_eq!(d.connections.max_connections_per_ip, 256);
        assert_eq!(d.database_timeout, Duration::from_secs(3));
        assert_eq!(d.readiness_timeout, Duration::from_secs(2));
        assert_eq!(d.retry_after, Duration::from_secs(5));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redeploy.toml");
        std::fs::write(
            &path,
            "idle_timeout_secs = 20\nmax_connections_per_ip = 0\ndatabase_timeout_secs = 0\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&path),
            &env(&[
                ("REDEPLOY_TLS_HANDSHAKE_TIMEOUT_SECS", "3"),
                ("REDEPLOY_HEADER_READ_TIMEOUT_SECS", "4"),
                ("REDEPLOY_MAX_CONNECTIONS", "500"),
                ("REDEPLOY_READINESS_TIMEOUT_SECS", "1"),
                ("REDEPLOY_RETRY_AFTER_SECS", "30"),
            ]),
        )
        .unwrap();
        let c = s.connections;
        assert_eq!(c.tls_handshake_timeout, Duration::from_secs(3));
        assert_eq!(c.header_read_timeout, Duration::from_secs(4));
        assert_eq!(c.idle_timeout, Duration::from_secs(20));
        assert_eq!(c.max_connections, 500);
        assert_eq!(c.max_connections_per_ip, 0, "0 = no per-address cap");
        assert_eq!(
            s.database_timeout,
            Duration::from_secs(1),
            "at least a second"
        );
        assert_eq!(s.readiness_timeout, Duration::from_secs(1));
        assert_eq!(s.retry_after, Duration::from_secs(30));
        assert!(Settings::load(None, &env(&[("REDEPLOY_MAX_CONNECTIONS", "many")])).is_err());
    }

    #[test]
    fn crash_points_come_from_the_environment_only() {
        assert!(Settings::default().crash_points.is_empty());
        let s = Settings::load(
            None,
            &env(&[("REDEPLOY_CRASH_POINTS", "after_reply_commit:0.25")]),
        )
        .unwrap();
        assert_eq!(
            s.crash_points.probability(crate::crash::AFTER_REPLY_COMMIT),
            0.25
        );
        assert!(Settings::load(None, &env(&[("REDEPLOY_CRASH_POINTS", "nowhere:1")])).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redeploy.toml");
        std::fs::write(&path, "crash_points = \"after_reply_commit:1\"\n").unwrap();
        assert!(
            Settings::load(Some(&path), &[]).is_err(),
            "not a file key: a test switch never lands in a deployed config"
        );
    }

    #[test]
    fn federated_keys_come_from_exactly_one_of_file_and_url() {
        let fed = |extra: &[(&str, &str)]| {
            let mut vars = vec![
                ("REDEPLOY_FEDERATED_ISSUER", "https://login.example/t/v2.0"),
                ("REDEPLOY_FEDERATED_AUDIENCE", "api://redeploy"),
            ];
            vars.extend_from_slice(extra);
            Settings::load(None, &env(&vars)).map(|s| s.federated.unwrap())
        };
        let url = fed(&[
            (
                "REDEPLOY_FEDERATED_JWKS_URL",
                "https://login.example/t/keys",
            ),
            ("REDEPLOY_FEDERATED_TENANT_ID", "t-1"),
        ])
        .unwrap();
        assert_eq!(
            url.jwks,
            JwksSource::Url("https://login.example/t/keys".into())
        );
        assert_eq!(url.tenant_id.as_deref(), Some("t-1"));
        let file = fed(&[("REDEPLOY_FEDERATED_JWKS_FILE", "keys.json")]).unwrap();
        assert_eq!(file.jwks, JwksSource::File("keys.json".into()));
        assert_eq!(file.tenant_id, None);
        assert!(fed(&[]).is_err(), "neither");
        assert!(
            fed(&[
                ("REDEPLOY_FEDERATED_JWKS_FILE", "keys.json"),
                (
                    "REDEPLOY_FEDERATED_JWKS_URL",
                    "https://login.example/t/keys"
                ),
            ])
            .is_err(),
            "both"
        );
        assert!(fed(&[("REDEPLOY_FEDERATED_JWKS_URL", "http://issuer.example/keys")]).is_err());
        assert!(fed(&[("REDEPLOY_FEDERATED_JWKS_URL", "http://127.0.0.1:9000/keys")]).is_ok());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redeploy.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        assert!(Settings::load(Some(&path), &[]).is_err());
        assert!(Settings::load(None, &env(&[("REDEPLOY_MAX_BODY_BYTES", "lots")])).is_err());
        assert!(Settings::load(None, &env(&[("REDEPLOY_LISTEN", "nowhere")])).is_err());
    }
}
