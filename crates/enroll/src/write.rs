//! Writers for enrollment SOAP messages: server answers and, for the device emulator, the
//! requests in the shape real Windows sends (fixtures 03, 05, 07).

use base64::Engine;
use time::OffsetDateTime;

use crate::messages::*;
use crate::ns;
use crate::xml::{esc, esc_attr};

/// How long an RSTR timestamp is valid (FLEET and the MS sample use 5 minutes).
const RSTR_TIMESTAMP_LIFETIME: time::Duration = time::Duration::minutes(5);

fn server_envelope(action: &str, relates_to: &str, extra_header: &str, body: &str) -> String {
    format!(
        concat!(
            r#"<s:Envelope xmlns:s="{soap}" xmlns:a="{addr}" xmlns:u="{wsu}">"#,
            r#"<s:Header><a:Action s:mustUnderstand="1">{action}</a:Action>"#,
            r#"<a:RelatesTo>{relates}</a:RelatesTo>{extra}</s:Header>"#,
            r#"<s:Body>{body}</s:Body></s:Envelope>"#
        ),
        soap = ns::SOAP12,
        addr = ns::ADDRESSING,
        wsu = ns::WSU,
        action = esc(action),
        relates = esc(relates_to),
        extra = extra_header,
        body = body,
    )
}

fn opt(name: &str, value: &Option<String>) -> String {
    value
        .as_ref()
        .map(|v| format!("<{name}>{}</{name}>", esc(v)))
        .unwrap_or_default()
}

/// DiscoverResponse (docs/protocol.md §2.2).
pub fn write_discover_response(response: &DiscoverResponse, relates_to: &str) -> String {
    let body = format!(
        concat!(
            r#"<DiscoverResponse xmlns="{ns}"><DiscoverResult>"#,
            "<AuthPolicy>{auth}</AuthPolicy><EnrollmentVersion>{version}</EnrollmentVersion>",
            "{policy}<EnrollmentServiceUrl>{service}</EnrollmentServiceUrl>{authn}",
            "</DiscoverResult></DiscoverResponse>"
        ),
        ns = ns::DISCOVERY,
        auth = esc(response.auth_policy.as_str()),
        version = esc(&response.enrollment_version),
        policy = opt(
            "EnrollmentPolicyServiceUrl",
            &response.enrollment_policy_service_url
        ),
        service = esc(&response.enrollment_service_url),
        authn = opt(
            "AuthenticationServiceUrl",
            &response.authentication_service_url
        ),
    );
    server_envelope(ns::ACTION_DISCOVER_RESPONSE, relates_to, "", &body)
}

/// GetPoliciesResponse (MS-XCEP; the attributes Windows honours per docs/protocol.md §2.3, the
/// rest `xsi:nil`). Unlike fixture 06, every nil attribute is well-formed.
pub fn write_get_policies_response(policy: &PolicyResponse, relates_to: &str) -> String {
    let (hash_ref, oids) = match &policy.hash_algorithm {
        Some(oid) => (
            format!(
                "<hashAlgorithmOIDReference>{}</hashAlgorithmOIDReference>",
                oid.reference_id
            ),
            format!(
                concat!(
                    "<oIDs><oID><value>{}</value><group>{}</group>",
                    "<oIDReferenceID>{}</oIDReferenceID><defaultName>{}</defaultName></oID></oIDs>"
                ),
                esc(&oid.value),
                oid.group,
                oid.reference_id,
                esc(&oid.default_name)
            ),
        ),
        None => (
            r#"<hashAlgorithmOIDReference xsi:nil="true"/>"#.to_string(),
            r#"<oIDs xsi:nil="true"/>"#.to_string(),
        ),
    };
    let body = format!(
        concat!(
            r#"<GetPoliciesResponse xmlns="{ns}"><response>"#,
            r#"<policyID/><policyFriendlyName xsi:nil="true"/><nextUpdateHours xsi:nil="true"/>"#,
            r#"<policiesNotChanged xsi:nil="true"/><policies><policy>"#,
            r#"<policyOIDReference>0</policyOIDReference><cAs xsi:nil="true"/><attributes>"#,
            r#"<commonName>Redeploy</commonName><policySchema>3</policySchema>"#,
            "<certificateValidity><validityPeriodSeconds>{validity}</validityPeriodSeconds>",
            "<renewalPeriodSeconds>{renewal}</renewalPeriodSeconds></certificateValidity>",
            "<permission><enroll>{enroll}</enroll><autoEnroll>false</autoEnroll></permission>",
            "<privateKeyAttributes><minimalKeyLength>{keylen}</minimalKeyLength>",
            r#"<keySpec xsi:nil="true"/><keyUsageProperty xsi:nil="true"/><permissions xsi:nil="true"/>"#,
            r#"<algorithmOIDReference xsi:nil="true"/><cryptoProviders xsi:nil="true"/></privateKeyAttributes>"#,
            "<revision><majorRevision>101</majorRevision><minorRevision>0</minorRevision></revision>",
            r#"<supersededPolicies xsi:nil="true"/><privateKeyFlags xsi:nil="true"/>"#,
            r#"<subjectNameFlags xsi:nil="true"/><enrollmentFlags xsi:nil="true"/>"#,
            r#"<generalFlags xsi:nil="true"/>{hash_ref}<rARequirements xsi:nil="true"/>"#,
            r#"<keyArchivalAttributes xsi:nil="true"/><extensions xsi:nil="true"/>"#,
            r#"</attributes></policy></policies></response><cAs xsi:nil="true"/>{oids}"#,
            "</GetPoliciesResponse>"
        ),
        ns = ns::POLICY,
        validity = policy.validity_period_seconds,
        renewal = policy.renewal_period_seconds,
        enroll = policy.enroll_permission,
        keylen = policy.minimal_key_length,
        hash_ref = hash_ref,
        oids = oids,
    );
    let body = format!(
        r#"<s:Body xmlns:xsi="{}" xmlns:xsd="{}">"#,
        ns::XSI,
        ns::XSD
    ) + &body
        + "</s:Body>";
    // The Body carries the xsi declaration, so the envelope is assembled by hand here.
    format!(
        concat!(
            r#"<s:Envelope xmlns:s="{soap}" xmlns:a="{addr}" xmlns:u="{wsu}">"#,
            r#"<s:Header><a:Action s:mustUnderstand="1">{action}</a:Action>"#,
            r#"<a:RelatesTo>{relates}</a:RelatesTo></s:Header>{body}</s:Envelope>"#
        ),
        soap = ns::SOAP12,
        addr = ns::ADDRESSING,
        wsu = ns::WSU,
        action = ns::ACTION_GET_POLICIES_RESPONSE,
        relates = esc(relates_to),
        body = body,
    )
}

/// RequestSecurityTokenResponseCollection carrying the base64 wap-provisioningdoc
/// (docs/protocol.md §2.5; ValueType with `5.0.0.0/`, fact 9).
pub fn write_rstr(rstr: &Rstr, relates_to: &str, now: OffsetDateTime) -> String {
    let doc = base64::engine::general_purpose::STANDARD.encode(rstr.provisioning.to_xml());
    let security = format!(
        concat!(
            r#"<o:Security xmlns:o="{wsse}" s:mustUnderstand="1"><u:Timestamp u:Id="_0">"#,
            "<u:Created>{created}</u:Created><u:Expires>{expires}</u:Expires></u:Timestamp></o:Security>"
        ),
        wsse = ns::WSSE,
        created = soap_time(now),
        expires = soap_time(now + RSTR_TIMESTAMP_LIFETIME),
    );
    let body = format!(
        concat!(
            r#"<RequestSecurityTokenResponseCollection xmlns="{wst}"><RequestSecurityTokenResponse>"#,
            "<TokenType>{token_type}</TokenType>",
            r#"<DispositionMessage xmlns="{enroll}"></DispositionMessage>"#,
            r#"<RequestedSecurityToken><BinarySecurityToken xmlns="{wsse}" ValueType="{value_type}" EncodingType="{encoding}">{doc}</BinarySecurityToken></RequestedSecurityToken>"#,
            r#"<RequestID xmlns="{enroll}">0</RequestID>"#,
            "</RequestSecurityTokenResponse></RequestSecurityTokenResponseCollection>"
        ),
        wst = ns::WST,
        token_type = ns::TOKEN_TYPE_DEVICE_ENROLLMENT,
        enroll = ns::ENROLLMENT,
        wsse = ns::WSSE,
        value_type = ns::TOKEN_TYPE_PROVISION_DOC,
        encoding = ns::BASE64_BINARY,
        doc = doc,
    );
    server_envelope(ns::ACTION_RSTRC, relates_to, &security, &body)
}

/// A SOAP 1.2 fault: Code `s:Receiver`, the MS-MDE2 subcode, a reason, and the optional
/// `deviceenrollmentserviceerror` detail (ITPRO mobile-device-enrollment.md). The Action is the
/// RSTRC one, as in Microsoft's documented fault samples; use [`write_fault_with_action`] to
/// answer the discovery or policy service with their own response action.
pub fn write_fault(fault: &Fault, relates_to: &str) -> String {
    write_fault_with_action(fault, ns::ACTION_RSTRC, relates_to)
}

/// [`write_fault`] with an explicit WS-Addressing Action.
pub fn write_fault_with_action(fault: &Fault, action: &str, relates_to: &str) -> String {
    let detail = fault
        .detail
        .as_ref()
        .map(|d| {
            format!(
                concat!(
                    r#"<s:Detail><deviceenrollmentserviceerror xmlns="{ns}">"#,
                    "<errortype>{t}</errortype><message>{m}</message><traceid>{id}</traceid>",
                    "</deviceenrollmentserviceerror></s:Detail>"
                ),
                ns = ns::ENROLLMENT,
                t = esc(d.error_type.as_str()),
                m = esc(&d.message),
                id = esc(&d.trace_id),
            )
        })
        .unwrap_or_default();
    let body = format!(
        concat!(
            "<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>{sub}</s:Value>",
            r#"</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{reason}</s:Text></s:Reason>"#,
            "{detail}</s:Fault>"
        ),
        sub = fault.code.qname(),
        reason = esc(&fault.reason),
        detail = detail,
    );
    server_envelope(action, relates_to, "", &body)
}

fn client_envelope(action: &str, message_id: &str, to: &str, security: &str, body: &str) -> String {
    format!(
        concat!(
            r#"<s:Envelope xmlns:s="{soap}" xmlns:a="{addr}" xmlns:u="{wsu}" xmlns:wsse="{wsse}" xmlns:wst="{wst}" xmlns:ac="{ac}">"#,
            r#"<s:Header><a:Action s:mustUnderstand="1">{action}</a:Action>"#,
            "<a:MessageID>{id}</a:MessageID><a:ReplyTo><a:Address>{anon}</a:Address></a:ReplyTo>",
            r#"<a:To s:mustUnderstand="1">{to}</a:To>{security}</s:Header>"#,
            "{body}</s:Envelope>"
        ),
        soap = ns::SOAP12,
        addr = ns::ADDRESSING,
        wsu = ns::WSU,
        wsse = ns::WSSE,
        wst = ns::WST,
        ac = ns::AC,
        action = action,
        id = esc(message_id),
        anon = ns::ANONYMOUS,
        to = esc(to),
        security = security,
        body = body,
    )
}

fn security_header(token: &SecurityToken) -> String {
    match token {
        SecurityToken::None => String::new(),
        SecurityToken::UsernameToken { username, password } => format!(
            concat!(
                r#"<wsse:Security s:mustUnderstand="1"><wsse:UsernameToken u:Id="uuid-0">"#,
                r#"<wsse:Username>{}</wsse:Username><wsse:Password wsse:Type="{}">{}</wsse:Password>"#,
                "</wsse:UsernameToken></wsse:Security>"
            ),
            esc(username),
            ns::PASSWORD_TEXT,
            esc(password)
        ),
        SecurityToken::BinarySecurityToken {
            value_type,
            encoding_type,
            value,
        } => format!(
            concat!(
                r#"<wsse:Security s:mustUnderstand="1"><wsse:BinarySecurityToken ValueType="{}" EncodingType="{}">{}</wsse:BinarySecurityToken>"#,
                "</wsse:Security>"
            ),
            esc_attr(value_type),
            esc_attr(encoding_type),
            esc(value)
        ),
    }
}

/// Device side: the Discover request (fixture 03 / Win11 capture shape).
pub fn write_discover_request(request: &DiscoverRequest) -> String {
    let policies: String = request
        .auth_policies
        .iter()
        .map(|p| format!("<AuthPolicy>{}</AuthPolicy>", esc(p.as_str())))
        .collect();
    let body = format!(
        concat!(
            r#"<s:Body><Discover xmlns="{ns}"><request xmlns:i="{xsi}">"#,
            "<EmailAddress>{email}</EmailAddress>{rv}{dt}{av}{ose}{osv}",
            "<AuthPolicies>{policies}</AuthPolicies></request></Discover></s:Body>"
        ),
        ns = ns::DISCOVERY,
        xsi = ns::XSI,
        email = esc(&request.email_address),
        rv = opt("RequestVersion", &request.request_version),
        dt = opt("DeviceType", &request.device_type),
        av = opt("ApplicationVersion", &request.application_version),
        ose = opt("OSEdition", &request.os_edition),
        osv = opt("OSVersion", &request.os_version),
        policies = policies,
    );
    client_envelope(
        ns::ACTION_DISCOVER,
        &request.message_id,
        request.to.as_deref().unwrap_or_default(),
        "",
        &body,
    )
}

/// Device side: GetPolicies with nil filters (fixture 05 shape).
pub fn write_get_policies_request(request: &GetPoliciesRequest) -> String {
    let body = format!(
        concat!(
            r#"<s:Body xmlns:xsi="{xsi}" xmlns:xsd="{xsd}"><GetPolicies xmlns="{ns}">"#,
            r#"<client><lastUpdate xsi:nil="true"/><preferredLanguage xsi:nil="true"/></client>"#,
            r#"<requestFilter xsi:nil="true"/></GetPolicies></s:Body>"#
        ),
        xsi = ns::XSI,
        xsd = ns::XSD,
        ns = ns::POLICY,
    );
    client_envelope(
        ns::ACTION_GET_POLICIES,
        &request.message_id,
        request.to.as_deref().unwrap_or_default(),
        &security_header(&request.security),
        &body,
    )
}

/// Device side: RequestSecurityToken with the base64 PKCS#10 and AdditionalContext (fixture 07).
pub fn write_rst_request(request: &RstRequest) -> String {
    let items: String = request
        .context
        .items
        .iter()
        .map(|(n, v)| {
            format!(
                r#"<ac:ContextItem Name="{}"><ac:Value>{}</ac:Value></ac:ContextItem>"#,
                esc_attr(n),
                esc(v)
            )
        })
        .collect();
    let or_default = |v: &str, d: &'static str| {
        if v.is_empty() {
            d.to_string()
        } else {
            v.to_string()
        }
    };
    let body = format!(
        concat!(
            "<s:Body><wst:RequestSecurityToken><wst:TokenType>{tt}</wst:TokenType>",
            "<wst:RequestType>{rt}</wst:RequestType>",
            r#"<wsse:BinarySecurityToken ValueType="{pkcs10}" EncodingType="{enc}">{csr}</wsse:BinarySecurityToken>"#,
            r#"<ac:AdditionalContext xmlns="{ac}">{items}</ac:AdditionalContext>"#,
            "</wst:RequestSecurityToken></s:Body>"
        ),
        tt = esc(&or_default(
            &request.token_type,
            ns::TOKEN_TYPE_DEVICE_ENROLLMENT
        )),
        rt = esc(&or_default(&request.request_type, ns::REQUEST_TYPE_ISSUE)),
        pkcs10 = esc_attr(&or_default(&request.csr_value_type, ns::VALUE_TYPE_PKCS10)),
        enc = ns::BASE64_BINARY,
        csr = base64::engine::general_purpose::STANDARD.encode(&request.csr_der),
        ac = ns::AC,
        items = items,
    );
    client_envelope(
        ns::ACTION_RST,
        &request.message_id,
        request.to.as_deref().unwrap_or_default(),
        &security_header(&request.security),
        &body,
    )
}
