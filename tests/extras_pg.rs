//! Edits and read receipts on PostgreSQL, beyond the conformance suite:
//! a version-6 database gets the tables; two stores on one database (two
//! hub processes) order edits, reads and revocations of a channel with
//! one counter; a reader's reads of many messages, in any order and at
//! once, count each message once; an edit naming another channel is
//! refused.
//!
//! Each test starts a throwaway server (see `common/servers.rs`).

#[path = "common/servers.rs"]
mod servers;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use imcore::store::{
    EditRecorded, ExtraStore, MessageExtra, MessageLog, NewEdit, NewReads, NewRevocation, PgConfig,
    PgStore, RevocationStore,
};
use imcore::{Channel, ClientMsgNo, Error, Message, MessageId, MessageIdGenerator, Uid};
use servers::PgServer;

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

/// Sends `n` messages to `channel`; returned with their seqs.
async fn sent(
    store: &PgStore,
    ids: &MessageIdGenerator,
    channel: &Channel,
    n: usize,
) -> Vec<Message> {
    let batch: Vec<Message> = (0..n)
        .map(|i| {
            Message::new(
                ids.next_id(),
                ClientMsgNo::new(format!("{}-{i}", channel.id)).unwrap(),
                uid("alice"),
                channel.clone(),
                1_700_000_000_000,
                b"original".to_vec(),
            )
        })
        .collect();
    let appended = store.append(batch.clone()).await.unwrap();
    batch
        .into_iter()
        .zip(appended)
        .map(|(mut m, a)| {
            m.message_seq = a.message_seq;
            m
        })
        .collect()
}

fn edit(m: &Message, content: &str) -> NewEdit {
    NewEdit {
        message_id: m.message_id,
        channel: m.channel.clone(),
        message_seq: m.message_seq,
        editor: m.from_uid.clone(),
        content: Bytes::copy_from_slice(content.as_bytes()),
        edited_at_ms: 1_700_000_100_000,
    }
}

fn reads(reader: &str, messages: &[&Message]) -> NewReads {
    NewReads {
        reader: uid(reader),
        channel: messages[0].channel.clone(),
        messages: messages
            .iter()
            .map(|m| (m.message_id, m.message_seq))
            .collect(),
        read_at_ms: 1_700_000_200_000,
    }
}

fn revocation(m: &Message) -> NewRevocation {
    NewRevocation {
        message_id: m.message_id,
        channel: m.channel.clone(),
        message_seq: m.message_seq,
        revoker: m.from_uid.clone(),
        revoked_at_ms: 1_700_000_300_000,
    }
}

fn edited(r: EditRecorded) -> MessageExtra {
    match r {
        EditRecorded::Edited(x) => x,
        other => panic!("expected a recorded edit, got {other:?}"),
    }
}

async fn sql(url: &str, statement: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(connection);
    client.batch_execute(statement).await.expect(statement);
    drop(client);
    driver.await.expect("connection task").expect("connection");
}

/// A database of schema version 6 (before extras) gets the tables when a
/// store opens it; its revocations' versions go on into edits and reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_6_schema_gets_the_extras_tables() {
    let Some(server) = PgServer::start("a_version_6_schema_gets_the_extras_tables") else {
        return;
    };
    let url = server.create_database("extras_v6").await;
    let ids = MessageIdGenerator::new(1).unwrap();
    let g = Channel::group("g-v6").unwrap();
    let store = PgStore::open(PgConfig::new(url.clone())).await.unwrap();
    let m = sent(&store, &ids, &g, 3).await;
    store.record_revocation(revocation(&m[2])).await.unwrap();
    drop(store);
    sql(
        &url,
        "DROP TABLE imcore_extras, imcore_reads; \
         DROP TABLE imcore_floors, imcore_tombstones, imcore_leases; \
         UPDATE imcore_schema SET version = 6",
    )
    .await;

    let store = PgStore::open(PgConfig::new(url.clone()))
        .await
        .expect("a version-6 schema opens");
    let first = edited(store.record_edit(edit(&m[0], "new")).await.unwrap());
    assert_eq!(first.extra_version, 2, "after the revocation's 1");
    assert_eq!(
        store.record_edit(edit(&m[2], "late")).await.unwrap(),
        EditRecorded::Revoked
    );
    store
        .open_receipt(m[1].message_id, &g, m[1].message_seq, 2)
        .await
        .unwrap();
    let read = store.record_reads(reads("bob", &[&m[1]])).await.unwrap();
    assert_eq!(read[0].extra_version, 3);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let version: i32 = client
        .query_one("SELECT version FROM imcore_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 11);
}

/// Two stores on one database, as two hub processes: each edits, reads
/// and revokes messages of one channel at once. Every change has its own
/// version, 1 to N with no gap, and no edit is ordered after its
/// message's revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_order_a_channels_changes_with_one_counter() {
    let Some(server) = PgServer::start("two_stores_order_a_channels_changes_with_one_counter")
    else {
        return;
    };
    let url = server.create_database("extras_two").await;
    let stores = [
        Arc::new(PgStore::open(PgConfig::new(url.clone())).await.unwrap()),
        Arc::new(PgStore::open(PgConfig::new(url.clone())).await.unwrap()),
    ];
    let ids = MessageIdGenerator::new(1).unwrap();
    let g = Channel::group("g-two").unwrap();
    let m = sent(&stores[0], &ids, &g, 12).await;
    for x in &m {
        stores[0]
            .open_receipt(x.message_id, &g, x.message_seq, 4)
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for (i, x) in m.iter().enumerate() {
        for s in 0..2 {
            let (store, msg) = (stores[s].clone(), x.clone());
            // Each message: an edit and a read from each store, and a
            // revocation of every third from the other store.
            tasks.push(tokio::spawn(async move {
                let mut versions = Vec::new();
                let mut edit_at = None;
                if let EditRecorded::Edited(e) = store
                    .record_edit(edit(&msg, &format!("e{s}")))
                    .await
                    .unwrap()
                {
                    versions.push(e.extra_version);
                    edit_at = Some(e.extra_version);
                }
                for r in store
                    .record_reads(reads(&format!("r{s}"), &[&msg]))
                    .await
                    .unwrap()
                {
                    versions.push(r.extra_version);
                }
                (msg.message_id, versions, edit_at, None::<u64>)
            }));
            if i % 3 == 0 && s == 0 {
                let (store, x) = (stores[1].clone(), x.clone());
                tasks.push(tokio::spawn(async move {
                    let r = store.record_revocation(revocation(&x)).await.unwrap();
                    let at = r.revocation().extra_version;
                    (x.message_id, vec![at], None, Some(at))
                }));
            }
        }
    }
    let mut all = HashSet::new();
    let mut edits: Vec<(MessageId, u64)> = Vec::new();
    let mut revoked: Vec<(MessageId, u64)> = Vec::new();
    for t in tasks {
        let (id, versions, edit_at, revoked_at) = t.await.unwrap();
        for v in versions {
            assert!(all.insert(v), "version {v} given twice");
        }
        edits.extend(edit_at.map(|v| (id, v)));
        revoked.extend(revoked_at.map(|v| (id, v)));
    }
    let max = *all.iter().max().unwrap();
    assert_eq!(all.len() as u64, max, "versions 1..={max} with no gap");
    for (id, at) in &revoked {
        for (_, v) in edits.iter().filter(|(e, _)| e == id) {
            assert!(v < at, "an edit at {v} after the revocation at {at}");
        }
    }
    // Each reader counted once per message, whichever store recorded it.
    let now = stores[1]
        .lookup_extras(&m.iter().map(|x| x.message_id).collect::<Vec<_>>())
        .await
        .unwrap();
    for x in now {
        assert_eq!(x.unwrap().receipt.map(|r| r.readers), Some(2));
    }
}

/// A reader's reads of many messages: each counted once, with versions in
/// the order asked; the same reader reading them in opposite orders at
/// once (which would deadlock if the rows were locked in the order asked)
/// counts each once too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_reads_at_once_count_each_message_once() {
    let Some(server) = PgServer::start("many_reads_at_once_count_each_message_once") else {
        return;
    };
    let url = server.create_database("extras_reads").await;
    let store = Arc::new(PgStore::open(PgConfig::new(url)).await.unwrap());
    let ids = MessageIdGenerator::new(1).unwrap();
    let g = Channel::group("g-reads").unwrap();
    let m = sent(&store, &ids, &g, 200).await;
    for x in &m {
        store
            .open_receipt(x.message_id, &g, x.message_seq, 10)
            .await
            .unwrap();
    }
    // Asked out of order and with repeats.
    let mut asked: Vec<&Message> = m[..50].iter().rev().collect();
    asked.extend(&m[..10]);
    let first = store.record_reads(reads("u0", &asked)).await.unwrap();
    let got: Vec<(MessageId, u64)> = first
        .iter()
        .map(|x| (x.message_id, x.extra_version))
        .collect();
    let want: Vec<(MessageId, u64)> = m[..50]
        .iter()
        .rev()
        .zip(1..)
        .map(|(x, v)| (x.message_id, v))
        .collect();
    assert_eq!(got, want, "each once, versions in the order asked");

    let mut tasks = Vec::new();
    for reader in 1..=4 {
        for reverse in [false, true] {
            let (store, m) = (store.clone(), m.clone());
            tasks.push(tokio::spawn(async move {
                let mut all: Vec<&Message> = m.iter().collect();
                if reverse {
                    all.reverse();
                }
                store
                    .record_reads(reads(&format!("u{reader}"), &all))
                    .await
                    .unwrap()
                    .len()
            }));
        }
    }
    let mut counted = 0;
    for t in tasks {
        counted += t.await.unwrap();
    }
    assert_eq!(counted, 4 * 200, "each reader counted once per message");
    let now = store
        .lookup_extras(&m.iter().map(|x| x.message_id).collect::<Vec<_>>())
        .await
        .unwrap();
    let readers: Vec<u64> = now
        .iter()
        .map(|x| x.as_ref().unwrap().receipt.unwrap().readers)
        .collect();
    let mut want = vec![5; 50];
    want.extend(vec![4; 150]);
    assert_eq!(readers, want);
    let latest = store.extras_after(&g, 0, 1000).await.unwrap();
    assert_eq!(latest.len(), 200, "each message once, at its last version");
    assert_eq!(latest.last().unwrap().extra_version, 50 + 4 * 200);
}

/// An edit that names another channel than the one its message's extra
/// was stored with is refused, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_naming_another_channel_is_refused() {
    let Some(server) = PgServer::start("an_edit_naming_another_channel_is_refused") else {
        return;
    };
    let url = server.create_database("extras_channel").await;
    let store = PgStore::open(PgConfig::new(url)).await.unwrap();
    let ids = MessageIdGenerator::new(1).unwrap();
    let g = Channel::group("g-own").unwrap();
    let m = sent(&store, &ids, &g, 1).await.remove(0);
    let first = edited(store.record_edit(edit(&m, "v1")).await.unwrap());
    let mut wrong = edit(&m, "v2");
    wrong.channel = Channel::group("g-other").unwrap();
    let refused = store.record_edit(wrong).await;
    assert!(matches!(refused, Err(Error::Validation(_))), "{refused:?}");
    let now = store.lookup_extras(&[m.message_id]).await.unwrap();
    assert_eq!(now, [Some(first)]);
    let next = edited(store.record_edit(edit(&m, "v2")).await.unwrap());
    assert_eq!(next.extra_version, 2, "the refusal took no version");
}
