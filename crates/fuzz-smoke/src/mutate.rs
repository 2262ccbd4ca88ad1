//! A deterministic mutation engine: from one input (and a second one to splice with) it makes a
//! new input by stacking a few mutations: bytes (bit flips, interesting bytes and numbers,
//! inserts, deletes, truncation, repeated chunks, splices) and, by the input's [`Shape`], XML
//! (elements duplicated, removed or nested deep, markup tokens, text replaced) or JWT (a
//! segment decoded, mutated and encoded again). Everything comes from one seeded RNG, so a run
//! with the same seed makes the same inputs.

use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::targets::Shape;

/// Mutants are cut to this size: larger inputs only slow the run (the parsers' own size limits
/// are tested by their crates).
pub const MAX_INPUT: usize = 64 * 1024;

/// Bytes that often change a parser's path.
const INTERESTING_BYTES: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0xc0, 0xe0, 0xf0, b'<', b'>', b'&', b';', b'"', b'\'',
    b'/', b'=', b'.', b'-', b'0', b'9', b' ', b'\n', b'\r', b'\t',
];

/// Numbers that overflow, underflow or sit on a boundary, as text.
const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "255",
    "256",
    "65535",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1e308",
    "1e309",
    "-1e309",
    "NaN",
    "1.5",
    "",
    "99999999999999999999999999999999",
];

/// XML markup a parser must refuse or handle: declarations, DTDs, entities, CDATA, comments,
/// processing instructions, namespaces, broken UTF-8.
const XML_TOKENS: &[&str] = &[
    "<!DOCTYPE a [<!ENTITY e \"x\">]>",
    "<!ENTITY e SYSTEM \"file:///etc/passwd\">",
    "&e;",
    "&amp;",
    "&lt;",
    "&#0;",
    "&#x10FFFF;",
    "&#xFFFFFFFF;",
    "&#;",
    "&",
    "<![CDATA[",
    "]]>",
    "<![CDATA[<a>]]>",
    "<!--",
    "-->",
    "<?xml version=\"1.0\" encoding=\"UTF-16\"?>",
    "<?pi data?>",
    "</",
    "/>",
    "<",
    ">",
    " xmlns=\"\"",
    " xmlns:a=\"urn:x\"",
    " a:b=\"c\"",
    " x=\"1\" x=\"2\"",
    "=",
    "\"",
    "'",
    "\u{feff}",
    "\u{0}",
    "\u{1F600}",
    "\u{202e}",
];

/// Bytes that are not UTF-8.
const BAD_UTF8: &[&[u8]] = &[
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xc0\xaf",
];

/// JSON values and fragments for JWT headers and claims.
const JSON_TOKENS: &[&str] = &[
    "\"alg\":\"none\"",
    "\"alg\":\"HS256\"",
    "\"alg\":\"RS256\"",
    "\"kid\":null",
    "\"kid\":\"\"",
    "\"kid\":[1]",
    "\"exp\":1e309",
    "\"exp\":-1e309",
    "\"exp\":9.3e18",
    "\"nbf\":-9.3e18",
    "\"nbf\":\"now\"",
    "\"aud\":[]",
    "\"aud\":[\"api://redeploy\",1]",
    "\"iss\":{}",
    "\"tid\":null",
    "\"upn\":\"\\u0000\"",
    "\"crit\":[\"x\"]",
    "\"jku\":\"https://evil.test/keys\"",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "{}",
    "null",
    ",",
    "\\ud800",
];

/// Makes new inputs from a seeded RNG.
#[derive(Debug)]
pub struct Mutator {
    rng: StdRng,
}

impl Mutator {
    /// A mutator whose inputs depend only on `seed`.
    pub fn new(seed: u64) -> Self {
        Mutator {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A number below `n` (which must be above 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.rng.gen_range(0..n)
    }

    /// A new input from `input`, with one to four mutations stacked; `other` is spliced with.
    pub fn mutate(&mut self, input: &[u8], other: &[u8], shape: Shape) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..self.rng.gen_range(1..=4) {
            let structured = self.rng.gen_bool(0.5);
            match (shape, structured) {
                (Shape::Xml, true) => self.xml(&mut out, other),
                (Shape::Jwt, true) => self.jwt(&mut out),
                _ => self.bytes(&mut out, other),
            }
        }
        out.truncate(MAX_INPUT);
        out
    }

    /// A position in `0..=len`.
    fn position(&mut self, len: usize) -> usize {
        self.rng.gen_range(0..=len)
    }

    /// A range `start..end` inside `0..len`, of at most `max` bytes (empty when `len` is 0).
    fn range(&mut self, len: usize, max: usize) -> (usize, usize) {
        let start = self.position(len);
        let end = start + self.rng.gen_range(0..=max.min(len - start));
        (start, end)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.gen_range(0..items.len())]
    }

    /// One byte-level mutation.
    fn bytes(&mut self, out: &mut Vec<u8>, other: &[u8]) {
        let len = out.len();
        match self.rng.gen_range(0..10) {
            0 if len > 0 => {
                let at = self.below(len);
                out[at] ^= 1 << self.rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let at = self.below(len);
                out[at] = *self.pick(INTERESTING_BYTES);
            }
            2 => {
                let at = self.position(len);
                let count = self.rng.gen_range(1..=8);
                let inserted: Vec<u8> = (0..count).map(|_| self.rng.gen()).collect();
                out.splice(at..at, inserted);
            }
            3 => {
                let (start, end) = self.range(len, 64);
                out.drain(start..end);
            }
            4 => {
                let at = self.position(len);
                out.truncate(at);
            }
            5 => {
                // A chunk repeated: lists and nesting grow, lengths stop matching.
                let (start, end) = self.range(len, 256);
                let chunk = out[start..end].to_vec();
                let times = *self.pick(&[1usize, 2, 8, 64]);
                let at = end;
                out.splice(at..at, chunk.repeat(times));
            }
            6 => {
                // Splice: a prefix of this input and a suffix of the other.
                let cut = self.position(len);
                let from = self.position(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            7 => {
                let (start, end) = self.range(other.len(), 128);
                let at = self.position(len);
                out.splice(at..at, other[start..end].iter().copied());
            }
            8 => self.number(out),
            _ => {
                let at = self.position(len);
                let bad = self.pick(BAD_UTF8);
                out.splice(at..at, bad.iter().copied());
            }
        }
    }

    /// Replaces a run of ASCII digits (or inserts at a random place) with an interesting number.
    fn number(&mut self, out: &mut Vec<u8>) {
        let digits: Vec<usize> = (0..out.len())
            .filter(|&i| out[i].is_ascii_digit())
            .collect();
        let number = self.pick(INTERESTING_NUMBERS).as_bytes();
        if digits.is_empty() {
            let at = self.position(out.len());
            out.splice(at..at, number.iter().copied());
            return;
        }
        let start = *self.pick(&digits);
        let end = (start..out.len())
            .find(|&i| !out[i].is_ascii_digit())
            .unwrap_or(out.len());
        out.splice(start..end, number.iter().copied());
    }

    /// One XML-aware mutation.
    fn xml(&mut self, out: &mut Vec<u8>, other: &[u8]) {
        let elements = elements(out);
        match self.rng.gen_range(0..6) {
            0 if !elements.is_empty() => {
                let e = *self.pick(&elements);
                let copy = out[e.start..e.end].to_vec();
                let times = *self.pick(&[1usize, 2, 16, 100]);
                out.splice(e.end..e.end, copy.repeat(times));
            }
            1 if !elements.is_empty() => {
                let e = *self.pick(&elements);
                out.drain(e.start..e.end);
            }
            2 if !elements.is_empty() => {
                // Deep nesting: an element wrapped in many levels of itself.
                let e = *self.pick(&elements);
                let depth = *self.pick(&[20usize, 33, 65, 200, 2000]);
                let name = out[e.name.0..e.name.1].to_vec();
                let mut open = Vec::new();
                let mut close = Vec::new();
                for _ in 0..depth {
                    open.push(b'<');
                    open.extend_from_slice(&name);
                    open.push(b'>');
                    close.extend_from_slice(b"</");
                    close.extend_from_slice(&name);
                    close.push(b'>');
                }
                out.splice(e.end..e.end, close);
                out.splice(e.start..e.start, open);
            }
            3 if !elements.is_empty() => {
                // An element of the other input put inside this one (new children, wrong places).
                let theirs = self::elements(other);
                let e = *self.pick(&elements);
                if let Some(t) = theirs.get(self.below(theirs.len().max(1))) {
                    let copy = other[t.start..t.end].to_vec();
                    let at = if self.rng.gen_bool(0.5) {
                        e.start
                    } else {
                        e.end
                    };
                    out.splice(at..at, copy);
                }
            }
            4 => {
                // Text between tags replaced by a number, markup or nothing.
                let texts = texts(out);
                if let Some(&(start, end)) = texts.get(self.below(texts.len().max(1))) {
                    let with: Vec<u8> = match self.rng.gen_range(0..3) {
                        0 => self.pick(INTERESTING_NUMBERS).as_bytes().to_vec(),
                        1 => self.pick(XML_TOKENS).as_bytes().to_vec(),
                        _ => Vec::new(),
                    };
                    out.splice(start..end, with);
                }
            }
            _ => {
                let token = self.pick(XML_TOKENS).as_bytes();
                let at = self.position(out.len());
                out.splice(at..at, token.iter().copied());
            }
        }
    }

    /// One JWT-aware mutation: a segment mutated as the JSON (or bytes) it encodes, or the
    /// segments themselves dropped, repeated or swapped.
    fn jwt(&mut self, out: &mut Vec<u8>) {
        let text = String::from_utf8_lossy(out).into_owned();
        let mut segments: Vec<String> = text.split('.').map(str::to_string).collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        match self.rng.gen_range(0..5) {
            0 if segments.len() > 1 => {
                let at = self.below(segments.len());
                segments.remove(at);
            }
            1 => {
                let at = self.below(segments.len());
                let copy = segments[at].clone();
                segments.insert(at, copy);
            }
            2 if segments.len() > 1 => {
                let a = self.below(segments.len());
                let b = self.below(segments.len());
                segments.swap(a, b);
            }
            _ => {
                let at = self.below(segments.len().min(2));
                let mut decoded = b64.decode(&segments[at]).unwrap_or_default();
                if self.rng.gen_bool(0.5) {
                    let token = self.pick(JSON_TOKENS).as_bytes();
                    let pos = self.position(decoded.len());
                    decoded.splice(pos..pos, token.iter().copied());
                } else {
                    let copy = decoded.clone();
                    self.bytes(&mut decoded, &copy);
                }
                segments[at] = b64.encode(decoded);
            }
        }
        *out = segments.join(".").into_bytes();
    }
}

/// Where an element is in a text: its whole span (start tag to end tag) and its name.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    name: (usize, usize),
}

/// The elements of `xml`, found in one pass over its tags (no parser, so that broken inputs
/// still have elements to mutate): a start tag is matched with the next end tag of its name
/// that closes it; self-closing tags are elements of their own.
fn elements(xml: &[u8]) -> Vec<Span> {
    let mut found = Vec::new();
    let mut open: Vec<(usize, (usize, usize))> = Vec::new();
    let mut i = 0;
    while let Some(lt) = xml[i..].iter().position(|&b| b == b'<') {
        let start = i + lt;
        let closing = xml.get(start + 1) == Some(&b'/');
        let name_start = start + 1 + usize::from(closing);
        if !xml.get(name_start).copied().is_some_and(is_name_start) {
            i = start + 1;
            continue;
        }
        let name_end = (name_start..xml.len())
            .find(|&j| !is_name_byte(xml[j]))
            .unwrap_or(xml.len());
        let Some(gt) = xml[name_end..].iter().position(|&b| b == b'>') else {
            break;
        };
        let tag_end = name_end + gt + 1;
        let name = &xml[name_start..name_end];
        if closing {
            // Only the innermost open tags are searched: broken nesting stays linear.
            let from = open.len().saturating_sub(256);
            let matching = open[from..]
                .iter()
                .rposition(|&(_, (s, e))| &xml[s..e] == name);
            if let Some(at) = matching.map(|at| from + at) {
                let (element_start, name) = open[at];
                open.truncate(at);
                found.push(Span {
                    start: element_start,
                    end: tag_end,
                    name,
                });
            }
        } else if xml[tag_end - 2] == b'/' {
            found.push(Span {
                start,
                end: tag_end,
                name: (name_start, name_end),
            });
        } else {
            open.push((start, (name_start, name_end)));
        }
        i = tag_end;
    }
    found.sort_by_key(|e| e.start);
    found
}

/// Non-empty text between a `>` and the next `<`. At most 64.
fn texts(xml: &[u8]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(gt) = xml[i..].iter().position(|&b| b == b'>') {
        let start = i + gt + 1;
        let Some(lt) = xml[start..].iter().position(|&b| b == b'<') else {
            break;
        };
        if lt > 0
            && xml[start..start + lt]
                .iter()
                .any(|b| !b.is_ascii_whitespace())
        {
            found.push((start, start + lt));
            if found.len() == 64 {
                break;
            }
        }
        i = start + lt;
    }
    found
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_inputs() {
        let seed = b"<a><b x=\"1\">text 42</b><c/></a>";
        let run = |s| {
            let mut m = Mutator::new(s);
            (0..200)
                .map(|_| m.mutate(seed, b"<d>other</d>", Shape::Xml))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn empty_inputs_and_every_shape_are_mutated_without_panicking() {
        let mut m = Mutator::new(1);
        for shape in [Shape::Xml, Shape::Der, Shape::Jwt] {
            for _ in 0..2000 {
                let out = m.mutate(b"", b"", shape);
                assert!(out.len() <= MAX_INPUT);
                m.mutate(b"eyJhbGciOiJSUzI1NiJ9.e30.sig", b"<x/>", shape);
            }
        }
    }

    #[test]
    fn elements_are_found_by_their_end_tags() {
        let xml = b"<a><b x=\"1\">t</b><c/></a>";
        let names: Vec<&[u8]> = elements(xml)
            .iter()
            .map(|e| &xml[e.name.0..e.name.1])
            .collect();
        assert_eq!(names, [&b"a"[..], b"b", b"c"]);
        assert_eq!(texts(xml), [(12, 13)]);
    }
}
