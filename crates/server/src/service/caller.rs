//! Who asks: the holder of an API token (REST, Graph, and the console's token sign-in), a local
//! account or an OpenID Connect user (console sign-ins), and the role check every use case
//! makes. A refused role is audited (`api.forbidden`) so that an admin can see who tried what.

use redeploy_core::{AuditOutcome, DeviceId, NewAuditEvent, Principal, Role};

use super::{Result, ServiceError};
use crate::state::AppState;

/// The authenticated caller of a use case.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
}

impl Caller {
    /// How the caller appears in the audit log and on actions ([`Principal::actor`]).
    pub fn actor(&self) -> String {
        self.principal.actor()
    }

    /// The caller's name as shown (a token's or account's name, an OpenID user's login).
    pub fn name(&self) -> &str {
        self.principal.name()
    }

    /// The caller's role.
    pub fn role(&self) -> Role {
        self.principal.role()
    }

    /// Whether the caller's role includes `role`.
    pub fn can(&self, role: Role) -> bool {
        self.role().includes(role)
    }

    /// `Ok` if the caller's role includes `needed`; otherwise audits `api.forbidden` with what was
    /// attempted and refuses ([`ServiceError::Forbidden`]).
    pub async fn require(
        &self,
        state: &AppState,
        needed: Role,
        attempted: &str,
        device: Option<DeviceId>,
    ) -> Result<()> {
        if self.can(needed) {
            return Ok(());
        }
        let holder = match self.principal {
            Principal::Token(_) => "token",
            Principal::Account(_) => "account",
            Principal::OpenId(_) => "user",
        };
        let role = self.role();
        state
            .store
            .append_audit(
                NewAuditEvent::new(state.clock.now(), self.actor(), "api.forbidden")
                    .targets(device)
                    .outcome(AuditOutcome::Refused)
                    .details(format!(
                        "{attempted}: needs role {needed}, {holder} has {role}"
                    )),
            )
            .await?;
        Err(ServiceError::Forbidden(format!(
            "{attempted} needs the {needed} role; this {holder} has {role}"
        )))
    }
}
