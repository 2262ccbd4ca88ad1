//! The Autopilot device registry (issue "Autopilot Reset end to end", item 9): parsing the
//! hardware-hash CSV admins export from devices (`Get-WindowsAutopilotInfo`) and upload to Intune,
//! with the checks Intune applies, and the record kept per serial.

use base64::Engine;

/// The columns of the Intune import CSV, in the order Intune requires; the last two may be left
/// out (ITPRO windows-autopilot add-devices: "Device Serial Number,Windows Product ID,Hardware
/// Hash" with optional "Group Tag" and "Assigned User").
pub const CSV_COLUMNS: [&str; 5] = [
    "Device Serial Number",
    "Windows Product ID",
    "Hardware Hash",
    "Group Tag",
    "Assigned User",
];

/// One registered device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutopilotRecord {
    /// SMBIOS serial number (the key; compared case-insensitively).
    pub serial: String,
    /// Windows Product ID, if given.
    pub product_id: Option<String>,
    /// The 4K hardware hash (base64).
    pub hardware_hash: String,
    /// Group tag (order ID), usable in device filters.
    pub group_tag: Option<String>,
    /// Assigned user UPN.
    pub assigned_user: Option<String>,
}

impl AutopilotRecord {
    /// The key serials are compared by.
    pub fn serial_key(serial: &str) -> String {
        serial.trim().to_uppercase()
    }
}

/// A problem with one line of the CSV (1-based line numbers; line 1 is the header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvRowError {
    /// Line of the file.
    pub line: usize,
    /// What is wrong, for the admin.
    pub message: String,
}

/// What [`parse_autopilot_csv`] found: the valid rows (with their line) and every error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutopilotImport {
    /// Valid rows in file order, each with its line number.
    pub records: Vec<(usize, AutopilotRecord)>,
    /// Rows refused (and header problems at line 1).
    pub errors: Vec<CsvRowError>,
}

/// Splits one CSV line into fields (RFC 4180 quoting: `"a,b"`, `""` for a quote).
fn split_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".to_owned());
    }
    fields.push(cur);
    Ok(fields.into_iter().map(|f| f.trim().to_owned()).collect())
}

fn opt(field: Option<&String>) -> Option<String> {
    field.filter(|f| !f.is_empty()).cloned()
}

/// Parses an Autopilot import CSV (UTF-8 with or without BOM, CRLF or LF). The header must name
/// the columns of [`CSV_COLUMNS`] in order (the first three required); every row needs a serial
/// and a valid base64 hardware hash; a serial seen on an earlier row is refused. Blank lines are
/// skipped. Never fails as a whole: problems come back per line.
pub fn parse_autopilot_csv(bytes: &[u8]) -> AutopilotImport {
    let mut out = AutopilotImport::default();
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            out.errors.push(CsvRowError {
                line,
                message: "the file is not UTF-8 text".to_owned(),
            });
            return out;
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let header = match lines.next().map(split_fields) {
        Some(Ok(h)) if !h.iter().all(String::is_empty) => h,
        _ => {
            out.errors.push(CsvRowError {
                line: 1,
                message: format!("missing header: expected {:?}", CSV_COLUMNS.join(",")),
            });
            return out;
        }
    };
    let width = header.len();
    if !(3..=5).contains(&width)
        || header
            .iter()
            .zip(CSV_COLUMNS)
            .any(|(h, want)| !h.eq_ignore_ascii_case(want))
    {
        out.errors.push(CsvRowError {
            line: 1,
            message: format!(
                "header must be {:?} (the last two columns are optional), found {:?}",
                CSV_COLUMNS.join(","),
                header.join(",")
            ),
        });
        return out;
    }
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, raw) in lines.enumerate() {
        let line = i + 2;
        if raw.trim().is_empty() {
            continue;
        }
        let mut err = |message: String| out.errors.push(CsvRowError { line, message });
        let fields = match split_fields(raw) {
            Ok(f) => f,
            Err(e) => {
                err(e);
                continue;
            }
        };
        if fields.len() > width {
            err(format!(
                "{} fields, but the header has {width} columns",
                fields.len()
            ));
            continue;
        }
        let serial = fields.first().cloned().unwrap_or_default();
        if serial.is_empty() {
            err("Device Serial Number is required".to_owned());
            continue;
        }
        let hash = fields.get(2).cloned().unwrap_or_default();
        if hash.is_empty() {
            err(format!("Hardware Hash is required (serial {serial})"));
            continue;
        }
        if base64::engine::general_purpose::STANDARD
            .decode(hash.as_bytes())
            .is_err()
        {
            err(format!(
                "Hardware Hash of serial {serial} is not valid base64"
            ));
            continue;
        }
        let key = AutopilotRecord::serial_key(&serial);
        if let Some(first) = seen.get(&key) {
            err(format!("duplicate serial {serial} (first on line {first})"));
            continue;
        }
        seen.insert(key, line);
        out.records.push((
            line,
            AutopilotRecord {
                serial,
                product_id: opt(fields.get(1)),
                hardware_hash: hash,
                group_tag: opt(fields.get(3)),
                assigned_user: opt(fields.get(4)),
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Device Serial Number,Windows Product ID,Hardware Hash,Group Tag,Assigned User";

    #[test]
    fn valid_file_with_bom_and_crlf() {
        let text = format!(
            "\u{feff}{HEADER}\r\nSN-1,00330-80000-00000-AA123,T0FBQUFB,Lab,ada@contoso.com\r\n\r\n\"SN,2\",,QkJCQg==,,\r\n"
        );
        let import = parse_autopilot_csv(text.as_bytes());
        assert_eq!(import.errors, []);
        assert_eq!(import.records.len(), 2);
        let (line, r) = &import.records[0];
        assert_eq!(*line, 2);
        assert_eq!(r.serial, "SN-1");
        assert_eq!(r.group_tag.as_deref(), Some("Lab"));
        assert_eq!(r.assigned_user.as_deref(), Some("ada@contoso.com"));
        let (line, r) = &import.records[1];
        assert_eq!((*line, r.serial.as_str()), (4, "SN,2"));
        assert_eq!((r.product_id.clone(), r.group_tag.clone()), (None, None));
    }

    #[test]
    fn three_column_lf_file() {
        let text = "Device Serial Number,Windows Product ID,Hardware Hash\nSN-9,,QUJD\n";
        let import = parse_autopilot_csv(text.as_bytes());
        assert_eq!(import.errors, []);
        assert_eq!(import.records[0].1.serial, "SN-9");
    }

    #[test]
    fn row_errors_name_their_lines() {
        let text = format!(
            "{HEADER}\n,,QUJD\nSN-2,,\nSN-3,,not base64!\nSN-4,,QUJD\nsn-4,,QUJD\nSN-5,,QUJD,a,b,c\nSN-6,,QUJD\n"
        );
        let import = parse_autopilot_csv(text.as_bytes());
        let lines: Vec<_> = import.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 6, 7]);
        assert!(import.errors[0]
            .message
            .contains("Serial Number is required"));
        assert!(import.errors[1]
            .message
            .contains("Hardware Hash is required"));
        assert!(import.errors[2].message.contains("base64"));
        assert!(import.errors[3].message.contains("first on line 5"));
        let ok: Vec<_> = import
            .records
            .iter()
            .map(|(_, r)| r.serial.as_str())
            .collect();
        assert_eq!(ok, ["SN-4", "SN-6"]);
    }

    #[test]
    fn header_is_required_in_order_and_text_must_be_utf8() {
        let wrong = "Hardware Hash,Device Serial Number,Windows Product ID\nQUJD,SN,\n";
        let import = parse_autopilot_csv(wrong.as_bytes());
        assert!(import.records.is_empty());
        assert_eq!(import.errors[0].line, 1);
        assert!(import.errors[0].message.contains("header"));
        let headless = "SN-1,,QUJD\n";
        assert_eq!(parse_autopilot_csv(headless.as_bytes()).errors[0].line, 1);
        assert_eq!(parse_autopilot_csv(b"").errors[0].line, 1);
        let mut bad = format!("{HEADER}\nSN-1,,QUJD\n").into_bytes();
        bad.extend_from_slice(b"SN-\xff,,QUJD\n");
        let import = parse_autopilot_csv(&bad);
        assert_eq!(import.errors[0].line, 3);
        assert!(import.errors[0].message.contains("UTF-8"));
    }
}
