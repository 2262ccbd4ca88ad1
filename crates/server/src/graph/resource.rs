//! Our devices and actions as Graph's managedDevice ("managedDevice resource type",
//! intune-devices-manageddevice): property names, the words of its enums, and which of our
//! actions a `wipe` body asks for ("managedDevice: wipe", intune-devices-manageddevice-wipe).

use redeploy_core::compliance::compliance;
use redeploy_core::{Action, ActionKind, ActionState, Device, JoinType};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::dto::ts;

/// What Graph shows for a date that was never set.
pub const NEVER: &str = "0001-01-01T00:00:00Z";

/// Every property a managedDevice has here, in output order (also what `$select` accepts).
pub const PROPERTIES: &[&str] = &[
    "id",
    "deviceName",
    "serialNumber",
    "operatingSystem",
    "osVersion",
    "lastSyncDateTime",
    "userPrincipalName",
    "joinType",
    "azureADDeviceId",
    "manufacturer",
    "model",
    "enrolledDateTime",
    "managementState",
    "complianceState",
    "deviceActionResults",
];

/// Graph `joinType` words (managedDevice resource, beta `joinType` enum) of each join type; two
/// of ours read `unknown`.
pub const JOIN_TYPES: [(JoinType, &str); 5] = [
    (JoinType::EntraJoined, "azureADJoined"),
    (JoinType::HybridJoined, "hybridAzureADJoined"),
    (JoinType::Registered, "azureADRegistered"),
    (JoinType::NotJoined, "unknown"),
    (JoinType::Unknown, "unknown"),
];

fn join_type(j: JoinType) -> &'static str {
    JOIN_TYPES
        .iter()
        .find(|(t, _)| *t == j)
        .map_or("unknown", |(_, word)| word)
}

/// Graph `actionName` of a device action result: the name of the Graph action that asks for it.
/// An Autopilot Reset is asked for through `wipe` (keepEnrollmentData), so it reads `wipe` too.
pub fn action_name(k: ActionKind) -> &'static str {
    match k {
        ActionKind::AutopilotReset
        | ActionKind::Wipe
        | ActionKind::WipeKeepProvisioning
        | ActionKind::WipeKeepUserData
        | ActionKind::WipeProtected => "wipe",
        ActionKind::Restart => "rebootNow",
        ActionKind::Sync => "syncDevice",
        ActionKind::Retire => "retire",
        ActionKind::SetLocalResetPolicy(_) => "setLocalResetPolicy",
    }
}

/// Our lifecycle onto Graph's `actionState` (`none|pending|canceled|active|done|failed|
/// notSupported`): not yet at the device = pending; at the device and not finished = active;
/// refused by preflight = notSupported (the device cannot do it as it is); expired = failed
/// (it never finished, and Graph has no "timed out").
fn action_state(s: ActionState) -> &'static str {
    match s {
        ActionState::Requested | ActionState::Pending => "pending",
        ActionState::Blocked => "notSupported",
        ActionState::Sent | ActionState::Acknowledged | ActionState::InProgress => "active",
        ActionState::Done => "done",
        ActionState::Failed | ActionState::Expired => "failed",
        ActionState::Canceled => "canceled",
    }
}

/// Graph `managementState`: a pending wipe or retire shows as such, otherwise `managed`
/// (`retireIssued` once the device unenrolled).
fn management_state(d: &Device, actions: &[Action]) -> &'static str {
    if d.unenrolled_at.is_some() {
        return "retireIssued";
    }
    let active = |f: fn(ActionKind) -> bool| {
        actions
            .iter()
            .any(|a| f(a.kind) && !a.state.is_terminal() && a.state != ActionState::Blocked)
    };
    if active(|k| k == ActionKind::Retire) {
        "retirePending"
    } else if active(|k| action_name(k) == "wipe") {
        "wipePending"
    } else {
        "managed"
    }
}

/// The managedDevice of `d` at `now`, with its actions as deviceActionResults.
pub fn managed_device(d: &Device, actions: &[Action], now: OffsetDateTime) -> Value {
    let text = |v: &Option<String>| Value::String(v.clone().unwrap_or_default());
    json!({
        "id": d.id.to_string(),
        "deviceName": d.name,
        "serialNumber": text(&d.serial),
        "operatingSystem": "Windows",
        "osVersion": text(&d.os_version),
        "lastSyncDateTime": d.last_seen.map(ts).unwrap_or_else(|| NEVER.to_owned()),
        "userPrincipalName": text(&d.primary_user),
        "joinType": join_type(d.join_type),
        "azureADDeviceId": text(&d.aad_device_id),
        "manufacturer": text(&d.manufacturer),
        "model": text(&d.model),
        "enrolledDateTime": ts(d.enrolled_at),
        "managementState": management_state(d, actions),
        "complianceState": compliance(d, now).as_str(),
        "deviceActionResults": actions.iter().map(|a| json!({
            "actionName": action_name(a.kind),
            "actionState": action_state(a.state),
            "startDateTime": ts(a.created_at),
            "lastUpdatedDateTime": ts(a.updated_at),
        })).collect::<Vec<_>>(),
    })
}

/// Which of our actions a Graph wipe body asks for. "managedDevice: wipe" says keepEnrollmentData
/// uses `doWipePersistProvisionedData` and keepUserData `doWipePersistUserData`; beta adds
/// useProtectedWipe (`doWipeProtected`). Keeping enrollment but not user data is what an
/// Autopilot Reset does to a Windows PC, and scripts that reset PCs send exactly that, so it asks
/// for one (as the README documents); neither flag is a full wipe, user data only is
/// `doWipePersistUserData`, and the protected wipe only goes without either flag. Both flags
/// together have no Windows RemoteWipe equivalent.
pub fn wipe_kind(
    keep_enrollment: bool,
    keep_user_data: bool,
    protected: bool,
) -> Result<ActionKind, String> {
    match (keep_enrollment, keep_user_data, protected) {
        (true, false, false) => Ok(ActionKind::AutopilotReset),
        (false, false, false) => Ok(ActionKind::Wipe),
        (false, false, true) => Ok(ActionKind::WipeProtected),
        (false, true, false) => Ok(ActionKind::WipeKeepUserData),
        (true, true, _) => Err(
            "keepEnrollmentData and keepUserData together are not a Windows \
             wipe; use keepEnrollmentData alone for Autopilot Reset or keepUserData alone"
                .into(),
        ),
        (_, _, true) => Err(
            "useProtectedWipe keeps nothing; send it without keepEnrollmentData and keepUserData"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_flags_map_to_windows_actions() {
        assert_eq!(
            wipe_kind(true, false, false),
            Ok(ActionKind::AutopilotReset)
        );
        assert_eq!(wipe_kind(false, false, false), Ok(ActionKind::Wipe));
        assert_eq!(
            wipe_kind(false, true, false),
            Ok(ActionKind::WipeKeepUserData)
        );
        assert_eq!(wipe_kind(false, false, true), Ok(ActionKind::WipeProtected));
        assert!(wipe_kind(true, true, false).is_err());
        assert!(wipe_kind(true, false, true).is_err());
        assert!(wipe_kind(false, true, true).is_err());
    }
}
