//! The action model: what an admin asks for and its lifecycle state machine (docs/design.md §4 "The
//! Autopilot Reset action lifecycle").

use std::fmt;

use time::OffsetDateTime;

use crate::device::text_enum;
use crate::error::{Error, Result};
use crate::ids::{ActionId, BatchId, DeviceId};

/// What the admin asked for. Each maps to one RemoteWipe/Reboot/DMClient node (ITPRO
/// remotewipe-csp.md) or to the local-reset policy (ITPRO policy-csp-credentialproviders.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// `RemoteWipe/AutomaticRedeployment/doAutomaticRedeployment`.
    AutopilotReset,
    /// `RemoteWipe/doWipe`.
    Wipe,
    /// `RemoteWipe/doWipePersistProvisionedData`.
    WipeKeepProvisioning,
    /// `RemoteWipe/doWipePersistUserData`.
    WipeKeepUserData,
    /// `RemoteWipe/doWipeProtected`.
    WipeProtected,
    /// `Reboot/RebootNow`.
    Restart,
    /// Ask the device to check in.
    Sync,
    /// Unenroll the device from management.
    Retire,
    /// Set `DisableAutomaticReDeploymentCredentials` so that local reset is allowed (`true`) or not.
    SetLocalResetPolicy(bool),
}

impl ActionKind {
    /// The stable name used by the API (`autopilot_reset`, `wipe`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::AutopilotReset => "autopilot_reset",
            Self::Wipe => "wipe",
            Self::WipeKeepProvisioning => "wipe_keep_provisioning",
            Self::WipeKeepUserData => "wipe_keep_user_data",
            Self::WipeProtected => "wipe_protected",
            Self::Restart => "restart",
            Self::Sync => "sync",
            Self::Retire => "retire",
            Self::SetLocalResetPolicy(_) => "set_local_reset_policy",
        }
    }

    /// One text code carrying the kind and its argument, for storage
    /// (`set_local_reset_policy:allow` / `:deny`, otherwise the name).
    pub fn code(&self) -> String {
        match self {
            Self::SetLocalResetPolicy(true) => "set_local_reset_policy:allow".to_owned(),
            Self::SetLocalResetPolicy(false) => "set_local_reset_policy:deny".to_owned(),
            other => other.name().to_owned(),
        }
    }

    /// Parses [`Self::code`] (and the plain names of argument-less kinds).
    pub fn from_code(code: &str) -> Result<Self> {
        Ok(match code {
            "autopilot_reset" => Self::AutopilotReset,
            "wipe" => Self::Wipe,
            "wipe_keep_provisioning" => Self::WipeKeepProvisioning,
            "wipe_keep_user_data" => Self::WipeKeepUserData,
            "wipe_protected" => Self::WipeProtected,
            "restart" => Self::Restart,
            "sync" => Self::Sync,
            "retire" => Self::Retire,
            "set_local_reset_policy:allow" => Self::SetLocalResetPolicy(true),
            "set_local_reset_policy:deny" => Self::SetLocalResetPolicy(false),
            other => {
                return Err(Error::InvalidValue {
                    kind: "action kind",
                    value: other.to_owned(),
                })
            }
        })
    }

    /// Whether this is a remote Autopilot Reset (the kind preflight guards).
    pub fn is_autopilot_reset(&self) -> bool {
        matches!(self, Self::AutopilotReset)
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code())
    }
}

text_enum!(
    /// Lifecycle of an action; the words are part of the API contract (docs/design.md §7).
    ActionState, "action state" {
        /// Just asked for; preflight not run yet.
        Requested => "requested",
        /// Preflight refused it; `reason` says why.
        Blocked => "blocked",
        /// Queued, waiting for the device's next check-in.
        Pending => "pending",
        /// Its command went out in a committed reply.
        Sent => "sent",
        /// The device answered the command with 200/202.
        Acknowledged => "acknowledged",
        /// The device reported progress (Status 10/20) or went silent to do it.
        InProgress => "in_progress",
        /// The device's own status says it finished.
        Done => "done",
        /// The device reported a failure, or refused the command.
        Failed => "failed",
        /// An admin canceled it before it was sent.
        Canceled => "canceled",
        /// It waited too long.
        Expired => "expired",
    }
);

impl ActionState {
    /// Whether no further transition is possible.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Done | Self::Failed | Self::Canceled | Self::Expired
        )
    }

    /// Whether the action needs nothing more from us or the device: terminal, or blocked
    /// (blocked never changes on its own; a retry is a new action). What `--wait` waits for
    /// and what a batch needs of every action to settle ([`crate::batch::batch_settled`]).
    pub fn is_settled(&self) -> bool {
        self.is_terminal() || *self == Self::Blocked
    }

    /// Whether the state machine allows `self -> to`.
    ///
    /// Cancel is only allowed before anything reached the device: once an Exec went out the
    /// device may act on it whatever we record. `Sent -> Pending` is the explicit re-send after a
    /// re-check proved the device never got the command; `Sent -> InProgress/Done/Failed` covers a
    /// lost acknowledgement when the device's Status node already tells more.
    pub fn can_go_to(&self, to: ActionState) -> bool {
        use ActionState::*;
        matches!(
            (self, to),
            (Requested, Blocked | Pending | Canceled)
                | (Blocked, Pending | Canceled | Expired)
                | (Pending, Sent | Blocked | Canceled | Expired)
                | (
                    Sent,
                    Acknowledged | InProgress | Done | Failed | Pending | Expired
                )
                | (Acknowledged, InProgress | Done | Failed | Expired)
                | (InProgress, Done | Failed | Expired)
        )
    }
}

/// `requested_by` of a local Autopilot Reset the server observed ([`Action::observed`]): the PC
/// did it, nobody asked us. The daily cap does not count such actions.
pub const LOCAL_RESET_OBSERVER: &str = "device (local reset)";

/// One step in an action's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineEntry {
    /// State entered.
    pub state: ActionState,
    /// When.
    pub at: OffsetDateTime,
    /// Why, if there is more to say.
    pub note: Option<String>,
}

/// An admin action on one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// Identity.
    pub id: ActionId,
    /// Target device.
    pub device: DeviceId,
    /// What to do.
    pub kind: ActionKind,
    /// Current state (always equal to the last timeline entry's state).
    pub state: ActionState,
    /// Human text for blocked/failed actions.
    pub reason: Option<String>,
    /// HRESULT the device reported (e.g. `AutomaticRedeployment/LastError`).
    pub last_error: Option<u32>,
    /// The bulk request this belongs to.
    pub batch: Option<BatchId>,
    /// Who asked (token name or "system").
    pub requested_by: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Time of the last transition.
    pub updated_at: OffsetDateTime,
    /// Every state entered, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// For an Autopilot Reset: what the PC's status nodes said just before our Exec went out
    /// (read in the same session). Only a value newer than this is evidence of the outcome.
    pub baseline: Option<ResetBaseline>,
}

/// The values of the PC's reset status nodes at one moment: `RemoteWipe/AutomaticRedeployment/
/// Status` and `LastError` (ITPRO remotewipe-csp.md) and `DMClient/Provider/<id>/FirstSyncStatus/
/// IsSyncDone` (ITPRO dmclient-csp.md). `None` where the PC did not answer the Get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResetBaseline {
    /// `AutomaticRedeployment/Status`.
    pub status: Option<i64>,
    /// `AutomaticRedeployment/LastError` (an HRESULT).
    pub last_error: Option<u32>,
    /// `FirstSyncStatus/IsSyncDone`. We set it to true just before reading the baseline; a reset
    /// sends the PC through its first sync again, which shows as false (INFERENCE, see
    /// ARCHITECTURE.md "Never falsely done": the emulator models it, Windows' exact behaviour is
    /// UNCONFIRMED).
    pub sync_done: Option<bool>,
}

impl ResetBaseline {
    /// Storage text: `status=1;last_error=0;sync_done=true`, `-` for a missing value.
    pub fn to_text(&self) -> String {
        fn or_dash<T: ToString>(v: Option<T>) -> String {
            v.map_or_else(|| "-".to_owned(), |v| v.to_string())
        }
        format!(
            "status={};last_error={};sync_done={}",
            or_dash(self.status),
            or_dash(self.last_error),
            or_dash(self.sync_done)
        )
    }

    /// Parses [`Self::to_text`].
    pub fn from_text(text: &str) -> Result<Self> {
        let bad = || Error::InvalidValue {
            kind: "reset baseline",
            value: text.to_owned(),
        };
        let mut out = Self::default();
        for part in text.split(';') {
            let (key, value) = part.split_once('=').ok_or_else(bad)?;
            let value = (value != "-").then_some(value);
            match key {
                "status" => out.status = value.map(str::parse).transpose().map_err(|_| bad())?,
                "last_error" => {
                    out.last_error = value.map(str::parse).transpose().map_err(|_| bad())?
                }
                "sync_done" => {
                    out.sync_done = value.map(str::parse).transpose().map_err(|_| bad())?
                }
                _ => return Err(bad()),
            }
        }
        Ok(out)
    }

    /// For the timeline: `Status 1, LastError 0x00000000, IsSyncDone true`.
    pub fn describe(&self) -> String {
        let or_unknown = |v: Option<String>| v.unwrap_or_else(|| "?".to_owned());
        format!(
            "Status {}, LastError {}, IsSyncDone {}",
            or_unknown(self.status.map(|s| s.to_string())),
            or_unknown(self.last_error.map(format_hresult)),
            or_unknown(self.sync_done.map(|s| s.to_string()))
        )
    }
}

impl Action {
    /// A new action in state `requested`.
    pub fn new(
        id: ActionId,
        device: DeviceId,
        kind: ActionKind,
        requested_by: impl Into<String>,
        batch: Option<BatchId>,
        at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            device,
            kind,
            state: ActionState::Requested,
            reason: None,
            last_error: None,
            batch,
            requested_by: requested_by.into(),
            created_at: at,
            updated_at: at,
            timeline: vec![TimelineEntry {
                state: ActionState::Requested,
                at,
                note: None,
            }],
            baseline: None,
        }
    }

    /// An action nobody asked this server for but that the device was seen to go through (a
    /// local Autopilot Reset noticed at a check-in, [`crate::session`]'s reset watch): created
    /// `done` at once, its timeline one `done` entry saying how it was seen. It never had a
    /// command; it is history, not a request.
    pub fn observed(
        id: ActionId,
        device: DeviceId,
        kind: ActionKind,
        requested_by: impl Into<String>,
        at: OffsetDateTime,
        note: impl Into<String>,
    ) -> Self {
        Self {
            id,
            device,
            kind,
            state: ActionState::Done,
            reason: None,
            last_error: None,
            batch: None,
            requested_by: requested_by.into(),
            created_at: at,
            updated_at: at,
            timeline: vec![TimelineEntry {
                state: ActionState::Done,
                at,
                note: Some(note.into()),
            }],
            baseline: None,
        }
    }

    /// Moves to `to`, recording it in the timeline; refuses transitions the lifecycle forbids
    /// and leaves the action unchanged then. A note on `blocked`/`failed` becomes the reason.
    pub fn transition(
        &mut self,
        to: ActionState,
        at: OffsetDateTime,
        note: Option<&str>,
    ) -> Result<()> {
        if !self.state.can_go_to(to) {
            return Err(Error::IllegalTransition {
                from: self.state,
                to,
            });
        }
        self.state = to;
        self.updated_at = at;
        if matches!(to, ActionState::Blocked | ActionState::Failed) {
            if let Some(n) = note {
                self.reason = Some(n.to_owned());
            }
        }
        self.timeline.push(TimelineEntry {
            state: to,
            at,
            note: note.map(str::to_owned),
        });
        Ok(())
    }

    /// Adds `note` to the timeline without a transition (the entry repeats the current state),
    /// e.g. why a pending action waits. `updated_at` stays: a note is not progress.
    pub fn add_note(&mut self, at: OffsetDateTime, note: impl Into<String>) {
        self.timeline.push(TimelineEntry {
            state: self.state,
            at,
            note: Some(note.into()),
        });
    }

    /// `last_error` as the API shows it, e.g. `0x80070032`.
    pub fn last_error_text(&self) -> Option<String> {
        self.last_error.map(format_hresult)
    }
}

/// `0x` and eight upper-case hex digits.
pub fn format_hresult(code: u32) -> String {
    format!("0x{code:08X}")
}

/// Meaning of an HRESULT a device reported for a reset, and the fix when we know one.
/// 0x80070032 (ERROR_NOT_SUPPORTED) is what a disabled WinRE gives (MEM windows-autopilot-reset.md
/// "Troubleshooting"; docs/protocol.md §1.3).
pub fn decode_hresult(code: u32) -> (&'static str, Option<&'static str>) {
    match code {
        0 => ("no error", None),
        0x8007_0032 => (
            "WinRE is disabled",
            Some("run `reagentc.exe /enable` on the device"),
        ),
        0x8007_0005 => ("access denied", None),
        0x8000_4005 => ("unspecified failure", None),
        0x8007_0490 => ("element not found", None),
        0x8007_05B4 => ("the operation timed out", None),
        0x8007_0015 => ("the device is not ready", None),
        _ => ("unknown error", None),
    }
}

/// Meaning of `RemoteWipe/AutomaticRedeployment/Status` (ITPRO remotewipe-csp.md).
pub fn autopilot_status_meaning(status: i64) -> &'static str {
    match status {
        0 => "never run",
        1 => "complete",
        10 => "reset scheduled",
        20 => "reset scheduled, waiting for reboot",
        30 => "failed during CSP Execute",
        40 => "failed: power requirements not met",
        50 => "failed: reset internals failed during reset attempt",
        _ => "unknown status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use ActionState::*;

    fn action_in(state: ActionState) -> Action {
        let at = datetime!(2026-01-01 0:00 UTC);
        let mut a = Action::new(
            ActionId::generate(),
            DeviceId::generate(),
            ActionKind::AutopilotReset,
            "admin",
            None,
            at,
        );
        a.state = state;
        a
    }

    const LEGAL: &[(ActionState, ActionState)] = &[
        (Requested, Blocked),
        (Requested, Pending),
        (Requested, Canceled),
        (Blocked, Pending),
        (Blocked, Canceled),
        (Blocked, Expired),
        (Pending, Sent),
        (Pending, Blocked),
        (Pending, Canceled),
        (Pending, Expired),
        (Sent, Acknowledged),
        (Sent, InProgress),
        (Sent, Done),
        (Sent, Failed),
        (Sent, Pending),
        (Sent, Expired),
        (Acknowledged, InProgress),
        (Acknowledged, Done),
        (Acknowledged, Failed),
        (Acknowledged, Expired),
        (InProgress, Done),
        (InProgress, Failed),
        (InProgress, Expired),
    ];

    #[test]
    fn every_legal_transition_is_accepted_and_recorded() {
        for (from, to) in LEGAL {
            let mut a = action_in(*from);
            let at = datetime!(2026-01-02 0:00 UTC);
            a.transition(*to, at, Some("because")).unwrap();
            assert_eq!(a.state, *to);
            assert_eq!(a.updated_at, at);
            let last = a.timeline.last().unwrap();
            assert_eq!(
                (last.state, last.at, last.note.as_deref()),
                (*to, at, Some("because"))
            );
        }
    }

    #[test]
    fn every_other_transition_is_rejected_and_changes_nothing() {
        for from in ActionState::ALL {
            for to in ActionState::ALL {
                if LEGAL.contains(&(*from, *to)) {
                    continue;
                }
                let mut a = action_in(*from);
                let before = a.clone();
                let err = a
                    .transition(*to, datetime!(2026-01-02 0:00 UTC), None)
                    .unwrap_err();
                assert_eq!(
                    err,
                    Error::IllegalTransition {
                        from: *from,
                        to: *to
                    }
                );
                assert_eq!(a, before);
            }
        }
    }

    #[test]
    fn terminal_states_go_nowhere_and_sent_cannot_be_canceled() {
        for s in [Done, Failed, Canceled, Expired] {
            assert!(s.is_terminal());
            assert!(ActionState::ALL.iter().all(|to| !s.can_go_to(*to)));
        }
        assert!(!Sent.can_go_to(Canceled));
        assert!(
            !Pending.can_go_to(Done),
            "done only from the device's own status"
        );
    }

    #[test]
    fn a_full_reset_lifecycle_builds_the_timeline_and_reason() {
        let mut a = action_in(Requested);
        let t = datetime!(2026-01-01 1:00 UTC);
        for s in [Pending, Sent, Acknowledged, InProgress] {
            a.transition(s, t, None).unwrap();
        }
        a.transition(Failed, t, Some("WinRE is disabled")).unwrap();
        a.last_error = Some(0x8007_0032);
        let states: Vec<_> = a.timeline.iter().map(|e| e.state).collect();
        assert_eq!(
            states,
            [Requested, Pending, Sent, Acknowledged, InProgress, Failed]
        );
        assert_eq!(a.reason.as_deref(), Some("WinRE is disabled"));
        assert_eq!(a.last_error_text().as_deref(), Some("0x80070032"));
    }

    #[test]
    fn an_observed_action_is_done_from_its_first_entry() {
        let at = datetime!(2026-01-02 0:00 UTC);
        let a = Action::observed(
            ActionId::generate(),
            DeviceId::generate(),
            ActionKind::AutopilotReset,
            LOCAL_RESET_OBSERVER,
            at,
            "seen",
        );
        assert_eq!((a.state, a.created_at, a.updated_at), (Done, at, at));
        assert_eq!(
            a.timeline,
            [TimelineEntry {
                state: Done,
                at,
                note: Some("seen".into())
            }]
        );
        assert_eq!(a.requested_by, "device (local reset)");
        assert!(a.state.is_terminal());
    }

    #[test]
    fn hresult_decoding() {
        assert_eq!(
            decode_hresult(0x8007_0032),
            (
                "WinRE is disabled",
                Some("run `reagentc.exe /enable` on the device")
            )
        );
        assert_eq!(decode_hresult(0).0, "no error");
        assert_eq!(decode_hresult(0x1234_5678), ("unknown error", None));
        assert_eq!(format_hresult(0x8007_0032), "0x80070032");
        assert_eq!(autopilot_status_meaning(30), "failed during CSP Execute");
    }

    #[test]
    fn baselines_round_trip_through_text() {
        for b in [
            ResetBaseline::default(),
            ResetBaseline {
                status: Some(1),
                last_error: Some(0x8007_0032),
                sync_done: Some(true),
            },
            ResetBaseline {
                status: Some(30),
                last_error: None,
                sync_done: Some(false),
            },
        ] {
            assert_eq!(ResetBaseline::from_text(&b.to_text()).unwrap(), b);
        }
        assert!(ResetBaseline::from_text("status=x").is_err());
        assert!(ResetBaseline::from_text("colour=1").is_err());
    }

    #[test]
    fn kind_codes_round_trip() {
        for k in [
            ActionKind::AutopilotReset,
            ActionKind::Wipe,
            ActionKind::WipeKeepProvisioning,
            ActionKind::WipeKeepUserData,
            ActionKind::WipeProtected,
            ActionKind::Restart,
            ActionKind::Sync,
            ActionKind::Retire,
            ActionKind::SetLocalResetPolicy(true),
            ActionKind::SetLocalResetPolicy(false),
        ] {
            assert_eq!(ActionKind::from_code(&k.code()).unwrap(), k);
        }
        assert!(ActionKind::from_code("explode").is_err());
    }
}
