//! Offline push: the host's hook for recipients with no device online.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{Message, Uid};

/// Told about recipients who had no master device online when a message
/// was sent, so that the host can push a notification.
///
/// Called after the message is durable (history or command), never for
/// transient messages, and never with the sender. The hub calls it on a
/// spawned task, so a slow push service does not slow sends; the host
/// handles its own failures.
#[async_trait]
pub trait OfflineNotifier: Send + Sync + Debug + 'static {
    /// `offline` are the recipients of `message` with no master device
    /// online.
    async fn notify(&self, message: Arc<Message>, offline: Vec<Uid>);

    /// Whether this notifier wants to be told at all. When `false`, the hub
    /// neither collects the offline recipients of a send nor spawns a task
    /// for them (a send into a large group then costs that much less).
    /// Default `true`.
    fn enabled(&self) -> bool {
        true
    }
}

/// An [`OfflineNotifier`] that does nothing: the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPush;

#[async_trait]
impl OfflineNotifier for NoPush {
    async fn notify(&self, _message: Arc<Message>, _offline: Vec<Uid>) {}

    fn enabled(&self) -> bool {
        false
    }
}
