//! The order of a device's messages (issue #13, replay): within one OMA-DM session each side
//! numbers its messages 1, 2, 3… (SyncHdr MsgID, unique per message within a session;
//! docs/protocol.md §3.2; every device capture in the shared fixtures starts a session at MsgID 1).
//! A message that continues a session must be the next one of
//! the session last seen; anything else is a replay or out of order, and is refused before any
//! of it counts: a replayed Status or Results could otherwise acknowledge a command or report a
//! reset done that never ran.
//!
//! Message 1 starts a session and is always taken: it carries no answer to any command of ours,
//! and a PC's session ids start over after an Autopilot Reset, so a repeated SessionID is no sign
//! of a replay on its own.

use crate::device::MessageSeq;

/// Why a message was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SequenceRefusal {
    /// The MsgID is not a positive decimal number.
    #[error("MsgID {0:?} is not a message number")]
    BadMsgId(String),
    /// A message after the first of a session that is not the session last seen.
    #[error("message {msg_id} of session {session_id:?} continues no session in progress (last seen: message {last_msg_id} of session {last_session_id:?})")]
    UnknownSession {
        session_id: String,
        msg_id: u64,
        last_session_id: String,
        last_msg_id: u64,
    },
    /// A message of the current session already seen (a replay) or skipping ahead.
    #[error("message {msg_id} of session {session_id:?} is out of order: message {expected} was expected")]
    OutOfOrder {
        session_id: String,
        msg_id: u64,
        expected: u64,
    },
}

/// Judges message `msg_id` of session `session_id` after `last` (the last message taken from
/// this device): the position to record when it is taken.
pub fn judge(
    last: &MessageSeq,
    session_id: &str,
    msg_id: &str,
) -> Result<MessageSeq, SequenceRefusal> {
    let n: u64 = msg_id
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| SequenceRefusal::BadMsgId(msg_id.to_owned()))?;
    let next = MessageSeq {
        session_id: session_id.to_owned(),
        msg_id: n,
    };
    if n == 1 {
        return Ok(next);
    }
    if last.session_id != session_id {
        return Err(SequenceRefusal::UnknownSession {
            session_id: session_id.to_owned(),
            msg_id: n,
            last_session_id: last.session_id.clone(),
            last_msg_id: last.msg_id,
        });
    }
    if n != last.msg_id + 1 {
        return Err(SequenceRefusal::OutOfOrder {
            session_id: session_id.to_owned(),
            msg_id: n,
            expected: last.msg_id + 1,
        });
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(session: &str, msg: u64) -> MessageSeq {
        MessageSeq {
            session_id: session.into(),
            msg_id: msg,
        }
    }

    #[test]
    fn each_message_must_follow_the_last_one_of_its_session() {
        // (case, last taken, session, MsgID, taken or the refusal's kind)
        type Case = (
            &'static str,
            MessageSeq,
            &'static str,
            &'static str,
            Result<u64, &'static str>,
        );
        let cases: [Case; 10] = [
            ("a first session", MessageSeq::default(), "1", "1", Ok(1)),
            ("the next message", at("1A", 1), "1A", "2", Ok(2)),
            ("a new session", at("1A", 4), "1B", "1", Ok(1)),
            (
                "a session id reused after a reset",
                at("1A", 4),
                "1A",
                "1",
                Ok(1),
            ),
            (
                "a replay of the last message",
                at("1A", 3),
                "1A",
                "3",
                Err("out of order"),
            ),
            (
                "a replay of an earlier message",
                at("1A", 3),
                "1A",
                "2",
                Err("out of order"),
            ),
            (
                "a skipped message",
                at("1A", 1),
                "1A",
                "3",
                Err("out of order"),
            ),
            (
                "a message of an old session",
                at("1B", 2),
                "1A",
                "3",
                Err("unknown session"),
            ),
            (
                "never seen, not a start",
                MessageSeq::default(),
                "7",
                "2",
                Err("unknown session"),
            ),
            ("not a number", at("1A", 1), "1A", "two", Err("bad")),
        ];
        for (case, last, session, msg, want) in cases {
            let got = judge(&last, session, msg).map(|s| {
                assert_eq!(s.session_id, session, "{case}");
                s.msg_id
            });
            let got = got.map_err(|e| match e {
                SequenceRefusal::BadMsgId(_) => "bad",
                SequenceRefusal::UnknownSession { .. } => "unknown session",
                SequenceRefusal::OutOfOrder { .. } => "out of order",
            });
            assert_eq!(got, want, "{case}");
        }
        assert!(judge(&MessageSeq::default(), "1", "0").is_err(), "MsgID 0");
    }
}
