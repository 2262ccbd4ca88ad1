//! What a device message says, read without the store: its alerts (session start, abort, users,
//! unenrollment) and its Statuses and Results for our commands, keyed by (MsgRef, CmdRef).
//! [`super::load`] uses it to know what to read, [`super::decide`] to decide.

use std::collections::BTreeMap;

use base64::Engine as _;
use syncml::{
    codes::{ALERT_TYPE_AAD_USER_TOKEN, ALERT_TYPE_LOGIN_STATUS, ALERT_TYPE_UNENROLL_USER_REQUEST},
    AlertCode, Command, Item, SyncMl,
};

/// What the device's alerts said.
#[derive(Default)]
pub(crate) struct Alerts {
    /// Alert 1201/1200: package #1 of a session.
    pub session_start: bool,
    /// Alert 1223.
    pub abort: bool,
    /// Alert 1224 `LoginStatus` data (lower case).
    pub login: Option<String>,
    /// The UPN of an Alert 1224 `AADUserToken`.
    pub token_user: Option<String>,
    /// Alert 1226 `com.microsoft:mdm.unenrollment.userrequest`.
    pub unenroll: bool,
}

impl Alerts {
    /// The alerts of `msg`, in message order (a later alert of a kind wins).
    pub fn of(msg: &SyncMl) -> Self {
        let mut out = Self::default();
        for cmd in &msg.body.commands {
            if let Command::Alert(a) = cmd {
                out.read(a);
            }
        }
        out
    }

    fn read(&mut self, a: &syncml::Alert) {
        match a.code {
            AlertCode::ClientInitiatedMgmt | AlertCode::ServerInitiatedMgmt => {
                self.session_start = true;
            }
            AlertCode::SessionAbort => self.abort = true,
            AlertCode::ClientEvent => {
                for i in &a.items {
                    match i.meta_type() {
                        Some(ALERT_TYPE_LOGIN_STATUS) => {
                            self.login = i.data_str().map(|d| d.trim().to_ascii_lowercase());
                        }
                        Some(ALERT_TYPE_AAD_USER_TOKEN) => {
                            self.token_user = i.data_str().and_then(upn_from_jwt);
                        }
                        _ => {}
                    }
                }
            }
            AlertCode::GenericAlert
                if a.items
                    .iter()
                    .any(|i| i.meta_type() == Some(ALERT_TYPE_UNENROLL_USER_REQUEST)) =>
            {
                self.unenroll = true;
            }
            _ => {}
        }
    }
}

/// A reference to one of our commands: (our MsgID, its CmdID), as a Status or Results carries it
/// in MsgRef and CmdRef.
pub type CommandRef = (String, String);

/// The device's Statuses and Results for our commands (not for our header).
#[derive(Default)]
pub(crate) struct Answers {
    /// Status code by reference.
    pub status: BTreeMap<CommandRef, u16>,
    /// Results by reference: the first item's Data and Meta Format.
    pub results: BTreeMap<CommandRef, (Option<String>, Option<String>)>,
}

impl Answers {
    /// The Statuses and Results of `msg` (a later one for the same reference wins).
    pub fn of(msg: &SyncMl) -> Self {
        let mut out = Self::default();
        for cmd in &msg.body.commands {
            match cmd {
                Command::Status(s) if !s.is_for_header() => {
                    out.status
                        .insert((s.msg_ref.clone(), s.cmd_ref.clone()), s.code.as_u16());
                }
                Command::Results(r) => {
                    let item = r.items.first();
                    out.results.insert(
                        (r.msg_ref.clone(), r.cmd_ref.clone()),
                        (
                            // An empty node (e.g. DomainName of a non-domain PC) may come
                            // without Data.
                            item.map(|i| i.data_str().unwrap_or("").to_owned()),
                            item.and_then(Item::format).map(str::to_owned),
                        ),
                    );
                }
                _ => {}
            }
        }
        out
    }

    /// Every reference answered: those with a Status in order, then those with Results only.
    pub fn refs(&self) -> Vec<CommandRef> {
        let mut refs: Vec<CommandRef> = self.status.keys().cloned().collect();
        refs.extend(
            self.results
                .keys()
                .filter(|k| !self.status.contains_key(*k))
                .cloned(),
        );
        refs
    }
}

/// The UPN of an Entra token, read without verifying it (we only record who signed in):
/// `upn`, else `unique_name`, else `sub`.
pub fn upn_from_jwt(token: &str) -> Option<String> {
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    ["upn", "unique_name", "sub"]
        .iter()
        .find_map(|k| claims.get(*k)?.as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upn_comes_from_the_token_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"upn":"ada@contoso.com","sub":"x"}"#);
        assert_eq!(
            upn_from_jwt(&format!("eyJhbGciOiJub25lIn0.{payload}.sig")).as_deref(),
            Some("ada@contoso.com")
        );
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"subject-1"}"#);
        assert_eq!(
            upn_from_jwt(&format!("h.{payload}.s")).as_deref(),
            Some("subject-1")
        );
        assert_eq!(upn_from_jwt("garbage"), None);
    }
}
