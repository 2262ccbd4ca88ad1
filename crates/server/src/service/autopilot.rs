//! The Autopilot registry (Intune's hardware-hash CSV): importing a CSV as the console and the
//! REST API both do it, and listing what is registered beside the enrolled device of each serial.

use redeploy_core::autopilot::{parse_autopilot_csv, AutopilotImport, AutopilotRecord};
use redeploy_core::{AuditOutcome, DeviceId, Role};

use super::{audit, Caller, Result};
use crate::state::AppState;

/// Imports the CSV `bytes` (operators): valid rows are stored (a known serial is replaced) and
/// the import is audited as `autopilot.import` (refused when some row was refused); the parse
/// result comes back with every refused line. A CSV without a valid row stores nothing and is
/// not audited: the caller shows its errors.
pub async fn import(state: &AppState, caller: &Caller, bytes: &[u8]) -> Result<AutopilotImport> {
    caller
        .require(state, Role::Operator, "import Autopilot devices", None)
        .await?;
    let parsed = parse_autopilot_csv(bytes);
    if parsed.records.is_empty() {
        return Ok(parsed);
    }
    let records: Vec<AutopilotRecord> = parsed.records.iter().map(|(_, r)| r.clone()).collect();
    state.store.upsert_autopilot(&records).await?;
    audit::append(
        state,
        audit::by(state, caller, "autopilot.import")
            .outcome(if parsed.errors.is_empty() {
                AuditOutcome::Success
            } else {
                AuditOutcome::Refused
            })
            .details(format!(
                "{} devices imported, {} rows refused",
                records.len(),
                parsed.errors.len()
            )),
    )
    .await?;
    Ok(parsed)
}

/// The registry, ordered by serial, each record with the enrolled device of its serial.
pub async fn records(state: &AppState) -> Result<Vec<(AutopilotRecord, Option<DeviceId>)>> {
    Ok(state.store.autopilot_records().await?)
}
