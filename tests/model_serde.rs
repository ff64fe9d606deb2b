//! Serde of the model: messages round-trip through JSON (fixed cases and
//! any message), invalid JSON messages are errors, ids deserialize with
//! their validation.

#[path = "common/model_helpers.rs"]
mod model_helpers;

use bytes::Bytes;
use imcore::model::MAX_ID_LEN;
use imcore::{Channel, ChannelId, ChannelType, ClientMsgNo, Flags, Message, MessageId, Uid};
use model_helpers::{any_uid, uid};
use proptest::prelude::*;

fn message(flags: Flags, payload: Bytes) -> Message {
    let alice = uid("alice");
    Message::new(
        MessageId(42),
        ClientMsgNo::new("c-1").unwrap(),
        alice.clone(),
        Channel::person(&alice, &uid("bob")),
        1_700_000_000_123,
        payload,
    )
    .seq(7)
    .flags(flags)
}

#[test]
fn message_round_trips_through_json() {
    for flags in [Flags::normal(), Flags::command(), Flags::transient()] {
        let m = message(flags, Bytes::from_static(br#"{"type":1,"content":"hi"}"#));
        let json = serde_json::to_string(&m).unwrap();
        let back: Message = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }
    // A group message with a host-defined channel type.
    let mut m = message(Flags::normal(), Bytes::new());
    m.channel = Channel::new(
        ChannelId::new("room@1").unwrap(),
        ChannelType::try_from(200).unwrap(),
    );
    let back: Message = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
    assert_eq!(back, m);
}

/// A valid message as JSON, with `edit` applied, deserialized.
fn from_edited_json(edit: impl FnOnce(&mut serde_json::Value)) -> serde_json::Result<Message> {
    let mut value =
        serde_json::to_value(message(Flags::normal(), Bytes::from_static(b"x"))).unwrap();
    edit(&mut value);
    serde_json::from_value(value)
}

/// A change to a message's JSON.
type Edit = dyn FnOnce(&mut serde_json::Value);

#[test]
fn invalid_json_messages_are_errors() {
    // The unedited message is fine, so each failure below is the edit's.
    assert!(from_edited_json(|_| {}).is_ok());

    let bad: Vec<(&str, Box<Edit>)> = vec![
        ("empty uid", Box::new(|v| v["from_uid"] = "".into())),
        ("'@' in uid", Box::new(|v| v["from_uid"] = "a@b".into())),
        ("'#' in uid", Box::new(|v| v["from_uid"] = "a#b".into())),
        (
            "uid too long",
            Box::new(|v| v["from_uid"] = "u".repeat(MAX_ID_LEN + 1).into()),
        ),
        (
            "empty client_msg_no",
            Box::new(|v| v["client_msg_no"] = "".into()),
        ),
        (
            "empty channel id",
            Box::new(|v| v["channel"]["id"] = "".into()),
        ),
        (
            "channel type 0",
            Box::new(|v| v["channel"]["channel_type"] = 0.into()),
        ),
        (
            "channel type 256",
            Box::new(|v| v["channel"]["channel_type"] = 256.into()),
        ),
        ("uid not a string", Box::new(|v| v["from_uid"] = 5.into())),
        (
            "missing channel",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("channel");
            }),
        ),
    ];
    for (what, edit) in bad {
        assert!(from_edited_json(edit).is_err(), "{what} was accepted");
    }

    for text in [
        "",
        "{",
        "null",
        "[]",
        r#"{"message_id":1}"#,
        r#"{"message_id":"x"}"#,
        "\u{0}",
    ] {
        assert!(serde_json::from_str::<Message>(text).is_err(), "{text:?}");
    }
    // Flags that are absent default to false.
    let m = from_edited_json(|v| v["flags"] = serde_json::json!({ "sync_once": true })).unwrap();
    assert_eq!(m.flags, Flags::command());
}

#[test]
fn ids_deserialize_with_validation() {
    assert_eq!(serde_json::from_str::<Uid>(r#""bob""#).unwrap(), uid("bob"));
    assert!(serde_json::from_str::<Uid>(r#""""#).is_err());
    assert!(serde_json::from_str::<Uid>(r#""b&b""#).is_err());
    assert!(serde_json::from_str::<ChannelType>("0").is_err());
    assert_eq!(
        serde_json::from_str::<ChannelType>("2").unwrap(),
        ChannelType::GROUP
    );
    assert_eq!(serde_json::to_string(&ChannelType::INFO).unwrap(), "6");
    assert_eq!(serde_json::to_string(&MessageId(9)).unwrap(), "9");
}

fn any_flags() -> impl Strategy<Value = Flags> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(dup, sync_once, red_dot, no_persist)| Flags {
            dup,
            sync_once,
            red_dot,
            no_persist,
        },
    )
}

proptest! {
    #[test]
    fn any_message_round_trips_through_json(
        payload in proptest::collection::vec(any::<u8>(), 0..512),
        flags in any_flags(),
        message_id in 0..(1u64 << 63),
        message_seq in any::<u64>(),
        timestamp_ms in any::<i64>(),
        from in any_uid(),
        to in any_uid(),
        client_msg_no in "[^\\p{Cc}]{1,16}",
        group in prop::option::of("[^\\p{Cc}]{1,32}"),
    ) {
        let channel = match group {
            Some(g) => Channel::group(g).unwrap(),
            None => Channel::person(&from, &to),
        };
        let m = Message::new(
            MessageId(message_id),
            ClientMsgNo::new(client_msg_no).unwrap(),
            from,
            channel,
            timestamp_ms,
            Bytes::from(payload),
        )
        .seq(message_seq)
        .flags(flags);
        let json = serde_json::to_vec(&m).unwrap();
        let back: Message = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(back, m);
    }
}
