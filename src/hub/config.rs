//! The hub's settings.

use std::time::Duration;

use super::{RetentionPolicy, SendRate};
use crate::model::Limits;
#[cfg(doc)]
use crate::{
    error::Error,
    hub::{Hub, HubStats},
    notify::OfflineNotifier,
    Clock,
};

/// The hub's settings. Start from [`HubConfig::default`] and change what
/// you need with the setters, which are named after the fields:
///
/// ```
/// use std::time::Duration;
/// use imcore::HubConfig;
///
/// let config = HubConfig::default()
///     .node_id(7)
///     .revoke_window(Some(Duration::from_secs(300)))
///     .max_pushes(16);
/// assert_eq!(config.node_id, 7);
/// assert_eq!(config.max_page, 1000); // untouched: the default
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubConfig {
    /// This process's node number for message ids (0 to 1023). Default 1.
    pub node_id: u16,
    /// Input limits.
    pub limits: Limits,
    /// The largest page a sync call returns; larger limits are cut to it.
    /// Default 1000.
    pub max_page: usize,
    /// How long after its timestamp a message may be revoked; `None`
    /// means no limit. Default two minutes.
    pub revoke_window: Option<Duration>,
    /// How long after its timestamp a message may be edited
    /// ([`Hub::edit`](crate::Hub::edit)); `None` means no limit. Default
    /// 24 hours.
    pub edit_window: Option<Duration>,
    /// Also append a tip message (content type 1006, "{0}撤回了一条消息") to
    /// the channel when a message is revoked. Default off.
    pub revoke_tip: bool,
    /// Remove the payload of revoked messages from history reads. Default
    /// on.
    pub strip_revoked_payload: bool,
    /// Offline notifications ([`OfflineNotifier::notify`]) running at once
    /// at most; past it, the sends that push wait for a slot. Default 64.
    pub max_pushes: usize,
    /// How fast each sender (uid) may send: a token bucket per uid,
    /// refilled at [`SendRate::per_second`] up to [`SendRate::burst`].
    /// Every request to [`Hub::send`] and [`Hub::send_all`] takes a token
    /// of its sender's, device and server-side sends alike (a batch of N
    /// from one sender takes N); one over the rate is refused with
    /// [`Error::RateLimited`] (WuKongIM's reason 22, `RATE_LIMIT`) before
    /// it is looked at, and the others of a batch go on. The hub's own
    /// messages (revocation commands and tips) take none. `None`: no
    /// limit. Default 200 a second in bursts of 400 (WuKongIM has no such
    /// limit: this one is meant to stop a runaway client, not a busy
    /// one). Time is the hub's [`Clock`]; idle senders are forgotten.
    /// Each hub counts its own: in a cluster, a sender sending through
    /// several nodes has this rate on each.
    pub send_rate: Option<SendRate>,
    /// How long a send waits for the store to write it (and, for history,
    /// to make it durable). Past it the send fails with
    /// [`Error::Unavailable`] (retryable; WuKongIM's reason 15 on the wire,
    /// 503 over HTTP), is counted in [`HubStats::store_timeouts`] and
    /// logged, and the channel's next send goes on: a store that stalls
    /// (a stuck disk, a database that does not answer) holds its callers
    /// this long and no longer, and once it answers again, sends succeed
    /// again. The write may still land after the send failed; a resend
    /// (same `client_msg_no`) is then acknowledged as its duplicate, so
    /// retrying stays exactly-once. `None`: wait for ever. Default 5 s.
    pub store_deadline: Option<Duration>,
    /// How long a message event stream may stay open without an event
    /// before [`Hub::close_stale_streams`] ends it with `stream.error`.
    /// `None`: never. Default 5 minutes.
    pub stream_idle_timeout: Option<Duration>,
    /// How much history each channel keeps, applied by
    /// [`Hub::retention_pass`](crate::Hub::retention_pass). Default: all
    /// of it.
    pub retention: RetentionPolicy,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            node_id: 1,
            limits: Limits::default(),
            max_page: 1000,
            revoke_window: Some(Duration::from_secs(120)),
            edit_window: Some(Duration::from_secs(24 * 3600)),
            revoke_tip: false,
            strip_revoked_payload: true,
            max_pushes: 64,
            send_rate: Some(SendRate::new(
                std::num::NonZeroU32::new(200).expect("200 is not zero"),
                std::num::NonZeroU32::new(400).expect("400 is not zero"),
            )),
            store_deadline: Some(Duration::from_secs(5)),
            stream_idle_timeout: Some(Duration::from_secs(300)),
            retention: RetentionPolicy::default(),
        }
    }
}

impl HubConfig {
    /// Sets [`HubConfig::node_id`].
    pub fn node_id(mut self, node_id: u16) -> Self {
        self.node_id = node_id;
        self
    }

    /// Sets [`HubConfig::limits`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets [`HubConfig::max_page`].
    pub fn max_page(mut self, max_page: usize) -> Self {
        self.max_page = max_page;
        self
    }

    /// Sets [`HubConfig::revoke_window`].
    pub fn revoke_window(mut self, window: Option<Duration>) -> Self {
        self.revoke_window = window;
        self
    }

    /// Sets [`HubConfig::edit_window`].
    pub fn edit_window(mut self, window: Option<Duration>) -> Self {
        self.edit_window = window;
        self
    }

    /// Sets [`HubConfig::revoke_tip`].
    pub fn revoke_tip(mut self, on: bool) -> Self {
        self.revoke_tip = on;
        self
    }

    /// Sets [`HubConfig::strip_revoked_payload`].
    pub fn strip_revoked_payload(mut self, on: bool) -> Self {
        self.strip_revoked_payload = on;
        self
    }

    /// Sets [`HubConfig::max_pushes`].
    pub fn max_pushes(mut self, max_pushes: usize) -> Self {
        self.max_pushes = max_pushes;
        self
    }

    /// Sets [`HubConfig::send_rate`] (`None`: no limit).
    pub fn send_rate(mut self, rate: Option<SendRate>) -> Self {
        self.send_rate = rate;
        self
    }

    /// Sets [`HubConfig::store_deadline`] (`None`: wait for ever).
    pub fn store_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.store_deadline = deadline;
        self
    }

    /// Sets [`HubConfig::stream_idle_timeout`] (`None`: never).
    pub fn stream_idle_timeout(mut self, idle: Option<Duration>) -> Self {
        self.stream_idle_timeout = idle;
        self
    }

    /// Sets [`HubConfig::retention`].
    pub fn retention(mut self, policy: RetentionPolicy) -> Self {
        self.retention = policy;
        self
    }
}
