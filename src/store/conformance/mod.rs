//! The storage conformance suite: one function per contract point, run
//! against every backend.
//!
//! A host that writes its own [`Store`] runs the same functions from its
//! tests; one that writes its own
//! [`DirectoryStore`](crate::directory::DirectoryStore) runs
//! [`directory_checks`] ([`run_directory`]). Each takes a store (empty or not: every function uses names of its
//! own) and **panics** when the store breaks the contract, like `assert!`.
//! [`run_all`] runs them all.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! use std::sync::Arc;
//! imcore::store::conformance::run_all(Arc::new(imcore::MemoryStore::new())).await;
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::{Page, Store};

mod commands;
mod concurrency;
mod conversations;
mod directory;
mod events;
mod extras;
mod outbox;
mod outbox_claims;
mod resends;
mod retention;
mod revocations;
use crate::model::{Channel, ClientMsgNo, Flags, Message, MessageId, Setting, Uid};
pub use commands::{command_queue_push_pending_ack, command_queue_remove_and_dedup};
pub use concurrency::{
    history_is_never_ahead_of_conversations, one_version_one_conversation_under_concurrent_appends,
};
pub use conversations::{
    append_moves_the_head_and_the_senders_position, changed_after_finds_what_a_sync_needs,
    clear_unread_moves_forward_only, conversations_page_by_version,
    hidden_conversations_keep_the_highest_seq, hiding_a_conversation_takes_a_version,
    unread_is_exact_under_concurrent_senders,
};
pub use directory::{
    directory_channels_are_put_read_and_deleted, directory_checks,
    directory_counts_follow_channels_and_subscribers, directory_lists_are_per_channel_and_kind,
    directory_snapshot_reads_a_channel_whole, directory_subscribers_are_entries_paged_in_uid_order,
    directory_system_uids_have_a_version, directory_tokens_are_set_replaced_and_removed,
    directory_versions_move_with_every_change_even_concurrent, run_directory, DirectoryCheck,
};
pub use events::{
    an_ended_stream_takes_no_more_events, concurrent_event_appends_get_each_seq_once,
    events_append_in_order_and_once_by_id,
};
pub use extras::{
    an_edit_never_lands_after_a_revocation, concurrent_edits_and_reads_keep_versions_strict,
    edits_share_the_revocation_version_and_keep_the_original, receipts_count_each_reader_once,
    retention_takes_extras_and_reads_even_racing,
};
pub use outbox::the_outbox_holds_each_new_message_until_done;
pub use outbox_claims::{
    concurrent_outbox_claims_never_share_an_entry, outbox_batches_are_leased_and_taken_over_whole,
};
pub use resends::{
    a_resend_with_another_payload_conflicts, append_is_idempotent_per_sender_channel_and_number,
    command_resends_are_per_sender_channel_and_number,
};
pub use retention::{
    a_resend_of_a_deleted_message_is_a_duplicate_until_purged,
    a_send_racing_a_deletion_loses_nothing, an_old_deleted_message_leaves_no_tombstone,
    channels_are_walked_and_leases_held_by_one,
    deleted_messages_take_their_revocations_events_and_outbox,
    deleting_everything_keeps_the_head_and_the_seqs, retention_deletes_the_oldest_through_a_seq,
    unread_counts_only_what_is_left,
};
pub use revocations::{
    concurrent_revocations_of_one_message_record_once, revocations_record_once_with_versions,
};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn uid(s: &str) -> Uid {
    Uid::new(s).expect("valid uid")
}

fn group(s: &str) -> Channel {
    Channel::group(s).expect("valid channel id")
}

/// A message ready to append: a fresh id, no seq.
fn message(from: &str, channel: &Channel, client_msg_no: &str, payload: &[u8]) -> Message {
    Message {
        message_id: MessageId(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
        message_seq: 0,
        client_msg_no: ClientMsgNo::new(client_msg_no).expect("valid client_msg_no"),
        from_uid: uid(from),
        channel: channel.clone(),
        timestamp_ms: 1_700_000_000_000,
        flags: Flags::normal(),
        setting: Setting::default(),
        topic: None,
        payload: Bytes::copy_from_slice(payload),
    }
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.message_seq).collect()
}

/// One function of the suite, as [`checks`] lists it.
pub type Check =
    fn(Arc<dyn Store>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Every function of the suite with its name, so that a host can give
/// each one a fresh store (a database of its own, say) and report them by
/// name.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// use std::sync::Arc;
/// for (name, check) in imcore::store::conformance::checks() {
///     check(Arc::new(imcore::MemoryStore::new())).await;
///     println!("{name}: ok");
/// }
/// # }
/// ```
pub fn checks() -> Vec<(&'static str, Check)> {
    macro_rules! named {
        ($($name:ident),+ $(,)?) => {
            vec![$((stringify!($name), (|s| Box::pin($name(s))) as Check)),+]
        };
    }
    named![
        append_assigns_contiguous_seqs_per_channel,
        append_batch_spans_channels_in_order,
        append_is_idempotent_per_sender_channel_and_number,
        a_resend_with_another_payload_conflicts,
        append_refuses_a_stored_message_id,
        read_pages_both_directions,
        get_by_id_and_client_msg_no,
        setting_and_topic_are_kept,
        concurrent_appends_get_each_seq_once,
        command_queue_push_pending_ack,
        command_queue_remove_and_dedup,
        append_moves_the_head_and_the_senders_position,
        conversations_page_by_version,
        clear_unread_moves_forward_only,
        unread_is_exact_under_concurrent_senders,
        revocations_record_once_with_versions,
        concurrent_revocations_of_one_message_record_once,
        history_is_never_ahead_of_conversations,
        command_resends_are_per_sender_channel_and_number,
        one_version_one_conversation_under_concurrent_appends,
        hidden_conversations_keep_the_highest_seq,
        hiding_a_conversation_takes_a_version,
        changed_after_finds_what_a_sync_needs,
        events_append_in_order_and_once_by_id,
        an_ended_stream_takes_no_more_events,
        concurrent_event_appends_get_each_seq_once,
        edits_share_the_revocation_version_and_keep_the_original,
        receipts_count_each_reader_once,
        concurrent_edits_and_reads_keep_versions_strict,
        an_edit_never_lands_after_a_revocation,
        retention_takes_extras_and_reads_even_racing,
        the_outbox_holds_each_new_message_until_done,
        // After it: these enable the outbox, which it wants off at first.
        outbox_batches_are_leased_and_taken_over_whole,
        concurrent_outbox_claims_never_share_an_entry,
        retention_deletes_the_oldest_through_a_seq,
        deleting_everything_keeps_the_head_and_the_seqs,
        unread_counts_only_what_is_left,
        a_resend_of_a_deleted_message_is_a_duplicate_until_purged,
        an_old_deleted_message_leaves_no_tombstone,
        // After the outbox checks: it enables the outbox.
        deleted_messages_take_their_revocations_events_and_outbox,
        a_send_racing_a_deletion_loses_nothing,
        channels_are_walked_and_leases_held_by_one,
        zero_limits_are_rejected,
    ]
}

/// Runs every function of the suite against `store`, in the order
/// [`checks`] lists them.
pub async fn run_all(store: Arc<dyn Store>) {
    for (_, check) in checks() {
        check(store.clone()).await;
    }
}

/// Seqs start at 1 in every channel and have no gaps; the stored message is
/// the one given, with its seq.
pub async fn append_assigns_contiguous_seqs_per_channel(store: Arc<dyn Store>) {
    let (a, b) = (group("c-seq-a"), group("c-seq-b"));
    assert_eq!(store.last_seq(&a).await.expect("last_seq"), 0);
    for i in 1..=5u64 {
        let m = message("u1", &a, &format!("seq-a-{i}"), &[i as u8]);
        let out = store.append(vec![m.clone()]).await.expect("append");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].message_seq, i, "seqs are 1, 2, 3…");
        assert_eq!(out[0].message_id, m.message_id);
        assert!(!out[0].duplicate);
    }
    let out = store
        .append(vec![message("u1", &b, "seq-b-1", b"b")])
        .await
        .expect("append");
    assert_eq!(out[0].message_seq, 1, "each channel has its own seqs");
    assert_eq!(store.last_seq(&a).await.expect("last_seq"), 5);
    assert_eq!(store.last_seq(&b).await.expect("last_seq"), 1);
    let read = store.read(&a, Page::forward(1, 100)).await.expect("read");
    assert_eq!(seqs(&read), vec![1, 2, 3, 4, 5]);
    assert_eq!(read[2].payload.as_ref(), &[3]);
    assert_eq!(read[2].channel, a);
}

/// One batch may span channels; within a channel, seqs follow batch order.
pub async fn append_batch_spans_channels_in_order(store: Arc<dyn Store>) {
    let (a, b) = (group("c-batch-a"), group("c-batch-b"));
    let batch = vec![
        message("u1", &a, "batch-1", b"1"),
        message("u2", &b, "batch-2", b"2"),
        message("u1", &a, "batch-3", b"3"),
        message("u3", &a, "batch-4", b"4"),
    ];
    let out = store.append(batch.clone()).await.expect("append");
    let got: Vec<u64> = out.iter().map(|x| x.message_seq).collect();
    assert_eq!(got, vec![1, 1, 2, 3]);
    let read = store.read(&a, Page::forward(1, 10)).await.expect("read");
    let payloads: Vec<&[u8]> = read.iter().map(|m| m.payload.as_ref()).collect();
    assert_eq!(payloads, vec![b"1", b"3", b"4"]);
    assert!(store.append(Vec::new()).await.expect("empty").is_empty());
}

/// A new message reusing a stored id (or one earlier in its batch) fails the
/// whole batch: nothing of it is stored, no seq is used, and the first
/// message stays reachable by its id.
pub async fn append_refuses_a_stored_message_id(store: Arc<dyn Store>) {
    let ch = group("c-id-reuse");
    let first = message("u1", &ch, "reuse-1", b"first");
    store.append(vec![first.clone()]).await.expect("append");
    let mut clash = message("u2", &ch, "reuse-2", b"clash");
    clash.message_id = first.message_id;
    let innocent = message("u2", &ch, "reuse-3", b"innocent");
    let refused = store.append(vec![innocent.clone(), clash]).await;
    assert!(
        matches!(refused, Err(crate::Error::Storage { .. })),
        "a reused id is refused, got {refused:?}"
    );
    let mut twin = message("u2", &ch, "reuse-4", b"twin");
    twin.message_id = innocent.message_id;
    let refused = store.append(vec![innocent.clone(), twin]).await;
    assert!(matches!(refused, Err(crate::Error::Storage { .. })));
    let all = store.read(&ch, Page::forward(1, 100)).await.expect("read");
    assert_eq!(seqs(&all), vec![1], "nothing of a refused batch is stored");
    let by_id = store.get(first.message_id).await.expect("get");
    assert_eq!(by_id.map(|m| m.payload), Some(first.payload.clone()));
    // A resend of the first message is still a duplicate, not a clash.
    let again = store.append(vec![first]).await.expect("append");
    assert!(again[0].duplicate);
    let next = store.append(vec![innocent]).await.expect("append");
    assert_eq!(next[0].message_seq, 2, "the refused batches used no seq");
}

/// Pages read forward and backward from any seq, honour the limit, and
/// return nothing past the ends.
pub async fn read_pages_both_directions(store: Arc<dyn Store>) {
    let ch = group("c-read");
    let batch = (1..=20)
        .map(|i| message("u1", &ch, &format!("read-{i}"), &[i]))
        .collect();
    store.append(batch).await.expect("append");
    let r = store.read(&ch, Page::forward(5, 3)).await.expect("read");
    assert_eq!(seqs(&r), vec![5, 6, 7]);
    let r = store.read(&ch, Page::backward(5, 3)).await.expect("read");
    assert_eq!(seqs(&r), vec![5, 4, 3]);
    let r = store.read(&ch, Page::latest(2)).await.expect("read");
    assert_eq!(seqs(&r), vec![20, 19]);
    let r = store.read(&ch, Page::forward(0, 2)).await.expect("read");
    assert_eq!(seqs(&r), vec![1, 2]);
    let r = store.read(&ch, Page::forward(19, 10)).await.expect("read");
    assert_eq!(seqs(&r), vec![19, 20]);
    assert!(store
        .read(&ch, Page::forward(21, 10))
        .await
        .expect("read")
        .is_empty());
    assert!(store
        .read(&ch, Page::backward(0, 10))
        .await
        .expect("read")
        .is_empty());
    assert!(store
        .read(&group("c-read-empty"), Page::latest(10))
        .await
        .expect("read")
        .is_empty());
    // A channel whose id extends another's is a different channel.
    let longer = group("c-read-x");
    store
        .append(vec![message("u1", &longer, "read-x", b"x")])
        .await
        .expect("append");
    assert_eq!(
        store
            .read(&ch, Page::latest(100))
            .await
            .expect("read")
            .len(),
        20
    );
}

/// Messages are found by id and by `(from_uid, channel, client_msg_no)`, with their
/// seq and payload (binary and empty payloads included).
pub async fn get_by_id_and_client_msg_no(store: Arc<dyn Store>) {
    let ch = Channel::person(&uid("p-alice"), &uid("p-bob"));
    let binary = message("p-alice", &ch, "get-1", &[0, 255, 1, 254]);
    let empty = message("p-bob", &ch, "get-2", b"");
    store
        .append(vec![binary.clone(), empty.clone()])
        .await
        .expect("append");
    let got = store
        .get(binary.message_id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        got,
        Message {
            message_seq: 1,
            ..binary.clone()
        }
    );
    let got = store
        .get_by_client_msg_no(
            &uid("p-bob"),
            &ch,
            &ClientMsgNo::new("get-2").expect("valid"),
        )
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.message_seq, 2);
    assert!(got.payload.is_empty());
    assert!(store
        .get(MessageId(u64::MAX - 7))
        .await
        .expect("get")
        .is_none());
    assert!(store
        .get_by_client_msg_no(
            &uid("p-alice"),
            &ch,
            &ClientMsgNo::new("get-2").expect("valid")
        )
        .await
        .expect("get")
        .is_none());
}

/// A message's setting byte and topic come back from every read of the
/// log and of the command queue, as stored; a message with neither reads
/// back with neither.
pub async fn setting_and_topic_are_kept(store: Arc<dyn Store>) {
    let ch = group("c-setting");
    let with = Message {
        setting: Setting(Setting::RECEIPT | 0x01),
        topic: Some("news/今日".into()),
        ..message("s-alice", &ch, "setting-1", b"with")
    };
    let without = message("s-alice", &ch, "setting-2", b"without");
    store
        .append(vec![with.clone(), without.clone()])
        .await
        .expect("append");
    let page = store.read(&ch, Page::forward(1, 10)).await.expect("read");
    let kept: Vec<_> = page.iter().map(|m| (m.setting, m.topic.clone())).collect();
    assert_eq!(
        kept,
        [(with.setting, with.topic.clone()), (Setting(0), None)],
        "read"
    );
    let got = store
        .get(with.message_id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!((got.setting, got.topic), (with.setting, with.topic.clone()));
    let got = store
        .get_by_client_msg_no(&uid("s-alice"), &ch, &with.client_msg_no)
        .await
        .expect("get")
        .expect("found");
    assert_eq!((got.setting, got.topic), (with.setting, with.topic.clone()));
    let history = store
        .read_history(&ch, Page::forward(1, 10))
        .await
        .expect("history");
    assert_eq!(history[0].message.topic, with.topic, "history");

    let command = Message {
        flags: Flags::command(),
        ..Message {
            message_seq: 0,
            client_msg_no: ClientMsgNo::new("setting-cmd").expect("valid"),
            message_id: MessageId(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            ..with.clone()
        }
    };
    let bob = uid("s-bob");
    store
        .push_command(&command, std::slice::from_ref(&bob))
        .await
        .expect("push");
    let pending = store.pending_commands(&bob, 0, 10).await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].message.setting, pending[0].message.topic.clone()),
        (with.setting, with.topic)
    );
}

/// Eight tasks appending to one channel at once: seqs 1..=N, each exactly
/// once, and each task sees its own seqs increase.
pub async fn concurrent_appends_get_each_seq_once(store: Arc<dyn Store>) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 40;
    let ch = group("c-concurrent");
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let ch = ch.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..PER_TASK {
                let m = message(&format!("t{t}"), &ch, &format!("conc-{t}-{i}"), b"x");
                let out = store.append(vec![m]).await.expect("append");
                mine.push(out[0].message_seq);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        let mine = h.await.expect("task");
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "one task's seqs increase"
        );
        all.extend(mine);
    }
    all.sort_unstable();
    let expected: Vec<u64> = (1..=(TASKS * PER_TASK) as u64).collect();
    assert_eq!(all, expected, "every seq exactly once, no gaps");
    let stored = store
        .read(&ch, Page::forward(1, TASKS * PER_TASK + 10))
        .await
        .expect("read");
    assert_eq!(seqs(&stored), expected);
}

/// A limit of zero is a validation error, not an empty page.
pub async fn zero_limits_are_rejected(store: Arc<dyn Store>) {
    let ch = group("c-zero");
    let u = uid("z-user");
    let is_validation = |r: crate::Result<usize>| matches!(r, Err(crate::Error::Validation(_)));
    assert!(is_validation(
        store.read(&ch, Page::latest(0)).await.map(|v| v.len())
    ));
    assert!(is_validation(
        store.pending_commands(&u, 0, 0).await.map(|v| v.len())
    ));
    assert!(is_validation(
        store
            .conversations_after(&u, &[], 0, 0)
            .await
            .map(|v| v.len())
    ));
    assert!(is_validation(
        store.revocations_after(&ch, 0, 0).await.map(|v| v.len())
    ));
}
