//! Directories written by earlier releases of the sled backend open with
//! this one, whole, and keep opening: each fixture under `tests/fixtures/`
//! (written by the release its README names) is copied, opened, checked,
//! written to, and opened again.

use std::path::Path;

use imcore::store::{
    CommandQueue, ConversationStore, MessageLog, Outbox, Page, RevocationStore, SledStore,
};
use imcore::{Channel, ClientMsgNo, Error, Flags, Message, MessageId, Setting, Uid};

/// A checked-in directory and what its release could store.
struct Fixture {
    /// Its directory under `tests/fixtures/`.
    name: &'static str,
    /// Its marker as written.
    format: &'static str,
    /// Messages kept a setting and a topic (record format 3).
    setting_and_topic: bool,
    /// Hidden (deleted) conversations were stored.
    hidden: bool,
    /// The webhook outbox was stored.
    outbox: bool,
}

/// imcore at 5c5681e^: directory format 3, history records of format 2.
const FORMAT_3_RECORDS_2: Fixture = Fixture {
    name: "sled-3-records-2",
    format: "imcore-sled-3",
    setting_and_topic: false,
    hidden: false,
    outbox: false,
};

/// imcore at 4d38ed0^, the last release of directory format 3.
const FORMAT_3: Fixture = Fixture {
    name: "sled-3",
    format: "imcore-sled-3",
    setting_and_topic: true,
    hidden: true,
    outbox: true,
};

/// imcore at 568c226, the last release of directory format 4 (no
/// `changed` tree); it also holds a channel whose every message retention
/// deleted, and read positions a clear and a hide moved past their heads.
const FORMAT_4: Fixture = Fixture {
    name: "sled-4",
    format: "imcore-sled-4",
    setting_and_topic: true,
    hidden: true,
    outbox: true,
};

/// The current directory format's marker.
const CURRENT: &str = "imcore-sled-5\n";

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

fn g1() -> Channel {
    Channel::group("g1").unwrap()
}

fn dm() -> Channel {
    Channel::person(&uid("alice"), &uid("bob"))
}

fn message(id: u64, from: &str, channel: &Channel, no: &str, payload: &str) -> Message {
    Message::new(
        MessageId(id),
        ClientMsgNo::new(no).unwrap(),
        uid(from),
        channel.clone(),
        1_700_000_000_000 + id as i64 * 1000,
        payload.as_bytes().to_vec(),
    )
}

/// A copy of the fixture to open (opening migrates it in place).
fn copy_of(fixture: &Fixture) -> tempfile::TempDir {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture.name);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn marker(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("imcore.format")).unwrap()
}

fn ids(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.message_id.0).collect()
}

async fn unread(store: &SledStore, user: &str, channel: &Channel) -> u64 {
    let c = store.conversation(&uid(user), channel).await.unwrap();
    c.expect("the channel has messages").unread
}

/// Everything the generator wrote (see the fixtures' README) reads back,
/// and resends are still recognised.
async fn check_written(store: &SledStore, fixture: &Fixture) {
    let (g1, dm) = (g1(), dm());
    let log = store.read(&g1, Page::forward(1, 5)).await.unwrap();
    assert_eq!(ids(&log), [1, 2, 3, 4, 7]);
    assert_eq!(
        log.iter().map(|m| m.message_seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(log[0].payload.as_ref(), b"hello");
    assert_eq!(log[1].from_uid, uid("bob"));
    assert!(!log[2].flags.red_dot && log[3].flags.red_dot);
    let (setting, topic) = match fixture.setting_and_topic {
        // Written as 0x88 (receipt, topic): the topic bit describes a
        // packet, and is not kept.
        true => (Setting(0x88).stored(), Some("news".to_owned())),
        false => (Setting::default(), None),
    };
    assert_eq!((log[3].setting, log[3].topic.clone()), (setting, topic));
    let log = store.read(&dm, Page::forward(1, 2)).await.unwrap();
    assert_eq!(ids(&log), [5, 6]);
    assert_eq!(
        store.get(MessageId(4)).await.unwrap().unwrap().message_seq,
        4
    );
    let no = ClientMsgNo::new("a-dm-1").unwrap();
    let found = store.get_by_client_msg_no(&uid("alice"), &dm, &no).await;
    assert_eq!(found.unwrap().unwrap().message_id, MessageId(5));

    // Read positions, heads and red dots.
    assert_eq!(unread(store, "dave", &g1).await, 2, "cleared up to 2");
    assert_eq!(unread(store, "bob", &g1).await, 2, "sent 2");
    assert_eq!(unread(store, "carol", &g1).await, 1, "sent 4");
    assert_eq!(unread(store, "alice", &g1).await, 0, "sent 5");
    assert_eq!(unread(store, "alice", &dm).await, 1);
    assert_eq!(unread(store, "bob", &dm).await, 0);

    let revoked = store.revocations_after(&g1, 0, 10).await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        (revoked[0].message_id, revoked[0].message_seq),
        (MessageId(2), 2)
    );
    assert_eq!(
        (revoked[0].revoker.clone(), revoked[0].extra_version),
        (uid("bob"), 1)
    );

    let pending = store.pending_commands(&uid("bob"), 0, 10).await.unwrap();
    let commands: Vec<(u64, u64)> = pending
        .iter()
        .map(|c| (c.cursor, c.message.message_id.0))
        .collect();
    assert_eq!(commands, [(1, 100), (2, 101)]);
    assert_eq!(pending[1].message.payload.as_ref(), b"{\"cmd\":\"two\"}");
    assert!(store
        .pending_commands(&uid("carol"), 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.is_command(MessageId(100)).await.unwrap());

    if fixture.hidden {
        let hidden = store.hidden_conversations(&uid("bob")).await.unwrap();
        assert_eq!(hidden, [(dm.clone(), 1)]);
    }
    if fixture.outbox {
        let entries = store.outbox(10).await.unwrap();
        let pending: Vec<u64> = entries.iter().map(|(_, m)| m.message_id.0).collect();
        assert_eq!(pending, [3, 4, 5, 6, 7], "1 and 2 were sent");
    }

    // Resends, by sender, channel and number.
    let again = store
        .append(vec![message(200, "alice", &g1, "a-1", "hello")])
        .await
        .unwrap();
    assert!(again[0].duplicate);
    assert_eq!(
        (again[0].message_id, again[0].message_seq),
        (MessageId(1), 1)
    );
    let changed = store
        .append(vec![message(201, "alice", &g1, "a-1", "changed")])
        .await;
    assert!(
        matches!(changed, Err(Error::Conflict { .. })),
        "{changed:?}"
    );
    let again = store
        .append(vec![message(202, "alice", &dm, "a-dm-1", "psst")])
        .await
        .unwrap();
    assert!(again[0].duplicate);
    assert_eq!(again[0].message_id, MessageId(5));
    let command = message(203, "alice", &g1, "cmd-1", "{\"cmd\":\"one\"}").flags(Flags::command());
    let pushed = store
        .push_command(&command, &[uid("bob"), uid("carol")])
        .await
        .unwrap();
    assert!(pushed.duplicate);
    assert_eq!(pushed.message_id, MessageId(100));
}

/// Opens a copy of `fixture`, checks it, appends, and opens it again: the
/// marker says the current format after the first open, and the second
/// open sees the same data and the new message.
async fn opens_migrated_twice(fixture: &Fixture) {
    let dir = copy_of(fixture);
    assert_eq!(
        marker(dir.path()),
        format!("{}\n", fixture.format),
        "the fixture as written"
    );
    let old_versions;
    {
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(marker(dir.path()), CURRENT);
        check_written(&store, fixture).await;
        incremental_syncs_find_everything(&store).await;
        old_versions = newest_version(&store).await;
        let mut quiet = message(300, "erin", &g1(), "e-1", "new");
        quiet.flags.red_dot = false;
        let out = store.append(vec![quiet]).await.unwrap();
        assert_eq!(out[0].message_seq, 6, "seqs go on");
        // Format 3 took a number for a resend in any channel; format 4
        // only in the channel it was sent to.
        let mut elsewhere = message(301, "bob", &dm(), "b-1", "hi alice");
        elsewhere.flags.red_dot = false;
        let out = store.append(vec![elsewhere]).await.unwrap();
        assert!(!out[0].duplicate);
        assert_eq!(out[0].message_seq, 3);
        store.flush().await.unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(marker(dir.path()), CURRENT);
    check_written(&store, fixture).await;
    assert_eq!(store.last_seq(&g1()).await.unwrap(), 6);
    let last = store.read(&g1(), Page::forward(6, 1)).await.unwrap();
    assert_eq!(ids(&last), [300]);
    let last = store.read(&dm(), Page::forward(3, 1)).await.unwrap();
    assert_eq!(ids(&last), [301]);
    // Versions go on from the old counter: both new heads come after it.
    let alices = store
        .conversations_after(&uid("alice"), &[g1()], old_versions, 10)
        .await
        .unwrap();
    let heads: Vec<(Channel, u64)> = alices
        .iter()
        .map(|c| (c.channel.clone(), c.last_seq))
        .collect();
    assert_eq!(heads, [(g1(), 6), (dm(), 3)]);
    incremental_syncs_find_everything(&store).await;
}

/// From every version, what `changed_after` finds (the user's channels
/// among it: both groups, and the person channels the user is a party
/// to, as the hub keeps them) gives each user the same conversations as looking
/// at each of their channels: the index a migration built, and the one
/// kept since.
async fn incremental_syncs_find_everything(store: &SledStore) {
    let groups = [g1(), Channel::group("g2").unwrap()];
    let end = store.stable_version().await.unwrap();
    for user in ["alice", "bob", "carol", "dave"].map(uid) {
        for version in 0..=end {
            let everything = store
                .conversations_after(&user, &groups, version, 100)
                .await
                .unwrap();
            let changed = store
                .changed_after(&user, version, usize::MAX)
                .await
                .unwrap()
                .expect("sled keeps the index");
            let mine: Vec<Channel> = changed
                .channels
                .into_iter()
                .filter(|c| {
                    let party = c
                        .person_parties()
                        .is_some_and(|(a, b)| a == user || b == user);
                    groups.contains(c) || party
                })
                .collect();
            let found = store
                .conversations_among(&user, &mine, version, changed.ceiling, 100)
                .await
                .unwrap();
            assert_eq!(found, everything, "{user:?} from version {version}");
        }
    }
}

/// The highest version of alice's conversations.
async fn newest_version(store: &SledStore) -> u64 {
    let alices = store
        .conversations_after(&uid("alice"), &[g1()], 0, 10)
        .await
        .unwrap();
    assert_eq!(alices.len(), 2, "g1 and the person channel");
    alices.iter().map(|c| c.version).max().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_3_directory_opens_migrated_and_again() {
    opens_migrated_twice(&FORMAT_3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_4_directory_opens_migrated_and_again() {
    opens_migrated_twice(&FORMAT_4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_3_directory_with_format_2_records_opens_migrated_and_again() {
    opens_migrated_twice(&FORMAT_3_RECORDS_2).await;
}

/// A crash after the database was migrated but before the marker was
/// rewritten leaves the old marker over a current database: it opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_marker_over_a_migrated_database_opens() {
    let dir = copy_of(&FORMAT_3);
    drop(SledStore::open(dir.path()).unwrap());
    std::fs::write(dir.path().join("imcore.format"), b"imcore-sled-3\n").unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(marker(dir.path()), CURRENT);
    check_written(&store, &FORMAT_3).await;
}
