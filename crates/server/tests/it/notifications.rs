//! Batch notifications end to end (issue #15 item 5): two emulated PCs in one batch, Teams and
//! Slack subscriptions posting to a local HTTP receiver standing in for the channels, and an
//! e-mail subscription sent through a minimal SMTP sink on 127.0.0.1:0 — `batch.stuck` when a PC
//! goes silent past the threshold, `batch.done` when both finish, `batch.failed` for a batch
//! with a blocked PC, each once per subscription.

use std::sync::{Arc, Mutex};

use api::{ActionKind, BulkRequest, Client, NewWebhook};
use device::{DeviceProfile, HttpsTransport};
use redeploy_core::ManualClock;
use server::settings::{SmtpSecurity, SmtpSettings};
use server::webhook_delivery::{self, WebhookReport};
use testkit::app::{spawn_app_with, Backend};
use testkit::on_both_backends;
use time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::webhooks::{
    admin, check_in_until_settled, enrolled_pc, enrolled_pc_with, now, Receiver,
};

on_both_backends!(batch_outcomes_reach_teams_slack_and_email_once_each,);

/// One message the sink accepted.
#[derive(Clone, Debug, Default)]
struct Mail {
    from: String,
    to: Vec<String>,
    /// Headers and body as sent (DATA without the final dot), headers unfolded.
    data: String,
}

impl Mail {
    /// The body, decoded when it is quoted-printable (RFC 2045 §6.7: `=` at a line's end is a
    /// soft break, `=XX` a byte in hex).
    fn body(&self) -> String {
        let body = self.data.split_once("\n\n").map_or("", |(_, b)| b);
        if !self
            .header("Content-Transfer-Encoding")
            .eq_ignore_ascii_case("quoted-printable")
        {
            return body.to_owned();
        }
        let joined = body.replace("=\n", "");
        let mut bytes = Vec::new();
        let mut rest = joined.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            match (b, tail.get(..2).and_then(|h| std::str::from_utf8(h).ok())) {
                (b'=', Some(hex)) if u8::from_str_radix(hex, 16).is_ok() => {
                    bytes.push(u8::from_str_radix(hex, 16).unwrap());
                    rest = &tail[2..];
                }
                _ => {
                    bytes.push(b);
                    rest = tail;
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn header(&self, name: &str) -> String {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.data
            .lines()
            .take_while(|l| !l.is_empty())
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
            .unwrap_or_default()
    }
}

/// A minimal SMTP server (RFC 5321 §4.1 commands, no TLS, no AUTH): greets, answers EHLO,
/// MAIL, RCPT, DATA (collecting up to the lone "." line, §4.5.2 dot-unstuffing) and QUIT.
struct SmtpSink {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let store = mails.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = serve_smtp(socket, store).await;
                });
            }
        });
        Self { port, mails }
    }

    fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

async fn serve_smtp(
    socket: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut mail = Mail::default();
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250 sink.test\r\n"
        } else if let Some(from) = upper.strip_prefix("MAIL FROM:") {
            mail.from = line[line.len() - from.len()..].trim().to_owned();
            b"250 OK\r\n"
        } else if let Some(to) = upper.strip_prefix("RCPT TO:") {
            mail.to
                .push(line[line.len() - to.len()..].trim().to_owned());
            b"250 OK\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = Vec::new();
            while let Some(l) = lines.next_line().await? {
                if l == "." {
                    break;
                }
                data.push(l.strip_prefix('.').map(str::to_owned).unwrap_or(l));
            }
            // Unfold headers (RFC 5322 §2.2.3): a line starting with white space continues.
            let mut text = String::new();
            for l in data {
                if l.starts_with([' ', '\t']) && !text.is_empty() {
                    text.push(' ');
                    text.push_str(l.trim_start());
                } else {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&l);
                }
            }
            mail.data = text;
            mails.lock().unwrap().push(std::mem::take(&mut mail));
            b"250 OK queued\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 OK\r\n"
        } else {
            b"502 not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
    Ok(())
}

async fn subscribe(client: &Client, kind: &str, url: String) -> String {
    let created = client
        .create_webhook(&NewWebhook {
            url,
            kind: Some(kind.into()),
            name: Some(kind.into()),
            ..NewWebhook::default()
        })
        .await
        .unwrap();
    assert_eq!(created.webhook.kind, kind);
    assert_eq!(
        created.webhook.events,
        ["batch.done", "batch.failed", "batch.stuck"],
        "a channel gets the batch events by default"
    );
    created.webhook.id
}

fn report(enqueued: u32, delivered: u32) -> WebhookReport {
    WebhookReport {
        enqueued,
        delivered,
        ..WebhookReport::default()
    }
}

async fn batch_outcomes_reach_teams_slack_and_email_once_each(backend: Backend) {
    let sink = SmtpSink::start().await;
    let smtp_port = sink.port;
    let app = spawn_app_with(backend, |s| {
        s.smtp = Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port: smtp_port,
            security: SmtpSecurity::None,
            user: None,
            password_file: None,
            from: "Redeploy <redeploy@example.org>".into(),
        });
    })
    .await;
    let client = admin(&app);
    let receiver = Receiver::start().await;
    subscribe(&client, "teams", receiver.url("teams")).await;
    subscribe(&client, "slack", receiver.url("slack")).await;
    let email = subscribe(&client, "email", "Lab Ops <ops@example.org>".into()).await;
    // A channel is not told about single actions; an address is not a URL.
    for bad in [
        NewWebhook {
            url: receiver.url("teams"),
            kind: Some("teams".into()),
            events: Some(vec!["done".into()]),
            ..NewWebhook::default()
        },
        NewWebhook {
            url: "not an address".into(),
            kind: Some("email".into()),
            ..NewWebhook::default()
        },
        NewWebhook {
            url: receiver.url("x"),
            kind: Some("pager".into()),
            ..NewWebhook::default()
        },
    ] {
        let err = client.create_webhook(&bad).await.unwrap_err();
        assert!(err.to_string().contains("400"), "{err}");
    }

    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (mut pc_a, a) = enrolled_pc(&app, &transport, "pc-lab-a").await;
    let (mut pc_b, b) = enrolled_pc(&app, &transport, "pc-lab-b").await;
    let batch = client
        .bulk_action(&BulkRequest {
            devices: Some(vec![a.clone(), b.clone()]),
            ..BulkRequest::new(ActionKind::AutopilotReset)
        })
        .await
        .unwrap();
    assert_eq!(batch.counts.queued, 2);
    let console_link = format!("/console/batches/{}", batch.batch_id);
    let state = app.server().state.clone();
    assert_eq!(
        webhook_delivery::tick(&state).await.unwrap(),
        WebhookReport::default(),
        "a running batch with nothing stuck tells nobody"
    );

    // PC a takes its reset and goes silent; two hours later the batch is stuck.
    device::client::check_in(&transport, &mut pc_a, now())
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(
        time::OffsetDateTime::now_utc() + Duration::minutes(121),
    ));
    let mut later = state.clone();
    later.clock = clock.clone();
    assert_eq!(webhook_delivery::tick(&later).await.unwrap(), report(3, 3));
    assert_eq!(
        webhook_delivery::tick(&later).await.unwrap(),
        WebhookReport::default(),
        "stuck is told once per batch and channel"
    );
    let teams = receiver.hits("teams");
    assert_eq!(teams.len(), 1);
    let card: serde_json::Value = serde_json::from_str(&teams[0].body).unwrap();
    assert_eq!(card["@type"], "MessageCard");
    assert!(
        card["title"].as_str().unwrap().contains("batch stuck"),
        "{card}"
    );
    let facts = card["sections"][0]["facts"].as_array().unwrap();
    let fact = |name: &str| {
        facts
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| f["value"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no fact {name} in {card}"))
    };
    assert_eq!(fact("Batch"), batch.batch_id);
    let name_a = client.device(&a).await.unwrap().device.name;
    assert_eq!(fact("Devices to check"), name_a);
    let uri = card["potentialAction"][0]["targets"][0]["uri"]
        .as_str()
        .unwrap();
    assert_eq!(
        uri,
        format!("{}{console_link}", app.server().state.public_url)
    );
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["<ops@example.org>"]);
    assert_eq!(mails[0].from, "<redeploy@example.org>");
    assert!(
        mails[0].header("Subject").contains("batch stuck"),
        "{:?}",
        mails[0]
    );
    assert!(mails[0].body().contains(&name_a), "{:?}", mails[0]);

    // Both PCs finish: the batch is done, told once to each channel.
    for (pc, id) in [(&mut pc_a, &a), (&mut pc_b, &b)] {
        let action = client.device(id).await.unwrap().actions[0].id.clone();
        let end = check_in_until_settled(&client, &transport, pc, &action, 8).await;
        assert_eq!(end, "done");
    }
    assert_eq!(webhook_delivery::tick(&later).await.unwrap(), report(3, 3));
    assert_eq!(
        webhook_delivery::tick(&later).await.unwrap(),
        WebhookReport::default()
    );
    let slack = receiver.hits("slack");
    assert_eq!(slack.len(), 2, "stuck, then done");
    let message: serde_json::Value = serde_json::from_str(&slack[1].body).unwrap();
    let text = message["text"].as_str().unwrap();
    assert!(text.contains("batch done"), "{text}");
    assert!(text.contains(&console_link), "{text}");
    assert_eq!(message["blocks"][0]["type"], "header");
    let buttons = message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("an actions block");
    assert!(buttons["elements"][0]["url"]
        .as_str()
        .unwrap()
        .ends_with(&console_link));
    let card: serde_json::Value = serde_json::from_str(&receiver.hits("teams")[1].body).unwrap();
    assert!(card["title"].as_str().unwrap().contains("batch done"));
    let mails = sink.mails();
    assert_eq!(mails.len(), 2);
    let subject = mails[1].header("Subject");
    assert!(subject.contains("batch done"), "{subject}");
    assert!(mails[1].body().contains(&batch.batch_id), "{:?}", mails[1]);
    assert!(mails[1].body().contains(&console_link), "{:?}", mails[1]);
    let deliveries = client.webhook_deliveries(&email).await.unwrap().items;
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries.iter().all(|d| d.status == "delivered"
        && d.last_status == Some(250)
        && d.batch_id.as_deref() == Some(batch.batch_id.as_str())));

    // A batch whose PC cannot take a reset (WinRE off: blocked) settles failed.
    let (_pc_c, c) = enrolled_pc_with(
        &app,
        &transport,
        "pc-lab-c",
        DeviceProfile {
            winre_enabled: false,
            ..DeviceProfile::default()
        },
    )
    .await;
    let failed = client
        .bulk_action(&BulkRequest {
            devices: Some(vec![c.clone()]),
            ..BulkRequest::new(ActionKind::AutopilotReset)
        })
        .await
        .unwrap();
    assert_eq!(failed.counts.blocked, 1, "{failed:?}");
    assert_eq!(webhook_delivery::tick(&later).await.unwrap(), report(3, 3));
    let card: serde_json::Value = serde_json::from_str(&receiver.hits("teams")[2].body).unwrap();
    assert!(
        card["title"].as_str().unwrap().contains("batch failed"),
        "{card}"
    );
    assert_eq!(card["themeColor"], "C62828");
    let mails = sink.mails();
    assert_eq!(mails.len(), 3);
    assert!(mails[2].header("Subject").contains("batch failed"));
    let name_c = client.device(&c).await.unwrap().device.name;
    assert!(mails[2].body().contains(&name_c), "{:?}", mails[2]);
    assert!(mails[2].body().contains(&failed.batch_id));
}
