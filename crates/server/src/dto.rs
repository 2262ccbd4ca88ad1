//! Domain → wire conversions (STYLE.md "Wire types stay at the edge"): the `api` DTOs the REST
//! API, the webhooks and the console's CSV exports send.

use redeploy_core::{
    decode_hresult, Action, ActionKind, AuditEvent, Device, InventoryValue, Readiness,
};
use std::collections::{BTreeMap, HashMap};

use redeploy_core::batch::BatchProgress;
use redeploy_core::store::{BatchCounts, BatchRecord};
use redeploy_core::BatchId;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// RFC 3339, UTC, to the microsecond: the stores keep microseconds, so an action answered right
/// after its creation reads the same as when it is fetched later.
pub fn ts(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

pub fn readiness_dto(r: &Readiness) -> api::Readiness {
    api::Readiness {
        ready: r.ready,
        reasons: r
            .reasons
            .iter()
            .map(|b| api::ReadinessReason {
                code: b.code().to_owned(),
                text: b.text(),
            })
            .collect(),
    }
}

pub fn device_dto(d: &Device, readiness: &Readiness) -> api::Device {
    api::Device {
        id: d.id.to_string(),
        name: d.name.clone(),
        serial: d.serial.clone(),
        os_version: d.os_version.clone(),
        join_type: d.join_type.as_str().to_owned(),
        join_evidence: d.join_evidence.as_str().to_owned(),
        last_seen: d.last_seen.map(ts),
        primary_user: d.primary_user.clone(),
        readiness: readiness_dto(readiness),
        manufacturer: d.manufacturer.clone(),
        model: d.model.clone(),
        current_user: d.current_user.clone(),
        enrolled_at: ts(d.enrolled_at),
        unenrolled_at: d.unenrolled_at.map(ts),
        local_reset_desired: d.local_reset_desired,
        local_reset_reported: d.local_reset_reported,
        shared: d.shared,
        certificate_expires_at: d.cert_not_after.map(ts),
        last_sign_in_user: d.last_sign_in_user.clone(),
        last_sign_in_at: d.last_sign_in_at.map(ts),
        push: None,
    }
}

/// A device's stored push channel as the API shows it.
pub fn push_channel_dto(c: &redeploy_core::push::PushChannel) -> api::PushChannel {
    api::PushChannel {
        state: c.state.as_str().to_owned(),
        device_status: c.device_status,
        seen_at: ts(c.seen_at),
        updated_at: ts(c.updated_at),
    }
}

pub fn kind_dto(k: ActionKind) -> api::ActionKind {
    match k {
        ActionKind::AutopilotReset => api::ActionKind::AutopilotReset,
        ActionKind::Wipe => api::ActionKind::Wipe,
        ActionKind::WipeKeepProvisioning => api::ActionKind::WipeKeepProvisioning,
        ActionKind::WipeKeepUserData => api::ActionKind::WipeKeepUserData,
        ActionKind::WipeProtected => api::ActionKind::WipeProtected,
        ActionKind::Restart => api::ActionKind::Restart,
        ActionKind::Sync => api::ActionKind::Sync,
        ActionKind::Retire => api::ActionKind::Retire,
        ActionKind::SetLocalResetPolicy(_) => api::ActionKind::SetLocalResetPolicy,
    }
}

/// The domain kind of a kind asked for through `POST …/actions`; `None` for the local-reset
/// policy, which has its own endpoint (it carries an argument).
pub fn kind_from_dto(k: api::ActionKind) -> Option<ActionKind> {
    Some(match k {
        api::ActionKind::AutopilotReset => ActionKind::AutopilotReset,
        api::ActionKind::Wipe => ActionKind::Wipe,
        api::ActionKind::WipeKeepProvisioning => ActionKind::WipeKeepProvisioning,
        api::ActionKind::WipeKeepUserData => ActionKind::WipeKeepUserData,
        api::ActionKind::WipeProtected => ActionKind::WipeProtected,
        api::ActionKind::Restart => ActionKind::Restart,
        api::ActionKind::Sync => ActionKind::Sync,
        api::ActionKind::Retire => ActionKind::Retire,
        api::ActionKind::SetLocalResetPolicy => return None,
    })
}

pub fn action_dto(a: &Action) -> api::Action {
    api::Action {
        id: a.id.to_string(),
        kind: kind_dto(a.kind),
        device_id: a.device.to_string(),
        batch_id: a.batch.map(|b| b.to_string()),
        state: a.state.as_str().to_owned(),
        reason: a.reason.clone(),
        last_error: a.last_error_text(),
        last_error_meaning: a.last_error.map(|code| {
            let (meaning, fix) = decode_hresult(code);
            match fix {
                Some(fix) => format!("{meaning}; {fix}"),
                None => meaning.to_owned(),
            }
        }),
        allowed: match a.kind {
            ActionKind::SetLocalResetPolicy(allowed) => Some(allowed),
            _ => None,
        },
        requested_by: a.requested_by.clone(),
        created_at: ts(a.created_at),
        updated_at: ts(a.updated_at),
        timeline: a
            .timeline
            .iter()
            .map(|t| api::TimelineEntry {
                state: t.state.as_str().to_owned(),
                at: ts(t.at),
                note: t.note.clone(),
            })
            .collect(),
        woken_by: None,
    }
}

pub fn inventory_dto(v: &InventoryValue) -> api::InventoryValue {
    api::InventoryValue {
        uri: v.uri.clone(),
        value: v.value.clone(),
        at: ts(v.at),
    }
}

pub fn audit_dto(e: &AuditEvent) -> api::AuditEvent {
    api::AuditEvent {
        id: e.id.as_i64(),
        at: ts(e.at),
        actor: e.actor.clone(),
        action: e.action.clone(),
        targets: e.targets.iter().map(ToString::to_string).collect(),
        outcome: e.outcome.as_str().to_owned(),
        details: e.details.clone(),
        batch: e.batch.map(|b| b.to_string()),
    }
}

pub(crate) fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The audit log as CSV (RFC 4180 quoting, CRLF), the same columns from the API and the console:
/// `id,at,actor,action,targets,outcome,details,batch` (targets space-separated).
pub fn audit_csv(events: &[AuditEvent]) -> String {
    let mut out = String::from("id,at,actor,action,targets,outcome,details,batch\r\n");
    for e in events.iter().map(audit_dto) {
        let row = [
            e.id.to_string(),
            e.at,
            e.actor,
            e.action,
            e.targets.join(" "),
            e.outcome,
            e.details,
            e.batch.unwrap_or_default(),
        ];
        let row: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

pub fn api_token_dto(t: &redeploy_core::ApiToken) -> api::ApiToken {
    api::ApiToken {
        id: t.id.to_string(),
        name: t.name.clone(),
        role: t.role.as_str().to_owned(),
        created_at: ts(t.created_at),
        revoked_at: t.revoked_at.map(ts),
    }
}

pub fn enrollment_token_dto(t: &redeploy_core::EnrollmentToken) -> api::EnrollmentToken {
    api::EnrollmentToken {
        id: t.id.to_string(),
        label: t.label.clone(),
        expires_at: t.expires_at.map(ts),
        max_uses: t.max_uses,
        uses: t.uses,
        created_at: ts(t.created_at),
        vouches_entra_join: t.vouches_entra_join,
    }
}

pub fn device_message_dto(m: &redeploy_core::trail::TrailMessage) -> api::DeviceMessage {
    api::DeviceMessage {
        at: ts(m.at),
        direction: m.direction.as_str().to_owned(),
        session_id: m.session_id.clone(),
        msg_id: m.msg_id.clone(),
        size: m.size as u64,
        body: m.body.clone(),
    }
}

/// A batch as listed: its record and its counts.
pub(crate) fn batch_summary(b: &BatchRecord, c: &BatchCounts) -> api::BatchSummary {
    api::BatchSummary {
        batch_id: b.id.to_string(),
        kind: b.kind.name().to_owned(),
        requested_by: b.requested_by.clone(),
        created_at: ts(b.created_at),
        target: b.target.clone(),
        devices: b.devices,
        counts: c
            .by_state
            .iter()
            .map(|(s, n)| (s.as_str().to_owned(), *n))
            .collect(),
        waves_waiting: c.waves_waiting,
        state: b.state.as_str().to_owned(),
        steered_at: b.steered.as_ref().map(|(at, _)| ts(*at)),
        steered_by: b.steered.as_ref().map(|(_, by)| by.clone()),
    }
}

/// Where a batch is, wave by wave (the first wave, index 0, holds the devices no stored wave
/// names; a device in several waves, deferred over the daily cap, counts in the last).
pub(crate) fn batch_status(id: BatchId, p: &BatchProgress) -> api::BatchStatus {
    let mut counts = BTreeMap::<String, u64>::new();
    let mut wave_of = HashMap::new();
    for w in &p.waves {
        for d in &w.devices {
            wave_of.insert(*d, w.index);
        }
    }
    let mut by_wave = BTreeMap::<u32, BTreeMap<String, u64>>::new();
    let mut first_devices = 0;
    for a in &p.actions {
        let state = a.state.as_str().to_owned();
        *counts.entry(state.clone()).or_default() += 1;
        let wave = wave_of.get(&a.device).copied().unwrap_or(0);
        first_devices += u64::from(wave == 0);
        *by_wave.entry(wave).or_default().entry(state).or_default() += 1;
    }
    let started = p
        .record
        .as_ref()
        .map(|r| r.created_at)
        .or_else(|| p.actions.first().map(|a| a.created_at));
    let first = started.map(|at| api::BatchWave {
        index: 0,
        due_at: ts(at),
        released: true,
        released_at: Some(ts(at)),
        devices: first_devices,
        counts: by_wave.remove(&0).unwrap_or_default(),
    });
    let batch = p.record.as_ref().map(|r| {
        let mut c = BatchCounts::default();
        for a in &p.actions {
            *c.by_state.entry(a.state).or_default() += 1;
        }
        c.waves_waiting = p.waves.iter().filter(|w| w.released_at.is_none()).count() as u64;
        batch_summary(r, &c)
    });
    api::BatchStatus {
        batch_id: id.to_string(),
        settled: p.settled,
        counts,
        actions: p.actions.iter().map(action_dto).collect(),
        waves: first
            .into_iter()
            .chain(p.waves.iter().map(|w| api::BatchWave {
                index: w.index,
                due_at: ts(w.due_at),
                released: w.released_at.is_some(),
                released_at: w.released_at.map(ts),
                devices: w.devices.len() as u64,
                counts: by_wave.remove(&w.index).unwrap_or_default(),
            }))
            .collect(),
        batch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_and_the_core_agree_on_what_erases_a_pc() {
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
        ] {
            assert_eq!(
                kind_dto(k).erases_the_pc(),
                redeploy_core::action::is_erasing(k),
                "{k}"
            );
        }
    }
}
