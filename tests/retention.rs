//! Retention through the hub: count and age policies applied by passes
//! (time from a `ManualClock`), explicit deletions with their dry run,
//! no-op and refusal, what readers see after (history from the floor,
//! unread, seqs never reused, resends of deleted messages), and one pass
//! per lease among hubs sharing a store.

use std::sync::Arc;
use std::time::Duration;

use imcore::hub::{RetentionPolicy, RetentionRule, RetentionStatus};
use imcore::store::{Page, Store};
use imcore::{
    Channel, ChannelType, ClientMsgNo, Error, Hub, HubConfig, ManualClock, MemoryDirectory,
    MemoryStore, SendRequest, SledStore, Uid, ValidationError,
};

const T0: i64 = 1_700_000_000_000;

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

struct World {
    hub: Hub,
    clock: Arc<ManualClock>,
    directory: Arc<MemoryDirectory>,
}

fn world(store: Arc<dyn Store>, policy: RetentionPolicy) -> World {
    let clock = Arc::new(ManualClock::new(T0));
    let directory = Arc::new(MemoryDirectory::new());
    let hub = Hub::builder()
        .store(store)
        .directory(directory.clone())
        .clock(clock.clone())
        .config(HubConfig::default().send_rate(None).retention(policy))
        .build()
        .unwrap();
    World {
        hub,
        clock,
        directory,
    }
}

impl World {
    fn group(&self, id: &str) -> Channel {
        let g = Channel::group(id).unwrap();
        self.directory
            .create_channel(&g, &uid("alice"), [uid("bob"), uid("carol")]);
        g
    }

    async fn send(&self, to: &Channel, n: usize) -> Vec<u64> {
        let mut seqs = Vec::new();
        for i in 0..n {
            let ack = self
                .hub
                .send(SendRequest::new(uid("alice"), to.clone(), format!("m{i}")))
                .await
                .unwrap();
            seqs.push(ack.message_seq);
        }
        seqs
    }

    async fn history(&self, to: &Channel) -> Vec<u64> {
        let page = Page::forward(1, 1000);
        let read = self.hub.sync_channel(&uid("bob"), to, page).await.unwrap();
        read.iter().map(|m| m.message_seq).collect()
    }

    async fn unread(&self, who: &str, to: &Channel) -> u64 {
        let c = self.hub.conversation(&uid(who), to).await.unwrap();
        c.expect("a conversation").unread
    }
}

fn keep(n: u64) -> RetentionPolicy {
    RetentionPolicy::default()
        .all(RetentionRule::keep_all().max_messages(Some(n)))
        .batch(3)
}

fn stores() -> Vec<(&'static str, Arc<dyn Store>)> {
    vec![
        ("memory", Arc::new(MemoryStore::new())),
        ("sled", Arc::new(SledStore::temporary().unwrap())),
    ]
}

#[tokio::test]
async fn a_count_policy_keeps_the_newest_messages() {
    for (name, store) in stores() {
        let w = world(store, keep(10));
        let g = w.group("g-count");
        w.send(&g, 25).await;
        assert_eq!(w.unread("bob", &g).await, 25, "{name}");
        let pass = w.hub.retention_pass().await.unwrap();
        assert!(pass.ran);
        assert_eq!(pass.deleted, 15, "{name}");
        assert_eq!(w.history(&g).await, (16..=25).collect::<Vec<_>>(), "{name}");
        assert_eq!(w.unread("bob", &g).await, 10, "{name}: only what is left");
        assert_eq!(w.send(&g, 1).await, [26], "{name}");
        let pass = w.hub.retention_pass().await.unwrap();
        assert_eq!(pass.deleted, 1, "{name}");
        assert_eq!(w.hub.retention_pass().await.unwrap().deleted, 0, "{name}");
    }
}

#[tokio::test]
async fn an_age_policy_deletes_by_the_hub_clock() {
    for (name, store) in stores() {
        let policy = RetentionPolicy::default()
            .all(RetentionRule::keep_all().max_age(Some(Duration::from_secs(1800))));
        let w = world(store, policy);
        let g = w.group("g-age");
        w.send(&g, 5).await;
        w.clock.advance(Duration::from_secs(3600));
        w.send(&g, 5).await;
        assert_eq!(w.hub.retention_pass().await.unwrap().deleted, 5, "{name}");
        assert_eq!(w.history(&g).await, [6, 7, 8, 9, 10], "{name}");
        // 29 minutes on, the rest is still young enough.
        w.clock.advance(Duration::from_secs(29 * 60));
        assert_eq!(w.hub.retention_pass().await.unwrap().deleted, 0, "{name}");
        // At exactly 30 minutes, not older than them; a moment later, older.
        w.clock.advance(Duration::from_secs(60));
        assert_eq!(w.hub.retention_pass().await.unwrap().deleted, 0, "{name}");
        w.clock.advance(Duration::from_millis(1));
        assert_eq!(w.hub.retention_pass().await.unwrap().deleted, 5, "{name}");
        assert!(w.history(&g).await.is_empty(), "{name}");
        // Everything deleted: the head stays, so does the conversation.
        assert_eq!(w.hub.max_message_seq(&g).await.unwrap(), 10, "{name}");
        let convs = w.hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
        assert_eq!(convs.len(), 1, "{name}");
        assert_eq!(convs[0].conversation.last_seq, 10);
        assert_eq!(convs[0].conversation.unread, 0);
        assert!(convs[0].last_message.is_none(), "{name}: it was deleted");
        assert_eq!(w.send(&g, 1).await, [11], "{name}: seqs never reused");
        assert_eq!(w.unread("bob", &g).await, 1);
    }
}

#[tokio::test]
async fn rules_per_channel_type_and_channel_win_over_the_default() {
    let policy = RetentionPolicy::default()
        .all(RetentionRule::keep_all().max_messages(Some(1)))
        .channel_type(
            ChannelType::GROUP,
            RetentionRule::keep_all().max_messages(Some(3)),
        )
        .channel(Channel::group("g-all").unwrap(), RetentionRule::keep_all());
    let w = world(Arc::new(MemoryStore::new()), policy);
    let (three, all) = (w.group("g-three"), w.group("g-all"));
    let person = Channel::new(uid("bob").into(), ChannelType::PERSON);
    w.send(&three, 5).await;
    w.send(&all, 5).await;
    w.send(&person, 5).await;
    let pass = w.hub.retention_pass().await.unwrap();
    assert_eq!((pass.channels, pass.deleted), (3, 2 + 4));
    assert_eq!(w.history(&three).await, [3, 4, 5]);
    assert_eq!(w.history(&all).await, [1, 2, 3, 4, 5]);
    let stored = person.stored_for(&uid("alice")).unwrap();
    assert_eq!(w.hub.store().history_floor(&stored).await.unwrap(), 4);
}

#[tokio::test]
async fn no_policy_no_pass() {
    let w = world(Arc::new(MemoryStore::new()), RetentionPolicy::default());
    let g = w.group("g-none");
    w.send(&g, 3).await;
    let pass = w.hub.retention_pass().await.unwrap();
    assert!(!pass.ran);
    assert_eq!(w.history(&g).await, [1, 2, 3]);
}

#[tokio::test]
async fn delete_history_answers_dry_runs_noops_and_refusals() {
    for (name, store) in stores() {
        let w = world(store, RetentionPolicy::default().batch(4));
        let g = w.group("g-explicit");
        w.send(&g, 50).await;
        assert!(w.hub.clear_unread(&uid("bob"), &g, 20).await.unwrap());
        let refused = w.hub.delete_history(&g, 51, false).await;
        assert!(
            matches!(
                refused,
                Err(Error::Validation(ValidationError::SeqBeyondHead {
                    through_seq: 51,
                    last_seq: 50
                }))
            ),
            "{name}: {refused:?}"
        );
        let dry = w.hub.delete_history(&g, 30, true).await.unwrap();
        assert_eq!(dry.status, RetentionStatus::DryRun);
        assert_eq!(
            (
                dry.deleted_count,
                dry.advanced_through_seq,
                dry.min_available_seq
            ),
            (30, 30, 31)
        );
        assert_eq!(
            w.history(&g).await.len(),
            50,
            "{name}: a dry run changes nothing"
        );
        let ten = w.hub.delete_history(&g, 10, false).await.unwrap();
        assert_eq!(
            (ten.status, ten.deleted_count),
            (RetentionStatus::Deleted, 10)
        );
        assert_eq!(w.unread("bob", &g).await, 30, "{name}: read up to 20 of 50");
        let thirty = w.hub.delete_history(&g, 30, false).await.unwrap();
        assert_eq!(
            (
                thirty.deleted_count,
                thirty.advanced_through_seq,
                thirty.min_available_seq
            ),
            (20, 30, 31)
        );
        assert_eq!(w.unread("bob", &g).await, 20, "{name}");
        assert_eq!(w.unread("carol", &g).await, 20, "{name}: never read");
        let noop = w.hub.delete_history(&g, 12, false).await.unwrap();
        assert_eq!(noop.status, RetentionStatus::Noop);
        assert_eq!(
            (
                noop.deleted_count,
                noop.advanced_through_seq,
                noop.min_available_seq
            ),
            (0, 30, 31)
        );
        let page = w
            .hub
            .sync_channel(&uid("bob"), &g, Page::backward(40, 100))
            .await
            .unwrap();
        assert_eq!(page.last().map(|m| m.message_seq), Some(31), "{name}");
        let all = w.hub.delete_history(&g, 50, false).await.unwrap();
        assert_eq!((all.deleted_count, all.min_available_seq), (20, 51));
        assert_eq!(w.send(&g, 1).await, [51], "{name}");
        assert_eq!(w.history(&g).await, [51], "{name}");
    }
}

#[tokio::test]
async fn a_resend_of_a_deleted_message_is_a_duplicate_for_the_protection_period() {
    for (name, store) in stores() {
        let policy = RetentionPolicy::default()
            .all(RetentionRule::keep_all().max_messages(Some(1_000)))
            .resend_protection(Duration::from_secs(3600));
        let w = world(store, policy);
        let g = w.group("g-resend");
        let send = || {
            SendRequest::new(uid("alice"), g.clone(), "once")
                .client_msg_no(ClientMsgNo::new("c-1").unwrap())
        };
        let first = w.hub.send(send()).await.unwrap();
        w.send(&g, 1).await;
        w.hub.delete_history(&g, 1, false).await.unwrap();
        let again = w.hub.send(send()).await.unwrap();
        assert!(again.duplicate, "{name}");
        assert_eq!((again.message_id, again.message_seq), (first.message_id, 1));
        assert_eq!(w.hub.max_message_seq(&g).await.unwrap(), 2, "{name}");
        w.clock.advance(Duration::from_secs(3599));
        assert_eq!(w.hub.retention_pass().await.unwrap().tombstones_purged, 0);
        assert!(w.hub.send(send()).await.unwrap().duplicate, "{name}");
        w.clock.advance(Duration::from_secs(2));
        assert_eq!(w.hub.retention_pass().await.unwrap().tombstones_purged, 1);
        let stored = w.hub.send(send()).await.unwrap();
        assert!(!stored.duplicate, "{name}: past the protection period");
        assert_eq!(stored.message_seq, 3);
    }
}

/// A message deleted older than the resend protection leaves no
/// tombstone: its resend is stored again; one deleted younger is still a
/// duplicate. Either way a resend is recognised for the protection period
/// after the message was sent.
#[tokio::test]
async fn a_message_deleted_after_its_protection_leaves_no_tombstone() {
    for (name, store) in stores() {
        let policy = RetentionPolicy::default()
            .all(RetentionRule::keep_all().max_age(Some(Duration::from_secs(60))))
            .resend_protection(Duration::from_secs(3600));
        let w = world(store, policy);
        let g = w.group("g-old");
        let send = |no: &str| {
            SendRequest::new(uid("alice"), g.clone(), "once")
                .client_msg_no(ClientMsgNo::new(no).unwrap())
        };
        let old = w.hub.send(send("c-old")).await.unwrap();
        w.clock.advance(Duration::from_secs(3601));
        let young = w.hub.send(send("c-young")).await.unwrap();
        w.clock.advance(Duration::from_secs(61));
        let pass = w.hub.retention_pass().await.unwrap();
        assert_eq!(pass.deleted, 2, "{name}");
        let again = w.hub.send(send("c-young")).await.unwrap();
        assert!(again.duplicate, "{name}: deleted young");
        assert_eq!(again.message_id, young.message_id, "{name}");
        let stored = w.hub.send(send("c-old")).await.unwrap();
        assert!(!stored.duplicate, "{name}: deleted past its protection");
        assert_ne!(stored.message_id, old.message_id, "{name}");
        assert_eq!(stored.message_seq, 3, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_racing_a_deletion_are_all_kept() {
    for (name, store) in stores() {
        let w = world(store, RetentionPolicy::default().batch(5));
        let g = w.group("g-race");
        w.send(&g, 300).await;
        let deleting = {
            let (hub, g) = (w.hub.clone(), g.clone());
            tokio::spawn(async move { hub.delete_history(&g, 300, false).await.unwrap() })
        };
        let mut acked = Vec::new();
        for i in 0..100 {
            let text = format!("late {i}");
            let ack = w
                .hub
                .send(SendRequest::new(uid("bob"), g.clone(), text))
                .await
                .unwrap();
            acked.push(ack.message_seq);
        }
        let report = deleting.await.unwrap();
        assert_eq!(report.deleted_count, 300, "{name}");
        assert_eq!(w.history(&g).await, acked, "{name}: every late send kept");
        assert_eq!(acked, (301..=400).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn hubs_sharing_a_store_run_one_pass_per_lease() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let policy = keep(2).interval(Duration::from_secs(60));
    let a = world(store.clone(), policy.clone());
    let b_clock = a.clock.clone();
    let b = Hub::builder()
        .store(store)
        .directory(a.directory.clone())
        .clock(b_clock)
        .config(HubConfig::default().node_id(2).retention(policy))
        .build()
        .unwrap();
    let g = a.group("g-lease");
    a.send(&g, 10).await;
    let (pa, pb) = tokio::join!(a.hub.retention_pass(), b.retention_pass());
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    assert!(pa.ran != pb.ran, "one of the two ran: {pa:?} {pb:?}");
    assert_eq!(pa.deleted + pb.deleted, 8);
    let (runner, other) = if pa.ran { (&a.hub, &b) } else { (&b, &a.hub) };
    a.send(&g, 3).await;
    assert!(
        !other.retention_pass().await.unwrap().ran,
        "the lease holds"
    );
    assert_eq!(runner.retention_pass().await.unwrap().deleted, 3);
    a.clock.advance(Duration::from_secs(61));
    a.send(&g, 1).await;
    let taken = other.retention_pass().await.unwrap();
    assert!(taken.ran, "the lease ran out: another node takes it");
    assert_eq!(taken.deleted, 1);
}
