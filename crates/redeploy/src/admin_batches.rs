//! `redeploy batches pause|resume|cancel ID`: steering a bulk request (issue #15 item 1), one
//! `POST /api/v1/batches/{id}/{verb}` each.

use std::process::ExitCode;

use api::Client;

use crate::admin_common::print_json;
use crate::cli::BatchesSub;

/// Pauses, resumes or cancels the batch and prints what it did; exit 1 when the server refuses
/// (unknown batch, or a state that does not allow it: the refusal names what does).
pub async fn steer(client: &Client, how: BatchesSub, json: bool) -> anyhow::Result<ExitCode> {
    let (id, verb) = match &how {
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
    println!(
        "batch {} ({} on {}) is {}: {what}",
        b.batch_id, b.kind, b.target, b.state
    );
    Ok(ExitCode::SUCCESS)
}
