//! Use cases that every surface calls — REST (`api`), the console, the Graph subset and the
//! worker — so that the rules (roles, the one request path of the core) live once. Handlers only
//! translate HTTP in and out.

pub mod actions;
