//! Conformance of retention: deleting a channel's oldest history through
//! a seq, in batches, with what goes with it, keeping the head, the seqs,
//! exact unread counts and resend tombstones.

use std::sync::Arc;
use std::time::Duration;

use super::{group, message, seqs, uid};
use crate::event::{NewEvent, STREAM_OPEN};
use crate::model::{Channel, EventId, Message};
use crate::store::{NewRevocation, Page, Store};

async fn fill(store: &Arc<dyn Store>, ch: &Channel, from: &str, n: usize) -> Vec<Message> {
    let batch: Vec<Message> = (1..=n)
        .map(|i| message(from, ch, &format!("{}-{i}", ch.id.as_str()), b"x"))
        .collect();
    store.append(batch.clone()).await.expect("append");
    batch
}

/// Deletes through `through` in batches of `max`; the batches' sizes.
async fn delete(store: &Arc<dyn Store>, ch: &Channel, through: u64, max: usize) -> Vec<u64> {
    let mut sizes = Vec::new();
    loop {
        let batch = store
            .delete_through(ch, through, max, 1_000, i64::MIN)
            .await
            .expect("delete");
        sizes.push(batch.deleted);
        assert!(batch.deleted <= max as u64, "a batch is at most max_batch");
        if batch.done {
            assert_eq!(batch.floor, through, "done: the floor is where asked");
            return sizes;
        }
    }
}

/// Deleting through a seq removes exactly the messages up to it, in
/// batches of at most the size asked, and moves the floor; reads from seq
/// 1 (forward) start at the first kept, backward pages end there, ids and
/// resend keys no longer find the deleted. Asking past the head is
/// refused and changes nothing; asking at or below the floor deletes
/// nothing and answers the floor.
pub async fn retention_deletes_the_oldest_through_a_seq(store: Arc<dyn Store>) {
    let ch = group("c-ret-del");
    let sent = fill(&store, &ch, "ret-a", 10).await;
    assert_eq!(store.history_floor(&ch).await.expect("floor"), 0);
    let refused = store.delete_through(&ch, 11, 100, 1_000, i64::MIN).await;
    assert!(
        matches!(refused, Err(crate::Error::Validation(_))),
        "past the head: {refused:?}"
    );
    assert_eq!(store.history_floor(&ch).await.expect("floor"), 0);
    assert_eq!(delete(&store, &ch, 5, 2).await, [2, 2, 1]);
    assert_eq!(store.history_floor(&ch).await.expect("floor"), 5);
    let forward = store.read(&ch, Page::forward(1, 3)).await.expect("read");
    assert_eq!(
        seqs(&forward),
        [6, 7, 8],
        "a page from seq 1 starts at the floor"
    );
    let back = store
        .read(&ch, Page::backward(10, 100))
        .await
        .expect("read");
    assert_eq!(seqs(&back), [10, 9, 8, 7, 6], "a backward page ends there");
    let history = store
        .read_history(&ch, Page::forward(0, 100))
        .await
        .expect("history");
    assert_eq!(history.len(), 5);
    assert!(store
        .read(&ch, Page::backward(5, 10))
        .await
        .expect("read")
        .is_empty());
    assert!(store.get(sent[2].message_id).await.expect("get").is_none());
    let by_no = store
        .get_by_client_msg_no(&sent[2].from_uid, &ch, &sent[2].client_msg_no)
        .await
        .expect("get");
    assert!(by_no.is_none());
    assert!(store.get(sent[7].message_id).await.expect("get").is_some());
    assert_eq!(store.last_seq(&ch).await.expect("last"), 10);
    let again = store
        .delete_through(&ch, 3, 100, 1_000, i64::MIN)
        .await
        .expect("delete");
    assert_eq!((again.deleted, again.floor, again.done), (0, 5, true));
}

/// Deleting every message keeps the head: the last seq, the conversation
/// entries, and the next append takes the next seq (never one reused).
pub async fn deleting_everything_keeps_the_head_and_the_seqs(store: Arc<dyn Store>) {
    let ch = group("c-ret-all");
    fill(&store, &ch, "ret-b", 4).await;
    let reader = uid("ret-b-reader");
    let before = store
        .conversation(&reader, &ch)
        .await
        .expect("conversation")
        .expect("listed");
    delete(&store, &ch, 4, 3).await;
    assert_eq!(store.last_seq(&ch).await.expect("last"), 4);
    assert!(store
        .read(&ch, Page::latest(10))
        .await
        .expect("read")
        .is_empty());
    assert!(store
        .read(&ch, Page::forward(4, 1))
        .await
        .expect("read")
        .is_empty());
    let after = store
        .conversation(&reader, &ch)
        .await
        .expect("conversation")
        .expect("still listed");
    assert_eq!(after.last_seq, 4);
    assert_eq!(after.last_message_id, before.last_message_id);
    assert_eq!(after.unread, 0, "nothing left to read");
    let next = store
        .append(vec![message("ret-b", &ch, "ret-b-next", b"n")])
        .await
        .expect("append");
    assert_eq!(next[0].message_seq, 5, "seqs are never reused");
    let read = store.read(&ch, Page::forward(1, 10)).await.expect("read");
    assert_eq!(seqs(&read), [5]);
    let unread = store
        .conversation(&reader, &ch)
        .await
        .expect("conversation")
        .expect("listed")
        .unread;
    assert_eq!(unread, 1);
}

/// Unread counts only messages that still exist: of 50 red-dot messages,
/// a reader at 20 has 30 unread after deleting through 10 (unchanged) and
/// 20 after deleting through 30; one who never read has 20 too.
pub async fn unread_counts_only_what_is_left(store: Arc<dyn Store>) {
    let ch = group("c-ret-unread");
    fill(&store, &ch, "ret-c", 50).await;
    let (at_20, never) = (uid("ret-c-20"), uid("ret-c-never"));
    assert!(store.clear_unread(&at_20, &ch, 20).await.expect("clear"));
    let unread = |u: crate::model::Uid| {
        let store = store.clone();
        let ch = ch.clone();
        async move {
            let c = store.conversation(&u, &ch).await.expect("conversation");
            c.expect("listed").unread
        }
    };
    assert_eq!(unread(at_20.clone()).await, 30);
    delete(&store, &ch, 10, 100).await;
    assert_eq!(
        unread(at_20.clone()).await,
        30,
        "nothing unread was deleted"
    );
    assert_eq!(unread(never.clone()).await, 40);
    delete(&store, &ch, 30, 100).await;
    assert_eq!(unread(at_20.clone()).await, 20);
    assert_eq!(unread(never.clone()).await, 20);
    // A clear to a deleted seq moves nothing it should not.
    let (late, by_groups) = (uid("ret-c-late"), [ch.clone()]);
    assert!(store.clear_unread(&late, &ch, 25).await.expect("clear"));
    assert_eq!(unread(late.clone()).await, 20);
    let listed = store
        .conversations_after(&never, &by_groups, 0, 10)
        .await
        .expect("conversations");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].unread, 20, "the paged list counts the same");
}

/// The timestamp of every message of the suite's `message` helper.
const SENT_AT: i64 = 1_700_000_000_000;

/// A resend of a deleted message (same sender, channel, number) sent at or
/// after the deletion's tombstone cutoff (here exactly at it) is a
/// duplicate with the first id and seq, in a batch too, and stores
/// nothing; once its tombstone is purged (only those deleted before the
/// time given), it is a new message.
pub async fn a_resend_of_a_deleted_message_is_a_duplicate_until_purged(store: Arc<dyn Store>) {
    let ch = group("c-ret-resend");
    let first = message("ret-d", &ch, "ret-d-1", b"one");
    let second = message("ret-d", &ch, "ret-d-2", b"two");
    store
        .append(vec![first.clone(), second.clone()])
        .await
        .expect("append");
    let deleted = store
        .delete_through(&ch, 1, 10, 5_000, SENT_AT)
        .await
        .expect("delete");
    assert_eq!(deleted.deleted, 1);
    let mut resend = message("ret-d", &ch, "ret-d-1", b"one, again");
    let fresh = message("ret-d", &ch, "ret-d-3", b"three");
    let out = store
        .append(vec![resend.clone(), fresh])
        .await
        .expect("append");
    assert!(out[0].duplicate);
    assert_eq!(
        (out[0].message_id, out[0].message_seq),
        (first.message_id, 1)
    );
    assert_eq!((out[1].message_seq, out[1].duplicate), (3, false));
    let alone = store.append(vec![resend.clone()]).await.expect("append");
    assert!(alone[0].duplicate, "alone too");
    assert_eq!(
        store.last_seq(&ch).await.expect("last"),
        3,
        "nothing stored"
    );
    // Tombstones of deletions at or after the time given stay.
    let kept = store.purge_tombstones(5_000, 1_000).await.expect("purge");
    let again = store.append(vec![resend.clone()]).await.expect("append");
    assert!(again[0].duplicate, "purged {kept} others, not this one");
    assert!(store.purge_tombstones(5_001, 1_000).await.expect("purge") >= 1);
    resend.message_id = message("ret-d", &ch, "ret-d-1", b"").message_id;
    let stored = store.append(vec![resend]).await.expect("append");
    assert!(!stored[0].duplicate, "a new message once purged");
    assert_eq!(stored[0].message_seq, 4);
}

/// A message sent before the deletion's tombstone cutoff leaves no
/// tombstone: its resend after the deletion is stored again as a new
/// message, with a new id and the next seq. A message of the same batch sent at the cutoff keeps its
/// tombstone.
pub async fn an_old_deleted_message_leaves_no_tombstone(store: Arc<dyn Store>) {
    let ch = group("c-ret-old");
    let mut old = message("ret-h", &ch, "ret-h-old", b"old");
    old.timestamp_ms = SENT_AT - 1;
    let young = message("ret-h", &ch, "ret-h-young", b"young");
    let kept = message("ret-h", &ch, "ret-h-kept", b"kept");
    store
        .append(vec![old.clone(), young.clone(), kept])
        .await
        .expect("append");
    let deleted = store
        .delete_through(&ch, 2, 10, 7_000, SENT_AT)
        .await
        .expect("delete");
    assert_eq!((deleted.deleted, deleted.floor), (2, 2));
    let mut resend = message("ret-h", &ch, "ret-h-old", b"old");
    resend.timestamp_ms = old.timestamp_ms;
    let young_again = message("ret-h", &ch, "ret-h-young", b"young");
    let out = store
        .append(vec![resend.clone(), young_again])
        .await
        .expect("append");
    assert!(!out[0].duplicate, "no tombstone: stored again");
    assert_eq!(
        (out[0].message_id, out[0].message_seq),
        (resend.message_id, 4),
        "a new message, with the next seq"
    );
    assert!(out[1].duplicate, "the young one's tombstone stays");
    assert_eq!(
        (out[1].message_id, out[1].message_seq),
        (young.message_id, 2)
    );
    let again = store.append(vec![resend]).await.expect("append");
    assert!(again[0].duplicate, "the new message is resent-safe itself");
    assert_eq!(again[0].message_seq, 4);
    let stored = store
        .get_by_client_msg_no(&old.from_uid, &ch, &old.client_msg_no)
        .await
        .expect("get")
        .expect("stored again");
    assert_eq!(stored.message_seq, 4);
    assert_eq!(store.last_seq(&ch).await.expect("last"), 4);
}

/// The deleted messages' revocations, message events and outbox entries
/// go with them; those of the messages kept stay.
pub async fn deleted_messages_take_their_revocations_events_and_outbox(store: Arc<dyn Store>) {
    store.enable_outbox();
    let ch = group("c-ret-extras");
    let sent = fill(&store, &ch, "ret-e", 4).await;
    for m in [&sent[1], &sent[3]] {
        let seq = sent
            .iter()
            .position(|s| s.message_id == m.message_id)
            .expect("sent")
            + 1;
        store
            .record_revocation(NewRevocation {
                message_id: m.message_id,
                channel: ch.clone(),
                message_seq: seq as u64,
                revoker: uid("ret-e"),
                revoked_at_ms: 1,
            })
            .await
            .expect("revoke");
    }
    for m in [&sent[0], &sent[2]] {
        let open = NewEvent::new(
            ch.clone(),
            m.client_msg_no.clone(),
            EventId::new("ret-e-open").expect("id"),
            STREAM_OPEN,
            uid("ret-e"),
            "{}",
        )
        .expect("event");
        store.append_event(open, 1).await.expect("event");
    }
    delete(&store, &ch, 2, 10).await;
    let revoked = store
        .revocations_after(&ch, 0, 10)
        .await
        .expect("revocations");
    let ids: Vec<_> = revoked.iter().map(|r| r.message_id).collect();
    assert_eq!(ids, [sent[3].message_id], "only the kept message's");
    let found = store
        .lookup_revocations(&[sent[1].message_id, sent[3].message_id])
        .await
        .expect("lookup");
    assert!(found[0].is_none() && found[1].is_some());
    assert!(store
        .revocations_between(&ch, 1, 2)
        .await
        .expect("between")
        .is_empty());
    let events = store
        .events_after(&ch, &sent[0].client_msg_no, 0, 10)
        .await
        .expect("events");
    assert!(events.is_empty(), "the deleted message's events are gone");
    let states = store
        .event_states(
            &ch,
            &[sent[0].client_msg_no.clone(), sent[2].client_msg_no.clone()],
        )
        .await
        .expect("states");
    assert!(states[0].is_empty() && !states[1].is_empty());
    let stale = store.stale_streams(i64::MAX, 10_000).await.expect("stale");
    assert!(stale
        .iter()
        .all(|s| s.client_msg_no != sent[0].client_msg_no || s.channel != ch));
    let outbox = store.outbox(10_000).await.expect("outbox");
    let deleted = [sent[0].message_id, sent[1].message_id];
    assert!(outbox.iter().all(|(_, m)| !deleted.contains(&m.message_id)));
    assert!(outbox
        .iter()
        .any(|(_, m)| m.message_id == sent[2].message_id));
}

/// Appends racing a deletion lose nothing: every message sent while the
/// channel is deleted through its old head is kept, with its seq, and
/// the kept history is contiguous from the floor.
pub async fn a_send_racing_a_deletion_loses_nothing(store: Arc<dyn Store>) {
    const OLD: u64 = 120;
    const TASKS: usize = 4;
    const PER_TASK: usize = 30;
    let ch = group("c-ret-race");
    fill(&store, &ch, "ret-f", OLD as usize).await;
    let deleter = {
        let (store, ch) = (store.clone(), ch.clone());
        tokio::spawn(async move { delete(&store, &ch, OLD, 7).await })
    };
    let mut senders = Vec::new();
    for t in 0..TASKS {
        let (store, ch) = (store.clone(), ch.clone());
        senders.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..PER_TASK {
                let m = message(&format!("ret-f{t}"), &ch, &format!("ret-f-{t}-{i}"), b"n");
                mine.push(store.append(vec![m]).await.expect("append")[0].message_seq);
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut sent = Vec::new();
    for s in senders {
        sent.extend(s.await.expect("sender"));
    }
    deleter.await.expect("deleter");
    sent.sort_unstable();
    let total = OLD + (TASKS * PER_TASK) as u64;
    let expected: Vec<u64> = (OLD + 1..=total).collect();
    assert_eq!(
        sent, expected,
        "the new messages took the seqs after the old"
    );
    let kept = store
        .read(&ch, Page::forward(1, 10_000))
        .await
        .expect("read");
    assert_eq!(seqs(&kept), expected, "every one kept, nothing old left");
    assert_eq!(store.history_floor(&ch).await.expect("floor"), OLD);
}

/// Channels are walked page by page, each once; a lease is held by one
/// holder until it runs out, and renewed by its holder.
pub async fn channels_are_walked_and_leases_held_by_one(store: Arc<dyn Store>) {
    let mine = [
        group("c-ret-walk-1"),
        group("c-ret-walk-2"),
        group("c-ret-walk-3"),
    ];
    for ch in &mine {
        fill(&store, ch, "ret-g", 1).await;
    }
    let mut seen: Vec<Channel> = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .channels_after(after.as_ref(), 2)
            .await
            .expect("channels");
        assert!(page.len() <= 2);
        let Some(last) = page.last().cloned() else {
            break;
        };
        seen.extend(page);
        after = Some(last);
    }
    for ch in &mine {
        assert_eq!(seen.iter().filter(|c| *c == ch).count(), 1, "{ch} once");
    }
    let ttl = Duration::from_secs(10);
    let lease = "c-ret-lease";
    assert!(store.try_lease(lease, "a", 0, ttl).await.expect("lease"));
    assert!(!store
        .try_lease(lease, "b", 5_000, ttl)
        .await
        .expect("lease"));
    assert!(store
        .try_lease(lease, "a", 5_000, ttl)
        .await
        .expect("renew"));
    assert!(!store
        .try_lease(lease, "b", 14_999, ttl)
        .await
        .expect("lease"));
    assert!(store
        .try_lease(lease, "b", 15_000, ttl)
        .await
        .expect("expired"));
    assert!(!store
        .try_lease(lease, "a", 15_000, ttl)
        .await
        .expect("lease"));
}
