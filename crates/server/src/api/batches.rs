//! Batches: `POST /api/v1/actions/bulk` (a dry-run plan, or a batch over devices, a group or a
//! filter, in waves under a daily cap; no size cap) and `GET /api/v1/batches/{id}` (where a
//! batch is, for `redeploy reset --wait`).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use redeploy_core::batch::{ItemOutcome, PlanOutcome, Steer};
use redeploy_core::BatchId;
use time::Duration;

use super::auth::Caller;
use super::common::*;
use super::handlers::{page_size, ApiResult};
use super::ApiError;
use crate::dto::*;
use crate::service::batches;
use crate::state::AppState;
use redeploy_core::store::Cursor;

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
    let interval = match body.wave_interval_secs {
        None => Duration::ZERO,
        Some(s) => Duration::seconds(
            i64::try_from(s)
                .map_err(|_| ApiError::bad_request("wave_interval_secs is too large"))?,
        ),
    };
    let targets = if let Some(devices) = &body.devices {
        batches::Targets::Devices(device_ids("devices", devices)?)
    } else if let Some(g) = &body.group {
        batches::Targets::Group(g.clone())
    } else {
        batches::Targets::Filter(filter_from_dto(
            body.filter
                .as_ref()
                .unwrap_or(&api::DeviceFilter::default()),
        )?)
    };
    if body.dry_run {
        let (plan, group) = batches::dry_run(&state, &caller, targets, kind).await?;
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
    let waves = batches::Waves {
        size: body.wave_size,
        interval,
        daily_cap: body.daily_cap,
    };
    let result = batches::start(
        &state,
        &caller,
        targets,
        kind,
        waves,
        body.confirm.as_deref(),
    )
    .await?;
    let counts = api::BatchCounts {
        queued: result.queued() as u64,
        blocked: result.blocked() as u64,
        not_found: result.not_found() as u64,
        deferred: result.deferred() as u64,
    };
    // Every device of a small batch; of a large one only the exceptions (api::BatchCreated).
    let complete = result.devices() <= api::BATCH_ITEMS_IN_FULL;
    let items = result
        .items
        .iter()
        .filter(|i| {
            complete || matches!(i.outcome, ItemOutcome::Blocked(..) | ItemOutcome::NotFound)
        })
        .take(api::BATCH_ITEMS_IN_FULL)
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
            devices: result.devices() as u64,
            counts,
            items,
            items_complete: complete,
        }),
    )
        .into_response())
}

/// Bulk requests, newest first, a page at a time, each with its counts by state and its waves
/// still waiting.
#[utoipa::path(get, path = "/api/v1/batches", tag = "actions",
    params(api::BatchListQuery),
    responses(
        (status = 200, body = api::BatchPage),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_batches(
    State(state): State<AppState>,
    query: Result<Query<api::BatchListQuery>, QueryRejection>,
) -> ApiResult<Json<api::BatchPage>> {
    let Query(q) = query?;
    let limit = page_size(q.limit)?;
    let cursor = q.cursor.as_deref().map(Cursor::parse);
    let (rows, next) = batches::list(&state, limit, cursor.as_ref()).await?;
    Ok(Json(api::BatchPage {
        items: rows.iter().map(|(b, c)| batch_summary(b, c)).collect(),
        next: next.map(|c| c.as_str().to_owned()),
    }))
}

/// A batch: its actions with per-state counts, its waves, and whether it has settled (every
/// wave released, and every device of the batch has a done, failed, canceled, expired or
/// blocked action, or was not found; see `redeploy_core::batch::batch_settled`).
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
    let id = batch_id(&id)?;
    let progress = batches::progress(&state, id).await?;
    Ok(Json(batch_status(id, &progress)))
}

fn batch_id(text: &str) -> Result<BatchId, ApiError> {
    BatchId::parse(text).map_err(|_| ApiError::bad_request(format!("not a batch id: {text:?}")))
}

/// Pause, resume or cancel a batch (`verb`). Pause: a running batch's waves still waiting are
/// held until it is resumed (actions already released still go out; cancel stops those not sent
/// yet). Resume: a paused batch runs again, each waiting wave due later by as long as the pause
/// lasted. Cancel: a running or paused batch's waiting waves are never released and its actions
/// not sent yet are canceled (sent ones cannot be taken back). Audited `batch.<verb>`.
#[utoipa::path(post, path = "/api/v1/batches/{id}/{verb}", tag = "actions",
    params(
        ("id" = String, Path, description = "Batch id"),
        ("verb" = String, Path, description = "`pause`, `resume` or `cancel`"),
    ),
    responses(
        (status = 200, body = api::BatchSteered),
        (status = 400, body = api::Problem, content_type = "application/problem+json"),
        (status = 403, body = api::Problem, content_type = "application/problem+json"),
        (status = 404, body = api::Problem, content_type = "application/problem+json", description = "Unknown batch or verb"),
        (status = 409, body = api::Problem, content_type = "application/problem+json", description = "The batch's state does not allow it (the problem names what does)"),
    ))]
pub async fn steer_batch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, verb)): Path<(String, String)>,
) -> ApiResult<Json<api::BatchSteered>> {
    let how = Steer::parse(&verb).ok_or_else(|| {
        ApiError::not_found(format!(
            "no batch command {verb:?}: pause, resume or cancel"
        ))
    })?;
    let id = batch_id(&id)?;
    let (steered, counts) = batches::steer(&state, &caller, id, how).await?;
    Ok(Json(api::BatchSteered {
        batch: batch_summary(&steered.record, &counts),
        waves: steered.waves as u64,
        canceled_actions: steered.canceled_actions as u64,
    }))
}
