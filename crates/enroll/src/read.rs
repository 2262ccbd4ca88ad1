//! Parsers for enrollment SOAP messages in both directions (device requests, server answers).

use crate::messages::*;
use crate::ns;
use crate::provisioning;
use crate::xml::{self, normalise_ns, Element};
use crate::Result;

/// The parts of a SOAP envelope every message needs.
struct Envelope<'a> {
    root: &'a Element,
    header: Option<&'a Element>,
    body: &'a Element,
    action: Option<String>,
}

fn envelope(root: &Element) -> Result<Envelope<'_>> {
    // SOAP 1.2 is what Windows sends; the MS federated RSTR sample uses SOAP 1.1
    // (docs/protocol.md §2.5 pitfall b), so both envelopes are accepted.
    let soap_ns = [normalise_ns(ns::SOAP12), normalise_ns(ns::SOAP11)];
    if !root.is("Envelope") || !soap_ns.contains(&root.ns) {
        return Err(root.error(format!(
            "expected a SOAP <Envelope> ({} or {}), found <{}> in namespace `{}`",
            ns::SOAP12,
            ns::SOAP11,
            root.name,
            root.ns
        )));
    }
    let header = root.child("Header");
    let body = root
        .child("Body")
        .ok_or_else(|| root.error("SOAP envelope has no <Body>"))?;
    let action = header.and_then(|h| h.child_text("Action"));
    Ok(Envelope {
        root,
        header,
        body,
        action,
    })
}

fn body_element<'a>(env: &Envelope<'a>) -> Result<&'a Element> {
    env.body
        .children
        .first()
        .ok_or_else(|| env.body.error("SOAP <Body> is empty"))
}

fn header_text(env: &Envelope<'_>, name: &str) -> Option<String> {
    env.header.and_then(|h| h.child_text(name))
}

/// The operation element must be in its namespace (trailing `/` and case tolerated).
fn expect_ns(e: &Element, expected: &str) -> Result<()> {
    if e.ns.is_empty() || e.ns == normalise_ns(expected) {
        Ok(())
    } else {
        Err(e.error(format!(
            "<{}> is in namespace `{}`, expected `{expected}`",
            e.name, e.ns
        )))
    }
}

/// Checks that the SOAP Action (when present) names the operation found in the body.
fn check_action(env: &Envelope<'_>, body: &Element, expected: &str) -> Result<()> {
    match &env.action {
        Some(a) if !a.trim_end_matches('/').eq_ignore_ascii_case(expected) => {
            Err(env.header.unwrap_or(env.root).error(format!(
                "SOAP Action `{a}` does not match the <{}> body (expected `{expected}`)",
                body.name
            )))
        }
        _ => Ok(()),
    }
}

fn message_id(env: &Envelope<'_>) -> Result<String> {
    header_text(env, "MessageID").ok_or_else(|| {
        env.header
            .unwrap_or(env.root)
            .error("SOAP header has no WS-Addressing <MessageID>")
    })
}

fn security_token(env: &Envelope<'_>) -> SecurityToken {
    let Some(sec) = env.header.and_then(|h| h.child("Security")) else {
        return SecurityToken::None;
    };
    if let Some(ut) = sec.child("UsernameToken") {
        return SecurityToken::UsernameToken {
            username: ut.child_text("Username").unwrap_or_default(),
            password: ut
                .child("Password")
                .map(|p| p.text.clone())
                .unwrap_or_default(),
        };
    }
    if let Some(bst) = sec.child("BinarySecurityToken") {
        return SecurityToken::BinarySecurityToken {
            value_type: bst.attr("ValueType").unwrap_or_default().trim().to_string(),
            encoding_type: bst
                .attr("EncodingType")
                .unwrap_or_default()
                .trim()
                .to_string(),
            value: bst.text.trim().to_string(),
        };
    }
    SecurityToken::None
}

/// Parses any enrollment SOAP request a device sends: Discover, GetPolicies or
/// RequestSecurityToken. Never panics; errors name line, column and the problem.
pub fn parse_message(bytes: &[u8]) -> Result<EnrollMessage> {
    let root = xml::parse_document(bytes)?;
    let env = envelope(&root)?;
    let body = body_element(&env)?;
    if body.is("Discover") {
        check_action(&env, body, ns::ACTION_DISCOVER)?;
        expect_ns(body, ns::DISCOVERY)?;
        return discover(&env, body).map(EnrollMessage::Discover);
    }
    if body.is("GetPolicies") {
        check_action(&env, body, ns::ACTION_GET_POLICIES)?;
        expect_ns(body, ns::POLICY)?;
        return Ok(EnrollMessage::GetPolicies(GetPoliciesRequest {
            message_id: message_id(&env)?,
            to: header_text(&env, "To"),
            security: security_token(&env),
        }));
    }
    if body.is("RequestSecurityToken") {
        check_action(&env, body, ns::ACTION_RST)?;
        expect_ns(body, ns::WST)?;
        return rst(&env, body).map(EnrollMessage::RequestSecurityToken);
    }
    Err(body.error(format!(
        "unsupported enrollment request <{}> (action `{}`); expected Discover, GetPolicies or RequestSecurityToken",
        body.name,
        env.action.as_deref().unwrap_or("none")
    )))
}

fn discover(env: &Envelope<'_>, body: &Element) -> Result<DiscoverRequest> {
    let req = body.require("request")?;
    Ok(DiscoverRequest {
        message_id: message_id(env)?,
        to: header_text(env, "To"),
        email_address: req.child_text("EmailAddress").unwrap_or_default(),
        request_version: req.child_text("RequestVersion"),
        device_type: req.child_text("DeviceType"),
        application_version: req.child_text("ApplicationVersion"),
        os_edition: req.child_text("OSEdition"),
        os_version: req.child_text("OSVersion"),
        auth_policies: req
            .child("AuthPolicies")
            .map(|p| {
                p.children_named("AuthPolicy")
                    .filter_map(Element::value)
                    .map(|v| AuthPolicy::parse(&v))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn rst(env: &Envelope<'_>, body: &Element) -> Result<RstRequest> {
    let bst = body.require("BinarySecurityToken")?;
    let csr_der = decode_base64(&bst.text).map_err(|e| {
        bst.error(format!(
            "the PKCS#10 BinarySecurityToken is not valid base64: {e}"
        ))
    })?;
    if csr_der.is_empty() {
        return Err(bst.error("the PKCS#10 BinarySecurityToken is empty"));
    }
    let mut items = Vec::new();
    if let Some(ac) = body.child("AdditionalContext") {
        for item in ac.children_named("ContextItem") {
            let name = item
                .attr("Name")
                .ok_or_else(|| item.error("<ContextItem> has no Name attribute"))?;
            let value = item
                .child("Value")
                .map(|v| v.text.trim().to_string())
                .unwrap_or_default();
            items.push((name.to_string(), value));
        }
    }
    Ok(RstRequest {
        message_id: message_id(env)?,
        to: header_text(env, "To"),
        security: security_token(env),
        token_type: body.child_text("TokenType").unwrap_or_default(),
        request_type: body.child_text("RequestType").unwrap_or_default(),
        csr_value_type: bst.attr("ValueType").unwrap_or_default().trim().to_string(),
        csr_der,
        context: AdditionalContext::new(items),
    })
}

/// Parses any server answer: DiscoverResponse, GetPoliciesResponse, RSTRC (with the
/// decoded provisioning document) or a SOAP fault.
pub fn parse_response(bytes: &[u8]) -> Result<EnrollResponse> {
    let root = xml::parse_document(bytes)?;
    let env = envelope(&root)?;
    let body = body_element(&env)?;
    let relates_to = header_text(&env, "RelatesTo");
    if body.is("Fault") {
        return Ok(EnrollResponse::Fault {
            relates_to,
            fault: fault(body)?,
        });
    }
    if body.is("DiscoverResponse") {
        check_action(&env, body, ns::ACTION_DISCOVER_RESPONSE)?;
        expect_ns(body, ns::DISCOVERY)?;
        let result = body.require("DiscoverResult")?;
        let auth = result.require("AuthPolicy")?;
        let service = result.require("EnrollmentServiceUrl")?;
        return Ok(EnrollResponse::Discover {
            relates_to,
            response: DiscoverResponse {
                auth_policy: AuthPolicy::parse(&auth.value().unwrap_or_default()),
                enrollment_version: result.child_text("EnrollmentVersion").unwrap_or_default(),
                enrollment_policy_service_url: result.child_text("EnrollmentPolicyServiceUrl"),
                enrollment_service_url: service
                    .value()
                    .ok_or_else(|| service.error("EnrollmentServiceUrl is empty"))?,
                authentication_service_url: result.child_text("AuthenticationServiceUrl"),
            },
        });
    }
    if body.is("GetPoliciesResponse") {
        check_action(&env, body, ns::ACTION_GET_POLICIES_RESPONSE)?;
        expect_ns(body, ns::POLICY)?;
        return Ok(EnrollResponse::GetPolicies {
            relates_to,
            response: policies(body)?,
        });
    }
    if body.is("RequestSecurityTokenResponseCollection") {
        check_action(&env, body, ns::ACTION_RSTRC)?;
        return Ok(EnrollResponse::Rstr {
            relates_to,
            response: Box::new(rstr(&env, body)?),
        });
    }
    Err(body.error(format!(
        "unsupported enrollment response <{}> (action `{}`)",
        body.name,
        env.action.as_deref().unwrap_or("none")
    )))
}

fn parse_number<T: std::str::FromStr>(e: Option<&Element>) -> Result<Option<T>> {
    match e {
        None => Ok(None),
        Some(e) => match e.value() {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| e.error(format!("<{}> is not a number: {v:?}", e.name))),
        },
    }
}

fn policies(body: &Element) -> Result<PolicyResponse> {
    let attributes = body
        .require("response")?
        .require("policies")?
        .require("policy")?
        .require("attributes")?;
    let key = attributes.child("privateKeyAttributes");
    let validity = attributes.child("certificateValidity");
    let hash_ref: Option<u32> = parse_number(attributes.child("hashAlgorithmOIDReference"))?;
    let mut hash_algorithm = None;
    if let (Some(reference), Some(oids)) = (hash_ref, body.child("oIDs")) {
        for oid in oids.children_named("oID") {
            if parse_number::<u32>(oid.child("oIDReferenceID"))? == Some(reference) {
                hash_algorithm = Some(PolicyOid {
                    value: oid.child_text("value").unwrap_or_default(),
                    group: parse_number(oid.child("group"))?.unwrap_or_default(),
                    reference_id: reference,
                    default_name: oid.child_text("defaultName").unwrap_or_default(),
                });
            }
        }
    }
    Ok(PolicyResponse {
        // Absent means the documented default policy: 2048-bit keys (docs/protocol.md §2.2).
        minimal_key_length: parse_number(key.and_then(|k| k.child("minimalKeyLength")))?
            .unwrap_or(2048),
        hash_algorithm,
        validity_period_seconds: parse_number(
            validity.and_then(|v| v.child("validityPeriodSeconds")),
        )?
        .unwrap_or_default(),
        renewal_period_seconds: parse_number(
            validity.and_then(|v| v.child("renewalPeriodSeconds")),
        )?
        .unwrap_or_default(),
        enroll_permission: attributes
            .child("permission")
            .and_then(|p| p.child_text("enroll"))
            .is_some_and(|v| v == "true"),
    })
}

fn rstr(env: &Envelope<'_>, body: &Element) -> Result<RstrResponse> {
    let response = body.require("RequestSecurityTokenResponse")?;
    let bst = response
        .require("RequestedSecurityToken")?
        .require("BinarySecurityToken")?;
    let value_type = bst.attr("ValueType").unwrap_or_default().trim().to_string();
    let bytes = decode_base64(&bst.text).map_err(|e| {
        bst.error(format!(
            "the provisioning document BinarySecurityToken is not valid base64: {e}"
        ))
    })?;
    let provisioning_xml = String::from_utf8(bytes)
        .map_err(|_| bst.error("the decoded provisioning document is not UTF-8"))?;
    let provisioning = provisioning::parse(&provisioning_xml).map_err(|e| {
        bst.error(format!(
            "the provisioning document in this BinarySecurityToken is invalid: {e}"
        ))
    })?;
    let timestamp = env
        .header
        .and_then(|h| h.child("Security"))
        .and_then(|s| s.child("Timestamp"));
    Ok(RstrResponse {
        // MS-MDE text puts TokenType under RequestedSecurityToken, samples one level up
        // (docs/protocol.md §2.5 pitfall c): accept both.
        token_type: response.child_text("TokenType").or_else(|| {
            response
                .child("RequestedSecurityToken")
                .and_then(|r| r.child_text("TokenType"))
        }),
        value_type,
        provisioning_xml,
        provisioning,
        created: timestamp.and_then(|t| t.child_text("Created")),
        expires: timestamp.and_then(|t| t.child_text("Expires")),
    })
}

fn fault(body: &Element) -> Result<Fault> {
    let code = body.require("Code")?;
    let sub = code
        .child("Subcode")
        .and_then(|s| s.child("Value"))
        .ok_or_else(|| code.error("fault <Code> has no <Subcode><Value>"))?;
    let sub_text = sub.value().unwrap_or_default();
    let code = FaultCode::parse(&sub_text)
        .ok_or_else(|| sub.error(format!("unknown enrollment fault subcode `{sub_text}`")))?;
    let reason = body
        .child("Reason")
        .and_then(|r| r.child_text("Text"))
        .unwrap_or_default();
    let detail = body
        .child("Detail")
        .and_then(|d| d.child("DeviceEnrollmentServiceError"))
        .map(|d| EnrollmentServiceError {
            error_type: EnrollmentErrorType::parse(&d.child_text("ErrorType").unwrap_or_default()),
            message: d.child_text("Message").unwrap_or_default(),
            trace_id: d.child_text("TraceId").unwrap_or_default(),
        });
    Ok(Fault {
        code,
        reason,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_positions_point_at_the_problem() {
        let err = parse_message(b"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\">\n  <s:Header/>\n</s:Envelope>")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "line 1, column 1: SOAP envelope has no <Body>");
    }
}
