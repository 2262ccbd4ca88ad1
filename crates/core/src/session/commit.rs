//! Step 3 of a device message: commit the decided [`SessionStep`](crate::store::SessionStep) in
//! one transaction, put the commands it took into the reply, then append the audit events.

use syncml::{Command, ItemCommand, SyncMl};

use super::decide::{loc, Decision};
use super::SessionError;
use crate::command::{DeviceCommand, Verb};
use crate::enrollment::identity;
use crate::store::Store;

/// Commits `decision` and returns the reply to send. If the step fails, the error comes back and
/// nothing counts as sent; an audit event that cannot be written after the commit is logged, not
/// returned (the commit stands and the reply must go out).
pub async fn commit(store: &dyn Store, decision: Decision) -> Result<SyncMl, SessionError> {
    let Decision {
        step,
        mut reply,
        more_follows,
        mut audits,
        identity_changed,
        push_channel,
        wakes,
    } = decision;
    let at = step.at;
    let outcome = store.session_step(step).await?;
    for c in &outcome.sent {
        let cmd_id = c
            .sent_in
            .as_ref()
            .map(|s| s.cmd_id.clone())
            .unwrap_or_default();
        reply.body.commands.push(to_syncml(c, &cmd_id)?);
    }
    // A message without Final: the device answers and asks for the rest with Alert 1222.
    reply.body.is_final = !more_follows || outcome.sent.is_empty();

    if let Some(device) = identity_changed {
        match identity::find_clashes(store, &device).await {
            Ok(clashes) => audits.extend(identity::clash_audit(&device, &clashes, at)),
            Err(err) => tracing::warn!(error = %err, "identity clashes not looked for"),
        }
    }
    // Push bookkeeping after the commit, like the audit: a failure is logged, the reply goes.
    if let Some(channel) = push_channel {
        if let Err(err) = store.record_push_channel(&channel).await {
            tracing::warn!(error = %err, "the push channel a device reported was not stored");
        }
    }
    if !wakes.is_empty() {
        if let Err(err) = store.record_wakes(&wakes).await {
            tracing::warn!(error = %err, "what woke a device's actions was not recorded");
        }
    }
    for e in audits {
        // After the commit: the audit log is append-only and a failure here must not resend.
        if let Err(err) = store.append_audit(e).await {
            tracing::warn!(error = %err, "audit entry for a device message was not written");
        }
    }
    Ok(reply)
}

/// Our SyncML command for a queued command with CmdID `cmd_id`.
pub fn to_syncml(c: &DeviceCommand, cmd_id: &str) -> Result<Command, SessionError> {
    let uri = loc(&c.uri)?;
    let format = c.format.as_deref().unwrap_or("chr");
    let data = c.data.clone().unwrap_or_default();
    Ok(match c.verb {
        Verb::Get => Command::Get(ItemCommand::get(cmd_id, uri)),
        Verb::Exec => Command::Exec(ItemCommand::exec(cmd_id, uri, c.data.as_deref())),
        Verb::Replace => Command::Replace(ItemCommand::replace(cmd_id, uri, format, data)),
        Verb::Add => Command::Add(ItemCommand::add(cmd_id, uri, format, data)),
        Verb::Delete => Command::Delete(ItemCommand::delete(cmd_id, uri)),
    })
}
