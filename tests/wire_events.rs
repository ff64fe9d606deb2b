//! Message events on the wire: a protocol-5 client gets each event as an
//! EVENT packet, in `msg_event_seq` order, with WuKongIM's push fields; a
//! version-2 client (the JS SDK's) gets none and stays connected.

mod common;

use common::{world, Client};
use imcore::event::{NewEvent, STREAM_CLOSE, STREAM_DELTA};
use imcore::wire::Packet;
use imcore::{Channel, ChannelType, ClientMsgNo, EventId, SendRequest, Uid};
use serde_json::Value;

const WEB: u8 = 1;

#[tokio::test]
async fn a_version_5_client_gets_events_and_a_version_2_client_does_not() {
    let w = world();
    let mut v5 = Client::open(&w.server, 64);
    v5.speak(5);
    v5.login("bob", WEB).await;
    let mut v2 = Client::open(&w.server, 64);
    v2.login("bob", 0).await;

    let (bot, bob) = (Uid::new("bot").unwrap(), Uid::new("bob").unwrap());
    let to_bob = Channel::new(bob.into(), ChannelType::PERSON);
    let reply = ClientMsgNo::new("reply").unwrap();
    w.hub
        .send(
            SendRequest::new(bot.clone(), to_bob.clone(), r#"{"type":1,"content":""}"#)
                .client_msg_no(reply.clone()),
        )
        .await
        .unwrap();
    for c in [&mut v5, &mut v2] {
        assert_eq!(c.recv().await.client_msg_no, "reply");
    }
    let pieces = [
        ("a", STREAM_DELTA, r#"{"kind":"text","delta":"Hi"}"#),
        ("b", STREAM_CLOSE, "{}"),
    ];
    for (id, kind, payload) in pieces {
        let e = NewEvent::new(
            to_bob.clone(),
            reply.clone(),
            EventId::new(id).unwrap(),
            kind,
            bot.clone(),
            payload,
        )
        .unwrap();
        w.hub.append_event(e).await.unwrap();
    }
    for (i, (id, kind, _)) in pieces.iter().enumerate() {
        let Some(Packet::Event(e)) = v5.next().await else {
            panic!("expected EVENT {id}")
        };
        assert_eq!((e.id.as_str(), e.event_type.as_str()), (*id, *kind));
        let data: Value = serde_json::from_slice(&e.data).unwrap();
        assert_eq!(data["msg_event_seq"], i as u64 + 1);
        assert_eq!(data["client_msg_no"], "reply");
        assert_eq!(data["channel_id"], "bot", "the channel as bob calls it");
        assert_eq!(data["from_uid"], "bot");
        assert_eq!(
            data["stream_status"],
            if i == 0 { "open" } else { "closed" }
        );
    }
    // The version-2 client got nothing for the events, and still talks.
    v2.packet(&Packet::Ping);
    assert!(
        matches!(v2.next().await, Some(Packet::Pong)),
        "no EVENT, then PONG"
    );
}
