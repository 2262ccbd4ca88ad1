//! Typed async client of `/api/v1`: one method per operation, errors carry the server's problem
//! document.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::*;

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status and (usually) a problem document.
    #[error("{status}: {}", problem.detail.as_deref().unwrap_or(&problem.title))]
    Problem {
        status: StatusCode,
        problem: Problem,
    },
    /// The CA certificate given to [`Client::new`] is not PEM.
    #[error("CA certificate: {0}")]
    Ca(String),
    /// Connection, TLS or I/O failure.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The answer was not what the API describes.
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl Error {
    /// The HTTP status of a problem answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Problem { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Result of client calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A client of one server with one bearer token.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

impl Client {
    /// `base_url` like `https://127.0.0.1:8443`; `ca_pem` is the only CA trusted (None: the
    /// system roots).
    pub fn new(base_url: &str, token: &str, ca_pem: Option<&str>) -> Result<Self> {
        // A server that does not answer a connection attempt is reported after 10 s rather
        // than after the operating system's own limit (minutes).
        let mut builder =
            reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10));
        if let Some(pem) = ca_pem {
            let ca = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| Error::Ca(e.to_string()))?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca);
        }
        Ok(Self {
            http: builder.build()?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
        })
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.base_url))
            .bearer_auth(&self.token)
    }

    async fn send(rb: RequestBuilder) -> Result<reqwest::Response> {
        let response = rb.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await?;
        let problem = serde_json::from_slice::<Problem>(&body).unwrap_or_else(|_| Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: Some(String::from_utf8_lossy(&body).into_owned()),
        });
        Err(Error::Problem { status, problem })
    }

    async fn json<T: DeserializeOwned>(rb: RequestBuilder) -> Result<T> {
        let body = Self::send(rb).await?.bytes().await?;
        serde_json::from_slice(&body).map_err(|e| Error::Decode(e.to_string()))
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        Self::json(self.req(Method::POST, path).json(body)).await
    }

    /// `GET /api/v1/devices`.
    pub async fn list_devices(&self, query: &DeviceListQuery) -> Result<DevicePage> {
        Self::json(self.req(Method::GET, "/devices").query(query)).await
    }

    /// `GET /api/v1/devices/{id}`.
    pub async fn device(&self, id: &str) -> Result<DeviceDetail> {
        Self::json(self.req(Method::GET, &format!("/devices/{id}"))).await
    }

    /// `POST /api/v1/devices/{id}/actions` (202; a blocked action is returned too).
    pub async fn request_action(&self, device_id: &str, kind: ActionKind) -> Result<Action> {
        self.post(
            &format!("/devices/{device_id}/actions"),
            &NewAction { kind },
        )
        .await
    }

    /// `POST /api/v1/devices/{id}/local-reset`.
    pub async fn set_local_reset(&self, device_id: &str, allowed: bool) -> Result<Action> {
        self.post(
            &format!("/devices/{device_id}/local-reset"),
            &LocalResetPolicy { allowed },
        )
        .await
    }

    /// `GET /api/v1/actions/{id}`.
    pub async fn action(&self, id: &str) -> Result<Action> {
        Self::json(self.req(Method::GET, &format!("/actions/{id}"))).await
    }

    /// `GET /api/v1/actions`.
    pub async fn list_actions(&self, query: &ActionListQuery) -> Result<ActionList> {
        Self::json(self.req(Method::GET, "/actions").query(query)).await
    }

    /// `POST /api/v1/actions/{id}/cancel`.
    pub async fn cancel_action(&self, id: &str) -> Result<Action> {
        Self::json(self.req(Method::POST, &format!("/actions/{id}/cancel"))).await
    }

    /// `POST /api/v1/actions/{id}/retry`: the new action.
    pub async fn retry_action(&self, id: &str) -> Result<Action> {
        Self::json(self.req(Method::POST, &format!("/actions/{id}/retry"))).await
    }

    /// `POST /api/v1/actions/{id}/retry` with a reason (audited; it also overrides preflight's
    /// WinRE checks, see [`RetryAction`]).
    pub async fn retry_action_because(&self, id: &str, reason: &str) -> Result<Action> {
        let body = RetryAction {
            reason: Some(reason.to_owned()),
        };
        Self::json(
            self.req(Method::POST, &format!("/actions/{id}/retry"))
                .json(&body),
        )
        .await
    }

    /// `GET /api/v1/readiness`.
    pub async fn readiness(&self) -> Result<FleetReadiness> {
        Self::json(self.req(Method::GET, "/readiness")).await
    }

    /// `GET /api/v1/devices/{id}/messages`: the device's support trail, newest first.
    pub async fn device_messages(&self, device: &str, limit: u32) -> Result<DeviceMessageList> {
        let q = DeviceMessagesQuery { limit: Some(limit) };
        Self::json(
            self.req(
                Method::GET,
                &format!("/devices/{}/messages", Self::seg(device)),
            )
            .query(&q),
        )
        .await
    }

    /// `GET /api/v1/audit` (`format` is ignored; see [`Client::audit_csv`]).
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditPage> {
        let q = AuditQuery {
            format: None,
            ..query.clone()
        };
        Self::json(self.req(Method::GET, "/audit").query(&q)).await
    }

    /// `GET /api/v1/audit?format=csv`.
    pub async fn audit_csv(&self, query: &AuditQuery) -> Result<String> {
        let q = AuditQuery {
            format: Some("csv".into()),
            ..query.clone()
        };
        Ok(Self::send(self.req(Method::GET, "/audit").query(&q))
            .await?
            .text()
            .await?)
    }

    /// `GET /api/v1/enrollment-tokens`.
    pub async fn enrollment_tokens(&self) -> Result<EnrollmentTokenList> {
        Self::json(self.req(Method::GET, "/enrollment-tokens")).await
    }

    /// `POST /api/v1/enrollment-tokens`.
    pub async fn create_enrollment_token(
        &self,
        token: &NewEnrollmentToken,
    ) -> Result<CreatedEnrollmentToken> {
        self.post("/enrollment-tokens", token).await
    }

    /// `GET /api/v1/tokens`.
    pub async fn api_tokens(&self) -> Result<ApiTokenList> {
        Self::json(self.req(Method::GET, "/tokens")).await
    }

    /// `POST /api/v1/tokens`.
    pub async fn create_api_token(&self, token: &NewApiToken) -> Result<CreatedApiToken> {
        self.post("/tokens", token).await
    }

    /// `GET /api/v1/accounts`.
    pub async fn accounts(&self) -> Result<AccountList> {
        Self::json(self.req(Method::GET, "/accounts")).await
    }

    /// `POST /api/v1/accounts`.
    pub async fn create_account(&self, account: &NewAccount) -> Result<Account> {
        self.post("/accounts", account).await
    }

    /// `POST /api/v1/accounts/{name}/disable`.
    pub async fn disable_account(&self, name: &str) -> Result<Account> {
        Self::json(self.req(Method::POST, &format!("/accounts/{name}/disable"))).await
    }

    /// `DELETE /api/v1/tokens/{id}` (revokes it).
    pub async fn revoke_api_token(&self, id: &str) -> Result<()> {
        Self::send(self.req(Method::DELETE, &format!("/tokens/{id}"))).await?;
        Ok(())
    }

    /// Path segment for an id or a name typed by an admin: every byte but RFC 3986's
    /// unreserved characters (§2.3) percent-encoded.
    fn seg(text: &str) -> String {
        const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        utf8_percent_encode(text, UNRESERVED).to_string()
    }

    async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        Self::json(self.req(method, path).json(body)).await
    }

    /// `GET /api/v1/groups`.
    pub async fn groups(&self) -> Result<GroupList> {
        Self::json(self.req(Method::GET, "/groups")).await
    }

    /// `POST /api/v1/groups`.
    pub async fn create_group(&self, group: &NewGroup) -> Result<Group> {
        self.post("/groups", group).await
    }

    /// `GET /api/v1/groups/{id-or-name}`: the group and one page of members.
    pub async fn group(&self, group: &str, query: &GroupMembersQuery) -> Result<GroupDetail> {
        Self::json(
            self.req(Method::GET, &format!("/groups/{}", Self::seg(group)))
                .query(query),
        )
        .await
    }

    /// `PATCH /api/v1/groups/{id-or-name}` (rename).
    pub async fn rename_group(&self, group: &str, name: &str) -> Result<Group> {
        self.send_json(
            Method::PATCH,
            &format!("/groups/{}", Self::seg(group)),
            &GroupPatch { name: name.into() },
        )
        .await
    }

    /// `DELETE /api/v1/groups/{id-or-name}`.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        Self::send(self.req(Method::DELETE, &format!("/groups/{}", Self::seg(group)))).await?;
        Ok(())
    }

    /// `POST /api/v1/groups/{id-or-name}/members`.
    pub async fn change_group_members(
        &self,
        group: &str,
        change: &GroupMembersChange,
    ) -> Result<Group> {
        self.post(&format!("/groups/{}/members", Self::seg(group)), change)
            .await
    }

    /// `POST /api/v1/groups/{id-or-name}/local-reset`.
    pub async fn group_local_reset(
        &self,
        group: &str,
        allowed: bool,
    ) -> Result<GroupLocalResetResult> {
        self.post(
            &format!("/groups/{}/local-reset", Self::seg(group)),
            &LocalResetPolicy { allowed },
        )
        .await
    }

    /// `POST /api/v1/actions/bulk` with `dry_run: true` (whatever `request` says).
    pub async fn bulk_plan(&self, request: &BulkRequest) -> Result<BulkPlan> {
        let request = BulkRequest {
            dry_run: true,
            ..request.clone()
        };
        self.post("/actions/bulk", &request).await
    }

    /// `POST /api/v1/actions/bulk` (202: the batch; `dry_run` is forced off).
    pub async fn bulk_action(&self, request: &BulkRequest) -> Result<BatchCreated> {
        let request = BulkRequest {
            dry_run: false,
            ..request.clone()
        };
        self.post("/actions/bulk", &request).await
    }

    /// `GET /api/v1/batches`.
    pub async fn batches(&self, query: &BatchListQuery) -> Result<BatchPage> {
        Self::json(self.req(Method::GET, "/batches").query(query)).await
    }

    /// `POST /api/v1/batches/{id}/{verb}` with `verb` one of `pause`, `resume`, `cancel`.
    pub async fn steer_batch(&self, id: &str, verb: &str) -> Result<BatchSteered> {
        let path = format!("/batches/{}/{}", Self::seg(id), Self::seg(verb));
        Self::json(self.req(Method::POST, &path)).await
    }

    /// `GET /api/v1/batches/{id}`.
    pub async fn batch(&self, id: &str) -> Result<BatchStatus> {
        Self::json(self.req(Method::GET, &format!("/batches/{}", Self::seg(id)))).await
    }

    /// `GET /api/v1/schedules`.
    pub async fn schedules(&self) -> Result<ScheduleList> {
        Self::json(self.req(Method::GET, "/schedules")).await
    }

    /// `POST /api/v1/schedules`.
    pub async fn create_schedule(&self, schedule: &NewSchedule) -> Result<Schedule> {
        self.post("/schedules", schedule).await
    }

    /// `GET /api/v1/schedules/{id-or-name}`.
    pub async fn schedule(&self, id: &str) -> Result<Schedule> {
        Self::json(self.req(Method::GET, &format!("/schedules/{}", Self::seg(id)))).await
    }

    /// `PATCH /api/v1/schedules/{id-or-name}`.
    pub async fn update_schedule(&self, id: &str, patch: &SchedulePatch) -> Result<Schedule> {
        self.send_json(
            Method::PATCH,
            &format!("/schedules/{}", Self::seg(id)),
            patch,
        )
        .await
    }

    /// `DELETE /api/v1/schedules/{id-or-name}`.
    pub async fn delete_schedule(&self, id: &str) -> Result<()> {
        Self::send(self.req(Method::DELETE, &format!("/schedules/{}", Self::seg(id)))).await?;
        Ok(())
    }

    /// `POST /api/v1/autopilot/import` with the Intune CSV as `text/csv`.
    pub async fn import_autopilot(&self, csv: impl Into<Vec<u8>>) -> Result<AutopilotImportResult> {
        Self::json(
            self.req(Method::POST, "/autopilot/import")
                .header(reqwest::header::CONTENT_TYPE, "text/csv")
                .body(csv.into()),
        )
        .await
    }

    /// `GET /api/v1/autopilot/devices`.
    pub async fn autopilot_devices(&self) -> Result<AutopilotDeviceList> {
        Self::json(self.req(Method::GET, "/autopilot/devices")).await
    }

    /// `PUT /api/v1/devices/{id}/primary-user`: the device as saved.
    pub async fn set_primary_user(&self, device_id: &str, user: &PrimaryUser) -> Result<Device> {
        self.send_json(
            Method::PUT,
            &format!("/devices/{}/primary-user", Self::seg(device_id)),
            user,
        )
        .await
    }

    /// `GET /api/v1/webhooks`.
    pub async fn webhooks(&self) -> Result<WebhookList> {
        Self::json(self.req(Method::GET, "/webhooks")).await
    }

    /// `POST /api/v1/webhooks` (the secret is returned only if the server generated it).
    pub async fn create_webhook(&self, webhook: &NewWebhook) -> Result<CreatedWebhook> {
        self.post("/webhooks", webhook).await
    }

    /// `DELETE /api/v1/webhooks/{id}` (with its deliveries).
    pub async fn delete_webhook(&self, id: &str) -> Result<()> {
        Self::send(self.req(Method::DELETE, &format!("/webhooks/{id}"))).await?;
        Ok(())
    }

    /// `PATCH /api/v1/webhooks/{id}` `{"enabled": …}`: answers the webhook as it is now.
    pub async fn set_webhook_enabled(&self, id: &str, enabled: bool) -> Result<Webhook> {
        self.send_json(
            Method::PATCH,
            &format!("/webhooks/{}", Self::seg(id)),
            &WebhookPatch { enabled },
        )
        .await
    }

    /// `GET /api/v1/webhooks/{id}/deliveries`, newest first.
    pub async fn webhook_deliveries(&self, id: &str) -> Result<WebhookDeliveryList> {
        Self::json(self.req(Method::GET, &format!("/webhooks/{id}/deliveries"))).await
    }

    /// `POST /api/v1/webhooks/{id}/test`: sends a `ping` now and answers how it went.
    pub async fn test_webhook(&self, id: &str) -> Result<WebhookDelivery> {
        Self::json(self.req(Method::POST, &format!("/webhooks/{id}/test"))).await
    }

    /// `GET /api/v1/openapi.json`.
    pub async fn openapi(&self) -> Result<serde_json::Value> {
        Self::json(self.req(Method::GET, "/openapi.json")).await
    }
}
