//! Queued OMA-DM commands for one device and the rules for re-sending them.

use time::OffsetDateTime;

use crate::device::text_enum;
use crate::ids::{ActionId, CommandId, DeviceId};

text_enum!(
    /// The OMA-DM verb (docs/protocol.md §3.4).
    Verb, "command verb" {
        /// Read a node.
        Get => "Get",
        /// Set an existing node.
        Replace => "Replace",
        /// Create a node.
        Add => "Add",
        /// Remove a node.
        Delete => "Delete",
        /// Execute a node (resets, wipes, reboot).
        Exec => "Exec",
    }
);

text_enum!(
    /// Where a queued command is.
    CommandState, "command state" {
        /// Waiting for the device's next check-in.
        Queued => "queued",
        /// In a reply that was committed; no Status back yet.
        Sent => "sent",
        /// The device answered with a 2xx Status.
        Answered => "answered",
        /// The device answered with an error Status, or we gave up on it.
        Failed => "failed",
    }
);

impl CommandState {
    /// The state a command enters when the device's Status `code` for it arrives
    /// (2xx is success; MS-MDM / ITPRO oma-dm-protocol-support.md "SyncML response status codes").
    pub fn after_status(code: u16) -> Self {
        if (200..300).contains(&code) {
            Self::Answered
        } else {
            Self::Failed
        }
    }
}

/// Where a command was sent: our SessionID, our MsgID and our CmdID. The device's Status
/// carries MsgRef/CmdRef equal to the last two (MS-MDM 3.1.5.2.1). Opaque strings: Windows may
/// use non-decimal ids (docs/protocol.md §7 fact 7).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SentIn {
    /// SyncHdr SessionID.
    pub session_id: String,
    /// Our SyncHdr MsgID.
    pub msg_id: String,
    /// Our CmdID of this command.
    pub cmd_id: String,
}

/// Whether a sent-but-unanswered command may go out again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// Idempotent enough (Get/Replace/Add/Delete): send again.
    Yes,
    /// An Exec whose fate is unknown: first Get the node's status (for a reset,
    /// `AutomaticRedeployment/Status` and `LastError`), never re-execute blindly
    /// (docs/design.md §4).
    RecheckFirst,
    /// Not applicable (queued, answered or failed).
    No,
}

/// One OMA-DM command queued for a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCommand {
    /// Identity.
    pub id: CommandId,
    /// Target device.
    pub device: DeviceId,
    /// The action it serves, if any.
    pub action: Option<ActionId>,
    /// Verb.
    pub verb: Verb,
    /// Target LocURI.
    pub uri: String,
    /// Meta Format (`int`, `chr`, `node`, ...).
    pub format: Option<String>,
    /// Item Data.
    pub data: Option<String>,
    /// Where it is.
    pub state: CommandState,
    /// The last reply that carried it.
    pub sent_in: Option<SentIn>,
    /// The device's Status code.
    pub status: Option<u16>,
    /// The Results data (for Get).
    pub result: Option<String>,
    /// Enqueue time.
    pub created_at: OffsetDateTime,
    /// Last send time.
    pub sent_at: Option<OffsetDateTime>,
    /// Answer time.
    pub answered_at: Option<OffsetDateTime>,
    /// How many committed replies carried it.
    pub attempts: u32,
}

impl DeviceCommand {
    /// A command in state `queued`.
    pub fn new(
        id: CommandId,
        device: DeviceId,
        action: Option<ActionId>,
        verb: Verb,
        uri: impl Into<String>,
        created_at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            device,
            action,
            verb,
            uri: uri.into(),
            format: None,
            data: None,
            state: CommandState::Queued,
            sent_in: None,
            status: None,
            result: None,
            created_at,
            sent_at: None,
            answered_at: None,
            attempts: 0,
        }
    }

    /// Sets Meta Format and Data.
    pub fn with_data(mut self, format: impl Into<String>, data: impl Into<String>) -> Self {
        self.format = Some(format.into());
        self.data = Some(data.into());
        self
    }

    /// The re-send rule for a command that was sent but never answered.
    pub fn may_resend(&self) -> Resend {
        if self.state != CommandState::Sent || self.status.is_some() {
            return Resend::No;
        }
        match self.verb {
            Verb::Exec => Resend::RecheckFirst,
            Verb::Get | Verb::Replace | Verb::Add | Verb::Delete => Resend::Yes,
        }
    }
}

/// `RemoteWipe/AutomaticRedeployment/Status` (ITPRO remotewipe-csp.md): 1 complete, 10/20 in
/// progress, 30/40/50 failed.
pub const AUTOPILOT_STATUS_URI: &str =
    "./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/Status";
/// `RemoteWipe/AutomaticRedeployment/LastError`: HRESULT of the last Autopilot Reset.
pub const AUTOPILOT_LAST_ERROR_URI: &str =
    "./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/LastError";
/// The Exec that starts a remote Autopilot Reset (ITPRO remotewipe-csp.md; docs/protocol.md §1.5).
pub const AUTOPILOT_RESET_EXEC_URI: &str =
    "./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/doAutomaticRedeployment";
/// BitLocker `Status/DeviceEncryptionStatus`: a bit field whose bit 12 means "Windows Recovery
/// Environment (WinRE) isn't configured" (ITPRO bitlocker-csp.md). No CSP reports WinRE directly
/// (docs/protocol.md §1.9); this is how a server can see `reagentc /enable` took effect.
pub const WINRE_STATUS_URI: &str = "./Device/Vendor/MSFT/BitLocker/Status/DeviceEncryptionStatus";
/// Bit 12 of [`WINRE_STATUS_URI`].
pub const WINRE_NOT_CONFIGURED_BIT: u32 = 1 << 12;

/// `DMClient/Provider/<id>/FirstSyncStatus/IsSyncDone` (ITPRO dmclient-csp.md): the Enrollment
/// Status Page's "the MDM finished its first sync" flag.
pub fn first_sync_done_uri(provider_id: &str) -> String {
    format!("./Device/Vendor/MSFT/DMClient/Provider/{provider_id}/FirstSyncStatus/IsSyncDone")
}

/// Whether `uri` is some provider's [`first_sync_done_uri`].
pub fn is_first_sync_done_uri(uri: &str) -> bool {
    uri.starts_with("./Device/Vendor/MSFT/DMClient/Provider/")
        && uri.ends_with("/FirstSyncStatus/IsSyncDone")
}

/// The local-reset policy; 0 enables CTRL+WIN+R, 1 (default) disables it
/// (ITPRO policy-csp-credentialproviders.md; docs/protocol.md §7 fact 1).
pub const LOCAL_RESET_POLICY_URI: &str =
    "./Device/Vendor/MSFT/Policy/Config/CredentialProviders/DisableAutomaticReDeploymentCredentials";

/// The OMA-DM commands that carry out `kind` (empty for `Sync` and `Retire`, which the session
/// engine handles itself: a check-in is the sync, and unenrollment is not a CSP command here).
/// Resets and wipes are Exec at SyncBody top level (docs/protocol.md §1.5: no Atomic, numeric
/// CmdID).
pub fn commands_for(
    kind: crate::action::ActionKind,
    device: DeviceId,
    action: ActionId,
    at: OffsetDateTime,
) -> Vec<DeviceCommand> {
    use crate::action::ActionKind as K;
    let exec = |uri: &str| {
        DeviceCommand::new(
            CommandId::generate(),
            device,
            Some(action),
            Verb::Exec,
            uri,
            at,
        )
    };
    match kind {
        K::AutopilotReset => vec![exec(AUTOPILOT_RESET_EXEC_URI)],
        K::Wipe => vec![exec("./Device/Vendor/MSFT/RemoteWipe/doWipe")],
        K::WipeKeepProvisioning => vec![exec(
            "./Device/Vendor/MSFT/RemoteWipe/doWipePersistProvisionedData",
        )],
        K::WipeKeepUserData => vec![exec(
            "./Device/Vendor/MSFT/RemoteWipe/doWipePersistUserData",
        )],
        K::WipeProtected => vec![exec("./Device/Vendor/MSFT/RemoteWipe/doWipeProtected")],
        // ITPRO reboot-csp.md: RebootNow, Exec.
        K::Restart => vec![exec("./Device/Vendor/MSFT/Reboot/RebootNow")],
        K::SetLocalResetPolicy(allowed) => vec![DeviceCommand::new(
            CommandId::generate(),
            device,
            Some(action),
            Verb::Replace,
            LOCAL_RESET_POLICY_URI,
            at,
        )
        .with_data("int", if allowed { "0" } else { "1" })],
        K::Sync | K::Retire => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn cmd(verb: Verb, state: CommandState) -> DeviceCommand {
        let mut c = DeviceCommand::new(
            CommandId::generate(),
            DeviceId::generate(),
            None,
            verb,
            "./Vendor/MSFT/RemoteWipe/AutomaticRedeployment/doAutomaticRedeployment",
            datetime!(2026-01-01 0:00 UTC),
        );
        c.state = state;
        c
    }

    #[test]
    fn unanswered_idempotent_commands_may_be_resent() {
        for v in [Verb::Get, Verb::Replace, Verb::Add, Verb::Delete] {
            assert_eq!(cmd(v, CommandState::Sent).may_resend(), Resend::Yes, "{v}");
        }
    }

    #[test]
    fn an_unanswered_exec_is_rechecked_never_resent_blindly() {
        assert_eq!(
            cmd(Verb::Exec, CommandState::Sent).may_resend(),
            Resend::RecheckFirst
        );
    }

    #[test]
    fn queued_answered_and_failed_commands_are_not_resent() {
        for s in [
            CommandState::Queued,
            CommandState::Answered,
            CommandState::Failed,
        ] {
            for v in Verb::ALL {
                assert_eq!(cmd(*v, s).may_resend(), Resend::No);
            }
        }
        let mut c = cmd(Verb::Exec, CommandState::Sent);
        c.status = Some(200);
        assert_eq!(c.may_resend(), Resend::No);
    }

    #[test]
    fn local_reset_policy_is_inverted_and_resets_are_execs() {
        use crate::action::ActionKind;
        let (d, a, at) = (
            DeviceId::generate(),
            ActionId::generate(),
            datetime!(2026-01-01 0:00 UTC),
        );
        let allow = commands_for(ActionKind::SetLocalResetPolicy(true), d, a, at);
        assert_eq!(
            (allow[0].verb, allow[0].data.as_deref()),
            (Verb::Replace, Some("0"))
        );
        assert_eq!(allow[0].format.as_deref(), Some("int"));
        let deny = commands_for(ActionKind::SetLocalResetPolicy(false), d, a, at);
        assert_eq!(deny[0].data.as_deref(), Some("1"));
        let reset = commands_for(ActionKind::AutopilotReset, d, a, at);
        assert_eq!(reset[0].verb, Verb::Exec);
        assert!(reset[0]
            .uri
            .ends_with("AutomaticRedeployment/doAutomaticRedeployment"));
        assert_eq!(reset[0].action, Some(a));
        assert!(commands_for(ActionKind::Sync, d, a, at).is_empty());
    }

    #[test]
    fn status_codes_map_to_states() {
        assert_eq!(CommandState::after_status(200), CommandState::Answered);
        assert_eq!(CommandState::after_status(202), CommandState::Answered);
        assert_eq!(CommandState::after_status(405), CommandState::Failed);
        assert_eq!(CommandState::after_status(500), CommandState::Failed);
    }
}
