//! SyncML writer: [`SyncMl`] -> the compact XML form Windows accepts, written straight into one
//! pre-sized `String` (no intermediate DOM).
//!
//! Shape (docs/protocol.md §3.2; MS-MDM §4 examples): `<?xml version="1.0" encoding="UTF-8"?>`, root
//! `<SyncML xmlns="SYNCML:SYNCML1.2">`, SyncHdr children in DTD order (VerDTD, VerProto, SessionID,
//! MsgID, Target, Source, RespURI, Cred, Meta), every Meta child with `xmlns="syncml:metinf"`,
//! Status children in DTD order (CmdID, MsgRef, CmdRef, Cmd, TargetRef, SourceRef, Chal, Data,
//! Item), `<Final/>` last. No whitespace between elements.

use crate::model::*;

/// Serialize a message as UTF-8 XML.
pub fn write(msg: &SyncMl) -> String {
    let mut out = String::with_capacity(estimate(msg));
    message(&mut out, msg);
    out
}

/// The length in bytes of [`write()`]`(msg)`, without writing it: the same code runs into a
/// counter instead of a `String`, so a reply's size can be checked against a budget while it is
/// built and the reply is serialized once, when it goes out.
pub fn written_len(msg: &SyncMl) -> usize {
    let mut count = Count(0);
    message(&mut count, msg);
    count.0
}

/// Where the writer's text goes: a `String`, or a [`Count`] of its bytes.
trait Out {
    fn push_str(&mut self, s: &str);
    fn push(&mut self, c: char);
}

impl Out for String {
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s);
    }
    fn push(&mut self, c: char) {
        String::push(self, c);
    }
}

/// Counts the UTF-8 bytes that would have been written.
struct Count(usize);

impl Out for Count {
    fn push_str(&mut self, s: &str) {
        self.0 += s.len();
    }
    fn push(&mut self, c: char) {
        self.0 += c.len_utf8();
    }
}

fn message(out: &mut impl Out, msg: &SyncMl) {
    out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><SyncML xmlns="SYNCML:SYNCML1.2">"#);
    hdr(out, &msg.hdr);
    out.push_str("<SyncBody>");
    for cmd in &msg.body.commands {
        command(out, cmd);
    }
    if msg.body.is_final {
        out.push_str("<Final/>");
    }
    out.push_str("</SyncBody></SyncML>");
}

/// A generous guess of the output size, so the String grows at most rarely.
fn estimate(msg: &SyncMl) -> usize {
    fn items(items: &[Item]) -> usize {
        items
            .iter()
            .map(|i| {
                160 + i.target.as_ref().map_or(0, |u| u.as_str().len())
                    + i.source.as_ref().map_or(0, |u| u.as_str().len())
                    + i.meta.as_ref().map_or(0, |_| 160)
                    + i.data
                        .as_ref()
                        .map_or(0, |d| d.as_str().len() + d.as_str().len() / 8)
            })
            .sum()
    }
    fn cmd(c: &Command) -> usize {
        160 + match c {
            Command::Status(s) => items(&s.items) + if s.chal.is_some() { 200 } else { 0 },
            Command::Results(r) => items(&r.items) + 100,
            Command::Alert(a) => items(&a.items),
            Command::Add(c)
            | Command::Replace(c)
            | Command::Delete(c)
            | Command::Get(c)
            | Command::Exec(c) => items(&c.items) + 100,
            Command::Atomic(c) | Command::Sequence(c) => c.commands.iter().map(cmd).sum(),
        }
    }
    512 + msg.body.commands.iter().map(cmd).sum::<usize>()
}

/// Append `s` with `<`, `>`, `&` escaped; CR and other control characters as character
/// references so that no XML processor's line-end normalisation can change them (NUL, which
/// XML cannot carry at all, becomes U+FFFD).
fn escape(out: &mut impl Out, s: &str) {
    let bytes = s.as_bytes();
    let mut last = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &str = match b {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'\r' => "&#13;",
            b'\t' | b'\n' => continue,
            // NUL cannot appear in XML in any form (XML 1.0 §2.2).
            0 => "\u{FFFD}",
            1..=0x1f => {
                out.push_str(&s[last..i]);
                out.push_str("&#");
                push_u32(out, u32::from(b));
                out.push(';');
                last = i + 1;
                continue;
            }
            _ => continue,
        };
        out.push_str(&s[last..i]);
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(&s[last..]);
}

fn push_u32(out: &mut impl Out, n: u32) {
    if n >= 10 {
        push_u32(out, n / 10);
    }
    out.push(char::from(b'0' + (n % 10) as u8));
}

fn leaf(out: &mut impl Out, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape(out, text);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn opt_leaf(out: &mut impl Out, name: &str, text: Option<&str>) {
    if let Some(t) = text {
        leaf(out, name, t);
    }
}

fn address(out: &mut impl Out, name: &str, uri: &crate::LocUri, loc_name: Option<&str>) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    leaf(out, "LocURI", uri.as_str());
    opt_leaf(out, "LocName", loc_name);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn hdr(out: &mut impl Out, h: &SyncHdr) {
    out.push_str("<SyncHdr>");
    leaf(out, "VerDTD", &h.ver_dtd);
    leaf(out, "VerProto", &h.ver_proto);
    leaf(out, "SessionID", &h.session_id);
    leaf(out, "MsgID", &h.msg_id);
    if let Some(t) = &h.target {
        address(out, "Target", t, h.target_name.as_deref());
    }
    if let Some(s) = &h.source {
        address(out, "Source", s, h.source_name.as_deref());
    }
    opt_leaf(out, "RespURI", h.resp_uri.as_deref());
    if let Some(c) = &h.cred {
        out.push_str("<Cred>");
        if let Some(m) = &c.meta {
            meta(out, m);
        }
        leaf(out, "Data", &c.data);
        out.push_str("</Cred>");
    }
    if let Some(m) = &h.meta {
        meta(out, m);
    }
    out.push_str("</SyncHdr>");
}

/// Meta children in MetInf DTD order, each carrying the MetInf namespace.
fn meta(out: &mut impl Out, m: &Meta) {
    fn field(out: &mut impl Out, name: &str, v: Option<&str>) {
        if let Some(v) = v {
            out.push('<');
            out.push_str(name);
            out.push_str(r#" xmlns="syncml:metinf">"#);
            escape(out, v);
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
    }
    out.push_str("<Meta>");
    field(out, "Format", m.format.as_deref());
    field(out, "Type", m.r#type.as_deref());
    field(out, "Mark", m.mark.as_deref());
    field(out, "Size", m.size.as_deref());
    field(out, "Version", m.version.as_deref());
    field(out, "NextNonce", m.next_nonce.as_deref());
    field(out, "MaxMsgSize", m.max_msg_size.as_deref());
    field(out, "MaxObjSize", m.max_obj_size.as_deref());
    out.push_str("</Meta>");
}

fn item(out: &mut impl Out, i: &Item) {
    out.push_str("<Item>");
    if let Some(t) = &i.target {
        address(out, "Target", t, None);
    }
    if let Some(s) = &i.source {
        address(out, "Source", s, None);
    }
    if let Some(m) = &i.meta {
        meta(out, m);
    }
    match &i.data {
        Some(Data::Text(t)) => leaf(out, "Data", t),
        Some(Data::Xml(x)) => {
            out.push_str("<Data>");
            out.push_str(x);
            out.push_str("</Data>");
        }
        None => {}
    }
    if i.more_data {
        out.push_str("<MoreData/>");
    }
    out.push_str("</Item>");
}

fn items(out: &mut impl Out, list: &[Item]) {
    for i in list {
        item(out, i);
    }
}

fn no_resp(out: &mut impl Out, no_resp: bool) {
    if no_resp {
        out.push_str("<NoResp/>");
    }
}

fn command(out: &mut impl Out, cmd: &Command) {
    let name = cmd.name();
    out.push('<');
    out.push_str(name);
    out.push('>');
    match cmd {
        Command::Status(s) => {
            leaf(out, "CmdID", &s.cmd_id);
            leaf(out, "MsgRef", &s.msg_ref);
            leaf(out, "CmdRef", &s.cmd_ref);
            leaf(out, "Cmd", &s.cmd);
            for r in &s.target_refs {
                leaf(out, "TargetRef", r);
            }
            for r in &s.source_refs {
                leaf(out, "SourceRef", r);
            }
            if let Some(c) = &s.chal {
                out.push_str("<Chal>");
                meta(out, &c.meta);
                out.push_str("</Chal>");
            }
            out.push_str("<Data>");
            push_u32(out, u32::from(s.code.as_u16()));
            out.push_str("</Data>");
            items(out, &s.items);
        }
        Command::Results(r) => {
            leaf(out, "CmdID", &r.cmd_id);
            leaf(out, "MsgRef", &r.msg_ref);
            leaf(out, "CmdRef", &r.cmd_ref);
            if let Some(m) = &r.meta {
                meta(out, m);
            }
            for t in &r.target_refs {
                leaf(out, "TargetRef", t);
            }
            for s in &r.source_refs {
                leaf(out, "SourceRef", s);
            }
            items(out, &r.items);
        }
        Command::Alert(a) => {
            leaf(out, "CmdID", &a.cmd_id);
            no_resp(out, a.no_resp);
            out.push_str("<Data>");
            push_u32(out, u32::from(a.code.as_u16()));
            out.push_str("</Data>");
            items(out, &a.items);
        }
        Command::Add(c)
        | Command::Replace(c)
        | Command::Delete(c)
        | Command::Get(c)
        | Command::Exec(c) => {
            leaf(out, "CmdID", &c.cmd_id);
            no_resp(out, c.no_resp);
            if let Some(m) = &c.meta {
                meta(out, m);
            }
            items(out, &c.items);
        }
        Command::Atomic(c) | Command::Sequence(c) => {
            leaf(out, "CmdID", &c.cmd_id);
            no_resp(out, c.no_resp);
            if let Some(m) = &c.meta {
                meta(out, m);
            }
            for inner in &c.commands {
                command(out, inner);
            }
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_control_characters() {
        let mut out = String::new();
        escape(&mut out, "a<b>&c\r\n\t\u{1}\0é\"'");
        assert_eq!(out, "a&lt;b&gt;&amp;c&#13;\n\t&#1;\u{FFFD}é\"'");
    }
}
