//! Who may revoke what: the permission matrix, a manager's power over a
//! member who left, the window on the injected clock and a host authorizer
//! that bypasses it, messages that cannot be revoked, targets by client
//! message number and by seq, and the hub's reserved client message numbers.

#[path = "common/revoke_world.rs"]
mod revoke_world;

use std::sync::Arc;

use async_trait::async_trait;
use imcore::revoke::{Authorizer, Decision, DefaultRevokeRules, RevokeContext};
use imcore::{
    Channel, ChannelType, ClientMsgNo, DeviceFlag, Error, Flags, HubConfig, MemoryStore, MessageId,
    RevokeOutcome, RevokeRefusal, RevokeRequest, RevokeTarget, SendRequest,
};
use revoke_world::{refusal, uid, world, world_with, T0};

#[tokio::test]
async fn permission_matrix() {
    let w = world();
    // (requester, sender, allowed?)
    let cases = [
        ("alice", "alice", true),       // the sender
        ("owner", "alice", true),       // owner over a member
        ("owner", "manager", true),     // owner over a manager
        ("manager", "alice", true),     // manager over a member
        ("manager", "owner", false),    // manager over the owner
        ("manager", "manager2", false), // manager over another manager
        ("bob", "alice", false),        // a member over another member
        ("stranger", "alice", false),   // not a member
    ];
    for (requester, sender, allowed) in cases {
        let id = w.say(sender, "x").await;
        let result = w.revoke(requester, id).await;
        if allowed {
            let outcome = result.unwrap_or_else(|e| panic!("{requester} over {sender}: {e}"));
            assert!(matches!(outcome, RevokeOutcome::Revoked(_)));
            assert_eq!(outcome.revocation().revoker, uid(requester));
        } else {
            assert_eq!(
                refusal(result),
                RevokeRefusal::NotPermitted,
                "{requester} over {sender}"
            );
        }
    }
    // A member who left is a non-member: may not revoke others'.
    let id = w.say("alice", "before bob leaves").await;
    w.directory.remove_members(&w.group, [uid("bob")]);
    assert_eq!(
        refusal(w.revoke("bob", id).await),
        RevokeRefusal::NotPermitted
    );
}

#[tokio::test]
async fn a_managers_power_over_a_member_outlives_the_members_leaving() {
    use imcore::Directory as _;
    let w = world();
    let mut owner = w.connect("owner", "owner-phone", DeviceFlag::App);
    let ids = [
        w.say("alice", "spam 1").await,
        w.say("alice", "spam 2").await,
        w.say("alice", "spam 3").await,
    ];
    owner.drain();
    // Alice is removed after sending: her messages stay in the group, and
    // moderating them must not depend on her still being there.
    w.directory.remove_members(&w.group, [uid("alice")]);
    assert_eq!(
        w.directory.role(&w.group, &uid("alice")).await.unwrap(),
        None,
        "alice is no longer a member"
    );
    for (who, id) in [("manager", ids[0]), ("owner", ids[1])] {
        let outcome = w
            .revoke(who, id)
            .await
            .unwrap_or_else(|e| panic!("{who} over a former member: {e}"));
        assert!(matches!(outcome, RevokeOutcome::Revoked(_)));
        assert_eq!(outcome.revocation().revoker, uid(who));
        assert_eq!(outcome.revocation().message_id, id);
    }
    // The remaining members were told, once per revocation.
    assert_eq!(owner.drain().len(), 2);
    // A plain member still may not revoke a former member's message.
    assert_eq!(
        refusal(w.revoke("bob", ids[2]).await),
        RevokeRefusal::NotPermitted
    );
}

/// Admins revoke anything, at any time; everyone else by the default rules.
#[derive(Debug)]
struct Admins;

#[async_trait]
impl Authorizer for Admins {
    async fn authorize(&self, ctx: &RevokeContext<'_>) -> imcore::Result<Decision> {
        if ctx.requester.as_str() == "admin" {
            return Ok(Decision::AllowAnyTime);
        }
        DefaultRevokeRules.authorize(ctx).await
    }
}

#[tokio::test]
async fn the_window_is_measured_on_the_injected_clock_and_admins_may_bypass_it() {
    let w = world_with(
        Arc::new(MemoryStore::new()),
        HubConfig::default(),
        Some(Arc::new(Admins)),
    );
    let first = w.say("alice", "one").await;
    let second = w.say("alice", "two").await;
    w.clock.advance(std::time::Duration::from_millis(120_000));
    assert!(
        w.revoke("alice", first).await.is_ok(),
        "exactly at the window's end"
    );
    w.clock.advance(std::time::Duration::from_millis(1));
    let why = refusal(w.revoke("alice", second).await);
    assert_eq!(
        why,
        RevokeRefusal::WindowExpired {
            sent_at_ms: T0,
            window_ms: 120_000,
            now_ms: T0 + 120_001
        }
    );
    assert!(w.revoke("admin", second).await.is_ok(), "admin bypass");
    // Already revoked beats an expired window.
    assert!(matches!(
        w.revoke("alice", first).await.unwrap(),
        RevokeOutcome::AlreadyRevoked(_)
    ));
    // A zero window means no limit.
    let unlimited = world_with(
        Arc::new(MemoryStore::new()),
        HubConfig::default().revoke_window(None),
        None,
    );
    let old = unlimited.say("alice", "old").await;
    unlimited
        .clock
        .advance(std::time::Duration::from_millis(365 * 24 * 3_600_000));
    assert!(unlimited.revoke("alice", old).await.is_ok());
}

#[tokio::test]
async fn commands_transients_and_unknown_messages_cannot_be_revoked() {
    let w = world();
    let cmd = w
        .hub
        .send(SendRequest::new(uid("alice"), w.group.clone(), "cmd").flags(Flags::command()))
        .await
        .unwrap();
    assert_eq!(
        refusal(w.revoke("alice", cmd.message_id).await),
        RevokeRefusal::NotRevocable
    );
    let transient = w
        .hub
        .send(SendRequest::new(uid("alice"), w.group.clone(), "t").flags(Flags::transient()))
        .await
        .unwrap();
    // A transient message has an id, but nothing was kept under it.
    match w.revoke("alice", transient.message_id).await {
        Err(Error::NotFound { what }) => {
            assert_eq!(what, format!("message {}", transient.message_id))
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(
        refusal(w.revoke("alice", MessageId(0)).await),
        RevokeRefusal::NotRevocable,
        "id 0 names no message"
    );
    match w.revoke("alice", MessageId(424242)).await {
        Err(Error::NotFound { what }) => assert_eq!(what, "message 424242"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn revoke_by_client_msg_no_and_by_seq_in_a_person_channel() {
    let w = world();
    let to_bob = Channel::new(uid("bob").into(), ChannelType::PERSON);
    let to_alice = Channel::new(uid("alice").into(), ChannelType::PERSON);
    let a = w
        .hub
        .send(
            SendRequest::new(uid("alice"), to_bob.clone(), "a1")
                .client_msg_no(ClientMsgNo::new("a-1").unwrap()),
        )
        .await
        .unwrap();
    let b = w
        .hub
        .send(SendRequest::new(uid("bob"), to_alice.clone(), "b1"))
        .await
        .unwrap();
    let by_no = w
        .hub
        .revoke(RevokeRequest::new(
            uid("alice"),
            RevokeTarget::ClientMsgNo {
                from_uid: uid("alice"),
                channel: to_bob.clone(),
                client_msg_no: ClientMsgNo::new("a-1").unwrap(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(by_no.revocation().message_id, a.message_id);
    // Bob revokes his own by seq, addressing the channel by alice's uid.
    let by_seq = w
        .hub
        .revoke(RevokeRequest::new(
            uid("bob"),
            RevokeTarget::Seq {
                channel: to_alice.clone(),
                seq: b.message_seq,
            },
        ))
        .await
        .unwrap();
    assert_eq!(by_seq.revocation().message_id, b.message_id);
    assert_eq!(by_seq.revocation().extra_version, 2, "per-channel versions");
    // In a person channel, the other side may not revoke.
    let c = w
        .hub
        .send(SendRequest::new(uid("alice"), to_bob.clone(), "a2"))
        .await
        .unwrap();
    assert_eq!(
        refusal(w.revoke("bob", c.message_id).await),
        RevokeRefusal::NotPermitted
    );
    let missing = w
        .hub
        .revoke(RevokeRequest::new(
            uid("bob"),
            RevokeTarget::Seq {
                channel: to_alice,
                seq: 99,
            },
        ))
        .await;
    assert!(matches!(missing, Err(Error::NotFound { .. })));
}

#[tokio::test]
async fn the_hubs_own_client_msg_nos_are_reserved_and_tips_are_not_revocable() {
    let w = world_with(
        Arc::new(MemoryStore::new()),
        HubConfig::default().revoke_tip(true),
        None,
    );
    let mut bob = w.connect("bob", "bob-phone", DeviceFlag::App);
    let id = w.say("alice", "oops").await;
    // A caller cannot take the hub's names for its revocation messages.
    for reserved in [
        format!("imcore:revoke:{id}"),
        format!("imcore:revoke-tip:{id}"),
    ] {
        let squat = SendRequest::new(uid("alice"), w.group.clone(), "squat")
            .client_msg_no(ClientMsgNo::new(reserved).unwrap());
        assert!(matches!(w.hub.send(squat).await, Err(Error::Validation(_))));
    }
    bob.drain();
    w.hub
        .revoke(imcore::RevokeRequest::by_id(uid("alice"), id))
        .await
        .unwrap();
    let told = bob.drain();
    assert_eq!(told.len(), 2, "the command and the tip both went out");
    let tip = told.iter().find(|m| !m.flags.sync_once).unwrap();
    assert_eq!(
        refusal(w.revoke("alice", tip.message_id).await),
        RevokeRefusal::NotRevocable
    );
}
