//! First start and every start: the data folder (0700), the CA, the TLS server certificate
//! (re-issued when the host names change or it nears expiry), the store picked from the
//! database URL, and the first admin and enrollment tokens (files with mode 0600).

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use enroll::ca::CertificateAuthority;
use redeploy_core::{ApiToken, EnrollmentToken, Role, SecretHash, Store, TokenId};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::Error;

/// File names inside the data folder (the contract in docs/design.md §7 names `ca.pem`,
/// `admin-token` and `redeploy.db`).
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server-key.pem";
pub const ADMIN_TOKEN: &str = "admin-token";
pub const ENROLLMENT_TOKEN: &str = "enrollment-token";
pub const SQLITE_DB: &str = "redeploy.db";

/// A server certificate with less than this left is replaced at start.
const RENEW_BEFORE: time::Duration = time::Duration::days(30);

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the data folder (mode 0700 on Unix) if it does not exist.
pub fn ensure_data_dir(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

/// Writes `contents` to `path` through a temporary file and a rename, so a crash never leaves
/// half a key; `private` files get mode 0600 from the start.
pub fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    file.write_all(contents.as_bytes()).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Loads `ca.pem` + `ca-key.pem`, or creates them when neither exists.
pub fn load_or_create_ca(dir: &Path, now: OffsetDateTime) -> Result<CertificateAuthority, Error> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let cert = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            let key = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            Ok(CertificateAuthority::from_pem(&cert, &key)?)
        }
        (false, false) => {
            let ca = CertificateAuthority::generate("Redeploy device CA", now)?;
            write_file(&key_path, &ca.key_pem(), true)?;
            write_file(&cert_path, ca.cert_pem(), false)?;
            tracing::info!(path = %cert_path.display(), "created the CA");
            Ok(ca)
        }
        _ => Err(Error::Config(format!(
            "{} and {} must both exist or both be absent",
            cert_path.display(),
            key_path.display()
        ))),
    }
}

/// The names a server certificate must cover: localhost, loopback and `hostnames`, lowercase.
fn wanted_names(hostnames: &[String]) -> BTreeSet<String> {
    ["localhost", "127.0.0.1", "::1"]
        .iter()
        .map(|s| s.to_string())
        .chain(hostnames.iter().map(|h| normalize_name(h)))
        .collect()
}

fn normalize_name(name: &str) -> String {
    match name.trim().parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => name.trim().to_ascii_lowercase(),
    }
}

/// Whether the stored server certificate can be kept: issued by `ca`, covering exactly the
/// wanted names, and not within [`RENEW_BEFORE`] of expiry.
fn server_cert_is_current(
    ca: &CertificateAuthority,
    pem: &str,
    hostnames: &[String],
    now: OffsetDateTime,
) -> bool {
    let Ok(certs) = crate::tls::certs_from_pem(pem) else {
        return false;
    };
    let Some(der) = certs.first() else {
        return false;
    };
    if ca.verify_issued(der).is_err() {
        return false;
    }
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return false;
    };
    if cert.validity().not_after.to_datetime() - RENEW_BEFORE < now {
        return false;
    }
    let mut names = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    names.insert(normalize_name(d));
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        names.insert(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    names == wanted_names(hostnames)
}

/// The TLS server certificate chain (server cert then CA) and key, re-issued when needed.
pub fn load_or_issue_server_cert(
    dir: &Path,
    ca: &CertificateAuthority,
    hostnames: &[String],
    now: OffsetDateTime,
) -> Result<(String, String), Error> {
    let cert_path = dir.join(SERVER_CERT);
    let key_path = dir.join(SERVER_KEY);
    if cert_path.exists() && key_path.exists() {
        let cert = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let key = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        if server_cert_is_current(ca, &cert, hostnames, now) {
            return Ok((cert, key));
        }
    }
    let (cert, key) = ca.issue_server_certificate(hostnames, now)?;
    let chain = format!("{}{}", cert, ca.cert_pem());
    write_file(&key_path, &key, true)?;
    write_file(&cert_path, &chain, false)?;
    tracing::info!(path = %cert_path.display(), ?hostnames, "issued the TLS server certificate");
    Ok((chain, key))
}

/// Which database a `database` setting names, with its URL (or SQLite path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A `sqlite:` URL or a file path.
    Sqlite(String),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl Database {
    /// The database named by `database` (`sqlite:`/file path or `postgres://`/`postgresql://`),
    /// defaulting to `<data_dir>/redeploy.db`.
    pub fn from_setting(database: Option<&str>, data_dir: &Path) -> Result<Database, Error> {
        let url = match database {
            Some(url) => url.to_string(),
            None => data_dir.join(SQLITE_DB).display().to_string(),
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Database::Postgres(url))
        } else if url.contains("://") && !url.starts_with("sqlite:") {
            Err(Error::Config(format!(
                "database {:?}: expected sqlite://PATH, a file path or postgres://…",
                redact(&url)
            )))
        } else {
            Ok(Database::Sqlite(url))
        }
    }

    /// The URL (or path), for connecting.
    pub fn url(&self) -> &str {
        match self {
            Database::Sqlite(url) | Database::Postgres(url) => url,
        }
    }
}

/// Opens the store named by `database` (see [`Database::from_setting`]) and runs its migrations.
/// A statement waits at most `wait` for the database (a pooled connection; SQLite's write lock)
/// before it fails.
pub async fn open_store(
    database: Option<&str>,
    data_dir: &Path,
    wait: std::time::Duration,
) -> Result<Arc<dyn Store>, Error> {
    let options = &store_sql::ConnectOptions { wait };
    match Database::from_setting(database, data_dir)? {
        Database::Postgres(url) => Ok(Arc::new(
            store_postgres::PostgresStore::connect_with(&url, options).await?,
        )),
        Database::Sqlite(url) => Ok(Arc::new(
            store_sqlite::SqliteStore::connect_with(&url, options).await?,
        )),
    }
}

/// The URL with its password (if any) as `***`, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A new random secret with a readable prefix (`rdp_admin_…`, `rdp_enroll_…`).
pub fn new_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", hex_lower(&bytes))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the first start created.
#[derive(Debug, Clone, Default)]
pub struct FirstTokens {
    /// Whether the admin token was created now (written to `admin-token`).
    pub admin_created: bool,
    /// Whether the enrollment token was created now (written to `enrollment-token`).
    pub enrollment_created: bool,
}

/// On a database without API tokens: creates the first admin token and writes it to
/// `admin-token` (0600). On a database without enrollment tokens: creates an unlimited,
/// non-expiring enrollment token and writes it to `enrollment-token` (0600). A second process
/// sharing the database finds both and creates nothing.
pub async fn ensure_first_tokens(
    store: &dyn Store,
    dir: &Path,
    now: OffsetDateTime,
) -> Result<FirstTokens, Error> {
    let mut created = FirstTokens::default();
    if store.list_api_tokens().await?.is_empty() {
        let secret = new_secret("rdp_admin_");
        store
            .create_api_token(&ApiToken {
                id: TokenId::generate(),
                name: "first admin".into(),
                secret_hash: SecretHash::of_secret(&secret),
                role: Role::Admin,
                created_at: now,
                revoked_at: None,
            })
            .await?;
        write_file(&dir.join(ADMIN_TOKEN), &format!("{secret}\n"), true)?;
        created.admin_created = true;
    }
    if store.list_enrollment_tokens().await?.is_empty() {
        let secret = new_secret("rdp_enroll_");
        store
            .create_enrollment_token(&EnrollmentToken {
                id: TokenId::generate(),
                label: "first enrollment token".into(),
                secret_hash: SecretHash::of_secret(&secret),
                expires_at: None,
                max_uses: None,
                uses: 0,
                created_at: now,
                // The first token vouches for nothing: its PCs' join rests on their own claim.
                vouches_entra_join: false,
            })
            .await?;
        write_file(&dir.join(ENROLLMENT_TOKEN), &format!("{secret}\n"), true)?;
        created.enrollment_created = true;
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/redeploy"),
            "postgres://app:***@db:5432/redeploy"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            redact("postgres://app@db/redeploy"),
            "postgres://app@db/redeploy",
            "no password, nothing to hide"
        );
    }

    #[test]
    fn server_cert_is_reissued_when_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let ca = load_or_create_ca(dir.path(), now).unwrap();
        let (first, _) = load_or_issue_server_cert(dir.path(), &ca, &[], now).unwrap();
        let (same, _) = load_or_issue_server_cert(dir.path(), &ca, &[], now).unwrap();
        assert_eq!(first, same);
        let names = vec!["MDM.example.org".to_string(), "10.0.0.5".to_string()];
        let (renamed, _) = load_or_issue_server_cert(dir.path(), &ca, &names, now).unwrap();
        assert_ne!(first, renamed);
        let (kept, _) = load_or_issue_server_cert(dir.path(), &ca, &names, now).unwrap();
        assert_eq!(renamed, kept);
        let later = now + time::Duration::days(390);
        let (renewed, _) = load_or_issue_server_cert(dir.path(), &ca, &names, later).unwrap();
        assert_ne!(kept, renewed);
    }
}
