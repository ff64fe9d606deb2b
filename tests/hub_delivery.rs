//! Delivery of history and transient messages: history that survives a
//! reopened store, transient messages for online devices only, person
//! channels both ways, one copy per device in a group of 1,000, resends,
//! offline push, the payload limit and the sending device's exclusion.

#[path = "common/hub_world.rs"]
mod hub_world;

use std::collections::HashMap;
use std::sync::Arc;

use hub_world::{dev, no, payloads, person, uid, world, world_on};
use imcore::store::Page;
use imcore::{
    Channel, Device, DeviceFlag, Error, Flags, MessageId, Persistence, ReasonCode, SendRequest,
    SledStore,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_send_without_sync_once_is_history_and_survives_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let g = Channel::group("g").unwrap();
    let first_id;
    {
        let mut w = world_on(Arc::new(SledStore::open(dir.path()).unwrap()));
        w.directory
            .create_channel(&g, &uid("system"), [uid("alice"), uid("bob")]);
        let (_, mut alice) = w.phone("alice");
        let ack = w
            .hub
            .send(
                SendRequest::new(
                    uid("system"),
                    g.clone(),
                    r#"{"type":1,"content":"invited"}"#,
                )
                .flags(Flags {
                    sync_once: false,
                    red_dot: true,
                    ..Flags::default()
                }),
            )
            .await
            .unwrap();
        assert_eq!(ack.persistence, Persistence::History);
        assert_eq!(ack.message_seq, 1);
        first_id = ack.message_id;
        assert_eq!(alice.drain().len(), 1);
        let (_, offline) = w.pushes.recv().await.unwrap();
        assert_eq!(offline, vec![uid("bob")]);
    }
    // "Refresh": a new hub on the reopened store.
    let w = world_on(Arc::new(SledStore::open(dir.path()).unwrap()));
    w.directory
        .create_channel(&g, &uid("system"), [uid("alice"), uid("bob")]);
    for reader in ["alice", "bob"] {
        let history = w
            .hub
            .sync_channel(&uid(reader), &g, Page::forward(1, 100))
            .await
            .unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].message_id, first_id);
        assert_eq!(history[0].message_seq, 1);
        let convs = w
            .hub
            .sync_conversations(&uid(reader), 0, 100)
            .await
            .unwrap();
        assert_eq!(convs.len(), 1);
        assert_eq!(convs[0].conversation.unread, 1, "{reader} has one unread");
        assert_eq!(convs[0].conversation.last_seq, 1);
        assert_eq!(
            convs[0].last_message.as_ref().map(|m| m.message_id),
            Some(first_id)
        );
    }
    let sender = w
        .hub
        .sync_conversations(&uid("system"), 0, 100)
        .await
        .unwrap();
    assert_eq!(
        sender[0].conversation.unread, 0,
        "never the sender's unread"
    );
}

#[tokio::test]
async fn transient_is_delivered_online_only_and_stored_nowhere() {
    let mut w = world();
    let g = w.group("g", "alice", &["bob", "carol"]);
    let (alice_id, mut alice) = w.phone("alice");
    let (_, mut bob) = w.phone("bob");
    let (_, mut bob_web) = w.web("bob");
    let mut seen_ids = std::collections::HashSet::new();
    for flags in [
        Flags::transient(),
        Flags {
            no_persist: true,
            sync_once: true,
            ..Flags::default()
        },
    ] {
        let ack = w
            .hub
            .send(
                SendRequest::new(uid("alice"), g.clone(), "typing…")
                    .flags(flags)
                    .from_connection(alice_id),
            )
            .await
            .unwrap();
        assert_eq!(ack.persistence, Persistence::Transient);
        assert_eq!(ack.message_seq, 0);
        assert_ne!(ack.message_id, MessageId(0), "an id, as WuKongIM gives");
        assert!(seen_ids.insert(ack.message_id), "each its own");
        let got: Vec<_> = bob
            .drain()
            .iter()
            .map(|m| (m.message_id, m.payload.clone()))
            .collect();
        assert_eq!(got, [(ack.message_id, "typing…".into())]);
        assert_eq!(payloads(&mut bob_web), vec!["typing…"]);
        assert!(alice.drain().is_empty(), "not to the sending device");
    }
    assert_eq!(w.hub.store().last_seq(&g).await.unwrap(), 0);
    for u in ["alice", "bob", "carol"] {
        assert!(w
            .hub
            .sync_conversations(&uid(u), 0, 10)
            .await
            .unwrap()
            .is_empty());
        assert!(w
            .hub
            .sync_commands(&uid(u), 0, 10)
            .await
            .unwrap()
            .is_empty());
    }
    // Offline carol is never told: nothing was pushed.
    assert!(w.pushes.try_recv().is_err());
}

#[tokio::test]
async fn person_channel_works_both_ways_under_one_id() {
    let w = world();
    let (a_id, mut alice) = w.phone("alice");
    let (b_id, mut bob) = w.phone("bob");
    let (_, mut alice_web) = w.web("alice");
    let a1 = w
        .hub
        .send(SendRequest::new(uid("alice"), person("bob"), "hi bob").from_connection(a_id))
        .await
        .unwrap();
    let b1 = w
        .hub
        .send(SendRequest::new(uid("bob"), person("alice"), "hi alice").from_connection(b_id))
        .await
        .unwrap();
    assert_eq!(
        (a1.message_seq, b1.message_seq),
        (1, 2),
        "one channel, one seq space"
    );
    let to_bob = bob.drain();
    assert_eq!(to_bob.len(), 1);
    assert_eq!(to_bob[0].channel.as_seen_by(&uid("bob")), person("alice"));
    let to_alice = alice.drain();
    assert_eq!(to_alice.len(), 1);
    assert_eq!(to_alice[0].channel.as_seen_by(&uid("alice")), person("bob"));
    // Alice's other device sees both, in order.
    assert_eq!(payloads(&mut alice_web), vec!["hi bob", "hi alice"]);
    // Both read the same history, each addressing the other.
    let from_alice = w
        .hub
        .sync_channel(&uid("alice"), &person("bob"), Page::forward(1, 10))
        .await
        .unwrap();
    let from_bob = w
        .hub
        .sync_channel(&uid("bob"), &person("alice"), Page::forward(1, 10))
        .await
        .unwrap();
    assert_eq!(from_alice, from_bob);
    assert_eq!(from_alice.len(), 2);
    // Each conversation list names the other side.
    let convs = w.hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    assert_eq!(convs[0].channel, person("alice"));
    assert_eq!(
        convs[0].conversation.unread, 0,
        "bob answered: his own send reads the channel up to it"
    );
    let convs = w
        .hub
        .sync_conversations(&uid("alice"), 0, 10)
        .await
        .unwrap();
    assert_eq!(convs[0].channel, person("bob"));
    assert_eq!(convs[0].conversation.unread, 1, "bob's answer, not her own");
    // A stranger may not read it.
    let refused = w
        .hub
        .sync_channel(
            &uid("eve"),
            &Channel::person(&uid("alice"), &uid("bob")),
            Page::forward(1, 10),
        )
        .await;
    assert!(matches!(
        refused,
        Err(Error::Rejected {
            reason: ReasonCode::SUBSCRIBER_NOT_EXIST,
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_1000_with_3_devices_each_gets_one_copy_per_device() {
    let w = world();
    let members: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let g = w.group("big", "m0", &refs[1..]);
    let mut conns = HashMap::new();
    for m in &members {
        for (flag, name) in [
            (DeviceFlag::App, "app"),
            (DeviceFlag::Web, "web"),
            (DeviceFlag::Pc, "pc"),
        ] {
            let device = Device::master(uid(m), dev(&format!("{m}-{name}")), flag);
            let (id, conn) = w.hub.connect_in_process(device, 8);
            conns.insert((m.clone(), name), (id, conn));
        }
    }
    assert_eq!(w.hub.connection_count(), 3000);
    let sender = conns[&("m7".to_string(), "web")].0;
    let ack = w
        .hub
        .send(SendRequest::new(uid("m7"), g, "to everyone").from_connection(sender))
        .await
        .unwrap();
    let mut copies = 0;
    for ((m, name), (_, conn)) in conns.iter_mut() {
        let got = conn.drain();
        if m == "m7" && *name == "web" {
            assert!(got.is_empty(), "the sending device gets none");
        } else {
            assert_eq!(got.len(), 1, "{m}/{name}");
            assert_eq!(got[0].message_id, ack.message_id);
            copies += 1;
        }
    }
    assert_eq!(copies, 2999);
}

#[tokio::test]
async fn resends_are_acked_with_the_first_ids_and_not_delivered_again() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    let (_, mut bob) = w.phone("bob");
    for flags in [Flags::normal(), Flags::command()] {
        let tag = if flags.sync_once { "cmd" } else { "msg" };
        let req = SendRequest::new(uid("alice"), g.clone(), tag)
            .flags(flags)
            .client_msg_no(no(&format!("c-{tag}")));
        let first = w.hub.send(req.clone()).await.unwrap();
        let again = w.hub.send(req).await.unwrap();
        assert!(!first.duplicate);
        assert!(again.duplicate);
        assert_eq!(
            (again.message_id, again.message_seq),
            (first.message_id, first.message_seq)
        );
        assert_eq!(payloads(&mut bob), vec![tag], "delivered once");
    }
    assert_eq!(w.hub.store().last_seq(&g).await.unwrap(), 1);
    assert_eq!(
        w.hub.sync_commands(&uid("bob"), 0, 10).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn offline_push_names_users_without_a_master_online() {
    let mut w = world();
    let g = w.group("g", "alice", &["bob", "carol", "dave"]);
    let (_, _bob) = w.phone("bob");
    let (_, _carol_web) = w.web("carol"); // slave only: offline for push
                                          // alice (the sender) is offline too, but never pushed.
    let ack = w
        .hub
        .send(SendRequest::new(uid("alice"), g.clone(), "hello"))
        .await
        .unwrap();
    let (message, mut offline) = w.pushes.recv().await.unwrap();
    offline.sort();
    assert_eq!(offline, vec![uid("carol"), uid("dave")]);
    assert_eq!(message.message_id, ack.message_id);
    assert_eq!(message.message_seq, 1, "pushed after it was stored");
}

#[tokio::test]
async fn oversized_payloads_are_refused_before_anything_is_stored() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    let (_, mut bob) = w.phone("bob");
    let limit = w.hub.config().limits.max_payload;
    let err = w
        .hub
        .send(SendRequest::new(
            uid("alice"),
            g.clone(),
            vec![b'x'; limit + 1],
        ))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Validation(imcore::ValidationError::PayloadTooLarge { .. })
    ));
    w.hub
        .send(SendRequest::new(uid("alice"), g.clone(), vec![b'x'; limit]))
        .await
        .unwrap();
    assert_eq!(w.hub.store().last_seq(&g).await.unwrap(), 1);
    assert_eq!(bob.drain().len(), 1);
    assert!(matches!(
        w.hub
            .sync_channel(&uid("bob"), &g, Page::forward(1, 0))
            .await,
        Err(Error::Validation(_))
    ));
}

#[tokio::test]
async fn naming_someone_elses_connection_suppresses_nothing() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    let (bob_id, mut bob) = w.phone("bob");
    w.hub
        .send(SendRequest::new(uid("alice"), g, "hi").from_connection(bob_id))
        .await
        .unwrap();
    assert_eq!(payloads(&mut bob), vec!["hi"]);
}
