//! The Autopilot device registry: the list (with the enrolled device of each serial) and the
//! import of Intune's hardware-hash CSV by file upload, showing how many rows were imported and
//! every refused line with its reason.

use axum::body::Bytes;
use axum::extract::State;
use http::{header, HeaderMap, Uri};
use maud::{html, Markup};
use redeploy_core::autopilot::{AutopilotImport, CSV_COLUMNS};
use redeploy_core::Role;

use super::{check_csrf, layout, ok, PageError, PageResult, Section, Signed};
use crate::service::autopilot;
use crate::state::AppState;

/// One part of a `multipart/form-data` body (RFC 7578): its field name and raw content.
struct Part {
    name: String,
    content: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Splits a multipart body on its boundary; `None` when it is not well-formed.
fn multipart_parts(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let boundary = params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"').to_owned())
    })?;
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut at = find(body, &delimiter, 0)? + delimiter.len();
    loop {
        if body[at..].starts_with(b"--") {
            return Some(parts);
        }
        let start = find(body, b"\r\n", at)? + 2;
        let headers_end = find(body, b"\r\n\r\n", start)?;
        let headers = std::str::from_utf8(&body[start..headers_end]).ok()?;
        let content_start = headers_end + 4;
        let mut closing = b"\r\n".to_vec();
        closing.extend_from_slice(&delimiter);
        let end = find(body, &closing, content_start)?;
        let name = headers.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            if !k.trim().eq_ignore_ascii_case("content-disposition") {
                return None;
            }
            v.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k == "name").then(|| v.trim_matches('"').to_owned())
            })
        })?;
        parts.push(Part {
            name,
            content: body[content_start..end].to_vec(),
        });
        at = end + closing.len();
    }
}

async fn page_with(
    state: &AppState,
    signed: &Signed,
    result: Option<&AutopilotImport>,
) -> PageResult {
    let records = autopilot::records(state).await?;
    let report: Markup = match result {
        None => html! {},
        Some(r) => html! {
            section.card role="status" #import-result {
                h2 { "Import result" }
                p { "Imported " strong { (r.records.len()) } " device(s)." }
                @if !r.errors.is_empty() {
                    p.error { (r.errors.len()) " line(s) were refused:" }
                    ul.reasons { @for e in &r.errors { li { "Line " (e.line) ": " (e.message) } } }
                }
            }
        },
    };
    let body = html! {
        (report)
        @if signed.can(Role::Operator) {
            form.card method="post" action="/console/autopilot" enctype="multipart/form-data" {
                (signed.csrf_field())
                label for="csv" { "Hardware-hash CSV (Intune import format)" }
                input #csv type="file" name="csv" accept=".csv,text/csv" required aria-describedby="csv-help";
                p.help #csv-help {
                    "Columns: " (CSV_COLUMNS.join(", ")) " (the last two optional), as "
                    code { "Get-WindowsAutopilotInfo -OutputFile" } " writes them."
                }
                button type="submit" { "Import CSV" }
            }
        }
        h2 { "Registered devices" }
        @if records.is_empty() {
            p.empty { "No Autopilot devices registered yet. Import a CSV above." }
        } @else {
            table #autopilot {
                thead { tr {
                    th scope="col" { "Serial" } th scope="col" { "Product ID" } th scope="col" { "Group tag" }
                    th scope="col" { "Assigned user" } th scope="col" { "Enrolled device" }
                } }
                tbody {
                    @for (r, device) in &records {
                        tr {
                            td { (r.serial) }
                            td { (r.product_id.as_deref().unwrap_or("—")) }
                            td { (r.group_tag.as_deref().unwrap_or("—")) }
                            td { (r.assigned_user.as_deref().unwrap_or("—")) }
                            td { @match device { Some(d) => a href={ "/console/devices/" (d) } { "open" }, None => "not enrolled" } }
                        }
                    }
                }
            }
        }
    };
    Ok(ok(layout(
        "Autopilot devices",
        Some(signed),
        Section::Autopilot,
        body,
    )))
}

pub async fn list(State(state): State<AppState>, signed: Signed) -> PageResult {
    page_with(&state, &signed, None).await
}

pub async fn import(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> PageResult {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let parts = multipart_parts(content_type, &body).unwrap_or_default();
    let field = |name: &str| parts.iter().find(|p| p.name == name);
    let csrf = field("csrf").and_then(|p| std::str::from_utf8(&p.content).ok());
    check_csrf(&signed, &headers, &uri, csrf)?;
    let file = field("csv")
        .filter(|p| !p.content.is_empty())
        .ok_or_else(|| PageError::bad_request("choose a CSV file to import"))?;
    let result = autopilot::import(&state, &signed.caller, &file.content).await?;
    page_with(&state, &signed, Some(&result)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_fields_and_file_are_split() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n--XyZ\r\nContent-Disposition: form-data; name=\"csv\"; filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\nA,B\r\n1,2\r\n\r\n--XyZ--\r\n";
        let parts = multipart_parts("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "csrf");
        assert_eq!(parts[0].content, b"abc");
        assert_eq!(parts[1].name, "csv");
        assert_eq!(parts[1].content, b"A,B\r\n1,2\r\n");
        assert!(multipart_parts("text/plain", body).is_none());
        assert!(
            multipart_parts("multipart/form-data; boundary=XyZ", b"--XyZ\r\ngarbage").is_none()
        );
    }
}
