//! The CSP tree: node values and formats, verbs allowed per node, status codes, targeting,
//! Atomic and Sequence rules (ITPRO oma-dm-protocol-support.md, docs/protocol.md §3.4, §3.6, §4).

use device::csp::CmdIdAllocator;
use device::state::*;
use device::{reset, DeviceProfile};
use syncml::Command;

use crate::common::*;

#[test]
fn devinfo_answers_gets_with_and_without_the_device_prefix() {
    let mut s = device();
    let man = s.hardware.manufacturer.clone();
    assert_eq!(
        get_one(&mut s, "./DevInfo/Man"),
        (200, Some(("chr".into(), man.clone())))
    );
    assert_eq!(get_data(&mut s, "./Device/DevInfo/Man"), man);
    assert_eq!(get_data(&mut s, "./DevInfo/DevId"), s.dev_id);
    assert_eq!(get_data(&mut s, "./DevInfo/Mod"), s.hardware.model);
    assert_eq!(get_data(&mut s, "./DevInfo/DmV"), "1.3");
    assert_eq!(get_data(&mut s, "./DevInfo/Lang"), s.language.current);
    assert_eq!(
        get_data(&mut s, "./device/vendor/MSFT/DMClient/HWDevID"),
        s.hardware.hw_dev_id
    );
}

#[test]
fn devdetail_and_devicestatus_report_the_pc() {
    let mut s = device_with(DeviceProfile {
        os_build: Some(22631),
        edition: Some(Edition::Enterprise),
        ..DeviceProfile::default()
    });
    assert_eq!(get_data(&mut s, "./DevDetail/SwV"), "10.0.22631.4460");
    assert_eq!(
        get_data(&mut s, "./DevDetail/Ext/Microsoft/OSPlatform"),
        "Windows 11 Enterprise"
    );
    assert_eq!(
        get_data(&mut s, "./DevDetail/Ext/Microsoft/SMBIOSSerialNumber"),
        s.hardware.serial
    );
    assert_eq!(
        get_data(&mut s, "./DevDetail/Ext/Microsoft/DNSComputerName"),
        s.computer_name
    );
    assert_eq!(
        get_data(&mut s, "./DevDetail/Ext/Microsoft/LocalTime"),
        "2025-03-03T09:00:00Z"
    );
    assert_eq!(
        get_one(&mut s, "./DevDetail/Ext/Microsoft/TotalRAM")
            .1
            .unwrap()
            .0,
        "int"
    );
    assert_eq!(get_data(&mut s, "./DevDetail/OEM"), s.hardware.manufacturer);
    assert_eq!(
        get_data(&mut s, "./Vendor/MSFT/DeviceStatus/DomainName"),
        "",
        "empty when not domain joined"
    );
}

#[test]
fn interior_nodes_list_their_children() {
    let mut s = device();
    assert_eq!(
        get_one(&mut s, "./DevInfo"),
        (200, Some(("node".into(), "DevId/Man/Mod/DmV/Lang".into())))
    );
    assert_eq!(
        get_data(&mut s, "./Vendor/MSFT/RemoteWipe/AutomaticRedeployment"),
        "doAutomaticRedeployment/LastError/Status"
    );
    assert_eq!(
        get_data(&mut s, "./Vendor/MSFT/DMClient/Provider"),
        "Redeploy"
    );
}

#[test]
fn dmclient_provider_nodes() {
    let mut s = device();
    let p = "./Vendor/MSFT/DMClient/Provider/Redeploy";
    assert_eq!(get_data(&mut s, &format!("{p}/EnrollmentType")), "Device");
    assert_eq!(
        get_data(&mut s, &format!("{p}/AADDeviceID")),
        s.entra_join.device_id.clone().unwrap()
    );
    assert_eq!(get_data(&mut s, &format!("{p}/EntDMID")), "ent-dm-1");
    assert_eq!(
        get_data(&mut s, &format!("{p}/Poll/NumberOfFirstRetries")),
        "10"
    );
    assert_eq!(
        code(
            &mut s,
            replace(
                "1",
                &format!("{p}/Poll/IntervalForRemainingScheduledRetries"),
                "int",
                "60"
            )
        ),
        200
    );
    assert_eq!(
        s.mdm_enrollment
            .as_ref()
            .unwrap()
            .poll
            .interval_for_remaining_scheduled_retries,
        60
    );
    assert_eq!(
        code(
            &mut s,
            replace("2", &format!("{p}/Poll/PollOnLogin"), "bool", "true")
        ),
        200
    );
    assert_eq!(
        code(
            &mut s,
            replace("3", &format!("{p}/Poll/PollOnLogin"), "int", "1")
        ),
        415
    );
    assert_eq!(
        code(
            &mut s,
            replace("4", &format!("{p}/UPN"), "chr", "new@contoso.edu")
        ),
        200
    );
    assert_eq!(get_data(&mut s, &format!("{p}/UPN")), "new@contoso.edu");
    assert_eq!(
        code(
            &mut s,
            replace(
                "5",
                &format!("{p}/FirstSyncStatus/IsSyncDone"),
                "bool",
                "true"
            )
        ),
        200
    );
    assert_eq!(
        get_one(
            &mut s,
            "./Vendor/MSFT/DMClient/Provider/Other/EnrollmentType"
        )
        .0,
        404
    );
}

#[test]
fn status_codes_for_unknown_nodes_and_forbidden_verbs() {
    let mut s = device();
    assert_eq!(get_one(&mut s, "./Vendor/MSFT/NoSuchCSP/Thing").0, 404);
    assert_eq!(get_one(&mut s, "./DevInfo/Nope").0, 404);
    assert_eq!(
        code(&mut s, replace("1", "./DevInfo/Man", "chr", "Evil Corp")),
        405
    );
    assert_eq!(code(&mut s, exec("2", STATUS_NODE)), 405);
    assert_eq!(get_one(&mut s, "./Vendor/MSFT/RemoteWipe/doWipe").0, 405);
    assert_eq!(code(&mut s, replace("3", STATUS_NODE, "int", "1")), 405);
    assert_eq!(code(&mut s, delete("4", "./DevInfo/DevId")), 405);
    assert_eq!(s.autopilot_reset.status, 0, "nothing ran");
    assert_eq!(s.pending, None);
}

#[test]
fn local_reset_policy_get_add_replace_delete() {
    let mut s = device();
    assert_eq!(get_one(&mut s, POLICY_NODE).0, 404, "not configured");
    let result =
        "./Vendor/MSFT/Policy/Result/CredentialProviders/DisableAutomaticReDeploymentCredentials";
    assert_eq!(
        get_one(&mut s, result),
        (200, Some(("int".into(), "1".into()))),
        "default 1"
    );
    assert_eq!(
        code(&mut s, replace("1", POLICY_NODE, "chr", "0")),
        415,
        "chr for an int node"
    );
    assert_eq!(
        code(&mut s, replace("2", POLICY_NODE, "int", "zero")),
        415,
        "non-integer data"
    );
    assert_eq!(
        code(&mut s, replace("3", POLICY_NODE, "int", "2")),
        500,
        "out of range"
    );
    assert_eq!(s.local_reset_policy(), 1);
    assert_eq!(code(&mut s, add("4", POLICY_NODE, "int", "0")), 200);
    assert_eq!(
        code(&mut s, add("5", POLICY_NODE, "int", "0")),
        418,
        "Add of an existing node"
    );
    assert_eq!(
        get_one(&mut s, POLICY_NODE),
        (200, Some(("int".into(), "0".into())))
    );
    assert_eq!(s.local_reset_policy(), 0);
    assert_eq!(code(&mut s, replace("6", "./Vendor/MSFT/Policy/Config/CredentialProviders/DisableAutomaticReDeploymentCredentials", "int", "1")), 200);
    assert_eq!(s.local_reset_policy(), 1);
    assert_eq!(code(&mut s, delete("7", POLICY_NODE)), 200);
    assert_eq!(code(&mut s, delete("8", POLICY_NODE)), 404);
    assert_eq!(get_data(&mut s, result), "1");
    assert!(has_event(&s, EventKind::PolicyChanged));
}

#[test]
fn generic_policies_are_stored_by_area_and_name() {
    let mut s = device();
    let node = "./Device/Vendor/MSFT/Policy/Config/Update/ActiveHoursStart";
    assert_eq!(code(&mut s, replace("1", node, "int", "8")), 200);
    assert_eq!(
        get_one(&mut s, node),
        (200, Some(("int".into(), "8".into())))
    );
    assert_eq!(
        get_data(&mut s, "./Vendor/MSFT/Policy/Config/Update"),
        "ActiveHoursStart"
    );
    assert_eq!(
        get_data(
            &mut s,
            "./Vendor/MSFT/Policy/Result/Update/ActiveHoursStart"
        ),
        "8"
    );
    assert_eq!(code(&mut s, replace("2", node, "int", "eight")), 415);
    assert_eq!(code(&mut s, replace("3", node, "weird", "8")), 415);
    assert_eq!(
        get_one(&mut s, "./Vendor/MSFT/Policy/Result/Nope/Nope").0,
        404
    );
}

#[test]
fn user_paths_exist_only_while_a_user_is_signed_in() {
    let mut s = device();
    let node = "./User/Vendor/MSFT/Policy/Config/Start/HideSleep";
    s.signed_in_user = None;
    assert_eq!(get_one(&mut s, "./User/Vendor/MSFT/Policy").0, 404);
    assert_eq!(code(&mut s, add("1", node, "int", "1")), 404);
    let user = s.primary_user.clone().unwrap();
    s.signed_in_user = Some(user.clone());
    assert_eq!(code(&mut s, add("2", node, "int", "1")), 200);
    assert_eq!(get_data(&mut s, node), "1");
    let profile = s.profiles.iter().find(|p| p.user == user).unwrap();
    assert_eq!(profile.policies.get("Start/HideSleep").unwrap().data, "1");
    assert!(
        !s.policies.contains_key("Start/HideSleep"),
        "not a device policy"
    );
}

#[test]
fn atomic_with_a_get_fails_whole() {
    let mut s = device();
    let before = s.clone();
    let out = run(
        &mut s,
        &atomic(
            "1",
            vec![
                replace("2", POLICY_NODE, "int", "0"),
                get("3", &["./DevInfo/Man"]),
            ],
        ),
    );
    assert_eq!(status_of(&out, "1"), 507);
    assert_eq!(status_of(&out, "2"), 216);
    assert_eq!(status_of(&out, "3"), 500);
    assert!(!out.iter().any(|c| matches!(c, Command::Results(_))));
    assert_eq!(s, before);
}

#[test]
fn nested_atomic_inner_500_parent_507() {
    let mut s = device();
    let out = run(
        &mut s,
        &atomic(
            "1",
            vec![atomic("2", vec![replace("3", POLICY_NODE, "int", "0")])],
        ),
    );
    assert_eq!(status_of(&out, "1"), 507);
    assert_eq!(status_of(&out, "2"), 500);
    assert_eq!(s.local_reset_policy(), 1);
}

#[test]
fn atomic_rolls_back_when_one_command_fails() {
    let mut s = device();
    let node = "./Vendor/MSFT/Policy/Config/Update/ActiveHoursStart";
    let before = s.clone();
    let out = run(
        &mut s,
        &atomic(
            "1",
            vec![
                replace("2", node, "int", "8"),
                replace("3", POLICY_NODE, "chr", "0"),
            ],
        ),
    );
    assert_eq!(status_of(&out, "1"), 507);
    assert_eq!(status_of(&out, "2"), 216, "rolled back");
    assert_eq!(status_of(&out, "3"), 415);
    assert_eq!(s.policies, before.policies);

    let out = run(
        &mut s,
        &atomic(
            "4",
            vec![add("5", node, "int", "8"), replace("6", node, "int", "9")],
        ),
    );
    assert_eq!(
        status_of(&out, "4"),
        507,
        "Add then Replace of one node in an Atomic"
    );
    assert_eq!(status_of(&out, "6"), 500);
    assert!(!s.policies.contains_key("Update/ActiveHoursStart"));
}

#[test]
fn atomic_sequence_replace_and_exec_schedules_the_reset() {
    // The 3P pattern of docs/protocol.md §1.5: Atomic{Sequence{Replace policy 0; Exec reset}}.
    let mut s = device();
    let out = run(
        &mut s,
        &atomic(
            "1",
            vec![sequence(
                "2",
                vec![replace("3", POLICY_NODE, "int", "0"), exec("4", RESET_NODE)],
            )],
        ),
    );
    for id in ["1", "2", "3", "4"] {
        assert_eq!(status_of(&out, id), 200, "{id}");
    }
    assert_eq!(s.local_reset_policy(), 0);
    assert_eq!(s.autopilot_reset.status, 10);
}

#[test]
fn sequence_runs_in_order_and_returns_results() {
    let mut s = device();
    let out = run(
        &mut s,
        &sequence(
            "1",
            vec![
                replace("2", POLICY_NODE, "int", "0"),
                get("3", &[POLICY_NODE, "./DevInfo/DmV"]),
            ],
        ),
    );
    assert_eq!(status_of(&out, "1"), 200);
    assert_eq!(status_of(&out, "3"), 200);
    let results = out
        .iter()
        .find_map(|c| match c {
            Command::Results(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(results.cmd_ref, "3");
    assert_eq!(results.msg_ref, "1");
    let data: Vec<&str> = results
        .items
        .iter()
        .map(|i| i.data_str().unwrap())
        .collect();
    assert_eq!(data, ["0", "1.3"]);
}

#[test]
fn cmd_ids_come_from_the_callers_allocator() {
    let mut s = device();
    let mut ids = CmdIdAllocator::new(7);
    let out = device::csp::execute(&mut s, &get("42", &["./DevInfo/Man"]), "3", &mut ids, t0());
    let (Command::Status(st), Command::Results(r)) = (&out[0], &out[1]) else {
        panic!("{out:?}")
    };
    assert_eq!(
        (
            st.cmd_id.as_str(),
            st.msg_ref.as_str(),
            st.cmd_ref.as_str(),
            st.cmd.as_str()
        ),
        ("7", "3", "42", "Get")
    );
    assert_eq!((r.cmd_id.as_str(), r.cmd_ref.as_str()), ("8", "42"));
    assert_eq!(ids.next_id(), "9");
    let out = run(&mut s, &get("", &["./DevInfo/Man"]));
    assert_eq!(status_of(&out, ""), 400, "missing CmdID");
}

#[test]
fn reboot_now_goes_offline_and_comes_back_unchanged() {
    let mut s = device();
    let before = s.clone();
    assert_eq!(
        code(&mut s, exec("1", "./Device/Vendor/MSFT/Reboot/RebootNow")),
        200
    );
    assert!(matches!(
        reset::step(&mut s, t0()),
        Some(reset::Transition::WentOffline(Operation::Reboot))
    ));
    assert!(!s.online);
    reset::run_to_completion(&mut s);
    assert!(s.online);
    assert!(has_event(&s, EventKind::RebootCompleted));
    let mut expected = before.clone();
    expected.signed_in_user = None;
    expected.events = s.events.clone();
    assert_eq!(s, expected);
    assert_eq!(get_one(&mut s, "./Vendor/MSFT/Reboot/RebootNow").0, 405);
}

#[test]
fn get_value_reads_a_node_without_a_command() {
    let s = device();
    assert_eq!(
        device::csp::get_value(&s, "./DevInfo/DevId", t0()),
        Some(("chr".to_string(), s.dev_id.clone()))
    );
    assert_eq!(device::csp::get_value(&s, "./DevInfo/Nope", t0()), None);
}

#[test]
fn bitlocker_device_encryption_status_reports_winre_as_bit_12() {
    const NODE: &str = "./Device/Vendor/MSFT/BitLocker/Status/DeviceEncryptionStatus";
    const SHORT: &str = "./Vendor/MSFT/BitLocker/Status/DeviceEncryptionStatus";
    let mut on = device();
    assert!(on.winre_enabled);
    assert_eq!(
        get_one(&mut on, NODE),
        (200, Some(("int".into(), "0".into())))
    );
    assert_eq!(get_data(&mut on, SHORT), "0");

    let mut off = device_with(DeviceProfile {
        winre_enabled: false,
        ..DeviceProfile::default()
    });
    // Bit 12 of the mask, not the value 12 (ITPRO bitlocker-csp.md).
    assert_eq!(
        get_one(&mut off, NODE),
        (200, Some(("int".into(), "4096".into())))
    );
    assert_eq!(get_data(&mut off, SHORT), "4096");
    assert_eq!(device::csp::ENCRYPTION_STATUS_WINRE_NOT_CONFIGURED, 1 << 12);
    assert_eq!(
        off.to_show_json()["bitlocker"]["device_encryption_status"],
        4096
    );

    // Interior nodes list their children, in both forms.
    for prefix in ["./Device/Vendor/MSFT", "./Vendor/MSFT"] {
        assert!(get_data(&mut off, prefix)
            .split('/')
            .any(|c| c == "BitLocker"));
        assert_eq!(
            get_one(&mut off, &format!("{prefix}/BitLocker/Status")),
            (200, Some(("node".into(), "DeviceEncryptionStatus".into())))
        );
        assert_eq!(get_data(&mut off, &format!("{prefix}/BitLocker")), "Status");
    }
    // Get only.
    assert_eq!(code(&mut off, replace("1", NODE, "int", "0")), 405);
    assert_eq!(code(&mut off, exec("2", NODE)), 405);
    assert_eq!(
        get_one(&mut off, "./Vendor/MSFT/BitLocker/Status/Nope").0,
        404
    );

    // Windows 10 1903 and later only.
    let mut old = device_with(DeviceProfile {
        os_build: Some(17763),
        winre_enabled: false,
        ..DeviceProfile::default()
    });
    assert_eq!(get_one(&mut old, NODE).0, 404);
    assert_eq!(get_one(&mut old, "./Vendor/MSFT/BitLocker/Status").0, 404);
    assert_eq!(
        old.to_show_json()["bitlocker"]["device_encryption_status"],
        serde_json::Value::Null
    );
}
