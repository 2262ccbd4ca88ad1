//! Push (WNS, issue #16 item 5) end to end on both backends: an emulated fleet whose clock never
//! moves (so no poll ever comes due) registers a channel on the stand-in WNS of
//! `device::wns`; the server stores it, and an action queued by the admin reaches the PC
//! because the server pushed, not because the PC polled. WNS answering 410 expires the channel
//! and the action waits for the PC's poll; a 401 makes the server fetch a new token once; a
//! throttled push (429, 406) is sent again after its back-off; without `[push]` no session
//! carries push commands.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use api::{ActionKind, Client};
use device::fleet::{self, FleetConfig, FleetSummary};
use device::schedule::{Clock as DeviceClock, ManualClock};
use device::wns::StandInWns;
use device::HttpsTransport;
use redeploy_core::push::ChannelHost;
use server::settings::PushSettings;
use testkit::app::{spawn_app, spawn_app_with, Backend, TestApp};
use testkit::on_both_backends;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::api_v1::{admin, enrolled_pc};

on_both_backends!(
    a_queued_reset_reaches_the_pc_by_push_before_any_poll,
    a_gone_channel_is_expired_and_the_action_waits_for_the_poll,
    an_expired_token_is_fetched_again_once,
    a_throttled_push_is_sent_again_after_its_back_off,
    without_push_no_session_carries_push_commands,
    click_to_exec_with_push,
);

/// The `[push]` settings that point the server at `wns`.
fn push_settings(wns: &StandInWns) -> PushSettings {
    PushSettings {
        package_sid: "ms-app://s-1-15-2-1234-5678".into(),
        client_secret: Some("stand-in-secret".into()),
        client_secret_file: None,
        pfn: "Redeploy.Test_8wekyb3d8bbwe".into(),
        token_url: wns.token_url(),
        channel_hosts: vec![
            ChannelHost::parse("notify.windows.com").unwrap(),
            ChannelHost::parse(&wns.base_url()).unwrap(),
        ],
        max_in_flight: 4,
        ttl: StdDuration::from_secs(3600),
        lookback: StdDuration::from_secs(3600),
    }
}

/// A server with push to a fresh stand-in WNS.
pub(crate) async fn push_app(backend: Backend) -> (TestApp, Arc<StandInWns>) {
    let wns = Arc::new(StandInWns::start(([127, 0, 0, 1], 0).into()).await.unwrap());
    let settings = push_settings(&wns);
    let app = spawn_app_with(backend, |s| s.push = Some(settings)).await;
    (app, wns)
}

/// One emulated PC living on its own against `app`, registered with `wns`, on a device clock
/// that only the test moves; the run's summaries come out on the watch.
pub(crate) struct LivePc {
    pub(crate) clock: Arc<ManualClock>,
    summaries: watch::Receiver<FleetSummary>,
    _stop: watch::Sender<bool>,
    _state: tempfile::TempDir,
}

impl LivePc {
    pub(crate) async fn start(app: &TestApp, wns: &Arc<StandInWns>) -> Self {
        Self::fleet(app, wns, 1).await
    }

    /// `n` PCs (`pc-0000`, …) instead of one.
    async fn fleet(app: &TestApp, wns: &Arc<StandInWns>, n: usize) -> Self {
        let state = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tx, summaries) = watch::channel(FleetSummary::default());
        let config = FleetConfig {
            state_files: false,
            shutdown: Some(stop_rx),
            wns: Some(Arc::clone(wns)),
            ..FleetConfig::new(&app.base_url, &app.enrollment_token, n, state.path())
        };
        let transport = Arc::new(HttpsTransport::new(&app.ca_pem).unwrap());
        let device_clock: Arc<dyn DeviceClock> = clock.clone();
        let progress: fleet::ProgressFn = Arc::new(move |s: &FleetSummary| {
            let _ = tx.send(s.clone());
        });
        tokio::spawn(
            async move { fleet::run(&config, transport, device_clock, Some(progress)).await },
        );
        LivePc {
            clock,
            summaries,
            _stop: stop_tx,
            _state: state,
        }
    }

    /// Waits until the PC has completed `n` sessions in all.
    pub(crate) async fn sessions(&self, n: u64) {
        let mut summaries = self.summaries.clone();
        let wait = summaries.wait_for(|s| {
            assert!(s.errors_by_kind.is_empty(), "the PC failed: {s:?}");
            s.sessions_ok >= n
        });
        if tokio::time::timeout(StdDuration::from_secs(30), wait)
            .await
            .is_err()
        {
            panic!("no session {n}: {:?}", *self.summaries.borrow());
        }
    }
}

/// The PC's device id, once the server knows it.
async fn only_device(client: &Client) -> String {
    let page = client.list_devices(&Default::default()).await.unwrap();
    assert_eq!(page.items.len(), 1);
    page.items[0].id.clone()
}

/// Polls the API until `done` holds for the device (10 s at most): for outcomes recorded by
/// the push dispatcher, which runs beside the request that woke it.
async fn device_until(
    client: &Client,
    id: &str,
    done: impl Fn(&api::Device) -> bool,
) -> api::Device {
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    loop {
        let d = client.device(id).await.unwrap().device;
        if done(&d) || tokio::time::Instant::now() > deadline {
            return d;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

async fn a_queued_reset_reaches_the_pc_by_push_before_any_poll(backend: Backend) {
    let (app, wns) = push_app(backend).await;
    let client = admin(&app);
    let pc = LivePc::start(&app, &wns).await;
    // Enrollment's first session provisions Push/PFN and reads the channel.
    pc.sessions(1).await;
    let id = only_device(&client).await;
    let device = client.device(&id).await.unwrap().device;
    let channel = device.push.expect("the channel the PC reported");
    assert_eq!(
        (channel.state.as_str(), channel.device_status),
        ("active", Some(0))
    );
    let stored = app
        .store
        .push_channel(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.uri, Some(wns.channel_uri("pc-0000")));

    // The device clock never moves: only a push can bring the PC back.
    let action = client
        .request_action(&id, ActionKind::AutopilotReset)
        .await
        .unwrap();
    assert_eq!(action.state, "pending");
    let pushed = tokio::time::timeout(StdDuration::from_secs(10), wns.next_notification())
        .await
        .expect("the server pushed")
        .unwrap();
    assert_eq!(pushed.channel, "pc-0000");
    pc.sessions(2).await;
    let action = client.action(&action.id).await.unwrap();
    assert!(
        ["sent", "acknowledged", "in_progress"].contains(&action.state.as_str()),
        "the Exec reached the PC: {action:?}"
    );
    assert_eq!(action.woken_by.as_deref(), Some("push"));
    assert!(action
        .timeline
        .iter()
        .any(|t| t.state == "sent" || t.state == "in_progress"));
    assert_eq!(wns.tokens_issued(), 1);
    // Actions in lists carry no wake (it is read per action).
    assert!(client.device(&id).await.unwrap().actions[0]
        .woken_by
        .is_none());
}

async fn a_gone_channel_is_expired_and_the_action_waits_for_the_poll(backend: Backend) {
    let (app, wns) = push_app(backend).await;
    let client = admin(&app);
    let pc = LivePc::start(&app, &wns).await;
    pc.sessions(1).await;
    let id = only_device(&client).await;

    wns.answer_next(&[410]);
    let action = client
        .request_action(&id, ActionKind::AutopilotReset)
        .await
        .unwrap();
    let device = device_until(&client, &id, |d| {
        d.push.as_ref().is_some_and(|p| p.state == "expired")
    })
    .await;
    assert_eq!(device.push.unwrap().state, "expired", "WNS said 410 Gone");
    assert_eq!(
        client.action(&action.id).await.unwrap().state,
        "pending",
        "no push, no poll: the PC has not come"
    );

    // The PC's poll comes due: it checks in on its own and gets the reset.
    pc.clock.advance(time::Duration::days(2));
    pc.sessions(2).await;
    let action = client.action(&action.id).await.unwrap();
    assert!(
        ["sent", "acknowledged", "in_progress"].contains(&action.state.as_str()),
        "{action:?}"
    );
    assert_eq!(action.woken_by.as_deref(), Some("poll"));
    // That session read the channel again: the PC still has one.
    let device = client.device(&id).await.unwrap().device;
    assert_eq!(device.push.unwrap().state, "active");
}

async fn an_expired_token_is_fetched_again_once(backend: Backend) {
    let (app, wns) = push_app(backend).await;
    let client = admin(&app);
    let pc = LivePc::start(&app, &wns).await;
    pc.sessions(1).await;
    let id = only_device(&client).await;

    let first = client.request_action(&id, ActionKind::Sync).await.unwrap();
    pc.sessions(2).await;
    assert_eq!(
        client.action(&first.id).await.unwrap().woken_by.as_deref(),
        Some("push")
    );
    assert_eq!((wns.tokens_issued(), wns.posts()), (1, 1));

    // WNS no longer takes the cached token: 401, a new token, the notification again.
    wns.revoke_tokens();
    let second = client.request_action(&id, ActionKind::Sync).await.unwrap();
    pc.sessions(3).await;
    assert_eq!(
        client.action(&second.id).await.unwrap().woken_by.as_deref(),
        Some("push")
    );
    assert_eq!((wns.tokens_issued(), wns.posts()), (2, 3));
}

async fn a_throttled_push_is_sent_again_after_its_back_off(backend: Backend) {
    let (app, wns) = push_app(backend).await;
    let client = admin(&app);
    let pc = LivePc::start(&app, &wns).await;
    pc.sessions(1).await;
    let id = only_device(&client).await;

    // WNS throttles the first notification (429; 406 is its per-channel form): the channel
    // stays usable, and the next attempt, after the back-off, reaches the PC.
    wns.answer_next(&[429]);
    let action = client.request_action(&id, ActionKind::Sync).await.unwrap();
    pc.sessions(2).await;
    assert_eq!(
        client.action(&action.id).await.unwrap().woken_by.as_deref(),
        Some("push"),
        "the PC came because of the second push: its clock never moved"
    );
    assert_eq!(
        (wns.tokens_issued(), wns.posts()),
        (1, 2),
        "one token, the throttled post and the one sent again"
    );
    let device = client.device(&id).await.unwrap().device;
    assert_eq!(
        device.push.unwrap().state,
        "active",
        "throttling does not expire the channel"
    );
}

async fn without_push_no_session_carries_push_commands(backend: Backend) {
    let app = spawn_app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (mut state, id) = enrolled_pc(&app, &transport, "pc-np", 21, None).await;
    let report = device::client::check_in(&transport, &mut state, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(
        report
            .executed
            .iter()
            .all(|(_, target, _)| !target.contains("/Push/")),
        "{:?}",
        report.executed
    );
    assert!(state.push.pfn.is_none());
    let client = admin(&app);
    assert!(client.device(&id).await.unwrap().device.push.is_none());
    let action = client.request_action(&id, ActionKind::Sync).await.unwrap();
    assert!(client.action(&action.id).await.unwrap().woken_by.is_none());
}

/// The measurement of docs/benchmarks.md ("Push: click to Exec"): ten PCs that never poll, one
/// Autopilot Reset each, asked one after the other; the time from the API request to the
/// action leaving `pending` (the reply carrying its Exec committed, in the session the push
/// started), read every 2 ms. Asserts only that push brought each one; prints the figures.
async fn click_to_exec_with_push(backend: Backend) {
    let (app, wns) = push_app(backend).await;
    let client = admin(&app);
    let pcs = LivePc::fleet(&app, &wns, 10).await;
    pcs.sessions(10).await;
    let devices = client
        .list_devices(&Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(devices.len(), 10);
    // Every PC has finished its first session (its channel is stored) before the clicks.
    for d in &devices {
        let d = device_until(&client, &d.id, |d| {
            d.push.as_ref().is_some_and(|p| p.state == "active")
        })
        .await;
        assert_eq!(d.push.unwrap().state, "active");
    }
    let mut took = Vec::new();
    for d in &devices {
        let clicked = std::time::Instant::now();
        let action = client
            .request_action(&d.id, ActionKind::AutopilotReset)
            .await
            .unwrap();
        let action = loop {
            let a = client.action(&action.id).await.unwrap();
            if a.state != "pending" || clicked.elapsed() > StdDuration::from_secs(30) {
                break a;
            }
            tokio::time::sleep(StdDuration::from_millis(2)).await;
        };
        took.push(clicked.elapsed());
        assert_eq!(action.woken_by.as_deref(), Some("push"), "{action:?}");
    }
    took.sort();
    eprintln!(
        "push click to Exec on {backend:?}: median {:?}, min {:?}, max {:?} (n = {})",
        took[took.len() / 2],
        took[0],
        took[took.len() - 1],
        took.len()
    );
}
