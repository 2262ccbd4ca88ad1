//! Shared fixtures: a fixed clock, an enrolled PC with something of every kind, command builders.

use device::csp::{self, target_item, CmdIdAllocator};
use device::state::*;
use device::DeviceProfile;
use syncml::{Command, Container, Item, ItemCommand};
use time::macros::datetime;
use time::OffsetDateTime;

pub const RESET_NODE: &str =
    "./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/doAutomaticRedeployment";
pub const STATUS_NODE: &str = "./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/Status";
pub const LAST_ERROR_NODE: &str = "./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/LastError";
pub const POLICY_NODE: &str =
    "./Device/Vendor/MSFT/Policy/Config/CredentialProviders/DisableAutomaticReDeploymentCredentials";

pub fn t0() -> OffsetDateTime {
    datetime!(2025-03-03 09:00 UTC)
}

/// An Entra-joined, MDM-enrolled PC with user data, changed settings, an MDM app, SCEP and
/// user-imported certificates, and a signed-in primary user.
pub fn device_with(profile: DeviceProfile) -> DeviceState {
    let mut s = profile.build_seeded("pc-0001", 7, t0());
    if s.entra_join.kind != JoinType::None {
        s.record_enrollment(
            MdmEnrollment {
                provider_id: "Redeploy".into(),
                server_url: "https://mdm.example.test/ManagementServer/MDM.svc".into(),
                client_cert_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
                    .into(),
                client_key_pem: "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
                    .into(),
                thumbprint: "0123456789ABCDEF0123456789ABCDEF01234567".into(),
                enrollment_type: EnrollmentType::Device,
                upn: s.primary_user.clone(),
                ent_dm_id: Some("ent-dm-1".into()),
                poll: PollSchedule::default(),
                first_sync: FirstSyncStatus::default(),
                enrolled: true,
                enrolled_at: t0(),
                root_cert_pem: String::new(),
                renewal: None,
            },
            t0(),
        );
    }
    s.apps.push(App {
        name: "Company Portal".into(),
        version: "11.2.1".into(),
        origin: AppOrigin::Mdm,
    });
    // Make sure something was changed, whatever the seed chose.
    for setting in s.device_settings.values_mut() {
        setting.current = format!("{}-changed", setting.original);
    }
    s.region.current = "Japan".into();
    s.language.current = "ja-JP".into();
    s.keyboard.current = "00000411".into();
    if let Some(user) = s.primary_user.clone() {
        s.signed_in_user = Some(user);
    }
    s
}

pub fn device() -> DeviceState {
    device_with(DeviceProfile {
        users: 2,
        apps: 3,
        ..DeviceProfile::default()
    })
}

pub fn item_cmd(id: &str, items: Vec<Item>) -> ItemCommand {
    ItemCommand {
        cmd_id: id.into(),
        no_resp: false,
        meta: None,
        items,
    }
}

pub fn get(id: &str, uris: &[&str]) -> Command {
    Command::Get(item_cmd(
        id,
        uris.iter()
            .map(|u| target_item(u, None, None).unwrap())
            .collect(),
    ))
}

pub fn exec(id: &str, uri: &str) -> Command {
    Command::Exec(item_cmd(id, vec![target_item(uri, None, None).unwrap()]))
}

pub fn replace(id: &str, uri: &str, format: &str, data: &str) -> Command {
    Command::Replace(item_cmd(
        id,
        vec![target_item(uri, Some(format), Some(data)).unwrap()],
    ))
}

pub fn add(id: &str, uri: &str, format: &str, data: &str) -> Command {
    Command::Add(item_cmd(
        id,
        vec![target_item(uri, Some(format), Some(data)).unwrap()],
    ))
}

pub fn delete(id: &str, uri: &str) -> Command {
    Command::Delete(item_cmd(id, vec![target_item(uri, None, None).unwrap()]))
}

pub fn atomic(id: &str, commands: Vec<Command>) -> Command {
    Command::Atomic(Container {
        cmd_id: id.into(),
        no_resp: false,
        meta: None,
        commands,
    })
}

pub fn sequence(id: &str, commands: Vec<Command>) -> Command {
    Command::Sequence(Container {
        cmd_id: id.into(),
        no_resp: false,
        meta: None,
        commands,
    })
}

/// Runs one server command as message 1 and returns the device's answer.
pub fn run(state: &mut DeviceState, cmd: &Command) -> Vec<Command> {
    csp::execute(state, cmd, "1", &mut CmdIdAllocator::new(1), t0())
}

/// The status code the device returned for the server command `cmd_ref`.
pub fn status_of(out: &[Command], cmd_ref: &str) -> u16 {
    let codes: Vec<u16> = out
        .iter()
        .filter_map(|c| match c {
            Command::Status(s) if s.cmd_ref == cmd_ref => Some(s.code.as_u16()),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes.len(),
        1,
        "one Status for CmdRef {cmd_ref} in {out:#?}"
    );
    codes[0]
}

/// The single status code of a one-command answer.
pub fn code(state: &mut DeviceState, cmd: Command) -> u16 {
    let out = run(state, &cmd);
    status_of(&out, cmd.cmd_id())
}

/// Gets one node: `(status, Some((format, data)))`.
pub fn get_one(state: &mut DeviceState, uri: &str) -> (u16, Option<(String, String)>) {
    let out = run(state, &get("g", &[uri]));
    let status = status_of(&out, "g");
    let item = out.iter().find_map(|c| match c {
        Command::Results(r) => r.items.first().cloned(),
        _ => None,
    });
    (
        status,
        item.map(|i| {
            assert_eq!(
                i.source.as_ref().unwrap().as_str(),
                uri,
                "Results Source echoes the URI"
            );
            (
                i.format().unwrap().to_string(),
                i.data_str().unwrap().to_string(),
            )
        }),
    )
}

pub fn get_data(state: &mut DeviceState, uri: &str) -> String {
    let (status, v) = get_one(state, uri);
    assert_eq!(status, 200, "Get {uri}");
    v.unwrap().1
}

/// The state with what a refused or rolled-back reset may change blanked out.
pub fn without_status_and_events(s: &DeviceState) -> DeviceState {
    let mut s = s.clone();
    s.events.clear();
    s.autopilot_reset = AutopilotResetNodes::default();
    s
}

pub fn has_event(s: &DeviceState, kind: EventKind) -> bool {
    s.events.iter().any(|e| e.kind == kind)
}
