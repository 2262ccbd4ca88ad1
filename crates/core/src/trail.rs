//! The support trail: the last raw messages each device exchanged with the server, kept so that
//! a support question ("what did this PC send, what did we answer?") can be answered from the
//! console or `redeploy inspect --device`. Bounded per device (the store keeps the newest
//! `keep`), each body capped at [`MAX_BODY`] bytes, and secrets redacted before anything is
//! stored: credentials and nonces in a SyncML `Cred`/`Chal`, JSON Web Tokens (the Entra user
//! token of Alert 1224, federated enrollment tokens), WS-Security passwords and security tokens
//! other than the certificate request, and the DM client's `AAUTHSECRET`/`AAUTHDATA`
//! (docs/protocol.md §2.5, §3.5). What the PC reported about itself (inventory, statuses,
//! results) stays readable: that is what support needs.

use time::OffsetDateTime;

use crate::ids::DeviceId;

/// How many messages per device are kept when the settings do not say.
pub const DEFAULT_KEEP: u32 = 20;

/// Largest body kept, in bytes; a longer message keeps its start and says how long it was.
pub const MAX_BODY: usize = 64 * 1024;

/// How long a device's trail may hold more than `keep` messages: the server trims the trails it
/// wrote at most this often, one statement for all of them (issue #16: trimming each check-in's
/// device in its own batch rewrote scattered table pages on every batch).
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Which way a message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The device sent it.
    FromDevice,
    /// We answered with it.
    ToDevice,
}

impl Direction {
    /// The stored word: `in` or `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::FromDevice => "in",
            Direction::ToDevice => "out",
        }
    }

    /// The stored word back; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "in" => Some(Direction::FromDevice),
            "out" => Some(Direction::ToDevice),
            _ => None,
        }
    }
}

/// One kept message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailMessage {
    pub device: DeviceId,
    pub at: OffsetDateTime,
    pub direction: Direction,
    /// The OMA-DM SessionID and MsgID the message carried (empty when it could not be read).
    pub session_id: String,
    pub msg_id: String,
    /// The message as sent, redacted and cut at [`MAX_BODY`].
    pub body: String,
    /// Its size on the wire, in bytes (before redaction and cutting).
    pub size: usize,
}

impl TrailMessage {
    /// A message to keep: `raw` is redacted and cut here, so nothing unredacted reaches the store.
    pub fn new(
        device: DeviceId,
        at: OffsetDateTime,
        direction: Direction,
        session_id: &str,
        msg_id: &str,
        raw: &[u8],
    ) -> Self {
        let text = String::from_utf8_lossy(raw);
        let mut body = redact(&text);
        if body.len() > MAX_BODY {
            let mut cut = MAX_BODY;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push_str(&format!("\n[cut: the message had {} bytes]", raw.len()));
        }
        TrailMessage {
            device,
            at,
            direction,
            session_id: session_id.to_owned(),
            msg_id: msg_id.to_owned(),
            body,
            size: raw.len(),
        }
    }
}

/// `text` with every secret this module knows replaced by [`REDACTED`].
pub fn redact(text: &str) -> String {
    // Each pass only where its marker occurs at all: most messages (an idle check-in) carry
    // none, and a search for a word is much cheaper than a pass that copies the text.
    let mut out = text.to_owned();
    for (name, data_only) in [("Cred", true), ("NextNonce", false), ("Password", false)] {
        if out.contains(name) {
            out = redact_element_text(&out, name, data_only);
        }
    }
    if out.contains("BinarySecurityToken") {
        out = redact_security_tokens(&out);
    }
    for parm in ["AAUTHSECRET", "AAUTHDATA"] {
        if out.contains(parm) {
            out = redact_parm(&out, parm);
        }
    }
    if out.contains("eyJ") {
        out = redact_jwts(&out);
    }
    out
}

/// Byte offset of the next start tag whose local name (after any prefix) is `name`, at or after
/// `from`, and the offset just after its `>`. Self-closing tags are skipped (no content).
fn next_start_tag(text: &str, name: &str, from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    while let Some(rel) = text[at..].find('<') {
        let start = at + rel;
        let rest = &text[start + 1..];
        let tag_end = rest.find('>')? + start + 1;
        let head = &text[start + 1..tag_end];
        let qname = head
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("");
        let local = qname.rsplit(':').next().unwrap_or("");
        if local == name && !head.starts_with('/') && !head.ends_with('/') {
            return Some((start, tag_end + 1));
        }
        at = tag_end + 1;
    }
    None
}

/// Offset of the end tag `</prefix:name>` or `</name>` closing content that starts at `from`.
fn end_tag(text: &str, name: &str, from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(rel) = text[at..].find("</") {
        let start = at + rel;
        let close = text[start..].find('>')? + start;
        let qname = &text[start + 2..close];
        if qname.rsplit(':').next() == Some(name) {
            return Some(start);
        }
        at = close + 1;
    }
    None
}

/// Replaces the content of every `name` element; with `data_only`, only the content of the
/// `Data` elements inside it (a SyncML `Cred` keeps its `Meta`, so the auth type stays visible).
fn redact_element_text(text: &str, name: &str, data_only: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some((_, content)) = next_start_tag(text, name, at) {
        let Some(end) = end_tag(text, name, content) else {
            break;
        };
        out.push_str(&text[at..content]);
        if data_only {
            out.push_str(&redact_element_text(&text[content..end], "Data", false));
        } else {
            out.push_str(REDACTED);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// Replaces WS-Security `BinarySecurityToken` contents (enrollment tokens, federated JWTs), but
/// not a certificate request or certificate (PKCS#10 / PKCS#7), which support may need to read.
fn redact_security_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some((start, content)) = next_start_tag(text, "BinarySecurityToken", at) {
        let Some(end) = end_tag(text, "BinarySecurityToken", content) else {
            break;
        };
        let tag = &text[start..content];
        out.push_str(&text[at..content]);
        if tag.contains("PKCS10") || tag.contains("PKCS7") {
            out.push_str(&text[content..end]);
        } else {
            out.push_str(REDACTED);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// Replaces the value of a wap-provisioningdoc `<parm name="NAME" value="…"/>`.
fn redact_parm(text: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\"");
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(rel) = text[at..].find(&needle) {
        let after_name = at + rel + needle.len();
        let Some(tag_end) = text[after_name..].find('>').map(|i| i + after_name) else {
            break;
        };
        let Some(value) = text[after_name..tag_end]
            .find("value=\"")
            .map(|i| i + after_name + "value=\"".len())
        else {
            out.push_str(&text[at..after_name]);
            at = after_name;
            continue;
        };
        let Some(value_end) = text[value..tag_end].find('"').map(|i| i + value) else {
            break;
        };
        out.push_str(&text[at..value]);
        out.push_str(REDACTED);
        at = value_end;
    }
    out.push_str(&text[at..]);
    out
}

fn is_base64url(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Replaces anything shaped like a JSON Web Token: `eyJ…` (a base64url JSON header), a dot, a
/// payload, a dot and an optional signature.
fn redact_jwts(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(rel) = text[at..].find("eyJ") {
        let start = at + rel;
        let mut end = start;
        let mut dots = 0;
        for (i, c) in text[start..].char_indices() {
            if is_base64url(c) {
                end = start + i + c.len_utf8();
            } else if c == '.' && dots < 2 {
                dots += 1;
                end = start + i + 1;
            } else {
                break;
            }
        }
        let preceded_by_word = text[..start].chars().next_back().is_some_and(is_base64url);
        if dots == 2 && !preceded_by_word {
            out.push_str(&text[at..start]);
            out.push_str(REDACTED);
        } else {
            out.push_str(&text[at..end.max(start + 3)]);
        }
        at = end.max(start + 3);
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncml_credentials_and_nonces_are_redacted_but_their_type_stays() {
        let msg = "<SyncHdr><Cred><Meta><Format xmlns=\"syncml:metinf\">b64</Format>\
                   <Type xmlns=\"syncml:metinf\">syncml:auth-md5</Type></Meta>\
                   <Data>c2VjcmV0LWRpZ2VzdA==</Data></Cred></SyncHdr>\
                   <Status><Chal><Meta><NextNonce xmlns=\"syncml:metinf\">bm9uY2U=</NextNonce>\
                   </Meta></Chal></Status>";
        let r = redact(msg);
        assert!(!r.contains("c2VjcmV0LWRpZ2VzdA=="), "{r}");
        assert!(!r.contains("bm9uY2U="), "{r}");
        assert!(r.contains("syncml:auth-md5"), "{r}");
        assert!(r.contains("<Data>[redacted]</Data>"), "{r}");
    }

    #[test]
    fn tokens_passwords_and_client_secrets_are_redacted_but_not_the_csr() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJ1cG4iOiJhZGFAZXhhbXBsZS5vcmcifQ.c2lnbmF0dXJl";
        let msg = format!(
            "<Alert><Data>1224</Data><Item><Meta><Type>com.microsoft/MDM/AADUserToken</Type>\
             </Meta><Data>{jwt}</Data></Item></Alert>\
             <wsse:Security><wsse:UsernameToken><wsse:Username>ada</wsse:Username>\
             <wsse:Password wsse:Type=\"x\">hunter2</wsse:Password></wsse:UsernameToken>\
             <wsse:BinarySecurityToken ValueType=\"urn:ietf:params:oauth:token-type:jwt\">\
             rdp_enroll_abc</wsse:BinarySecurityToken></wsse:Security>\
             <wsse:BinarySecurityToken ValueType=\"http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10\">\
             MIICsjCCAZoCAQA=</wsse:BinarySecurityToken>\
             <parm name=\"AAUTHSECRET\" value=\"s3cr3t\" datatype=\"string\"/>\
             <parm name=\"AAUTHDATA\" value=\"bm9uY2U=\"/><parm name=\"AAUTHNAME\" value=\"Redeploy\"/>"
        );
        let r = redact(&msg);
        for secret in [jwt, "hunter2", "rdp_enroll_abc", "s3cr3t", "bm9uY2U="] {
            assert!(!r.contains(secret), "{secret} left in {r}");
        }
        for kept in [
            "MIICsjCCAZoCAQA=",
            "AAUTHNAME\" value=\"Redeploy\"",
            "<wsse:Username>ada",
        ] {
            assert!(r.contains(kept), "{kept} lost from {r}");
        }
    }

    #[test]
    fn ordinary_text_is_left_as_it_is() {
        let msg = "<Replace><Item><Source><LocURI>./DevInfo/DevId</LocURI></Source>\
                   <Data>eyJ-not-a-token</Data></Item></Replace><Cred>";
        assert_eq!(redact(msg), msg);
        assert_eq!(redact("plain"), "plain");
    }

    #[test]
    fn long_bodies_are_cut_and_say_how_long_they_were() {
        let raw = "é".repeat(MAX_BODY);
        let m = TrailMessage::new(
            DeviceId::generate(),
            OffsetDateTime::UNIX_EPOCH,
            Direction::FromDevice,
            "1",
            "2",
            raw.as_bytes(),
        );
        assert!(m.body.len() < MAX_BODY + 100);
        assert!(m
            .body
            .ends_with(&format!("[cut: the message had {} bytes]", raw.len())));
        assert_eq!(m.size, raw.len());
    }
}
