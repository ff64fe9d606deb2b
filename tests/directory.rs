//! `MemoryDirectory`'s blacklists, whitelists, system accounts and deleted
//! channels, as sends through the hub meet them (WuKongIM's reason codes:
//! 4 blacklisted, 13 not in the whitelist, 5 no such channel).

use std::sync::Arc;

use imcore::{
    AccessList, Channel, ChannelId, ChannelType, Error, Hub, MemoryDirectory, ReasonCode,
    SendRequest, Uid,
};

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

/// A user's own person channel, as WuKongIM's API names it for lists.
fn own(s: &str) -> Channel {
    Channel::new(ChannelId::from(uid(s)), ChannelType::PERSON)
}

fn world() -> (Hub, Arc<MemoryDirectory>) {
    let directory = Arc::new(MemoryDirectory::new());
    let hub = Hub::builder().directory(directory.clone()).build().unwrap();
    (hub, directory)
}

/// The reason a send from `from` to `channel` is refused with; SUCCESS if
/// it is not.
async fn send(hub: &Hub, from: &str, channel: &Channel) -> ReasonCode {
    match hub
        .send(SendRequest::new(uid(from), channel.clone(), "x"))
        .await
    {
        Ok(_) => ReasonCode::SUCCESS,
        Err(Error::Rejected { reason, .. }) => reason,
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test]
async fn a_group_blacklist_refuses_with_4_and_a_whitelist_admits_only_its_uids() {
    let (hub, dir) = world();
    let g = Channel::group("g").unwrap();
    dir.create_channel(&g, &uid("owner"), ["a", "b", "c"].map(uid));
    dir.add_to_list(AccessList::Black, &g, [uid("a")]);
    assert_eq!(send(&hub, "a", &g).await, ReasonCode::IN_BLACKLIST);
    assert_eq!(send(&hub, "b", &g).await, ReasonCode::SUCCESS);

    dir.set_list(AccessList::White, &g, [uid("b"), uid("owner")]);
    assert_eq!(send(&hub, "b", &g).await, ReasonCode::SUCCESS);
    assert_eq!(send(&hub, "c", &g).await, ReasonCode::NOT_IN_WHITELIST);
    assert_eq!(dir.list(AccessList::White, &g), [uid("b"), uid("owner")]);

    dir.remove_from_list(AccessList::Black, &g, [uid("a")]);
    assert_eq!(send(&hub, "a", &g).await, ReasonCode::NOT_IN_WHITELIST);
    dir.set_list(AccessList::White, &g, []);
    assert_eq!(send(&hub, "a", &g).await, ReasonCode::SUCCESS);
    assert_eq!(send(&hub, "c", &g).await, ReasonCode::SUCCESS);
    assert!(dir.list(AccessList::Black, &g).is_empty());
}

#[tokio::test]
async fn a_users_lists_say_who_may_message_them() {
    let (hub, dir) = world();
    let to_bob = Channel::new(ChannelId::from(uid("bob")), ChannelType::PERSON);
    dir.add_to_list(AccessList::Black, &own("bob"), [uid("eve")]);
    assert_eq!(send(&hub, "eve", &to_bob).await, ReasonCode::IN_BLACKLIST);
    assert_eq!(send(&hub, "alice", &to_bob).await, ReasonCode::SUCCESS);
    // Bob's lists bind those who write to bob, not bob.
    let to_eve = Channel::new(ChannelId::from(uid("eve")), ChannelType::PERSON);
    assert_eq!(send(&hub, "bob", &to_eve).await, ReasonCode::SUCCESS);

    dir.add_to_list(AccessList::White, &own("bob"), [uid("carol")]);
    assert_eq!(
        send(&hub, "alice", &to_bob).await,
        ReasonCode::NOT_IN_WHITELIST
    );
    assert_eq!(send(&hub, "carol", &to_bob).await, ReasonCode::SUCCESS);
    // block() is the same blacklist.
    dir.block(&uid("bob"), &uid("carol"), true);
    assert_eq!(send(&hub, "carol", &to_bob).await, ReasonCode::IN_BLACKLIST);
    assert_eq!(
        dir.list(AccessList::Black, &own("bob")),
        [uid("carol"), uid("eve")]
    );
}

#[tokio::test]
async fn a_system_uid_sends_anywhere_there_is_a_channel() {
    let (hub, dir) = world();
    let g = Channel::group("g").unwrap();
    dir.create_channel(&g, &uid("owner"), [uid("a")]);
    dir.set_banned(&g, true);
    dir.add_to_list(AccessList::Black, &g, [uid("sys")]);
    assert_eq!(send(&hub, "sys", &g).await, ReasonCode::BAN);
    dir.set_system(&uid("sys"), true);
    assert!(dir.is_system(&uid("sys")));
    assert_eq!(send(&hub, "sys", &g).await, ReasonCode::SUCCESS);
    let to_bob = Channel::new(ChannelId::from(uid("bob")), ChannelType::PERSON);
    dir.add_to_list(AccessList::White, &own("bob"), [uid("carol")]);
    assert_eq!(send(&hub, "sys", &to_bob).await, ReasonCode::SUCCESS);
    // Not a channel that does not exist.
    let nowhere = Channel::group("nowhere").unwrap();
    assert_eq!(
        send(&hub, "sys", &nowhere).await,
        ReasonCode::CHANNEL_NOT_EXIST
    );
    dir.set_system(&uid("sys"), false);
    assert_eq!(send(&hub, "sys", &g).await, ReasonCode::BAN);
}

#[tokio::test]
async fn a_deleted_channel_is_gone_for_senders_and_its_history_stays() {
    let (hub, dir) = world();
    let g = Channel::group("g").unwrap();
    dir.create_channel(&g, &uid("owner"), [uid("a")]);
    assert_eq!(send(&hub, "a", &g).await, ReasonCode::SUCCESS);
    assert!(dir.delete_channel(&g));
    assert!(!dir.delete_channel(&g), "already gone");
    assert_eq!(send(&hub, "a", &g).await, ReasonCode::CHANNEL_NOT_EXIST);
    dir.create_channel(&g, &uid("owner"), [uid("a")]);
    let history = hub
        .sync_channel(&uid("a"), &g, imcore::store::Page::forward(1, 10))
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "the store keeps what was sent");
}
