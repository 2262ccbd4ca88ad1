//! Inventory: the latest value the device reported for a node (docs/protocol.md §4).

use time::OffsetDateTime;

use crate::ids::DeviceId;

/// One reported node value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryValue {
    /// The reporting device.
    pub device: DeviceId,
    /// Node LocURI, e.g. `./DevDetail/SwV`.
    pub uri: String,
    /// Item Data as text.
    pub value: String,
    /// Meta Format, if given.
    pub format: Option<String>,
    /// When it was reported.
    pub at: OffsetDateTime,
}
