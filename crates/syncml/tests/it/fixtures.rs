//! Every SyncML message in the real captures parses, with its contents as the device sent them.

use syncml::*;

use crate::{fixture, fixtures_dir, parse_ok};

fn status(cmd: &Command) -> &Status {
    match cmd {
        Command::Status(s) => s,
        other => panic!("expected Status, got {}", other.name()),
    }
}

fn alert(cmd: &Command) -> &Alert {
    match cmd {
        Command::Alert(a) => a,
        other => panic!("expected Alert, got {}", other.name()),
    }
}

fn item_cmd(cmd: &Command) -> &ItemCommand {
    match cmd {
        Command::Replace(c)
        | Command::Add(c)
        | Command::Get(c)
        | Command::Exec(c)
        | Command::Delete(c) => c,
        other => panic!("expected an item command, got {}", other.name()),
    }
}

#[test]
fn fleet_device_checkin_09_parses_with_devinfo() {
    let m = parse_ok(&fixture("fleet-win10-21h1/09-syncml-device-1.xml"));
    assert_eq!(m.hdr.ver_dtd, "1.2");
    assert_eq!(m.hdr.ver_proto, "DM/1.2");
    assert_eq!(m.hdr.session_id, "1");
    assert_eq!(m.hdr.msg_id, "1");
    assert_eq!(
        m.hdr.target.as_ref().unwrap().as_str(),
        "https://windows.fleetdm.ngrok.io/ManagementServer/MDM.svc"
    );
    assert_eq!(
        m.hdr.source.as_ref().unwrap().as_str(),
        "B5B954E81FBCB94EB79BD08BE625F4EE"
    );
    assert!(m.body.is_final);
    let cmds = &m.body.commands;
    assert_eq!(cmds.len(), 3);
    assert_eq!(alert(&cmds[0]).code, AlertCode::ClientInitiatedMgmt);
    let login = alert(&cmds[1]);
    assert_eq!(login.code, AlertCode::ClientEvent);
    assert_eq!(
        login.items[0].meta_type(),
        Some(codes::ALERT_TYPE_LOGIN_STATUS)
    );
    assert_eq!(login.items[0].data, Some(Data::Text("user".into())));
    let replace = item_cmd(&cmds[2]);
    assert!(matches!(cmds[2], Command::Replace(_)));
    assert_eq!(replace.cmd_id, "4");
    let pairs: Vec<(&str, &str)> = replace
        .items
        .iter()
        .map(|i| (i.source.as_ref().unwrap().as_str(), i.data_str().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("./DevInfo/DevId", "B5B954E81FBCB94EB79BD08BE625F4EE"),
            ("./DevInfo/Man", "VMware, Inc."),
            ("./DevInfo/Mod", "VMware7,1"),
            ("./DevInfo/DmV", "1.3"),
            ("./DevInfo/Lang", "en-US"),
        ]
    );
    assert_eq!(m.device_id(), Some("B5B954E81FBCB94EB79BD08BE625F4EE"));
}

#[test]
fn fleet_server_reply_10_parses_with_leading_whitespace_before_declaration() {
    let m = parse_ok(&fixture("fleet-win10-21h1/10-syncml-server-1.xml"));
    assert_eq!(
        m.hdr.target.as_ref().unwrap().as_str(),
        "B5B954E81FBCB94EB79BD08BE625F4EE"
    );
    let s: Vec<(&str, &str, &str, u16)> = m
        .body
        .commands
        .iter()
        .map(status)
        .map(|s| {
            (
                s.cmd_id.as_str(),
                s.cmd_ref.as_str(),
                s.cmd.as_str(),
                s.code.as_u16(),
            )
        })
        .collect();
    assert_eq!(
        s,
        [
            ("1", "0", "SyncHdr", 200),
            ("2", "2", "Alert", 200),
            ("3", "3", "Alert", 200),
            ("4", "4", "Replace", 200)
        ]
    );
    assert!(m.body.commands.iter().map(status).all(|s| s.msg_ref == "1"));
    assert!(m.body.is_final, "`<Final />` with a space counts as Final");
}

#[test]
fn fleet_device_checkin_11_carries_the_unenroll_alert() {
    let m = parse_ok(&fixture("fleet-win10-21h1/11-syncml-device-2.xml"));
    assert_eq!(m.hdr.session_id, "2");
    let unenroll = alert(&m.body.commands[2]);
    assert_eq!(unenroll.code, AlertCode::GenericAlert);
    assert_eq!(unenroll.code.as_u16(), 1226);
    let item = &unenroll.items[0];
    assert_eq!(
        item.meta_type(),
        Some(codes::ALERT_TYPE_UNENROLL_USER_REQUEST)
    );
    assert_eq!(item.format(), Some("int"));
    assert_eq!(item.data_str(), Some("1"));
    assert_eq!(item_cmd(&m.body.commands[3]).items.len(), 5);
}

#[test]
fn fleet_server_reply_12_is_header_status_only() {
    let m = parse_ok(&fixture("fleet-win10-21h1/12-syncml-server-2.xml"));
    assert_eq!(m.hdr.session_id, "2");
    assert_eq!(m.body.commands.len(), 1);
    let s = status(&m.body.commands[0]);
    assert!(s.is_for_header());
    assert_eq!(s.code, StatusCode::Ok);
    assert!(m.body.is_final);
}

#[test]
fn readme_messages_parse_despite_markdown_indentation() {
    let m1 = parse_ok(&fixture("fleet-win10-21h1-readme/01-syncml-device-1.xml"));
    assert_eq!(
        m1.hdr.source.as_ref().unwrap().as_str(),
        "1E08C6E95D8BB843B1278FF45BC60CC6"
    );
    assert_eq!(m1.device_id(), Some("1E08C6E95D8BB843B1278FF45BC60CC6"));

    let m2 = parse_ok(&fixture("fleet-win10-21h1-readme/02-syncml-server-1.xml"));
    assert_eq!(m2.body.commands.len(), 6);
    let desktop = item_cmd(&m2.body.commands[4]);
    assert_eq!(
        desktop.items[0].target.as_ref().unwrap().as_str(),
        "./Vendor/MSFT/Personalization/DesktopImageUrl"
    );
    assert_eq!(desktop.items[0].format(), Some("chr"));
    // <Type> without the metinf namespace is still the Meta Type.
    assert_eq!(desktop.items[0].meta_type(), Some("text/plain"));
    assert_eq!(
        desktop.items[0].data_str(),
        Some("https://fleetdm.com/images/articles/fleet-4.24.0-cover-1600x900@2x.jpg")
    );

    let m3 = parse_ok(&fixture("fleet-win10-21h1-readme/03-syncml-device-2.xml"));
    assert_eq!(m3.hdr.msg_id, "2");
    let codes: Vec<(&str, StatusCode)> = m3
        .body
        .commands
        .iter()
        .map(status)
        .map(|s| (s.cmd_ref.as_str(), s.code))
        .collect();
    assert_eq!(
        codes,
        [
            ("0", StatusCode::Ok),
            ("5", StatusCode::Accepted),
            ("6", StatusCode::Accepted)
        ]
    );
}

#[test]
fn mattrax_checkin_with_cred_hex_session_and_header_500() {
    let m = parse_ok(&fixture("mattrax/basic-1.xml"));
    assert_eq!(m.hdr.session_id, "D");
    assert_eq!(m.hdr.msg_id, "2");
    assert_eq!(m.hdr.source.as_ref().unwrap().as_str(), "def");
    assert_eq!(m.hdr.source_name.as_deref(), Some("dummy"));
    let cred = m.hdr.cred.as_ref().unwrap();
    let cm = cred.meta.as_ref().unwrap();
    assert_eq!(cm.format.as_deref(), Some("b64"));
    assert_eq!(cm.r#type.as_deref(), Some("syncml:auth-md5"));
    assert_eq!(cred.data, "EVEkoFZcVgPM+ESnu9IC0g==");
    let hdr_status = status(&m.body.commands[0]);
    assert!(hdr_status.is_for_header());
    assert_eq!(hdr_status.code, StatusCode::CommandFailed);
    assert_eq!(hdr_status.msg_ref, "0");
    assert_eq!(alert(&m.body.commands[2]).items[0].data_str(), Some("user"));
    let replace = item_cmd(&m.body.commands[3]);
    assert_eq!(replace.items.len(), 6);
    assert_eq!(
        replace.items[5].source.as_ref().unwrap().as_str(),
        "./Vendor/MSFT/DMClient/HWDevID"
    );
    assert_eq!(replace.items[2].data_str(), Some("XPS 13 9310 2-in-1"));
    assert_eq!(m.device_id(), Some("abc"));
}

#[test]
fn every_fixture_survives_write_then_parse() {
    for rel in [
        "fleet-win10-21h1/09-syncml-device-1.xml",
        "fleet-win10-21h1/10-syncml-server-1.xml",
        "fleet-win10-21h1/11-syncml-device-2.xml",
        "fleet-win10-21h1/12-syncml-server-2.xml",
        "fleet-win10-21h1-readme/01-syncml-device-1.xml",
        "fleet-win10-21h1-readme/02-syncml-server-1.xml",
        "fleet-win10-21h1-readme/03-syncml-device-2.xml",
        "mattrax/basic-1.xml",
    ] {
        let m = parse_ok(&fixture(rel));
        let written = write(&m);
        assert_eq!(parse_ok(written.as_bytes()), m, "{rel}");
    }
}

/// The size the session engine checks its budget with is the size of what goes out, for every
/// real capture and every message of our own in `testdata/`.
#[test]
fn written_len_is_the_length_of_what_write_writes() {
    let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
    for dir in std::fs::read_dir(fixtures_dir()).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // SOAP captures and templates sit beside the SyncML ones; they do not parse.
            if name.ends_with(".xml") {
                messages.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let ours = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    for file in std::fs::read_dir(ours).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_some_and(|e| e == "xml") {
            messages.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    let mut checked = 0;
    for (name, bytes) in &messages {
        // Some of our testdata are messages the parser must refuse.
        let Ok(m) = syncml::parse(bytes) else {
            continue;
        };
        assert_eq!(syncml::written_len(&m), write(&m).len(), "{name}");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} messages found");
}

/// "What we write for the same exchange carries the same information": our reply to 09, built with
/// the builders, equals Fleet's reply 10 (which Windows accepted) field by field.
#[test]
fn our_reply_to_09_matches_the_accepted_reply_10() {
    let incoming = parse_ok(&fixture("fleet-win10-21h1/09-syncml-device-1.xml"));
    let server =
        LocUri::parse("https://windows.fleetdm.ngrok.io/ManagementServer/MDM.svc").unwrap();
    let mut reply = SyncMl::reply_to(&incoming, server, "1");
    reply.body.commands.push(Command::Status(Status::for_header(
        &incoming.hdr.msg_id,
        StatusCode::Ok,
    )));
    let mut ids = CmdIds::starting_at(2);
    for cmd in &incoming.body.commands {
        let s = Status::for_command(ids.next_id(), &incoming.hdr.msg_id, cmd, StatusCode::Ok);
        reply.body.commands.push(Command::Status(s));
    }
    let written = write(&reply);
    let ours = parse_ok(written.as_bytes());
    let theirs = parse_ok(&fixture("fleet-win10-21h1/10-syncml-server-1.xml"));
    assert_eq!(ours.hdr, theirs.hdr);
    assert_eq!(ours.body.commands.len(), theirs.body.commands.len());
    for (a, b) in ours.body.commands.iter().zip(&theirs.body.commands) {
        assert_eq!(a, b);
    }
    assert_eq!(ours, theirs);
}
