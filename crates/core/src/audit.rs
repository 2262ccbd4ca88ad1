//! Audit events: who did what to which devices, append-only.

use time::OffsetDateTime;

use crate::device::text_enum;
use crate::ids::{AuditId, BatchId, DeviceId};

text_enum!(
    /// How an audited request ended.
    AuditOutcome, "audit outcome" {
        /// Done as asked.
        Success => "success",
        /// Refused (permissions, preflight, validation).
        Refused => "refused",
        /// Attempted but failed.
        Failed => "failed",
    }
);

/// An event to append; the store assigns its [`AuditId`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// When.
    pub at: OffsetDateTime,
    /// Who (token name, `system`, `device:<id>`).
    pub actor: String,
    /// What, e.g. `action.create`, `token.create`.
    pub action: String,
    /// Devices concerned (may be empty).
    pub targets: Vec<DeviceId>,
    /// The bulk request, if any.
    pub batch: Option<BatchId>,
    /// Outcome.
    pub outcome: AuditOutcome,
    /// Free text.
    pub details: String,
}

impl NewAuditEvent {
    /// `actor` did `action` at `at`, successfully, to no device in particular; the other
    /// methods say otherwise.
    pub fn new(at: OffsetDateTime, actor: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            at,
            actor: actor.into(),
            action: action.into(),
            targets: Vec::new(),
            batch: None,
            outcome: AuditOutcome::Success,
            details: String::new(),
        }
    }

    /// The devices concerned.
    pub fn targets(mut self, targets: impl IntoIterator<Item = DeviceId>) -> Self {
        self.targets = targets.into_iter().collect();
        self
    }

    /// The batch it belongs to.
    pub fn batch(mut self, batch: impl Into<Option<BatchId>>) -> Self {
        self.batch = batch.into();
        self
    }

    /// How it ended.
    pub fn outcome(mut self, outcome: AuditOutcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// The free text.
    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }
}

/// A stored audit event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Position in the log (increasing).
    pub id: AuditId,
    /// When.
    pub at: OffsetDateTime,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Devices concerned.
    pub targets: Vec<DeviceId>,
    /// The bulk request, if any.
    pub batch: Option<BatchId>,
    /// Outcome.
    pub outcome: AuditOutcome,
    /// Free text.
    pub details: String,
}

impl AuditEvent {
    /// The stored form of `event` at position `id`.
    pub fn from_new(id: AuditId, event: NewAuditEvent) -> Self {
        Self {
            id,
            at: event.at,
            actor: event.actor,
            action: event.action,
            targets: event.targets,
            batch: event.batch,
            outcome: event.outcome,
            details: event.details,
        }
    }
}
