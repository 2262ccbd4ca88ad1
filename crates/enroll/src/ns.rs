//! Namespace, action and token-type URIs of MS-MDE2 / MS-XCEP / MS-WSTEP (docs/protocol.md §2.8).

pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const ADDRESSING: &str = "http://www.w3.org/2005/08/addressing";
pub const ANONYMOUS: &str = "http://www.w3.org/2005/08/addressing/anonymous";
pub const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
pub const WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
pub const WST: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512";
pub const AC: &str = "http://schemas.xmlsoap.org/ws/2006/12/authorization";
pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
pub const XSD: &str = "http://www.w3.org/2001/XMLSchema";
pub const DIAGNOSTICS: &str = "http://schemas.microsoft.com/2004/09/ServiceModel/Diagnostics";

pub const DISCOVERY: &str = "http://schemas.microsoft.com/windows/management/2012/01/enrollment";
pub const POLICY: &str = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy";
pub const ENROLLMENT: &str = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment";

pub const ACTION_DISCOVER: &str =
    "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/Discover";
pub const ACTION_DISCOVER_RESPONSE: &str =
    "http://schemas.microsoft.com/windows/management/2012/01/enrollment/IDiscoveryService/DiscoverResponse";
pub const ACTION_GET_POLICIES: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPolicies";
pub const ACTION_GET_POLICIES_RESPONSE: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPoliciesResponse";
pub const ACTION_RST: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RST/wstep";
pub const ACTION_RSTRC: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep";

pub const PASSWORD_TEXT: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";
pub const BASE64_BINARY: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary";
/// Entra (Azure AD) access token in the WS-Security header (docs/protocol.md §2.4, fact 9).
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Federated (WAB) token in the WS-Security header (docs/protocol.md §2.3).
pub const TOKEN_TYPE_USER_TOKEN: &str =
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentUserToken";
pub const TOKEN_TYPE_DEVICE_ENROLLMENT: &str =
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken";
/// RSTR payload type; the `5.0.0.0/` form is the right one (docs/protocol.md §2.5 pitfall a).
pub const TOKEN_TYPE_PROVISION_DOC: &str =
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentProvisionDoc";
pub const VALUE_TYPE_PKCS10: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10";
pub const REQUEST_TYPE_ISSUE: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue";
/// Certificate renewal: the RST's RequestType (MS-MDE2 3.4.4.1.1.1, WS-Trust 1.3 §3.1).
pub const REQUEST_TYPE_RENEW: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Renew";
/// Certificate renewal: the request token is a PKCS#7 around the PKCS#10 (MS-MDE2 3.4.4.1.1.1).
pub const VALUE_TYPE_PKCS7: &str =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS7";
