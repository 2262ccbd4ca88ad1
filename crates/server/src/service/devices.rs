//! Devices as every surface lists and shows them: a page of devices with their readiness for a
//! remote Autopilot Reset (filtered by readiness and by how recently they checked in), one device
//! with its actions and inventory, and the whole fleet for counts.

use redeploy_core::enrollment::renewal::EXPIRY_WARNING;
use redeploy_core::store::{device_sort_key, CertificateExpiry, Cursor, DeviceQuery, Page};
use redeploy_core::{
    Action, ActionState, Device, DeviceId, InventoryValue, PreflightSettings, Readiness, Role,
};
use time::{Duration, OffsetDateTime};

use redeploy_core::enrollment::identity::{self, Clash};

use super::{audit, Caller, Result, ServiceError};
use crate::state::AppState;

/// A device counts as "seen recently" when it checked in within this long.
pub const RECENT: Duration = Duration::hours(24);

/// Whether `device` checked in within [`RECENT`] of `now`.
pub fn seen_recently(device: &Device, now: OffsetDateTime) -> bool {
    device.last_seen.is_some_and(|t| now - t <= RECENT)
}

/// Preflight for a remote Autopilot Reset now, given the device's actions (any order), as
/// requests decide it ([`redeploy_core::action::readiness()`]).
pub fn readiness(device: &Device, actions: &[Action], now: OffsetDateTime) -> Readiness {
    redeploy_core::action::readiness(device, actions, now, &PreflightSettings::default())
}

/// [`readiness`] of many devices (same order), reading their actions with one store query per
/// 500 devices instead of one per device.
pub async fn readiness_of_many(state: &AppState, devices: &[Device]) -> Result<Vec<Readiness>> {
    let now = state.clock.now();
    let ids: Vec<_> = devices.iter().map(|d| d.id).collect();
    let actions = state.store.actions_for_readiness(&ids).await?;
    Ok(devices
        .iter()
        .map(|d| readiness(d, actions.get(&d.id).map_or(&[], Vec::as_slice), now))
        .collect())
}

/// What a device list asks for: the store's query (search, join type, sort, page size, cursor)
/// plus filters computed here, on readiness and on the last check-in.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub query: DeviceQuery,
    /// Only ready (`Some(true)`) or only not ready (`Some(false)`) devices.
    pub ready: Option<bool>,
    /// Only devices seen within [`RECENT`] (`Some(true)`) or not (`Some(false)`).
    pub seen_recently: Option<bool>,
}

/// One page of a device list: up to `query.limit` devices with their readiness, and the cursor
/// of the next page when there is one.
#[derive(Debug, Clone)]
pub struct Listed {
    pub rows: Vec<(Device, Readiness)>,
    pub next: Option<String>,
}

/// A page of devices. The readiness and recency filters apply after the store's query, so this
/// reads store pages until the page is full or the fleet ends; the cursor it returns continues
/// right after the last device shown. A cursor the store cannot read is [`ServiceError::Invalid`].
pub async fn list(state: &AppState, listing: Listing) -> Result<Listed> {
    let Listing {
        mut query,
        ready,
        seen_recently: recent,
    } = listing;
    let limit = query.limit;
    let now = state.clock.now();
    let mut rows: Vec<(Device, Readiness)> = Vec::new();
    loop {
        let page = page(state, &query).await?;
        let n = page.items.len();
        let readiness = readiness_of_many(state, &page.items).await?;
        for (i, (d, r)) in page.items.into_iter().zip(readiness).enumerate() {
            if ready.is_some_and(|w| w != r.ready)
                || recent.is_some_and(|w| w != seen_recently(&d, now))
            {
                continue;
            }
            let key = device_sort_key(&d, query.sort);
            let id = d.id;
            rows.push((d, r));
            if rows.len() as u32 == limit {
                let more = i + 1 < n || page.next.is_some();
                let next = more.then(|| Cursor::after(query.sort, &key, id).as_str().to_owned());
                return Ok(Listed { rows, next });
            }
        }
        match page.next {
            Some(c) => query.cursor = Some(c),
            None => return Ok(Listed { rows, next: None }),
        }
    }
}

/// One store page of devices for `query` (its condition, sort and cursor all in the store's
/// query), without readiness: what Graph lists. A cursor the store cannot read is
/// [`ServiceError::Invalid`].
pub async fn page(state: &AppState, query: &DeviceQuery) -> Result<Page<Device>> {
    super::listed(state.store.list_devices(query).await)
}

/// How many devices `query` lists across all its pages (its sort, page size and cursor aside).
pub async fn count(state: &AppState, query: &DeviceQuery) -> Result<u64> {
    Ok(state.store.count_listed_devices(query).await?)
}

/// Every enrolled device (the store pages through them).
pub async fn all(state: &AppState) -> Result<Vec<Device>> {
    let mut query = DeviceQuery {
        limit: 500,
        ..DeviceQuery::default()
    };
    let mut all = Vec::new();
    loop {
        let page = state.store.list_devices(&query).await?;
        all.extend(page.items);
        match page.next {
            Some(c) => query.cursor = Some(c),
            None => return Ok(all),
        }
    }
}

/// The device `id`, or [`ServiceError::NotFound`].
pub async fn load(state: &AppState, id: DeviceId) -> Result<Device> {
    state
        .store
        .device(id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("There is no device {id}.")))
}

/// One device as its page shows it.
#[derive(Debug, Clone)]
pub struct Detail {
    pub device: Device,
    pub readiness: Readiness,
    /// Every action of the device, as the store orders them.
    pub actions: Vec<Action>,
    pub inventory: Vec<InventoryValue>,
    /// Other enrolled records reporting the same hardware id, serial or Entra device id.
    pub clashes: Vec<Clash>,
}

/// The device `id` with its readiness, actions, inventory and identity clashes.
pub async fn detail(state: &AppState, id: DeviceId) -> Result<Detail> {
    let device = load(state, id).await?;
    let actions = state.store.actions_of_device(id).await?;
    let inventory = state.store.inventory(id).await?;
    let readiness = readiness(&device, &actions, state.clock.now());
    let clashes = clashes_of(state, &device).await?;
    Ok(Detail {
        device,
        readiness,
        actions,
        inventory,
        clashes,
    })
}

/// The other enrolled records sharing a real identity attribute with `device`
/// (`core::enrollment::identity::clashes`).
pub async fn clashes_of(state: &AppState, device: &Device) -> Result<Vec<Clash>> {
    fn real(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|v| !identity::is_placeholder(v))
    }
    let others = state
        .store
        .devices_by_identity(
            real(&device.hw_dev_id),
            real(&device.serial),
            real(&device.aad_device_id),
        )
        .await?;
    Ok(identity::clashes(device, &others))
}

/// How many actions are in each of `states` (up to `cap` counted per state).
pub async fn count_actions(
    state: &AppState,
    states: &[ActionState],
    cap: u32,
) -> Result<Vec<(ActionState, usize)>> {
    let counts = states
        .iter()
        .map(|s| state.store.count_actions_in_state(*s, cap));
    let counts = futures::future::try_join_all(counts).await?;
    Ok(states
        .iter()
        .zip(counts)
        .map(|(s, n)| (*s, usize::try_from(n).unwrap_or(usize::MAX)))
        .collect())
}

/// How ready the enrolled fleet is for a remote Autopilot Reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetReadiness {
    pub total: u64,
    pub ready: u64,
    /// How many checked in within [`RECENT`].
    pub seen_recently: u64,
    /// How many devices each preflight reason (by code) blocks.
    pub blocked_by_reason: std::collections::BTreeMap<String, u64>,
    /// Certificates expired, and expiring within [`EXPIRY_WARNING`].
    pub certificates: CertificateExpiry,
}

/// How many enrolled devices' MDM certificates are expired, and how many expire within
/// [`EXPIRY_WARNING`] (30 days), at the server clock's now.
pub async fn certificate_expiry(state: &AppState) -> Result<CertificateExpiry> {
    Ok(state
        .store
        .certificate_expiry(state.clock.now(), EXPIRY_WARNING)
        .await?)
}

/// Readiness of every enrolled device, counted: one grouping query in the store
/// ([`redeploy_core::store::DeviceStore::readiness_census`]) and preflight judged once per
/// group, so 100,000 PCs are counted without reading them.
pub async fn fleet_readiness(state: &AppState) -> Result<FleetReadiness> {
    let now = state.clock.now();
    let settings = PreflightSettings::default();
    // Both read the devices table; together they take the longer one's time.
    let census = async {
        Ok(state
            .store
            .readiness_census(now, settings.seen_within, RECENT)
            .await?)
    };
    let (certificates, census) = tokio::try_join!(certificate_expiry(state), census)?;
    let mut fleet = FleetReadiness {
        certificates,
        ..FleetReadiness::default()
    };
    for (inputs, n) in census {
        let r = inputs.readiness(now, &settings);
        fleet.total += n;
        if r.ready {
            fleet.ready += n;
        }
        if inputs.seen_recently {
            fleet.seen_recently += n;
        }
        for reason in &r.reasons {
            *fleet
                .blocked_by_reason
                .entry(reason.code().to_owned())
                .or_default() += n;
        }
    }
    Ok(fleet)
}

/// Sets who the device's primary user is (`None` or blank = nobody), and whether it is shared
/// (a shared device never gets a primary user from whoever signs in, and has none). Operators;
/// audited as `device.primary_user` with the values before and after. The console and the REST
/// API both call this. Only these two columns are written, so a check-in saving the device at
/// the same time keeps what it wrote.
pub async fn set_primary_user(
    state: &AppState,
    caller: &Caller,
    id: DeviceId,
    user: Option<&str>,
    shared: bool,
) -> Result<Device> {
    caller
        .require(
            state,
            Role::Operator,
            &format!("set the primary user of device {id}"),
            Some(id),
        )
        .await?;
    let user = user.map(str::trim).filter(|u| !u.is_empty());
    if let Some(u) = user {
        if u.chars().count() > 320 || u.chars().any(char::is_whitespace) {
            return Err(ServiceError::Invalid(
                "the primary user is a UPN such as ada@example.org (no spaces, at most 320 \
                 characters)"
                    .into(),
            ));
        }
    }
    let old = load(state, id).await?;
    let user = if shared { None } else { user };
    let device = state.store.set_primary_user(id, user, shared).await?;
    audit::append(
        state,
        audit::by(state, caller, "device.primary_user")
            .targets([id])
            .details(format!(
                "primary user {:?} -> {:?}, shared {} -> {}",
                old.primary_user, device.primary_user, old.shared, device.shared
            )),
    )
    .await?;
    Ok(device)
}

/// The names of `ids` (a device that is gone shows as its id), in one store read per 500.
pub async fn names(
    state: &AppState,
    ids: &[DeviceId],
) -> Result<std::collections::HashMap<DeviceId, String>> {
    let found = state.store.devices_by_ids(ids).await?;
    Ok(ids
        .iter()
        .map(|id| {
            let name = found
                .get(id)
                .map_or_else(|| id.to_string(), |d| d.name.clone());
            (*id, name)
        })
        .collect())
}

/// The devices named `names` (exact names, any case; each looked up by a search): their ids
/// (sorted, no duplicates) and the names no device has.
pub async fn ids_by_name(state: &AppState, names: &[&str]) -> Result<(Vec<DeviceId>, Vec<String>)> {
    let mut ids = Vec::new();
    let mut unknown = Vec::new();
    for wanted in names {
        let found = state
            .store
            .list_devices(&DeviceQuery {
                search: Some((*wanted).to_owned()),
                limit: 100,
                ..DeviceQuery::default()
            })
            .await?
            .items
            .into_iter()
            .find(|d| d.name.eq_ignore_ascii_case(wanted));
        match found {
            Some(d) => ids.push(d.id),
            None => unknown.push((*wanted).to_owned()),
        }
    }
    ids.sort();
    ids.dedup();
    Ok((ids, unknown))
}
