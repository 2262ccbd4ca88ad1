//! Who asks: the holder of an API token (REST, Graph, and the console, whose session was opened
//! with one) and the role check every use case makes. A refused role is audited
//! (`api.forbidden`) so that an admin can see who tried what.

use redeploy_core::{ApiToken, AuditOutcome, DeviceId, NewAuditEvent, Role};

use super::{Result, ServiceError};
use crate::state::AppState;

/// The authenticated caller of a use case.
#[derive(Clone, Debug)]
pub struct Caller {
    pub token: ApiToken,
}

impl Caller {
    /// How the caller appears in the audit log and on actions: `name (token id)`.
    pub fn actor(&self) -> String {
        format!("{} ({})", self.token.name, self.token.id)
    }

    /// Whether the caller's role includes `role`.
    pub fn can(&self, role: Role) -> bool {
        self.token.role.includes(role)
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
        state
            .store
            .append_audit(
                NewAuditEvent::new(state.clock.now(), self.actor(), "api.forbidden")
                    .targets(device)
                    .outcome(AuditOutcome::Refused)
                    .details(format!(
                        "{attempted}: needs role {needed}, token has {}",
                        self.token.role
                    )),
            )
            .await?;
        Err(ServiceError::Forbidden(format!(
            "{attempted} needs the {needed} role; this token has {}",
            self.token.role
        )))
    }
}
