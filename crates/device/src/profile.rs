//! Scenario knobs (`emulate` flags) and a seeded builder that turns them into a realistic
//! [`DeviceState`]: the same seed always gives the same PC, so fleets are reproducible.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::OffsetDateTime;

use crate::state::*;

/// What kind of PC to build. `None` fields are chosen from realistic mixes by the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceProfile {
    pub join: JoinType,
    pub winre_enabled: bool,
    pub os_build: Option<u32>,
    pub edition: Option<Edition>,
    /// Battery percentage and not on AC; `None`: on AC power.
    pub battery_pct: Option<u8>,
    /// Entra users who have used the PC (each with a profile and personal files).
    pub users: usize,
    /// User-installed apps.
    pub apps: usize,
    pub wifi_profiles: usize,
    /// Provisioning packages applied at setup (the first creates the local administrator).
    pub packages: usize,
    pub usb_package: bool,
    /// The local-reset policy value a provisioning package left (0 enables CTRL+WIN+R);
    /// `None` leaves it unset (default 1).
    pub local_reset_policy: Option<u8>,
    /// The local administrator created by the first package (or at OOBE without packages).
    pub local_admin: (String, String),
    pub tenant_domain: String,
    /// A wired network; `None`: desktops have one, laptops rely on Wi-Fi.
    pub ethernet: Option<bool>,
}

impl Default for DeviceProfile {
    fn default() -> Self {
        DeviceProfile {
            join: JoinType::Joined,
            winre_enabled: true,
            os_build: None,
            edition: None,
            battery_pct: None,
            users: 2,
            apps: 3,
            wifi_profiles: 2,
            packages: 1,
            usb_package: false,
            local_reset_policy: None,
            local_admin: ("LocalAdmin".to_string(), "Redeploy!2024".to_string()),
            tenant_domain: "contoso.edu".to_string(),
            ethernet: None,
        }
    }
}

/// A per-device seed from a fleet seed and the device's index (SplitMix64), so device 7 of a
/// fleet is the same PC whatever the fleet size.
pub fn device_seed(fleet_seed: u64, index: u32) -> u64 {
    let mut z = fleet_seed.wrapping_add(u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const HARDWARE: &[(&str, &str, SerialStyle, &str)] = &[
    ("Dell Inc.", "Latitude 5440", SerialStyle::Dell, "1.14.1"),
    ("Dell Inc.", "Latitude 7440", SerialStyle::Dell, "1.10.0"),
    ("Dell Inc.", "OptiPlex 7010", SerialStyle::Dell, "1.9.1"),
    (
        "HP",
        "HP EliteBook 840 G10",
        SerialStyle::Hp,
        "V70 Ver. 01.05.02",
    ),
    (
        "HP",
        "HP ProBook 450 G9",
        SerialStyle::Hp,
        "U83 Ver. 01.11.00",
    ),
    ("LENOVO", "21HD", SerialStyle::Lenovo, "R2FET52W (1.32 )"),
    ("LENOVO", "20TA", SerialStyle::Lenovo, "R1AET58W (1.34 )"),
    (
        "Microsoft Corporation",
        "Surface Laptop 5",
        SerialStyle::Surface,
        "8.111.140",
    ),
    (
        "Microsoft Corporation",
        "Surface Pro 9",
        SerialStyle::Surface,
        "13.0.1794.0",
    ),
    ("Acer", "TravelMate P214-54", SerialStyle::Acer, "V1.13"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SerialStyle {
    Dell,
    Hp,
    Lenovo,
    Surface,
    Acer,
}

/// (build, UBR) pairs of supported releases: Windows 10 22H2, Windows 11 22H2, 23H2, 24H2.
const BUILDS: &[(u32, u32)] = &[(19045, 5131), (22621, 4460), (22631, 4460), (26100, 2314)];

const LOCALES: &[(&str, &str, &str)] = &[
    ("United States", "en-US", "00000409"),
    ("United Kingdom", "en-GB", "00000809"),
    ("Germany", "de-DE", "00000407"),
    ("France", "fr-FR", "0000040C"),
    ("Netherlands", "nl-NL", "00020409"),
];

const FIRST_NAMES: &[&str] = &[
    "Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Robin", "Jamie", "Avery", "Riley",
];
const LAST_NAMES: &[&str] = &[
    "Smith", "Garcia", "Jansen", "Müller", "Martin", "Novak", "Kim", "Okafor", "Rossi", "Dubois",
];
const USER_APPS: &[(&str, &str)] = &[
    ("Google Chrome", "131.0.6778.86"),
    ("Mozilla Firefox", "133.0"),
    ("Spotify", "1.2.52.442"),
    ("Zoom Workplace", "6.2.11"),
    ("VLC media player", "3.0.21"),
    ("7-Zip", "24.08"),
    ("Notepad++", "8.7.1"),
    ("GIMP", "2.10.38"),
    ("Audacity", "3.7.0"),
    ("Discord", "1.0.9172"),
];
const INBOX_APPS: &[(&str, &str)] = &[
    ("Microsoft Edge", "131.0.2903.70"),
    ("Microsoft Store", "22410.1401.5.0"),
    ("Calculator", "11.2405.2.0"),
    ("Notepad", "11.2410.21.0"),
    ("Photos", "2024.11100.16009.0"),
    ("Snipping Tool", "11.2409.25.0"),
];
const FILES: &[&str] = &[
    "Documents/Essay draft.docx",
    "Documents/Budget 2025.xlsx",
    "Desktop/notes.txt",
    "Pictures/Screenshots/Screenshot 2025-03-14.png",
    "Downloads/setup.exe",
    "Documents/Slides.pptx",
    "Music/playlist.m3u",
    "Videos/recording.mp4",
];
const CORP_SSIDS: &[&str] = &["Contoso-Corp", "eduroam", "Contoso-Lab", "Contoso-Guest"];
const HOME_SSIDS: &[&str] = &["HomeNet-5G", "FRITZ!Box 7590 XY", "Ziggo42", "iPhone (Sam)"];

impl DeviceProfile {
    /// Builds a PC from a seed (see [`device_seed`] for fleets).
    pub fn build_seeded(&self, id: &str, seed: u64, now: OffsetDateTime) -> DeviceState {
        self.build(id, &mut StdRng::seed_from_u64(seed), now)
    }

    /// Builds a PC, drawing every unspecified value from `rng`.
    pub fn build<R: Rng>(&self, id: &str, rng: &mut R, now: OffsetDateTime) -> DeviceState {
        let (manufacturer, model, style, firmware) = HARDWARE[rng.gen_range(0..HARDWARE.len())];
        let (build, ubr) = match self.os_build {
            Some(b) => (
                b,
                BUILDS.iter().find(|(x, _)| *x == b).map_or(1, |(_, u)| *u),
            ),
            None => BUILDS[rng.gen_range(0..BUILDS.len())],
        };
        let edition = self.edition.unwrap_or_else(|| {
            [Edition::Enterprise, Edition::Education, Edition::Pro][rng.gen_range(0..3)]
        });
        let (region, language, keyboard) = LOCALES[rng.gen_range(0..LOCALES.len())];
        let tenant_id = guid(rng);
        let is_laptop = !model.contains("OptiPlex");

        let entra_join = match self.join {
            JoinType::None => EntraJoin {
                kind: JoinType::None,
                tenant_id: None,
                device_id: None,
                token_issuer: None,
            },
            kind => EntraJoin {
                kind,
                tenant_id: Some(tenant_id),
                device_id: Some(guid(rng)),
                token_issuer: None,
            },
        };
        let ad_domain = (self.join == JoinType::Hybrid).then(|| "corp.contoso.com".to_string());

        let mut state = DeviceState {
            id: id.to_string(),
            computer_name: format!("DESKTOP-{}", alnum(rng, 7)),
            os: OsInfo {
                build,
                version: format!("10.0.{build}.{ubr}"),
                edition,
            },
            hardware: Hardware {
                manufacturer: manufacturer.to_string(),
                model: model.to_string(),
                serial: serial(rng, style),
                hw_dev_id: hex_string(rng, 32).to_ascii_uppercase(),
                firmware_version: firmware.to_string(),
                total_ram_mb: [8192, 16384, 32768][rng.gen_range(0..3)],
                total_storage_mb: [243_924, 487_849, 975_699][rng.gen_range(0..3)],
            },
            dev_id: guid(rng).to_ascii_uppercase(),
            entra_join,
            ad_domain,
            mdm_enrollment: None,
            push: Default::default(),
            winre_enabled: self.winre_enabled,
            power: Power {
                on_ac: self.battery_pct.is_none(),
                battery_pct: match self.battery_pct {
                    Some(p) => Some(p.min(100)),
                    None if is_laptop => Some(rng.gen_range(60..=100)),
                    None => None,
                },
            },
            ethernet: self.ethernet.unwrap_or(!is_laptop),
            local_users: Vec::new(),
            entra_users: Vec::new(),
            signed_in_user: None,
            primary_user: None,
            profiles: Vec::new(),
            apps: INBOX_APPS
                .iter()
                .map(|(n, v)| App {
                    name: n.to_string(),
                    version: v.to_string(),
                    origin: AppOrigin::Inbox,
                })
                .collect(),
            mdm_apps_awaiting_sync: Vec::new(),
            device_settings: BTreeMap::new(),
            region: Setting::new(region),
            language: Setting::new(language),
            keyboard: Setting::new(keyboard),
            wifi_profiles: Vec::new(),
            provisioning_packages: Vec::new(),
            usb_package: None,
            certificates: Vec::new(),
            desktop: DesktopGate::default(),
            policies: BTreeMap::new(),
            autopilot_reset: AutopilotResetNodes::default(),
            pending: None,
            inject_reset_failure: None,
            timings: Timings::default(),
            online: true,
            events: Vec::new(),
            dm_client: DmClientRun::default(),
            resets: ResetCounts::default(),
            faults: FaultSettings::default(),
        };
        state.log(now, EventKind::Created, format!("{manufacturer} {model}"));

        // Device settings as provisioned; some were changed since by users.
        for (key, original, changed) in [
            ("power.sleep_after_minutes", "30", "120"),
            ("display.scale_percent", "125", "150"),
            ("time_zone", "W. Europe Standard Time", "GMT Standard Time"),
            ("privacy.location", "off", "on"),
        ] {
            let setting = if rng.gen_bool(0.4) {
                Setting::changed(original, changed)
            } else {
                Setting::new(original)
            };
            state.device_settings.insert(key.to_string(), setting);
        }
        if rng.gen_bool(0.3) {
            state.region.current = "United States".to_string();
            state.keyboard.current = "00000409".to_string();
        }

        // Wi-Fi the users added themselves (packages add the corporate ones).
        for i in 0..self.wifi_profiles {
            let ssid = HOME_SSIDS[i % HOME_SSIDS.len()].to_string();
            if !state.wifi_profiles.iter().any(|w| w.ssid == ssid) {
                state.wifi_profiles.push(WifiProfile {
                    ssid,
                    auto_connect: rng.gen_bool(0.8),
                });
            }
        }

        // Provisioning packages: the first creates the local administrator, the corporate Wi-Fi
        // and carries the local-reset policy (docs/design.md §7: "the value a provisioning package
        // left").
        let admin = LocalUser {
            name: self.local_admin.0.clone(),
            password: self.local_admin.1.clone(),
            is_admin: true,
            created_by_package: None,
        };
        for i in 0..self.packages {
            let mut pkg = ProvisioningPackage {
                name: if i == 0 {
                    "Contoso-Baseline.ppkg".to_string()
                } else {
                    format!("Contoso-Apps-{i}.ppkg")
                },
                version: format!("1.{}.0.0", rng.gen_range(0..10)),
                local_users: Vec::new(),
                apps: Vec::new(),
                wifi_profiles: Vec::new(),
                policies: BTreeMap::new(),
            };
            if i == 0 {
                pkg.local_users.push(admin.clone());
                pkg.wifi_profiles.push(WifiProfile {
                    ssid: CORP_SSIDS[rng.gen_range(0..CORP_SSIDS.len())].to_string(),
                    auto_connect: true,
                });
                if let Some(v) = self.local_reset_policy {
                    pkg.policies
                        .insert(LOCAL_RESET_POLICY.to_string(), PolicyValue::int(v.into()));
                }
                pkg.apps
                    .push("Microsoft 365 Apps for enterprise".to_string());
            } else {
                pkg.apps.push(format!("Contoso Line-of-Business App {i}"));
            }
            state.apply_package(&pkg, now);
        }
        if self.packages == 0 {
            // The administrator was created at OOBE.
            state.local_users.push(admin);
            if let Some(v) = self.local_reset_policy {
                state
                    .policies
                    .insert(LOCAL_RESET_POLICY.to_string(), PolicyValue::int(v.into()));
            }
        }
        if self.usb_package {
            state.usb_package = Some(ProvisioningPackage {
                name: "USB-Refresh.ppkg".to_string(),
                version: "2.0.0.0".to_string(),
                local_users: Vec::new(),
                apps: vec!["Contoso Exam Browser".to_string()],
                wifi_profiles: vec![WifiProfile {
                    ssid: "Contoso-Exam".to_string(),
                    auto_connect: true,
                }],
                policies: BTreeMap::new(),
            });
        }

        // User-installed apps.
        let mut picks: Vec<usize> = (0..USER_APPS.len()).collect();
        for i in 0..self.apps.min(USER_APPS.len()) {
            let j = rng.gen_range(i..picks.len());
            picks.swap(i, j);
            let (name, version) = USER_APPS[picks[i]];
            state.apps.push(App {
                name: name.to_string(),
                version: version.to_string(),
                origin: AppOrigin::UserInstalled,
            });
        }

        // Entra users with profiles; the first is the primary user (the enrolling user).
        if matches!(self.join, JoinType::Joined | JoinType::Hybrid) {
            for i in 0..self.users {
                let first = FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())];
                let last = LAST_NAMES[rng.gen_range(0..LAST_NAMES.len())];
                let upn = format!(
                    "{}.{}{}@{}",
                    first.to_lowercase(),
                    ascii_lower(last),
                    i + 1,
                    self.tenant_domain
                );
                state.entra_users.push(EntraUser {
                    upn: upn.clone(),
                    object_id: guid(rng),
                    display_name: format!("{first} {last}"),
                });
                state.profiles.push(user_profile(rng, &upn));
            }
            state.primary_user = state.entra_users.first().map(|u| u.upn.clone());
        } else {
            for i in 0..self.users {
                let name = format!(
                    "{}{}",
                    FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())],
                    i + 1
                );
                state.local_users.push(LocalUser {
                    name: name.clone(),
                    password: alnum(rng, 10),
                    is_admin: false,
                    created_by_package: None,
                });
                state.profiles.push(user_profile(rng, &name));
            }
        }
        // Certificates: SCEP (Wi-Fi/VPN auth) and one a user imported.
        if self.join != JoinType::None {
            state.certificates.push(Certificate {
                kind: CertificateKind::Scep,
                thumbprint: hex_string(rng, 20).to_ascii_uppercase(),
                subject: format!("CN={}", state.computer_name),
            });
        }
        if let Some(p) = state.profiles.first() {
            let subject = format!("CN={}", p.user);
            state.certificates.push(Certificate {
                kind: CertificateKind::UserImported,
                thumbprint: hex_string(rng, 20).to_ascii_uppercase(),
                subject,
            });
        }
        // Drawn last so that adding it changed none of the values drawn before it.
        state.faults.seed = rng.gen();
        state
    }
}

fn user_profile<R: Rng>(rng: &mut R, user: &str) -> UserProfile {
    let n = rng.gen_range(1..=4);
    let mut files: Vec<String> = Vec::new();
    while files.len() < n {
        let f = FILES[rng.gen_range(0..FILES.len())].to_string();
        if !files.contains(&f) {
            files.push(f);
        }
    }
    let mut settings = BTreeMap::new();
    settings.insert(
        "theme".to_string(),
        Setting::changed("light", if rng.gen_bool(0.5) { "dark" } else { "light" }),
    );
    settings.insert(
        "desktop.wallpaper".to_string(),
        Setting::changed("img0.jpg", "holiday.jpg"),
    );
    settings.insert(
        "taskbar.alignment".to_string(),
        Setting::new(if rng.gen_bool(0.5) { "center" } else { "left" }),
    );
    UserProfile {
        user: user.to_string(),
        files,
        settings,
        policies: BTreeMap::new(),
    }
}

fn ascii_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ü' => 'u',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Draws `state`'s identities again from `seed` (hardware id, serial, DevId, computer name and
/// Entra device id), keeping everything else: the same kind of PC with an identity of its own.
pub fn reidentify(state: &mut DeviceState, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let serial_len = state.hardware.serial.len().max(8);
    state.hardware.serial = alnum(&mut rng, serial_len);
    state.hardware.hw_dev_id = hex_string(&mut rng, 32).to_ascii_uppercase();
    state.dev_id = guid(&mut rng).to_ascii_uppercase();
    state.computer_name = format!("DESKTOP-{}", alnum(&mut rng, 7));
    if state.entra_join.device_id.is_some() {
        state.entra_join.device_id = Some(guid(&mut rng));
    }
}

fn guid<R: Rng>(rng: &mut R) -> String {
    uuid::Builder::from_random_bytes(rng.gen())
        .into_uuid()
        .to_string()
}

fn hex_string<R: Rng>(rng: &mut R, bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rng.gen()).collect();
    hex::encode(v)
}

fn alnum<R: Rng>(rng: &mut R, n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
    (0..n)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

fn digits<R: Rng>(rng: &mut R, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

fn serial<R: Rng>(rng: &mut R, style: SerialStyle) -> String {
    match style {
        // Dell service tags: 7 characters.
        SerialStyle::Dell => alnum(rng, 7),
        // HP: 10 characters, often starting with a plant code such as 5CG.
        SerialStyle::Hp => format!("5CG{}{}", digits(rng, 4), alnum(rng, 3)),
        // Lenovo: 8 characters starting with PF / PC.
        SerialStyle::Lenovo => format!("PF{}", alnum(rng, 6)),
        // Surface: 12 digits.
        SerialStyle::Surface => digits(rng, 12),
        // Acer: 22-character SNID-style serial.
        SerialStyle::Acer => format!("NX{}", alnum(rng, 20)),
    }
}
