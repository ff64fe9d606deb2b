//! Edits and read receipts on sled across restarts: what was recorded
//! reads back whole, each message once at its last version, and versions
//! go on from the channel's counter shared with revocations; a directory
//! written before extras existed opens with none and goes on the same way.

use std::path::Path;

use bytes::Bytes;
use imcore::store::{
    Durability, EditRecorded, ExtraStore, MessageExtra, MessageLog, NewEdit, NewReads,
    NewRevocation, RevocationStore, SledConfig, SledStore,
};
use imcore::{Channel, ClientMsgNo, Message, MessageId, Uid};

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

fn message(id: u64, channel: &Channel) -> Message {
    Message::new(
        MessageId(id),
        ClientMsgNo::new(format!("n-{id}")).unwrap(),
        uid("alice"),
        channel.clone(),
        1_700_000_000_000 + id as i64,
        format!("payload {id}").into_bytes(),
    )
}

fn edit(id: u64, seq: u64, channel: &Channel, content: &str) -> NewEdit {
    NewEdit {
        message_id: MessageId(id),
        channel: channel.clone(),
        message_seq: seq,
        editor: uid("alice"),
        content: Bytes::copy_from_slice(content.as_bytes()),
        edited_at_ms: 1_700_000_100_000 + seq as i64,
    }
}

fn reads(reader: &str, channel: &Channel, messages: &[(u64, u64)], at: i64) -> NewReads {
    NewReads {
        reader: uid(reader),
        channel: channel.clone(),
        messages: messages.iter().map(|&(id, s)| (MessageId(id), s)).collect(),
        read_at_ms: at,
    }
}

fn revocation(id: u64, seq: u64, channel: &Channel) -> NewRevocation {
    NewRevocation {
        message_id: MessageId(id),
        channel: channel.clone(),
        message_seq: seq,
        revoker: uid("alice"),
        revoked_at_ms: 1_700_000_200_000,
    }
}

fn edited(r: EditRecorded) -> MessageExtra {
    match r {
        EditRecorded::Edited(x) => x,
        other => panic!("expected a recorded edit, got {other:?}"),
    }
}

fn ids(extras: &[MessageExtra]) -> Vec<(u64, u64)> {
    extras
        .iter()
        .map(|x| (x.message_id.0, x.extra_version))
        .collect()
}

async fn survive_reopen(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let open = || SledStore::open_with(SledConfig::new(dir.path()).durability(durability));
    let g = Channel::group("g-extras").unwrap();
    let before = {
        let store = open().unwrap();
        store
            .append((1..=3).map(|i| message(i, &g)).collect())
            .await
            .unwrap();
        store.record_revocation(revocation(3, 3, &g)).await.unwrap();
        assert_eq!(
            edited(store.record_edit(edit(1, 1, &g, "first")).await.unwrap()).extra_version,
            2
        );
        store.open_receipt(MessageId(2), &g, 2, 3).await.unwrap();
        let read = store
            .record_reads(reads("bob", &g, &[(1, 1), (2, 2)], 7))
            .await
            .unwrap();
        assert_eq!(ids(&read), [(2, 3)], "only the message with a receipt");
        let last = edited(store.record_edit(edit(1, 1, &g, "second")).await.unwrap());
        assert_eq!(last.extra_version, 4);
        let before = store
            .lookup_extras(&[MessageId(1), MessageId(2), MessageId(3)])
            .await
            .unwrap();
        if durability != Durability::Flush {
            store.flush().await.unwrap();
        }
        before
        // Dropped here: the database is closed.
    };
    let store = open().unwrap();
    let after = store
        .lookup_extras(&[MessageId(1), MessageId(2), MessageId(3)])
        .await
        .unwrap();
    assert_eq!(after, before, "every extra reads back whole");
    assert!(after[2].is_none(), "the revoked message has none");
    assert_eq!(
        after[0]
            .as_ref()
            .and_then(|x| x.edit.clone())
            .map(|e| e.content),
        Some(Bytes::from_static(b"second"))
    );
    assert_eq!(
        store
            .reads_by(&uid("bob"), &[MessageId(1), MessageId(2)])
            .await
            .unwrap(),
        [None, Some(7)]
    );
    let page = store.extras_between(&g, 1, 3).await.unwrap();
    assert_eq!(ids(&page), [(1, 4), (2, 3)], "by seq");
    let synced = store.extras_after(&g, 0, 10).await.unwrap();
    assert_eq!(ids(&synced), [(2, 3), (1, 4)], "once each, by version");

    // Versions go on from the shared counter, and reads are remembered.
    let again = store
        .record_reads(reads("bob", &g, &[(2, 2)], 8))
        .await
        .unwrap();
    assert!(again.is_empty(), "bob had read it before the restart");
    let carol = store
        .record_reads(reads("carol", &g, &[(2, 2)], 9))
        .await
        .unwrap();
    assert_eq!(ids(&carol), [(2, 5)]);
    assert_eq!(
        carol[0].receipt.map(|r| (r.readers, r.unread())),
        Some((2, 1))
    );
    assert_eq!(
        store.record_edit(edit(3, 3, &g, "late")).await.unwrap(),
        EditRecorded::Revoked
    );
    let revoked = store.record_revocation(revocation(2, 2, &g)).await.unwrap();
    assert_eq!(revoked.revocation().extra_version, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extras_and_reads_survive_reopen_with_flush_durability() {
    survive_reopen(Durability::Flush).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extras_and_reads_survive_reopen_with_background_durability() {
    survive_reopen(Durability::Background {
        flush_every: std::time::Duration::from_secs(60),
    })
    .await;
}

/// A copy of a checked-in directory of an earlier release.
fn copy_of(name: &str) -> tempfile::TempDir {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// The `sled-3` fixture (see its README) revoked message 2 of `g1` at
/// version 1, before extras existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_from_before_extras_has_none_and_its_versions_go_on() {
    let dir = copy_of("sled-3");
    let g1 = Channel::group("g1").unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            store
                .lookup_extras(&[MessageId(1), MessageId(2)])
                .await
                .unwrap(),
            [None, None]
        );
        assert!(store.extras_after(&g1, 0, 10).await.unwrap().is_empty());
        assert!(store.extras_between(&g1, 1, 5).await.unwrap().is_empty());
        let first = edited(store.record_edit(edit(1, 1, &g1, "new")).await.unwrap());
        assert_eq!(first.extra_version, 2, "after the stored revocation's 1");
        assert_eq!(
            store.record_edit(edit(2, 2, &g1, "new")).await.unwrap(),
            EditRecorded::Revoked
        );
    }
    let store = SledStore::open(dir.path()).unwrap();
    let synced = store.extras_after(&g1, 0, 10).await.unwrap();
    assert_eq!(ids(&synced), [(1, 2)]);
    let kept = store.get(MessageId(1)).await.unwrap().unwrap();
    assert_eq!(kept.payload.as_ref(), b"hello", "the original is kept");
}

/// An edit that names another channel than the one its message's extra
/// was stored with is refused, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_naming_another_channel_is_refused() {
    let store = SledStore::temporary().unwrap();
    let g = Channel::group("g-own").unwrap();
    store.append(vec![message(1, &g)]).await.unwrap();
    let first = edited(store.record_edit(edit(1, 1, &g, "v1")).await.unwrap());
    let other = Channel::group("g-other").unwrap();
    let refused = store.record_edit(edit(1, 1, &other, "v2")).await;
    assert!(
        matches!(refused, Err(imcore::Error::Validation(_))),
        "{refused:?}"
    );
    assert_eq!(
        store.lookup_extras(&[MessageId(1)]).await.unwrap(),
        [Some(first)]
    );
    let next = edited(store.record_edit(edit(1, 1, &g, "v2")).await.unwrap());
    assert_eq!(next.extra_version, 2, "the refusal took no version");
    assert!(store.extras_after(&other, 0, 10).await.unwrap().is_empty());
}
