//! SyncML parser: bytes -> [`SyncMl`], with explicit limits and errors that name line, column and
//! element.
//!
//! Tolerant where real Windows clients differ from the spec (namespace spelling and case, whitespace,
//! `xmlns:msft` on SyncBody, leading whitespace before the XML declaration, Meta children with or
//! without `xmlns="syncml:metinf"`, unknown Meta children). Strict where ambiguity would be unsafe:
//! no DOCTYPE (so no DTD or entity expansion, only the five predefined entities and numeric character
//! references), no duplicate singleton elements, required elements present, numeric codes, valid
//! LocURIs, only known commands under SyncBody, Atomic and Sequence (ITPRO oma-dm-protocol-support.md:
//! "invalid element under SyncBody/Atomic/Sequence -> 400"). Unknown elements anywhere else (in
//! Meta, Item, SyncHdr, inside a command) are skipped with their content, after the same checks.
//!
//! Data text is kept exactly (not trimmed); IDs, codes, LocURIs and Meta values are trimmed. When
//! an Item's Format (its own Meta, else the command's) is `xml`, or Data holds elements, the inner
//! markup is kept byte for byte as [`Data::Xml`].

use std::borrow::Cow;

use quick_xml::events::{BytesStart, BytesText, Event};
use quick_xml::Reader;

use crate::codes::{AlertCode, StatusCode};
use crate::locuri::LocUri;
use crate::model::*;

/// Explicit limits applied while parsing untrusted input.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message accepted, in bytes.
    pub max_bytes: usize,
    /// Deepest element nesting accepted. Values above [`Limits::MAX_DEPTH_CAP`] act as the cap
    /// (the parser recurses per level).
    pub max_depth: usize,
    /// Most commands (including nested ones) in one message.
    pub max_commands: usize,
}

impl Limits {
    /// The deepest nesting any `Limits` allows, whatever `max_depth` says: a guard for the stack.
    pub const MAX_DEPTH_CAP: usize = 64;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 4 * 1024 * 1024,
            max_depth: 32,
            max_commands: 10_000,
        }
    }
}

/// Why a message could not be parsed: where, which element, what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 1-based line of the offending byte.
    pub line: usize,
    /// 1-based column (in characters) of the offending byte.
    pub column: usize,
    /// The element being read when the problem was found, if any.
    pub element: Option<String>,
    pub message: String,
}

/// Parse one SyncML message with the default [`Limits`].
pub fn parse(bytes: &[u8]) -> Result<SyncMl, ParseError> {
    parse_with_limits(bytes, &Limits::default())
}

/// Parse one SyncML message.
pub fn parse_with_limits(bytes: &[u8], limits: &Limits) -> Result<SyncMl, ParseError> {
    if bytes.len() > limits.max_bytes {
        return Err(error_at(
            bytes,
            limits.max_bytes,
            None,
            format!(
                "message is {} bytes, more than the limit of {}",
                bytes.len(),
                limits.max_bytes
            ),
        ));
    }
    let src = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            return Err(error_at(
                bytes,
                e.valid_up_to(),
                None,
                "message is not valid UTF-8".into(),
            ))
        }
    };
    // XML 1.0 §2.2 allows no C0 control character except tab, LF and CR, raw or otherwise; NUL in
    // particular could never be written back.
    if let Some(i) = bytes
        .iter()
        .position(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return Err(error_at(
            bytes,
            i,
            None,
            format!("control character U+{:04X} is not allowed in XML", bytes[i]),
        ));
    }
    // A UTF-8 byte order mark is legal before the declaration; skip it but keep offsets true.
    let start = if src.starts_with('\u{feff}') { 3 } else { 0 };
    let mut reader = Reader::from_str(&src[start..]);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    // Whitespace between elements is skipped by the reader (half the events of an indented
    // message); it is switched off inside <Data>, whose text is kept exactly.
    config.trim_text_start = true;
    config.trim_text_end = false;
    let mut parser = Parser {
        src,
        base: start,
        reader,
        limits,
        stack: Vec::with_capacity(16),
        commands: 0,
        event_pos: 0,
    };
    parser.document()
}

/// Line and column (1-based, columns in characters) of a byte offset.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let offset = offset.min(bytes.len());
    let before = &bytes[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    // Count characters, not bytes: skip UTF-8 continuation bytes.
    let column = before[line_start..]
        .iter()
        .filter(|&&b| (b & 0xC0) != 0x80)
        .count()
        + 1;
    (line, column)
}

fn error_at(bytes: &[u8], offset: usize, element: Option<&str>, message: String) -> ParseError {
    let (line, column) = line_column(bytes, offset);
    ParseError {
        line,
        column,
        element: element.map(str::to_owned),
        message,
    }
}

/// An element just opened: its local name, where it starts, and whether it was `<X/>`.
#[derive(Clone, Copy)]
struct Open<'a> {
    name: &'a str,
    pos: usize,
    empty: bool,
}

/// A LocURI container (`Target`/`Source`): the URI and an optional LocName.
type Address = (LocUri, Option<String>);

/// What a `<Data>` element held, before the enclosing Item decides text vs XML.
struct RawData {
    /// Unescaped text (None when the caller already knew the data is XML).
    text: Option<String>,
    /// Byte range of the inner markup in the source.
    inner: (usize, usize),
    has_elements: bool,
}

struct Parser<'a, 'l> {
    src: &'a str,
    /// Bytes skipped before the reader's input (a BOM); reader offsets are relative to it.
    base: usize,
    reader: Reader<&'a [u8]>,
    limits: &'l Limits,
    /// Open elements (local names), innermost last; for depth limits and error context.
    stack: Vec<&'a str>,
    commands: usize,
    /// Absolute offset where the last event read starts.
    event_pos: usize,
}

type PResult<T> = std::result::Result<T, ParseError>;

/// Where `part` (a slice the slice reader borrowed from `src`) starts in `src`.
fn offset_in(src: &str, part: &[u8]) -> Option<usize> {
    let start = src.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    (p >= start && p + part.len() <= start + src.len()).then(|| p - start)
}

/// The local name of an element (prefix dropped), borrowed from the source for the 'a lifetime,
/// and the offset of its `<`.
fn element_name<'a>(start: &BytesStart<'a>, src: &'a str) -> (&'a str, Option<usize>) {
    let qname = start.name();
    let Some(off) = offset_in(src, qname.as_ref()) else {
        return ("", None);
    };
    // Names end at ASCII delimiters, so these are char boundaries; `get` keeps it panic-free.
    let full = src.get(off..off + qname.as_ref().len()).unwrap_or("");
    let local = match full.bytes().rposition(|b| b == b':') {
        Some(i) => &full[i + 1..],
        None => full,
    };
    (local, off.checked_sub(1))
}

impl<'a> Parser<'a, '_> {
    fn err(&self, pos: usize, element: Option<&str>, message: impl Into<String>) -> ParseError {
        // The reader skips whitespace before markup, so a position taken before reading may
        // point at that whitespace: move it to the markup itself (done here, off the hot path).
        let rest = self.src.as_bytes().get(pos..).unwrap_or_default();
        let pos = pos + rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        error_at(self.src.as_bytes(), pos, element, message.into())
    }

    fn err_here(&self, message: impl Into<String>) -> ParseError {
        let element = self.stack.last().copied();
        self.err(self.event_pos, element, message)
    }

    fn position(&self) -> usize {
        self.base + self.reader.buffer_position() as usize
    }

    /// The next event that matters: comments and processing instructions are skipped, a DOCTYPE is
    /// refused, depth is tracked.
    fn next(&mut self) -> PResult<Event<'a>> {
        loop {
            self.event_pos = self.position();
            let event = match self.reader.read_event() {
                Ok(e) => e,
                Err(e) => {
                    let pos = self.base + self.reader.error_position() as usize;
                    let element = self.stack.last().copied();
                    return Err(self.err(pos, element, format!("malformed XML: {e}")));
                }
            };
            match event {
                Event::Comment(_) | Event::PI(_) => continue,
                Event::DocType(_) => {
                    return Err(self.err_here(
                        "DOCTYPE is not allowed (DTDs and entity declarations are never processed)",
                    ))
                }
                Event::Start(ref s) | Event::Empty(ref s) => {
                    let (name, pos) = element_name(s, self.src);
                    if let Some(pos) = pos {
                        self.event_pos = pos;
                    }
                    let max_depth = self.limits.max_depth.min(Limits::MAX_DEPTH_CAP);
                    if self.stack.len() + 1 > max_depth {
                        return Err(self.err(
                            self.event_pos,
                            Some(name),
                            format!("elements nested deeper than the limit of {max_depth}"),
                        ));
                    }
                    if matches!(event, Event::Start(_)) {
                        self.stack.push(name);
                    }
                    return Ok(event);
                }
                Event::End(_) => {
                    self.stack.pop();
                    return Ok(event);
                }
                Event::Text(ref t) => {
                    // The reader may have skipped whitespace: point at the text itself.
                    if let Some(pos) = offset_in(self.src, t) {
                        self.event_pos = pos;
                    }
                    return Ok(event);
                }
                other => return Ok(other),
            }
        }
    }

    fn open(&self, start: &BytesStart<'a>, empty: bool) -> Open<'a> {
        let (name, _) = element_name(start, self.src);
        Open {
            name,
            pos: self.event_pos,
            empty,
        }
    }

    /// The next child element of `parent`, or None at `</parent>`. Whitespace between elements is
    /// skipped; other text is an error.
    fn child(&mut self, parent: &Open<'a>) -> PResult<Option<Open<'a>>> {
        if parent.empty {
            return Ok(None);
        }
        loop {
            match self.next()? {
                Event::Start(s) => return Ok(Some(self.open(&s, false))),
                Event::Empty(s) => return Ok(Some(self.open(&s, true))),
                Event::End(_) => return Ok(None),
                Event::Text(t) if !t.iter().all(u8::is_ascii_whitespace) => {
                    return Err(self.err(
                        self.event_pos,
                        Some(parent.name),
                        format!("unexpected text inside <{}>", parent.name),
                    ));
                }
                Event::CData(_) => {
                    return Err(self.err(
                        self.event_pos,
                        Some(parent.name),
                        format!("unexpected CDATA inside <{}>", parent.name),
                    ))
                }
                Event::Eof => return Err(self.truncated(parent.name)),
                Event::Decl(_) => {
                    return Err(self.err_here("XML declaration inside the document"));
                }
                _ => {}
            }
        }
    }

    fn truncated(&self, name: &str) -> ParseError {
        self.err(
            self.src.len(),
            Some(name),
            format!("message ends before </{name}> (truncated?)"),
        )
    }

    /// Skip an element we do not model, with everything inside it.
    fn skip(&mut self, el: &Open<'a>) -> PResult<()> {
        if el.empty {
            return Ok(());
        }
        let mut depth = 1usize;
        loop {
            match self.next()? {
                Event::Start(_) => depth += 1,
                Event::End(_) => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Event::Text(t) => {
                    self.unescape(&t, el.name)?;
                }
                Event::Eof => return Err(self.truncated(el.name)),
                _ => {}
            }
        }
    }

    fn unescape(&self, t: &BytesText<'a>, element: &str) -> PResult<Cow<'a, str>> {
        t.unescape().map_err(|e| {
            self.err(
                self.event_pos,
                Some(element),
                format!("bad character or entity reference in <{element}>: {e}"),
            )
        })
    }

    /// The text of a leaf element, unescaped, CDATA kept; a child element is an error.
    fn text(&mut self, el: &Open<'a>) -> PResult<String> {
        if el.empty {
            return Ok(String::new());
        }
        let mut out: Option<Cow<'a, str>> = None;
        loop {
            let piece: Cow<'a, str> = match self.next()? {
                Event::Text(t) => self.unescape(&t, el.name)?,
                Event::CData(c) => match c.decode() {
                    Ok(s) => s,
                    Err(e) => return Err(self.err_here(format!("bad CDATA: {e}"))),
                },
                Event::End(_) => return Ok(out.map(Cow::into_owned).unwrap_or_default()),
                Event::Start(s) | Event::Empty(s) => {
                    let child = self.open(&s, true);
                    return Err(self.err(
                        child.pos,
                        Some(el.name),
                        format!("unexpected element <{}> inside <{}>", child.name, el.name),
                    ));
                }
                Event::Eof => return Err(self.truncated(el.name)),
                _ => continue,
            };
            out = Some(match out {
                None => piece,
                Some(prev) => Cow::Owned(prev.into_owned() + &piece),
            });
        }
    }

    /// A leaf whose surrounding whitespace is not meaningful (IDs, codes, URIs, Meta values).
    fn trimmed(&mut self, el: &Open<'a>) -> PResult<String> {
        let s = self.text(el)?;
        let t = s.trim();
        Ok(if t.len() == s.len() { s } else { t.to_owned() })
    }

    fn code(&mut self, el: &Open<'a>) -> PResult<u16> {
        let s = self.trimmed(el)?;
        s.parse::<u16>().map_err(|_| {
            self.err(
                el.pos,
                Some(el.name),
                format!("`{s}` is not a numeric code"),
            )
        })
    }

    fn set<T>(&self, slot: &mut Option<T>, el: &Open<'a>, value: T) -> PResult<()> {
        if slot.is_some() {
            return Err(self.err(el.pos, Some(el.name), format!("duplicate <{}>", el.name)));
        }
        *slot = Some(value);
        Ok(())
    }

    fn flag(&mut self, slot: &mut bool, el: &Open<'a>) -> PResult<()> {
        if *slot {
            return Err(self.err(el.pos, Some(el.name), format!("duplicate <{}>", el.name)));
        }
        let content = self.text(el)?;
        if !content.trim().is_empty() {
            return Err(self.err(
                el.pos,
                Some(el.name),
                format!("<{}> must be empty", el.name),
            ));
        }
        *slot = true;
        Ok(())
    }

    fn required<T>(&self, value: Option<T>, parent: &Open<'a>, child: &str) -> PResult<T> {
        value.ok_or_else(|| {
            self.err(
                parent.pos,
                Some(parent.name),
                format!("<{}> has no <{child}>", parent.name),
            )
        })
    }

    fn document(&mut self) -> PResult<SyncMl> {
        let mut msg = None;
        loop {
            match self.next()? {
                Event::Decl(d) => {
                    if msg.is_some() {
                        return Err(self.err_here("XML declaration after the root element"));
                    }
                    if let Some(Ok(enc)) = d.encoding() {
                        if !enc.eq_ignore_ascii_case(b"utf-8") {
                            return Err(self.err_here("only UTF-8 encoded messages are accepted"));
                        }
                    }
                }
                Event::Text(t) if !t.iter().all(u8::is_ascii_whitespace) => {
                    return Err(self.err_here("text outside the SyncML element"));
                }
                event @ (Event::Start(_) | Event::Empty(_)) => {
                    let (s, empty) = match event {
                        Event::Start(s) => (s, false),
                        Event::Empty(s) => (s, true),
                        _ => continue,
                    };
                    let el = self.open(&s, empty);
                    if msg.is_some() {
                        return Err(self.err(el.pos, Some(el.name), "content after </SyncML>"));
                    }
                    if el.name != "SyncML" {
                        return Err(self.err(
                            el.pos,
                            Some(el.name),
                            format!("root element is <{}>, expected <SyncML>", el.name),
                        ));
                    }
                    self.check_namespace(&s, &el)?;
                    msg = Some(self.syncml(&el)?);
                }
                Event::Eof => {
                    return msg.ok_or_else(|| self.err_here("no <SyncML> element"));
                }
                Event::CData(_) => return Err(self.err_here("CDATA outside the SyncML element")),
                _ => {}
            }
        }
    }

    /// `SYNCML:SYNCML1.2` in any case, 1.1 too, or no namespace at all (real clients vary);
    /// anything else is not a SyncML message.
    fn check_namespace(&self, start: &BytesStart<'a>, el: &Open<'a>) -> PResult<()> {
        for attr in start.attributes().with_checks(false) {
            let attr =
                attr.map_err(|e| self.err(el.pos, Some(el.name), format!("bad attribute: {e}")))?;
            if attr.key.as_ref() == b"xmlns" {
                let v = attr.value.as_ref();
                let ok = v.len() >= 13 && v[..13].eq_ignore_ascii_case(b"syncml:syncml");
                if !ok && !v.is_empty() {
                    return Err(self.err(
                        el.pos,
                        Some(el.name),
                        format!("namespace `{}` is not SyncML", String::from_utf8_lossy(v)),
                    ));
                }
            }
        }
        Ok(())
    }

    fn syncml(&mut self, root: &Open<'a>) -> PResult<SyncMl> {
        let mut hdr = None;
        let mut body = None;
        while let Some(c) = self.child(root)? {
            match c.name {
                "SyncHdr" => {
                    let v = self.hdr(&c)?;
                    self.set(&mut hdr, &c, v)?;
                }
                "SyncBody" => {
                    let v = self.body(&c)?;
                    self.set(&mut body, &c, v)?;
                }
                other => {
                    return Err(self.err(
                        c.pos,
                        Some(other),
                        format!("unknown element <{other}> in <SyncML>"),
                    ))
                }
            }
        }
        let hdr = self.required(hdr, root, "SyncHdr")?;
        let body = self.required(body, root, "SyncBody")?;
        Ok(SyncMl { hdr, body })
    }

    fn hdr(&mut self, el: &Open<'a>) -> PResult<SyncHdr> {
        let (mut ver_dtd, mut ver_proto, mut session_id, mut msg_id) = (None, None, None, None);
        let (mut target, mut source, mut resp_uri, mut cred, mut meta) =
            (None, None, None, None, None);
        while let Some(c) = self.child(el)? {
            match c.name {
                "VerDTD" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut ver_dtd, &c, v)?
                }
                "VerProto" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut ver_proto, &c, v)?
                }
                "SessionID" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut session_id, &c, v)?
                }
                "MsgID" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut msg_id, &c, v)?
                }
                "Target" => {
                    let v = self.address(&c)?;
                    self.set(&mut target, &c, v)?
                }
                "Source" => {
                    let v = self.address(&c)?;
                    self.set(&mut source, &c, v)?
                }
                "RespURI" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut resp_uri, &c, v)?
                }
                "Cred" => {
                    let v = self.cred(&c)?;
                    self.set(&mut cred, &c, v)?
                }
                "Meta" => {
                    let v = self.meta(&c)?;
                    self.set(&mut meta, &c, v)?
                }
                _ => self.skip(&c)?,
            }
        }
        let (target, target_name) = target.map_or((None, None), |(u, n)| (Some(u), n));
        let (source, source_name) = source.map_or((None, None), |(u, n)| (Some(u), n));
        Ok(SyncHdr {
            ver_dtd: self.required(ver_dtd, el, "VerDTD")?,
            ver_proto: self.required(ver_proto, el, "VerProto")?,
            session_id: self.required(session_id, el, "SessionID")?,
            msg_id: self.required(msg_id, el, "MsgID")?,
            target,
            target_name,
            source,
            source_name,
            resp_uri,
            cred,
            meta,
        })
    }

    /// `<Target>`/`<Source>`: a required LocURI and an optional LocName.
    fn address(&mut self, el: &Open<'a>) -> PResult<Address> {
        let (mut uri, mut name) = (None, None);
        while let Some(c) = self.child(el)? {
            match c.name {
                "LocURI" => {
                    let s = self.trimmed(&c)?;
                    let u = LocUri::parse(s)
                        .map_err(|e| self.err(c.pos, Some(c.name), e.to_string()))?;
                    self.set(&mut uri, &c, u)?
                }
                "LocName" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut name, &c, v)?
                }
                _ => self.skip(&c)?,
            }
        }
        Ok((self.required(uri, el, "LocURI")?, name))
    }

    fn cred(&mut self, el: &Open<'a>) -> PResult<Cred> {
        let (mut meta, mut data) = (None, None);
        while let Some(c) = self.child(el)? {
            match c.name {
                "Meta" => {
                    let v = self.meta(&c)?;
                    self.set(&mut meta, &c, v)?
                }
                "Data" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut data, &c, v)?
                }
                _ => self.skip(&c)?,
            }
        }
        Ok(Cred {
            meta,
            data: self.required(data, el, "Data")?,
        })
    }

    fn meta(&mut self, el: &Open<'a>) -> PResult<Meta> {
        let mut m = Meta::default();
        while let Some(c) = self.child(el)? {
            let slot = match c.name {
                "Format" => &mut m.format,
                "Type" => &mut m.r#type,
                "Mark" => &mut m.mark,
                "Size" => &mut m.size,
                "MaxMsgSize" => &mut m.max_msg_size,
                "MaxObjSize" => &mut m.max_obj_size,
                "NextNonce" => &mut m.next_nonce,
                "Version" => &mut m.version,
                // MetInf has more (EMI, Mem, Anchor...); MS-MDM does not use them.
                _ => {
                    self.skip(&c)?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(self.err(c.pos, Some(c.name), format!("duplicate <{}>", c.name)));
            }
            *slot = Some(self.trimmed(&c)?);
        }
        Ok(m)
    }

    fn body(&mut self, el: &Open<'a>) -> PResult<SyncBody> {
        let mut body = SyncBody::default();
        while let Some(c) = self.child(el)? {
            if c.name == "Final" {
                self.flag(&mut body.is_final, &c)?;
                continue;
            }
            match self.command(&c, true)? {
                Some(cmd) => body.commands.push(cmd),
                None => {
                    return Err(self.err(
                        c.pos,
                        Some(c.name),
                        format!("unknown element <{}> in <{}>", c.name, el.name),
                    ))
                }
            }
        }
        Ok(body)
    }

    /// A command element, or None if `el` is not a command allowed here.
    fn command(&mut self, el: &Open<'a>, top_level: bool) -> PResult<Option<Command>> {
        let known = matches!(
            el.name,
            "Add" | "Replace" | "Delete" | "Get" | "Exec" | "Alert" | "Atomic" | "Sequence"
        ) || (top_level && matches!(el.name, "Status" | "Results"));
        if !known {
            return Ok(None);
        }
        self.commands += 1;
        if self.commands > self.limits.max_commands {
            return Err(self.err(
                el.pos,
                Some(el.name),
                format!(
                    "more than {} commands in one message",
                    self.limits.max_commands
                ),
            ));
        }
        Ok(Some(match el.name {
            "Add" => Command::Add(self.item_command(el)?),
            "Replace" => Command::Replace(self.item_command(el)?),
            "Delete" => Command::Delete(self.item_command(el)?),
            "Get" => Command::Get(self.item_command(el)?),
            "Exec" => Command::Exec(self.item_command(el)?),
            "Alert" => Command::Alert(self.alert(el)?),
            "Atomic" => Command::Atomic(self.container(el)?),
            "Sequence" => Command::Sequence(self.container(el)?),
            "Status" => Command::Status(self.status(el)?),
            _ => Command::Results(self.results(el)?),
        }))
    }

    fn item_command(&mut self, el: &Open<'a>) -> PResult<ItemCommand> {
        let (mut cmd_id, mut no_resp, mut meta, mut items) =
            (None, false, None::<Meta>, Vec::new());
        while let Some(c) = self.child(el)? {
            match c.name {
                "CmdID" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut cmd_id, &c, v)?
                }
                "NoResp" => self.flag(&mut no_resp, &c)?,
                "Meta" => {
                    let v = self.meta(&c)?;
                    self.set(&mut meta, &c, v)?
                }
                "Item" => {
                    let fmt = meta
                        .as_ref()
                        .and_then(|m| m.format.as_deref())
                        .map(str::to_owned);
                    items.push(self.item(&c, fmt.as_deref())?)
                }
                _ => self.skip(&c)?,
            }
        }
        Ok(ItemCommand {
            cmd_id: self.required(cmd_id, el, "CmdID")?,
            no_resp,
            meta,
            items,
        })
    }

    fn container(&mut self, el: &Open<'a>) -> PResult<Container> {
        let (mut cmd_id, mut no_resp, mut meta, mut commands) = (None, false, None, Vec::new());
        while let Some(c) = self.child(el)? {
            match c.name {
                "CmdID" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut cmd_id, &c, v)?
                }
                "NoResp" => self.flag(&mut no_resp, &c)?,
                "Meta" => {
                    let v = self.meta(&c)?;
                    self.set(&mut meta, &c, v)?
                }
                _ => match self.command(&c, false)? {
                    Some(cmd) => commands.push(cmd),
                    None => {
                        return Err(self.err(
                            c.pos,
                            Some(c.name),
                            format!("unknown element <{}> in <{}>", c.name, el.name),
                        ))
                    }
                },
            }
        }
        Ok(Container {
            cmd_id: self.required(cmd_id, el, "CmdID")?,
            no_resp,
            meta,
            commands,
        })
    }

    fn alert(&mut self, el: &Open<'a>) -> PResult<Alert> {
        let (mut cmd_id, mut no_resp, mut code, mut items) = (None, false, None, Vec::new());
        while let Some(c) = self.child(el)? {
            match c.name {
                "CmdID" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut cmd_id, &c, v)?
                }
                "NoResp" => self.flag(&mut no_resp, &c)?,
                "Data" => {
                    let v = self.code(&c)?;
                    self.set(&mut code, &c, v)?
                }
                "Item" => items.push(self.item(&c, None)?),
                _ => self.skip(&c)?,
            }
        }
        Ok(Alert {
            cmd_id: self.required(cmd_id, el, "CmdID")?,
            no_resp,
            code: AlertCode::from_u16(self.required(code, el, "Data")?),
            items,
        })
    }

    fn status(&mut self, el: &Open<'a>) -> PResult<Status> {
        let (mut cmd_id, mut msg_ref, mut cmd_ref, mut cmd) = (None, None, None, None);
        let (mut target_refs, mut source_refs, mut chal, mut code, mut items) =
            (Vec::new(), Vec::new(), None, None, Vec::new());
        while let Some(c) = self.child(el)? {
            match c.name {
                "CmdID" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut cmd_id, &c, v)?
                }
                "MsgRef" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut msg_ref, &c, v)?
                }
                "CmdRef" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut cmd_ref, &c, v)?
                }
                "Cmd" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut cmd, &c, v)?
                }
                "TargetRef" => target_refs.push(self.trimmed(&c)?),
                "SourceRef" => source_refs.push(self.trimmed(&c)?),
                "Chal" => {
                    let v = self.chal(&c)?;
                    self.set(&mut chal, &c, v)?
                }
                "Data" => {
                    let v = self.code(&c)?;
                    self.set(&mut code, &c, v)?
                }
                "Item" => items.push(self.item(&c, None)?),
                _ => self.skip(&c)?,
            }
        }
        Ok(Status {
            cmd_id: self.required(cmd_id, el, "CmdID")?,
            // MsgRef may be omitted (it then means the message being answered); CmdRef is blank in
            // the 400 a client sends for a command without CmdID (ITPRO oma-dm-protocol-support.md).
            msg_ref: msg_ref.unwrap_or_default(),
            cmd_ref: cmd_ref.unwrap_or_default(),
            cmd: self.required(cmd, el, "Cmd")?,
            target_refs,
            source_refs,
            chal,
            code: StatusCode::from_u16(self.required(code, el, "Data")?),
            items,
        })
    }

    fn chal(&mut self, el: &Open<'a>) -> PResult<Chal> {
        let mut meta = None;
        while let Some(c) = self.child(el)? {
            match c.name {
                "Meta" => {
                    let v = self.meta(&c)?;
                    self.set(&mut meta, &c, v)?
                }
                _ => self.skip(&c)?,
            }
        }
        Ok(Chal {
            meta: meta.unwrap_or_default(),
        })
    }

    fn results(&mut self, el: &Open<'a>) -> PResult<Results> {
        let (mut cmd_id, mut msg_ref, mut cmd_ref, mut meta) = (None, None, None, None::<Meta>);
        let (mut target_refs, mut source_refs, mut items) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(c) = self.child(el)? {
            match c.name {
                "CmdID" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut cmd_id, &c, v)?
                }
                "MsgRef" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut msg_ref, &c, v)?
                }
                "CmdRef" => {
                    let v = self.trimmed(&c)?;
                    self.set(&mut cmd_ref, &c, v)?
                }
                "Meta" => {
                    let v = self.meta(&c)?;
                    self.set(&mut meta, &c, v)?
                }
                "TargetRef" => target_refs.push(self.trimmed(&c)?),
                "SourceRef" => source_refs.push(self.trimmed(&c)?),
                "Item" => {
                    let fmt = meta
                        .as_ref()
                        .and_then(|m| m.format.as_deref())
                        .map(str::to_owned);
                    items.push(self.item(&c, fmt.as_deref())?)
                }
                _ => self.skip(&c)?,
            }
        }
        Ok(Results {
            cmd_id: self.required(cmd_id, el, "CmdID")?,
            msg_ref: msg_ref.unwrap_or_default(),
            cmd_ref: cmd_ref.unwrap_or_default(),
            meta,
            target_refs,
            source_refs,
            items,
        })
    }

    /// An Item. `parent_format` is the Format of the enclosing command's Meta, which applies to
    /// items that carry no Format of their own.
    fn item(&mut self, el: &Open<'a>, parent_format: Option<&str>) -> PResult<Item> {
        let (mut target, mut source, mut meta, mut data) = (None, None, None::<Meta>, None);
        let mut more_data = false;
        while let Some(c) = self.child(el)? {
            match c.name {
                "Target" => {
                    let v = self.address(&c)?.0;
                    self.set(&mut target, &c, v)?
                }
                "Source" => {
                    let v = self.address(&c)?.0;
                    self.set(&mut source, &c, v)?
                }
                "Meta" => {
                    let v = self.meta(&c)?;
                    self.set(&mut meta, &c, v)?
                }
                "Data" => {
                    let fmt = meta
                        .as_ref()
                        .and_then(|m| m.format.as_deref())
                        .or(parent_format);
                    let v = self.data(&c, fmt.is_some_and(is_xml_format))?;
                    self.set(&mut data, &c, v)?
                }
                "MoreData" => self.flag(&mut more_data, &c)?,
                _ => self.skip(&c)?,
            }
        }
        // The format is known only now if Meta came after Data.
        let fmt = meta
            .as_ref()
            .and_then(|m| m.format.as_deref())
            .or(parent_format);
        let xml = fmt.is_some_and(is_xml_format);
        let data = data.map(|raw| match raw {
            RawData {
                text: Some(text),
                has_elements: false,
                ..
            } if !xml => Data::Text(text),
            RawData { inner: (s, e), .. } => {
                Data::Xml(self.src.get(s..e).unwrap_or_default().to_owned())
            }
        });
        Ok(Item {
            target,
            source,
            meta,
            data,
            more_data,
        })
    }

    /// `<Data>`: unescaped text, unless it is XML (by format or because it holds elements), in
    /// which case the exact inner markup is kept.
    fn data(&mut self, el: &Open<'a>, known_xml: bool) -> PResult<RawData> {
        if el.empty {
            return Ok(RawData {
                text: Some(String::new()),
                inner: (0, 0),
                has_elements: false,
            });
        }
        let inner_start = self.position();
        self.reader.config_mut().trim_text_start = false;
        let result = self.data_inner(el, known_xml, inner_start);
        self.reader.config_mut().trim_text_start = true;
        result
    }

    fn data_inner(
        &mut self,
        el: &Open<'a>,
        known_xml: bool,
        inner_start: usize,
    ) -> PResult<RawData> {
        let mut text: Option<Cow<'a, str>> = None;
        let mut has_elements = false;
        let mut depth = 0usize;
        loop {
            match self.next()? {
                Event::Text(t) => {
                    // Always unescape: it validates entity references even when we keep raw XML.
                    let s = self.unescape(&t, el.name)?;
                    if !known_xml && depth == 0 {
                        text = Some(match text {
                            None => s,
                            Some(prev) => Cow::Owned(prev.into_owned() + &s),
                        });
                    }
                }
                Event::CData(c) => {
                    let s = c
                        .decode()
                        .map_err(|e| self.err_here(format!("bad CDATA: {e}")))?;
                    if !known_xml && depth == 0 {
                        text = Some(match text {
                            None => s,
                            Some(prev) => Cow::Owned(prev.into_owned() + &s),
                        });
                    }
                }
                Event::Start(_) => {
                    has_elements = true;
                    depth += 1;
                }
                Event::Empty(_) => has_elements = true,
                Event::End(_) => {
                    if depth == 0 {
                        let inner_end = self.event_pos;
                        let text = if known_xml || has_elements {
                            None
                        } else {
                            Some(text.map(Cow::into_owned).unwrap_or_default())
                        };
                        return Ok(RawData {
                            text,
                            inner: (inner_start, inner_end),
                            has_elements,
                        });
                    }
                    depth -= 1;
                }
                Event::Eof => return Err(self.truncated(el.name)),
                Event::Decl(_) => return Err(self.err_here("XML declaration inside <Data>")),
                _ => {}
            }
        }
    }
}

fn is_xml_format(f: &str) -> bool {
    f.eq_ignore_ascii_case("xml")
}
