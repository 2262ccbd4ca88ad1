//! Scheduled bulk requests on a group (issue "Autopilot Reset end to end", item 6): recurrence in
//! the schedule's IANA time zone with DST handled, maintenance windows that may cross midnight,
//! and the [`fire_due`] tick that turns due schedules into batches.

use std::fmt;
use std::str::FromStr;

use time::macros::format_description;
use time::{Duration, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, Weekday};
use tz::datetime::FoundDateTimeKind;
use tz::TimeZoneRef;

use crate::action::ActionKind;
use crate::action::ActionSettings;
use crate::audit::{AuditOutcome, NewAuditEvent};
use crate::batch::{execute_claiming, BatchResult, Target, WaveSettings};
use crate::error::{Error, Result};
use crate::ids::{GroupId, ScheduleId};
use crate::session::SessionError;
use crate::store::{RequestPlan, ScheduleClaim, Store, StoreError, WriteOutcome};

/// When a schedule fires, in local time of its zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recurrence {
    /// Once, at this local date and time.
    Once(PrimitiveDateTime),
    /// Every day at this local time.
    Daily(Time),
    /// On these weekdays at this local time.
    Weekly(Vec<Weekday>, Time),
}

impl Recurrence {
    /// Stable text form for storage: `once:YYYY-MM-DDTHH:MM:SS`, `daily:HH:MM:SS`,
    /// `weekly:mon,fri:HH:MM:SS`.
    pub fn to_text(&self) -> String {
        let hms = |t: &Time| format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
        match self {
            Self::Once(at) => format!(
                "once:{:04}-{:02}-{:02}T{}",
                at.year(),
                u8::from(at.month()),
                at.day(),
                hms(&at.time())
            ),
            Self::Daily(t) => format!("daily:{}", hms(t)),
            Self::Weekly(days, t) => format!(
                "weekly:{}:{}",
                days.iter()
                    .map(|d| d.to_string()[..3].to_owned())
                    .collect::<Vec<_>>()
                    .join(",")
                    .to_lowercase(),
                hms(t)
            ),
        }
    }

    /// Parses [`Self::to_text`].
    pub fn from_text(text: &str) -> Result<Self> {
        let bad = || Error::InvalidValue {
            kind: "recurrence",
            value: text.to_owned(),
        };
        // The hour may have one digit (`daily:2:00:00`), as admins type it.
        let time_of = |s: &str| {
            Time::parse(
                s,
                format_description!("[hour padding:none]:[minute]:[second]"),
            )
            .map_err(|_| bad())
        };
        if let Some(rest) = text.strip_prefix("once:") {
            let at = PrimitiveDateTime::parse(
                rest,
                format_description!("[year]-[month]-[day]T[hour padding:none]:[minute]:[second]"),
            )
            .map_err(|_| bad())?;
            Ok(Self::Once(at))
        } else if let Some(rest) = text.strip_prefix("daily:") {
            Ok(Self::Daily(time_of(rest)?))
        } else if let Some(rest) = text.strip_prefix("weekly:") {
            let (days, at) = rest.split_once(':').ok_or_else(bad)?;
            let days = days
                .split(',')
                .filter(|d| !d.is_empty())
                .map(|d| {
                    Ok(match d {
                        "mon" => Weekday::Monday,
                        "tue" => Weekday::Tuesday,
                        "wed" => Weekday::Wednesday,
                        "thu" => Weekday::Thursday,
                        "fri" => Weekday::Friday,
                        "sat" => Weekday::Saturday,
                        "sun" => Weekday::Sunday,
                        _ => return Err(bad()),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Self::Weekly(days, time_of(at)?))
        } else {
            Err(bad())
        }
    }
}

/// An IANA time zone (`Europe/Berlin`), with its rules from the tz database compiled into the
/// binary (`tzdb`). Built only by parsing a name the database knows, in any letter case; it keeps
/// the database's spelling.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TimeZone {
    name: &'static str,
    rules: TimeZoneRef<'static>,
}

impl TimeZone {
    /// The zone's name as the tz database spells it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The offset from UTC in force at `at`.
    fn offset_at(&self, at: OffsetDateTime) -> Option<UtcOffset> {
        let local = self.rules.find_local_time_type(at.unix_timestamp()).ok()?;
        UtcOffset::from_whole_seconds(local.ut_offset()).ok()
    }

    /// The local date and time at `at`.
    fn local(&self, at: OffsetDateTime) -> Option<PrimitiveDateTime> {
        let local = at.to_offset(self.offset_at(at)?);
        Some(PrimitiveDateTime::new(local.date(), local.time()))
    }

    /// The instant of local `at`: a nonexistent local time (spring forward) moves forward to the
    /// instant the clocks jumped; an ambiguous one (fall back) takes the earlier instant.
    fn resolve(&self, at: PrimitiveDateTime) -> Option<OffsetDateTime> {
        let found = tz::DateTime::find(
            at.year(),
            at.month().into(),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            0,
            self.rules,
        )
        .ok()?;
        // In ascending order of instants.
        let instant = match found.into_inner().first()? {
            FoundDateTimeKind::Normal(at) => at.unix_time(),
            FoundDateTimeKind::Skipped {
                after_transition, ..
            } => after_transition.unix_time(),
        };
        OffsetDateTime::from_unix_timestamp(instant).ok()
    }
}

impl FromStr for TimeZone {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let unknown = || Error::InvalidValue {
            kind: "time zone",
            value: text.to_owned(),
        };
        let name = tzdb::TZ_NAMES
            .iter()
            .find(|name| name.eq_ignore_ascii_case(text))
            .ok_or_else(unknown)?;
        let rules = tzdb::tz_by_name(name).ok_or_else(unknown)?;
        Ok(TimeZone { name, rules })
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Debug for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeZone({})", self.name)
    }
}

/// Local hours in which resets may start: `start..end`, crossing midnight when `end <= start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// First local time inside the window.
    pub start: Time,
    /// First local time after the window.
    pub end: Time,
}

/// The maintenance window of a scheduled batch, with the zone its times are in. Every action of
/// the batch (its later waves too) carries it: the session engine holds such an action's commands
/// while the device checks in outside the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchWindow {
    /// Local hours in which the batch's actions may start.
    pub window: MaintenanceWindow,
    /// The zone of the window's times (the schedule's zone).
    pub tz: TimeZone,
}

/// How the timeline note of an action held outside its window starts.
pub const HELD_NOTE_PREFIX: &str = "held: outside maintenance window";

impl BatchWindow {
    /// Whether `now` is inside the window (see [`in_window`]).
    pub fn contains(&self, now: OffsetDateTime) -> bool {
        in_window(&self.window, self.tz, now)
    }

    /// `02:00–05:00 Europe/Berlin`.
    pub fn describe(&self) -> String {
        let hm = |t: Time| format!("{:02}:{:02}", t.hour(), t.minute());
        format!(
            "{}\u{2013}{} {}",
            hm(self.window.start),
            hm(self.window.end),
            self.tz.name()
        )
    }

    /// The timeline note of an action held outside this window.
    pub fn held_note(&self) -> String {
        format!("{HELD_NOTE_PREFIX} {}", self.describe())
    }
}

/// A scheduled bulk request on a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Identity.
    pub id: ScheduleId,
    /// Display name (unique).
    pub name: String,
    /// The group whose members are targeted when it fires.
    pub group: GroupId,
    /// What to request.
    pub kind: ActionKind,
    /// IANA zone the times are in.
    pub tz: TimeZone,
    /// When it fires.
    pub recurrence: Recurrence,
    /// Hours in which its resets may start (for the session engine to hold back resets).
    pub window: Option<MaintenanceWindow>,
    /// Disabled schedules never fire.
    pub enabled: bool,
    /// Next firing; `None` when there is none left (a past one-off).
    pub next_run: Option<OffsetDateTime>,
    /// Last firing.
    pub last_run: Option<OffsetDateTime>,
}

/// The first firing of `schedule` strictly after `after`; `None` for a disabled schedule or a
/// one-off in the past.
pub fn next_occurrence(schedule: &Schedule, after: OffsetDateTime) -> Option<OffsetDateTime> {
    if !schedule.enabled {
        return None;
    }
    let tz = schedule.tz;
    match &schedule.recurrence {
        Recurrence::Once(at) => tz.resolve(*at).filter(|t| *t > after),
        Recurrence::Daily(at) | Recurrence::Weekly(_, at) => {
            let start = tz.local(after)?.date();
            // Start one day early: the local date of `after` may be past a firing that maps to a
            // later instant, and a week plus two days covers every weekly pattern.
            for offset in -1..=8 {
                let date = start.checked_add(Duration::days(offset))?;
                if let Recurrence::Weekly(days, _) = &schedule.recurrence {
                    if !days.contains(&date.weekday()) {
                        continue;
                    }
                }
                if let Some(t) = tz.resolve(PrimitiveDateTime::new(date, *at)) {
                    if t > after {
                        return Some(t);
                    }
                }
            }
            None
        }
    }
}

/// Whether `now` falls inside `window` in local time of `tz` (start inclusive, end exclusive;
/// a window whose end is not after its start crosses midnight).
pub fn in_window(window: &MaintenanceWindow, tz: TimeZone, now: OffsetDateTime) -> bool {
    let Some(local) = tz.local(now) else {
        return false;
    };
    let local = local.time();
    let (start, end) = (window.start, window.end);
    if start < end {
        start <= local && local < end
    } else {
        local >= start || local < end
    }
}

/// Fires every enabled schedule whose `next_run` is at or before `now`: a batch on its group's
/// current members (the schedule's creation stands for the typed confirmation) carrying the
/// schedule's maintenance window, written in one transaction with the claim of the firing
/// ([`crate::store::ScheduleClaim`]: `last_run = now`, `next_run` = the next occurrence after
/// `now`; missed firings are not replayed). So a firing happens exactly once: when several
/// server processes tick at once exactly one of them writes it, and a process that dies before
/// its transaction commits leaves the schedule due, for the next tick to fire. A schedule whose
/// batch cannot be made (its group is gone, its devices kept changing) is audited as failed and
/// still moved on, in one transaction too; a database failure leaves it due. Returns each
/// schedule this call fired, with its result.
pub async fn fire_due(
    store: &dyn Store,
    now: OffsetDateTime,
    settings: &ActionSettings,
    waves: &WaveSettings,
) -> std::result::Result<Vec<(ScheduleId, std::result::Result<BatchResult, String>)>, SessionError>
{
    let mut fired = Vec::new();
    for s in store.due_schedules(now).await? {
        let Some(due_at) = s.next_run else {
            continue;
        };
        let claim = ScheduleClaim {
            schedule: s.id,
            due_at,
            last_run: now,
            next_run: next_occurrence(&s, now),
        };
        let actor = format!("schedule:{}", s.name);
        let window = s.window.map(|window| BatchWindow { window, tz: s.tz });
        let failure = match store.group(s.group).await? {
            None => format!("group {} no longer exists", s.group),
            Some(group) => match execute_claiming(
                store,
                &Target::Group(s.group),
                s.kind,
                &actor,
                now,
                settings,
                Some(&group.name),
                waves,
                window.as_ref(),
                Some(claim),
            )
            .await
            {
                Ok(Some(result)) => {
                    fired.push((s.id, Ok(result)));
                    continue;
                }
                // Another process fired it.
                Ok(None) => continue,
                // The database failed: nothing was written, so the firing stays due and the
                // next tick tries again.
                Err(e @ SessionError::Store(StoreError::Backend(_))) => return Err(e),
                Err(e) => e.to_string(),
            },
        };
        let mut plan = RequestPlan::new(now);
        plan.claim_schedule = Some(claim);
        plan.audit.push(
            NewAuditEvent::new(now, actor.clone(), "schedule.fire")
                .outcome(AuditOutcome::Failed)
                .details(format!("{} {}: {failure}", s.kind.code(), s.id)),
        );
        if store.write_request_plan(&plan).await? == WriteOutcome::Written {
            fired.push((s.id, Err(failure)));
        }
    }
    Ok(fired)
}

/// Seconds since local midnight (the stored form of a window bound).
pub fn seconds_of_day(t: Time) -> i64 {
    i64::from(t.hour()) * 3600 + i64::from(t.minute()) * 60 + i64::from(t.second())
}

/// Inverse of [`seconds_of_day`].
pub fn time_of_seconds(s: i64) -> Result<Time> {
    let bad = || Error::InvalidValue {
        kind: "time of day",
        value: s.to_string(),
    };
    if !(0..86_400).contains(&s) {
        return Err(bad());
    }
    // In range: the casts cannot truncate.
    Time::from_hms((s / 3600) as u8, ((s / 60) % 60) as u8, (s % 60) as u8).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, time};

    fn zone(name: &str) -> TimeZone {
        name.parse().unwrap()
    }

    fn sched(tz: TimeZone, recurrence: Recurrence) -> Schedule {
        Schedule {
            id: ScheduleId::generate(),
            name: "night".into(),
            group: GroupId::generate(),
            kind: ActionKind::AutopilotReset,
            tz,
            recurrence,
            window: None,
            enabled: true,
            next_run: None,
            last_run: None,
        }
    }

    #[test]
    fn berlin_spring_forward_moves_a_nonexistent_time_forward() {
        // 2026-03-29: Berlin clocks jump 02:00 CET -> 03:00 CEST; 02:30 does not exist.
        let s = sched(zone("Europe/Berlin"), Recurrence::Daily(time!(2:30)));
        let next = next_occurrence(&s, datetime!(2026-03-28 12:00 UTC)).unwrap();
        assert_eq!(next, datetime!(2026-03-29 1:00 UTC), "03:00 CEST");
        // The day before and after are normal (01:30 UTC in winter, 00:30 UTC in summer).
        let s2 = sched(zone("Europe/Berlin"), Recurrence::Daily(time!(2:30)));
        assert_eq!(
            next_occurrence(&s2, datetime!(2026-03-27 12:00 UTC)).unwrap(),
            datetime!(2026-03-28 1:30 UTC)
        );
        assert_eq!(
            next_occurrence(&s2, next).unwrap(),
            datetime!(2026-03-30 0:30 UTC)
        );
    }

    #[test]
    fn new_york_fall_back_takes_the_first_of_an_ambiguous_time() {
        // 2026-11-01: New York 01:30 happens twice (EDT then EST); take EDT (05:30 UTC).
        let s = sched(zone("America/New_York"), Recurrence::Daily(time!(1:30)));
        let next = next_occurrence(&s, datetime!(2026-10-31 12:00 UTC)).unwrap();
        assert_eq!(next, datetime!(2026-11-01 5:30 UTC));
        // Not again at the second 01:30 (06:30 UTC): the next is the following day, in EST.
        assert_eq!(
            next_occurrence(&s, next).unwrap(),
            datetime!(2026-11-02 6:30 UTC)
        );
        // Spring forward 2026-03-08: 02:15 does not exist, fires at 03:00 EDT.
        let s = sched(zone("America/New_York"), Recurrence::Daily(time!(2:15)));
        assert_eq!(
            next_occurrence(&s, datetime!(2026-03-08 0:00 UTC)).unwrap(),
            datetime!(2026-03-08 7:00 UTC)
        );
    }

    #[test]
    fn weekly_once_and_disabled() {
        // 2026-06-01 is a Monday.
        let s = sched(
            zone("UTC"),
            Recurrence::Weekly(vec![Weekday::Wednesday, Weekday::Friday], time!(22:00)),
        );
        let after = datetime!(2026-06-01 12:00 UTC);
        let n1 = next_occurrence(&s, after).unwrap();
        assert_eq!(n1, datetime!(2026-06-03 22:00 UTC));
        let n2 = next_occurrence(&s, n1).unwrap();
        assert_eq!(n2, datetime!(2026-06-05 22:00 UTC));
        assert_eq!(
            next_occurrence(&s, n2).unwrap(),
            datetime!(2026-06-10 22:00 UTC)
        );
        let once = sched(
            zone("Europe/Berlin"),
            Recurrence::Once(datetime!(2026-07-01 23:00)),
        );
        assert_eq!(
            next_occurrence(&once, after).unwrap(),
            datetime!(2026-07-01 21:00 UTC)
        );
        assert_eq!(next_occurrence(&once, datetime!(2026-07-02 0:00 UTC)), None);
        let mut off = s.clone();
        off.enabled = false;
        assert_eq!(next_occurrence(&off, after), None);
    }

    #[test]
    fn maintenance_window_crossing_midnight() {
        let w = MaintenanceWindow {
            start: time!(22:00),
            end: time!(6:00),
        };
        let tz = zone("Europe/Berlin"); // CEST in June: UTC+2
        assert!(
            in_window(&w, tz, datetime!(2026-06-01 20:00 UTC)),
            "22:00 local"
        );
        assert!(
            in_window(&w, tz, datetime!(2026-06-01 23:30 UTC)),
            "01:30 local"
        );
        assert!(
            !in_window(&w, tz, datetime!(2026-06-02 4:00 UTC)),
            "06:00 local"
        );
        assert!(
            !in_window(&w, tz, datetime!(2026-06-01 12:00 UTC)),
            "14:00 local"
        );
        let day = MaintenanceWindow {
            start: time!(12:00),
            end: time!(13:00),
        };
        assert!(in_window(
            &day,
            zone("UTC"),
            datetime!(2026-06-01 12:59 UTC)
        ));
        assert!(!in_window(
            &day,
            zone("UTC"),
            datetime!(2026-06-01 13:00 UTC)
        ));
    }

    #[test]
    fn a_time_zone_is_a_name_the_tz_database_knows_in_its_spelling() {
        assert_eq!(zone("europe/berlin").name(), "Europe/Berlin");
        assert_eq!(zone("UTC").to_string(), "UTC");
        assert_eq!(
            zone("Asia/Kolkata").offset_at(datetime!(2026-06-01 0:00 UTC)),
            Some(time::macros::offset!(+5:30))
        );
        for unknown in ["Mars/Olympus", "", "Europe/Berlin "] {
            assert!(unknown.parse::<TimeZone>().is_err(), "{unknown:?}");
        }
    }

    #[test]
    fn recurrence_text_round_trips() {
        for r in [
            Recurrence::Once(datetime!(2026-07-01 23:00:05)),
            Recurrence::Daily(time!(2:30)),
            Recurrence::Weekly(vec![Weekday::Monday, Weekday::Sunday], time!(22:00)),
        ] {
            assert_eq!(Recurrence::from_text(&r.to_text()).unwrap(), r);
        }
        assert!(Recurrence::from_text("hourly:1").is_err());
        assert_eq!(
            Recurrence::from_text("daily:2:30:00").unwrap(),
            Recurrence::Daily(time!(2:30))
        );
        assert_eq!(
            time_of_seconds(seconds_of_day(time!(23:59:59))).unwrap(),
            time!(23:59:59)
        );
        assert!(time_of_seconds(86_400).is_err());
    }
}
