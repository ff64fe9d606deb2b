//! `PgStore` on a real PostgreSQL server that each test starts itself
//! (initdb into a temporary directory, a free port on 127.0.0.1): the
//! conformance suite, two stores on one database, the schema's version
//! check, and faults (the host killed, the server restarted).
//!
//! Without the PostgreSQL binaries each test says it is skipped and why;
//! with `IMCORE_REQUIRE_SERVERS=1` (CI) a skip is a failure.

#[path = "common/servers.rs"]
mod servers;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imcore::store::{conformance, ConversationStore, MessageLog, Page, PgConfig, PgStore};
use imcore::{Channel, ClientMsgNo, Error, Message, MessageIdGenerator, Uid};
use servers::PgServer;

/// Creates database `name` on `server`; the config to reach it.
async fn database(server: &PgServer, name: &str) -> PgConfig {
    PgConfig::new(server.create_database(name).await)
}

fn message(ids: &MessageIdGenerator, from: &str, channel: &Channel, no: &str) -> Message {
    Message::new(
        ids.next_id(),
        ClientMsgNo::new(no).unwrap(),
        Uid::new(from).unwrap(),
        channel.clone(),
        1_700_000_000_000,
        no.as_bytes().to_vec(),
    )
}

/// Checks that `channel` holds seqs 1..=last with no gap and that every
/// acknowledged `seq -> client_msg_no` is stored at its seq; returns how
/// many are stored.
async fn assert_acked_stored(
    store: &PgStore,
    channel: &Channel,
    acked: &HashMap<u64, String>,
) -> usize {
    let last = store.last_seq(channel).await.unwrap();
    let stored = store
        .read(channel, Page::forward(1, 1_000_000))
        .await
        .unwrap();
    assert_eq!(stored.len() as u64, last, "seqs contiguous from 1");
    for (seq, no) in acked {
        let m = &stored[(*seq - 1) as usize];
        assert_eq!(m.client_msg_no.as_str(), no, "acked seq {seq} is stored");
    }
    stored.len()
}

/// A send that goes through within three tries, each failure retryable
/// (a connection the fault broke may fail one more send).
async fn send_again(
    store: &PgStore,
    ids: &MessageIdGenerator,
    channel: &Channel,
    prefix: &str,
) -> Vec<imcore::store::Appended> {
    for attempt in 0..3 {
        let no = format!("{prefix}-{attempt}");
        match store
            .append(vec![message(ids, "probe", channel, &no)])
            .await
        {
            Ok(out) => return out,
            Err(e) => assert!(e.is_retryable(), "{e}"),
        }
    }
    panic!("sends do not work again");
}

/// The whole suite, each function on a database of its own (the suite's
/// functions name their channels, not their databases).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_conformance_suite() {
    let Some(server) = PgServer::start("passes_the_conformance_suite") else {
        return;
    };
    for (i, (name, check)) in conformance::checks().into_iter().enumerate() {
        let config = database(&server, &format!("suite_{i}")).await;
        let store = PgStore::open(config).await.expect("open");
        let started = Instant::now();
        check(Arc::new(store)).await;
        eprintln!("{name}: ok in {:?}", started.elapsed());
    }
    // And all of them on one database, as a long-lived store sees them.
    let store = PgStore::open(database(&server, "suite_all").await)
        .await
        .expect("open");
    conformance::run_all(Arc::new(store)).await;
}

/// Two stores on one database, as two hub processes would have: 8 writers
/// on each, one channel, and the seqs come out 1..=N with no gap and no
/// repeat, every message stored once at the seq it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_database_give_gap_free_seqs() {
    const WRITERS: usize = 8;
    const EACH: usize = 40;
    let Some(server) = PgServer::start("two_stores_on_one_database_give_gap_free_seqs") else {
        return;
    };
    let config = database(&server, "shared").await;
    let (a, b) = tokio::join!(PgStore::open(config.clone()), PgStore::open(config));
    let stores = [Arc::new(a.expect("open a")), Arc::new(b.expect("open b"))];
    let channel = Channel::group("shared").unwrap();
    let ids = Arc::new(MessageIdGenerator::new(1).unwrap());
    let mut tasks = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for w in 0..WRITERS {
            let (store, ids, channel) = (store.clone(), ids.clone(), channel.clone());
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..EACH {
                    let no = format!("s{s}-w{w}-{i}");
                    let m = message(&ids, &format!("writer{s}{w}"), &channel, &no);
                    let out = store.append(vec![m]).await.expect("append");
                    got.push((out[0].message_seq, no));
                }
                got
            }));
        }
    }
    let mut acked = HashMap::new();
    for task in tasks {
        for (seq, no) in task.await.expect("writer") {
            assert!(acked.insert(seq, no).is_none(), "seq {seq} given twice");
        }
    }
    let n = (2 * WRITERS * EACH) as u64;
    let seqs: HashSet<u64> = acked.keys().copied().collect();
    assert_eq!(seqs, (1..=n).collect::<HashSet<_>>(), "gap-free, from 1");
    for store in &stores {
        assert_eq!(store.last_seq(&channel).await.unwrap(), n);
        let stored = store
            .read(&channel, Page::forward(1, 10_000))
            .await
            .unwrap();
        assert_eq!(stored.len() as u64, n);
        for m in &stored {
            assert_eq!(acked[&m.message_seq], m.client_msg_no.as_str());
        }
    }
}

/// A database whose schema is newer than this crate's, or that holds
/// `imcore_` tables the crate did not create, is refused, and left as it
/// was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_or_foreign_schema_is_refused() {
    let Some(server) = PgServer::start("a_newer_or_foreign_schema_is_refused") else {
        return;
    };
    let config = database(&server, "newer").await;
    let store = PgStore::open(config.clone())
        .await
        .expect("create the schema");
    let ids = MessageIdGenerator::new(1).unwrap();
    let channel = Channel::group("kept").unwrap();
    store
        .append(vec![message(&ids, "u", &channel, "kept-1")])
        .await
        .unwrap();
    drop(store);
    let reopened = PgStore::open(config.clone())
        .await
        .expect("the same version opens");
    assert_eq!(reopened.last_seq(&channel).await.unwrap(), 1);
    drop(reopened);

    sql(
        &config.url,
        "UPDATE imcore_schema SET version = version + 1",
    )
    .await;
    let refused = PgStore::open(config.clone()).await;
    assert!(
        matches!(refused, Err(Error::UnsupportedFormat { .. })),
        "a newer schema: {refused:?}"
    );
    sql(
        &config.url,
        "UPDATE imcore_schema SET version = version - 1",
    )
    .await;
    let back = PgStore::open(config)
        .await
        .expect("unchanged by the refusal");
    assert_eq!(back.last_seq(&channel).await.unwrap(), 1);

    let foreign = database(&server, "alien").await;
    sql(&foreign.url, "CREATE TABLE imcore_messages (x int)").await;
    let refused = PgStore::open(foreign.clone()).await;
    assert!(
        matches!(refused, Err(Error::UnsupportedFormat { .. })),
        "foreign tables: {refused:?}"
    );
    sql(&foreign.url, "INSERT INTO imcore_messages VALUES (1)").await;
}

/// A database of schema version 1 (messages without setting and topic,
/// resends known without their channel) is brought to the current version
/// when a store opens it: its messages read with neither, new ones keep
/// both, and a number is per channel.
#[tokio::test]
async fn a_version_1_schema_is_migrated_and_keeps_its_messages() {
    let Some(server) = PgServer::start("a_version_1_schema_is_migrated_and_keeps_its_messages")
    else {
        return;
    };
    let config = database(&server, "v1").await;
    let ids = MessageIdGenerator::new(1).unwrap();
    let channel = Channel::group("old").unwrap();
    let store = PgStore::open(config.clone()).await.unwrap();
    store
        .append(vec![message(&ids, "u", &channel, "old-1")])
        .await
        .unwrap();
    drop(store);
    // What version 1 had: no setting or topic columns, and resend keys
    // without the channel.
    sql(
        &config.url,
        "ALTER TABLE imcore_messages DROP COLUMN setting, DROP COLUMN topic, \
             DROP CONSTRAINT imcore_messages_resend_key, ADD UNIQUE (from_uid, client_msg_no); \
         ALTER TABLE imcore_commands DROP COLUMN setting, DROP COLUMN topic, \
             DROP CONSTRAINT imcore_commands_resend_key, ADD UNIQUE (from_uid, client_msg_no); \
         DROP TABLE imcore_hidden, imcore_outbox; \
         DROP TABLE imcore_dir_tokens, imcore_dir_channels, imcore_dir_members, \
             imcore_dir_lists, imcore_dir_system, imcore_dir_versions; \
         DROP TABLE imcore_events, imcore_event_records, imcore_open_streams; \
         DROP TABLE imcore_extras, imcore_reads; \
         DROP TABLE imcore_floors, imcore_tombstones, imcore_leases; \
         UPDATE imcore_schema SET version = 1",
    )
    .await;

    let store = PgStore::open(config.clone())
        .await
        .expect("a version-1 schema opens");
    let new = message(&ids, "u", &channel, "new-2")
        .setting(imcore::Setting(imcore::Setting::RECEIPT))
        .topic(Some("t".into()));
    store.append(vec![new]).await.unwrap();
    let elsewhere = Channel::group("elsewhere").unwrap();
    let same_number = store
        .append(vec![message(&ids, "u", &elsewhere, "old-1")])
        .await
        .expect("the same number in another channel");
    assert!(!same_number[0].duplicate);
    drop(store);
    let store = PgStore::open(config).await.expect("and opens again");
    let read = store.read(&channel, Page::forward(1, 10)).await.unwrap();
    let kept: Vec<_> = read
        .iter()
        .map(|m| (m.client_msg_no.as_str(), m.setting.0, m.topic.as_deref()))
        .collect();
    assert_eq!(
        kept,
        [
            ("old-1", 0, None),
            ("new-2", imcore::Setting::RECEIPT, Some("t"))
        ]
    );
}

/// Runs `statement` on the database at `url`.
async fn sql(url: &str, statement: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(connection);
    client.batch_execute(statement).await.expect(statement);
    drop(client);
    driver.await.expect("connection task").expect("connection");
}

/// While the server is down, a send fails within the configured timeout
/// with a retryable error; after a fast shutdown mid-stream and a start,
/// the same store sends again, and everything acknowledged before is
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survives_a_server_restart_and_fails_typed_while_it_is_down() {
    let Some(mut server) = PgServer::start("survives_a_server_restart") else {
        return;
    };
    let mut config = database(&server, "restart").await;
    config.timeout = Duration::from_secs(2);
    let store = Arc::new(PgStore::open(config).await.expect("open"));
    let channel = Channel::group("restart").unwrap();
    let ids = Arc::new(MessageIdGenerator::new(1).unwrap());

    // Four senders stream until told to stop, keeping what was acked.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let mut senders = Vec::new();
    for w in 0..4 {
        let (store, ids, channel, stop, acks_tx) = (
            store.clone(),
            ids.clone(),
            channel.clone(),
            stop.clone(),
            acks_tx.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut failures = 0;
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                let no = format!("w{w}-{i}");
                match store
                    .append(vec![message(&ids, "sender", &channel, &no)])
                    .await
                {
                    Ok(out) => acks_tx.send((out[0].message_seq, no)).unwrap(),
                    Err(e) => {
                        assert!(e.is_retryable(), "a typed, retryable error: {e}");
                        failures += 1;
                    }
                }
            }
            failures
        }));
    }
    drop(acks_tx);
    let mut acked = HashMap::new();
    while acked.len() < 200 {
        let (seq, no) = acks.recv().await.expect("acks");
        acked.insert(seq, no);
    }
    let server = tokio::task::spawn_blocking(move || {
        server.stop_fast();
        server
    })
    .await
    .unwrap();

    let started = Instant::now();
    let down = store
        .append(vec![message(&ids, "probe", &channel, "while-down")])
        .await;
    let took = started.elapsed();
    match down {
        Err(e) => assert!(e.is_retryable(), "retryable while down: {e}"),
        Ok(out) => panic!("stored while the server is down: {out:?}"),
    }
    assert!(
        took < Duration::from_secs(4),
        "failed after {took:?}, timeout 2 s"
    );

    let mut server = server;
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();

    // The same store, no reopen: sends go through again.
    send_again(&store, &ids, &channel, "after-restart").await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let mut failures = 0;
    for sender in senders {
        failures += sender.await.expect("sender");
    }
    while let Some((seq, no)) = acks.recv().await {
        assert!(acked.insert(seq, no).is_none(), "seq given twice");
    }
    assert_acked_stored(&store, &channel, &acked).await;
    let last = store.last_seq(&channel).await.unwrap();
    let reader = Uid::new("reader").unwrap();
    let c = store
        .conversation(&reader, &channel)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.last_seq, last);
    eprintln!(
        "{} acked across the restart, {failures} retryable failures while down",
        acked.len()
    );
    drop(server);
}

/// A server that hangs (every process stopped, connections open, nothing
/// answering) makes a send fail with a retryable error within the
/// configured timeout rather than wait for ever; once it answers again,
/// the same store sends again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_fails_sends_within_the_timeout() {
    let Some(server) = PgServer::start("a_hung_server_fails_sends_within_the_timeout") else {
        return;
    };
    let mut config = database(&server, "hung").await;
    config.timeout = Duration::from_secs(1);
    let store = PgStore::open(config).await.expect("open");
    let channel = Channel::group("hung").unwrap();
    let ids = MessageIdGenerator::new(1).unwrap();
    store
        .append(vec![message(&ids, "u", &channel, "before")])
        .await
        .expect("a send before the hang");

    server.pause();
    let started = Instant::now();
    let hung = store
        .append(vec![message(&ids, "u", &channel, "during")])
        .await;
    let took = started.elapsed();
    let read = store.last_seq(&channel).await;
    server.resume();
    match hung {
        Err(e) => assert!(e.is_retryable(), "retryable: {e}"),
        Ok(out) => panic!("acknowledged by a stopped server: {out:?}"),
    }
    assert!(read.is_err_and(|e| e.is_retryable()), "reads time out too");
    assert!(
        took >= Duration::from_secs(1),
        "it waited for the timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "and not much longer: {took:?}"
    );

    // Answering again: the same store sends (the hung send, whose commit
    // never ran, is not stored; a resend of it is a new message).
    let sent = send_again(&store, &ids, &channel, "after").await;
    let stored = store.read(&channel, Page::forward(1, 10)).await.unwrap();
    assert_eq!(stored.last().unwrap().message_seq, sent[0].message_seq);
    assert!(stored.iter().all(|m| m.client_msg_no.as_str() != "during"));
}

const CHILD_URL: &str = "IMCORE_PG_CHILD_URL";
const KILL_TEST: &str = "acknowledged_sends_survive_sigkill_of_the_host";

/// The child: 8 writers append until killed, printing every acknowledged
/// `seq client_msg_no`.
async fn child(url: String) {
    let store = Arc::new(
        PgStore::open(PgConfig::new(url))
            .await
            .expect("open in child"),
    );
    let ids = Arc::new(MessageIdGenerator::new(9).unwrap());
    let channel = Channel::group("killed").unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for w in 0..8 {
        let (store, ids, channel, tx) = (store.clone(), ids.clone(), channel.clone(), tx.clone());
        tokio::spawn(async move {
            for i in 0..100_000 {
                let no = format!("k{w}-{i}");
                let out = store
                    .append(vec![message(&ids, "killed", &channel, &no)])
                    .await
                    .expect("append");
                if tx.send(format!("{} {no}", out[0].message_seq)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut stdout = std::io::stdout().lock();
    while let Some(line) = rx.recv().await {
        writeln!(stdout, "{line}").unwrap();
        stdout.flush().unwrap();
    }
}

#[test]
fn acknowledged_sends_survive_sigkill_of_the_host() {
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    if let Ok(url) = std::env::var(CHILD_URL) {
        rt().block_on(child(url));
        return;
    }
    let Some(server) = PgServer::start(KILL_TEST) else {
        return;
    };
    let config = rt().block_on(database(&server, "killed"));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([KILL_TEST, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_URL, &config.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut acked: HashMap<u64, String> = HashMap::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let Some((seq, no)) = line.split_once(' ') else {
            continue;
        };
        let Ok(seq) = seq.parse::<u64>() else {
            continue; // the test harness's own lines
        };
        assert!(
            acked.insert(seq, no.to_string()).is_none(),
            "seq {seq} twice"
        );
        if acked.len() == 300 {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    for line in lines.map_while(Result::ok) {
        if let Some((seq, no)) = line.split_once(' ') {
            if let Ok(seq) = seq.parse::<u64>() {
                acked.insert(seq, no.to_string());
            }
        }
    }
    assert!(!child.wait().unwrap().success(), "the child was killed");
    assert!(acked.len() >= 300, "{} acks", acked.len());
    rt().block_on(async {
        let store = PgStore::open(config).await.expect("reopen");
        let channel = Channel::group("killed").unwrap();
        let stored = assert_acked_stored(&store, &channel, &acked).await;
        eprintln!(
            "{} acknowledged, {stored} stored after SIGKILL",
            acked.len()
        );
    });
    drop(server);
}
