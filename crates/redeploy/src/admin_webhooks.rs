//! `redeploy webhooks list|create|enable|disable|delete|deliveries|test`: one `/api/v1/webhooks` call each.

use std::process::ExitCode;

use api::types::{NewWebhook, WebhookDelivery};

use crate::admin_common::{client, or_dash};
use crate::cli::{AdminArgs, WebhooksCommand, WebhooksSub};
use crate::output::{human_time_or_dash, outln, print_json, table};

fn delivery_row(d: &WebhookDelivery) -> Vec<String> {
    vec![
        d.id.clone(),
        d.event.clone(),
        or_dash(d.action_id.as_deref().or(d.batch_id.as_deref())).into(),
        d.status.clone(),
        d.attempts.to_string(),
        d.last_status.map_or("-".into(), |s| s.to_string()),
        human_time_or_dash(d.next_attempt_at.as_deref()),
        or_dash(d.last_error.as_deref()).into(),
    ]
}

const DELIVERY_HEADER: &[&str] = &[
    "ID", "EVENT", "ABOUT", "STATUS", "ATTEMPTS", "HTTP", "NEXT", "ERROR",
];

/// `redeploy webhooks …`. A ping that was not delivered exits 1.
pub async fn webhooks(args: AdminArgs<WebhooksCommand>) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    match args.command.command {
        WebhooksSub::List => {
            let list = client.webhooks().await?;
            if args.json {
                print_json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .items
                    .iter()
                    .map(|w| {
                        vec![
                            w.id.clone(),
                            w.name.clone(),
                            w.kind.clone(),
                            w.url.clone(),
                            w.events.join(","),
                            if w.enabled { "yes" } else { "no" }.into(),
                        ]
                    })
                    .collect();
                table(&["ID", "NAME", "KIND", "URL", "EVENTS", "ENABLED"], &rows)?;
            }
        }
        WebhooksSub::Create {
            url,
            kind,
            name,
            secret,
            events,
        } => {
            let created = client
                .create_webhook(&NewWebhook {
                    url,
                    kind,
                    name,
                    secret,
                    events,
                })
                .await?;
            if args.json {
                print_json(&created)?;
            } else {
                let w = &created.webhook;
                outln!(
                    "created {} {} ({}) -> {} for {}",
                    w.kind,
                    w.id,
                    w.name,
                    w.url,
                    w.events.join(",")
                )?;
                if let Some(secret) = &created.secret {
                    outln!("secret (shown once): {secret}")?;
                }
            }
        }
        WebhooksSub::Enable { id } => set_enabled(&client, &id, true, args.json).await?,
        WebhooksSub::Disable { id } => set_enabled(&client, &id, false, args.json).await?,
        WebhooksSub::Delete { id } => {
            client.delete_webhook(&id).await?;
            if args.json {
                print_json(&serde_json::json!({ "deleted": id }))?;
            } else {
                outln!("deleted {id}")?;
            }
        }
        WebhooksSub::Deliveries { id } => {
            let list = client.webhook_deliveries(&id).await?;
            if args.json {
                print_json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list.items.iter().map(delivery_row).collect();
                table(DELIVERY_HEADER, &rows)?;
            }
        }
        WebhooksSub::Test { id } => {
            let delivery = client.test_webhook(&id).await?;
            if args.json {
                print_json(&delivery)?;
            } else {
                table(DELIVERY_HEADER, &[delivery_row(&delivery)])?;
            }
            if delivery.status != "delivered" {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_enabled(
    client: &api::Client,
    id: &str,
    enabled: bool,
    json: bool,
) -> anyhow::Result<()> {
    let w = client.set_webhook_enabled(id, enabled).await?;
    if json {
        print_json(&w)?;
    } else {
        let word = if w.enabled { "enabled" } else { "disabled" };
        outln!("{word} {} ({})", w.id, w.name)?;
    }
    Ok(())
}
