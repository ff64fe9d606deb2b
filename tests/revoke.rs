//! Revocation: rules, durable records, multi-device commands, history merge
//! and incremental sync.

use std::sync::Arc;

use async_trait::async_trait;
use imcore::revoke::{Authorizer, Decision, DefaultRevokeRules, RevokeContext};
use imcore::session::InProcessConnection;
use imcore::store::{Page, Store};
use imcore::{
    Channel, ChannelType, ClientMsgNo, Device, DeviceFlag, DeviceId, Error, Flags, Hub, HubConfig,
    ManualClock, MemoryDirectory, MemoryStore, MessageId, RevokeOutcome, RevokeRefusal,
    RevokeRequest, RevokeTarget, SendRequest, SledStore, Uid,
};

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

const T0: i64 = 1_700_000_000_000;

struct World {
    hub: Hub,
    directory: Arc<MemoryDirectory>,
    clock: Arc<ManualClock>,
    group: Channel,
}

fn world_with(
    store: Arc<dyn Store>,
    config: HubConfig,
    authorizer: Option<Arc<dyn Authorizer>>,
) -> World {
    let directory = Arc::new(MemoryDirectory::new());
    let clock = Arc::new(ManualClock::new(T0));
    let mut builder = Hub::builder()
        .store(store)
        .directory(directory.clone())
        .clock(clock.clone())
        .config(config);
    if let Some(a) = authorizer {
        builder = builder.authorizer(a);
    }
    let group = Channel::group("g").unwrap();
    directory.create_channel(
        &group,
        &uid("owner"),
        ["manager", "manager2", "alice", "bob"].map(uid),
    );
    directory.set_manager(&group, &uid("manager"), true);
    directory.set_manager(&group, &uid("manager2"), true);
    World {
        hub: builder.build().unwrap(),
        directory,
        clock,
        group,
    }
}

fn world() -> World {
    world_with(Arc::new(MemoryStore::new()), HubConfig::default(), None)
}

impl World {
    fn connect(&self, who: &str, device: &str, flag: DeviceFlag) -> InProcessConnection {
        let d = Device::master(uid(who), DeviceId::new(device).unwrap(), flag);
        self.hub.connect_in_process(d, 256).1
    }

    async fn say(&self, from: &str, text: &str) -> MessageId {
        self.hub
            .send(SendRequest::new(
                uid(from),
                self.group.clone(),
                text.to_string(),
            ))
            .await
            .unwrap()
            .message_id
    }

    async fn revoke(&self, who: &str, id: MessageId) -> imcore::Result<RevokeOutcome> {
        self.hub.revoke(RevokeRequest::by_id(uid(who), id)).await
    }
}

fn refusal(r: imcore::Result<RevokeOutcome>) -> RevokeRefusal {
    match r {
        Err(Error::RevokeRefused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

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
async fn record_then_tell_every_device_once() {
    let w = world();
    let mut alice_phone = w.connect("alice", "alice-phone", DeviceFlag::App);
    let mut alice_web = w.connect("alice", "alice-web", DeviceFlag::Web);
    let mut bob_phone = w.connect("bob", "bob-phone", DeviceFlag::App);
    let sent = w
        .hub
        .send(
            SendRequest::new(uid("alice"), w.group.clone(), "oops")
                .client_msg_no(ClientMsgNo::new("c-oops").unwrap()),
        )
        .await
        .unwrap();
    for conn in [&mut alice_phone, &mut alice_web, &mut bob_phone] {
        conn.drain();
    }
    let outcome = w.revoke("alice", sent.message_id).await.unwrap();
    let RevokeOutcome::Revoked(record) = &outcome else {
        panic!("revoked now")
    };
    assert_eq!(record.extra_version, 1);
    assert_eq!(record.message_seq, sent.message_seq);
    assert_eq!(record.revoked_at_ms, T0);
    // The record was durable before anyone was told: it is there now.
    assert_eq!(
        w.hub
            .store()
            .lookup_revocations(&[sent.message_id])
            .await
            .unwrap()[0]
            .as_ref(),
        Some(record)
    );
    // Every device of every member gets the command, the revoker's too.
    for conn in [&mut alice_phone, &mut alice_web, &mut bob_phone] {
        let got = conn.drain();
        assert_eq!(got.len(), 1);
        let cmd = &got[0];
        assert!(cmd.flags.sync_once);
        assert_eq!(cmd.message_seq, 0);
        let v: serde_json::Value = serde_json::from_slice(&cmd.payload).unwrap();
        assert_eq!(v["type"], 99);
        assert_eq!(v["cmd"], "messageRevoke");
        assert_eq!(v["param"]["message_id"], sent.message_id.to_string());
        assert_eq!(v["param"]["client_msg_no"], "c-oops");
        assert_eq!(v["param"]["channel_id"], "g");
        assert_eq!(v["param"]["channel_type"], 2);
        assert_eq!(v["param"]["message_seq"], sent.message_seq);
        assert_eq!(v["param"]["revoker"], "alice");
        assert_eq!(v["param"]["extra_version"], 1);
    }
    // Offline members get it once, by command sync.
    let pending = w.hub.sync_commands(&uid("owner"), 0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    w.hub
        .ack_commands(&uid("owner"), pending[0].cursor)
        .await
        .unwrap();
    // A second revocation changes nothing and sends nothing.
    let again = w.revoke("owner", sent.message_id).await.unwrap();
    assert_eq!(again, RevokeOutcome::AlreadyRevoked(record.clone()));
    for conn in [&mut alice_phone, &mut alice_web, &mut bob_phone] {
        assert!(conn.drain().is_empty());
    }
    assert!(w
        .hub
        .sync_commands(&uid("owner"), 0, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_revocations_make_one_record_and_one_command() {
    let w = world();
    let mut bob = w.connect("bob", "bob-phone", DeviceFlag::App);
    let id = w.say("alice", "contested").await;
    bob.drain();
    let mut tasks = Vec::new();
    for who in [
        "alice", "owner", "manager", "alice", "owner", "manager", "alice", "owner",
    ] {
        let hub = w.hub.clone();
        tasks.push(tokio::spawn(async move {
            hub.revoke(RevokeRequest::by_id(uid(who), id))
                .await
                .unwrap()
        }));
    }
    let mut fresh = 0;
    let mut records = Vec::new();
    for t in tasks {
        let outcome = t.await.unwrap();
        if matches!(outcome, RevokeOutcome::Revoked(_)) {
            fresh += 1;
        }
        records.push(outcome.revocation().clone());
    }
    assert_eq!(fresh, 1);
    assert!(
        records.windows(2).all(|p| p[0] == p[1]),
        "everyone sees the first record"
    );
    assert_eq!(bob.drain().len(), 1, "one command");
    assert_eq!(
        w.hub
            .sync_commands(&uid("owner"), 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn history_reads_mark_revoked_messages_and_strip_their_content() {
    let w = world();
    let ids = [
        w.say("alice", "keep").await,
        w.say("alice", "secret").await,
        w.say("bob", "also keep").await,
    ];
    w.revoke("alice", ids[1]).await.unwrap();
    let page = w
        .hub
        .sync_channel(&uid("bob"), &w.group, Page::forward(1, 10))
        .await
        .unwrap();
    assert_eq!(page.len(), 3);
    assert!(page[0].revoked.is_none());
    assert_eq!(page[0].payload.as_ref(), b"keep");
    let revoked = page[1].revoked.as_ref().expect("marked");
    assert_eq!(
        (revoked.revoker.as_str(), revoked.revoked_at_ms),
        ("alice", T0)
    );
    assert!(
        page[1].payload.is_empty(),
        "revoked content never leaves the crate"
    );
    assert_eq!(page[2].payload.as_ref(), b"also keep");

    // The host may keep payloads.
    let keep = world_with(
        Arc::new(MemoryStore::new()),
        HubConfig::default().strip_revoked_payload(false),
        None,
    );
    let id = keep.say("alice", "kept").await;
    keep.revoke("alice", id).await.unwrap();
    let page = keep
        .hub
        .sync_channel(&uid("bob"), &keep.group, Page::latest(1))
        .await
        .unwrap();
    assert!(page[0].revoked.is_some());
    assert_eq!(page[0].payload.as_ref(), b"kept");
}

#[tokio::test]
async fn revoking_the_last_message_shows_in_the_conversation() {
    let w = world();
    w.say("alice", "first").await;
    let last = w.say("alice", "last").await;
    w.revoke("alice", last).await.unwrap();
    let convs = w.hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    let last_message = convs[0].last_message.as_ref().unwrap();
    assert_eq!(last_message.message_id, last);
    assert!(last_message.revoked.is_some());
    assert!(last_message.payload.is_empty());
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
async fn the_tip_message_is_appended_when_configured() {
    let w = world_with(
        Arc::new(MemoryStore::new()),
        HubConfig::default().revoke_tip(true),
        None,
    );
    w.directory.set_display_name(&uid("alice"), "Alice");
    let id = w.say("alice", "oops").await;
    w.revoke("alice", id).await.unwrap();
    w.revoke("alice", id).await.unwrap();
    let page = w
        .hub
        .sync_channel(&uid("bob"), &w.group, Page::forward(1, 10))
        .await
        .unwrap();
    assert_eq!(page.len(), 2, "one tip, however often revoked");
    let tip: serde_json::Value = serde_json::from_slice(&page[1].payload).unwrap();
    assert_eq!(tip["type"], 1006);
    assert_eq!(tip["message_id"], id.to_string());
    assert_eq!(tip["content"], "{0}撤回了一条消息");
    assert_eq!(tip["extra"][0]["uid"], "alice");
    assert_eq!(tip["extra"][0]["name"], "Alice");
    let bob = w.hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    assert_eq!(bob[0].conversation.unread, 1, "the tip raises no unread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_revocation_sync_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let w = world_with(
            Arc::new(SledStore::open(dir.path()).unwrap()),
            HubConfig::default(),
            None,
        );
        for i in 0..5 {
            ids.push(w.say("alice", &format!("m{i}")).await);
        }
        for id in &ids[..3] {
            w.revoke("alice", *id).await.unwrap();
        }
    }
    let w = world_with(
        Arc::new(SledStore::open(dir.path()).unwrap()),
        HubConfig::default(),
        None,
    );
    let all = w
        .hub
        .sync_revocations(&uid("bob"), &w.group, 0, 100)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.extra_version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let page = w
        .hub
        .sync_revocations(&uid("bob"), &w.group, 1, 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].message_id, ids[1]);
    w.revoke("alice", ids[4]).await.unwrap();
    let after = w
        .hub
        .sync_revocations(&uid("bob"), &w.group, 3, 100)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!((after[0].extra_version, after[0].message_id), (4, ids[4]));
    // Only readers of the channel may sync it.
    assert!(matches!(
        w.hub
            .sync_revocations(&uid("stranger"), &w.group, 0, 10)
            .await,
        Err(Error::Rejected { .. })
    ));
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
