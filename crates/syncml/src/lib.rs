//! syncml
