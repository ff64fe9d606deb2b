//! Conformance of conversations by read diffusion: heads, read positions,
//! versions and unread, derived from the log.

use std::collections::HashMap;
use std::sync::Arc;

use super::{group, message, uid};
use crate::model::{Channel, ChannelType, Flags, Message, Uid};
use crate::store::{Page, Store};

fn person(a: &str, b: &str) -> Channel {
    Channel::new(uid(b).into(), ChannelType::PERSON)
        .stored_for(&uid(a))
        .expect("person channel")
}

async fn append_one(store: &Arc<dyn Store>, m: Message) -> u64 {
    let out = store.append(vec![m]).await.expect("append");
    out[0].message_seq
}

/// An append moves the channel's head and its sender's read position:
/// every member sees the last message, unread counts red-dot messages from
/// others only, and a duplicate counts nothing.
pub async fn append_moves_the_head_and_the_senders_position(store: Arc<dyn Store>) {
    let ch = group("c-head");
    let (alice, bob) = (uid("h-alice"), uid("h-bob"));
    let out = store
        .append(vec![
            message("h-alice", &ch, "h-1", b"1"),
            message("h-alice", &ch, "h-2", b"2"),
            message("h-alice", &ch, "h-1", b"1"),
        ])
        .await
        .expect("append");
    assert!(out[2].duplicate);
    let b = store
        .conversation(&bob, &ch)
        .await
        .expect("get")
        .expect("has messages");
    assert_eq!(
        (b.last_seq, b.unread),
        (2, 2),
        "the duplicate counts nothing"
    );
    assert_eq!(b.last_message_id, out[1].message_id);
    let a = store
        .conversation(&alice, &ch)
        .await
        .expect("get")
        .expect("has messages");
    assert_eq!((a.last_seq, a.unread), (2, 0), "never the sender's unread");
    let mut quiet = message("h-alice", &ch, "h-quiet", b"q");
    quiet.flags.red_dot = false;
    append_one(&store, quiet).await;
    let b = store
        .conversation(&bob, &ch)
        .await
        .expect("get")
        .expect("has messages");
    assert_eq!((b.last_seq, b.unread), (3, 2), "no red dot, no unread");
    // Bob's own send means bob has read the channel up to it.
    append_one(&store, message("h-bob", &ch, "h-b1", b"b")).await;
    let b = store
        .conversation(&bob, &ch)
        .await
        .expect("get")
        .expect("has messages");
    assert_eq!((b.last_seq, b.unread), (4, 0));
    let a = store
        .conversation(&alice, &ch)
        .await
        .expect("get")
        .expect("has messages");
    assert_eq!((a.last_seq, a.unread), (4, 1));
    assert!(store
        .conversation(&bob, &group("c-head-none"))
        .await
        .expect("get")
        .is_none());
}

/// Versions come from one store-wide counter: a user's conversations page
/// by version, among the channels the host lists and the user's person
/// channels (listed for both parties from the first message).
pub async fn conversations_page_by_version(store: Arc<dyn Store>) {
    let (alice, bob) = (uid("v-alice"), uid("v-bob"));
    let (g1, g2) = (group("c-conv-1"), group("c-conv-2"));
    let dm = person("v-alice", "v-bob");
    append_one(&store, message("v-carol", &g1, "v-1", b"1")).await;
    append_one(&store, message("v-carol", &g2, "v-2", b"2")).await;
    append_one(&store, message("v-alice", &dm, "v-3", b"3")).await;
    append_one(&store, message("v-carol", &g1, "v-4", b"4")).await;
    let groups = [g1.clone(), g2.clone()];
    let all = store
        .conversations_after(&alice, &groups, 0, 100)
        .await
        .expect("sync");
    let order: Vec<&Channel> = all.iter().map(|c| &c.channel).collect();
    assert_eq!(order, [&g2, &dm, &g1], "ascending by version");
    assert!(all.windows(2).all(|w| w[0].version < w[1].version));
    assert_eq!((all[2].last_seq, all[2].unread), (2, 2));
    let after = store
        .conversations_after(&alice, &groups, all[1].version, 100)
        .await
        .expect("sync");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].channel, g1);
    let first = store
        .conversations_after(&alice, &groups, 0, 1)
        .await
        .expect("sync");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].channel, g2);
    // Bob has the person channel without being told of it.
    let bobs = store
        .conversations_after(&bob, &[], 0, 100)
        .await
        .expect("sync");
    assert_eq!(bobs.len(), 1);
    assert_eq!((bobs[0].channel.clone(), bobs[0].unread), (dm.clone(), 1));
    // A channel the host no longer lists is no longer in the list.
    let only_g2 = store
        .conversations_after(&alice, std::slice::from_ref(&g2), 0, 100)
        .await
        .expect("sync");
    assert!(only_g2.iter().all(|c| c.channel != g1));
    // Clearing unread is a change with a higher version.
    let before = all.iter().map(|c| c.version).max().expect("versions");
    assert!(store
        .clear_unread(&alice, &g1, u64::MAX)
        .await
        .expect("clear"));
    let changed = store
        .conversations_after(&alice, &groups, before, 100)
        .await
        .expect("sync");
    assert_eq!(changed.len(), 1);
    assert_eq!((changed[0].channel.clone(), changed[0].unread), (g1, 0));
    assert!(changed[0].version > before);
    assert!(store
        .conversations_after(&uid("v-nobody"), &[], 0, 10)
        .await
        .expect("sync")
        .is_empty());
}

/// `clear_unread(read_seq)` keeps what arrived after `read_seq` unread, and
/// a stale clear (older than one before it) changes nothing.
pub async fn clear_unread_moves_forward_only(store: Arc<dyn Store>) {
    let user = uid("o-user");
    let ch = group("c-clear");
    for i in 0..7 {
        append_one(&store, message("o-other", &ch, &format!("o-{i}"), b"x")).await;
    }
    assert!(store.clear_unread(&user, &ch, 6).await.expect("clear"));
    let c = store
        .conversation(&user, &ch)
        .await
        .expect("get")
        .expect("has messages");
    assert_eq!(
        c.unread, 1,
        "the message at 7 arrived after and stays unread"
    );
    assert!(store
        .clear_unread(&user, &ch, u64::MAX)
        .await
        .expect("clear"));
    let cleared = store
        .conversation(&user, &ch)
        .await
        .expect("get")
        .expect("has messages");
    assert_eq!(cleared.unread, 0);
    assert!(cleared.version > c.version);
    assert!(store
        .clear_unread(&user, &ch, 2)
        .await
        .expect("stale clear"));
    let stale = store
        .conversation(&user, &ch)
        .await
        .expect("get")
        .expect("has messages");
    assert_eq!((stale.unread, stale.version), (0, cleared.version));
    assert!(!store
        .clear_unread(&user, &group("c-clear-none"), u64::MAX)
        .await
        .expect("clear"));
}

/// Under 8 concurrent senders, every member's unread equals the number of
/// red-dot messages after their read position (the later of their last
/// own message and their last clear), computed from the log.
pub async fn unread_is_exact_under_concurrent_senders(store: Arc<dyn Store>) {
    const SENDERS: usize = 8;
    const EACH: usize = 25;
    let ch = group("c-exact");
    let name = |s: usize| format!("x-m{s}");
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let (store, ch, from) = (store.clone(), ch.clone(), name(s));
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                let mut m = message(&from, &ch, &format!("x-{s}-{i}"), b"x");
                m.flags = Flags {
                    red_dot: (i + s) % 3 != 0,
                    ..Flags::normal()
                };
                store.append(vec![m]).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    let log = store
        .read(&ch, Page::forward(1, usize::MAX))
        .await
        .expect("read");
    assert_eq!(log.len(), SENDERS * EACH);
    let red_after = |position: u64| {
        log.iter()
            .filter(|m| m.message_seq > position && m.flags.red_dot)
            .count() as u64
    };
    let mut users: Vec<Uid> = (0..SENDERS).map(|s| uid(&name(s))).collect();
    users.push(uid("x-reader"));
    let last_own: HashMap<Uid, u64> = users
        .iter()
        .map(|u| {
            let own = log.iter().filter(|m| m.from_uid == *u);
            (u.clone(), own.map(|m| m.message_seq).max().unwrap_or(0))
        })
        .collect();
    let check = |label: &'static str, clears: HashMap<Uid, u64>| {
        let (store, ch, users) = (store.clone(), ch.clone(), users.clone());
        let expected: Vec<u64> = users
            .iter()
            .map(|u| red_after(last_own[u].max(clears.get(u).copied().unwrap_or(0))))
            .collect();
        async move {
            for (user, expected) in users.iter().zip(expected) {
                let c = store
                    .conversation(user, &ch)
                    .await
                    .expect("get")
                    .expect("has messages");
                assert_eq!(c.unread, expected, "{label}: {user}");
            }
        }
    };
    check("after the sends", HashMap::new()).await;
    // Clears at seqs before and after each user's last own message.
    let mut clears = HashMap::new();
    for (i, user) in users.iter().enumerate() {
        let at = (i as u64 * 23) % log.len() as u64 + 1;
        assert!(store.clear_unread(user, &ch, at).await.expect("clear"));
        clears.insert(user.clone(), at);
    }
    check("after the clears", clears).await;
}

/// A hidden conversation's mark keeps the highest seq it was given, per
/// user and channel, and survives other users' marks.
pub async fn hidden_conversations_keep_the_highest_seq(store: Arc<dyn Store>) {
    let (a, b) = (group("c-hide-a"), group("c-hide-b"));
    let (alice, bob) = (uid("hide-alice"), uid("hide-bob"));
    assert!(store
        .hidden_conversations(&alice)
        .await
        .expect("hidden")
        .is_empty());
    store.hide_conversation(&alice, &a, 3).await.expect("hide");
    store
        .hide_conversation(&alice, &a, 1)
        .await
        .expect("hide lower");
    store.hide_conversation(&alice, &b, 7).await.expect("hide");
    store.hide_conversation(&bob, &a, 9).await.expect("hide");
    let mut hidden = store.hidden_conversations(&alice).await.expect("hidden");
    hidden.sort();
    assert_eq!(hidden, [(a.clone(), 3), (b, 7)]);
    store
        .hide_conversation(&alice, &a, 5)
        .await
        .expect("hide higher");
    let hidden: HashMap<_, _> = store
        .hidden_conversations(&alice)
        .await
        .expect("hidden")
        .into_iter()
        .collect();
    assert_eq!(hidden.get(&a), Some(&5));
    assert_eq!(
        store.hidden_conversations(&bob).await.expect("hidden"),
        [(a, 9)]
    );
}

/// Hiding a conversation (a delete) is a change of it: it takes the next
/// version, so that a sync from any version before it returns the
/// conversation, and the user's other devices learn of the delete even
/// when nothing was unread. A hide that changes nothing takes none.
pub async fn hiding_a_conversation_takes_a_version(store: Arc<dyn Store>) {
    let (alice, bob) = (uid("hv-alice"), uid("hv-bob"));
    let ch = group("c-hide-version");
    let groups = std::slice::from_ref(&ch);
    append_one(&store, message("hv-bob", &ch, "hv-1", b"1")).await;
    append_one(&store, message("hv-bob", &ch, "hv-2", b"2")).await;
    assert!(store
        .clear_unread(&alice, &ch, u64::MAX)
        .await
        .expect("read"));
    // Another device of alice has synced everything so far.
    let synced = store.stable_version().await.expect("stable");
    let listed = store
        .conversations_after(&alice, groups, 0, 10)
        .await
        .expect("sync");
    assert!(listed[0].version <= synced);
    // Already read: the delete is the hide alone.
    store.hide_conversation(&alice, &ch, 2).await.expect("hide");
    let changed = store
        .conversations_after(&alice, groups, synced, 10)
        .await
        .expect("sync");
    assert_eq!(changed.len(), 1, "the delete is a change since {synced}");
    assert!(changed[0].version > synced);
    assert_eq!((changed[0].last_seq, changed[0].unread), (2, 0));
    let current = store
        .conversation(&alice, &ch)
        .await
        .expect("get")
        .expect("has messages");
    assert_eq!(current.version, changed[0].version);
    assert_eq!(
        store.hidden_conversations(&alice).await.expect("hidden"),
        [(ch.clone(), 2)]
    );
    // Hiding again up to the same or a lower seq changes nothing.
    let hidden_at = changed[0].version;
    store
        .hide_conversation(&alice, &ch, 2)
        .await
        .expect("again");
    store
        .hide_conversation(&alice, &ch, 1)
        .await
        .expect("lower");
    assert!(store
        .conversations_after(&alice, groups, hidden_at, 10)
        .await
        .expect("sync")
        .is_empty());
    // Nobody else's conversation moved.
    assert!(store
        .conversations_after(&bob, groups, synced, 10)
        .await
        .expect("sync")
        .is_empty());
}

/// What `changed_after` finds gives an incremental sync the same list as
/// looking at each of the user's channels, from every version: heads moved
/// by appends (batches too), the user's own sends, clears and hides, and
/// channels of others (left out by the caller). More than `most` is
/// `None`. A store that keeps no index answers `None` and is not checked.
pub async fn changed_after_finds_what_a_sync_needs(store: Arc<dyn Store>) {
    let (alice, bob) = (uid("ca-alice"), uid("ca-bob"));
    let groups: Vec<Channel> = (0..4).map(|i| group(&format!("c-ca-{i}"))).collect();
    let dm = person("ca-alice", "ca-bob");
    let others = group("c-ca-others");
    let start = store.stable_version().await.expect("stable");
    let Some(_) = store
        .changed_after(&alice, start, usize::MAX)
        .await
        .expect("changed")
    else {
        return; // no index: every sync looks at each channel
    };
    let mut n = 0;
    let mut next = |from: &str, channel: &Channel| {
        n += 1;
        message(from, channel, &format!("ca-{n}"), b"x")
    };
    append_one(&store, next("ca-bob", &groups[0])).await;
    append_one(&store, next("ca-alice", &groups[1])).await;
    append_one(&store, next("ca-bob", &dm)).await;
    let batch = vec![
        next("ca-bob", &groups[2]),
        next("ca-alice", &groups[2]),
        next("ca-bob", &groups[0]),
        next("ca-carol", &others),
    ];
    store.append(batch).await.expect("batch");
    store
        .clear_unread(&alice, &groups[0], 1)
        .await
        .expect("clear");
    append_one(&store, next("ca-bob", &groups[3])).await;
    store
        .hide_conversation(&alice, &groups[3], 1)
        .await
        .expect("hide");
    store
        .clear_unread(&alice, &groups[0], u64::MAX)
        .await
        .expect("clear");
    append_one(&store, next("ca-alice", &dm)).await;
    append_one(&store, next("ca-carol", &others)).await;
    store.hide_conversation(&alice, &dm, 2).await.expect("hide");
    let end = store.stable_version().await.expect("stable");
    for version in start..=end {
        let everything = store
            .conversations_after(&alice, &groups, version, 100)
            .await
            .expect("sync");
        let changed = store
            .changed_after(&alice, version, usize::MAX)
            .await
            .expect("changed")
            .expect("an index answers whatever the number");
        assert_eq!(changed.ceiling, end, "nothing is being written");
        let mine: Vec<Channel> = changed
            .channels
            .iter()
            .filter(|c| groups.contains(c) || **c == dm)
            .cloned()
            .collect();
        let found = store
            .conversations_among(&alice, &mine, version, changed.ceiling, 100)
            .await
            .expect("among");
        assert_eq!(found, everything, "from version {version}");
        if version == end {
            assert!(found.is_empty() && changed.channels.is_empty());
        }
    }
    // Six of alice's conversations and one of others' changed after start.
    let most = store
        .changed_after(&alice, start, 1)
        .await
        .expect("changed");
    assert_eq!(most, None, "more than one changed");
    // Bob sees his side: the person channel and what he sent to.
    let changed = store
        .changed_after(&bob, start, usize::MAX)
        .await
        .expect("changed")
        .expect("indexed");
    for channel in [&groups[0], &groups[3], &dm] {
        assert!(changed.channels.contains(channel), "{channel:?}");
    }
}
