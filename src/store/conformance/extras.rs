//! Conformance of edits and read receipts: one version counter with
//! revocations, the original kept, each reader counted once, and the
//! same under concurrency.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use super::{group, message, uid};
use crate::model::{Channel, Message, MessageId};
use crate::store::{EditRecorded, NewEdit, NewReads, NewRevocation, Store};

fn edit(m: &Message, content: &str) -> NewEdit {
    NewEdit {
        message_id: m.message_id,
        channel: m.channel.clone(),
        message_seq: m.message_seq,
        editor: m.from_uid.clone(),
        content: Bytes::copy_from_slice(content.as_bytes()),
        edited_at_ms: 1_700_000_200_000,
    }
}

fn reads(reader: &str, channel: &Channel, messages: &[&Message]) -> NewReads {
    NewReads {
        reader: uid(reader),
        channel: channel.clone(),
        messages: messages
            .iter()
            .map(|m| (m.message_id, m.message_seq))
            .collect(),
        read_at_ms: 1_700_000_300_000,
    }
}

/// Appends `n` messages from `from` to `channel`, returned with their seqs.
async fn sent(store: &Arc<dyn Store>, channel: &Channel, from: &str, n: usize) -> Vec<Message> {
    let mut out = Vec::new();
    for i in 0..n {
        let no = format!("{}-{from}-{i}", channel.id);
        let mut m = message(from, channel, &no, b"original");
        let appended = store.append(vec![m.clone()]).await.expect("append");
        m.message_seq = appended[0].message_seq;
        out.push(m);
    }
    out
}

fn edited(r: EditRecorded) -> crate::store::MessageExtra {
    match r {
        EditRecorded::Edited(x) => x,
        other => panic!("expected a recorded edit, got {other:?}"),
    }
}

/// An edit takes the channel's next version after revocations' and keeps
/// the message as sent; the same content again changes nothing; a revoked
/// message is not edited; look-ups by id, seq range and version agree.
pub async fn edits_share_the_revocation_version_and_keep_the_original(store: Arc<dyn Store>) {
    let ch = group("c-edit");
    let m = sent(&store, &ch, "e-alice", 3).await;
    store
        .record_revocation(NewRevocation {
            message_id: m[2].message_id,
            channel: ch.clone(),
            message_seq: m[2].message_seq,
            revoker: uid("e-alice"),
            revoked_at_ms: 1_700_000_100_000,
        })
        .await
        .expect("revoke");
    let first = edited(store.record_edit(edit(&m[0], "v1")).await.expect("edit"));
    assert_eq!(first.extra_version, 2, "after the revocation's version 1");
    assert_eq!(
        first.edit.as_ref().map(|e| &e.content[..]),
        Some(&b"v1"[..])
    );
    let again = store.record_edit(edit(&m[0], "v1")).await.expect("edit");
    assert_eq!(again, EditRecorded::Unchanged(first.clone()));
    let second = edited(store.record_edit(edit(&m[0], "v2")).await.expect("edit"));
    assert_eq!(second.extra_version, 3);
    let other = edited(store.record_edit(edit(&m[1], "w")).await.expect("edit"));
    assert_eq!(other.extra_version, 4);
    let revoked = store.record_edit(edit(&m[2], "late")).await.expect("edit");
    assert_eq!(
        revoked,
        EditRecorded::Revoked,
        "a revoked message is not edited"
    );
    let kept = store
        .get(m[0].message_id)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(&kept.payload[..], b"original", "the original is kept");
    let found = store
        .lookup_extras(&[m[1].message_id, MessageId(1), m[0].message_id])
        .await
        .expect("lookup");
    assert_eq!(found, vec![Some(other.clone()), None, Some(second.clone())]);
    let page = store.extras_between(&ch, 1, 3).await.expect("between");
    assert_eq!(page, vec![second.clone(), other.clone()], "by seq");
    let after = store.extras_after(&ch, 2, 10).await.expect("after");
    assert_eq!(after, vec![second.clone(), other], "by version, once each");
    let after = store.extras_after(&ch, 3, 10).await.expect("after");
    assert_eq!(after.len(), 1);
    assert!(store
        .extras_after(&ch, 4, 10)
        .await
        .expect("after")
        .is_empty());
    let next = store
        .record_revocation(NewRevocation {
            message_id: m[1].message_id,
            channel: ch.clone(),
            message_seq: m[1].message_seq,
            revoker: uid("e-alice"),
            revoked_at_ms: 1_700_000_400_000,
        })
        .await
        .expect("revoke");
    assert_eq!(next.revocation().extra_version, 5, "one counter for both");
}

/// A receipt counts each reader once, writes nothing per member, and its
/// reads take versions; messages without a receipt, or of another
/// channel, are not counted.
pub async fn receipts_count_each_reader_once(store: Arc<dyn Store>) {
    let (ch, other) = (group("c-receipt"), group("c-receipt-other"));
    let m = sent(&store, &ch, "r-alice", 2).await;
    store
        .open_receipt(m[0].message_id, &ch, m[0].message_seq, 3)
        .await
        .expect("open");
    store
        .open_receipt(m[0].message_id, &ch, m[0].message_seq, 99)
        .await
        .expect("open twice keeps the first");
    let opened = store.lookup_extras(&[m[0].message_id]).await.expect("x");
    let receipt = opened[0].as_ref().and_then(|x| x.receipt).expect("open");
    assert_eq!(
        (receipt.audience, receipt.readers, receipt.unread()),
        (3, 0, 3)
    );
    assert_eq!(opened[0].as_ref().map(|x| x.extra_version), Some(0));
    assert!(store
        .extras_after(&ch, 0, 10)
        .await
        .expect("after")
        .is_empty());

    let by_bob = store
        .record_reads(reads("r-bob", &ch, &[&m[0], &m[1]]))
        .await
        .expect("read");
    assert_eq!(by_bob.len(), 1, "only the message with a receipt counts");
    assert_eq!(by_bob[0].receipt.map(|r| r.readers), Some(1));
    assert_eq!(by_bob[0].extra_version, 1);
    let twice = store
        .record_reads(reads("r-bob", &ch, &[&m[0]]))
        .await
        .expect("read");
    assert!(twice.is_empty(), "reading twice counts once");
    let wrong = store
        .record_reads(reads("r-carol", &other, &[&m[0]]))
        .await
        .expect("read");
    assert!(wrong.is_empty(), "a read names the message's own channel");
    let by_carol = store
        .record_reads(reads("r-carol", &ch, &[&m[0]]))
        .await
        .expect("read");
    let receipt = by_carol[0].receipt.expect("receipt");
    assert_eq!((receipt.readers, receipt.unread()), (2, 1));
    assert_eq!(by_carol[0].extra_version, 2);
    let at = store
        .reads_by(&uid("r-bob"), &[m[0].message_id, m[1].message_id])
        .await
        .expect("reads_by");
    assert_eq!(at, vec![Some(1_700_000_300_000), None]);
    let listed = store.extras_after(&ch, 0, 10).await.expect("after");
    assert_eq!(
        listed.len(),
        1,
        "one entry per message, at its last version"
    );
    assert_eq!(listed[0].extra_version, 2);
    let edited = edited(store.record_edit(edit(&m[0], "new")).await.expect("edit"));
    assert_eq!(
        edited.receipt.map(|r| r.readers),
        Some(2),
        "an edit keeps counts"
    );
    assert_eq!(edited.extra_version, 3);
}

/// Eight edits of one message at once all record, with distinct versions,
/// and the content that stays is the one with the highest; eight readers
/// at once are each counted once.
pub async fn concurrent_edits_and_reads_keep_versions_strict(store: Arc<dyn Store>) {
    let ch = group("c-extra-conc");
    let m = sent(&store, &ch, "k-alice", 1).await.remove(0);
    store
        .open_receipt(m.message_id, &ch, m.message_seq, 8)
        .await
        .expect("open");
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (store, m, ch) = (store.clone(), m.clone(), ch.clone());
        tasks.push(tokio::spawn(async move {
            let e = edited(
                store
                    .record_edit(edit(&m, &format!("c{t}")))
                    .await
                    .expect("edit"),
            );
            let r = store
                .record_reads(reads(&format!("k-r{t}"), &ch, &[&m]))
                .await
                .expect("read");
            assert_eq!(r.len(), 1, "a first read is counted");
            (e, r[0].extra_version)
        }));
    }
    let mut versions = HashSet::new();
    let mut last_edit = (0, Bytes::new());
    for t in tasks {
        let (e, read_version) = t.await.expect("task");
        assert!(versions.insert(e.extra_version), "distinct versions");
        assert!(versions.insert(read_version), "distinct versions");
        let content = e.edit.expect("edit").content;
        if e.extra_version > last_edit.0 {
            last_edit = (e.extra_version, content);
        }
    }
    assert_eq!(versions.len(), 16);
    assert_eq!(versions.iter().max(), Some(&16), "gap-free from 1");
    let now = store.lookup_extras(&[m.message_id]).await.expect("x")[0]
        .clone()
        .expect("extra");
    assert_eq!(
        now.edit.map(|e| e.content),
        Some(last_edit.1),
        "last edit wins"
    );
    assert_eq!(now.receipt.map(|r| (r.readers, r.unread())), Some((8, 0)));
    assert_eq!(now.extra_version, 16);
}

/// An edit racing a revocation of the same message is either refused or
/// ordered before it: a revoked message never shows an edit made after.
pub async fn an_edit_never_lands_after_a_revocation(store: Arc<dyn Store>) {
    let ch = group("c-edit-race");
    let msgs = sent(&store, &ch, "q-alice", 8).await;
    let mut tasks = Vec::new();
    for m in msgs {
        let (s1, s2, m1) = (store.clone(), store.clone(), m.clone());
        let edit = tokio::spawn(async move { s1.record_edit(edit(&m1, "raced")).await });
        let revoke = tokio::spawn(async move {
            s2.record_revocation(NewRevocation {
                message_id: m.message_id,
                channel: m.channel.clone(),
                message_seq: m.message_seq,
                revoker: uid("q-alice"),
                revoked_at_ms: 1_700_000_500_000,
            })
            .await
        });
        tasks.push((edit, revoke));
    }
    for (edit, revoke) in tasks {
        let edit = edit.await.expect("task").expect("edit");
        let revoked = revoke.await.expect("task").expect("revoke");
        let revoked_at = revoked.revocation().extra_version;
        match edit {
            EditRecorded::Revoked => {}
            EditRecorded::Edited(x) => assert!(
                x.extra_version < revoked_at,
                "edit at {} after revocation at {revoked_at}",
                x.extra_version
            ),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Retention takes a deleted message's extra and reads with it, and leaves
/// the others; reads racing a deletion leave nothing of a deleted message
/// and count every kept one once.
pub async fn retention_takes_extras_and_reads_even_racing(store: Arc<dyn Store>) {
    let ch = group("c-extra-retention");
    let m = sent(&store, &ch, "t-alice", 24).await;
    for x in &m {
        store
            .open_receipt(x.message_id, &ch, x.message_seq, 2)
            .await
            .expect("open");
    }
    store
        .record_edit(edit(&m[1], "edited"))
        .await
        .expect("edit");
    store
        .record_reads(reads("t-bob", &ch, &[&m[0]]))
        .await
        .expect("read");
    let (racer, victims) = (store.clone(), m.clone());
    let racing = tokio::spawn(async move {
        let ch = victims[0].channel.clone();
        for x in &victims[2..] {
            racer
                .record_reads(reads("t-carol", &ch, &[x]))
                .await
                .expect("read");
        }
    });
    loop {
        let batch = store
            .delete_through(&ch, 12, 3, 1_000, i64::MIN)
            .await
            .expect("delete");
        if batch.done {
            break;
        }
    }
    racing.await.expect("task");
    let ids: Vec<MessageId> = m.iter().map(|x| x.message_id).collect();
    let extras = store.lookup_extras(&ids).await.expect("lookup");
    for (x, extra) in m.iter().zip(&extras) {
        match x.message_seq <= 12 {
            true => assert!(extra.is_none(), "seq {}: its extra is gone", x.message_seq),
            false => {
                let r = extra.as_ref().and_then(|e| e.receipt).expect("kept");
                assert_eq!(r.readers, 1, "seq {}: counted once", x.message_seq);
            }
        }
    }
    for reader in ["t-bob", "t-carol"] {
        let at = store.reads_by(&uid(reader), &ids).await.expect("reads");
        for (x, at) in m.iter().zip(at) {
            if x.message_seq <= 12 {
                assert!(
                    at.is_none(),
                    "{reader}: the read of seq {} is gone",
                    x.message_seq
                );
            }
        }
    }
    let page = store.extras_between(&ch, 1, 24).await.expect("between");
    assert_eq!(
        page.iter().map(|x| x.message_seq).collect::<Vec<_>>(),
        (13..=24).collect::<Vec<_>>()
    );
    let listed = store.extras_after(&ch, 0, 100).await.expect("after");
    assert!(
        listed.iter().all(|x| x.message_seq > 12),
        "no deleted one listed"
    );
}
