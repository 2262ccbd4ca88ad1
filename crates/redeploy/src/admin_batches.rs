//! `redeploy batches wait|pause|resume|cancel ID`: following and steering a bulk request (issue
//! #15 item 1); the steering verbs are one `POST /api/v1/batches/{id}/{verb}` each.

use std::process::ExitCode;

use api::Client;

use crate::cli::BatchesSub;
use crate::output::{outln, print_json};

/// Pauses, resumes or cancels the batch and prints what it did; exit 1 when the server refuses
/// (unknown batch, or a state that does not allow it: the refusal names what does).
pub async fn steer(
    client: &Client,
    server: &str,
    how: BatchesSub,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (id, verb) = match &how {
        BatchesSub::Wait { id, timeout } => {
            let status = client.batch(id).await?;
            let total = status
                .batch
                .as_ref()
                .map_or(status.actions.len() as u64, |b| u64::from(b.devices));
            return crate::admin_groups::wait_for_batch_id(
                client,
                server,
                id,
                total,
                &[],
                *timeout,
                json,
            )
            .await;
        }
        BatchesSub::Pause { id } => (id, "pause"),
        BatchesSub::Resume { id } => (id, "resume"),
        BatchesSub::Cancel { id } => (id, "cancel"),
        BatchesSub::List { .. } | BatchesSub::Show { .. } => {
            anyhow::bail!("not a steering command")
        }
    };
    let done = client.steer_batch(id, verb).await?;
    if json {
        print_json(&done)?;
        return Ok(ExitCode::SUCCESS);
    }
    let b = &done.batch;
    let what = match verb {
        "pause" => format!(
            "{} waves held until `redeploy batches resume {id}`",
            done.waves
        ),
        "resume" => format!("{} waves released again as they fall due", done.waves),
        _ => format!(
            "{} waves dropped, {} actions canceled before they were sent",
            done.waves, done.canceled_actions
        ),
    };
    outln!(
        "batch {} ({} on {}) is {}: {what}",
        b.batch_id,
        b.kind,
        b.target,
        b.state
    )?;
    Ok(ExitCode::SUCCESS)
}
