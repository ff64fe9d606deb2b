//! Crash safety: acknowledged appends survive SIGKILL.
//!
//! The test runs its own binary again as a child process that appends
//! through the send path (`append`, batched group commit) with
//! flush-before-return durability from 16 tasks and prints each
//! acknowledged `seq client_msg_no`. The parent kills it with SIGKILL while
//! it writes, reopens the database, and checks that every acknowledged
//! message is there, that seqs are contiguous, and that nothing is stored
//! twice. Three rounds run on the same database, so recovery after a crash
//! is itself crashed into.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use imcore::store::{ConversationStore, MessageLog, Page, SledStore};
use imcore::{Channel, ClientMsgNo, Message, MessageIdGenerator, Uid};

const CHILD_ENV: &str = "IMCORE_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "IMCORE_CRASH_ROUND";
const TEST_NAME: &str = "acknowledged_appends_survive_sigkill";
const WRITERS: usize = 16;

fn channel() -> Channel {
    Channel::group("crash").unwrap()
}

/// The child: append until killed, printing every acknowledgement.
async fn child(dir: String, round: String) {
    let store = std::sync::Arc::new(SledStore::open(&dir).expect("open in child"));
    let ids = std::sync::Arc::new(MessageIdGenerator::new(7).unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for w in 0..WRITERS {
        let (store, ids, tx, round) = (store.clone(), ids.clone(), tx.clone(), round.clone());
        tokio::spawn(async move {
            // Bounded, in case the parent is gone and never kills us.
            for i in 0..100_000 {
                let no = format!("r{round}-w{w}-{i}");
                let message = Message::new(
                    ids.next_id(),
                    ClientMsgNo::new(&no).unwrap(),
                    Uid::new(format!("writer{w}")).unwrap(),
                    channel(),
                    0,
                    no.clone().into_bytes(),
                );
                // The send path: concurrent writers share one flush.
                let out = store.append(vec![message]).await.expect("append");
                if tx.send(format!("{} {no}", out[0].message_seq)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut stdout = std::io::stdout().lock();
    while let Some(line) = rx.recv().await {
        // Printed only after the append returned: an acknowledgement.
        writeln!(stdout, "{line}").unwrap();
        stdout.flush().unwrap();
    }
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    if let (Ok(dir), Ok(round)) = (std::env::var(CHILD_ENV), std::env::var(ROUND_ENV)) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(child(dir, round));
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let mut acked: HashMap<u64, String> = HashMap::new();
    for (round, kill_after) in [(1, 150), (2, 400), (3, 250)] {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        for line in lines.by_ref() {
            let line = line.unwrap();
            // The test harness prints its own lines too; keep ours.
            let Some((seq, no)) = line.split_once(' ') else {
                continue;
            };
            let Ok(seq) = seq.parse::<u64>() else {
                continue;
            };
            assert!(
                acked.insert(seq, no.to_string()).is_none(),
                "seq {seq} acked twice"
            );
            seen += 1;
            if seen == kill_after {
                child.kill().unwrap(); // SIGKILL on Unix
                break;
            }
        }
        // Everything printed before the kill was acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some((seq, no)) = line.split_once(' ') {
                if let Ok(seq) = seq.parse::<u64>() {
                    assert!(acked.insert(seq, no.to_string()).is_none());
                }
            }
        }
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child was killed, round {round}");
        assert!(seen >= kill_after, "round {round}: child stopped early");
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SledStore::open(dir.path()).unwrap();
        let last = store.last_seq(&channel()).await.unwrap();
        let stored = store
            .read(&channel(), Page::forward(1, usize::MAX))
            .await
            .unwrap();
        // Contiguous from 1, and the counter agrees with the log.
        assert_eq!(stored.len() as u64, last);
        for (m, seq) in stored.iter().zip(1..) {
            assert_eq!(m.message_seq, seq, "seqs are contiguous");
        }
        // Nothing stored twice.
        let distinct: HashSet<_> = stored.iter().map(|m| m.client_msg_no.clone()).collect();
        assert_eq!(distinct.len(), stored.len(), "no duplicates");
        // Every acknowledged message is there, at its acknowledged seq.
        for (seq, no) in &acked {
            let m = &stored[(*seq - 1) as usize];
            assert_eq!(m.client_msg_no.as_str(), no, "seq {seq}");
            assert_eq!(m.payload.as_ref(), no.as_bytes());
        }
        assert!(acked.len() >= 800, "{} acks", acked.len());
        // The channel's head (what conversations derive from) is the log's
        // last record, and every message counts for a reader who never read.
        let conversation = store
            .conversation(&Uid::new("reader").unwrap(), &channel())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conversation.last_seq, last);
        assert_eq!(conversation.unread, last);
        eprintln!(
            "{} acknowledged, {} stored after 3 crashes",
            acked.len(),
            stored.len()
        );
    });
}

const FLUSH_CHILD_ENV: &str = "IMCORE_FLUSH_CHILD_DIR";
const FLUSH_TEST_NAME: &str = "flush_makes_background_history_writes_survive_sigkill";
const FLUSHED_COUNT: usize = 50;

/// The child: history writes with background durability whose own flush
/// would not run for an hour, then `flush()`, then a line saying so; then
/// it waits to be killed.
async fn flush_child(dir: String) {
    use imcore::store::{Durability, SledConfig};
    let config = SledConfig::new(&dir).durability(Durability::Background {
        flush_every: std::time::Duration::from_millis(3_600_000),
    });
    let store = SledStore::open_with(config).expect("open in child");
    let ids = MessageIdGenerator::new(3).unwrap();
    for i in 0..FLUSHED_COUNT {
        let no = format!("f{i}");
        let message = Message::new(
            ids.next_id(),
            ClientMsgNo::new(&no).unwrap(),
            Uid::new("writer").unwrap(),
            channel(),
            0,
            no.into_bytes(),
        );
        store.append(vec![message]).await.expect("append");
    }
    store.flush().await.expect("flush");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "imcore-flushed").unwrap();
    stdout.flush().unwrap();
    drop(stdout);
    // Bounded, in case the parent is gone and never kills us.
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
}

#[test]
fn flush_makes_background_history_writes_survive_sigkill() {
    if let Ok(dir) = std::env::var(FLUSH_CHILD_ENV) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(flush_child(dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            FLUSH_TEST_NAME,
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(FLUSH_CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let flushed = lines
        .map_while(Result::ok)
        .any(|l| l.ends_with("imcore-flushed"));
    child.kill().unwrap(); // SIGKILL on Unix, right after flush() returned
    child.wait().unwrap();
    assert!(flushed, "the child never said it had flushed");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SledStore::open(dir.path()).unwrap();
        let stored = store
            .read(&channel(), Page::forward(1, usize::MAX))
            .await
            .unwrap();
        assert_eq!(
            stored.len(),
            FLUSHED_COUNT,
            "every write committed before flush() is on disk"
        );
    });
}

const VERSION_CHILD_ENV: &str = "IMCORE_VERSION_CHILD_DIR";
const VERSION_TEST_NAME: &str = "conversation_versions_are_never_handed_out_twice_across_a_crash";

/// The child: 65,000 messages with background durability (no flush for an
/// hour), a `flush()`, then 1,000 more that cross a version reservation
/// block and are never flushed; it prints the stable version a client
/// could have synced to, then waits to be killed.
async fn version_child(dir: String) {
    use imcore::store::{Durability, SledConfig};
    let config = SledConfig::new(&dir).durability(Durability::Background {
        flush_every: std::time::Duration::from_millis(3_600_000),
    });
    let store = SledStore::open_with(config).expect("open in child");
    let ids = MessageIdGenerator::new(5).unwrap();
    for batch in 0..66 {
        if batch == 65 {
            store.flush().await.expect("flush");
        }
        let messages = (0..1_000)
            .map(|i| {
                Message::new(
                    ids.next_id(),
                    ClientMsgNo::new(format!("v{batch}-{i}")).unwrap(),
                    Uid::new("writer").unwrap(),
                    channel(),
                    0,
                    b"x".to_vec(),
                )
            })
            .collect();
        store.append(messages).await.expect("append");
    }
    let seen = store.stable_version().await.expect("stable");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "imcore-seen {seen}").unwrap();
    stdout.flush().unwrap();
    drop(stdout);
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
}

#[test]
fn conversation_versions_are_never_handed_out_twice_across_a_crash() {
    if let Ok(dir) = std::env::var(VERSION_CHILD_ENV) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(version_child(dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            VERSION_TEST_NAME,
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(VERSION_CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let seen = lines.map_while(Result::ok).find_map(|l| {
        l.split_once("imcore-seen ")
            .map(|(_, v)| v.parse::<u64>().unwrap())
    });
    child.kill().unwrap(); // SIGKILL: the last writes were never flushed
    child.wait().unwrap();
    let seen = seen.expect("the child never said which version it reached");
    assert!(seen >= 66_000, "{seen}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SledStore::open(dir.path()).unwrap();
        // Whatever the crash lost, a new change takes a version above
        // every version a client may have seen, so its next incremental
        // sync (after `seen`) finds it.
        let ids = MessageIdGenerator::new(6).unwrap();
        let message = Message::new(
            ids.next_id(),
            ClientMsgNo::new("after-crash").unwrap(),
            Uid::new("other").unwrap(),
            channel(),
            0,
            b"y".to_vec(),
        );
        store.append(vec![message]).await.unwrap();
        let reader = Uid::new("reader").unwrap();
        let changed = store
            .conversations_after(&reader, &[channel()], seen, 10)
            .await
            .unwrap();
        assert_eq!(changed.len(), 1, "the change after the crash is found");
        assert!(changed[0].version > seen);
    });
}
