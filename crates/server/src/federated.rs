//! Federated enrollment: an Entra-style JWT (RS256) in the WS-Security BinarySecurityToken,
//! checked against a configured issuer, audience and JSON Web Key Set (docs/protocol.md §2.4, §2.7:
//! "MDM must validate signature and audience").

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::settings::FederatedSettings;

/// Why a federated token was refused (all answered with `s:Authentication`).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("no signing key {0:?} in the configured key set")]
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

/// A verifier for one issuer.
#[derive(Debug, Clone)]
pub struct FederatedAuth {
    settings: FederatedSettings,
    keys: JwkSet,
}

impl FederatedAuth {
    /// Reads the JWKS file named in `settings`.
    pub fn load(settings: &FederatedSettings) -> Result<Self, crate::Error> {
        let text =
            std::fs::read_to_string(&settings.jwks_file).map_err(|source| crate::Error::Io {
                path: settings.jwks_file.clone(),
                source,
            })?;
        Self::from_jwks(settings.clone(), &text)
    }

    /// A verifier from the text of a JSON Web Key Set.
    pub fn from_jwks(settings: FederatedSettings, jwks_json: &str) -> Result<Self, crate::Error> {
        let keys: JwkSet = serde_json::from_str(jwks_json).map_err(|e| {
            crate::Error::Config(format!(
                "{}: not a JSON Web Key Set: {e}",
                settings.jwks_file.display()
            ))
        })?;
        Ok(FederatedAuth { settings, keys })
    }

    pub fn settings(&self) -> &FederatedSettings {
        &self.settings
    }

    /// Verifies signature (RS256 only), `iss`, `aud`, `exp` and `nbf` (60 s leeway).
    pub fn verify(&self, token: &str) -> Result<FederatedIdentity, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let jwk = match &header.kid {
            Some(kid) => self.keys.find(kid),
            // A set with one key needs no key id.
            None if self.keys.keys.len() == 1 => self.keys.keys.first(),
            None => None,
        }
        .ok_or_else(|| TokenError::UnknownKey(header.kid.clone()))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.validate_nbf = true;
        validation.leeway = 60;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let claim = |name: &str| {
            data.claims
                .get(name)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Ok(FederatedIdentity {
            upn: claim("upn")
                .or_else(|| claim("unique_name"))
                .or_else(|| claim("preferred_username")),
            object_id: claim("oid"),
            tenant_id: claim("tid"),
            device_id: claim("deviceid"),
        })
    }
}
