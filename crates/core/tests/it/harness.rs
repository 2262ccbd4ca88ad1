//! Shared fixtures: a fresh SQLite store with one enrolled device, and a scripted device that
//! builds messages and answers our commands.

use std::collections::HashMap;
use std::path::PathBuf;

use redeploy_core::store::CheckInView;
pub use redeploy_core::store::{
    ActionStore, AuditLog, CommandQueue, DeviceStore, EnrollmentStore, InventoryStore,
};
use redeploy_core::{
    Device, DeviceId, Enrollment, EnrollmentId, EnrollmentType, JoinType, SessionConfig,
};
use store_sqlite::SqliteStore;
use syncml::{Command, SyncMl};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// DevId of the Fleet capture (fixture 09).
pub const DEV_ID: &str = "B5B954E81FBCB94EB79BD08BE625F4EE";
pub const SERVER: &str = "https://mdm.example.org/ManagementServer/MDM.svc";
pub const T0: OffsetDateTime = datetime!(2026-05-04 9:00 UTC);

pub struct Env {
    pub store: SqliteStore,
    pub device: DeviceId,
    pub cfg: SessionConfig,
    _dir: tempfile::TempDir,
}

impl Env {
    pub async fn device(&self) -> Device {
        self.store.device(self.device).await.unwrap().unwrap()
    }

    /// Runs one device message (XML text) through the engine at `at`.
    pub async fn send(&self, xml: &str, at: OffsetDateTime) -> SyncMl {
        let msg = syncml::parse(xml.as_bytes()).unwrap();
        redeploy_core::session::handle(&self.store, &self.view().await, &msg, at, &self.cfg)
            .await
            .unwrap()
    }

    /// The check-in's first read of the device, as the server makes it.
    pub async fn view(&self) -> CheckInView {
        let uris = redeploy_core::session::check_in_uris(&self.cfg);
        let uris = [uris[0].as_str(), uris[1].as_str()];
        self.store
            .check_in_view(self.device, &uris)
            .await
            .unwrap()
            .unwrap()
    }

    /// Edits the device row.
    pub async fn edit(&self, f: impl FnOnce(&mut Device)) {
        let mut d = self.device().await;
        f(&mut d);
        self.store.update_device(&d).await.unwrap();
    }
}

/// A fresh store with one enrolled, Entra-joined device whose DevId is [`DEV_ID`]; it was seen
/// one hour before [`T0`] and reports Windows 11 22631.
pub async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(dir.path().join("t.db").to_str().unwrap())
        .await
        .unwrap();
    let at = T0 - Duration::days(10);
    let mut d = Device::new(DeviceId::generate(), "pc-1", at);
    d.mdm_device_id = Some(DEV_ID.into());
    d.hw_dev_id = Some("HW-1".into());
    d.enrollment_type = Some(EnrollmentType::Device);
    d.join_type = JoinType::EntraJoined;
    // Enrolled with a validated Entra device token naming the id the PC reports (`pc_nodes`).
    d.join_evidence = redeploy_core::JoinEvidence::EntraToken;
    d.aad_device_id = Some("aad-1".into());
    d.cert_not_after = Some(at + Duration::days(365));
    let e = Enrollment {
        id: EnrollmentId::generate(),
        device: d.id,
        enrollment_type: EnrollmentType::Device,
        upn: Some("ada@contoso.com".into()),
        auth_method: "Federated".into(),
        context: vec![("EnrollmentType".into(), "Device".into())],
        raw_request: b"<s:Envelope/>".to_vec(),
        cert_thumbprint: "00".repeat(20),
        cert_serial: "01".into(),
        cert_not_after: at + Duration::days(365),
        created_at: at,
        replaced_by: None,
    };
    let out = store.create_enrollment(d, e).await.unwrap();
    let env = Env {
        store,
        device: out.device,
        cfg: SessionConfig {
            server_url: SERVER.into(),
            // The reset watch's read of IsSyncDone would come into every test's messages (it
            // was read at enrollment, below); it has its own tests (session/tests.rs, and end to
            // end in crates/redeploy).
            reset_watch_interval: Duration::days(3650),
            ..SessionConfig::default()
        },
        _dir: dir,
    };
    env.edit(|d| {
        d.os_version = Some("10.0.22631.4037".into());
        d.os_platform = Some("Windows 11 Enterprise".into());
        d.last_seen = Some(T0 - Duration::hours(1));
    })
    .await;
    env.store
        .upsert_inventory(&[redeploy_core::inventory::InventoryValue {
            device: env.device,
            uri: SYNC_DONE.into(),
            value: "true".into(),
            format: Some("bool".into()),
            at,
        }])
        .await
        .unwrap();
    env
}

/// Finds `shared/fixtures/real` above the crate.
pub fn fixtures() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("shared/fixtures/real");
        if candidate.is_dir() {
            return candidate;
        }
        assert!(dir.pop(), "shared/fixtures/real not found above the crate");
    }
}

/// A device message with `body` (commands) and Final unless `last` is false.
pub fn msg(session: &str, msg_id: u32, body: &str, last: bool) -> String {
    format!(
        r#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>{session}</SessionID><MsgID>{msg_id}</MsgID><Target><LocURI>{SERVER}</LocURI></Target><Source><LocURI>{DEV_ID}</LocURI></Source></SyncHdr><SyncBody>{body}{}</SyncBody></SyncML>"#,
        if last { "<Final/>" } else { "" }
    )
}

/// Package #1 of a session: Alert 1201 and any extra commands.
pub fn start(session: &str, extra: &str) -> String {
    msg(
        session,
        1,
        &format!("<Alert><CmdID>2</CmdID><Data>1201</Data></Alert>{extra}"),
        true,
    )
}

pub fn alert_1224(cmd_id: u32, ty: &str, data: &str) -> String {
    format!(
        r#"<Alert><CmdID>{cmd_id}</CmdID><Data>1224</Data><Item><Meta><Type xmlns="syncml:metinf">{ty}</Type></Meta><Data>{data}</Data></Item></Alert>"#
    )
}

/// Our commands in a reply: (verb, CmdID, LocURI).
pub fn commands(reply: &SyncMl) -> Vec<(&'static str, String, String)> {
    reply
        .body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Get(i)
            | Command::Exec(i)
            | Command::Replace(i)
            | Command::Add(i)
            | Command::Delete(i) => Some((
                c.name(),
                i.cmd_id.clone(),
                i.items[0].target.as_ref().unwrap().as_str().to_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// [`commands`] without the WinRE read every session starts with (BitLocker
/// `DeviceEncryptionStatus`), for tests about other commands.
pub fn ours(reply: &SyncMl) -> Vec<(&'static str, String, String)> {
    commands(reply)
        .into_iter()
        .filter(|c| c.2 != redeploy_core::command::WINRE_STATUS_URI)
        .collect()
}

/// [`ours`] as (verb, LocURI) pairs.
pub fn verbs_and_uris(reply: &SyncMl) -> Vec<(&'static str, String)> {
    ours(reply).into_iter().map(|c| (c.0, c.2)).collect()
}

/// `FirstSyncStatus/IsSyncDone` of our provider ("Redeploy", the default `SessionConfig`).
pub const SYNC_DONE: &str =
    "./Device/Vendor/MSFT/DMClient/Provider/Redeploy/FirstSyncStatus/IsSyncDone";

/// The scripted device's answer to `reply`: a Status for the header and for every command
/// (`exec_code` for Execs, 200 otherwise, 404 for Gets of unknown nodes) and Results for Gets
/// from `nodes`. `extra` commands are appended; CmdIDs start at 1.
pub fn answer(
    session: &str,
    msg_id: u32,
    reply: &SyncMl,
    nodes: &HashMap<&str, &str>,
    exec_code: u16,
    extra: &str,
) -> String {
    let r = &reply.hdr.msg_id;
    let mut body = format!(
        "<Status><CmdID>1</CmdID><MsgRef>{r}</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>"
    );
    let mut id = 2;
    for (verb, cmd_id, uri) in commands(reply) {
        let value = nodes.get(uri.as_str());
        let code = match verb {
            "Exec" => exec_code,
            "Get" if value.is_none() => 404,
            _ => 200,
        };
        body.push_str(&format!(
            "<Status><CmdID>{id}</CmdID><MsgRef>{r}</MsgRef><CmdRef>{cmd_id}</CmdRef><Cmd>{verb}</Cmd><Data>{code}</Data></Status>"
        ));
        id += 1;
        if let (Some(v), "Get") = (value, verb) {
            body.push_str(&format!(
                r#"<Results><CmdID>{id}</CmdID><MsgRef>{r}</MsgRef><CmdRef>{cmd_id}</CmdRef><Item><Source><LocURI>{uri}</LocURI></Source><Meta><Format xmlns="syncml:metinf">chr</Format></Meta><Data>{v}</Data></Item></Results>"#
            ));
            id += 1;
        }
    }
    body.push_str(&extra.replace("{ID}", &id.to_string()));
    msg(session, msg_id, &body, true)
}

/// Inventory values of a healthy Entra-joined PC.
pub fn pc_nodes() -> HashMap<&'static str, &'static str> {
    HashMap::from([
        ("./DevDetail/SwV", "10.0.22631.4037"),
        (
            "./DevDetail/Ext/Microsoft/OSPlatform",
            "Windows 11 Enterprise",
        ),
        ("./DevDetail/Ext/Microsoft/SMBIOSSerialNumber", "SN-12345"),
        ("./DevDetail/Ext/Microsoft/DNSComputerName", "DESKTOP-ADA"),
        ("./DevDetail/Ext/Microsoft/TotalRAM", "16384"),
        ("./DevDetail/Ext/Microsoft/TotalStorage", "512000"),
        ("./DevInfo/Man", "Contoso"),
        ("./DevInfo/Mod", "Laptop 7"),
        (
            "./Vendor/MSFT/DMClient/Provider/Redeploy/EnrollmentType",
            "Device",
        ),
        (
            "./Vendor/MSFT/DMClient/Provider/Redeploy/AADDeviceID",
            "aad-1",
        ),
        ("./Vendor/MSFT/DMClient/HWDevID", "HW-1"),
        ("./Vendor/MSFT/DeviceStatus/DomainName", ""),
        (
            "./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/Status",
            "0",
        ),
        (
            "./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/LastError",
            "0",
        ),
        (SYNC_DONE, "true"),
        (redeploy_core::command::WINRE_STATUS_URI, "0"),
    ])
}

/// Runs a whole check-in at `at`: package #1, then answers every reply from `nodes` until we
/// end the session. Returns every reply.
pub async fn check_in(
    env: &Env,
    session: &str,
    at: OffsetDateTime,
    nodes: &HashMap<&str, &str>,
) -> Vec<SyncMl> {
    let mut replies = vec![env.send(&start(session, ""), at).await];
    let mut n = 2;
    while !commands(replies.last().unwrap()).is_empty() {
        assert!(n < 50, "session does not end");
        let a = answer(session, n, replies.last().unwrap(), nodes, 200, "");
        replies.push(env.send(&a, at).await);
        n += 1;
    }
    replies
}
