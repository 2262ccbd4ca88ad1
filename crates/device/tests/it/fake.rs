//! An in-memory server behind the `Transport` trait: enrollment answers written by `enroll`'s
//! server-side writers with a CA from `enroll::ca`, and OMA-DM answers replayed from a script
//! (SyncML built with the `syncml` crate). It records every request the PC made.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use device::transport::{Identity, Response, Transport};
use enroll::ca::CertificateAuthority;
use enroll::provisioning::{CertStore, EnrollmentProvisioning};
use syncml::{Command, LocUri, Status, StatusCode, SyncBody, SyncHdr, SyncMl};

use crate::common::t0;

pub const SERVER: &str = "https://mdm.example.test";
pub const ADDR: &str = "https://mdm.example.test/ManagementServer/MDM.svc";
pub const TOKEN: &str = "enroll-token-123";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: &'static str,
    pub url: String,
    pub content_type: String,
    pub body: Vec<u8>,
    pub identity: Option<Identity>,
}

impl Seen {
    pub fn syncml(&self) -> SyncMl {
        syncml::parse(&self.body).unwrap()
    }
}

/// What the OMA-DM endpoint answers.
pub enum Mdm {
    /// Replays these answers in order; when they run out, answers an empty 200.
    Script(VecDeque<Response>),
    /// Always answers with a Status for the PC's SyncHdr and Final (a server with nothing to do).
    Idle,
    /// Like `Idle`, but the first session of each PC (by DevId) gets an Exec of
    /// doAutomaticRedeployment.
    ResetEachPcOnce(std::collections::HashSet<String>),
}

pub struct FakeServer {
    pub ca: CertificateAuthority,
    pub seen: Mutex<Vec<Seen>>,
    pub mdm: Mutex<Mdm>,
    /// Answer the RST with this fault instead of a certificate.
    pub rst_fault: Option<enroll::Fault>,
    /// The server's clock (certificate validity).
    pub now: time::OffsetDateTime,
}

impl FakeServer {
    pub fn new(mdm: Mdm) -> Self {
        Self::new_at(mdm, t0())
    }

    pub fn new_at(mdm: Mdm, now: time::OffsetDateTime) -> Self {
        FakeServer {
            ca: CertificateAuthority::generate("Redeploy Test CA", now).unwrap(),
            seen: Mutex::new(Vec::new()),
            mdm: Mutex::new(mdm),
            rst_fault: None,
            now,
        }
    }

    pub fn scripted(answers: Vec<SyncMl>) -> Self {
        Self::new(Mdm::Script(answers.iter().map(ok_syncml).collect()))
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The OMA-DM messages the PC sent, parsed.
    pub fn dm_messages(&self) -> Vec<SyncMl> {
        self.seen()
            .iter()
            .filter(|s| s.content_type == syncml::codes::CONTENT_TYPE)
            .map(Seen::syncml)
            .collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.url.contains(path)).count()
    }

    fn enroll_answer(&self, url: &str, body: &[u8]) -> Response {
        let message = enroll::parse_message(body).unwrap();
        let xml = match message {
            enroll::EnrollMessage::Discover(d) => enroll::write_discover_response(
                &enroll::DiscoverResponse {
                    auth_policy: enroll::AuthPolicy::OnPremise,
                    enrollment_version: "5.0".into(),
                    enrollment_policy_service_url: Some(format!(
                        "{SERVER}/EnrollmentServer/Policy.svc"
                    )),
                    enrollment_service_url: format!("{SERVER}/EnrollmentServer/Enrollment.svc"),
                    authentication_service_url: None,
                },
                &d.message_id,
            ),
            enroll::EnrollMessage::GetPolicies(p) => enroll::write_get_policies_response(
                &enroll::PolicyResponse::default(),
                &p.message_id,
            ),
            enroll::EnrollMessage::RequestSecurityToken(r) => {
                assert!(url.ends_with("/EnrollmentServer/Enrollment.svc"), "{url}");
                if let Some(fault) = &self.rst_fault {
                    return Response {
                        status: 500,
                        content_type: "application/soap+xml; charset=utf-8".into(),
                        body: enroll::write_fault(fault, &r.message_id).into_bytes(),
                    };
                }
                let csr = enroll::ca::verify_csr(&r.csr_der).unwrap();
                let device_id = r.context.device_id().unwrap();
                let issued = self
                    .ca
                    .issue_device_certificate(&csr, device_id, self.now, 365)
                    .unwrap();
                let store = CertStore::for_enrollment(&r.context.enrollment_type().unwrap());
                let mut plan = EnrollmentProvisioning::new(
                    self.ca.cert_der().to_vec(),
                    issued.der,
                    store,
                    "Redeploy",
                    "Redeploy",
                    ADDR,
                );
                plan.dmclient_parms = vec![("EntDMID".into(), device_id.into())];
                enroll::write_rstr(
                    &enroll::Rstr {
                        provisioning: plan.to_doc(),
                    },
                    &r.message_id,
                    self.now,
                )
            }
        };
        Response {
            status: 200,
            content_type: "application/soap+xml; charset=utf-8".into(),
            body: xml.into_bytes(),
        }
    }

    fn mdm_answer(&self, body: &[u8]) -> Response {
        let mut mdm = self.mdm.lock().unwrap();
        match &mut *mdm {
            Mdm::Script(queue) => queue.pop_front().unwrap_or(Response {
                status: 200,
                content_type: syncml::codes::CONTENT_TYPE.into(),
                body: Vec::new(),
            }),
            Mdm::ResetEachPcOnce(done) => {
                let pc = syncml::parse(body).unwrap();
                let dev_id = pc.hdr.source.as_ref().unwrap().as_str().to_string();
                let mut commands = vec![hdr_status(&pc.hdr.msg_id)];
                if pc.hdr.msg_id == "1" && done.insert(dev_id) {
                    commands.push(crate::common::exec("2", crate::common::RESET_NODE));
                }
                ok_syncml(&server_message(
                    &pc.hdr.session_id,
                    &pc.hdr.msg_id,
                    commands,
                    true,
                ))
            }
            Mdm::Idle => {
                let pc = syncml::parse(body).unwrap();
                ok_syncml(&server_message(
                    &pc.hdr.session_id,
                    "1",
                    vec![hdr_status(&pc.hdr.msg_id)],
                    true,
                ))
            }
        }
    }
}

#[async_trait]
impl Transport for FakeServer {
    async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        client_identity: Option<&Identity>,
    ) -> device::Result<Response> {
        self.seen.lock().unwrap().push(Seen {
            method: "POST",
            url: url.to_string(),
            content_type: content_type.to_string(),
            body: body.clone(),
            identity: client_identity.cloned(),
        });
        if url.contains("/EnrollmentServer/") {
            Ok(self.enroll_answer(url, &body))
        } else {
            Ok(self.mdm_answer(&body))
        }
    }

    async fn get(&self, url: &str) -> device::Result<Response> {
        self.seen.lock().unwrap().push(Seen {
            method: "GET",
            url: url.to_string(),
            content_type: String::new(),
            body: Vec::new(),
            identity: None,
        });
        Ok(Response {
            status: 200,
            content_type: "text/html".into(),
            body: Vec::new(),
        })
    }
}

pub fn ok_syncml(msg: &SyncMl) -> Response {
    Response {
        status: 200,
        content_type: syncml::codes::CONTENT_TYPE.into(),
        body: syncml::write(msg).into_bytes(),
    }
}

/// A server → PC message.
pub fn server_message(
    session: &str,
    msg_id: &str,
    commands: Vec<Command>,
    is_final: bool,
) -> SyncMl {
    SyncMl {
        hdr: SyncHdr {
            ver_dtd: "1.2".into(),
            ver_proto: "DM/1.2".into(),
            session_id: session.into(),
            msg_id: msg_id.into(),
            target: Some(LocUri::parse("DEVICE").unwrap()),
            source: Some(LocUri::parse(ADDR).unwrap()),
            ..SyncHdr::default()
        },
        body: SyncBody { commands, is_final },
    }
}

/// The server's Status for the PC's SyncHdr (CmdRef 0).
pub fn hdr_status(msg_ref: &str) -> Command {
    hdr_status_code(msg_ref, 200)
}

pub fn hdr_status_code(msg_ref: &str, code: u16) -> Command {
    Command::Status(Status {
        cmd_id: "1".into(),
        msg_ref: msg_ref.into(),
        cmd_ref: "0".into(),
        cmd: "SyncHdr".into(),
        target_refs: Vec::new(),
        source_refs: Vec::new(),
        chal: None,
        code: StatusCode::from_u16(code),
        items: Vec::new(),
    })
}

/// A server that is not there (stopped, restarting): every request is refused.
pub struct Unreachable;

#[async_trait]
impl Transport for Unreachable {
    async fn post(
        &self,
        url: &str,
        _content_type: &str,
        _body: Vec<u8>,
        _client_identity: Option<&Identity>,
    ) -> device::Result<Response> {
        Err(device::DeviceError::Connect(format!(
            "{url}: Connection refused (os error 111)"
        )))
    }

    async fn get(&self, url: &str) -> device::Result<Response> {
        Err(device::DeviceError::Connect(format!(
            "{url}: Connection refused (os error 111)"
        )))
    }
}
