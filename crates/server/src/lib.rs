//! The Redeploy server: enrollment (MS-MDE2) and management (MS-MDM) endpoints, the admin REST API
//! and console, metrics — the only crate that knows HTTP. Business rules live in `redeploy_core`.

pub mod state;
pub mod tls;
