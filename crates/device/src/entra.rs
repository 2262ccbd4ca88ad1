//! The PC's Entra tokens. A real PC gets them from Microsoft Entra ID (the device token of its
//! join, the signed-in user's token); the emulator asks a token issuer of the repository's
//! `test-issuer` crate (or anything speaking its `POST /token`) over HTTP instead, so it never
//! depends on server code. The tokens carry the claims Entra's do (Microsoft's "Access token
//! claims reference"): `deviceid` is the PC's Entra device id ([`crate::state::EntraJoin`]).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{DeviceError, Result};
use crate::state::DeviceState;

/// A token request (the issuer's `TokenRequest`).
#[derive(Debug, Serialize)]
struct Request<'a> {
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_id: Option<&'a str>,
    issued_at: i64,
}

/// A minted token and the tenant it is for.
#[derive(Debug, Clone, Deserialize)]
pub struct Minted {
    pub access_token: String,
    pub tenant_id: String,
}

/// When Entra would stamp a token the PC asks for at device time `now`: Entra's clock is not
/// the PC's. A PC's own clock in the past (a test's fixed instant, shared with an in-process
/// server) is kept; one ahead of the real clock (an emulated fleet at `--time-scale` above 1,
/// whose device hours pass in real seconds) cannot be the issuer's time, so the issuer's own
/// (real) time is used. A token stamped in the future is refused by the server once it is
/// more than a minute ahead ("not yet valid"), at time-scale 900 after 67 real milliseconds.
fn issued_at(now: OffsetDateTime) -> i64 {
    now.min(OffsetDateTime::now_utc()).unix_timestamp()
}

async fn request(issuer: &str, body: &Request<'_>) -> Result<Minted> {
    let url = format!("{}/token", issuer.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| DeviceError::Connect(format!("{url}: {e}")))?;
    let response = client
        .post(&url)
        .json(body)
        .send()
        .await
        .map_err(|e| DeviceError::Connect(format!("token issuer {url}: {e}")))?;
    if !response.status().is_success() {
        return Err(DeviceError::Http {
            step: "Entra token",
            status: response.status().as_u16(),
        });
    }
    response.json().await.map_err(|e| DeviceError::Protocol {
        step: "Entra token",
        message: format!("{url}: {e}"),
    })
}

/// The device token of the PC's Entra join (`deviceid`, no user), issued at `now`.
pub async fn device_token(
    issuer: &str,
    state: &DeviceState,
    now: OffsetDateTime,
) -> Result<Minted> {
    let device_id = state
        .entra_join
        .device_id
        .as_deref()
        .ok_or_else(|| DeviceError::Protocol {
            step: "Entra token",
            message: "the PC has no Entra device id".into(),
        })?;
    request(
        issuer,
        &Request {
            kind: "device",
            device_id: Some(device_id),
            upn: None,
            object_id: None,
            issued_at: issued_at(now),
        },
    )
    .await
}

/// The token of Entra user `upn` on this PC (`upn`, `oid`, and the PC's `deviceid` when it has
/// one), issued at `now`. `None` when `upn` is not one of the PC's Entra users.
pub async fn user_token(
    issuer: &str,
    state: &DeviceState,
    upn: &str,
    now: OffsetDateTime,
) -> Result<Option<Minted>> {
    let Some(user) = state.entra_users.iter().find(|u| u.upn == upn) else {
        return Ok(None);
    };
    request(
        issuer,
        &Request {
            kind: "user",
            device_id: state.entra_join.device_id.as_deref(),
            upn: Some(&user.upn),
            object_id: Some(&user.object_id),
            issued_at: issued_at(now),
        },
    )
    .await
    .map(Some)
}
