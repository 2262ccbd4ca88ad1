//! Waking a PC at once with a Windows push notification (WNS) instead of waiting for its poll:
//! the rules, without HTTP. The session engine provisions `DMClient/Provider/<id>/Push/PFN` and
//! reads the PC's channel (`Push/ChannelURI`, `Push/Status`; docs/protocol.md §3.7, ITPRO
//! dmclient-csp.md); the store keeps the channel per device ([`PushChannel`]) and one row per
//! push attempt of a pending action ([`PushAttempt`], claimed once across server processes);
//! the server's dispatcher (`server::push`) sends the raw notification and records the outcome
//! with [`PushOutcome`]; the session that takes a pending action's commands records whether a
//! push or the PC's own poll brought it ([`WokenBy`]).

use time::{Duration, OffsetDateTime};

use crate::command::{DeviceCommand, Verb};
use crate::ids::{ActionId, CommandId, DeviceId};

/// `DMClient/Provider/<id>/Push/PFN`: the package family name of the app whose WNS credentials
/// the server pushes with (ITPRO dmclient-csp.md; "not configurable during WAP provisioning",
/// so it is set over OMA-DM after enrollment).
pub fn pfn_uri(provider_id: &str) -> String {
    format!("./Vendor/MSFT/DMClient/Provider/{provider_id}/Push/PFN")
}

/// `DMClient/Provider/<id>/Push/ChannelURI`: the PC's WNS channel, null without a valid PFN
/// (ITPRO dmclient-csp.md).
pub fn channel_uri_uri(provider_id: &str) -> String {
    format!("./Vendor/MSFT/DMClient/Provider/{provider_id}/Push/ChannelURI")
}

/// `DMClient/Provider/<id>/Push/Status`: 0 success, 1 invalid PFN, 2 invalid or expired device
/// authentication with MSA, 3 WNS registration failed, 4 no channel URI, 5 channel URI expired,
/// 6 channel revocation failed, 7 push received but no session could start, 8 unknown
/// (ITPRO dmclient-csp.md; docs/protocol.md §3.7).
pub fn status_uri(provider_id: &str) -> String {
    format!("./Vendor/MSFT/DMClient/Provider/{provider_id}/Push/Status")
}

/// The most push attempts per pending action: Intune pushes at once and retries three more
/// times (MEM device-profile-troubleshoot.md, docs/protocol.md §1.8).
pub const MAX_ATTEMPTS: u32 = 4;

/// An attempt claimed and never finished (its process died mid-send) counts as failed after
/// this long.
pub const ABANDONED_AFTER: Duration = Duration::seconds(60);

/// How long a channel read stays good before the next session start reads it again. The PC
/// renews its channel every 15 days and a channel lives 30 (ITPRO
/// push-notification-windows-mdm.md), so a daily read never pushes to a dead one.
pub const CHANNEL_REFRESH: Duration = Duration::hours(24);

/// Where channel URIs may point: WNS channels are `https` URLs on a `notify.windows.com` host
/// ("Windows Push Notification Services (WNS) overview": validate the channel's domain before
/// sending to it, so a PC cannot make the server post its token anywhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelHost {
    /// `https://<host>/…` where host is this suffix or ends with `.` + it.
    HttpsSuffix(String),
    /// `http://host:port/…` exactly (a local stand-in WNS in tests and demos only).
    PlainExact(String),
}

impl ChannelHost {
    /// `notify.windows.com` (an https host suffix) or `http://127.0.0.1:4000` (one plain host).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().trim_end_matches('/');
        if let Some(rest) = text.strip_prefix("http://") {
            return (!rest.is_empty() && !rest.contains('/'))
                .then(|| Self::PlainExact(rest.to_ascii_lowercase()));
        }
        let host = text.strip_prefix("https://").unwrap_or(text);
        (!host.is_empty() && !host.contains('/'))
            .then(|| Self::HttpsSuffix(host.trim_start_matches('.').to_ascii_lowercase()))
    }

    fn allows(&self, scheme: &str, authority: &str) -> bool {
        match self {
            Self::PlainExact(h) => scheme == "http" && authority == h,
            Self::HttpsSuffix(suffix) => {
                let host = authority.split(':').next().unwrap_or_default();
                scheme == "https" && (host == suffix || host.ends_with(&format!(".{suffix}")))
            }
        }
    }
}

/// Whether the server may post to `uri`: an absolute URL whose scheme and host one of `hosts`
/// allows, with no user info.
pub fn channel_allowed(uri: &str, hosts: &[ChannelHost]) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return false;
    }
    let (scheme, authority) = (scheme.to_ascii_lowercase(), authority.to_ascii_lowercase());
    hosts.iter().any(|h| h.allows(&scheme, &authority))
}

/// What the session engine needs to provision push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushConfig {
    /// The package family name sent as `Push/PFN`.
    pub pfn: String,
    /// Where channels may point.
    pub channel_hosts: Vec<ChannelHost>,
}

/// Whether a stored channel can be pushed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    /// The PC reported a channel URI with Push/Status 0, on an allowed host.
    Active,
    /// No channel: no URI, or a Push/Status other than 0.
    Missing,
    /// A URI the server will not post to (not https on an allowed host).
    Refused,
    /// WNS answered 410 Gone for it: read again at the next session.
    Expired,
}

impl ChannelState {
    pub const ALL: [ChannelState; 4] = [Self::Active, Self::Missing, Self::Refused, Self::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Missing => "missing",
            Self::Refused => "refused",
            Self::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A device's push channel as last reported (and judged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushChannel {
    pub device: DeviceId,
    /// `Push/ChannelURI`; `None` when the PC has none.
    pub uri: Option<String>,
    /// `Push/Status` as the PC reported it; `None` when it did not answer.
    pub device_status: Option<i64>,
    pub state: ChannelState,
    /// When the PC reported it.
    pub seen_at: OffsetDateTime,
    /// When the state last changed (a report, or WNS's 410).
    pub updated_at: OffsetDateTime,
}

impl PushChannel {
    /// The channel a PC reported at `now`, judged against `hosts`.
    pub fn reported(
        device: DeviceId,
        uri: Option<String>,
        device_status: Option<i64>,
        hosts: &[ChannelHost],
        now: OffsetDateTime,
    ) -> Self {
        let uri = uri.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty());
        let state = match (&uri, device_status) {
            (Some(u), Some(0) | None) if channel_allowed(u, hosts) => ChannelState::Active,
            (Some(_), Some(0) | None) => ChannelState::Refused,
            _ => ChannelState::Missing,
        };
        Self {
            device,
            uri,
            device_status,
            state,
            seen_at: now,
            updated_at: now,
        }
    }
}

/// The commands a session start adds when push is configured: while the stored channel is not
/// active, `Replace Push/PFN` (so the PC registers with WNS); and the reads of `ChannelURI` and
/// `Status` whenever the channel is not active or its last read is older than
/// [`CHANNEL_REFRESH`] (the doc asks to read the channel every session; once a day is enough to
/// catch a renewal and keeps an idle check-in one round trip).
pub fn session_commands(
    device: DeviceId,
    stored: Option<&PushChannel>,
    provider_id: &str,
    cfg: &PushConfig,
    now: OffsetDateTime,
) -> Vec<DeviceCommand> {
    let active = stored.is_some_and(|c| c.state == ChannelState::Active);
    let fresh = stored.is_some_and(|c| now - c.seen_at < CHANNEL_REFRESH);
    let mut out = Vec::new();
    if !active {
        out.push(
            DeviceCommand::new(
                CommandId::generate(),
                device,
                None,
                Verb::Replace,
                pfn_uri(provider_id),
                now,
            )
            .with_data("chr", cfg.pfn.clone()),
        );
    }
    if !active || !fresh {
        for uri in [channel_uri_uri(provider_id), status_uri(provider_id)] {
            out.push(DeviceCommand::new(
                CommandId::generate(),
                device,
                None,
                Verb::Get,
                uri,
                now,
            ));
        }
    }
    out
}

/// How one push attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// WNS accepted the notification (200).
    Delivered,
    /// WNS answered 410 Gone (or 404): the channel is dead; the PC gets the action at its poll.
    ChannelGone,
    /// WNS throttled us (406 Not Acceptable, 429): try again after a back-off.
    Throttled,
    /// Anything else (no token, a 5xx, no answer): try again after a back-off.
    Failed,
}

impl PushOutcome {
    pub const ALL: [PushOutcome; 4] = [
        Self::Delivered,
        Self::ChannelGone,
        Self::Throttled,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::ChannelGone => "channel_gone",
            Self::Throttled => "throttled",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether another attempt may follow this one.
    pub fn retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::Failed)
    }
}

/// One push attempt for a pending action, claimed by one server process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushAttempt {
    pub action: ActionId,
    /// 1 for the first push of the action, then 2, 3, … up to [`MAX_ATTEMPTS`].
    pub attempt: u32,
    pub device: DeviceId,
    pub claimed_at: OffsetDateTime,
    /// `None` while the claiming process is sending it.
    pub outcome: Option<PushOutcome>,
    pub finished_at: Option<OffsetDateTime>,
}

/// The wait before attempt `n + 1` after attempt `n` failed or was throttled: 5 s, 20 s, 80 s.
pub fn backoff(n: u32) -> Duration {
    Duration::seconds(5 * 4_i64.pow(n.saturating_sub(1).min(6)))
}

/// Which attempt to claim now for an action whose latest attempt is `last`: 1 when none was
/// made; the next after a retryable outcome once its back-off has passed (or after one
/// abandoned for [`ABANDONED_AFTER`]); `None` after a delivery or a gone channel, while one is
/// in flight or backing off, and after [`MAX_ATTEMPTS`].
pub fn next_attempt(last: Option<&PushAttempt>, now: OffsetDateTime) -> Option<u32> {
    let Some(last) = last else {
        return Some(1);
    };
    if last.attempt >= MAX_ATTEMPTS {
        return None;
    }
    let retry_from = match (last.outcome, last.finished_at) {
        (Some(o), Some(at)) if o.retryable() => at + backoff(last.attempt),
        (Some(_), _) => return None,
        (None, _) => last.claimed_at + ABANDONED_AFTER,
    };
    (now >= retry_from).then_some(last.attempt + 1)
}

/// A pending action whose device has an active channel: what the dispatcher may push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushCandidate {
    pub action: ActionId,
    pub device: DeviceId,
    /// The device's channel URI.
    pub channel: String,
    /// The action's latest attempt, if any.
    pub last: Option<PushAttempt>,
}

/// What brought a pending action's commands to its PC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WokenBy {
    /// The session started after a push for it was delivered.
    Push,
    /// The PC came on its own (its poll, a user's sync, a restart).
    Poll,
}

impl WokenBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Poll => "poll",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "push" => Some(Self::Push),
            "poll" => Some(Self::Poll),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn hosts() -> Vec<ChannelHost> {
        vec![
            ChannelHost::parse("notify.windows.com").unwrap(),
            ChannelHost::parse("http://127.0.0.1:4000").unwrap(),
        ]
    }

    #[test]
    fn channels_must_be_https_on_an_allowed_host() {
        let h = hosts();
        assert!(channel_allowed(
            "https://db5p.notify.windows.com/?token=AwYAAA",
            &h
        ));
        assert!(channel_allowed("https://notify.windows.com/x", &h));
        assert!(!channel_allowed("http://db5p.notify.windows.com/x", &h));
        assert!(!channel_allowed(
            "https://notify.windows.com.evil.org/x",
            &h
        ));
        assert!(!channel_allowed("https://evilnotify.windows.com/x", &h));
        assert!(!channel_allowed("https://u@db5p.notify.windows.com/x", &h));
        assert!(channel_allowed("http://127.0.0.1:4000/channel/a", &h));
        assert!(!channel_allowed("http://127.0.0.1:4001/channel/a", &h));
        assert!(!channel_allowed("not a url", &h));
    }

    #[test]
    fn a_reported_channel_is_judged() {
        let d = DeviceId::generate();
        let ok = PushChannel::reported(
            d,
            Some("https://a.notify.windows.com/?t=1".into()),
            Some(0),
            &hosts(),
            T,
        );
        assert_eq!(ok.state, ChannelState::Active);
        let refused =
            PushChannel::reported(d, Some("https://example.org/".into()), Some(0), &hosts(), T);
        assert_eq!(refused.state, ChannelState::Refused);
        let none = PushChannel::reported(d, None, Some(4), &hosts(), T);
        assert_eq!(none.state, ChannelState::Missing);
        let bad_pfn = PushChannel::reported(
            d,
            Some("https://a.notify.windows.com/?t=1".into()),
            Some(1),
            &hosts(),
            T,
        );
        assert_eq!(bad_pfn.state, ChannelState::Missing);
    }

    #[test]
    fn the_session_provisions_until_active_and_rereads_daily() {
        let d = DeviceId::generate();
        let cfg = PushConfig {
            pfn: "Contoso.Mdm_8wekyb3d8bbwe".into(),
            channel_hosts: hosts(),
        };
        let verbs = |cmds: Vec<DeviceCommand>| {
            cmds.iter()
                .map(|c| format!("{:?} {}", c.verb, c.uri.rsplit('/').next().unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            verbs(session_commands(d, None, "P", &cfg, T)),
            ["Replace PFN", "Get ChannelURI", "Get Status"]
        );
        let mut active = PushChannel::reported(
            d,
            Some("https://a.notify.windows.com/".into()),
            Some(0),
            &hosts(),
            T,
        );
        assert!(session_commands(d, Some(&active), "P", &cfg, T + Duration::hours(1)).is_empty());
        assert_eq!(
            verbs(session_commands(
                d,
                Some(&active),
                "P",
                &cfg,
                T + Duration::hours(25)
            )),
            ["Get ChannelURI", "Get Status"]
        );
        active.state = ChannelState::Expired;
        assert_eq!(
            session_commands(d, Some(&active), "P", &cfg, T).len(),
            3,
            "an expired channel is provisioned and read again"
        );
    }

    #[test]
    fn attempts_follow_outcomes_with_backoff() {
        assert_eq!(next_attempt(None, T), Some(1));
        let mut a = PushAttempt {
            action: ActionId::generate(),
            attempt: 1,
            device: DeviceId::generate(),
            claimed_at: T,
            outcome: None,
            finished_at: None,
        };
        assert_eq!(next_attempt(Some(&a), T), None, "in flight");
        assert_eq!(next_attempt(Some(&a), T + ABANDONED_AFTER), Some(2));
        a.outcome = Some(PushOutcome::Delivered);
        a.finished_at = Some(T);
        assert_eq!(next_attempt(Some(&a), T + Duration::hours(1)), None);
        a.outcome = Some(PushOutcome::ChannelGone);
        assert_eq!(next_attempt(Some(&a), T + Duration::hours(1)), None);
        a.outcome = Some(PushOutcome::Throttled);
        assert_eq!(next_attempt(Some(&a), T + Duration::seconds(4)), None);
        assert_eq!(next_attempt(Some(&a), T + Duration::seconds(5)), Some(2));
        a.attempt = MAX_ATTEMPTS;
        assert_eq!(next_attempt(Some(&a), T + Duration::hours(1)), None);
        assert_eq!(backoff(2), Duration::seconds(20));
    }
}
