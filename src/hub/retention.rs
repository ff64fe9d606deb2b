//! Retention through the hub: the policy (how much history each channel
//! keeps), deleting a channel's history through a seq on request, and the
//! passes that apply the policy to every channel.
//!
//! Deletion is physical and in batches
//! ([`RetentionStore`](crate::store::RetentionStore)): each batch is one
//! short store step, and sends to the channel go on between batches. What
//! a deletion keeps (the head, seqs, exact unread counts, resend
//! tombstones) is said there.

use std::collections::BTreeMap;

use super::*;

use crate::model::ChannelType;
use crate::store::{beyond_head, Page};
use std::time::Duration;

/// The lease a pass runs under, so that one process of a cluster runs it.
const PASS_LEASE: &str = "imcore.retention";
/// How many channels a pass asks the store for at a time.
const CHANNEL_PAGE: usize = 256;
/// How many messages an age look-up reads at a time.
const AGE_PAGE: usize = 500;
/// How many tombstones one purge call removes at most.
const PURGE_BATCH: usize = 1_000;

/// How much history a channel keeps: at most `max_messages` of its newest
/// messages, none older than `max_age` (by the hub's clock against each
/// message's timestamp), or both. Neither set: all of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RetentionRule {
    /// Keep at most this many of the newest messages.
    pub max_messages: Option<u64>,
    /// Keep no message older than this.
    pub max_age: Option<Duration>,
}

impl RetentionRule {
    /// Keeps everything.
    pub fn keep_all() -> Self {
        Self::default()
    }

    /// Sets [`RetentionRule::max_messages`].
    pub fn max_messages(mut self, n: Option<u64>) -> Self {
        self.max_messages = n;
        self
    }

    /// Sets [`RetentionRule::max_age`].
    pub fn max_age(mut self, age: Option<Duration>) -> Self {
        self.max_age = age;
        self
    }

    /// Whether the rule deletes anything ever.
    pub fn limits(&self) -> bool {
        self.max_messages.is_some() || self.max_age.is_some()
    }
}

/// Retention as part of the persistence policy: a [`RetentionRule`] for
/// every channel, for each channel type, and for single channels (the
/// most specific wins), applied by [`Hub::retention_pass`]. The default
/// keeps everything, and a host's ticker then has nothing to run.
///
/// ```
/// use std::time::Duration;
/// use imcore::hub::{RetentionPolicy, RetentionRule};
/// use imcore::{Channel, ChannelType};
/// let policy = RetentionPolicy::default()
///     .all(RetentionRule::keep_all().max_age(Some(Duration::from_secs(30 * 86_400))))
///     .channel_type(ChannelType::PERSON, RetentionRule::keep_all().max_messages(Some(10_000)))
///     .channel(Channel::group("announcements")?, RetentionRule::keep_all());
/// assert!(policy.is_active());
/// # Ok::<(), imcore::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// Every channel's rule, unless its type or itself has one.
    pub default: RetentionRule,
    /// Rules per channel type.
    pub by_type: BTreeMap<ChannelType, RetentionRule>,
    /// Rules per channel (stored form).
    pub by_channel: BTreeMap<Channel, RetentionRule>,
    /// How often a host runs a pass (the example server's ticker), and how
    /// long one node keeps the pass lease: another node's pass in that
    /// time does nothing. Default 60 s.
    pub interval: Duration,
    /// Messages deleted per store batch: what a send to the channel waits
    /// for at most. Default 500.
    pub batch: usize,
    /// How long a message's resend is recognised (answered as a duplicate
    /// with the first id and seq, storing nothing): at least this long
    /// after the message was sent, whether or not it was deleted in
    /// between. A message deleted younger than this leaves a resend
    /// tombstone that passes purge once this long has passed since the
    /// deletion (so its resend is recognised up to about twice this long after
    /// it was sent); a message deleted older than this leaves none, and
    /// its resend after the deletion is stored again as a new message.
    /// Default 24 hours.
    pub resend_protection: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            default: RetentionRule::default(),
            by_type: BTreeMap::new(),
            by_channel: BTreeMap::new(),
            interval: Duration::from_secs(60),
            batch: 500,
            resend_protection: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetentionPolicy {
    /// Sets [`RetentionPolicy::default`], every channel's rule.
    pub fn all(mut self, rule: RetentionRule) -> Self {
        self.default = rule;
        self
    }

    /// Sets the rule of a channel type.
    pub fn channel_type(mut self, kind: ChannelType, rule: RetentionRule) -> Self {
        self.by_type.insert(kind, rule);
        self
    }

    /// Sets the rule of one channel (stored form).
    pub fn channel(mut self, channel: Channel, rule: RetentionRule) -> Self {
        self.by_channel.insert(channel, rule);
        self
    }

    /// Sets [`RetentionPolicy::interval`].
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets [`RetentionPolicy::batch`].
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Sets [`RetentionPolicy::resend_protection`].
    pub fn resend_protection(mut self, period: Duration) -> Self {
        self.resend_protection = period;
        self
    }

    /// The rule of `channel`: its own, else its type's, else the default.
    pub fn rule_for(&self, channel: &Channel) -> RetentionRule {
        self.by_channel
            .get(channel)
            .or_else(|| self.by_type.get(&channel.kind))
            .copied()
            .unwrap_or(self.default)
    }

    /// Whether any rule deletes anything: passes have work only then.
    pub fn is_active(&self) -> bool {
        self.default.limits()
            || self.by_type.values().any(RetentionRule::limits)
            || self.by_channel.values().any(RetentionRule::limits)
    }
}

/// [`RetentionPolicy::resend_protection`] in milliseconds.
fn protection_ms(policy: &RetentionPolicy) -> i64 {
    i64::try_from(policy.resend_protection.as_millis()).unwrap_or(i64::MAX)
}

/// What [`Hub::delete_history`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionStatus {
    /// Messages were deleted (`"ok"`).
    #[serde(rename = "ok")]
    Deleted,
    /// Nothing changed; the figures are what the deletion would give.
    DryRun,
    /// Nothing to delete: the history was already cut at or past the seq.
    Noop,
}

impl RetentionStatus {
    /// `"ok"`, `"dry_run"` or `"noop"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RetentionStatus::Deleted => "ok",
            RetentionStatus::DryRun => "dry_run",
            RetentionStatus::Noop => "noop",
        }
    }
}

/// The answer to [`Hub::delete_history`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetentionReport {
    /// The channel (stored form).
    pub channel: Channel,
    /// The seq asked to delete through.
    pub requested_through_seq: u64,
    /// The channel's floor after the call: every seq up to it is deleted
    /// (with a dry run, where it would be).
    pub advanced_through_seq: u64,
    /// The first seq history can hold: `advanced_through_seq + 1`.
    pub min_available_seq: u64,
    /// What happened.
    pub status: RetentionStatus,
    /// Messages deleted (with a dry run, that would be).
    pub deleted_count: u64,
}

/// What one [`Hub::retention_pass`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PassReport {
    /// Whether it ran: `false` when no rule deletes anything, or when
    /// another process holds the pass lease.
    pub ran: bool,
    /// Channels it looked at.
    pub channels: u64,
    /// Messages it deleted.
    pub deleted: u64,
    /// Resend tombstones it purged.
    pub tombstones_purged: u64,
}

impl Hub {
    /// Deletes `channel`'s history (stored form) through `through_seq`:
    /// every message with a seq up to it, with its revocations, events and
    /// outbox entries, for good, in batches of
    /// [`RetentionPolicy::batch`] (sends to the channel go on between
    /// them). With `dry_run`, changes nothing and says what would be
    /// deleted.
    ///
    /// A `through_seq` above the channel's last seq is refused with
    /// [`ValidationError::SeqBeyondHead`], nothing changed; one at or
    /// below the channel's floor changes nothing and answers the floor
    /// ([`RetentionStatus::Noop`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> imcore::Result<()> {
    /// use imcore::hub::RetentionStatus;
    /// use imcore::{Channel, ChannelType, SendRequest, Uid};
    /// let hub = imcore::Hub::builder().build()?;
    /// let (alice, bob) = (Uid::new("alice")?, Uid::new("bob")?);
    /// let to_bob = Channel::new(bob.into(), ChannelType::PERSON);
    /// for text in ["a", "b", "c"] {
    ///     hub.send(SendRequest::new(alice.clone(), to_bob.clone(), text)).await?;
    /// }
    /// let stored = to_bob.stored_for(&alice)?;
    /// let report = hub.delete_history(&stored, 2, false).await?;
    /// assert_eq!((report.status, report.deleted_count, report.min_available_seq),
    ///     (RetentionStatus::Deleted, 2, 3));
    /// # Ok(()) }
    /// ```
    pub async fn delete_history(
        &self,
        channel: &Channel,
        through_seq: u64,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        let _work = self.start_work()?;
        let store = &self.inner.store;
        let last = store.last_seq(channel).await?;
        if through_seq > last {
            return Err(beyond_head(through_seq, last));
        }
        let floor = store.history_floor(channel).await?;
        let report = |status, floor: u64, deleted_count| RetentionReport {
            channel: channel.clone(),
            requested_through_seq: through_seq,
            advanced_through_seq: floor,
            min_available_seq: floor + 1,
            status,
            deleted_count,
        };
        if through_seq <= floor {
            return Ok(report(RetentionStatus::Noop, floor, 0));
        }
        if dry_run {
            // The log above the floor has no gaps.
            let count = through_seq - floor;
            return Ok(report(RetentionStatus::DryRun, through_seq, count));
        }
        let (deleted, floor) = self.delete_batches(channel, through_seq).await?;
        Ok(report(RetentionStatus::Deleted, floor, deleted))
    }

    /// Deletes through `through_seq` batch by batch: how many, and the
    /// floor after.
    async fn delete_batches(&self, channel: &Channel, through_seq: u64) -> Result<(u64, u64)> {
        let inner = &*self.inner;
        let policy = &inner.config.retention;
        let batch = policy.batch.max(1);
        let protection = protection_ms(policy);
        let mut deleted = 0;
        loop {
            let now = inner.clock.now_ms();
            // Only messages a client may still resend get a tombstone.
            let since = now.saturating_sub(protection);
            let step = inner
                .store
                .delete_through(channel, through_seq, batch, now, since)
                .await?;
            deleted += step.deleted;
            if step.done {
                return Ok((deleted, step.floor));
            }
            // Sends to the channel between batches.
            tokio::task::yield_now().await;
        }
    }

    /// Applies [`HubConfig::retention`] to every channel once: deletes what
    /// each channel's rule no longer keeps (the count from its head, the
    /// age by the hub's clock, reading forward from its floor), then
    /// purges resend tombstones older than the resend protection period.
    ///
    /// A pass runs under a lease in the store, held for
    /// [`RetentionPolicy::interval`]: of several hubs sharing a store, one
    /// runs it, and the others' passes in the meantime answer
    /// `ran: false`. A host calls it every interval (the example server's
    /// ticker).
    pub async fn retention_pass(&self) -> Result<PassReport> {
        let _work = self.start_work()?;
        let inner = &*self.inner;
        let policy = &inner.config.retention;
        if !policy.is_active() {
            return Ok(PassReport::default());
        }
        let holder = format!("imcore-node-{}", inner.config.node_id);
        let mut leased_at = inner.clock.now_ms();
        let store = &inner.store;
        if !store
            .try_lease(PASS_LEASE, &holder, leased_at, policy.interval)
            .await?
        {
            return Ok(PassReport::default());
        }
        let renew_ms = i64::try_from(policy.interval.as_millis() / 3).unwrap_or(i64::MAX);
        let mut report = PassReport {
            ran: true,
            ..PassReport::default()
        };
        let mut after: Option<Channel> = None;
        'walk: loop {
            let page = store.channels_after(after.as_ref(), CHANNEL_PAGE).await?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for channel in &page {
                let now = inner.clock.now_ms();
                if now - leased_at >= renew_ms {
                    if !store
                        .try_lease(PASS_LEASE, &holder, now, policy.interval)
                        .await?
                    {
                        break 'walk; // another node took over
                    }
                    leased_at = now;
                }
                report.channels += 1;
                let rule = policy.rule_for(channel);
                if !rule.limits() {
                    continue;
                }
                let through = self.expired_through(channel, rule, now).await?;
                if through > store.history_floor(channel).await? {
                    report.deleted += self.delete_batches(channel, through).await?.0;
                }
            }
            after = Some(last);
        }
        let before = inner.clock.now_ms().saturating_sub(protection_ms(policy));
        loop {
            let purged = store.purge_tombstones(before, PURGE_BATCH).await?;
            report.tombstones_purged += purged;
            if purged < PURGE_BATCH as u64 {
                break;
            }
        }
        Ok(report)
    }

    /// The highest seq of `channel` that `rule` no longer keeps at `now_ms`
    /// (the floor if none).
    async fn expired_through(
        &self,
        channel: &Channel,
        rule: RetentionRule,
        now_ms: i64,
    ) -> Result<u64> {
        let store = &self.inner.store;
        let head = store.last_seq(channel).await?;
        let mut through = store.history_floor(channel).await?;
        if let Some(keep) = rule.max_messages {
            through = through.max(head.saturating_sub(keep));
        }
        let Some(age) = rule.max_age else {
            return Ok(through);
        };
        let cutoff = now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        // Oldest first from what stays so far: stop at the first message
        // young enough to keep.
        let mut from = through + 1;
        loop {
            let page = store.read(channel, Page::forward(from, AGE_PAGE)).await?;
            let old = page.iter().take_while(|m| m.timestamp_ms < cutoff).count();
            if let Some(m) = old.checked_sub(1).and_then(|i| page.get(i)) {
                through = through.max(m.message_seq);
            }
            match page.last() {
                Some(last) if old == page.len() => from = last.message_seq + 1,
                _ => return Ok(through),
            }
        }
    }
}
