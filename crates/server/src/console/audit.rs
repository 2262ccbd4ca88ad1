//! The audit log: newest first (or oldest first), filters (device, action, actor, outcome), pages
//! of 100, and a CSV export of the filtered events as a console route (the REST export needs a
//! bearer token, not a session).

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use http::header;
use maud::html;
use redeploy_core::store::AuditOrder;
use redeploy_core::{AuditEvent, AuditId};
use serde::Deserialize;

use super::devices::device_id;
use super::{enc, layout, ok, when, PageError, PageResult, Section, Signed};
use crate::service::{audit, devices};
use crate::state::AppState;

const PAGE: u32 = 100;

#[derive(Debug, Default, Deserialize)]
pub struct AuditFilter {
    device: Option<String>,
    action: Option<String>,
    actor: Option<String>,
    outcome: Option<String>,
    /// `asc` for oldest first; anything else (the default) is newest first.
    order: Option<String>,
    after: Option<i64>,
}

impl AuditFilter {
    fn query_string(&self, after: Option<i64>) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("device", &self.device),
            ("action", &self.action),
            ("actor", &self.actor),
            ("outcome", &self.outcome),
            ("order", &self.order),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", enc(v)));
            }
        }
        if let Some(a) = after {
            parts.push(format!("after={a}"));
        }
        parts.join("&")
    }

    /// Admins look for what just happened, so newest first unless `order=asc`.
    fn order(&self) -> AuditOrder {
        match self.order.as_deref() {
            Some("asc") => AuditOrder::OldestFirst,
            _ => AuditOrder::NewestFirst,
        }
    }
}

/// Up to `limit` matching events after `filter.after` in the filter's order, and where the next
/// page starts.
async fn matching(
    state: &AppState,
    filter: &AuditFilter,
    limit: u32,
) -> Result<(Vec<AuditEvent>, Option<i64>), PageError> {
    let device = filter
        .device
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .map(|d| device_id(d.trim()))
        .transpose()?;
    let text = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
    let (events, next) = audit::list(
        state,
        &audit::Listing {
            device,
            after: filter.after.map(AuditId::from_i64),
            order: filter.order(),
            limit,
            action: text(&filter.action),
            actor: text(&filter.actor),
            outcome: text(&filter.outcome),
        },
    )
    .await?;
    Ok((events, next.map(|a| a.as_i64())))
}

pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    Query(f): Query<AuditFilter>,
) -> PageResult {
    let (events, next) = matching(&state, &f, PAGE).await?;
    let ids: Vec<_> = events
        .iter()
        .flat_map(|e| e.targets.iter().copied())
        .collect();
    let names = devices::names(&state, &ids).await?;
    let val = |v: &Option<String>| v.clone().unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/console/audit" {
            div.field { label for="device" { "Device id" } input #device type="text" name="device" value=(val(&f.device)); }
            div.field { label for="action" { "Action contains" } input #action type="text" name="action" value=(val(&f.action)); }
            div.field { label for="actor" { "Actor contains" } input #actor type="text" name="actor" value=(val(&f.actor)); }
            div.field {
                label for="outcome" { "Outcome" }
                select #outcome name="outcome" {
                    option value="" { "Any" }
                    @for o in redeploy_core::AuditOutcome::ALL {
                        option value=(o.as_str()) selected[f.outcome.as_deref() == Some(o.as_str())] { (o.as_str()) }
                    }
                }
            }
            div.field {
                label for="order" { "Order" }
                select #order name="order" {
                    option value="desc" selected[f.order() == AuditOrder::NewestFirst] { "Newest first" }
                    option value="asc" selected[f.order() == AuditOrder::OldestFirst] { "Oldest first" }
                }
            }
            button type="submit" { "Apply" }
        }
        p { a href={ "/console/audit.csv?" (f.query_string(None)) } download="redeploy-audit.csv" { "Download these events as CSV" } }
        @if events.is_empty() {
            p.empty { "No audit events match." }
        } @else {
            table #audit {
                thead { tr {
                    th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Actor" }
                    th scope="col" { "Action" } th scope="col" { "Outcome" } th scope="col" { "Devices" }
                    th scope="col" { "Batch" } th scope="col" { "Details" }
                } }
                tbody {
                    @for e in &events {
                        tr {
                            td.num { (e.id.as_i64()) }
                            td.t { (when(e.at)) }
                            td { (e.actor) }
                            td { code { (e.action) } }
                            td { (e.outcome.as_str()) }
                            td { @for t in &e.targets { a href={ "/console/devices/" (t) } { (names.get(t).cloned().unwrap_or_default()) } " " } }
                            td { @if let Some(b) = e.batch { code title=(b) { (b.to_string().get(..8).unwrap_or_default()) } } }
                            td { (e.details) }
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if f.after.is_some() { a href={ "/console/audit?" (f.query_string(None)) } { "First page" } }
                @if let Some(n) = next { a rel="next" href={ "/console/audit?" (f.query_string(Some(n))) } { "Next page" } }
            }
        }
    };
    Ok(ok(layout("Audit log", Some(&signed), Section::Audit, body)))
}

pub async fn csv(
    State(state): State<AppState>,
    _signed: Signed,
    Query(f): Query<AuditFilter>,
) -> PageResult {
    let (events, _) = matching(&state, &f, 100_000).await?;
    let out = crate::dto::audit_csv(&events);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"redeploy-audit.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        out,
    )
        .into_response())
}
