//! `redeploy inspect FILE|-`: recognise a SyncML message, an enrollment SOAP message or a
//! provisioning document, print a readable summary (or JSON), or one line naming where it is wrong.
//! `redeploy inspect --device DEVICE [--last N]`: the same for the last messages the device
//! exchanged with the server (its support trail, secrets redacted), fetched over the API.

use std::io::Read;
use std::process::ExitCode;

use serde_json::{json, Value};
use syncml::{Command, Item, SyncMl};

use crate::admin_common::{client, resolve_device, UsageError};
use crate::cli::InspectArgs;
use crate::output::{human_time, out_raw, outln, print_json};

/// Exit code for input that is not a valid message (the contract: 0 valid, 2 invalid).
const INVALID: u8 = 2;

/// `inspect FILE|-` decodes a file; `inspect --device DEVICE` the device's support trail.
pub async fn run(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    match (&args.file, &args.device) {
        (_, Some(device)) => trail(args, device).await,
        (Some(file), None) => run_file(file, args.json),
        (None, None) => Err(UsageError("give a FILE (or -) or --device DEVICE".into()).into()),
    }
}

/// The device's last messages from the server's support trail, each decoded.
async fn trail(args: &InspectArgs, device: &str) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    let id = resolve_device(&client, device).await?;
    let messages = client.device_messages(&id, args.last).await?;
    if args.json {
        let items: Vec<Value> = messages
            .items
            .iter()
            .map(|m| {
                let decoded = decode(m.body.as_bytes()).map(|d| d.json).ok();
                json!({
                    "at": m.at, "direction": m.direction, "session_id": m.session_id,
                    "msg_id": m.msg_id, "size": m.size, "body": m.body, "decoded": decoded,
                })
            })
            .collect();
        print_json(&items)?;
        return Ok(ExitCode::SUCCESS);
    }
    if messages.items.is_empty() {
        outln!("No messages kept for {device} yet.")?;
    }
    for m in &messages.items {
        let way = if m.direction == "in" {
            "from the PC"
        } else {
            "to the PC"
        };
        outln!(
            "== {} {way}: session {}, message {}, {} bytes",
            human_time(&m.at),
            m.session_id,
            m.msg_id,
            m.size
        )?;
        match decode(m.body.as_bytes()) {
            Ok(d) => out_raw(&d.text)?,
            // A message the server could not read either: show it as it came.
            Err(problem) => outln!("(not readable: {problem})\n{}", m.body)?,
        }
        outln!()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn run_file(file: &str, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = match read_input(file) {
        Ok(b) => b,
        Err(err) => {
            eprintln!("{file}: {err}");
            return Ok(ExitCode::from(INVALID));
        }
    };
    match decode(&bytes) {
        Ok(decoded) => {
            if json {
                print_json(&decoded.json)?;
            } else {
                out_raw(&decoded.text)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            eprintln!("{file}: {problem}");
            Ok(ExitCode::from(INVALID))
        }
    }
}

fn read_input(file: &str) -> std::io::Result<Vec<u8>> {
    if file == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(file)
    }
}

/// A decoded message: a human summary and the same facts as JSON.
pub struct Decoded {
    pub text: String,
    pub json: Value,
}

/// What kind of document the bytes hold, judged by the root element's local name.
fn root_name(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut rest = text.trim_start_matches('\u{feff}');
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("<?") {
            rest = &after[after.find("?>")? + 2..];
        } else if let Some(after) = rest.strip_prefix("<!--") {
            rest = &after[after.find("-->")? + 3..];
        } else if let Some(after) = rest.strip_prefix('<') {
            let end = after
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(after.len());
            let name = &after[..end];
            return Some(name.rsplit(':').next().unwrap_or(name).to_string());
        } else {
            return None;
        }
    }
}

/// Decode any message `inspect` understands; the error is one line naming line, column, problem.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    match root_name(bytes).as_deref() {
        Some("SyncML") => syncml::parse(bytes)
            .map(|m| summarize_syncml(&m))
            .map_err(|e| e.to_string()),
        Some("Envelope") => decode_soap(bytes),
        Some("wap-provisioningdoc") => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| format!("line 1, column 1: not UTF-8 ({e})"))?;
            enroll::provisioning::parse(text)
                .map(|doc| summarize_provisioning(&doc))
                .map_err(|e| e.to_string())
        }
        Some(other) => Err(format!(
            "line 1, column 1: root element <{other}> is not a SyncML message, an enrollment SOAP \
             message or a wap-provisioningdoc"
        )),
        None => Err("line 1, column 1: no XML root element found".to_string()),
    }
}

fn decode_soap(bytes: &[u8]) -> Result<Decoded, String> {
    let request_error = match enroll::parse_message(bytes) {
        Ok(msg) => return Ok(summarize_enroll_request(&msg)),
        Err(e) => e,
    };
    match enroll::parse_response(bytes) {
        Ok(resp) => Ok(summarize_enroll_response(&resp)),
        Err(response_error) => {
            // Report the error of the direction the message claims to be.
            let text = String::from_utf8_lossy(bytes);
            let looks_like_response = [
                "Response",
                "Fault>",
                "RequestSecurityTokenResponseCollection",
            ]
            .iter()
            .any(|marker| text.contains(marker));
            Err(if looks_like_response {
                response_error
            } else {
                request_error
            }
            .to_string())
        }
    }
}

fn item_json(item: &Item) -> Value {
    json!({
        "target": item.target.as_ref().map(|u| u.as_str()),
        "source": item.source.as_ref().map(|u| u.as_str()),
        "format": item.format(),
        "type": item.meta_type(),
        "data": item.data_str(),
    })
}

fn item_text(item: &Item) -> String {
    let uri = item
        .target
        .as_ref()
        .or(item.source.as_ref())
        .map(|u| u.as_str().to_string());
    let mut s = uri.unwrap_or_default();
    if let Some(t) = item.meta_type() {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(t);
    }
    if let Some(f) = item.format() {
        s.push_str(&format!(" ({f})"));
    }
    if let Some(d) = item.data_str() {
        let shown: String = d.chars().take(80).collect();
        let ellipsis = if d.chars().count() > 80 { "…" } else { "" };
        s.push_str(&format!(" = {shown}{ellipsis}"));
    }
    s
}

fn command_json(cmd: &Command) -> Value {
    match cmd {
        Command::Status(s) => json!({
            "command": "Status", "cmd_id": s.cmd_id, "msg_ref": s.msg_ref, "cmd_ref": s.cmd_ref,
            "cmd": s.cmd, "code": s.code.as_u16(), "target_refs": s.target_refs,
            "challenge": s.chal.as_ref().map(|c| json!({
                "type": c.meta.r#type, "format": c.meta.format, "next_nonce": c.meta.next_nonce,
            })),
            "items": s.items.iter().map(item_json).collect::<Vec<_>>(),
        }),
        Command::Results(r) => json!({
            "command": "Results", "cmd_id": r.cmd_id, "msg_ref": r.msg_ref, "cmd_ref": r.cmd_ref,
            "items": r.items.iter().map(item_json).collect::<Vec<_>>(),
        }),
        Command::Alert(a) => json!({
            "command": "Alert", "cmd_id": a.cmd_id, "code": a.code.as_u16(),
            "items": a.items.iter().map(item_json).collect::<Vec<_>>(),
        }),
        Command::Add(c)
        | Command::Replace(c)
        | Command::Delete(c)
        | Command::Get(c)
        | Command::Exec(c) => json!({
            "command": cmd.name(), "cmd_id": c.cmd_id,
            "items": c.items.iter().map(item_json).collect::<Vec<_>>(),
        }),
        Command::Atomic(c) | Command::Sequence(c) => json!({
            "command": cmd.name(), "cmd_id": c.cmd_id,
            "commands": c.commands.iter().map(command_json).collect::<Vec<_>>(),
        }),
    }
}

fn command_text(cmd: &Command, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match cmd {
        Command::Status(s) => out.push_str(&format!(
            "{pad}Status {}: {} {} → {} (MsgRef {}, CmdRef {}){}\n",
            s.cmd_id,
            s.cmd,
            s.target_refs.join(", "),
            s.code,
            s.msg_ref,
            s.cmd_ref,
            s.chal
                .as_ref()
                .map(|c| format!(", challenge {}", c.meta.r#type.as_deref().unwrap_or("?")))
                .unwrap_or_default()
        )),
        Command::Alert(a) => {
            out.push_str(&format!(
                "{pad}Alert {}: {:?} ({})\n",
                a.cmd_id, a.code, a.code
            ));
            for item in &a.items {
                out.push_str(&format!("{pad}    {}\n", item_text(item)));
            }
        }
        Command::Results(r) => {
            out.push_str(&format!(
                "{pad}Results {} (MsgRef {}, CmdRef {}):\n",
                r.cmd_id, r.msg_ref, r.cmd_ref
            ));
            for item in &r.items {
                out.push_str(&format!("{pad}    {}\n", item_text(item)));
            }
        }
        Command::Add(c)
        | Command::Replace(c)
        | Command::Delete(c)
        | Command::Get(c)
        | Command::Exec(c) => {
            out.push_str(&format!("{pad}{} {}:\n", cmd.name(), c.cmd_id));
            for item in &c.items {
                out.push_str(&format!("{pad}    {}\n", item_text(item)));
            }
        }
        Command::Atomic(c) | Command::Sequence(c) => {
            out.push_str(&format!("{pad}{} {}:\n", cmd.name(), c.cmd_id));
            for inner in &c.commands {
                command_text(inner, indent + 1, out);
            }
        }
    }
}

fn summarize_syncml(msg: &SyncMl) -> Decoded {
    let h = &msg.hdr;
    let uri = |u: &Option<syncml::LocUri>| {
        u.as_ref()
            .map(|u| u.as_str().to_string())
            .unwrap_or_default()
    };
    let mut text = format!(
        "SyncML {} ({}) session {}, message {}\n  from {}\n  to   {}\n",
        h.ver_dtd,
        h.ver_proto,
        h.session_id,
        h.msg_id,
        uri(&h.source),
        uri(&h.target)
    );
    if let Some(cred) = &h.cred {
        let kind = cred
            .meta
            .as_ref()
            .and_then(|m| m.r#type.clone())
            .unwrap_or_default();
        text.push_str(&format!("  credentials: {kind}\n"));
    }
    text.push_str(&format!("  {} command(s):\n", msg.body.commands.len()));
    for cmd in &msg.body.commands {
        command_text(cmd, 2, &mut text);
    }
    text.push_str(if msg.body.is_final {
        "  Final: last message of the package\n"
    } else {
        "  no Final: more messages follow (answer with Alert 1222)\n"
    });
    let json = json!({
        "kind": "syncml",
        "header": {
            "ver_dtd": h.ver_dtd, "ver_proto": h.ver_proto, "session_id": h.session_id,
            "msg_id": h.msg_id, "target": uri(&h.target), "source": uri(&h.source),
            "credentials": h.cred.as_ref().and_then(|c| c.meta.as_ref()).and_then(|m| m.r#type.clone()),
        },
        "commands": msg.body.commands.iter().map(command_json).collect::<Vec<_>>(),
        "final": msg.body.is_final,
    });
    Decoded { text, json }
}

fn token_json(token: &enroll::SecurityToken) -> Value {
    match token {
        enroll::SecurityToken::None => json!(null),
        enroll::SecurityToken::UsernameToken { username, .. } => {
            // Never echo the password: captures get pasted into tickets.
            json!({"type": "UsernameToken", "username": username})
        }
        enroll::SecurityToken::BinarySecurityToken { value_type, .. } => json!({
            "type": if token.is_entra_jwt() { "EntraJWT" } else { "BinarySecurityToken" },
            "value_type": value_type,
        }),
    }
}

fn summarize_enroll_request(msg: &enroll::EnrollMessage) -> Decoded {
    match msg {
        enroll::EnrollMessage::Discover(d) => {
            let policies: Vec<&str> = d.auth_policies.iter().map(|p| p.as_str()).collect();
            Decoded {
                text: format!(
                    "MS-MDE2 Discover request {}\n  email {}\n  request version {}, OS edition {}, application {}\n  auth policies: {}\n",
                    d.message_id,
                    d.email_address,
                    d.request_version.as_deref().unwrap_or("-"),
                    d.os_edition.as_deref().unwrap_or("-"),
                    d.application_version.as_deref().unwrap_or("-"),
                    policies.join(", ")
                ),
                json: json!({
                    "kind": "discover", "message_id": d.message_id, "email": d.email_address,
                    "request_version": d.request_version, "device_type": d.device_type,
                    "application_version": d.application_version, "os_edition": d.os_edition,
                    "os_version": d.os_version, "auth_policies": policies,
                }),
            }
        }
        enroll::EnrollMessage::GetPolicies(p) => Decoded {
            text: format!(
                "MS-XCEP GetPolicies request {}\n  credentials: {}\n",
                p.message_id,
                token_json(&p.security)
            ),
            json: json!({"kind": "get_policies", "message_id": p.message_id, "security": token_json(&p.security)}),
        },
        enroll::EnrollMessage::RequestSecurityToken(r) => {
            let csr = enroll::ca::verify_csr(&r.csr_der);
            let csr_text = match &csr {
                Ok(v) => format!("valid signature, subject CN {:?}", v.subject_common_name),
                Err(e) => format!("INVALID: {e}"),
            };
            let mut text = format!(
                "MS-WSTEP RequestSecurityToken {}\n  credentials: {}\n  request type {}\n  CSR ({} bytes): {}\n  additional context:\n",
                r.message_id,
                token_json(&r.security),
                r.request_type,
                r.csr_der.len(),
                csr_text
            );
            for (name, value) in &r.context.items {
                text.push_str(&format!("    {name} = {value}\n"));
            }
            Decoded {
                text,
                json: json!({
                    "kind": "request_security_token", "message_id": r.message_id,
                    "security": token_json(&r.security), "request_type": r.request_type,
                    "csr_bytes": r.csr_der.len(), "csr_valid": csr.is_ok(),
                    "context": r.context.items.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
                }),
            }
        }
    }
}

fn summarize_enroll_response(resp: &enroll::EnrollResponse) -> Decoded {
    match resp {
        enroll::EnrollResponse::Discover { relates_to, response } => Decoded {
            text: format!(
                "MS-MDE2 DiscoverResponse (to {})\n  auth policy {}, enrollment version {}\n  policy service {}\n  enrollment service {}\n",
                relates_to.as_deref().unwrap_or("-"),
                response.auth_policy.as_str(),
                response.enrollment_version,
                response.enrollment_policy_service_url.as_deref().unwrap_or("-"),
                response.enrollment_service_url
            ),
            json: json!({
                "kind": "discover_response", "relates_to": relates_to,
                "auth_policy": response.auth_policy.as_str(),
                "enrollment_version": response.enrollment_version,
                "policy_service_url": response.enrollment_policy_service_url,
                "enrollment_service_url": response.enrollment_service_url,
                "authentication_service_url": response.authentication_service_url,
            }),
        },
        enroll::EnrollResponse::GetPolicies { relates_to, response } => Decoded {
            text: format!(
                "MS-XCEP GetPoliciesResponse (to {})\n  minimal key length {}, validity {} s, renewal {} s\n",
                relates_to.as_deref().unwrap_or("-"),
                response.minimal_key_length,
                response.validity_period_seconds,
                response.renewal_period_seconds
            ),
            json: json!({
                "kind": "get_policies_response", "relates_to": relates_to,
                "minimal_key_length": response.minimal_key_length,
                "validity_period_seconds": response.validity_period_seconds,
                "renewal_period_seconds": response.renewal_period_seconds,
            }),
        },
        enroll::EnrollResponse::Rstr { relates_to, response } => {
            let inner = summarize_provisioning(&response.provisioning);
            Decoded {
                text: format!(
                    "MS-WSTEP RequestSecurityTokenResponseCollection (to {})\n{}",
                    relates_to.as_deref().unwrap_or("-"),
                    inner.text
                ),
                json: json!({"kind": "rstr", "relates_to": relates_to, "provisioning": inner.json}),
            }
        }
        enroll::EnrollResponse::Fault { relates_to, fault } => Decoded {
            text: format!(
                "SOAP fault (to {})\n  subcode {} ({:#010X})\n  reason: {}\n{}",
                relates_to.as_deref().unwrap_or("-"),
                fault.code.qname(),
                fault.code.hresult(),
                fault.reason,
                fault
                    .detail
                    .as_ref()
                    .map(|d| format!("  error type {}: {}\n", d.error_type.as_str(), d.message))
                    .unwrap_or_default()
            ),
            json: json!({
                "kind": "fault", "relates_to": relates_to, "subcode": fault.code.qname(),
                "reason": fault.reason,
                "error_type": fault.detail.as_ref().map(|d| d.error_type.as_str().to_string()),
            }),
        },
    }
}

fn characteristic_text(c: &enroll::provisioning::Characteristic, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    out.push_str(&format!("{pad}{}\n", c.kind));
    for p in &c.parms {
        let value = match p.name.as_str() {
            // Secrets and certificate blobs are summarised, not printed.
            "AAUTHSECRET" => "(secret)".to_string(),
            "EncodedCertificate" => {
                format!("({} base64 chars)", p.value.as_deref().map_or(0, str::len))
            }
            _ => p.value.clone().unwrap_or_default(),
        };
        out.push_str(&format!("{pad}  {} = {}\n", p.name, value));
    }
    for child in &c.children {
        characteristic_text(child, depth + 1, out);
    }
}

fn summarize_provisioning(doc: &enroll::provisioning::ProvisioningDoc) -> Decoded {
    let mut text = format!("wap-provisioningdoc version {}\n", doc.version);
    for c in &doc.characteristics {
        characteristic_text(c, 1, &mut text);
    }
    let enrollment = doc.enrollment();
    let json = match &enrollment {
        Ok(e) => json!({
            "kind": "provisioning", "provider_id": e.provider_id, "addr": e.addr,
            "client_store": e.client_store.as_str(),
            "root_thumbprint": enroll::ca::thumbprint(&e.root_certificate_der),
            "client_thumbprint": enroll::ca::thumbprint(&e.client_certificate_der),
            "complete": true,
        }),
        Err(err) => json!({"kind": "provisioning", "complete": false, "problem": err.to_string()}),
    };
    if let Err(err) = &enrollment {
        text.push_str(&format!(
            "  note: not a complete enrollment document: {err}\n"
        ));
    }
    Decoded { text, json }
}
