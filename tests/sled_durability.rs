//! The sled backend across restarts, and against damaged or foreign files.

use imcore::store::{
    CommandQueue, ConversationStore, Durability, MessageLog, NewRevocation, Page, RevocationStore,
    SledConfig, SledStore,
};
use imcore::{Channel, ClientMsgNo, Error, Flags, Message, MessageId, Uid};

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

fn message(id: u64, from: &str, channel: &Channel, no: &str) -> Message {
    Message::new(
        MessageId(id),
        ClientMsgNo::new(no).unwrap(),
        uid(from),
        channel.clone(),
        1_700_000_000_000 + id as i64,
        format!("payload {id}").into_bytes(),
    )
}

fn revocation(id: u64, channel: &Channel) -> NewRevocation {
    NewRevocation {
        message_id: MessageId(id),
        channel: channel.clone(),
        message_seq: id,
        revoker: uid("alice"),
        revoked_at_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_reopen_and_numbering_continues() {
    let dir = tempfile::tempdir().unwrap();
    let group = Channel::group("g1").unwrap();
    let person = Channel::person(&uid("alice"), &uid("bob"));
    let (alice, bob) = (uid("alice"), uid("bob"));
    {
        let store = SledStore::open(dir.path()).unwrap();
        let batch = (1..=10)
            .map(|i| message(i, "alice", &group, &format!("g-{i}")))
            .chain((11..=13).map(|i| message(i, "bob", &person, &format!("p-{i}"))))
            .collect();
        store.append(batch).await.unwrap();
        let mut cmd = message(100, "server", &group, "cmd-1");
        cmd.flags = Flags::command();
        store
            .push_command(&cmd, &[alice.clone(), bob.clone()])
            .await
            .unwrap();
        assert!(store.clear_unread(&bob, &group, 4).await.unwrap());
        store
            .record_revocation(revocation(2, &group))
            .await
            .unwrap();
        // Dropped here: the database is closed.
    }
    let store = SledStore::open(dir.path()).unwrap();
    // Conversations are derived again from the reopened heads and positions.
    let before = store
        .conversations_after(&bob, std::slice::from_ref(&group), 0, 10)
        .await
        .unwrap();
    let summary: Vec<_> = before
        .iter()
        .map(|c| (c.channel.clone(), c.last_seq, c.unread))
        .collect();
    assert_eq!(summary, [(person.clone(), 3, 0), (group.clone(), 10, 6)]);
    let seen = before.iter().map(|c| c.version).max().unwrap();
    assert_eq!(store.last_seq(&group).await.unwrap(), 10);
    assert_eq!(store.last_seq(&person).await.unwrap(), 3);
    let history = store.read(&group, Page::forward(1, 100)).await.unwrap();
    assert_eq!(history.len(), 10);
    assert_eq!(history[4].payload.as_ref(), b"payload 5");
    assert_eq!(history[4].message_seq, 5);
    assert_eq!(
        store.get(MessageId(12)).await.unwrap().unwrap().message_seq,
        2
    );

    // Seqs continue, and the dedup index survived.
    let mut resend = message(21, "alice", &group, "g-1");
    resend.payload = message(1, "alice", &group, "g-1").payload;
    let out = store
        .append(vec![message(20, "alice", &group, "g-20"), resend])
        .await
        .unwrap();
    assert_eq!((out[0].message_seq, out[0].duplicate), (11, false));
    assert_eq!(
        (out[1].message_id, out[1].message_seq, out[1].duplicate),
        (MessageId(1), 1, true)
    );

    // Command cursors continue per user; the command dedup survived.
    let pending = store.pending_commands(&alice, 0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].cursor, 1);
    let mut cmd2 = message(101, "server", &group, "cmd-2");
    cmd2.flags = Flags::command();
    store
        .push_command(&cmd2, std::slice::from_ref(&alice))
        .await
        .unwrap();
    let mut resend = message(102, "server", &group, "cmd-1");
    resend.payload = message(100, "server", &group, "cmd-1").payload;
    assert!(
        store
            .push_command(&resend, std::slice::from_ref(&alice))
            .await
            .unwrap()
            .duplicate
    );
    let pending = store.pending_commands(&alice, 0, 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|q| q.cursor).collect::<Vec<_>>(),
        vec![1, 2]
    );

    // Versions continue above everything before the reopen: an incremental
    // sync from the last version seen gets exactly what changed since.
    let changed = store
        .conversations_after(&bob, std::slice::from_ref(&group), seen, 10)
        .await
        .unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].channel, group);
    assert!(changed[0].version > seen);
    assert_eq!((changed[0].last_seq, changed[0].unread), (11, 7));

    // Revocations are found after reopening.
    let found = store
        .lookup_revocations(&[MessageId(1), MessageId(2)])
        .await
        .unwrap();
    assert!(found[0].is_none());
    assert_eq!(found[1].as_ref().map(|r| r.extra_version), Some(1));

    // Revocation versions continue per channel.
    let again = store
        .record_revocation(revocation(3, &group))
        .await
        .unwrap();
    assert_eq!(again.revocation().extra_version, 2);
    let revs = store.revocations_after(&group, 0, 10).await.unwrap();
    assert_eq!(
        revs.iter().map(|r| r.message_id).collect::<Vec<_>>(),
        vec![MessageId(2), MessageId(3)]
    );
}

#[tokio::test]
async fn background_durability_reopens_after_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let config = SledConfig::new(dir.path()).durability(Durability::Background {
        flush_every: std::time::Duration::from_millis(1000),
    });
    let group = Channel::group("g").unwrap();
    {
        let store = SledStore::open_with(config.clone()).unwrap();
        store
            .append(vec![
                message(1, "u", &group, "a"),
                message(2, "u", &group, "b"),
            ])
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    let store = SledStore::open_with(config).unwrap();
    assert_eq!(store.last_seq(&group).await.unwrap(), 2);
}

#[test]
fn a_database_open_elsewhere_is_in_use_and_names_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SledStore::open(dir.path()).unwrap();
    match SledStore::open(dir.path()) {
        Err(e @ Error::InUse { .. }) => {
            let said = e.to_string();
            assert!(said.contains(&dir.path().display().to_string()), "{said}");
        }
        other => panic!("expected InUse, got {other:?}"),
    }
}

#[test]
fn a_path_that_is_a_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(SledStore::open(&file), Err(Error::Storage { .. })));
    assert_eq!(std::fs::read(&file).unwrap(), b"x", "left untouched");
}

#[test]
fn a_directory_of_foreign_files_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = vec![0x5A_u8; 64 * 1024];
    std::fs::write(dir.path().join("db"), &garbage).unwrap();
    assert!(matches!(
        SledStore::open(dir.path()),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(std::fs::read(dir.path().join("db")).unwrap(), garbage);
}

#[test]
fn a_sled_database_written_by_something_else_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.insert(b"someone", b"else").unwrap();
        db.flush().unwrap();
    }
    // Even with our marker file planted, the database itself is checked.
    std::fs::write(dir.path().join("imcore.format"), b"imcore-sled-3\n").unwrap();
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn stores_in_previous_formats_are_refused_and_say_why() {
    for (format, why_contains) in [
        ("imcore-sled-1", "read diffusion"),
        ("imcore-sled-2", "read positions"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        {
            // What the previous version left: its marker and its format key.
            let db = sled::open(dir.path()).unwrap();
            db.insert(b"imcore.format", format.as_bytes()).unwrap();
            db.open_tree("history").unwrap().insert(b"k", b"v").unwrap();
            db.flush().unwrap();
        }
        let marker = format!("{format}\n");
        std::fs::write(dir.path().join("imcore.format"), &marker).unwrap();
        let err = SledStore::open(dir.path()).unwrap_err();
        match &err {
            Error::UnsupportedFormat { found, why } => {
                assert_eq!(found, format);
                assert!(why.contains(why_contains), "{why}");
            }
            other => panic!("expected UnsupportedFormat, got {other}"),
        }
        // Nothing was changed: the old marker is still there.
        let kept = std::fs::read(dir.path().join("imcore.format")).unwrap();
        assert_eq!(kept, marker.as_bytes());
    }
}

#[test]
fn a_marker_of_another_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("imcore.format"), b"imcore-sled-99\n").unwrap();
    assert!(matches!(
        SledStore::open(dir.path()),
        Err(Error::Corrupt { .. })
    ));
}

/// Damage anywhere in the data file gives an error or a consistent earlier
/// state, never a panic: reads agree with the recovered last seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_data_files_give_errors_or_consistent_state_never_panics() {
    let source = tempfile::tempdir().unwrap();
    let group = Channel::group("g").unwrap();
    {
        let store = SledStore::open_with(SledConfig::new(source.path()).durability(
            Durability::Background {
                flush_every: std::time::Duration::from_millis(1000),
            },
        ))
        .unwrap();
        let batch: Vec<_> = (1..=1500)
            .map(|i| message(i, "u", &group, &format!("m{i}")))
            .collect();
        for chunk in batch.chunks(50) {
            store.append(chunk.to_vec()).await.unwrap();
        }
        store.flush().await.unwrap();
    }
    let original = std::fs::read(source.path().join("db")).unwrap();
    let mut outcomes = (0, 0);
    for percent in [0, 1, 10, 30, 50, 70, 90, 99] {
        let dir = tempfile::tempdir().unwrap();
        for name in ["conf", "imcore.format"] {
            std::fs::copy(source.path().join(name), dir.path().join(name)).unwrap();
        }
        let mut bytes = original.clone();
        let at = bytes.len() * percent / 100;
        let end = (at + 512).min(bytes.len());
        bytes[at..end].iter_mut().for_each(|b| *b ^= 0xFF);
        std::fs::write(dir.path().join("db"), &bytes).unwrap();
        match SledStore::open(dir.path()) {
            Err(Error::Corrupt { .. }) | Err(Error::Storage { .. }) => outcomes.0 += 1,
            Err(other) => panic!("unexpected error kind: {other}"),
            Ok(store) => {
                outcomes.1 += 1;
                let last = store.last_seq(&group).await.unwrap();
                let read = store.read(&group, Page::forward(1, 10_000)).await.unwrap();
                assert_eq!(read.len() as u64, last, "damage at {percent}%");
                assert!(read.iter().zip(1..).all(|(m, s)| m.message_seq == s));
            }
        }
    }
    assert_eq!(outcomes.0 + outcomes.1, 8);
}

/// A hide takes a version from the writer's counter, and a store reopened
/// after it (with no write between) never gives that version again: the
/// next append is a change after the hide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hides_version_is_not_given_again_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let group = Channel::group("g").unwrap();
    let alice = uid("alice");
    {
        let store = SledStore::open(dir.path()).unwrap();
        store
            .append(vec![message(1, "bob", &group, "m1")])
            .await
            .unwrap();
    }
    let hidden_at = {
        // The first version after a reopen is past the reservation.
        let store = SledStore::open(dir.path()).unwrap();
        store.hide_conversation(&alice, &group, 1).await.unwrap();
        let c = store.conversation(&alice, &group).await.unwrap().unwrap();
        assert!(c.version <= store.stable_version().await.unwrap());
        c.version
    };
    let store = SledStore::open(dir.path()).unwrap();
    let c = store.conversation(&alice, &group).await.unwrap().unwrap();
    assert_eq!(c.version, hidden_at);
    store
        .append(vec![message(2, "bob", &group, "m2")])
        .await
        .unwrap();
    let after = store
        .conversations_after(&alice, std::slice::from_ref(&group), hidden_at, 10)
        .await
        .unwrap();
    assert_eq!(after.len(), 1, "the append is a change after the hide");
    assert_eq!((after[0].last_seq, after[0].unread), (2, 2));
}
