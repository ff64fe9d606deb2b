//! Who may send and read: every reason code the directory gives, a host
//! directory's own codes, and person channels that belong to their two
//! parties whatever the directory says.

#[path = "common/hub_world.rs"]
mod hub_world;

use std::sync::Arc;

use async_trait::async_trait;
use hub_world::{person, uid, world, World};
use imcore::store::Page;
use imcore::{Channel, ChannelType, Error, Hub, ReasonCode, SendRequest, Uid};

// ---- permissions: every reason code the directory gives ----

async fn refused(w: &World, from: &str, channel: &Channel) -> ReasonCode {
    match w
        .hub
        .send(SendRequest::new(uid(from), channel.clone(), "x"))
        .await
    {
        Err(Error::Rejected { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn every_permission_reason_code_is_produced() {
    let w = world();
    let g = w.group("g", "owner", &["manager", "member", "muted"]);
    w.directory.set_manager(&g, &uid("manager"), true);
    assert_eq!(
        refused(&w, "stranger", &g).await,
        ReasonCode::SUBSCRIBER_NOT_EXIST
    );
    w.directory.set_muted(&g, &uid("muted"), true);
    assert_eq!(refused(&w, "muted", &g).await, ReasonCode::IN_BLACKLIST);
    w.directory.set_all_muted(&g, true);
    assert_eq!(refused(&w, "member", &g).await, ReasonCode::SEND_BAN);
    w.hub
        .send(SendRequest::new(uid("manager"), g.clone(), "managers may"))
        .await
        .unwrap();
    w.directory.set_all_muted(&g, false);
    w.directory.set_banned(&g, true);
    assert_eq!(refused(&w, "owner", &g).await, ReasonCode::BAN);
    w.directory.set_banned(&g, false);
    w.directory.disband(&g);
    assert_eq!(refused(&w, "member", &g).await, ReasonCode::DISBAND);
    assert_eq!(
        refused(&w, "member", &Channel::group("nowhere").unwrap()).await,
        ReasonCode::CHANNEL_NOT_EXIST
    );
    let odd = Channel::new(
        imcore::ChannelId::new("x").unwrap(),
        ChannelType::try_from(42).unwrap(),
    );
    assert_eq!(
        refused(&w, "member", &odd).await,
        ReasonCode::NOT_SUPPORT_CHANNEL_TYPE
    );
    // Person channels: blacklist and friends-only.
    w.directory.block(&uid("bob"), &uid("alice"), true);
    assert_eq!(
        refused(&w, "alice", &person("bob")).await,
        ReasonCode::IN_BLACKLIST
    );
    w.hub
        .send(SendRequest::new(uid("bob"), person("alice"), "bob may"))
        .await
        .unwrap();
    w.directory.require_friends(true);
    assert_eq!(
        refused(&w, "carol", &person("dave")).await,
        ReasonCode::NOT_IN_WHITELIST
    );
    w.directory.add_friends(&uid("carol"), &uid("dave"));
    w.hub
        .send(SendRequest::new(uid("carol"), person("dave"), "friends"))
        .await
        .unwrap();
    // A person channel id that is neither a uid nor a pair.
    let bad = Channel::new(
        imcore::ChannelId::new("a@b@c").unwrap(),
        ChannelType::PERSON,
    );
    let err = w
        .hub
        .send(SendRequest::new(uid("carol"), bad, "x"))
        .await
        .unwrap_err();
    assert_eq!(err.reason_code(), Some(ReasonCode::CHANNEL_ID_ERROR));
    // Nothing refused was stored.
    assert_eq!(w.hub.store().last_seq(&g).await.unwrap(), 1);
}

/// A host directory's own codes reach the caller unchanged.
#[derive(Debug)]
struct RateLimited;

#[async_trait]
impl imcore::Directory for RateLimited {
    async fn subscribers(&self, _: &Channel) -> imcore::Result<Arc<[Uid]>> {
        Ok(Arc::from(Vec::new()))
    }
    async fn check_send(&self, sender: &Uid, _: &Channel) -> imcore::Result<imcore::Permission> {
        Ok(imcore::Permission::Denied(
            if sender.as_str() == "spammer" {
                ReasonCode::RATE_LIMIT
            } else {
                ReasonCode::NOT_ALLOW_SEND
            },
        ))
    }
    async fn check_read(&self, _: &Uid, _: &Channel) -> imcore::Result<imcore::Permission> {
        Ok(imcore::Permission::Allowed)
    }
    async fn channels_of(&self, _: &Uid) -> imcore::Result<Vec<Channel>> {
        Ok(Vec::new())
    }
    async fn role(&self, _: &Channel, _: &Uid) -> imcore::Result<Option<imcore::Role>> {
        Ok(None)
    }
}

#[tokio::test]
async fn a_host_directory_decides_with_its_own_codes() {
    let hub = Hub::builder()
        .directory(Arc::new(RateLimited))
        .build()
        .unwrap();
    let g = Channel::group("g").unwrap();
    for (who, code) in [
        ("spammer", ReasonCode::RATE_LIMIT),
        ("anyone", ReasonCode::NOT_ALLOW_SEND),
    ] {
        let err = hub
            .send(SendRequest::new(uid(who), g.clone(), "x"))
            .await
            .unwrap_err();
        assert_eq!(err.reason_code(), Some(code));
    }
}

// ---- person channels belong to their two parties ----

/// A directory that allows everything, as a careless host's might.
#[derive(Debug)]
struct AllowAll;

#[async_trait]
impl imcore::Directory for AllowAll {
    async fn subscribers(&self, _: &Channel) -> imcore::Result<Arc<[Uid]>> {
        Ok(Arc::from(Vec::new()))
    }
    async fn check_send(&self, _: &Uid, _: &Channel) -> imcore::Result<imcore::Permission> {
        Ok(imcore::Permission::Allowed)
    }
    async fn check_read(&self, _: &Uid, _: &Channel) -> imcore::Result<imcore::Permission> {
        Ok(imcore::Permission::Allowed)
    }
    async fn channels_of(&self, _: &Uid) -> imcore::Result<Vec<Channel>> {
        Ok(Vec::new())
    }
    async fn role(&self, _: &Channel, _: &Uid) -> imcore::Result<Option<imcore::Role>> {
        Ok(None)
    }
}

#[tokio::test]
async fn a_third_user_can_neither_write_nor_read_a_person_channel() {
    let hub = Hub::builder()
        .directory(Arc::new(AllowAll))
        .build()
        .unwrap();
    let private = Channel::person(&uid("alice"), &uid("bob"));
    let ack = hub
        .send(SendRequest::new(uid("alice"), person("bob"), "secret"))
        .await
        .unwrap();
    assert_eq!(ack.message_seq, 1);
    let err = hub
        .send(SendRequest::new(uid("eve"), private.clone(), "spoof"))
        .await
        .unwrap_err();
    assert_eq!(err.reason_code(), Some(ReasonCode::SUBSCRIBER_NOT_EXIST));
    let err = hub
        .sync_channel(&uid("eve"), &private, Page::forward(1, 10))
        .await
        .unwrap_err();
    assert_eq!(err.reason_code(), Some(ReasonCode::SUBSCRIBER_NOT_EXIST));
    // The parties themselves may use the stored form.
    let read = hub
        .sync_channel(&uid("bob"), &private, Page::forward(1, 10))
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
}
