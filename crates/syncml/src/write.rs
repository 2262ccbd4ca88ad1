//! SyncML writer (to be implemented): [`SyncMl`] -> the XML form Windows accepts.

use crate::model::SyncMl;

/// Serialize a message as UTF-8 XML.
pub fn write(msg: &SyncMl) -> String {
    let _ = msg;
    String::new()
}
