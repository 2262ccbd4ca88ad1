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
            issued_at: now.unix_timestamp(),
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
            issued_at: now.unix_timestamp(),
        },
    )
    .await
    .map(Some)
}
