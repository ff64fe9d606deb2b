//! A hub's end: [`Hub::shutdown`] stops new sends, waits for the work
//! under way (sends, offline notifications), flushes the store and
//! disconnects the devices, which reconnect by themselves.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::*;

/// What [`Hub::shutdown`] waits on.
#[derive(Debug)]
pub(super) struct Lifecycle {
    closing: AtomicBool,
    /// Sends and notifications under way.
    working: watch::Sender<usize>,
    /// Offline notifications running at once at most.
    pushes: Arc<Semaphore>,
}

/// One piece of work under way; it counts until dropped.
#[derive(Debug)]
pub(super) struct Working {
    lifecycle: Arc<Inner>,
}

impl Drop for Working {
    fn drop(&mut self) {
        self.lifecycle
            .lifecycle
            .working
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Lifecycle {
    pub(super) fn new(max_pushes: usize) -> Self {
        Lifecycle {
            closing: AtomicBool::new(false),
            working: watch::Sender::new(0),
            pushes: Arc::new(Semaphore::new(max_pushes.max(1))),
        }
    }
}

impl Hub {
    /// Work that shutdown waits for; refused once the hub is closing.
    pub(super) fn start_work(&self) -> Result<Working> {
        let lifecycle = &self.inner.lifecycle;
        lifecycle.working.send_modify(|n| *n += 1);
        let working = Working {
            lifecycle: self.inner.clone(),
        };
        // Counted first, then checked: shutdown, which sets the flag and
        // then waits for the count, never misses work that got past here.
        match lifecycle.closing.load(Ordering::Acquire) {
            true => Err(Error::Closed),
            false => Ok(working),
        }
    }

    /// Work that is part of work already under way (an accepted send's
    /// offline notification): counted even while the hub is closing.
    pub(super) fn more_work(&self) -> Working {
        self.inner.lifecycle.working.send_modify(|n| *n += 1);
        Working {
            lifecycle: self.inner.clone(),
        }
    }

    /// A slot for one offline notification, waiting while the notifier has
    /// as many under way as the config allows: a slow push provider slows
    /// the sends that push, rather than growing tasks without bound.
    /// (`None` only if the semaphore were closed, which it never is.)
    pub(super) async fn push_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.inner
            .lifecycle
            .pushes
            .clone()
            .acquire_owned()
            .await
            .ok()
    }

    /// The first step of [`Hub::shutdown`], at once: sends from now on fail
    /// with [`Error::Closed`]. What is under way goes on.
    pub fn close(&self) {
        self.inner.lifecycle.closing.store(true, Ordering::Release);
    }

    /// Whether the hub is closing or closed ([`Hub::close`]): for a health
    /// check that takes the node out of a load balancer.
    pub fn is_closing(&self) -> bool {
        self.inner.lifecycle.closing.load(Ordering::Acquire)
    }

    /// Shuts the hub down: sends from now on fail with [`Error::Closed`];
    /// sends and offline notifications under way finish; the store is
    /// flushed; every device on this node is disconnected with
    /// [`DisconnectReason::Shutdown`].
    ///
    /// A shutdown does not log anyone out: the wire server writes what was
    /// queued for each connection and the answers to its sends that the
    /// hub took, then closes it without a DISCONNECT packet, so that
    /// WuKongIM's clients reconnect by themselves (to the restarted server,
    /// or another node), as they do when WuKongIM itself stops. To log a
    /// user out, [`Hub::kick`].
    ///
    /// Stop accepting connections before calling it: devices that connect
    /// afterwards are registered, but nothing can be sent to them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> imcore::Result<()> {
    /// use imcore::{Channel, Error, Hub, SendRequest, Uid};
    /// let hub = Hub::builder().build()?;
    /// let to_bob = Channel::new(Uid::new("bob")?.into(), imcore::ChannelType::PERSON);
    /// hub.send(SendRequest::new(Uid::new("alice")?, to_bob.clone(), "hi")).await?;
    /// hub.shutdown().await?;
    /// let late = hub.send(SendRequest::new(Uid::new("alice")?, to_bob, "late")).await;
    /// assert!(matches!(late, Err(Error::Closed)));
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) -> Result<()> {
        self.close();
        let lifecycle = &self.inner.lifecycle;
        let mut working = lifecycle.working.subscribe();
        // The sender lives in the hub, which `self` keeps alive.
        let _ = working.wait_for(|n| *n == 0).await;
        self.inner.store.flush().await?;
        for (uid, _) in self.inner.sessions.presence() {
            if self
                .inner
                .sessions
                .disconnect_user(&uid, None, DisconnectReason::Shutdown)
                > 0
            {
                self.inner.router.presence_changed(&uid, None);
            }
        }
        Ok(())
    }
}
