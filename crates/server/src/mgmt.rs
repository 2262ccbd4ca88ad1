//! Management endpoint (MS-MDM OMA-DM sessions) — placeholder; the session helper replaces this file.

/// The management routes.
pub fn routes() -> axum::Router<crate::state::AppState> {
    axum::Router::new()
}
