//! What the admin commands print, and how: standard output that ends the command quietly when
//! its reader goes away (`redeploy audit | head`), tables, JSON, times in one human style, and
//! what a PC reported decoded by the core's decoder. `--json` prints the server's values as
//! they are; only the readable output is reworded here.

use std::io::{self, Write};

use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// `println!` that returns the write error instead of panicking: a closed pipe becomes an
/// `io::Error` of kind `BrokenPipe`, which `main` turns into a quiet exit 0 ([`closed_output`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use outln;

/// Writes `text` as it is (no newline added).
pub(crate) fn out_raw(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Whether `err` is standard output closed under us (the reader of a pipe exited): the command
/// stops quietly, exit 0, as `git log | head` does (README, "Admin CLI").
pub(crate) fn closed_output(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

pub(crate) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// Prints rows under a header as left-aligned columns two spaces apart, without borders (easy
/// to read, and to cut with `awk`).
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec())
        .add_rows(rows.iter().cloned());
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    outln!("{}", t.trim_fmt())
}

/// An RFC 3339 time from the server as `2026-12-06 09:14:03 UTC`, the one style of every
/// readable output (to the second: the server's microseconds help no one reading a table).
/// Text that is not an RFC 3339 time is shown as it is.
pub(crate) fn human_time(text: &str) -> String {
    match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(at) => at
            .to_offset(UtcOffset::UTC)
            .format(format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .unwrap_or_else(|_| text.to_owned()),
        Err(_) => text.to_owned(),
    }
}

/// [`human_time`] of an optional time, "-" when absent.
pub(crate) fn human_time_or_dash(text: Option<&str>) -> String {
    text.map_or_else(|| "-".to_owned(), human_time)
}

/// A PC's LastError (an HRESULT as the API shows it, `0x80070032`) decoded with the core's
/// decoder ([`redeploy_core::decode_hresult`]), the fix first and the code after it:
/// `WinRE is disabled: run reagentc.exe /enable on the device (0x80070032)`.
pub(crate) fn decoded_error(code: &str) -> String {
    let Some(value) = redeploy_core::action::parse_hresult(code) else {
        return code.to_owned();
    };
    let (meaning, fix) = redeploy_core::decode_hresult(value);
    let code = redeploy_core::action::format_hresult(value);
    match fix {
        Some(fix) => format!("{meaning}: {} ({code})", fix.replace('`', "")),
        None => format!("{meaning} ({code})"),
    }
}

/// A PC's `RemoteWipe/AutomaticRedeployment/Status` value with its meaning, from the core
/// ([`redeploy_core::action::autopilot_status_meaning`]): `30 (failed during CSP Execute)`.
pub(crate) fn decoded_reset_status(value: &str) -> String {
    match value.trim().parse::<i64>() {
        Ok(status) => format!(
            "{status} ({})",
            redeploy_core::action::autopilot_status_meaning(status)
        ),
        Err(_) => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_to_the_second_in_utc() {
        assert_eq!(
            human_time("2026-12-06T09:14:03.123456789Z"),
            "2026-12-06 09:14:03 UTC"
        );
        assert_eq!(
            human_time("2026-12-06T10:14:03+01:00"),
            "2026-12-06 09:14:03 UTC"
        );
        assert_eq!(human_time("not a time"), "not a time");
        assert_eq!(human_time_or_dash(None), "-");
    }

    #[test]
    fn a_last_error_is_decoded_with_its_fix() {
        assert_eq!(
            decoded_error("0x80070032"),
            "WinRE is disabled: run reagentc.exe /enable on the device (0x80070032)"
        );
        assert_eq!(decoded_error("0x80070005"), "access denied (0x80070005)");
        assert_eq!(decoded_error("garbage"), "garbage");
    }
}
