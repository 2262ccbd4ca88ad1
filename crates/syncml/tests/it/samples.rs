//! Messages in the shapes Microsoft documents (docs/protocol.md §6), re-typed with our own values
//! in `testdata/` (see its README for which document each follows).

use syncml::*;

use crate::{parse_ok, testdata};

fn first_item(cmd: &Command) -> &Item {
    match cmd {
        Command::Add(c)
        | Command::Replace(c)
        | Command::Delete(c)
        | Command::Get(c)
        | Command::Exec(c) => &c.items[0],
        Command::Results(r) => &r.items[0],
        Command::Alert(a) => &a.items[0],
        Command::Status(s) => &s.items[0],
        other => panic!("{} has no items", other.name()),
    }
}

#[test]
fn f6_server_get_swv_and_replace_int() {
    let m = parse_ok(&testdata("f6-server-get-and-replace.xml"));
    assert_eq!(
        m.hdr.target.as_ref().unwrap().as_str(),
        "{4C1F2A7E-0D3B-4E52-9A61-2B7E5C0F11AA}"
    );
    assert!(
        matches!(&m.body.commands[0], Command::Get(g) if g.items[0].target.as_ref().unwrap().as_str() == "./DevDetail/SwV")
    );
    let replace = first_item(&m.body.commands[1]);
    assert_eq!(replace.format(), Some("int"));
    assert_eq!(replace.data, Some(Data::Text("15".into())));
}

#[test]
fn f7_login_status_with_lowercase_namespace_and_padded_ids() {
    let m = parse_ok(&testdata("f7-login-status-others.xml"));
    // Whitespace around IDs, codes and URIs is not part of them.
    assert_eq!(m.hdr.ver_dtd, "1.2");
    assert_eq!(m.hdr.session_id, "3A");
    assert_eq!(m.hdr.msg_id, "1");
    assert_eq!(
        m.hdr.target.as_ref().unwrap().as_str(),
        "https://mdm.example.test/ManagementServer/MDM.svc"
    );
    match &m.body.commands[0] {
        Command::Alert(a) => {
            assert_eq!(a.cmd_id, "2");
            assert_eq!(a.code, AlertCode::ClientInitiatedMgmt);
        }
        other => panic!("{}", other.name()),
    }
    let login = first_item(&m.body.commands[1]);
    // Meta Type without the metinf namespace, next to an unknown Meta child that is ignored.
    assert_eq!(login.meta_type(), Some(codes::ALERT_TYPE_LOGIN_STATUS));
    assert_eq!(login.data_str(), Some("others"));
    assert!(m.body.is_final, "<Final></Final> is Final too");
}

#[test]
fn f8_package1_with_unenroll_alert_and_devid_upper_case() {
    let m = parse_ok(&testdata("f8-unenroll-package1.xml"));
    let unenroll = match &m.body.commands[1] {
        Command::Alert(a) => a,
        other => panic!("{}", other.name()),
    };
    assert_eq!(unenroll.code, AlertCode::GenericAlert);
    assert_eq!(
        unenroll.items[0].meta_type(),
        Some(codes::ALERT_TYPE_UNENROLL_USER_REQUEST)
    );
    assert_eq!(unenroll.items[0].data_str(), Some("1"));
    // `./DevInfo/DevID` (Microsoft's other spelling) is still the device ID.
    assert_eq!(m.device_id(), Some("DEV-0042"));
}

#[test]
fn f9_exec_unenroll_and_cdata_address_list() {
    let m = parse_ok(&testdata("f9-exec-unenroll.xml"));
    let list = first_item(&m.body.commands[0]);
    assert_eq!(
        list.data,
        Some(Data::Text(
            "<list><entry>https://a.example.test/mdm</entry><entry>https://b.example.test/mdm</entry></list>"
                .into()
        ))
    );
    let exec = match &m.body.commands[1] {
        Command::Exec(e) => e,
        other => panic!("{}", other.name()),
    };
    assert_eq!(
        exec.items[0].target.as_ref().unwrap().as_str(),
        "./Vendor/MSFT/DMClient/Provider/ExampleMDM/Unenroll"
    );
    assert_eq!(exec.items[0].data_str(), Some("ExampleMDM"));
    assert_eq!(exec.items[0].meta_type(), Some("text/plain"));
}

#[test]
fn f11_client_results_without_namespace_and_with_msft_prefix_on_body() {
    let m = parse_ok(&testdata("f11-client-results.xml"));
    let get_status = match &m.body.commands[1] {
        Command::Status(s) => s,
        other => panic!("{}", other.name()),
    };
    assert_eq!(get_status.target_refs, ["./DevDetail/SwV"]);
    let swv = first_item(&m.body.commands[2]);
    assert_eq!(swv.source.as_ref().unwrap().as_str(), "./DevDetail/SwV");
    assert_eq!(swv.data_str(), Some("10.0.19045.4170"));
    match &m.body.commands[3] {
        Command::Results(r) => {
            assert_eq!(r.meta.as_ref().unwrap().format.as_deref(), Some("int"));
            assert_eq!(r.cmd_ref, "3");
            assert_eq!(r.items[0].data_str(), Some("1"));
        }
        other => panic!("{}", other.name()),
    }
}

#[test]
fn f12_status_with_chal_and_next_nonce() {
    let m = parse_ok(&testdata("f12-status-chal.xml"));
    let s = match &m.body.commands[0] {
        Command::Status(s) => s,
        other => panic!("{}", other.name()),
    };
    assert_eq!(s.code, StatusCode::InvalidCredentials);
    let chal = s.chal.as_ref().unwrap();
    assert_eq!(chal.meta.r#type.as_deref(), Some("syncml:auth-md5"));
    assert_eq!(chal.meta.format.as_deref(), Some("b64"));
    assert_eq!(
        chal.meta.next_nonce.as_deref(),
        Some("bm9uY2UtZm9yLXRlc3Q=")
    );
    // And we write it back in the order the DTD wants: Chal before Data.
    let out = write(&m);
    let chal_at = out.find("<Chal>").unwrap();
    let data_at = out[chal_at..].find("<Data>401</Data>").unwrap();
    assert!(data_at > 0);
    assert_eq!(parse_ok(out.as_bytes()), m);
}

#[test]
fn f18_atomic_with_policy_replace_and_autopilot_reset_exec() {
    let m = parse_ok(&testdata("f18-atomic-autopilot-reset.xml"));
    let atomic = match &m.body.commands[1] {
        Command::Atomic(a) => a,
        other => panic!("{}", other.name()),
    };
    assert_eq!(atomic.cmd_id, "2");
    assert_eq!(atomic.commands.len(), 2);
    let policy = first_item(&atomic.commands[0]);
    assert_eq!(policy.format(), Some("int"));
    assert_eq!(policy.data_str(), Some("0"));
    match &atomic.commands[1] {
        Command::Exec(e) => {
            assert_eq!(
                e.items[0].target.as_ref().unwrap().as_str(),
                "./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/doAutomaticRedeployment"
            );
            assert_eq!(e.items[0].data, None);
        }
        other => panic!("{}", other.name()),
    }
    assert_eq!(m.all_commands().len(), 4);

    let reply = parse_ok(&testdata("f18-device-reply-405.xml"));
    let codes: Vec<(&str, StatusCode)> = reply
        .body
        .commands
        .iter()
        .map(|c| match c {
            Command::Status(s) => (s.cmd.as_str(), s.code),
            other => panic!("{}", other.name()),
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("SyncHdr", StatusCode::Ok),
            ("Atomic", StatusCode::AtomicFailed),
            ("Replace", StatusCode::AtomicRollBackOk),
            ("Exec", StatusCode::CommandNotAllowed),
        ]
    );
}

#[test]
fn multi_message_package_without_final_and_next_message_alert() {
    let m = parse_ok(&testdata("multi-message-no-final.xml"));
    assert!(!m.body.is_final, "no <Final/>: more messages follow");
    let chunk = first_item(&m.body.commands[0]);
    assert!(chunk.more_data);
    assert_eq!(chunk.meta.as_ref().unwrap().size.as_deref(), Some("20480"));

    let ask = parse_ok(&testdata("next-message-alert.xml"));
    match &ask.body.commands[1] {
        Command::Alert(a) => assert_eq!(a.code, AlertCode::NextMessage),
        other => panic!("{}", other.name()),
    }
}

#[test]
fn xml_data_is_kept_byte_for_byte_and_text_is_not_trimmed() {
    let bytes = testdata("xml-data.xml");
    let m = parse_ok(&bytes);
    let results = match &m.body.commands[0] {
        Command::Results(r) => r,
        other => panic!("{}", other.name()),
    };
    let expected_xml = "<DeviceManageability Version=\"com.microsoft/1.1/MDM/DeviceManageability\">\n  <Capabilities><CSPVersions>&lt;csp name=\"RemoteWipe\" version=\"1.1\"/&gt;</CSPVersions></Capabilities>\n</DeviceManageability>";
    assert_eq!(results.items[0].data, Some(Data::Xml(expected_xml.into())));
    assert_eq!(
        results.items[1].data,
        Some(Data::Text("  A&B <lab> PC & more  ".into()))
    );
    // Written back, the XML is raw and the text escaped; both survive.
    let out = write(&m);
    assert!(out.contains(&format!("<Data>{expected_xml}</Data>")));
    assert!(out.contains("<Data>  A&amp;B &lt;lab&gt; PC &amp; more  </Data>"));
    assert_eq!(parse_ok(out.as_bytes()), m);
}

#[test]
fn every_testdata_message_round_trips() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "xml") {
            let m = parse_ok(&std::fs::read(&path).unwrap());
            assert_eq!(parse_ok(write(&m).as_bytes()), m, "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 10);
}

#[test]
fn byte_order_mark_prefixes_and_unknown_non_command_elements_are_tolerated() {
    let xml = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><s:SyncML xmlns:s=\"SYNCML:SYNCML1.2\"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID><NoResp/><Target><LocURI>https://mdm.example.test/x</LocURI></Target><Source><LocURI>DEV</LocURI></Source></SyncHdr><SyncBody><!-- a comment --><Replace><CmdID>2</CmdID><Item><SourceParent><LocURI>./x</LocURI></SourceParent><Target><LocURI>./Vendor/MSFT/A</LocURI></Target><Data>1</Data></Item></Replace><Final/></SyncBody></s:SyncML>";
    let m = parse_ok(xml.as_bytes());
    match &m.body.commands[0] {
        Command::Replace(r) => {
            assert_eq!(
                r.items[0].target.as_ref().unwrap().as_str(),
                "./Vendor/MSFT/A"
            );
            assert_eq!(r.items[0].data_str(), Some("1"));
        }
        other => panic!("{}", other.name()),
    }
}
