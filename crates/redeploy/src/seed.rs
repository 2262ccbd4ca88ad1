//! `redeploy seed`: writes many enrolled, ready PCs (device, enrollment, inventory) straight into
//! a database through the store's bulk load, and optionally a static group holding them, so the
//! server can be measured with a fleet of 100,000 PCs (issue #16, docs/benchmarks.md
//! "100,000 PCs") without enrolling each one over HTTPS. A tool, not a way to add real PCs.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use redeploy_core::device::{Device, EnrollmentType, JoinEvidence, JoinType};
use redeploy_core::enrollment::Enrollment;
use redeploy_core::group::Group;
use redeploy_core::ids::{DeviceId, EnrollmentId, GroupId};
use redeploy_core::inventory::InventoryValue;
use redeploy_core::store::SeedDevice;
use redeploy_core::Store;
use time::{Duration, OffsetDateTime};

use crate::cli::SeedArgs;

/// Devices per bulk load (one transaction each): large enough that statements dominate, small
/// enough that the tool's memory stays small.
const PER_LOAD: usize = 10_000;

/// The inventory every seeded PC reports (what a first session's Gets store).
const INVENTORY: [(&str, &str); 6] = [
    ("./DevDetail/SwV", "10.0.22631.4037"),
    (
        "./DevDetail/Ext/Microsoft/OSPlatform",
        "Windows 11 Enterprise",
    ),
    ("./DevInfo/Man", "Contoso"),
    ("./DevInfo/Mod", "Surface Laptop 5"),
    ("./DevDetail/Ext/Microsoft/TotalRAM", "16384"),
    (
        "./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/Status",
        "1",
    ),
];

/// PC number `n` of a seed named `prefix`, enrolled a while before `now` and seen recently, so
/// that preflight lets an Autopilot Reset through.
pub fn seed_device(prefix: &str, n: usize, now: OffsetDateTime) -> SeedDevice {
    let id = DeviceId::generate();
    let name = format!("{prefix}-{n:06}");
    let enrolled_at = now - Duration::days(30) + Duration::seconds(n as i64 % 86_400);
    let thumbprint = format!("{:0>40}", id.to_string().replace('-', ""));
    let mut d = Device::new(id, &name, enrolled_at);
    d.hw_dev_id = Some(format!("hw-{id}"));
    d.mdm_device_id = Some(format!("mdm-{id}"));
    d.serial = Some(format!("{}{n:08}", prefix.to_uppercase()));
    d.manufacturer = Some(INVENTORY[2].1.into());
    d.model = Some(INVENTORY[3].1.into());
    d.os_version = Some(INVENTORY[0].1.into());
    d.os_platform = Some(INVENTORY[1].1.into());
    d.join_type = JoinType::EntraJoined;
    d.join_evidence = JoinEvidence::EntraToken;
    d.enrollment_type = Some(EnrollmentType::Device);
    d.aad_device_id = Some(DeviceId::generate().to_string());
    d.dns_computer_name = Some(name.to_uppercase());
    d.total_ram_mb = Some(16_384);
    d.last_seen = Some(now - Duration::minutes((n % 1_440) as i64));
    d.cert_thumbprint = Some(thumbprint.clone());
    d.cert_not_after = Some(now + Duration::days(365));
    d.autopilot_status = Some(1);
    d.winre_enabled = Some(true);
    d.winre_checked_at = Some(now - Duration::hours(1));
    let enrollment = Enrollment {
        id: EnrollmentId::generate(),
        device: id,
        enrollment_type: EnrollmentType::Device,
        upn: Some(format!("user{n}@contoso.example")),
        auth_method: "Federated".into(),
        context: vec![("DeviceType".into(), "CIMClient_Windows".into())],
        raw_request: Vec::new(),
        cert_thumbprint: thumbprint,
        cert_serial: format!("{n:x}"),
        cert_not_after: now + Duration::days(365),
        created_at: enrolled_at,
        replaced_by: None,
    };
    let inventory = INVENTORY
        .iter()
        .map(|(uri, value)| InventoryValue {
            device: id,
            uri: (*uri).into(),
            value: (*value).into(),
            format: Some("chr".into()),
            at: enrolled_at,
        })
        .collect();
    SeedDevice {
        device: d,
        enrollment,
        inventory,
    }
}

/// Seeds `count` PCs named `prefix-NNNNNN` into `store` and, with `group`, a static group of
/// them; returns the devices' ids.
pub async fn seed(
    store: &Arc<dyn Store>,
    count: usize,
    prefix: &str,
    group: Option<&str>,
    now: OffsetDateTime,
) -> anyhow::Result<Vec<DeviceId>> {
    let mut ids = Vec::with_capacity(count);
    let mut start = 0;
    while start < count {
        let end = (start + PER_LOAD).min(count);
        let load: Vec<SeedDevice> = (start..end).map(|n| seed_device(prefix, n, now)).collect();
        store.bulk_load(&load).await.context("bulk load")?;
        ids.extend(load.iter().map(|s| s.device.id));
        start = end;
    }
    if let Some(name) = group {
        let group = Group::new_static(GroupId::generate(), name, ids.clone(), now);
        store
            .create_group(&group)
            .await
            .context("creating the group")?;
    }
    store
        .refresh_statistics()
        .await
        .context("gathering the planner's statistics")?;
    Ok(ids)
}

pub async fn run(args: SeedArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| "redeploy-data".into());
    std::fs::create_dir_all(&data_dir).context("creating the data folder")?;
    let store = server::bootstrap::open_store(
        args.database.as_deref(),
        &data_dir,
        std::time::Duration::from_secs(30),
    )
    .await
    .context("opening the database")?;
    let started = Instant::now();
    seed(
        &store,
        args.devices,
        &args.prefix,
        args.group.as_deref(),
        OffsetDateTime::now_utc(),
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    match &args.group {
        Some(g) => println!("seeded {} PCs and group {g:?} in {secs:.1} s", args.devices),
        None => println!("seeded {} PCs in {secs:.1} s", args.devices),
    }
    Ok(ExitCode::SUCCESS)
}
