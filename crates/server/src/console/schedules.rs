//! Schedules: the list with enable/disable/delete, and the create form (group, kind, IANA time
//! zone, "repeats" once/daily/weekly with date, weekdays and time, optional maintenance window).

use axum::extract::{Path, Query, State};
use maud::html;
use redeploy_core::schedule::{MaintenanceWindow, Recurrence};
use redeploy_core::{ActionKind, Role, ScheduleId};
use time::Time;

use super::{
    enc, flash, kind_label, layout, ok, see_other, when_opt, PageError, PageResult, PostForm,
    Section, Signed,
};
use crate::service::{groups, schedules};
use crate::state::AppState;
use redeploy_core::action::is_erasing;

/// Kinds a schedule may run.
const KINDS: &[ActionKind] = &[
    ActionKind::AutopilotReset,
    ActionKind::Sync,
    ActionKind::Restart,
];

#[derive(Debug, serde::Deserialize)]
pub struct MsgQuery {
    msg: Option<String>,
}

/// Weekday checkboxes of the form: field suffix, label, core weekday.
const DAYS: &[(&str, &str, time::Weekday)] = &[
    ("mon", "Monday", time::Weekday::Monday),
    ("tue", "Tuesday", time::Weekday::Tuesday),
    ("wed", "Wednesday", time::Weekday::Wednesday),
    ("thu", "Thursday", time::Weekday::Thursday),
    ("fri", "Friday", time::Weekday::Friday),
    ("sat", "Saturday", time::Weekday::Saturday),
    ("sun", "Sunday", time::Weekday::Sunday),
];

/// Local time as an admin reads it: `02:00`, with seconds only when they are not zero.
fn clock_text(t: Time) -> String {
    if t.second() == 0 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }
}

/// The recurrence in words for the list, e.g. "every day at 02:00 Europe/Berlin".
pub fn recurrence_words(r: &Recurrence, tz: &str) -> String {
    match r {
        Recurrence::Daily(t) => format!("every day at {} {tz}", clock_text(*t)),
        Recurrence::Weekly(days, t) => {
            let names: Vec<&str> = DAYS
                .iter()
                .filter(|(_, _, d)| days.contains(d))
                .map(|(_, label, _)| *label)
                .collect();
            let names = match names.as_slice() {
                [] => "no day".to_owned(),
                [one] => (*one).to_owned(),
                [init @ .., last] => format!("{} and {last}", init.join(", ")),
            };
            format!("every {names} at {} {tz}", clock_text(*t))
        }
        Recurrence::Once(at) => format!(
            "once on {:04}-{:02}-{:02} at {} {tz}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            clock_text(at.time())
        ),
    }
}

/// The recurrence text ([`Recurrence::from_text`]) built from the plain form fields: `repeats`
/// (once/daily/weekly), `date` (YYYY-MM-DD, for once), `day_mon`..`day_sun` checkboxes (for
/// weekly) and `time` (HH:MM or HH:MM:SS as browsers send it). A raw `recurrence` field, used by
/// scripts written against the earlier form, still wins when present.
fn recurrence_from_fields(f: &super::Fields) -> Result<Recurrence, PageError> {
    if let Some(raw) = f.text("recurrence") {
        return Recurrence::from_text(raw).map_err(|_| {
            PageError::bad_request(format!(
                "{raw:?} is not a recurrence: write daily:HH:MM:SS, weekly:mon,fri:HH:MM:SS or once:YYYY-MM-DDTHH:MM:SS"
            ))
        });
    }
    let time_text = f
        .text("time")
        .ok_or_else(|| PageError::bad_request("choose the time of day it runs"))?;
    let time = parse_clock(time_text).ok_or_else(|| {
        PageError::bad_request(format!("time {time_text:?}: write it as HH:MM, e.g. 02:00"))
    })?;
    let hms = format!(
        "{:02}:{:02}:{:02}",
        time.hour(),
        time.minute(),
        time.second()
    );
    let text = match f.text("repeats").unwrap_or("daily") {
        "daily" => format!("daily:{hms}"),
        "weekly" => {
            let days: Vec<&str> = DAYS
                .iter()
                .filter(|(code, _, _)| f.checked(&format!("day_{code}")))
                .map(|(code, _, _)| *code)
                .collect();
            if days.is_empty() {
                return Err(PageError::bad_request(
                    "a weekly schedule needs at least one weekday ticked",
                ));
            }
            format!("weekly:{}:{hms}", days.join(","))
        }
        "once" => {
            let date = f
                .text("date")
                .ok_or_else(|| PageError::bad_request("a one-off schedule needs a date"))?;
            format!("once:{date}T{hms}")
        }
        other => {
            return Err(PageError::bad_request(format!(
                "repeats {other:?}: choose once, daily or weekly"
            )))
        }
    };
    Recurrence::from_text(&text).map_err(|_| {
        PageError::bad_request(format!(
            "{:?} is not a date: write it as YYYY-MM-DD",
            f.text("date").unwrap_or_default()
        ))
    })
}

/// `HH:MM` or `HH:MM:SS` (an `<input type="time">` sends seconds only when its step asks).
fn parse_clock(text: &str) -> Option<Time> {
    let mut parts = text.trim().split(':');
    let h = parts.next()?.parse().ok()?;
    let m = parts.next()?.parse().ok()?;
    let s = match parts.next() {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Time::from_hms(h, m, s).ok()
}

fn window_text(w: &Option<MaintenanceWindow>) -> String {
    match w {
        None => "any time".to_owned(),
        Some(w) => format!(
            "{:02}:{:02}–{:02}:{:02}",
            w.start.hour(),
            w.start.minute(),
            w.end.hour(),
            w.end.minute()
        ),
    }
}

pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    Query(m): Query<MsgQuery>,
) -> PageResult {
    let schedules = schedules::list(&state).await?;
    let groups = groups::list(&state).await?;
    let body = html! {
        (flash(m.msg.as_deref()))
        @if schedules.is_empty() {
            p.empty { "No schedules yet." }
        } @else {
            table #schedules {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Group" } th scope="col" { "Action" }
                    th scope="col" { "When" } th scope="col" { "Window" } th scope="col" { "Next run" }
                    th scope="col" { "Last run" } th scope="col" { "Enabled" } th scope="col" { span.sr { "Change" } }
                } }
                tbody {
                    @for (s, group_name) in &schedules {
                        tr {
                            td { (s.name) }
                            td { a href={ "/console/groups/" (s.group) } { (group_name.as_deref().unwrap_or("(deleted group)")) } }
                            td { (kind_label(s.kind)) }
                            td { (recurrence_words(&s.recurrence, s.tz.name())) }
                            td { (window_text(&s.window)) }
                            td { (when_opt(s.next_run, "—")) }
                            td { (when_opt(s.last_run, "never")) }
                            td { @if s.enabled { "yes" } @else { "no" } }
                            td.buttons {
                                @if signed.can(Role::Operator) {
                                    form method="post" action={ "/console/schedules/" (s.id) "/" (if s.enabled { "disable" } else { "enable" }) } {
                                        (signed.csrf_field())
                                        @if !s.enabled && is_erasing(s.kind) {
                                            @let g = group_name.as_deref().unwrap_or_default();
                                            input type="text" name="confirm" required autocomplete="off" placeholder=(g)
                                                aria-label={ "Type the group name " (g) " to enable " (s.name) };
                                        }
                                        button type="submit" { @if s.enabled { "Disable" } @else { "Enable" } span.sr { " " (s.name) } }
                                    }
                                    form method="post" action={ "/console/schedules/" (s.id) "/delete" } {
                                        (signed.csrf_field())
                                        button.danger type="submit" { "Delete" span.sr { " " (s.name) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if signed.can(Role::Operator) {
            h2 { "New schedule" }
            @if groups.is_empty() {
                p.empty { "Create a group first: schedules run on a group." }
            } @else {
                form.card method="post" action="/console/schedules" {
                    (signed.csrf_field())
                    label for="name" { "Name" }
                    input #name type="text" name="name" required maxlength="100";
                    label for="group" { "Group" }
                    select #group name="group" { @for (g, _) in &groups { option value=(g.id) { (g.name) } } }
                    label for="kind" { "Action" }
                    select #kind name="kind" { @for k in KINDS { option value=(k.name()) { (kind_label(*k)) } } }
                    label for="tz" { "Time zone (IANA name)" }
                    input #tz type="text" name="tz" value="UTC" required;
                    label for="repeats" { "Repeats" }
                    select #repeats name="repeats" {
                        option value="daily" selected { "Every day" }
                        option value="weekly" { "Every week on the days ticked below" }
                        option value="once" { "Once, on the date below" }
                    }
                    label for="date" { "Date (for once)" }
                    input #date type="date" name="date";
                    fieldset #days {
                        legend { "Weekdays (for weekly)" }
                        @for (code, label, _) in DAYS {
                            label.check for={ "day_" (code) } {
                                input id={ "day_" (code) } type="checkbox" name={ "day_" (code) };
                                " " (label)
                            }
                        }
                    }
                    label for="time" { "Time" }
                    input #time type="time" name="time" value="02:00" required aria-describedby="time-help";
                    p.help #time-help { "Local time in the zone above." }
                    label for="window" { "Maintenance window (optional)" }
                    input #window type="text" name="window" placeholder="22:00-05:00" aria-describedby="window-help";
                    p.help #window-help { "Local hours in which resets may start; may cross midnight." }
                    label for="confirm" { "Confirmation: the name typed again (Autopilot Reset only)" }
                    input #confirm type="text" name="confirm" autocomplete="off" aria-describedby="confirm-help";
                    p.help #confirm-help { "A schedule that erases PCs resets every device of the group each time it runs." }
                    button type="submit" { "Create schedule" }
                }
            }
        }
    };
    Ok(ok(layout(
        "Schedules",
        Some(&signed),
        Section::Schedules,
        body,
    )))
}

fn parse_hm(text: &str) -> Option<Time> {
    let (h, m) = text.trim().split_once(':')?;
    Time::from_hms(h.parse().ok()?, m.parse().ok()?, 0).ok()
}

fn parse_window(text: &str) -> Result<MaintenanceWindow, PageError> {
    let bad = || {
        PageError::bad_request(format!(
            "window {text:?}: write it as HH:MM-HH:MM, e.g. 22:00-05:00"
        ))
    };
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    Ok(MaintenanceWindow {
        start: parse_hm(a).ok_or_else(bad)?,
        end: parse_hm(b).ok_or_else(bad)?,
    })
}

pub async fn create(State(state): State<AppState>, form: PostForm) -> PageResult {
    let f = &form.fields;
    let k = f.get("kind").unwrap_or_default();
    let kind = KINDS
        .iter()
        .copied()
        .find(|c| c.name() == k)
        .ok_or_else(|| PageError::bad_request(format!("unknown action {k:?}")))?;
    let name = f
        .text("name")
        .ok_or_else(|| PageError::bad_request("the schedule needs a name"))?;
    let group = f
        .text("group")
        .ok_or_else(|| PageError::bad_request("choose a group"))?;
    let tz_text = f.text("tz").unwrap_or("UTC");
    let tz: redeploy_core::schedule::TimeZone = tz_text.parse().map_err(|_| {
        PageError::bad_request(format!(
            "{tz_text:?} is not an IANA time zone such as Europe/Berlin"
        ))
    })?;
    let new = schedules::NewSchedule {
        name: name.to_owned(),
        group: group.to_owned(),
        kind,
        tz,
        recurrence: recurrence_from_fields(f)?,
        window: f.text("window").map(parse_window).transpose()?,
        enabled: true,
        confirm: f.text("confirm").map(str::to_owned),
        refuse_past: true,
    };
    schedules::create(&state, &form.signed.caller, new).await?;
    Ok(see_other(&format!(
        "/console/schedules?msg={}",
        enc("Schedule created.")
    )))
}

pub async fn change(
    State(state): State<AppState>,
    Path((id, verb)): Path<(String, String)>,
    form: PostForm,
) -> PageResult {
    let id = ScheduleId::parse(&id)
        .map_err(|_| PageError::bad_request(format!("{id:?} is not a schedule id")))?;
    let caller = &form.signed.caller;
    let id = id.to_string();
    let msg = match verb.as_str() {
        "enable" | "disable" => {
            let s = schedules::set_enabled(
                &state,
                caller,
                &id,
                verb == "enable",
                form.fields.text("confirm"),
            )
            .await?;
            format!("Schedule {} {verb}d.", s.name)
        }
        "delete" => {
            let s = schedules::delete(&state, caller, &id).await?;
            format!("Schedule {} deleted.", s.name)
        }
        other => return Err(PageError::not_found(format!("no such change {other:?}"))),
    };
    Ok(see_other(&format!("/console/schedules?msg={}", enc(&msg))))
}
