//! The admin REST API's wire types (DTOs with serde + OpenAPI schemas) and a typed async client,
//! one method per operation. Domain types never serialize; the server converts at the edge.

pub mod client;
pub mod types;

pub use client::{Client, Error};
pub use types::*;
