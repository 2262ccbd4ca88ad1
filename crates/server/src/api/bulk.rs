//! `POST /api/v1/actions/bulk` (dry-run plans and batches over devices, a group or a filter, in
//! waves under a daily cap; no size cap) and `GET /api/v1/batches/{id}` (where a batch is, for
//! `redeploy reset --wait`).

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use redeploy_core::campaign::{self, ItemOutcome, PlanOutcome, Target, WaveSettings};
use redeploy_core::BatchId;
use time::Duration;

use super::auth::Caller;
use super::common::*;
use super::convert::*;
use super::handlers::ApiResult;
use super::ApiError;
use crate::service::actions::{action_settings, role_for};
use crate::state::AppState;

/// Ask many devices for the same action. With `dry_run`: 200 and what would happen to each
/// device, changing nothing. Otherwise: 202 and the batch (the first wave is requested now,
/// later waves and devices over the daily cap are deferred). A reset or wipe of a group needs
/// `confirm` equal to the group's name (409 saying what to send otherwise).
#[utoipa::path(post, path = "/api/v1/actions/bulk", tag = "actions",
    request_body = api::BulkRequest,
    responses(
        (status = 200, body = api::BulkPlan, description = "Dry run"),
        (status = 202, body = api::BatchCreated),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json", description = "Unknown group"),
        (status = 409, body = api::Problem, content_type = "application/problem+json", description = "A reset or wipe of a group without the typed confirmation"),
    ))]
pub async fn bulk_action(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<api::BulkRequest>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body?;
    let kind = kind_from_dto(body.kind).ok_or_else(|| {
        ApiError::bad_request(
            "set the local-reset policy of a group with POST /api/v1/groups/{id}/local-reset",
        )
    })?;
    let given = [
        body.devices.is_some(),
        body.group.is_some(),
        body.filter.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ApiError::bad_request(
            "give exactly one target: devices, group or filter",
        ));
    }
    if body.wave_size == Some(0) {
        return Err(ApiError::bad_request("wave_size must be at least 1"));
    }
    if body.daily_cap == Some(0) {
        return Err(ApiError::bad_request(
            "daily_cap must be at least 1 (leave it out for the server's daily_cap)",
        ));
    }
    let interval = match body.wave_interval_secs {
        None => Duration::ZERO,
        Some(s) => Duration::seconds(
            i64::try_from(s)
                .map_err(|_| ApiError::bad_request("wave_interval_secs is too large"))?,
        ),
    };
    let (target, group, target_text) = if let Some(devices) = &body.devices {
        let ids = device_ids("devices", devices)?;
        let text = format!("{} devices", ids.len());
        (Target::Devices(ids), None, text)
    } else if let Some(g) = &body.group {
        let group = find_group(&state, g).await?;
        let text = format!("group {:?}", group.name);
        (Target::Group(group.id), Some(group), text)
    } else {
        let f = filter_from_dto(
            body.filter
                .as_ref()
                .unwrap_or(&api::DeviceFilter::default()),
        )?;
        (Target::Filter(f), None, "a filter".to_owned())
    };
    caller
        .require(
            &state,
            role_for(kind),
            &format!("bulk {} on {target_text}", kind.code()),
            None,
        )
        .await?;
    let now = state.clock.now();
    let settings = action_settings(&state);
    if body.dry_run {
        let plan = campaign::plan(state.store.as_ref(), &target, kind, now, &settings).await?;
        let mut counts = api::PlanCounts::default();
        let items = plan
            .items
            .iter()
            .map(|i| {
                let (outcome, reasons) = match &i.outcome {
                    PlanOutcome::WouldQueue => {
                        counts.would_queue += 1;
                        ("would_queue", Vec::new())
                    }
                    PlanOutcome::Blocked(r) => {
                        counts.blocked += 1;
                        let reasons = r
                            .iter()
                            .map(|b| api::ReadinessReason {
                                code: b.code().to_owned(),
                                text: b.text(),
                            })
                            .collect();
                        ("blocked", reasons)
                    }
                    PlanOutcome::NotFound => {
                        counts.not_found += 1;
                        ("not_found", Vec::new())
                    }
                };
                api::PlanItem {
                    device_id: i.device_id.to_string(),
                    outcome: outcome.to_owned(),
                    reasons,
                }
            })
            .collect();
        return Ok(Json(api::BulkPlan {
            kind: body.kind,
            group: group.map(|g| g.name),
            counts,
            items,
        })
        .into_response());
    }
    if let Some(g) = &group {
        require_confirmation(kind, g, body.confirm.as_deref())?;
    }
    let waves = WaveSettings {
        wave_size: body.wave_size.unwrap_or(u32::MAX),
        interval,
        // The request's own cap, else the server-wide one; stored with every later wave so the
        // worker releases them under the same cap.
        daily_cap: body.daily_cap.or(state.settings.daily_cap),
    };
    let result = campaign::execute(
        state.store.as_ref(),
        &target,
        kind,
        &caller.actor(),
        now,
        &settings,
        body.confirm.as_deref(),
        &waves,
    )
    .await?;
    let counts = api::BatchCounts {
        queued: result.queued() as u64,
        blocked: result.blocked() as u64,
        not_found: result.not_found() as u64,
        deferred: result.deferred() as u64,
    };
    let items = result
        .items
        .iter()
        .map(|i| {
            let mut item = api::BatchItem {
                device_id: i.device_id.to_string(),
                outcome: String::new(),
                action_id: None,
                reason: None,
                wave: None,
                due_at: None,
            };
            match &i.outcome {
                ItemOutcome::Queued(a) => {
                    item.outcome = "queued".into();
                    item.action_id = Some(a.to_string());
                }
                ItemOutcome::Blocked(a, why) => {
                    item.outcome = "blocked".into();
                    item.action_id = Some(a.to_string());
                    item.reason = Some(why.clone());
                }
                ItemOutcome::NotFound => item.outcome = "not_found".into(),
                ItemOutcome::Deferred { wave, due_at } => {
                    item.outcome = "deferred".into();
                    item.wave = Some(*wave);
                    item.due_at = Some(ts(*due_at));
                }
            }
            item
        })
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(api::BatchCreated {
            batch_id: result.batch_id.to_string(),
            counts,
            items,
        }),
    )
        .into_response())
}

/// A batch: its actions with per-state counts, its waves, and whether it has settled (every
/// wave released, and every device of the batch has a done, failed, canceled, expired or
/// blocked action, or was not found; see `redeploy_core::campaign::batch_settled`).
#[utoipa::path(get, path = "/api/v1/batches/{id}", tag = "actions",
    params(("id" = String, Path, description = "Batch id")),
    responses(
        (status = 200, body = api::BatchStatus),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_batch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<api::BatchStatus>> {
    let id = BatchId::parse(&id)
        .map_err(|_| ApiError::bad_request(format!("not a batch id: {id:?}")))?;
    let campaign::BatchProgress {
        actions,
        waves,
        settled,
    } = campaign::batch_progress(state.store.as_ref(), id).await?;
    if actions.is_empty() && waves.is_empty() {
        return Err(ApiError::not_found(format!("no batch {id}")));
    }
    let mut counts = BTreeMap::<String, u64>::new();
    for a in &actions {
        *counts.entry(a.state.as_str().to_owned()).or_default() += 1;
    }
    Ok(Json(api::BatchStatus {
        batch_id: id.to_string(),
        settled,
        counts,
        actions: actions.iter().map(action_dto).collect(),
        waves: waves
            .iter()
            .map(|w| api::BatchWave {
                index: w.index,
                due_at: ts(w.due_at),
                released: w.released_at.is_some(),
                released_at: w.released_at.map(ts),
                devices: w.devices.len() as u64,
            })
            .collect(),
    }))
}
