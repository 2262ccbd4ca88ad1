//! Inventory in a device session: the nodes we read (docs/protocol.md §4, §1.9) and how a reported
//! value lands on the device row.

use crate::action;
use crate::command::{
    AUTOPILOT_LAST_ERROR_URI, AUTOPILOT_STATUS_URI, WINRE_NOT_CONFIGURED_BIT, WINRE_STATUS_URI,
};
use crate::device::{Device, EnrollmentType, JoinEvidence, JoinType};

/// The nodes read for inventory (docs/protocol.md §4, §1.9).
pub fn inventory_uris(provider_id: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "./DevDetail/SwV",
        "./DevDetail/Ext/Microsoft/OSPlatform",
        "./DevDetail/Ext/Microsoft/SMBIOSSerialNumber",
        "./DevDetail/Ext/Microsoft/DNSComputerName",
        "./DevDetail/Ext/Microsoft/TotalRAM",
        "./DevDetail/Ext/Microsoft/TotalStorage",
        "./DevInfo/Man",
        "./DevInfo/Mod",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    v.push(format!(
        "./Vendor/MSFT/DMClient/Provider/{provider_id}/EnrollmentType"
    ));
    v.push(format!(
        "./Vendor/MSFT/DMClient/Provider/{provider_id}/AADDeviceID"
    ));
    v.push("./Vendor/MSFT/DMClient/HWDevID".to_owned());
    v.push("./Vendor/MSFT/DeviceStatus/DomainName".to_owned());
    v.push(AUTOPILOT_STATUS_URI.to_owned());
    v.push(AUTOPILOT_LAST_ERROR_URI.to_owned());
    v.push(WINRE_STATUS_URI.to_owned());
    v
}

/// The node whose stored time says when inventory was last read.
pub(crate) const INVENTORY_MARKER: &str = "./DevDetail/SwV";

/// Applies one reported node value to the device row; returns whether anything changed.
pub fn apply_inventory(device: &mut Device, uri: &str, value: &str) -> bool {
    let before = device.clone();
    let v = value.trim();
    let opt = || (!v.is_empty()).then(|| v.to_owned());
    let leaf = uri.rsplit('/').next().unwrap_or("");
    match uri {
        "./DevDetail/SwV" => device.os_version = opt(),
        "./DevDetail/Ext/Microsoft/OSPlatform" => device.os_platform = opt(),
        "./DevDetail/Ext/Microsoft/SMBIOSSerialNumber" => device.serial = opt(),
        "./DevDetail/Ext/Microsoft/DNSComputerName" => {
            device.dns_computer_name = opt();
            if !v.is_empty() {
                device.name = v.to_owned();
            }
        }
        "./DevDetail/Ext/Microsoft/TotalRAM" => device.total_ram_mb = v.parse().ok(),
        "./DevDetail/Ext/Microsoft/TotalStorage" => device.total_storage_mb = v.parse().ok(),
        "./DevInfo/Man" => device.manufacturer = opt(),
        "./DevInfo/Mod" => device.model = opt(),
        "./Vendor/MSFT/DMClient/HWDevID" if !v.is_empty() => device.hw_dev_id = Some(v.to_owned()),
        "./Vendor/MSFT/DeviceStatus/DomainName" => device.domain_name = Some(v.to_owned()),
        AUTOPILOT_STATUS_URI => device.autopilot_status = v.parse().ok(),
        AUTOPILOT_LAST_ERROR_URI => device.autopilot_last_error = action::parse_hresult(v),
        WINRE_STATUS_URI => {
            device.winre_enabled = v
                .parse::<u32>()
                .ok()
                .map(|bits| bits & WINRE_NOT_CONFIGURED_BIT == 0);
        }
        _ if uri.starts_with("./Vendor/MSFT/DMClient/Provider/") && leaf == "EnrollmentType" => {
            device.enrollment_type = EnrollmentType::from_wire(v).ok();
        }
        // An Entra device id a validated token gave at enrollment is not replaced by what the
        // PC reports: the identity rules bind on it (`enrollment::identity::rebind`). A PC that
        // reports another id contradicts its token: the join rests on its claim again (not
        // eligible for Autopilot Reset, no binding) until it enrolls with a token again.
        _ if uri.starts_with("./Vendor/MSFT/DMClient/Provider/") && leaf == "AADDeviceID" => {
            let verified = device.join_evidence == JoinEvidence::EntraToken;
            let agrees = device
                .aad_device_id
                .as_deref()
                .is_some_and(|known| known.eq_ignore_ascii_case(v));
            if !verified {
                device.aad_device_id = opt();
            } else if !v.is_empty() && !agrees {
                // The token's id stays on record (a reported id could be anyone's).
                device.join_evidence = JoinEvidence::Claimed;
            }
        }
        _ => {}
    }
    derive_join_type(device);
    *device != before
}

/// Join type from EnrollmentType and DomainName ([`JoinType::derive`]).
fn derive_join_type(device: &mut Device) {
    if let Some(join) = JoinType::derive(device.enrollment_type, device.domain_name.as_deref()) {
        device.join_type = join;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DeviceId;

    #[test]
    fn join_type_follows_enrollment_type_and_domain() {
        let mut d = Device::new(
            DeviceId::generate(),
            "pc",
            time::macros::datetime!(2026-01-01 0:00 UTC),
        );
        apply_inventory(
            &mut d,
            "./Vendor/MSFT/DMClient/Provider/Redeploy/EnrollmentType",
            "Device",
        );
        apply_inventory(&mut d, "./Vendor/MSFT/DeviceStatus/DomainName", "");
        assert_eq!(d.join_type, JoinType::EntraJoined);
        apply_inventory(
            &mut d,
            "./Vendor/MSFT/DeviceStatus/DomainName",
            "corp.contoso.com",
        );
        assert_eq!(d.join_type, JoinType::HybridJoined);
        apply_inventory(&mut d, "./DevDetail/Ext/Microsoft/TotalRAM", "16384");
        assert_eq!(d.total_ram_mb, Some(16384));
    }

    #[test]
    fn a_validated_entra_device_id_is_not_replaced_and_a_contradiction_drops_the_evidence() {
        let node = "./Vendor/MSFT/DMClient/Provider/Redeploy/AADDeviceID";
        let mut d = Device::new(
            DeviceId::generate(),
            "pc",
            time::macros::datetime!(2026-01-01 0:00 UTC),
        );
        apply_inventory(&mut d, node, "reported-1");
        assert_eq!(
            d.aad_device_id.as_deref(),
            Some("reported-1"),
            "a claim is kept"
        );
        d.aad_device_id = Some("from-token".into());
        d.join_evidence = JoinEvidence::EntraToken;
        assert!(
            !apply_inventory(&mut d, node, "FROM-TOKEN"),
            "same id, any case"
        );
        assert!(!apply_inventory(&mut d, node, ""), "not reported yet");
        assert_eq!(d.join_evidence, JoinEvidence::EntraToken);
        assert!(apply_inventory(&mut d, node, "someone-else"));
        assert_eq!(d.aad_device_id.as_deref(), Some("from-token"));
        assert_eq!(
            d.join_evidence,
            JoinEvidence::Claimed,
            "a contradicted token is no evidence"
        );
    }
}

/// What an inventory node is, in an admin's words, and its value made readable: `None` for a
/// node we do not name (shown as its OMA-URI). Node meanings: docs/protocol.md §4 (DevDetail,
/// DevInfo, DMClient, DeviceStatus CSP docs), §1.9 (BitLocker DeviceEncryptionStatus), §3.6
/// (AutomaticRedeployment Status values: 0 not started, 1 completed, 10/20 in progress,
/// 30/40/50 failed).
pub fn inventory_label(uri: &str, value: &str) -> Option<(&'static str, String)> {
    let megabytes = |v: &str| match v.trim().parse::<f64>() {
        Ok(mb) if mb >= 1024.0 => format!("{:.1} GB", mb / 1024.0),
        Ok(mb) => format!("{mb} MB"),
        Err(_) => v.to_owned(),
    };
    let tail = uri.rsplit('/').next().unwrap_or(uri);
    let named = match tail {
        "SwV" => ("Windows version", value.to_owned()),
        "OSPlatform" => ("Windows edition", value.to_owned()),
        "SMBIOSSerialNumber" => ("Serial number", value.to_owned()),
        "DNSComputerName" => ("Computer name", value.to_owned()),
        "TotalRAM" => ("Memory", megabytes(value)),
        "TotalStorage" => ("Storage", megabytes(value)),
        "Man" => ("Manufacturer", value.to_owned()),
        "Mod" => ("Model", value.to_owned()),
        "EnrollmentType" => ("Enrollment type", value.to_owned()),
        "AADDeviceID" => ("Entra device ID", value.to_owned()),
        "HWDevID" => ("Hardware ID", value.to_owned()),
        "DomainName" if value.is_empty() => ("Active Directory domain", "none".to_owned()),
        "DomainName" => ("Active Directory domain", value.to_owned()),
        "IsSyncDone" => ("First sync after setup done", value.to_owned()),
        _ if uri == AUTOPILOT_STATUS_URI => {
            let word = match value.trim() {
                "0" => "not started",
                "1" => "completed",
                "10" | "20" => "in progress",
                "30" | "40" | "50" => "failed",
                _ => "unknown",
            };
            ("Autopilot Reset status", format!("{word} ({value})"))
        }
        _ if uri == AUTOPILOT_LAST_ERROR_URI => {
            let text = match value.trim().parse::<i64>() {
                // The node is an int: HRESULTs come as negative numbers.
                Ok(n) => {
                    let code = n as u32;
                    let (what, _) = action::decode_hresult(code);
                    format!("{what} (0x{code:08X})")
                }
                Err(_) => value.to_owned(),
            };
            ("Autopilot Reset last error", text)
        }
        _ if uri == WINRE_STATUS_URI => {
            let text = match value.trim().parse::<u32>() {
                Ok(bits) if bits & WINRE_NOT_CONFIGURED_BIT != 0 => {
                    format!("WinRE not configured ({value})")
                }
                Ok(_) => format!("no WinRE problem reported ({value})"),
                Err(_) => value.to_owned(),
            };
            ("Encryption status (BitLocker)", text)
        }
        _ => return None,
    };
    Some(named)
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn inventory_nodes_read_as_names_and_decoded_values() {
        let cases = [
            (
                "./DevDetail/SwV",
                "10.0.22631.4037",
                "Windows version",
                "10.0.22631.4037",
            ),
            (
                "./DevDetail/Ext/Microsoft/TotalRAM",
                "16384",
                "Memory",
                "16.0 GB",
            ),
            (
                "./DevDetail/Ext/Microsoft/TotalStorage",
                "512",
                "Storage",
                "512 MB",
            ),
            (
                "./Vendor/MSFT/DeviceStatus/DomainName",
                "",
                "Active Directory domain",
                "none",
            ),
            (
                AUTOPILOT_STATUS_URI,
                "30",
                "Autopilot Reset status",
                "failed (30)",
            ),
            (
                AUTOPILOT_LAST_ERROR_URI,
                "-2147024846",
                "Autopilot Reset last error",
                "WinRE is disabled (0x80070032)",
            ),
        ];
        for (uri, value, name, shown) in cases {
            assert_eq!(
                inventory_label(uri, value),
                Some((name, shown.to_owned())),
                "{uri}"
            );
        }
        assert_eq!(inventory_label("./Vendor/MSFT/Unknown/Node", "1"), None);
    }
}
