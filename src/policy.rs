//! Persistence policy: which messages are history, which are commands and
//! which are transient.

use std::fmt::Debug;

use serde::{Deserialize, Serialize};

use crate::model::Message;

/// How a message is kept, decided by a [`PersistencePolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Persistence {
    /// Durable history: appended to the channel's log with the channel's next
    /// `message_seq`; every recipient's conversation is updated, and their
    /// unread count raised when the message has `red_dot` (never the
    /// sender's).
    History,
    /// A pass-through command (`sync_once`): uses no channel seq and touches
    /// no conversation; delivered to online devices, and kept in each
    /// recipient's command queue until that user acknowledges it, so that
    /// every recipient gets it exactly once.
    Command,
    /// Transient (`no_persist`): delivered to online devices only, stored
    /// nowhere, acknowledged with a message id of its own and seq 0.
    Transient,
}

/// Decides how a message is kept. Hosts may plug in their own.
///
/// The policy sees the message as it will be stored (flags, channel, payload)
/// and must be a pure function of it: the same message always gets the same
/// answer.
///
/// A host that treats every payload of content type 99 as a command,
/// whatever its flags:
///
/// ```
/// use imcore::{Message, Persistence, PersistencePolicy, WuKongPolicy};
///
/// #[derive(Debug)]
/// struct Type99IsCommand;
///
/// impl PersistencePolicy for Type99IsCommand {
///     fn classify(&self, message: &Message) -> Persistence {
///         #[derive(serde::Deserialize)]
///         struct Content { r#type: i64 }
///         match serde_json::from_slice::<Content>(&message.payload) {
///             Ok(Content { r#type: 99 }) if !message.flags.no_persist => Persistence::Command,
///             _ => WuKongPolicy.classify(message),
///         }
///     }
/// }
/// ```
pub trait PersistencePolicy: Send + Sync + Debug + 'static {
    /// How `message` is kept.
    fn classify(&self, message: &Message) -> Persistence;
}

/// WuKongIM's rule, from the message's header flags:
///
/// | `no_persist` | `sync_once` | class |
/// |---|---|---|
/// | 0 | 0 | [`Persistence::History`] |
/// | 0 | 1 | [`Persistence::Command`] |
/// | 1 | 0 | [`Persistence::Transient`] |
/// | 1 | 1 | [`Persistence::Transient`] (online-only command) |
///
/// `red_dot` and `dup` do not change the class (`red_dot` decides the unread
/// count of a history message).
#[derive(Debug, Clone, Copy, Default)]
pub struct WuKongPolicy;

impl PersistencePolicy for WuKongPolicy {
    fn classify(&self, message: &Message) -> Persistence {
        match (message.flags.no_persist, message.flags.sync_once) {
            (true, _) => Persistence::Transient,
            (false, true) => Persistence::Command,
            (false, false) => Persistence::History,
        }
    }
}
