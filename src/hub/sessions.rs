//! Connections: registering devices, logins that a kick can refuse, kicks.

use super::*;

impl Hub {
    /// Registers a device's connection. A connection with the same device
    /// id is replaced (and closed with [`DisconnectReason::Replaced`]); a
    /// master login closes the user's other devices of the same flag with
    /// [`DisconnectReason::Kicked`] (reason 12).
    ///
    /// A transport that checks a credential first (a login) should use
    /// [`Hub::login_ticket`] and [`Hub::connect_checked`] instead, so that a
    /// logout between the check and the registration is not lost.
    ///
    /// In a cluster the login reaches the other nodes too: the same device
    /// connected there is replaced, and a master login kicks the same
    /// flag's devices there.
    pub fn connect(&self, device: Device, sink: Arc<dyn DeviceSink>) -> ConnectionId {
        let login = device.clone();
        let connection = self.inner.sessions.connect(device, sink);
        self.inner.router.presence_changed(&login.uid, Some(&login));
        connection
    }

    /// A ticket for a login of `uid`, to take **before** checking the
    /// user's credential, and to hand to [`Hub::connect_checked`].
    ///
    /// A logout is "forget the credential, then [`Hub::kick`]". A login is
    /// "check the credential, then connect". Without the ticket a kick can
    /// fall between the login's two steps, find nothing to close, and the
    /// login then registers with a credential that no longer exists.
    pub fn login_ticket(&self, uid: &Uid) -> LoginTicket {
        self.inner.sessions.login_ticket(uid)
    }

    /// [`Hub::connect`], unless `uid` may have been kicked since `ticket`
    /// was taken: then nothing is registered and `None` is returned, and
    /// the caller checks the credential again with a new ticket (a kick
    /// of another user can share the ticket's stripe, so a second check
    /// usually succeeds; a logged-out user's fails).
    ///
    /// ```
    /// use imcore::{Device, DeviceFlag, DeviceId, Hub, Uid};
    /// # fn main() -> imcore::Result<()> {
    /// let hub = Hub::builder().build()?;
    /// let alice = Uid::new("alice")?;
    /// let ticket = hub.login_ticket(&alice);
    /// // ... the credential is checked here; meanwhile a logout kicks alice:
    /// hub.kick(&alice, None);
    /// let (sink, _conn) = imcore::session::in_process(8);
    /// let device = Device::master(alice, DeviceId::new("phone")?, DeviceFlag::App);
    /// assert!(hub.connect_checked(ticket, device, sink).is_none());
    /// # Ok(()) }
    /// ```
    pub fn connect_checked(
        &self,
        ticket: LoginTicket,
        device: Device,
        sink: Arc<dyn DeviceSink>,
    ) -> Option<ConnectionId> {
        let login = device.clone();
        let connection = self.inner.sessions.connect_checked(ticket, device, sink)?;
        self.inner.router.presence_changed(&login.uid, Some(&login));
        Some(connection)
    }

    /// [`Hub::connect`] over the in-process transport with a queue of
    /// `capacity` messages.
    ///
    /// The transport does not acknowledge by itself: a command
    /// (`sync_once`) delivered to a device stays queued for its user, and
    /// is delivered again by command sync, until a **master** device
    /// acknowledges it with [`Hub::ack`], as a WuKongIM client's RECVACK
    /// does. Acknowledge what the device has handled (or connect with
    /// [`Hub::connect_in_process_acking`], which acknowledges each message
    /// as it is received):
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> imcore::Result<()> {
    /// use imcore::{Device, DeviceFlag, DeviceId, Hub, SendRequest, Uid};
    /// let hub = Hub::builder().build()?;
    /// let bob = Uid::new("bob")?;
    /// let phone = Device::master(bob.clone(), DeviceId::new("phone")?, DeviceFlag::App);
    /// let (connection, mut inbox) = hub.connect_in_process(phone, 64);
    /// let command = SendRequest::command_to(Uid::new("system")?, vec![bob.clone()], "{}");
    /// hub.send(command).await?;
    /// let got = inbox.recv().await.expect("delivered");
    /// assert_eq!(hub.sync_commands(&bob, 0, 10).await?.len(), 1, "still queued");
    /// hub.ack(&bob, connection, got.message_id, got.message_seq).await?;
    /// assert!(hub.sync_commands(&bob, 0, 10).await?.is_empty(), "consumed");
    /// # Ok(()) }
    /// ```
    pub fn connect_in_process(
        &self,
        device: Device,
        capacity: usize,
    ) -> (ConnectionId, InProcessConnection) {
        let (sink, conn) = in_process(capacity);
        (self.connect(device, sink), conn)
    }

    /// Forgets a connection (the client went away). Returns whether it was
    /// still registered; a connection already replaced is left alone.
    pub fn disconnect(&self, uid: &Uid, connection: ConnectionId) -> bool {
        let removed = self.inner.sessions.disconnect(uid, connection, None);
        if removed {
            self.inner.router.presence_changed(uid, None);
        }
        removed
    }

    /// Closes every connection of `uid`, or only those of one device kind,
    /// with [`DisconnectReason::Kicked`] (reason 12: a WuKongIM client then
    /// stops reconnecting): a logout or a ban by the host. Returns how many
    /// connections were closed on this node. Revoke the user's token
    /// first, or the client can simply log in again.
    ///
    /// In a cluster the kick reaches every node (at most once: a node cut
    /// off from the others at that moment keeps its connections).
    pub fn kick(&self, uid: &Uid, flag: Option<DeviceFlag>) -> usize {
        self.inner.router.kick(uid, flag);
        self.kick_here(uid, flag)
    }

    /// The online devices of `uid` on this node.
    pub fn online_devices(&self, uid: &Uid) -> Vec<Device> {
        let connections = self.inner.sessions.connections_of(uid);
        connections.into_iter().map(|(_, device)| device).collect()
    }

    /// The connections of `uid` on this node, each with its device: what
    /// a host needs to tell who came and went (WuKongIM's
    /// `user.onlinestatus` names the connection).
    pub fn online_connections(&self, uid: &Uid) -> Vec<(ConnectionId, Device)> {
        self.inner.sessions.connections_of(uid)
    }

    /// How many connections are registered on this node.
    pub fn connection_count(&self) -> usize {
        self.inner.sessions.connection_count()
    }
}
