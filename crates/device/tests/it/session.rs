//! OMA-DM sessions against scripted server messages: what the PC sends and how it answers.

use device::client;
use device::state::{reset_status, EventKind};
use device::transport::Response;
use device::DeviceError;
use syncml::{AlertCode, Command, SyncMl};

use crate::common::{device, exec, get, has_event, t0, RESET_NODE, STATUS_NODE};
use crate::fake::{hdr_status, hdr_status_code, server_message, FakeServer, ADDR};
use crate::support::fixture;

fn alerts(msg: &SyncMl) -> Vec<(u16, Option<String>, Option<String>)> {
    msg.body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Alert(a) => Some((
                a.code.as_u16(),
                a.items
                    .first()
                    .and_then(|i| i.meta_type().map(str::to_string)),
                a.items
                    .first()
                    .and_then(|i| i.data_str().map(str::to_string)),
            )),
            _ => None,
        })
        .collect()
}

fn replace_sources(msg: &SyncMl) -> Vec<String> {
    msg.body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Replace(r) => Some(
                r.items
                    .iter()
                    .map(|i| i.source.as_ref().unwrap().as_str().to_string()),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

/// (Cmd, MsgRef, CmdRef, code) of every Status in a PC message.
fn statuses(msg: &SyncMl) -> Vec<(String, String, String, u16)> {
    msg.body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Status(s) => Some((
                s.cmd.clone(),
                s.msg_ref.clone(),
                s.cmd_ref.clone(),
                s.code.as_u16(),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn package_one_has_the_shape_windows_sends() {
    let server = FakeServer::scripted(vec![]);
    let mut pc = device();
    let report = client::check_in(&server, &mut pc, t0()).await.unwrap();
    assert_eq!(report.messages_sent, 1);

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].url, format!("{ADDR}?mode=Machine&Platform=WoA"));
    assert_eq!(seen[0].content_type, "application/vnd.syncml.dm+xml");
    let id = seen[0]
        .identity
        .as_ref()
        .expect("mutual TLS with the MDM certificate");
    let e = pc.mdm_enrollment.as_ref().unwrap();
    assert_eq!(id.cert_pem, e.client_cert_pem);
    assert_eq!(id.key_pem, e.client_key_pem);

    let msg = seen[0].syncml();
    assert_eq!(msg.hdr.ver_dtd, "1.2");
    assert_eq!(msg.hdr.ver_proto, "DM/1.2");
    assert_eq!(msg.hdr.session_id, "1");
    assert_eq!(msg.hdr.msg_id, "1");
    assert_eq!(msg.hdr.target.as_ref().unwrap().as_str(), ADDR);
    assert_eq!(msg.hdr.source.as_ref().unwrap().as_str(), pc.dev_id);
    assert!(msg.body.is_final);
    let user = pc
        .signed_in_user
        .clone()
        .expect("the fixture PC has a user signed in");
    assert!(pc.entra_users.iter().any(|u| u.upn == user));
    let a = alerts(&msg);
    assert_eq!(a[0], (1201, None, None));
    assert_eq!(
        a[1],
        (
            1224,
            Some("com.microsoft/MDM/LoginStatus".into()),
            Some("user".into())
        )
    );
    assert_eq!(a[2].0, 1224);
    assert_eq!(a[2].1.as_deref(), Some("com.microsoft/MDM/AADUserToken"));
    assert!(!a[2].2.as_deref().unwrap().is_empty());

    // The same Replace as a real PC (mattrax basic-1: DevInfo + DMClient/HWDevID).
    let basic = syncml::parse(&fixture("mattrax/basic-1.xml")).unwrap();
    assert_eq!(replace_sources(&msg), replace_sources(&basic));
    let values: Vec<String> = msg
        .body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Replace(r) => Some(r.items.iter().map(|i| i.data_str().unwrap().to_string())),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(values[0], pc.dev_id);
    assert_eq!(values[1], pc.hardware.manufacturer);
    assert_eq!(values[2], pc.hardware.model);
    assert_eq!(values[5], pc.hardware.hw_dev_id);
    // Fixture 09 (Windows 10 21H1) has the same commands in the same order, less the HWDevID.
    let real = syncml::parse(&fixture("fleet-win10-21h1/09-syncml-device-1.xml")).unwrap();
    let names =
        |m: &SyncMl| -> Vec<&'static str> { m.body.commands.iter().map(Command::name).collect() };
    let mut ours = names(&msg);
    ours.retain(|n| *n != "Alert");
    let mut theirs = names(&real);
    theirs.retain(|n| *n != "Alert");
    assert_eq!(ours, theirs);
    assert_eq!(alerts(&real)[..2], a[..2]);

    // The next session has the next SessionID.
    client::check_in(&server, &mut pc, t0()).await.unwrap();
    assert_eq!(server.dm_messages()[1].hdr.session_id, "2");
    assert!(has_event(&pc, EventKind::SessionStarted));
    assert!(has_event(&pc, EventKind::SessionEnded));
}

#[tokio::test]
async fn signed_out_pc_reports_login_status_none_without_a_user_token() {
    let server = FakeServer::scripted(vec![]);
    let mut pc = device();
    pc.signed_in_user = None;
    client::check_in(&server, &mut pc, t0()).await.unwrap();
    let a = alerts(&server.dm_messages()[0]);
    assert_eq!(a.len(), 2);
    assert_eq!(a[1].2.as_deref(), Some("none"));
}

#[tokio::test]
async fn remote_reset_exec_and_get_are_answered_with_statuses_and_results() {
    let server = FakeServer::scripted(vec![
        server_message(
            "1",
            "1",
            vec![
                hdr_status("1"),
                exec("2", RESET_NODE),
                get("3", &[STATUS_NODE]),
            ],
            true,
        ),
        server_message("1", "2", vec![hdr_status("2")], true),
    ]);
    let mut pc = device();
    let report = client::check_in(&server, &mut pc, t0()).await.unwrap();
    assert_eq!(report.messages_sent, 2);
    let sent = server.dm_messages();
    assert_eq!(sent.len(), 2);
    let reply = &sent[1];
    assert_eq!(reply.hdr.msg_id, "2");
    assert_eq!(reply.hdr.session_id, "1");
    assert!(reply.body.is_final);
    assert_eq!(
        statuses(reply),
        vec![
            ("SyncHdr".into(), "1".into(), "0".into(), 200),
            ("Exec".into(), "1".into(), "2".into(), 200),
            ("Get".into(), "1".into(), "3".into(), 200),
        ]
    );
    let results: Vec<_> = reply
        .body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Results(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].msg_ref, "1");
    assert_eq!(results[0].cmd_ref, "3");
    assert_eq!(results[0].items[0].data_str(), Some("10"));
    // CmdIDs of the PC's own commands are unique within the message.
    let mut ids: Vec<&str> = reply.body.commands.iter().map(Command::cmd_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), reply.body.commands.len());

    assert_eq!(pc.autopilot_reset.status, reset_status::SCHEDULED);
    assert!(pc.pending.is_some());
    assert_eq!(
        report.executed,
        vec![
            ("Exec".into(), RESET_NODE.into(), 200),
            ("Get".into(), STATUS_NODE.into(), 200),
        ]
    );
    let logged: Vec<&str> = pc
        .events
        .iter()
        .filter(|e| e.kind == EventKind::CommandExecuted)
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(logged.len(), 2);
    assert!(logged[0].contains("doAutomaticRedeployment") && logged[0].ends_with("200"));
}

#[tokio::test]
async fn a_package_without_final_is_continued_with_alert_1222() {
    let server = FakeServer::scripted(vec![
        server_message(
            "1",
            "1",
            vec![hdr_status("1"), get("2", &["./DevInfo/DevId"])],
            false,
        ),
        server_message("1", "2", vec![get("2", &["./DevInfo/Man"])], true),
        server_message("1", "3", vec![hdr_status("3")], true),
    ]);
    let mut pc = device();
    let report = client::check_in(&server, &mut pc, t0()).await.unwrap();
    assert_eq!(report.messages_sent, 3);
    let sent = server.dm_messages();
    let second = &sent[1];
    assert_eq!(
        alerts(second).iter().map(|a| a.0).collect::<Vec<_>>(),
        vec![AlertCode::NextMessage.as_u16()]
    );
    assert_eq!(
        statuses(second),
        vec![
            ("SyncHdr".into(), "1".into(), "0".into(), 200),
            ("Get".into(), "1".into(), "2".into(), 200),
        ]
    );
    let third = &sent[2];
    assert_eq!(third.hdr.msg_id, "3");
    assert!(alerts(third).is_empty(), "no 1222 after a final message");
    assert_eq!(
        statuses(third),
        vec![
            ("SyncHdr".into(), "2".into(), "0".into(), 200),
            ("Get".into(), "2".into(), "2".into(), 200),
        ]
    );
    let data: Vec<&str> = third
        .body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Results(r) => r.items[0].data_str(),
            _ => None,
        })
        .collect();
    assert_eq!(data, vec![pc.hardware.manufacturer.as_str()]);
}

#[tokio::test]
async fn refused_credentials_stop_the_session_and_are_logged() {
    let server = FakeServer::new(crate::fake::Mdm::Script(
        vec![Response {
            status: 401,
            content_type: String::new(),
            body: Vec::new(),
        }]
        .into(),
    ));
    let mut pc = device();
    let err = client::check_in(&server, &mut pc, t0()).await.unwrap_err();
    assert!(
        matches!(err, DeviceError::Unauthorized { code: 401, .. }),
        "{err:?}"
    );
    assert!(has_event(&pc, EventKind::SessionFailed));
    assert_eq!(pc.dm_client.sessions_failed, 1);

    let server = FakeServer::scripted(vec![server_message(
        "1",
        "1",
        vec![hdr_status_code("1", 407), get("2", &["./DevInfo/DevId"])],
        true,
    )]);
    let err = client::check_in(&server, &mut pc, t0()).await.unwrap_err();
    assert!(
        matches!(err, DeviceError::Unauthorized { code: 407, .. }),
        "{err:?}"
    );
    assert_eq!(
        server.dm_messages().len(),
        1,
        "nothing answered after a 407"
    );
}

#[tokio::test]
async fn oversized_server_messages_are_refused() {
    let server = FakeServer::new(crate::fake::Mdm::Script(
        vec![Response {
            status: 200,
            content_type: syncml::codes::CONTENT_TYPE.into(),
            body: vec![b' '; 4 * 1024 * 1024 + 1],
        }]
        .into(),
    ));
    let mut pc = device();
    let err = client::check_in(&server, &mut pc, t0()).await.unwrap_err();
    assert!(matches!(err, DeviceError::TooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn after_a_wipe_the_pc_sends_nothing() {
    let mut pc = device();
    let out = crate::common::run(
        &mut pc,
        &exec("2", "./Device/Vendor/MSFT/RemoteWipe/doWipe"),
    );
    assert_eq!(crate::common::status_of(&out, "2"), 200);
    device::run_to_completion(&mut pc);
    let server = FakeServer::scripted(vec![]);
    let err = client::check_in(&server, &mut pc, t0()).await.unwrap_err();
    assert!(matches!(err, DeviceError::NotEnrolled), "{err:?}");
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn an_offline_pc_sends_nothing() {
    let mut pc = device();
    pc.online = false;
    let server = FakeServer::scripted(vec![]);
    let err = client::check_in(&server, &mut pc, t0()).await.unwrap_err();
    assert!(matches!(err, DeviceError::Offline), "{err:?}");
    assert!(server.seen().is_empty());
}
