//! `PgStore`'s writer decides a whole batch of `append` calls in one
//! server-side call. Calls that depend on each other (a resend racing its
//! first send, two messages with one id, a resend with another payload)
//! are held behind the counter row's lock until they all wait in one
//! batch, then let go: each gets what it would get alone, in some order,
//! and every channel stays gap-free. A batch sent in one statement and
//! held past its caller's timeout stores nothing, even once let go.
//!
//! Without the PostgreSQL binaries the test says it is skipped and why;
//! with `IMCORE_REQUIRE_SERVERS=1` (CI) a skip is a failure.

#[path = "common/pg_locks.rs"]
mod pg_locks;
#[path = "common/servers.rs"]
mod servers;

use futures_util::future::join_all;
use imcore::store::{Appended, MessageLog, Page, PgConfig, PgStore};
use imcore::{Channel, ClientMsgNo, Error, Message, MessageId, Uid};
use pg_locks::{connect, until_a_backend_waits, until_no_backend_runs};
use servers::PgServer;

fn message(id: u64, from: &str, channel: &Channel, no: &str, payload: &str) -> Message {
    Message::new(
        MessageId(id),
        ClientMsgNo::new(no).unwrap(),
        Uid::new(from).unwrap(),
        channel.clone(),
        1_700_000_000_000,
        payload.as_bytes().to_vec(),
    )
}

/// What one call got.
type Answer = imcore::Result<Vec<Appended>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependent_calls_in_one_batch_get_what_they_would_get_alone() {
    let Some(server) =
        PgServer::start("dependent_calls_in_one_batch_get_what_they_would_get_alone")
    else {
        return;
    };
    let url = server.url("postgres");
    let store = PgStore::open(PgConfig::new(url.clone()))
        .await
        .expect("open");
    let channel = |k: u64| Channel::group(format!("g{k}")).unwrap();
    // A stored message, resent below in a call with a new one.
    store
        .append(vec![message(1, "u", &channel(0), "old", "p")])
        .await
        .unwrap();

    let holder = connect(&url).await;
    holder
        .batch_execute("BEGIN; SELECT version FROM imcore_counter WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    let mut calls: Vec<Vec<Message>> = Vec::new();
    for k in 0..10u64 {
        let (c, id) = (channel(k), 1000 * (k + 1));
        // 0-2: one message three times (a resend racing its first send).
        for i in 0..3 {
            calls.push(vec![message(id + i, "u", &c, "same", "p")]);
        }
        // 3-4: one id under two numbers.
        calls.push(vec![message(id + 10, "u", &c, "id-a", "p")]);
        calls.push(vec![message(id + 10, "u", &c, "id-b", "p")]);
        // 5-6: one number with two payloads.
        calls.push(vec![message(id + 20, "u", &c, "two", "p")]);
        calls.push(vec![message(id + 21, "u", &c, "two", "q")]);
        // 7: a call that repeats its own message.
        let own = message(id + 30, "u", &c, "own", "p");
        calls.push(vec![own.clone(), own]);
        // 8: a call with one id twice: refused whole.
        calls.push(vec![
            message(id + 40, "u", &c, "twice-a", "p"),
            message(id + 40, "u", &c, "twice-b", "p"),
        ]);
        // 9: the stored message resent beside a new one.
        calls.push(vec![
            message(id + 50, "u", &channel(0), "old", "p"),
            message(id + 51, "u", &c, "new", "p"),
        ]);
    }
    let sent = calls.clone();
    let store = std::sync::Arc::new(store);
    let all = {
        let store = store.clone();
        tokio::spawn(join_all(
            calls
                .into_iter()
                .map(move |call| {
                    let store = store.clone();
                    async move { store.append(call).await }
                })
                .collect::<Vec<_>>(),
        ))
    };
    until_a_backend_waits(&holder, "the writer").await;
    holder.batch_execute("COMMIT").await.unwrap();
    let answers: Vec<Answer> = all.await.unwrap();

    for k in 0..10 {
        let got = &answers[10 * k..10 * (k + 1)];
        let ok = |i: usize| got[i].as_ref().unwrap_or_else(|e| panic!("call {i}: {e}"));
        // One of three stored, the others its duplicates.
        let same: Vec<&Appended> = (0..3).map(|i| &ok(i)[0]).collect();
        assert_eq!(same.iter().filter(|a| !a.duplicate).count(), 1, "{same:?}");
        assert!(same
            .iter()
            .all(|a| (a.message_id, a.message_seq) == (same[0].message_id, same[0].message_seq)));
        // One id: one stored, the other refused for its id.
        let id_refused = (3..5).filter(|&i| got[i].is_err()).collect::<Vec<_>>();
        assert_eq!(id_refused.len(), 1, "{:?}", &got[3..5]);
        let refusal = got[id_refused[0]].as_ref().unwrap_err();
        assert!(refusal.to_string().contains("already stored"), "{refusal}");
        // One number, two payloads: one stored, the other a conflict.
        let conflicts = (5..7)
            .filter(|&i| matches!(got[i], Err(Error::Conflict { .. })))
            .count();
        assert_eq!(conflicts, 1, "{:?}", &got[5..7]);
        // A call's own repeat: its duplicate.
        let own = ok(7);
        assert!(!own[0].duplicate && own[1].duplicate, "{own:?}");
        assert_eq!(own[0].message_seq, own[1].message_seq);
        // One id twice in a call: nothing of it stored.
        assert!(got[8].is_err(), "{:?}", got[8]);
        // The old message's duplicate, and the new one stored.
        let mixed = ok(9);
        assert!(mixed[0].duplicate && !mixed[1].duplicate, "{mixed:?}");
        assert_eq!(
            (mixed[0].message_id, mixed[0].message_seq),
            (MessageId(1), 1)
        );
    }

    // Every channel gap-free, holding exactly what was acknowledged as
    // stored, at the seqs answered.
    for k in 0..10u64 {
        let stored = store
            .read(&channel(k), Page::forward(1, 100))
            .await
            .unwrap();
        let seqs: Vec<u64> = stored.iter().map(|m| m.message_seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        let mut acked: Vec<(u64, MessageId)> = sent
            .iter()
            .zip(&answers)
            .filter_map(|(call, answer)| Some(call.iter().zip(answer.as_ref().ok()?)))
            .flatten()
            .filter(|(m, a)| m.channel == channel(k) && !a.duplicate)
            .map(|(_, a)| (a.message_seq, a.message_id))
            .collect();
        if k == 0 {
            acked.push((1, MessageId(1)));
        }
        acked.sort();
        let found: Vec<(u64, MessageId)> = stored
            .iter()
            .map(|m| (m.message_seq, m.message_id))
            .collect();
        assert_eq!(found, acked, "channel g{k}");
    }
    // The twice-refused call stored neither message.
    let twice = store
        .read(&channel(3), Page::forward(1, 100))
        .await
        .unwrap();
    assert!(twice
        .iter()
        .all(|m| !m.client_msg_no.as_str().starts_with("twice")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_let_go_after_its_caller_gave_up_stores_nothing() {
    let Some(server) = PgServer::start("a_batch_let_go_after_its_caller_gave_up_stores_nothing")
    else {
        return;
    };
    let url = server.url("postgres");
    let mut config = PgConfig::new(url.clone());
    config.timeout = std::time::Duration::from_secs(1);
    let store = PgStore::open(config).await.expect("open");
    let channel = Channel::group("late").unwrap();
    store
        .append(vec![message(1, "u", &channel, "first", "p")])
        .await
        .expect("a send before the lock");

    // The batch reaches the server and waits behind the counter's lock
    // until its caller has given up.
    let holder = connect(&url).await;
    holder
        .batch_execute("BEGIN; SELECT version FROM imcore_counter WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    let store = std::sync::Arc::new(store);
    let (sender, to) = (store.clone(), channel.clone());
    let call =
        tokio::spawn(async move { sender.append(vec![message(2, "u", &to, "late", "p")]).await });
    until_a_backend_waits(&holder, "the late batch").await;
    let answer = call.await.unwrap();
    assert!(
        answer.as_ref().is_err_and(Error::is_retryable),
        "the caller gave up: {answer:?}"
    );

    // Let go: the statement runs to its end, past its deadline, and
    // stores nothing.
    let watcher = connect(&url).await;
    holder.batch_execute("COMMIT").await.unwrap();
    until_no_backend_runs(&watcher, "imcore_append").await;
    let stored = store.read(&channel, Page::forward(1, 10)).await.unwrap();
    let numbers: Vec<&str> = stored.iter().map(|m| m.client_msg_no.as_str()).collect();
    assert_eq!(numbers, ["first"]);
    // The next send takes the next seq: nothing was half written.
    let next = store
        .append(vec![message(3, "u", &channel, "next", "p")])
        .await
        .expect("a send after");
    assert_eq!(next[0].message_seq, 2);
}

/// `senders` concurrent senders, each sending `sends` messages one after
/// another into a group of its own, each waiting for its answer.
async fn steady_senders(store: &std::sync::Arc<PgStore>, senders: u64, sends: u64) {
    let tasks = (0..senders).map(|s| {
        let store = store.clone();
        tokio::spawn(async move {
            let channel = Channel::group(format!("steady{s}")).unwrap();
            for i in 0..sends {
                let id = 1 + s * sends + i;
                let no = format!("n{i}");
                store
                    .append(vec![message(id, &format!("u{s}"), &channel, &no, "p")])
                    .await
                    .expect("a send");
            }
        })
    });
    for task in join_all(tasks).await {
        task.unwrap();
    }
}

/// The newest transaction id: each batch is one transaction with an id,
/// and each reading takes one.
async fn newest_xid(client: &tokio_postgres::Client) -> u64 {
    let row = client
        .query_one("SELECT pg_current_xact_id()::text::int8", &[])
        .await
        .unwrap();
    row.get::<_, i64>(0) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_answered_together_are_written_together_again() {
    let Some(server) = PgServer::start("callers_answered_together_are_written_together_again")
    else {
        return;
    };
    let url = server.url("postgres");
    let store = std::sync::Arc::new(
        PgStore::open(PgConfig::new(url.clone()))
            .await
            .expect("open"),
    );
    const SENDERS: u64 = 16;
    const SENDS: u64 = 30;
    let watcher = connect(&url).await;
    let before = newest_xid(&watcher).await;
    steady_senders(&store, SENDERS, SENDS).await;
    // The ids between the two readings, less the second reading's own.
    let batches = newest_xid(&watcher).await - before - 1;
    let calls = SENDERS * SENDS;
    // Every sender waits for its answer before it sends again, so a batch
    // holds at most one call of each. Answered together, they come back
    // together: cut in two (as a writer that takes only what has already
    // arrived does), batches would average eight calls.
    assert!(
        batches * 11 <= calls,
        "{calls} calls in {batches} batches: {:.1} a batch",
        calls as f64 / batches as f64
    );
}
