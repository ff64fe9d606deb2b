//! Safe resends through the hub: a message is known by its sender, its
//! channel and the sender's number for it; the same number with another
//! payload is refused; empty payloads are refused; transient messages get
//! ids; an acking in-process connection consumes commands.

use std::sync::Arc;

use imcore::store::Page;
use imcore::{
    Channel, ClientMsgNo, Device, DeviceFlag, DeviceId, Error, Flags, Hub, MemoryDirectory,
    Persistence, ReasonCode, SendRequest, Uid, ValidationError,
};

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

fn no(s: &str) -> ClientMsgNo {
    ClientMsgNo::new(s).unwrap()
}

/// A hub with groups `a` and `b`, both with alice and bob.
fn hub() -> (Hub, Channel, Channel) {
    let directory = Arc::new(MemoryDirectory::new());
    let (a, b) = (Channel::group("a").unwrap(), Channel::group("b").unwrap());
    for g in [&a, &b] {
        directory.create_channel(g, &uid("alice"), [uid("bob")]);
    }
    let hub = Hub::builder().directory(directory).build().unwrap();
    (hub, a, b)
}

#[tokio::test]
async fn one_number_in_two_channels_is_two_messages() {
    let (hub, a, b) = hub();
    let send = |channel: &Channel, payload: &'static str| {
        SendRequest::new(uid("alice"), channel.clone(), payload).client_msg_no(no("n-1"))
    };
    let in_a = hub.send(send(&a, "to a")).await.unwrap();
    let in_b = hub.send(send(&b, "to b")).await.unwrap();
    assert!(!in_a.duplicate && !in_b.duplicate);
    assert_ne!(in_a.message_id, in_b.message_id);
    for (channel, payload) in [(&a, "to a"), (&b, "to b")] {
        let page = hub
            .sync_channel(&uid("bob"), channel, Page::forward(1, 10))
            .await
            .unwrap();
        let got: Vec<_> = page.iter().map(|m| m.payload.clone()).collect();
        assert_eq!(got, [payload], "{channel}");
    }
    // The same resend is a duplicate in its own channel.
    let again = hub.send(send(&b, "to b")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message_id, in_b.message_id);
}

#[tokio::test]
async fn a_resend_with_another_payload_is_a_conflict() {
    let (hub, a, _) = hub();
    let first = SendRequest::new(uid("alice"), a.clone(), "first").client_msg_no(no("n-1"));
    hub.send(first).await.unwrap();
    let changed = SendRequest::new(uid("alice"), a.clone(), "changed").client_msg_no(no("n-1"));
    let refused = hub.send(changed).await.unwrap_err();
    assert!(
        matches!(&refused, Error::Conflict { uid, channel, client_msg_no }
            if uid == "alice" && *channel == a.to_string() && client_msg_no == "n-1"),
        "{refused:?}"
    );
    assert_eq!(refused.reason_code(), Some(ReasonCode::NOT_ALLOW_SEND));
    let page = hub
        .sync_channel(&uid("bob"), &a, Page::forward(1, 10))
        .await
        .unwrap();
    let got: Vec<_> = page.iter().map(|m| m.payload.clone()).collect();
    assert_eq!(got, ["first"], "the first message stands");
}

#[tokio::test]
async fn commands_are_known_the_same_way() {
    let (hub, a, b) = hub();
    let command = |channel: &Channel, payload: &'static str| {
        SendRequest::new(uid("alice"), channel.clone(), payload)
            .flags(Flags::command())
            .client_msg_no(no("c-1"))
    };
    let first = hub.send(command(&a, "x")).await.unwrap();
    assert_eq!(first.persistence, Persistence::Command);
    assert!(!hub.send(command(&b, "y")).await.unwrap().duplicate);
    let again = hub.send(command(&a, "x")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message_id, first.message_id);
    let changed = hub.send(command(&a, "z")).await;
    assert!(
        matches!(changed, Err(Error::Conflict { .. })),
        "{changed:?}"
    );
    let queued = hub.sync_commands(&uid("bob"), 0, 10).await.unwrap();
    let got: Vec<_> = queued.iter().map(|c| c.message.payload.clone()).collect();
    assert_eq!(got, ["x", "y"]);
}

#[tokio::test]
async fn an_empty_payload_is_refused_and_nothing_is_stored() {
    let (hub, a, _) = hub();
    for flags in [Flags::normal(), Flags::command(), Flags::transient()] {
        let empty = SendRequest::new(uid("alice"), a.clone(), "").flags(flags);
        let refused = hub.send(empty).await.unwrap_err();
        assert!(
            matches!(refused, Error::Validation(ValidationError::EmptyPayload)),
            "{refused:?}"
        );
        assert_eq!(refused.reason_code(), Some(ReasonCode::NOT_ALLOW_SEND));
    }
    assert_eq!(hub.store().last_seq(&a).await.unwrap(), 0);
    assert!(hub
        .sync_commands(&uid("bob"), 0, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_acking_connection_consumes_commands_on_a_master_only() {
    let (hub, a, _) = hub();
    let device = |flag, id: &str| DeviceId::new(id).map(|d| (flag, d)).unwrap();
    let (flag, id) = device(DeviceFlag::App, "phone");
    let mut master = hub.connect_in_process_acking(Device::master(uid("bob"), id, flag), 8);
    let (flag, id) = device(DeviceFlag::Web, "web");
    let mut slave = hub.connect_in_process_acking(Device::slave(uid("alice"), id, flag), 8);
    let to_both = |payload: &'static str| {
        SendRequest::command_to(uid("system"), vec![uid("alice"), uid("bob")], payload)
    };
    let sent = hub.send(to_both("cmd")).await.unwrap();
    assert_eq!(master.recv().await.unwrap().message_id, sent.message_id);
    assert_eq!(slave.recv().await.unwrap().message_id, sent.message_id);
    assert!(
        hub.sync_commands(&uid("bob"), 0, 10)
            .await
            .unwrap()
            .is_empty(),
        "a master's receipt consumes it"
    );
    let alice = hub.sync_commands(&uid("alice"), 0, 10).await.unwrap();
    assert_eq!(alice.len(), 1, "a slave's does not");
    // History passes through untouched.
    let hello = SendRequest::new(uid("alice"), a.clone(), "hello");
    let sent = hub.send(hello).await.unwrap();
    assert_eq!(master.recv().await.unwrap().message_seq, sent.message_seq);
}

#[tokio::test]
async fn transient_messages_get_ids_of_their_own() {
    let (hub, a, _) = hub();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let typing = SendRequest::new(uid("alice"), a.clone(), "…").flags(Flags::transient());
        let ack = hub.send(typing).await.unwrap();
        assert_eq!(
            (ack.persistence, ack.message_seq),
            (Persistence::Transient, 0)
        );
        ids.push(ack.message_id);
    }
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique, ids, "distinct");
    assert!(ids.iter().all(|id| id.0 != 0));
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing");
}
