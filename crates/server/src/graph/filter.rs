//! `$filter` and `$orderby` of the Graph subset: a small parser of our own for what scripts use
//! (`eq`, `ne`, `gt`/`ge`/`lt`/`le` on dates, `startswith()`, `contains()`, `not`, `and`, `or`,
//! parentheses), turned into a [`DeviceCondition`] the store evaluates in its query. Syntax per
//! Microsoft Graph "Use query parameters" ($filter operators and functions, $orderby) and OData
//! v4.01 URL conventions §5.1.1 (a quote inside a string literal is doubled; DateTimeOffset
//! literals unquoted).

use redeploy_core::compliance::{self, ComplianceState};
use redeploy_core::device_condition::{Comparison, DeviceCondition, TextField, TextOp, TimeField};
use redeploy_core::store::DeviceSort;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::resource::{JOIN_TYPES, NEVER};

/// A parsed `$filter` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `property op literal`.
    Compare {
        property: Property,
        op: CompareOp,
        value: String,
    },
    /// `startswith(property, 'text')` or `contains(property, 'text')`.
    Function {
        function: TextFunction,
        property: Property,
        text: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFunction {
    StartsWith,
    Contains,
}

/// A managedDevice property `$filter` may name, and what it is made of here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    /// Free text stored on the device.
    Text(&'static str, TextField),
    /// A date, compared as an instant.
    Date(&'static str, TimeField),
    /// One of a few words, each the rendering of a known condition.
    Word(&'static str),
}

impl Property {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Text(n, _) | Self::Date(n, _) | Self::Word(n) => n,
        }
    }
}

/// Properties `$filter` accepts.
const FILTERABLE: &[Property] = &[
    Property::Text("deviceName", TextField::Name),
    Property::Text("serialNumber", TextField::Serial),
    Property::Text("osVersion", TextField::OsVersion),
    Property::Text("userPrincipalName", TextField::PrimaryUser),
    Property::Text("manufacturer", TextField::Manufacturer),
    Property::Text("model", TextField::Model),
    Property::Text("azureADDeviceId", TextField::AadDeviceId),
    Property::Date("lastSyncDateTime", TimeField::LastSeen),
    Property::Date("enrolledDateTime", TimeField::EnrolledAt),
    Property::Word("joinType"),
    Property::Word("operatingSystem"),
    Property::Word("complianceState"),
];

fn filterable_names() -> String {
    FILTERABLE
        .iter()
        .map(Property::name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    Comma,
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            ',' => {
                chars.next();
                out.push(Token::Comma);
            }
            '\'' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        // OData escapes a quote inside a string by doubling it.
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            text.push('\'');
                        }
                        Some('\'') => break,
                        Some(ch) => text.push(ch),
                        None => return Err("a string literal is not closed".into()),
                    }
                }
                out.push(Token::Text(text));
            }
            _ => {
                let mut word = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || matches!(ch, '(' | ')' | ',' | '\'') {
                        break;
                    }
                    word.push(ch);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

/// Nesting deeper than this is refused, so a hostile `$filter` cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn expect(&mut self, want: Token, what: &str) -> Result<(), String> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            other => Err(format!(
                "expected {what}, found {}",
                describe(other.as_ref())
            )),
        }
    }

    fn or_expr(&mut self) -> Result<Filter, String> {
        let mut left = self.and_expr()?;
        while self.keyword("or") {
            self.next();
            left = Filter::Or(Box::new(left), Box::new(self.and_expr()?));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Filter, String> {
        let mut left = self.term()?;
        while self.keyword("and") {
            self.next();
            left = Filter::And(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn property(&mut self) -> Result<Property, String> {
        match self.next() {
            Some(Token::Word(w)) => FILTERABLE
                .iter()
                .find(|p| p.name().eq_ignore_ascii_case(&w))
                .copied()
                .ok_or_else(|| {
                    format!(
                        "property {w:?} cannot be filtered on; supported: {}",
                        filterable_names()
                    )
                }),
            other => Err(format!(
                "expected a property name, found {}",
                describe(other.as_ref())
            )),
        }
    }

    fn term(&mut self) -> Result<Filter, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("the expression nests deeper than {MAX_DEPTH}"));
        }
        let term = self.term_inner();
        self.depth -= 1;
        term
    }

    fn term_inner(&mut self) -> Result<Filter, String> {
        if self.peek() == Some(&Token::Open) {
            self.next();
            let inner = self.or_expr()?;
            self.expect(Token::Close, "')'")?;
            return Ok(inner);
        }
        if self.keyword("not") {
            self.next();
            return Ok(Filter::Not(Box::new(self.term()?)));
        }
        for (word, function) in [
            ("startswith", TextFunction::StartsWith),
            ("contains", TextFunction::Contains),
        ] {
            if self.keyword(word) {
                self.next();
                return self.function(word, function);
            }
        }
        let property = self.property()?;
        let name = property.name();
        let op = match self.next() {
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "eq" => CompareOp::Eq,
                "ne" => CompareOp::Ne,
                "ge" => CompareOp::Ge,
                "le" => CompareOp::Le,
                "gt" => CompareOp::Gt,
                "lt" => CompareOp::Lt,
                other => {
                    return Err(format!(
                        "operator {other:?} is not supported (eq, ne, ge, le, gt, lt, \
                         startswith, contains, not, and, or)"
                    ))
                }
            },
            other => {
                return Err(format!(
                    "expected an operator after {name}, found {}",
                    describe(other.as_ref())
                ))
            }
        };
        let is_date = matches!(property, Property::Date(..));
        let value = match self.next() {
            Some(Token::Text(t)) => t,
            // OData writes DateTimeOffset literals unquoted.
            Some(Token::Word(w)) if is_date => w,
            other => {
                return Err(format!(
                    "expected a quoted value after {name}, found {}",
                    describe(other.as_ref())
                ))
            }
        };
        if is_date {
            date(&value)?;
        } else if !matches!(op, CompareOp::Eq | CompareOp::Ne) {
            return Err(format!(
                "{name} supports eq, ne, startswith and contains; gt, ge, lt and le are only \
                 for lastSyncDateTime and enrolledDateTime"
            ));
        }
        Ok(Filter::Compare {
            property,
            op,
            value,
        })
    }

    /// The rest of `startswith(property, 'text')` after its name.
    fn function(&mut self, word: &str, function: TextFunction) -> Result<Filter, String> {
        self.expect(Token::Open, &format!("'(' after {word}"))?;
        let property = self.property()?;
        if let Property::Date(name, _) = property {
            return Err(format!("{word} takes a text property, not the date {name}"));
        }
        self.expect(Token::Comma, &format!("',' in {word}(property, 'text')"))?;
        let text = match self.next() {
            Some(Token::Text(t)) => t,
            other => {
                return Err(format!(
                    "{word} needs a quoted text, found {}",
                    describe(other.as_ref())
                ))
            }
        };
        self.expect(Token::Close, &format!("')' closing {word}"))?;
        Ok(Filter::Function {
            function,
            property,
            text,
        })
    }
}

fn date(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("{text:?} is not a date-time like 2026-01-31T00:00:00Z"))
}

fn describe(t: Option<&Token>) -> String {
    match t {
        None => "the end".into(),
        Some(Token::Word(w)) => format!("{w:?}"),
        Some(Token::Text(t)) => format!("'{t}'"),
        Some(Token::Open) => "'('".into(),
        Some(Token::Close) => "')'".into(),
        Some(Token::Comma) => "','".into(),
    }
}

/// Parses a `$filter` value; the error says what is wrong.
pub fn parse_filter(input: &str) -> Result<Filter, String> {
    let mut p = Parser {
        tokens: tokenize(input)?,
        at: 0,
        depth: 0,
    };
    let filter = p.or_expr()?;
    if p.at < p.tokens.len() {
        return Err(format!(
            "unexpected {} after the expression",
            describe(p.peek())
        ));
    }
    Ok(filter)
}

/// How a word property's value is tested against a literal, without regard to case (as Intune
/// compares these strings).
fn word_test(op: WordTest, have: &str, want: &str) -> bool {
    let (have, want) = (have.to_lowercase(), want.to_lowercase());
    match op {
        WordTest::Eq => have == want,
        WordTest::Ne => have != want,
        WordTest::StartsWith => have.starts_with(&want),
        WordTest::Contains => have.contains(&want),
    }
}

#[derive(Clone, Copy)]
enum WordTest {
    Eq,
    Ne,
    StartsWith,
    Contains,
}

/// Every word a word property can show, with the condition of the devices that show it.
fn words(property: &str, now: OffsetDateTime) -> Vec<(&'static str, DeviceCondition)> {
    match property {
        "joinType" => {
            let mut out: Vec<(&'static str, DeviceCondition)> = Vec::new();
            for (join, word) in JOIN_TYPES {
                match out.iter_mut().find(|(w, _)| *w == word) {
                    Some((_, DeviceCondition::JoinTypeIn(types))) => types.push(join),
                    _ => out.push((word, DeviceCondition::JoinTypeIn(vec![join]))),
                }
            }
            out
        }
        "complianceState" => ComplianceState::ALL
            .iter()
            .map(|s| (s.as_str(), compliance::condition(*s, now)))
            .collect(),
        // Every device here is a Windows PC.
        _ => vec![("Windows", DeviceCondition::All(vec![]))],
    }
}

impl Filter {
    /// The condition the store evaluates for this filter at `now` (compliance depends on it).
    pub fn condition(&self, now: OffsetDateTime) -> Result<DeviceCondition, String> {
        Ok(match self {
            Filter::And(a, b) => a.condition(now)?.and(b.condition(now)?),
            Filter::Or(a, b) => DeviceCondition::Any(vec![a.condition(now)?, b.condition(now)?]),
            Filter::Not(a) => a.condition(now)?.negate(),
            Filter::Function {
                function,
                property,
                text,
            } => {
                let (text_op, test) = match function {
                    TextFunction::StartsWith => (TextOp::StartsWith, WordTest::StartsWith),
                    TextFunction::Contains => (TextOp::Contains, WordTest::Contains),
                };
                match property {
                    Property::Text(_, field) => DeviceCondition::Text {
                        field: *field,
                        op: text_op,
                        value: text.clone(),
                    },
                    Property::Word(name) => word_condition(name, test, text, now),
                    // Refused by the parser.
                    Property::Date(name, _) => return Err(format!("{name} is a date")),
                }
            }
            Filter::Compare {
                property,
                op,
                value,
            } => match property {
                Property::Text(_, field) => {
                    let eq = DeviceCondition::Text {
                        field: *field,
                        op: TextOp::Eq,
                        value: value.clone(),
                    };
                    match op {
                        CompareOp::Ne => eq.negate(),
                        _ => eq,
                    }
                }
                Property::Word(name) => {
                    let test = match op {
                        CompareOp::Ne => WordTest::Ne,
                        _ => WordTest::Eq,
                    };
                    word_condition(name, test, value, now)
                }
                Property::Date(_, field) => date_condition(*field, *op, date(value)?),
            },
        })
    }
}

fn word_condition(
    property: &str,
    test: WordTest,
    text: &str,
    now: OffsetDateTime,
) -> DeviceCondition {
    DeviceCondition::Any(
        words(property, now)
            .into_iter()
            .filter(|(word, _)| word_test(test, word, text))
            .map(|(_, condition)| condition)
            .collect(),
    )
}

/// A date comparison as the rendered managedDevice shows it: a device never seen shows
/// lastSyncDateTime as [`NEVER`] (0001-01-01), so it matches when that date compares so.
fn date_condition(field: TimeField, op: CompareOp, at: OffsetDateTime) -> DeviceCondition {
    let cmp = match op {
        CompareOp::Eq => Comparison::Eq,
        CompareOp::Ne => Comparison::Ne,
        CompareOp::Ge => Comparison::Ge,
        CompareOp::Le => Comparison::Le,
        CompareOp::Gt => Comparison::Gt,
        CompareOp::Lt => Comparison::Lt,
    };
    let compared = DeviceCondition::Time { field, cmp, at };
    let never = OffsetDateTime::parse(NEVER, &Rfc3339).is_ok_and(|never| cmp.holds(never, at));
    if never && field == TimeField::LastSeen {
        DeviceCondition::Any(vec![compared, DeviceCondition::NoTime(field)])
    } else {
        compared
    }
}

/// Parses `$orderby`: one of deviceName, lastSyncDateTime, enrolledDateTime, serialNumber,
/// optionally followed by `asc` or `desc`. Returns the sort and whether it descends.
pub fn parse_orderby(text: &str) -> Result<(DeviceSort, bool), String> {
    const SORTABLE: [(&str, DeviceSort); 4] = [
        ("deviceName", DeviceSort::Name),
        ("lastSyncDateTime", DeviceSort::LastSeen),
        ("enrolledDateTime", DeviceSort::EnrolledAt),
        ("serialNumber", DeviceSort::Serial),
    ];
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    let [item] = items.as_slice() else {
        return Err("$orderby takes one property".into());
    };
    let mut words = item.split_whitespace();
    let name = words.next().unwrap_or_default();
    let sort = SORTABLE
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            format!(
                "$orderby: {name:?} cannot be sorted on; supported: deviceName, \
                 lastSyncDateTime, enrolledDateTime, serialNumber"
            )
        })?;
    let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(format!("$orderby: {other:?} is neither asc nor desc")),
    };
    if let Some(extra) = words.next() {
        return Err(format!("$orderby: unexpected {extra:?}"));
    }
    Ok((sort, descending))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redeploy_core::{Device, DeviceId, JoinType};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-02 12:00 UTC);

    fn device(name: &str, join: JoinType, sync: Option<OffsetDateTime>) -> Device {
        let mut d = Device::new(DeviceId::generate(), name, datetime!(2026-01-01 0:00 UTC));
        d.join_type = join;
        d.last_seen = sync;
        d.os_version = Some("10.0.22631.1".into());
        d
    }

    fn holds(filter: &str, d: &Device) -> bool {
        parse_filter(filter)
            .unwrap()
            .condition(NOW)
            .unwrap()
            .matches(d)
    }

    #[test]
    fn filters_parse_and_match() {
        let a = device(
            "PC-Lab-01",
            JoinType::EntraJoined,
            Some(datetime!(2026-03-01 10:00 UTC)),
        );
        let b = device("Kiosk 'A'", JoinType::HybridJoined, None);
        let f = "startswith(deviceName,'pc-') and joinType eq 'azureADJoined'";
        assert!(holds(f, &a) && !holds(f, &b));
        let f = "deviceName eq 'Kiosk ''A''' or (joinType ne 'hybridAzureADJoined')";
        assert!(holds(f, &a) && holds(f, &b));
        let f = "lastSyncDateTime ge 2026-02-01T00:00:00Z";
        assert!(holds(f, &a) && !holds(f, &b));
        // A PC never seen shows 0001-01-01, which is before any date.
        let f = "lastSyncDateTime le '2026-02-01T00:00:00Z'";
        assert!(!holds(f, &a) && holds(f, &b));
        assert!(holds("OPERATINGSYSTEM EQ 'windows'", &a));
        assert!(
            holds("contains(deviceName,'LAB')", &a) && !holds("contains(deviceName,'lab')", &b)
        );
        assert!(holds("not contains(deviceName,'lab')", &b));
        assert!(
            holds("startswith(joinType,'hybrid')", &b)
                && !holds("startswith(joinType,'hybrid')", &a)
        );
        assert!(holds("complianceState eq 'compliant'", &a));
        assert!(holds("complianceState eq 'unknown'", &b));
        assert!(
            holds("complianceState ne 'compliant'", &b)
                && !holds("complianceState ne 'compliant'", &a)
        );
        assert!(holds("enrolledDateTime lt 2026-02-01T00:00:00Z", &a));
    }

    #[test]
    fn unsupported_filters_are_refused_with_a_reason() {
        let deep = format!("{}deviceName eq 'a'{}", "(".repeat(40), ")".repeat(40));
        for (bad, says) in [
            ("deviceName gt 'a'", "only for"),
            ("managementState eq 'x'", "cannot be filtered"),
            ("deviceName eq", "expected a quoted value"),
            ("deviceName eq 'x", "not closed"),
            ("contains(lastSyncDateTime,'x')", "not the date"),
            ("endswith(deviceName,'x')", "cannot be filtered"),
            ("deviceName eq 'a' xor deviceName eq 'b'", "unexpected"),
            ("(deviceName eq 'a'", "')'"),
            ("lastSyncDateTime ge yesterday", "date-time"),
            ("deviceName has 'a'", "not supported"),
            (deep.as_str(), "deeper"),
        ] {
            let err = parse_filter(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn orderby_takes_one_known_property_and_a_direction() {
        assert_eq!(parse_orderby("deviceName"), Ok((DeviceSort::Name, false)));
        assert_eq!(
            parse_orderby("lastSyncDateTime desc"),
            Ok((DeviceSort::LastSeen, true))
        );
        assert_eq!(
            parse_orderby("serialnumber ASC"),
            Ok((DeviceSort::Serial, false))
        );
        assert_eq!(
            parse_orderby("enrolledDateTime desc"),
            Ok((DeviceSort::EnrolledAt, true))
        );
        for bad in [
            "model",
            "deviceName up",
            "deviceName,serialNumber",
            "deviceName desc x",
            "",
        ] {
            assert!(parse_orderby(bad).is_err(), "{bad}");
        }
    }
}
