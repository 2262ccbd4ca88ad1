//! Redeploy's domain: devices, enrollments, actions and their lifecycle, preflight, the command
//! queue rules, audit events, and the narrow storage traits bundled as [`store::Store`].
//! No HTTP, no SQL, no serde; time comes from a [`clock::Clock`].

pub mod account;
pub mod action;
pub mod audit;
pub mod autopilot;
pub mod batch;
pub mod clock;
pub mod command;
pub mod compliance;
pub mod console_session;
pub mod device;
pub mod device_condition;
pub mod enrollment;
pub mod error;
pub mod group;
pub mod ids;
pub mod inventory;
pub mod preflight;
pub mod push;
pub mod schedule;
pub mod session;
pub mod store;
pub mod trail;
pub mod webhook;

pub use account::{Account, AccountName, OpenIdUser, Principal};
pub use action::{decode_hresult, Action, ActionKind, ActionState, TimelineEntry};
pub use audit::{AuditEvent, AuditOutcome, NewAuditEvent};
pub use clock::{Clock, ManualClock, SystemClock};
pub use command::{CommandState, DeviceCommand, Resend, SentIn, Verb};
pub use console_session::{ConsoleSession, SessionHolder};
pub use device::{Device, EnrollmentType, JoinEvidence, JoinType, MessageSeq};
pub use enrollment::{ApiToken, Enrollment, EnrollmentToken, Role, SecretHash};
pub use error::{Error, Result};
pub use group::{DeviceFilter, Group, GroupKind, TextMatch};
pub use ids::{
    AccountId, ActionId, AuditId, BatchId, CommandId, DeliveryId, DeviceId, EnrollmentId, GroupId,
    ScheduleId, TokenId, WebhookId,
};
pub use inventory::InventoryValue;
pub use preflight::{
    preflight, winre_blocks, winre_failure_since_last_success, BlockReason, PreflightSettings,
    Readiness,
};
pub use session::{handle, SessionConfig, SessionError};
pub use store::{Store, StoreError, StoreResult};
pub use webhook::{Delivery, DeliveryStatus, Webhook, WebhookEvent};
