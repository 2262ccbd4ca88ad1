//! Hostile or broken input is refused with a positioned error, never a panic.

use enroll::{parse_message, parse_response, MAX_MESSAGE_BYTES};

use crate::support::fixture_text;

fn error(bytes: &[u8]) -> String {
    parse_message(bytes).unwrap_err().to_string()
}

#[test]
fn doctype_and_entities_are_refused() {
    let xxe = r#"<?xml version="1.0"?>
<!DOCTYPE s [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&xxe;</s:Body></s:Envelope>"#;
    let err = error(xxe.as_bytes());
    assert!(err.starts_with("line 2, column 1:"), "{err}");
    assert!(err.contains("DOCTYPE"), "{err}");

    let entity = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><x>&custom;</x></s:Body></s:Envelope>"#;
    let err = error(entity.as_bytes());
    assert!(err.starts_with("line 1, column "), "{err}");
    assert!(err.contains("entit"), "{err}");
}

#[test]
fn oversize_messages_are_refused() {
    let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
    assert!(error(&big).contains("over the"), "too large");
}

#[test]
fn deep_nesting_is_refused() {
    let xml = "<a>".repeat(enroll::MAX_DEPTH + 5) + &"</a>".repeat(enroll::MAX_DEPTH + 5);
    assert!(error(xml.as_bytes()).contains("nested deeper"));
}

#[test]
fn missing_or_empty_body_is_refused() {
    let err = error(br#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/></s:Envelope>"#);
    assert!(err.contains("no <Body>"), "{err}");
    let err = error(
        br#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>"#,
    );
    assert!(err.contains("<Body> is empty"), "{err}");
    let err = error(b"<Envelope><Body/></Envelope>");
    assert!(err.contains("expected a SOAP <Envelope>"), "{err}");
}

#[test]
fn action_that_contradicts_the_body_is_refused() {
    let xml = fixture_text("fleet-win10-21h1/03-discovery-request.xml")
        .replace("IDiscoveryService/Discover<", "IDiscoveryService/Unknown<");
    let err = error(xml.as_bytes());
    assert!(err.contains("does not match the <Discover> body"), "{err}");
}

#[test]
fn a_response_is_not_a_request_and_vice_versa() {
    let response = fixture_text("fleet-win10-21h1/04-discovery-response.xml");
    assert!(
        error(response.as_bytes()).contains("unsupported enrollment request <DiscoverResponse>")
    );
    let request = fixture_text("fleet-win10-21h1/03-discovery-request.xml");
    assert!(parse_response(request.as_bytes()).is_err());
}

#[test]
fn malformed_xml_is_not_repaired() {
    let xml = fixture_text("fleet-win10-21h1/07-enroll-request.xml");
    let truncated = &xml[..xml.len() / 2];
    let err = error(truncated.as_bytes());
    assert!(err.starts_with("line "), "{err}");
    let mismatched = xml.replace("</wst:RequestType>", "</wst:RequestTyp>");
    assert!(error(mismatched.as_bytes()).contains("malformed XML"));
    let undeclared = xml
        .replace("<wst:TokenType>", "<zz:TokenType>")
        .replace("</wst:TokenType>", "</zz:TokenType>");
    assert!(error(undeclared.as_bytes()).contains("not declared"));
    let bad_csr = xml.replace("MIICzjCC", "MIIC!!!!");
    assert!(error(bad_csr.as_bytes()).contains("not valid base64"));
    assert!(error(b"\xff\xfe<x/>").contains("UTF-8"));
}

#[test]
fn missing_message_id_is_refused() {
    let xml = fixture_text("fleet-win10-21h1/05-policy-request.xml");
    let start = xml.find("<a:MessageID>").unwrap();
    let end = xml.find("</a:MessageID>").unwrap() + "</a:MessageID>".len();
    let without = format!("{}{}", &xml[..start], &xml[end..]);
    assert!(error(without.as_bytes()).contains("MessageID"));
}

mod never_panics {
    use proptest::prelude::*;

    use crate::support::fixture;

    fn captures() -> Vec<Vec<u8>> {
        [
            "fleet-win10-21h1/03-discovery-request.xml",
            "fleet-win10-21h1/05-policy-request.xml",
            "fleet-win10-21h1/07-enroll-request.xml",
            "fleet-win10-21h1/08-enroll-response.xml",
        ]
        .iter()
        .map(|p| fixture(p))
        .collect()
    }

    proptest! {
        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = enroll::parse_message(&bytes);
            let _ = enroll::parse_response(&bytes);
        }

        #[test]
        fn mutated_captures(which in 0usize..4, edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
            let mut bytes = captures().swap_remove(which);
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            let keep = cut.index(bytes.len() + 1);
            let _ = enroll::parse_message(&bytes);
            let _ = enroll::parse_response(&bytes[..keep]);
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = enroll::provisioning::parse(text);
            }
        }
    }
}
