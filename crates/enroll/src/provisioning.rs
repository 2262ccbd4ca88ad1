//! The wap-provisioningdoc carried in the RSTR: a generic characteristic/parm tree, its XML form,
//! and the typed enrollment view (certificates, w7 APPLICATION, DMClient) per
//! docs/protocol.md §2.5.

use base64::Engine;

use crate::xml::{self, esc_attr, Element};
use crate::{Error, Result};

/// `<parm name=".." value=".." datatype=".."/>`; `value: None` is a valueless flag parm
/// such as `BACKCOMPATRETRYDISABLED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parm {
    pub name: String,
    pub value: Option<String>,
    pub datatype: Option<String>,
}

impl Parm {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Parm {
            name: name.into(),
            value: Some(value.into()),
            datatype: None,
        }
    }

    pub fn flag(name: impl Into<String>) -> Self {
        Parm {
            name: name.into(),
            value: None,
            datatype: None,
        }
    }

    pub fn typed(name: impl Into<String>, value: impl Into<String>, datatype: &str) -> Self {
        Parm {
            name: name.into(),
            value: Some(value.into()),
            datatype: Some(datatype.to_string()),
        }
    }
}

/// `<characteristic type="..">`: parms first, then nested characteristics (the order
/// Windows' own samples and real servers use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Characteristic {
    pub kind: String,
    pub parms: Vec<Parm>,
    pub children: Vec<Characteristic>,
}

impl Characteristic {
    pub fn new(kind: impl Into<String>) -> Self {
        Characteristic {
            kind: kind.into(),
            parms: Vec::new(),
            children: Vec::new(),
        }
    }

    pub fn with_parm(mut self, parm: Parm) -> Self {
        self.parms.push(parm);
        self
    }

    pub fn with_child(mut self, child: Characteristic) -> Self {
        self.children.push(child);
        self
    }

    /// First child of the given type. Characteristic types are case-sensitive (ITPRO w7 CSP).
    pub fn child(&self, kind: &str) -> Option<&Characteristic> {
        self.children.iter().find(|c| c.kind == kind)
    }

    pub fn parm(&self, name: &str) -> Option<&Parm> {
        self.parms.iter().find(|p| p.name == name)
    }

    pub fn parm_value(&self, name: &str) -> Option<&str> {
        self.parm(name).and_then(|p| p.value.as_deref())
    }

    fn write(&self, out: &mut String) {
        out.push_str(&format!(
            "<characteristic type=\"{}\">",
            esc_attr(&self.kind)
        ));
        for p in &self.parms {
            out.push_str(&format!("<parm name=\"{}\"", esc_attr(&p.name)));
            if let Some(v) = &p.value {
                out.push_str(&format!(" value=\"{}\"", esc_attr(v)));
            }
            if let Some(d) = &p.datatype {
                out.push_str(&format!(" datatype=\"{}\"", esc_attr(d)));
            }
            out.push_str("/>");
        }
        for c in &self.children {
            c.write(out);
        }
        out.push_str("</characteristic>");
    }
}

/// A whole `<wap-provisioningdoc>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisioningDoc {
    pub version: String,
    pub characteristics: Vec<Characteristic>,
}

impl Default for ProvisioningDoc {
    fn default() -> Self {
        ProvisioningDoc {
            version: "1.1".into(),
            characteristics: Vec::new(),
        }
    }
}

/// Where the client certificate is installed: `My/User` for Full enrollments, `My/System`
/// for Device (Entra-join) enrollments (docs/protocol.md fact 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertStore {
    User,
    System,
}

impl CertStore {
    pub fn for_enrollment(kind: &crate::EnrollmentType) -> Self {
        match kind {
            crate::EnrollmentType::Device => CertStore::System,
            _ => CertStore::User,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CertStore::User => "User",
            CertStore::System => "System",
        }
    }
}

/// `CertificateStore/My/WSTEP/Renew` (enables certificate renewal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    pub robo_support: bool,
    /// Days before expiry when renewal starts.
    pub renew_period_days: u32,
    /// Days between renewal retries.
    pub retry_interval_days: u32,
}

/// One `APPAUTH` block of the w7 APPLICATION characteristic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAuth {
    /// `CLIENT` (server authenticates to the client) or `APPSRV` (client to server).
    pub level: String,
    /// `DIGEST` or `BASIC`.
    pub auth_type: String,
    pub name: Option<String>,
    pub secret: Option<String>,
    pub data: Option<String>,
}

impl AppAuth {
    /// CLIENT level must be DIGEST (ITPRO w7-application-csp.md); `nonce` goes in AAUTHDATA.
    pub fn client_digest(secret: impl Into<String>, nonce: impl Into<String>) -> Self {
        AppAuth {
            level: "CLIENT".into(),
            auth_type: "DIGEST".into(),
            name: None,
            secret: Some(secret.into()),
            data: Some(nonce.into()),
        }
    }

    pub fn server_digest(name: impl Into<String>, secret: impl Into<String>) -> Self {
        AppAuth {
            level: "APPSRV".into(),
            auth_type: "DIGEST".into(),
            name: Some(name.into()),
            secret: Some(secret.into()),
            data: None,
        }
    }
}

/// DMClient `Poll` schedule (minutes). `None` fields are not sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PollSchedule {
    pub number_of_first_retries: Option<u32>,
    pub interval_for_first_set_of_retries: Option<u32>,
    pub number_of_second_retries: Option<u32>,
    pub interval_for_second_set_of_retries: Option<u32>,
    pub number_of_remaining_scheduled_retries: Option<u32>,
    pub interval_for_remaining_scheduled_retries: Option<u32>,
    pub poll_on_login: Option<bool>,
    pub all_users_poll_on_first_login: Option<bool>,
}

const POLL_INTEGERS: [&str; 6] = [
    "NumberOfFirstRetries",
    "IntervalForFirstSetOfRetries",
    "NumberOfSecondRetries",
    "IntervalForSecondSetOfRetries",
    "NumberOfRemainingScheduledRetries",
    "IntervalForRemainingScheduledRetries",
];

impl PollSchedule {
    /// Microsoft's sample schedule (ITPRO federated doc): 8 × 15 min, 5 × 3 min, then every
    /// 1560 min forever; poll at login.
    pub fn recommended() -> Self {
        PollSchedule {
            number_of_first_retries: Some(8),
            interval_for_first_set_of_retries: Some(15),
            number_of_second_retries: Some(5),
            interval_for_second_set_of_retries: Some(3),
            number_of_remaining_scheduled_retries: Some(0),
            interval_for_remaining_scheduled_retries: Some(1560),
            poll_on_login: Some(true),
            all_users_poll_on_first_login: Some(true),
        }
    }

    fn integers(&self) -> [Option<u32>; 6] {
        [
            self.number_of_first_retries,
            self.interval_for_first_set_of_retries,
            self.number_of_second_retries,
            self.interval_for_second_set_of_retries,
            self.number_of_remaining_scheduled_retries,
            self.interval_for_remaining_scheduled_retries,
        ]
    }
}

/// The typed content of an enrollment provisioning document: what the server decides and
/// what a client must apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentProvisioning {
    /// Trust anchor installed in `Root/System`.
    pub root_certificate_der: Vec<u8>,
    pub client_certificate_der: Vec<u8>,
    pub client_store: CertStore,
    pub renewal: Option<Renewal>,
    /// Server id: the w7 `PROVIDER-ID` and the `DMClient/Provider/<id>` node name.
    pub provider_id: String,
    pub name: String,
    /// OMA-DM management URL (w7 `ADDR`).
    pub addr: String,
    pub conn_retry_freq: Option<u32>,
    pub initial_backoff_ms: Option<u32>,
    pub max_backoff_ms: Option<u32>,
    pub backcompat_retry_disabled: bool,
    pub default_encoding: Option<String>,
    /// Other w7 parms (e.g. `SSLCLIENTCERTSEARCHCRITERIA`, `ROLE`), written after the known ones.
    pub extra_w7_parms: Vec<Parm>,
    pub app_auth: Vec<AppAuth>,
    /// Parms of `DMClient/Provider/<id>` such as `EntDMID`, `UPN`.
    pub dmclient_parms: Vec<(String, String)>,
    pub poll: PollSchedule,
}

/// Default w7 DEFAULTENCODING: SyncML XML (not WBXML).
pub const SYNCML_XML: &str = "application/vnd.syncml.dm+xml";

impl EnrollmentProvisioning {
    /// The values real Windows clients accept from FLEET and MS samples (docs/protocol.md §2.5):
    /// retry 3, backoff 16 s to 24 h, XML encoding, both DIGEST APPAUTH blocks, renewal
    /// 42 days before expiry, MS sample poll schedule. Callers set secrets and DMClient parms.
    pub fn new(
        root_certificate_der: Vec<u8>,
        client_certificate_der: Vec<u8>,
        client_store: CertStore,
        provider_id: impl Into<String>,
        name: impl Into<String>,
        addr: impl Into<String>,
    ) -> Self {
        EnrollmentProvisioning {
            root_certificate_der,
            client_certificate_der,
            client_store,
            renewal: Some(Renewal {
                robo_support: true,
                renew_period_days: 42,
                retry_interval_days: 7,
            }),
            provider_id: provider_id.into(),
            name: name.into(),
            addr: addr.into(),
            conn_retry_freq: Some(3),
            initial_backoff_ms: Some(16_000),
            max_backoff_ms: Some(86_400_000),
            backcompat_retry_disabled: true,
            default_encoding: Some(SYNCML_XML.into()),
            extra_w7_parms: Vec::new(),
            app_auth: vec![
                AppAuth::client_digest("", ""),
                AppAuth::server_digest("", ""),
            ],
            dmclient_parms: Vec::new(),
            poll: PollSchedule::recommended(),
        }
    }

    /// The answer to a certificate renewal (ITPRO certificate-renewal-windows-mdm.md,
    /// "Certificate renewal response": the same as an enrollment's except that only the new
    /// certificate is needed): the CertificateStore part (root, the new client certificate,
    /// WSTEP/Renew) and the w7 APPLICATION's APPID and PROVIDER-ID; nothing else is
    /// provisioned again.
    pub fn to_renewal_doc(&self) -> ProvisioningDoc {
        let app = Characteristic::new("APPLICATION")
            .with_parm(Parm::new("APPID", "w7"))
            .with_parm(Parm::new("PROVIDER-ID", &self.provider_id));
        ProvisioningDoc {
            version: "1.1".into(),
            characteristics: vec![self.certificate_store(), app],
        }
    }

    /// Builds the document (docs/protocol.md §2.5 items 1–5).
    pub fn to_doc(&self) -> ProvisioningDoc {
        let store = self.certificate_store();
        self.with_store(store)
    }

    /// `CertificateStore`: the root, the client certificate and (when set) WSTEP/Renew.
    fn certificate_store(&self) -> Characteristic {
        let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
        let root =
            Characteristic::new("Root").with_child(Characteristic::new("System").with_child(
                Characteristic::new(crate::ca::thumbprint(&self.root_certificate_der)).with_parm(
                    Parm::new("EncodedCertificate", b64(&self.root_certificate_der)),
                ),
            ));
        let mut my = Characteristic::new("My").with_child(
            Characteristic::new(self.client_store.as_str())
                .with_child(
                    Characteristic::new(crate::ca::thumbprint(&self.client_certificate_der))
                        .with_parm(Parm::new(
                            "EncodedCertificate",
                            b64(&self.client_certificate_der),
                        )),
                )
                // Required even though empty (docs/protocol.md fact 8); a sibling of the
                // certificate, as in the MS federated sample and the Fleet capture (08).
                .with_child(Characteristic::new("PrivateKeyContainer")),
        );
        if let Some(r) = &self.renewal {
            // Datatypes must be explicit when present (ITPRO federated doc).
            my = my.with_child(
                Characteristic::new("WSTEP").with_child(
                    Characteristic::new("Renew")
                        .with_parm(Parm::typed(
                            "ROBOSupport",
                            r.robo_support.to_string(),
                            "boolean",
                        ))
                        .with_parm(Parm::typed(
                            "RenewPeriod",
                            r.renew_period_days.to_string(),
                            "integer",
                        ))
                        .with_parm(Parm::typed(
                            "RetryInterval",
                            r.retry_interval_days.to_string(),
                            "integer",
                        )),
                ),
            );
        }
        Characteristic::new("CertificateStore")
            .with_child(root)
            .with_child(my)
    }

    /// The whole enrollment document around `store`.
    fn with_store(&self, store: Characteristic) -> ProvisioningDoc {
        // w7 parm names are case-sensitive UPPERCASE (ITPRO w7-application-csp.md).
        let mut app = Characteristic::new("APPLICATION")
            .with_parm(Parm::new("APPID", "w7"))
            .with_parm(Parm::new("PROVIDER-ID", &self.provider_id))
            .with_parm(Parm::new("NAME", &self.name))
            .with_parm(Parm::new("ADDR", &self.addr));
        for (name, value) in [
            ("CONNRETRYFREQ", self.conn_retry_freq),
            ("INITIALBACKOFFTIME", self.initial_backoff_ms),
            ("MAXBACKOFFTIME", self.max_backoff_ms),
        ] {
            if let Some(v) = value {
                app = app.with_parm(Parm::new(name, v.to_string()));
            }
        }
        if self.backcompat_retry_disabled {
            app = app.with_parm(Parm::flag("BACKCOMPATRETRYDISABLED"));
        }
        if let Some(enc) = &self.default_encoding {
            app = app.with_parm(Parm::new("DEFAULTENCODING", enc));
        }
        app.parms.extend(self.extra_w7_parms.iter().cloned());
        for auth in &self.app_auth {
            let mut c = Characteristic::new("APPAUTH")
                .with_parm(Parm::new("AAUTHLEVEL", &auth.level))
                .with_parm(Parm::new("AAUTHTYPE", &auth.auth_type));
            for (name, value) in [
                ("AAUTHNAME", &auth.name),
                ("AAUTHSECRET", &auth.secret),
                ("AAUTHDATA", &auth.data),
            ] {
                if let Some(v) = value {
                    c = c.with_parm(Parm::new(name, v));
                }
            }
            app = app.with_child(c);
        }

        let mut poll = Characteristic::new("Poll");
        for (name, value) in POLL_INTEGERS.iter().zip(self.poll.integers()) {
            if let Some(v) = value {
                poll = poll.with_parm(Parm::typed(*name, v.to_string(), "integer"));
            }
        }
        for (name, value) in [
            ("PollOnLogin", self.poll.poll_on_login),
            (
                "AllUsersPollOnFirstLogin",
                self.poll.all_users_poll_on_first_login,
            ),
        ] {
            if let Some(v) = value {
                poll = poll.with_parm(Parm::typed(name, v.to_string(), "boolean"));
            }
        }
        let mut provider = Characteristic::new(&self.provider_id);
        for (name, value) in &self.dmclient_parms {
            provider = provider.with_parm(Parm::new(name, value));
        }
        let dmclient = Characteristic::new("DMClient")
            .with_child(Characteristic::new("Provider").with_child(provider.with_child(poll)));

        ProvisioningDoc {
            version: "1.1".into(),
            characteristics: vec![store, app, dmclient],
        }
    }
}

impl ProvisioningDoc {
    pub fn characteristic(&self, kind: &str) -> Option<&Characteristic> {
        self.characteristics.iter().find(|c| c.kind == kind)
    }

    /// The w7 `APPLICATION` characteristic (there may be others with a different APPID).
    pub fn w7(&self) -> Option<&Characteristic> {
        self.characteristics
            .iter()
            .find(|c| c.kind == "APPLICATION" && c.parm_value("APPID") == Some("w7"))
    }

    /// Serialises as Windows expects: XML declaration, then the compact document.
    pub fn to_xml(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        out.push_str(&format!(
            "<wap-provisioningdoc version=\"{}\">",
            esc_attr(&self.version)
        ));
        for c in &self.characteristics {
            c.write(&mut out);
        }
        out.push_str("</wap-provisioningdoc>");
        out
    }

    /// The client certificate in `CertificateStore/My/User` (or `My/System`) with its
    /// PrivateKeyContainer: what an enrollment or a renewal answer installs.
    pub fn client_certificate(&self) -> Result<(CertStore, Vec<u8>)> {
        let missing = |what: &str| Error::Provisioning(format!("it has no {what}"));
        let my = self
            .characteristic("CertificateStore")
            .and_then(|s| s.child("My"))
            .ok_or_else(|| missing("CertificateStore/My characteristic"))?;
        let (client_store, client_parent) = match (my.child("User"), my.child("System")) {
            (Some(u), _) => (CertStore::User, u),
            (None, Some(s)) => (CertStore::System, s),
            _ => return Err(missing("CertificateStore/My/User or My/System certificate")),
        };
        let client_cert = client_parent
            .children
            .iter()
            .find(|c| c.kind != "PrivateKeyContainer")
            .ok_or_else(|| missing("client certificate"))?;
        let value = client_cert
            .parm_value("EncodedCertificate")
            .ok_or_else(|| missing("EncodedCertificate for the client certificate"))?;
        let der = crate::decode_base64(value).map_err(|e| {
            Error::Provisioning(format!(
                "client certificate EncodedCertificate is not base64: {e}"
            ))
        })?;
        // Accept the container beside the certificate (MS sample, capture 08) or inside it.
        if client_parent.child("PrivateKeyContainer").is_none()
            && client_cert.child("PrivateKeyContainer").is_none()
        {
            return Err(missing("PrivateKeyContainer for the client certificate"));
        }
        Ok((client_store, der))
    }

    /// Reads the typed enrollment content (what a client applies). Errors name what is
    /// missing; optional parts (renewal, backoff values, DMClient parms) may be absent.
    pub fn enrollment(&self) -> Result<EnrollmentProvisioning> {
        let missing = |what: &str| Error::Provisioning(format!("it has no {what}"));
        let decode = |c: &Characteristic, what: &str| -> Result<Vec<u8>> {
            let v = c
                .parm_value("EncodedCertificate")
                .ok_or_else(|| missing(&format!("EncodedCertificate for the {what}")))?;
            crate::decode_base64(v).map_err(|e| {
                Error::Provisioning(format!("{what} EncodedCertificate is not base64: {e}"))
            })
        };
        let store = self
            .characteristic("CertificateStore")
            .ok_or_else(|| missing("CertificateStore characteristic"))?;
        let root_cert = store
            .child("Root")
            .and_then(|r| r.child("System"))
            .and_then(|s| s.children.first())
            .ok_or_else(|| missing("CertificateStore/Root/System certificate"))?;
        let root_certificate_der = decode(root_cert, "root certificate")?;
        let my = store
            .child("My")
            .ok_or_else(|| missing("CertificateStore/My characteristic"))?;
        let (client_store, client_certificate_der) = self.client_certificate()?;
        let renewal = match my.child("WSTEP").and_then(|w| w.child("Renew")) {
            None => None,
            Some(r) => Some(Renewal {
                robo_support: r.parm_value("ROBOSupport").map(str::trim) == Some("true"),
                renew_period_days: parse_u32(r, "RenewPeriod")?.unwrap_or(0),
                retry_interval_days: parse_u32(r, "RetryInterval")?.unwrap_or(0),
            }),
        };

        let app = self
            .w7()
            .ok_or_else(|| missing("APPLICATION characteristic with APPID w7"))?;
        let provider_id = app
            .parm_value("PROVIDER-ID")
            .ok_or_else(|| missing("w7 PROVIDER-ID"))?
            .to_string();
        let addr = app
            .parm_value("ADDR")
            .ok_or_else(|| missing("w7 ADDR"))?
            .to_string();
        const KNOWN: [&str; 9] = [
            "APPID",
            "PROVIDER-ID",
            "NAME",
            "ADDR",
            "CONNRETRYFREQ",
            "INITIALBACKOFFTIME",
            "MAXBACKOFFTIME",
            "BACKCOMPATRETRYDISABLED",
            "DEFAULTENCODING",
        ];
        let app_auth = app
            .children
            .iter()
            .filter(|c| c.kind == "APPAUTH")
            .map(|c| AppAuth {
                level: c.parm_value("AAUTHLEVEL").unwrap_or_default().to_string(),
                auth_type: c.parm_value("AAUTHTYPE").unwrap_or_default().to_string(),
                name: c.parm_value("AAUTHNAME").map(str::to_string),
                secret: c.parm_value("AAUTHSECRET").map(str::to_string),
                data: c.parm_value("AAUTHDATA").map(str::to_string),
            })
            .collect();

        let provider = self
            .characteristic("DMClient")
            .and_then(|d| d.child("Provider"))
            .and_then(|p| p.child(&provider_id))
            .ok_or_else(|| {
                missing(&format!(
                    "DMClient/Provider/{provider_id} (it must match the w7 PROVIDER-ID)"
                ))
            })?;
        let mut poll = PollSchedule::default();
        if let Some(p) = provider.child("Poll") {
            let ints = POLL_INTEGERS
                .iter()
                .map(|n| parse_u32(p, n))
                .collect::<Result<Vec<_>>>()?;
            poll.number_of_first_retries = ints[0];
            poll.interval_for_first_set_of_retries = ints[1];
            poll.number_of_second_retries = ints[2];
            poll.interval_for_second_set_of_retries = ints[3];
            poll.number_of_remaining_scheduled_retries = ints[4];
            poll.interval_for_remaining_scheduled_retries = ints[5];
            poll.poll_on_login = p.parm_value("PollOnLogin").map(|v| v.trim() == "true");
            poll.all_users_poll_on_first_login = p
                .parm_value("AllUsersPollOnFirstLogin")
                .map(|v| v.trim() == "true");
        }

        Ok(EnrollmentProvisioning {
            root_certificate_der,
            client_certificate_der,
            client_store,
            renewal,
            name: app.parm_value("NAME").unwrap_or_default().to_string(),
            conn_retry_freq: parse_u32(app, "CONNRETRYFREQ")?,
            initial_backoff_ms: parse_u32(app, "INITIALBACKOFFTIME")?,
            max_backoff_ms: parse_u32(app, "MAXBACKOFFTIME")?,
            backcompat_retry_disabled: app.parm("BACKCOMPATRETRYDISABLED").is_some(),
            default_encoding: app.parm_value("DEFAULTENCODING").map(str::to_string),
            extra_w7_parms: app
                .parms
                .iter()
                .filter(|p| !KNOWN.contains(&p.name.as_str()))
                .cloned()
                .collect(),
            app_auth,
            dmclient_parms: provider
                .parms
                .iter()
                .map(|p| (p.name.clone(), p.value.clone().unwrap_or_default()))
                .collect(),
            poll,
            provider_id,
            addr,
        })
    }
}

fn parse_u32(c: &Characteristic, name: &str) -> Result<Option<u32>> {
    match c.parm_value(name) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            Error::Provisioning(format!(
                "parm {name} of {} is not an integer: {v:?}",
                c.kind
            ))
        }),
    }
}

/// Parses a `<wap-provisioningdoc>` (with or without an XML declaration).
pub fn parse(xml_text: &str) -> Result<ProvisioningDoc> {
    let root = xml::parse_document(xml_text.as_bytes())?;
    from_element(&root)
}

pub(crate) fn from_element(root: &Element) -> Result<ProvisioningDoc> {
    if root.name != "wap-provisioningdoc" {
        return Err(root.error(format!(
            "expected <wap-provisioningdoc>, found <{}>",
            root.name
        )));
    }
    let mut doc = ProvisioningDoc {
        version: root.attr("version").unwrap_or("1.1").to_string(),
        characteristics: Vec::new(),
    };
    for child in &root.children {
        doc.characteristics.push(characteristic(child)?);
    }
    Ok(doc)
}

fn characteristic(e: &Element) -> Result<Characteristic> {
    if e.name != "characteristic" {
        return Err(e.error(format!(
            "expected <characteristic> or <parm>, found <{}>",
            e.name
        )));
    }
    let kind = e
        .attr("type")
        .ok_or_else(|| e.error("<characteristic> has no type attribute"))?;
    let mut c = Characteristic::new(kind);
    for child in &e.children {
        if child.name == "parm" {
            let name = child
                .attr("name")
                .ok_or_else(|| child.error("<parm> has no name attribute"))?;
            c.parms.push(Parm {
                name: name.to_string(),
                value: child.attr("value").map(str::to_string),
                datatype: child.attr("datatype").map(str::to_string),
            });
        } else {
            c.children.push(characteristic(child)?);
        }
    }
    Ok(c)
}
