//! Named local accounts of the web console: created, listed and disabled by an admin (audited
//! as `account.create`, `account.disable`), and the password sign-in: Argon2id (RustCrypto's
//! `argon2`, its default parameters — OWASP's password storage cheat sheet's first choice,
//! m=19 MiB, t=2, p=1) stored as a PHC string, failed attempts limited per name and per client
//! address, an unknown name checked against a dummy hash so it takes as long as a wrong password,
//! and every attempt audited as `console.sign_in` (`password`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use redeploy_core::{Account, AccountId, AccountName, AuditOutcome, Principal, Role};

use super::console_sessions::audit_sign_in;
use super::{audit, Caller, Result, ServiceError};
use crate::state::AppState;

/// The shortest password an account may have (NIST SP 800-63B §3.1.1.2 asks at least 8 of a
/// password a person chose; an admin console deserves more).
pub const MIN_PASSWORD_CHARS: usize = 12;

/// An Argon2id hash (default parameters) of a password nobody has, checked when the name is
/// unknown so that the answer takes as long as for a wrong password.
/// `dummy_hash_has_the_default_parameters` keeps it in step with [`hash_password`].
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$cmVkZXBsb3ktZHVtbXktcw$WepJXQFAqGzmhrvbydbSnBqX5n2EPKJuLXsRlCrWv6Y";

/// Hashes `password` with Argon2id and a fresh random salt: a PHC string. Runs on a blocking
/// thread (it takes tens of milliseconds by design).
pub async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| internal(&e))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| internal(&e))
    })
    .await
    .map_err(|e| internal(&e))?
}

/// Whether `password` matches the PHC string `stored` (a malformed one matches nothing).
async fn verify_password(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

fn internal(e: &dyn std::fmt::Display) -> ServiceError {
    tracing::error!(error = %e, "password hashing failed");
    ServiceError::Invalid(format!("the password could not be hashed: {e}"))
}

fn parse_name(text: &str) -> Result<AccountName> {
    AccountName::parse(text).map_err(|e| ServiceError::Invalid(e.to_string()))
}

/// Every account (admins only), oldest first.
pub async fn list(state: &AppState, caller: &Caller) -> Result<Vec<Account>> {
    caller
        .require(state, Role::Admin, "list accounts", None)
        .await?;
    Ok(state.store.list_accounts().await?)
}

/// Creates the account `name` with `role` and `password` (admins only).
pub async fn create(
    state: &AppState,
    caller: &Caller,
    name: &str,
    role: Role,
    password: &str,
) -> Result<Account> {
    caller
        .require(state, Role::Admin, "create an account", None)
        .await?;
    let name = parse_name(name)?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ServiceError::Invalid(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if state.store.account_by_name(&name).await?.is_some() {
        return Err(ServiceError::Conflict(format!(
            "an account named {name} exists"
        )));
    }
    let account = Account {
        id: AccountId::generate(),
        name,
        password_hash: hash_password(password.to_owned()).await?,
        role,
        created_at: state.clock.now(),
        disabled_at: None,
    };
    state.store.create_account(&account).await?;
    audit::record(
        state,
        caller,
        "account.create",
        format!("{} {} role {role}", account.id, account.name),
    )
    .await?;
    Ok(account)
}

/// Disables the account `name` (admins only): it cannot sign in again and its console sessions
/// end. Disabling a disabled account changes nothing.
pub async fn disable(state: &AppState, caller: &Caller, name: &str) -> Result<Account> {
    caller
        .require(state, Role::Admin, "disable an account", None)
        .await?;
    let name = parse_name(name)?;
    let account = state
        .store
        .disable_account(&name, state.clock.now())
        .await?;
    audit::record(
        state,
        caller,
        "account.disable",
        format!("{} {}", account.id, account.name),
    )
    .await?;
    Ok(account)
}

/// How a password sign-in ended.
#[derive(Debug)]
pub enum PasswordSignIn {
    /// The name and password match an enabled account.
    Accepted(Account),
    /// Unknown name, wrong password or disabled account: the user is told only that the name
    /// or the password is wrong (the audit log says which).
    Refused,
    /// Too many failed attempts for this name or from this address; try again after this long.
    Throttled(Duration),
}

/// Checks a name and password typed at the console from `client` (audited either way).
pub async fn sign_in(
    state: &AppState,
    name_text: &str,
    password: &str,
    client: Option<IpAddr>,
) -> Result<PasswordSignIn> {
    let typed: String = name_text.trim().chars().take(64).collect();
    let name_key = typed.to_lowercase();
    let unknown_actor = format!("{typed} (no such account)");
    let limits = &state.sign_in_limits;
    let now = Instant::now();
    let throttled = [
        limits.by_name.check(name_key.clone(), now).err(),
        client.and_then(|ip| limits.by_ip.check(ip, now).err()),
    ]
    .into_iter()
    .flatten()
    .max();
    if let Some(wait) = throttled {
        let why = format!(
            "too many failed attempts; the next in {} s",
            wait.as_secs().max(1)
        );
        audit_sign_in(
            state,
            unknown_actor,
            "password",
            AuditOutcome::Refused,
            Some(&why),
        )
        .await?;
        return Ok(PasswordSignIn::Throttled(wait));
    }
    let account = match AccountName::parse(&typed) {
        Ok(name) => state.store.account_by_name(&name).await?,
        Err(_) => None,
    };
    let stored = account
        .as_ref()
        .map_or_else(|| DUMMY_HASH.to_owned(), |a| a.password_hash.clone());
    let matches = verify_password(password.to_owned(), stored).await;
    let (actor, why) = match &account {
        None => (unknown_actor, "no account has this name"),
        Some(a) => {
            let actor = Principal::Account(a.clone()).actor();
            if !matches {
                (actor, "wrong password")
            } else if a.disabled_at.is_some() {
                (actor, "the account is disabled")
            } else {
                limits.by_name.refund(&name_key);
                if let Some(ip) = client {
                    limits.by_ip.refund(&ip);
                }
                return Ok(PasswordSignIn::Accepted(a.clone()));
            }
        }
    };
    audit_sign_in(state, actor, "password", AuditOutcome::Refused, Some(why)).await?;
    Ok(PasswordSignIn::Refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_has_the_default_parameters() {
        let hash = PasswordHash::new(DUMMY_HASH).unwrap();
        let (params, default) = (
            argon2::Params::try_from(&hash).unwrap(),
            argon2::Params::default(),
        );
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (default.m_cost(), default.t_cost(), default.p_cost())
        );
        assert_eq!(hash.algorithm, argon2::Algorithm::Argon2id.ident());
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse battery".into(), hash.clone()).await);
        assert!(!verify_password("correct horse battery!".into(), hash).await);
        assert!(!verify_password("anything".into(), "not a phc string".into()).await);
    }
}
