//! An in-process connection that acknowledges what it receives.

use std::sync::Arc;

use super::Hub;
use crate::model::{Message, Uid};
use crate::session::{ConnectionId, DisconnectReason, InProcessConnection};

/// The client's end of an in-process connection that acknowledges every
/// message as it is received, as a WuKongIM client's RECVACK does; see
/// [`Hub::connect_in_process_acking`].
///
/// A command (`sync_once`) received on a **master** device's connection is
/// consumed by [`AckingConnection::recv`]: command sync does not give it
/// again. On a slave device's connection it stays queued, as it does for a
/// WuKongIM slave. History and transient messages need no acknowledgement.
#[derive(Debug)]
pub struct AckingConnection {
    hub: Hub,
    uid: Uid,
    connection: ConnectionId,
    inner: InProcessConnection,
}

impl AckingConnection {
    /// The next message, acknowledged; `None` once the hub has closed the
    /// connection and every queued message has been read.
    ///
    /// If the acknowledgement cannot be stored (the store is down), the
    /// message is returned all the same and the command stays queued:
    /// command sync gives it again, as it would to a client whose RECVACK
    /// was lost. The failure is logged (`tracing`, level warn).
    pub async fn recv(&mut self) -> Option<Arc<Message>> {
        let message = self.inner.recv().await?;
        let (id, seq) = (message.message_id, message.message_seq);
        if let Err(e) = self.hub.ack(&self.uid, self.connection, id, seq).await {
            tracing::warn!(uid = %self.uid, message_id = %id, error = %e, "acknowledgement not stored");
        }
        Some(message)
    }

    /// This connection's id, for [`Hub::disconnect`].
    pub fn connection(&self) -> ConnectionId {
        self.connection
    }

    /// Why the hub closed this connection, if it has.
    pub fn closed_reason(&self) -> Option<DisconnectReason> {
        self.inner.closed_reason()
    }

    /// Waits until the hub closes this connection, and says why.
    pub async fn closed(&mut self) -> DisconnectReason {
        self.inner.closed().await
    }
}

impl Hub {
    /// [`Hub::connect_in_process`], with a connection that acknowledges each
    /// message as it is received: for a host whose in-process device
    /// handles what it reads (a bot, a bridge, a test).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> imcore::Result<()> {
    /// use imcore::{Device, DeviceFlag, DeviceId, Hub, SendRequest, Uid};
    /// let hub = Hub::builder().build()?;
    /// let bot = Uid::new("bot")?;
    /// let device = Device::master(bot.clone(), DeviceId::new("worker")?, DeviceFlag::Pc);
    /// let mut inbox = hub.connect_in_process_acking(device, 64);
    /// let command = SendRequest::command_to(Uid::new("system")?, vec![bot.clone()], "{}");
    /// hub.send(command).await?;
    /// inbox.recv().await.expect("delivered");
    /// assert!(hub.sync_commands(&bot, 0, 10).await?.is_empty(), "consumed");
    /// # Ok(()) }
    /// ```
    pub fn connect_in_process_acking(
        &self,
        device: crate::session::Device,
        capacity: usize,
    ) -> AckingConnection {
        let uid = device.uid.clone();
        let (connection, inner) = self.connect_in_process(device, capacity);
        AckingConnection {
            hub: self.clone(),
            uid,
            connection,
            inner,
        }
    }
}
