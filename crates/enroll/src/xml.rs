//! A small, safe XML reader (element tree with resolved namespaces and positions) and writer helpers.
//!
//! Enrollment messages are small, so the whole message becomes a tree that the SOAP and
//! provisioning parsers walk. Safety rules enforced here, before any message logic runs:
//! no DOCTYPE (so no DTD, no external or custom entities), a size limit, a depth limit, an
//! element-count limit, well-formed names (e.g. fixture 06's `<algorithmOIDReferencexsi:nil="true"/>`
//! is rejected, not repaired), declared namespace prefixes and balanced tags.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::Error;

/// Largest message accepted, in bytes. Real RST messages are ~5 KB; Entra tokens and
/// EnrollmentData blobs add a few KB. 1 MiB leaves ample room and bounds memory.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Deepest element nesting accepted (a provisioning doc nests ~6 levels, SOAP ~8).
pub const MAX_DEPTH: usize = 64;
/// Most elements accepted in one message.
pub const MAX_ELEMENTS: usize = 20_000;

/// An element of a parsed document. Namespaces are normalised (see [`normalise_ns`]).
#[derive(Debug, Clone)]
pub(crate) struct Element {
    pub ns: String,
    pub name: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    /// Concatenated character data directly inside this element.
    pub text: String,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Attr {
    pub name: String,
    pub value: String,
}

/// Namespace URIs compared leniently: MS docs spell the enrollment namespace with a trailing
/// `/` where real Windows 11 does not (docs/protocol.md §2.2), and one MS sample is lowercased
/// (ITPRO mobile-device-enrollment.md). URIs are compared without trailing `/`, ASCII-lowercased.
pub(crate) fn normalise_ns(ns: &str) -> String {
    ns.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl Element {
    /// Local name equality, ASCII-case-insensitive (see [`normalise_ns`] for why lenient).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(name))
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is(name))
    }

    /// A required child, or an error positioned at this element.
    pub fn require(&self, name: &str) -> Result<&Element, Error> {
        self.child(name)
            .ok_or_else(|| self.error(format!("<{}> has no <{}> element", self.name, name)))
    }

    /// Text of a child, trimmed; `None` when the child is absent, empty or `xsi:nil`.
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).and_then(Element::value)
    }

    /// Trimmed text, `None` when empty or `xsi:nil="true"`.
    pub fn value(&self) -> Option<String> {
        if self.is_nil() {
            return None;
        }
        let t = self.text.trim();
        (!t.is_empty()).then(|| t.to_string())
    }

    pub fn is_nil(&self) -> bool {
        self.attr("nil").is_some_and(|v| v.trim() == "true")
    }

    /// Attribute by local name (ASCII-case-insensitive).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .map(|a| a.value.as_str())
    }

    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::Message {
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut cut = offset;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let before = &text[..cut];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn xml_error(text: &str, offset: usize, message: impl Into<String>) -> Error {
    let (line, column) = line_column(text, offset);
    Error::Xml {
        line,
        column,
        message: message.into(),
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || !c.is_ascii()
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || c.is_ascii_digit() || c == '-' || c == '.'
}

/// Checks an XML Name (ASCII subset of XML 1.0 §2.3; non-ASCII letters are let through).
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("empty element or attribute name".into()),
        Some(c) if !is_name_start(c) => {
            return Err(format!("name `{name}` cannot start with {c:?}"));
        }
        _ => {}
    }
    if let Some(bad) = name.chars().find(|c| !is_name_char(*c)) {
        return Err(format!(
            "malformed name `{name}`: {bad:?} is not allowed in a name (missing space before an attribute?)"
        ));
    }
    if name.matches(':').count() > 1 {
        return Err(format!("malformed name `{name}`: more than one `:`"));
    }
    Ok(())
}

fn resolved_ns(
    text: &str,
    offset: usize,
    res: ResolveResult<'_>,
    qname: &str,
) -> Result<String, Error> {
    match res {
        ResolveResult::Bound(ns) => Ok(normalise_ns(&String::from_utf8_lossy(ns.as_ref()))),
        ResolveResult::Unbound => Ok(String::new()),
        ResolveResult::Unknown(prefix) => Err(xml_error(
            text,
            offset,
            format!(
                "namespace prefix `{}` of `{qname}` is not declared",
                String::from_utf8_lossy(&prefix)
            ),
        )),
    }
}

/// Parses a whole document into its root element, enforcing the safety rules above.
pub(crate) fn parse_document(bytes: &[u8]) -> Result<Element, Error> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(Error::TooLarge {
            size: bytes.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_column(
            std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
            e.valid_up_to(),
        );
        Error::Xml {
            line,
            column,
            message: "message is not valid UTF-8".into(),
        }
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Captures (fixture 10/12 in SOURCES.md) may carry whitespace before the XML declaration,
    // which strict XML rejects; skipping it changes no meaning. Offsets stay relative to `text`.
    let start = text.len() - text.trim_start().len();

    let mut reader = NsReader::from_str(&text[start..]);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    reader.config_mut().check_comments = true;

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let before = start + reader.buffer_position() as usize;
        let event = match reader.read_resolved_event() {
            Ok(event) => event,
            Err(e) => {
                return Err(xml_error(
                    text,
                    start + reader.error_position() as usize,
                    format!("malformed XML: {e}"),
                ))
            }
        };
        match event {
            (res, Event::Start(ref e)) | (res, Event::Empty(ref e)) => {
                let is_empty = matches!(event.1, Event::Empty(_));
                let qname = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                check_name(&qname).map_err(|m| xml_error(text, before, m))?;
                if root.is_some() {
                    return Err(xml_error(
                        text,
                        before,
                        format!("content after the document element: <{qname}>"),
                    ));
                }
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(xml_error(
                        text,
                        before,
                        format!("more than {MAX_ELEMENTS} elements"),
                    ));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(xml_error(
                        text,
                        before,
                        format!("elements nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let ns = resolved_ns(text, before, res, &qname)?;
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let mut attrs = Vec::new();
                for attr in e.attributes() {
                    let attr = attr.map_err(|err| {
                        xml_error(
                            text,
                            before,
                            format!("malformed attribute in <{qname}>: {err}"),
                        )
                    })?;
                    let aq = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
                    check_name(&aq).map_err(|m| xml_error(text, before, m))?;
                    if aq == "xmlns" || aq.starts_with("xmlns:") {
                        continue;
                    }
                    let (ares, alocal) = reader.resolve_attribute(attr.key);
                    // Resolved only to reject undeclared prefixes; attributes match by local name.
                    resolved_ns(text, before, ares, &aq)?;
                    let value = attr.unescape_value().map_err(|err| {
                        xml_error(
                            text,
                            before,
                            format!("attribute `{aq}` of <{qname}>: {err} (entities other than the five predefined ones are refused)"),
                        )
                    })?;
                    attrs.push(Attr {
                        name: String::from_utf8_lossy(alocal.as_ref()).into_owned(),
                        value: value.into_owned(),
                    });
                }
                let (line, column) = line_column(text, before);
                let element = Element {
                    ns,
                    name: local,
                    attrs,
                    children: Vec::new(),
                    text: String::new(),
                    line,
                    column,
                };
                if is_empty {
                    close(&mut stack, &mut root, element);
                } else {
                    stack.push(element);
                }
            }
            (_, Event::End(_)) => match stack.pop() {
                Some(element) => close(&mut stack, &mut root, element),
                None => return Err(xml_error(text, before, "end tag without a start tag")),
            },
            (_, Event::Text(t)) => {
                let raw = String::from_utf8_lossy(t.as_ref()).into_owned();
                match stack.last_mut() {
                    Some(top) => {
                        let value = t.unescape().map_err(|err| {
                            xml_error(
                                text,
                                before,
                                format!("{err} (entities other than the five predefined ones are refused)"),
                            )
                        })?;
                        top.text.push_str(&value);
                    }
                    None if raw.trim().is_empty() => {}
                    None => {
                        return Err(xml_error(text, before, "text outside the document element"))
                    }
                }
            }
            (_, Event::CData(t)) => match stack.last_mut() {
                Some(top) => top.text.push_str(&String::from_utf8_lossy(t.as_ref())),
                None => {
                    return Err(xml_error(
                        text,
                        before,
                        "CDATA outside the document element",
                    ))
                }
            },
            (_, Event::DocType(_)) => {
                return Err(xml_error(
                    text,
                    before,
                    "DOCTYPE is not allowed (DTDs and entity declarations are refused)",
                ))
            }
            (_, Event::Decl(_)) | (_, Event::PI(_)) | (_, Event::Comment(_)) => {}
            (_, Event::Eof) => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(xml_error(
            text,
            text.len(),
            format!(
                "document ends inside <{}> opened at line {}, column {}",
                open.name, open.line, open.column
            ),
        ));
    }
    root.ok_or_else(|| xml_error(text, text.len(), "no document element"))
}

fn close(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// Escapes text content.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes an attribute value (double-quoted). Whitespace controls are encoded so that
/// attribute-value normalisation (XML 1.0 §3.3.3) cannot change them on the way back.
pub(crate) fn esc_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("", 0), (1, 1));
    }

    #[test]
    fn rejects_glued_attribute_name() {
        let err = parse_document(
            b"<a xmlns:xsi=\"x\">\n  <b>\n<algorithmOIDReferencexsi:nil=\"true\"/></b></a>",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("line 3, column 1:"), "{err}");
        assert!(err.contains("algorithmOIDReferencexsi"), "{err}");
    }
}
