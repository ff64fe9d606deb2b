//! The message model: header flags, person channel ids, identifier
//! validation, serde and message ids.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Barrier};

use bytes::Bytes;
use imcore::id::{ID_EPOCH_MS, MAX_NODE};
use imcore::model::{DEFAULT_MAX_PAYLOAD, MAX_CHANNEL_ID_LEN, MAX_ID_LEN};
use imcore::{
    Channel, ChannelId, ChannelType, ClientMsgNo, DeviceId, Error, Flags, IdKind, Limits,
    ManualClock, Message, MessageId, MessageIdGenerator, Uid, ValidationError,
};
use proptest::prelude::*;

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

/// The validation error inside `r`, failing the test on anything else.
fn validation<T: Debug>(r: imcore::Result<T>) -> ValidationError {
    match r {
        Err(Error::Validation(v)) => v,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

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

// ---------------------------------------------------------------------------
// 1. Flags <-> header byte
// ---------------------------------------------------------------------------

#[test]
fn every_header_byte_round_trips_and_each_bit_is_its_field() {
    for b in 0..=255u8 {
        let (packet_type, flags) = Flags::from_header_byte(b);
        assert_eq!(packet_type, b / 16, "packet type of {b:#04x}");
        // WuKongIM: dup = bit 3, sync_once = bit 2, red_dot = bit 1,
        // no_persist = bit 0.
        assert_eq!(flags.dup, (b >> 3) & 1 == 1, "dup of {b:#04x}");
        assert_eq!(flags.sync_once, (b >> 2) & 1 == 1, "sync_once of {b:#04x}");
        assert_eq!(flags.red_dot, (b >> 1) & 1 == 1, "red_dot of {b:#04x}");
        assert_eq!(flags.no_persist, b & 1 == 1, "no_persist of {b:#04x}");
        assert_eq!(flags.header_byte(packet_type), b, "round trip of {b:#04x}");
        assert_eq!(flags.bits(), b % 16, "bits of {b:#04x}");
        // from_bits ignores the high nibble.
        assert_eq!(Flags::from_bits(b), flags);
        assert_eq!(Flags::from_bits(b % 16), flags);
    }
}

#[test]
fn single_flags_set_exactly_their_own_bit() {
    let none = Flags::default();
    assert_eq!(none.bits(), 0);
    let cases = [
        (Flags { dup: true, ..none }, 0b1000),
        (
            Flags {
                sync_once: true,
                ..none
            },
            0b0100,
        ),
        (
            Flags {
                red_dot: true,
                ..none
            },
            0b0010,
        ),
        (
            Flags {
                no_persist: true,
                ..none
            },
            0b0001,
        ),
    ];
    for (flags, bit) in cases {
        assert_eq!(flags.bits(), bit, "{flags:?}");
        // SEND is packet type 3.
        assert_eq!(flags.header_byte(3), 0x30 | bit, "{flags:?}");
    }
}

#[test]
fn header_byte_uses_only_the_low_nibble_of_the_packet_type() {
    for packet_type in 0..=255u8 {
        let byte = Flags::normal().header_byte(packet_type);
        assert_eq!(byte >> 4, packet_type & 0x0f, "packet type {packet_type}");
        assert_eq!(byte & 0x0f, 0b0010);
    }
}

#[test]
fn named_flag_sets_have_the_documented_bits() {
    // normal: history with a red dot.
    assert_eq!(
        Flags::normal(),
        Flags {
            dup: false,
            sync_once: false,
            red_dot: true,
            no_persist: false
        }
    );
    assert_eq!(Flags::normal().header_byte(3), 0x32);
    // command: sync_once, no red dot.
    assert_eq!(
        Flags::command(),
        Flags {
            dup: false,
            sync_once: true,
            red_dot: false,
            no_persist: false
        }
    );
    assert_eq!(Flags::command().header_byte(3), 0x34);
    // transient: no_persist only.
    assert_eq!(
        Flags::transient(),
        Flags {
            dup: false,
            sync_once: false,
            red_dot: false,
            no_persist: true
        }
    );
    assert_eq!(Flags::transient().header_byte(3), 0x31);
}

// ---------------------------------------------------------------------------
// 2. Person channels
// ---------------------------------------------------------------------------

/// WuKongIM's `GetFakeChannelIDWith`, ported line by line: the uid with the
/// larger CRC32 (IEEE) first; on a tie, the second argument first.
fn wukong_fake_channel_id(from_uid: &str, to_uid: &str) -> String {
    let from_hash = crc32fast::hash(from_uid.as_bytes());
    let to_hash = crc32fast::hash(to_uid.as_bytes());
    if from_hash > to_hash {
        return format!("{from_uid}@{to_uid}");
    }
    format!("{to_uid}@{from_uid}")
}

/// Any valid uid: 1 to 16 characters (so at most 64 bytes), no control
/// characters and none of `@`, `#`, `&`.
fn any_uid() -> impl Strategy<Value = Uid> {
    "[^@#&\\p{Cc}]{1,16}".prop_map(|s| Uid::new(s).expect("strategy makes valid uids"))
}

/// Short ASCII uids, so that equal pairs and shared prefixes come up.
fn small_uid() -> impl Strategy<Value = Uid> {
    "[a-c0-2]{1,3}".prop_map(|s| Uid::new(s).unwrap())
}

proptest! {
    #[test]
    fn person_channel_is_symmetric_and_matches_wukongim(a in any_uid(), b in any_uid()) {
        let ab = Channel::person(&a, &b);
        let ba = Channel::person(&b, &a);
        prop_assert_eq!(&ab, &ba);
        prop_assert_eq!(ab.kind, ChannelType::PERSON);
        prop_assert!(ab.id.as_str().len() <= MAX_CHANNEL_ID_LEN);

        let (ha, hb) = (crc32fast::hash(a.as_str().as_bytes()), crc32fast::hash(b.as_str().as_bytes()));
        if ha != hb {
            let (first, second) = if ha > hb { (&a, &b) } else { (&b, &a) };
            prop_assert_eq!(ab.id.as_str(), format!("{first}@{second}"));
            prop_assert_eq!(ab.id.as_str(), wukong_fake_channel_id(a.as_str(), b.as_str()));
            prop_assert_eq!(ab.id.as_str(), wukong_fake_channel_id(b.as_str(), a.as_str()));
        }

        // Each side sees the other's uid.
        prop_assert_eq!(ab.as_seen_by(&a), Channel::new(b.clone().into(), ChannelType::PERSON));
        prop_assert_eq!(ab.as_seen_by(&b), Channel::new(a.clone().into(), ChannelType::PERSON));

        // The parties come back out, in id order.
        let (p, q) = ab.person_parties().expect("a stored person channel has parties");
        prop_assert_eq!(format!("{p}@{q}"), ab.id.as_str());
        let mut got = [p, q];
        got.sort();
        let mut want = [a.clone(), b.clone()];
        want.sort();
        prop_assert_eq!(got, want);

        // Addressed by the other's uid, it becomes the stored channel from
        // either side; the stored channel itself is left as it is.
        let to_b = Channel::new(b.clone().into(), ChannelType::PERSON);
        let to_a = Channel::new(a.clone().into(), ChannelType::PERSON);
        prop_assert_eq!(to_b.stored_for(&a).unwrap(), ab.clone());
        prop_assert_eq!(to_a.stored_for(&b).unwrap(), ab.clone());
        prop_assert_eq!(ab.stored_for(&a).unwrap(), ab.clone());
        prop_assert_eq!(ab.stored_for(&b).unwrap(), ab.clone());
    }

    #[test]
    fn person_channel_is_symmetric_for_small_uids(a in small_uid(), b in small_uid()) {
        prop_assert_eq!(Channel::person(&a, &b), Channel::person(&b, &a));
        let seen = Channel::person(&a, &b).as_seen_by(&a);
        prop_assert_eq!(seen.id.as_str(), b.as_str());
    }

    #[test]
    fn as_seen_by_an_outsider_changes_nothing(a in small_uid(), b in small_uid(), c in small_uid()) {
        prop_assume!(c != a && c != b);
        let ab = Channel::person(&a, &b);
        prop_assert_eq!(ab.as_seen_by(&c), ab);
    }
}

#[test]
fn person_channel_known_values() {
    let (alice, bob) = (uid("alice"), uid("bob"));
    // Computed independently: the larger CRC32 goes first.
    let expected = if crc32fast::hash(b"alice") > crc32fast::hash(b"bob") {
        "alice@bob"
    } else {
        "bob@alice"
    };
    assert_eq!(Channel::person(&alice, &bob).id.as_str(), expected);
    assert_eq!(
        Channel::person(&alice, &bob).id.as_str(),
        wukong_fake_channel_id("alice", "bob")
    );
    // Talking to oneself: one party, seen as oneself.
    let self_chat = Channel::person(&alice, &alice);
    assert_eq!(self_chat.id.as_str(), "alice@alice");
    assert_eq!(
        self_chat.person_parties(),
        Some((alice.clone(), alice.clone()))
    );
    assert_eq!(self_chat.as_seen_by(&alice).id.as_str(), "alice");
    // Two uids of the largest size still make a valid channel id.
    let (x, y) = ("x".repeat(MAX_ID_LEN), "y".repeat(MAX_ID_LEN));
    let long = Channel::person(&uid(&x), &uid(&y));
    assert_eq!(long.id.as_str().len(), MAX_CHANNEL_ID_LEN);
    assert!(ChannelId::new(long.id.as_str()).is_ok());
}

/// Distinct uids with the same CRC32, found by a bounded search.
///
/// Decimal names such as `u0`..`u99999` never collide (CRC32 catches every
/// difference confined to a few bytes, and a decimal digit only varies in
/// its low nibble), so the names are spread over base 62 by a
/// multiplicative hash. The search is deterministic: its first collision
/// is after about 42 000 names.
fn crc32_collision() -> Option<(String, String)> {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let name = |n: u64| {
        let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut s = String::from("u");
        for _ in 0..8 {
            s.push(char::from(ALPHABET[(x % 62) as usize]));
            x /= 62;
        }
        s
    };
    let mut seen: HashMap<u32, String> = HashMap::with_capacity(1 << 17);
    for n in 0..100_000 {
        let s = name(n);
        let h = crc32fast::hash(s.as_bytes());
        if let Some(other) = seen.get(&h) {
            if *other != s {
                return Some((other.clone(), s));
            }
        }
        seen.insert(h, s);
    }
    None
}

#[test]
fn person_channel_with_a_crc32_tie_is_the_same_from_both_sides() {
    let (a, b) = crc32_collision().expect("the bounded search finds a CRC32 collision");
    assert_ne!(a, b);
    assert_eq!(crc32fast::hash(a.as_bytes()), crc32fast::hash(b.as_bytes()));
    // WuKongIM itself is order-dependent here: it puts the second argument
    // first.
    assert_ne!(
        wukong_fake_channel_id(&a, &b),
        wukong_fake_channel_id(&b, &a)
    );
    let (ua, ub) = (uid(&a), uid(&b));
    let ab = Channel::person(&ua, &ub);
    assert_eq!(ab, Channel::person(&ub, &ua));
    // The documented tie-break: the bytewise larger uid first.
    let (first, second) = if a > b { (&a, &b) } else { (&b, &a) };
    assert_eq!(ab.id.as_str(), format!("{first}@{second}"));
    // And it still works as a person channel from both sides.
    assert_eq!(ab.as_seen_by(&ua).id.as_str(), b);
    assert_eq!(ab.as_seen_by(&ub).id.as_str(), a);
    let to_b = Channel::new(ub.clone().into(), ChannelType::PERSON);
    let to_a = Channel::new(ua.clone().into(), ChannelType::PERSON);
    assert_eq!(to_b.stored_for(&ua).unwrap(), ab);
    assert_eq!(to_a.stored_for(&ub).unwrap(), ab);
}

#[test]
fn stored_for_leaves_other_channel_types_unchanged() {
    let alice = uid("alice");
    let group = Channel::group("g-1").unwrap();
    assert_eq!(group.kind, ChannelType::GROUP);
    assert_eq!(group.stored_for(&alice).unwrap(), group);
    assert_eq!(group.person_parties(), None);
    assert_eq!(group.as_seen_by(&alice), group);
    // An '@' in a group id means nothing special.
    let at_group = Channel::group("alice@bob").unwrap();
    assert_eq!(at_group.stored_for(&alice).unwrap(), at_group);
    assert_eq!(at_group.person_parties(), None);
    assert_eq!(at_group.as_seen_by(&alice), at_group);
    // Nor does it for a host-defined type.
    let custom = Channel::new(
        ChannelId::new("x@y").unwrap(),
        ChannelType::try_from(200).unwrap(),
    );
    assert_eq!(custom.stored_for(&alice).unwrap(), custom);
    assert_eq!(custom.person_parties(), None);
    // An addressed (single-uid) person channel has no parties yet.
    let addressed = Channel::new(uid("bob").into(), ChannelType::PERSON);
    assert_eq!(addressed.person_parties(), None);
    assert_eq!(addressed.as_seen_by(&alice), addressed);
}

#[test]
fn a_person_channel_id_that_is_neither_a_uid_nor_a_pair_is_rejected() {
    let alice = uid("alice");
    for bad in ["a#b", "a&b", "@bob", "bob@", "a@b@c", "@", "x@y#z"] {
        let channel = Channel::new(ChannelId::new(bad).unwrap(), ChannelType::PERSON);
        assert_eq!(channel.person_parties(), None, "{bad}");
        match validation(channel.stored_for(&alice)) {
            ValidationError::InvalidChannelId { id, channel_type } => {
                assert_eq!(id, bad);
                assert_eq!(channel_type, 1);
            }
            other => panic!("{bad}: expected InvalidChannelId, got {other:?}"),
        }
    }
    // An id too long to be one uid, without an '@'.
    let long = "x".repeat(MAX_ID_LEN + 1);
    let channel = Channel::new(ChannelId::new(&long).unwrap(), ChannelType::PERSON);
    assert!(matches!(
        validation(channel.stored_for(&alice)),
        ValidationError::InvalidChannelId { .. }
    ));
}

/// A person id naming both uids in the order that `Channel::person` would
/// not pick must not become a second stored channel for the same pair.
#[test]
fn stored_for_does_not_accept_the_reversed_pair() {
    let (alice, bob) = (uid("alice"), uid("bob"));
    let canonical = Channel::person(&alice, &bob);
    let (first, second) = canonical.person_parties().unwrap();
    let reversed = Channel::new(
        ChannelId::new(format!("{second}@{first}")).unwrap(),
        ChannelType::PERSON,
    );
    for sender in [&alice, &bob] {
        match reversed.stored_for(sender) {
            Ok(stored) => assert_eq!(stored, canonical, "stored_for({sender})"),
            Err(Error::Validation(ValidationError::InvalidChannelId { .. })) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Validation
// ---------------------------------------------------------------------------

#[test]
fn empty_ids_are_rejected() {
    let cases: [(IdKind, ValidationError); 4] = [
        (IdKind::Uid, validation(Uid::new(""))),
        (IdKind::DeviceId, validation(DeviceId::new(""))),
        (IdKind::ClientMsgNo, validation(ClientMsgNo::new(""))),
        (IdKind::ChannelId, validation(ChannelId::new(""))),
    ];
    for (kind, err) in cases {
        assert_eq!(err, ValidationError::EmptyId { kind }, "{kind}");
        assert_eq!(err.to_string(), format!("{kind} must not be empty"));
    }
    assert!(matches!(
        validation(Channel::group("")),
        ValidationError::EmptyId {
            kind: IdKind::ChannelId
        }
    ));
}

#[test]
fn id_length_limits() {
    assert_eq!(MAX_ID_LEN, 64);
    assert_eq!(MAX_CHANNEL_ID_LEN, 2 * MAX_ID_LEN + 1);
    let ok = "a".repeat(MAX_ID_LEN);
    let long = "a".repeat(MAX_ID_LEN + 1);
    assert_eq!(Uid::new(&ok).unwrap().as_str(), ok);
    assert_eq!(DeviceId::new(&ok).unwrap().as_str(), ok);
    assert_eq!(ClientMsgNo::new(&ok).unwrap().as_str(), ok);
    let too_long = |kind| ValidationError::IdTooLong {
        kind,
        len: MAX_ID_LEN + 1,
        max: MAX_ID_LEN,
    };
    assert_eq!(validation(Uid::new(&long)), too_long(IdKind::Uid));
    assert_eq!(validation(DeviceId::new(&long)), too_long(IdKind::DeviceId));
    assert_eq!(
        validation(ClientMsgNo::new(&long)),
        too_long(IdKind::ClientMsgNo)
    );

    let ok = "c".repeat(MAX_CHANNEL_ID_LEN);
    let long = "c".repeat(MAX_CHANNEL_ID_LEN + 1);
    assert_eq!(ChannelId::new(&ok).unwrap().as_str(), ok);
    assert_eq!(
        validation(ChannelId::new(&long)),
        ValidationError::IdTooLong {
            kind: IdKind::ChannelId,
            len: MAX_CHANNEL_ID_LEN + 1,
            max: MAX_CHANNEL_ID_LEN,
        }
    );
}

#[test]
fn lengths_are_counted_in_bytes() {
    // 'é' is 2 bytes, '中' 3, '😀' 4.
    for (ch, bytes) in [('é', 2), ('中', 3), ('😀', 4)] {
        assert_eq!(ch.len_utf8(), bytes);
        let fits = MAX_ID_LEN / bytes;
        let ok: String = std::iter::repeat_n(ch, fits).collect();
        assert!(Uid::new(&ok).is_ok(), "{fits} x {ch}");
        let over: String = std::iter::repeat_n(ch, fits + 1).collect();
        assert_eq!(over.chars().count(), fits + 1);
        assert!(
            over.chars().count() <= MAX_ID_LEN,
            "fewer chars than the limit"
        );
        assert_eq!(
            validation(Uid::new(&over)),
            ValidationError::IdTooLong {
                kind: IdKind::Uid,
                len: (fits + 1) * bytes,
                max: MAX_ID_LEN,
            },
            "{} x {ch}",
            fits + 1
        );
    }
    // 63 ASCII bytes and one 2-byte char: 65 bytes in 64 chars.
    let mixed = format!("{}é", "a".repeat(63));
    assert_eq!(mixed.chars().count(), 64);
    assert!(matches!(
        validation(DeviceId::new(&mixed)),
        ValidationError::IdTooLong { len: 65, .. }
    ));
}

#[test]
fn forbidden_characters_in_uids() {
    for ch in ['@', '#', '&', '\0', '\n', '\t', '\u{7f}', '\u{85}'] {
        for s in [
            format!("{ch}"),
            format!("ab{ch}"),
            format!("{ch}cd"),
            format!("a{ch}b"),
        ] {
            assert_eq!(
                validation(Uid::new(&s)),
                ValidationError::ForbiddenChar {
                    kind: IdKind::Uid,
                    ch
                },
                "{s:?}"
            );
        }
    }
    // Control characters are refused in every id.
    assert_eq!(
        validation(DeviceId::new("d\u{1}")),
        ValidationError::ForbiddenChar {
            kind: IdKind::DeviceId,
            ch: '\u{1}'
        }
    );
    assert_eq!(
        validation(ClientMsgNo::new("c\r")),
        ValidationError::ForbiddenChar {
            kind: IdKind::ClientMsgNo,
            ch: '\r'
        }
    );
    assert_eq!(
        validation(ChannelId::new("g\u{1b}")),
        ValidationError::ForbiddenChar {
            kind: IdKind::ChannelId,
            ch: '\u{1b}'
        }
    );
    // '@', '#' and '&' are only forbidden in uids.
    assert!(ChannelId::new("a@b").is_ok());
    assert!(DeviceId::new("dev#1&x@y").is_ok());
    assert!(ClientMsgNo::new("n@1#2&3").is_ok());
    // Other non-ASCII text is fine.
    assert!(Uid::new("ユーザー-1 é").is_ok());
}

#[test]
fn ids_convert_from_strings_with_the_same_checks() {
    assert_eq!(Uid::try_from("bob").unwrap(), uid("bob"));
    assert_eq!(Uid::try_from(String::from("bob")).unwrap(), "bob");
    assert!(Uid::try_from("b@b").is_err());
    assert!(ChannelId::try_from(String::new()).is_err());
    assert_eq!(String::from(uid("carol")), "carol");
    assert_eq!(ChannelId::from(uid("carol")).as_str(), "carol");
}

#[test]
fn channel_types() {
    assert_eq!(
        validation(ChannelType::try_from(0)),
        ValidationError::InvalidChannelType(0)
    );
    let known = [
        (1, ChannelType::PERSON, "person"),
        (2, ChannelType::GROUP, "group"),
        (3, ChannelType::CUSTOMER_SERVICE, "customer_service"),
        (4, ChannelType::COMMUNITY, "community"),
        (5, ChannelType::COMMUNITY_TOPIC, "community_topic"),
        (6, ChannelType::INFO, "info"),
        (7, ChannelType::DATA, "data"),
    ];
    for (n, constant, name) in known {
        let t = ChannelType::try_from(n).unwrap();
        assert_eq!(t, constant);
        assert_eq!(t.as_u8(), n);
        assert_eq!(u8::from(t), n);
        assert_eq!(t.name(), Some(name));
    }
    for n in 8..=255u8 {
        let t = ChannelType::try_from(n).unwrap();
        assert_eq!(t.as_u8(), n);
        assert_eq!(t.name(), None);
    }
    assert_eq!(ChannelType::try_from(200).unwrap().as_u8(), 200);
}

#[test]
fn payload_limits() {
    assert_eq!(DEFAULT_MAX_PAYLOAD, 64 * 1024);
    let default = Limits::default();
    assert_eq!(default.max_payload, DEFAULT_MAX_PAYLOAD);
    let at = vec![0u8; DEFAULT_MAX_PAYLOAD];
    assert!(default.check_payload(&at).is_ok());
    let over = vec![0u8; DEFAULT_MAX_PAYLOAD + 1];
    assert_eq!(
        validation(default.check_payload(&over)),
        ValidationError::PayloadTooLarge {
            len: DEFAULT_MAX_PAYLOAD + 1,
            max: DEFAULT_MAX_PAYLOAD,
        }
    );

    for max in [0usize, 1, 10, 1000] {
        let limits = Limits::default().max_payload(max);
        assert!(limits.check_payload(&vec![7u8; max]).is_ok(), "{max}");
        assert_eq!(
            validation(limits.check_payload(&vec![7u8; max + 1])),
            ValidationError::PayloadTooLarge { len: max + 1, max },
        );
    }
    assert!(Limits::default().max_payload(0).check_payload(b"").is_ok());
}

// ---------------------------------------------------------------------------
// 4. Serde
// ---------------------------------------------------------------------------

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

// ---- JSON-shaped input for `Message`'s deserializer ----
//
// Random text is almost never JSON, and stops at the parser. These inputs
// are JSON objects with `Message`'s real field names, each field valid,
// wrong (a wrong type, a number out of range, a bad id) or missing, plus
// unknown fields; so they reach the field-level deserializers, and the
// outcome is known in advance: accepted exactly when every field is valid.

/// A field's JSON text and whether `Message` accepts it there.
type Fragment = (String, bool);

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Usually `good`, sometimes one of the `bad` values.
fn mostly(
    good: impl Strategy<Value = String> + 'static,
    bad: impl Strategy<Value = String> + 'static,
) -> BoxedStrategy<Fragment> {
    prop_oneof![
        10 => good.prop_map(|t| (t, true)),
        1 => bad.prop_map(|t| (t, false)),
    ]
    .boxed()
}

/// A field that is usually there, sometimes missing.
fn present(f: BoxedStrategy<Fragment>) -> impl Strategy<Value = Option<Fragment>> {
    prop_oneof![12 => f.prop_map(Some), 1 => Just(None)]
}

/// JSON that is neither a number nor an object: wrong for any field here
/// but the payload (a string payload is taken as its bytes).
fn not_a_number_or_object() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[^\\p{Cc}]{0,8}".prop_map(|s| json_str(&s)),
        Just("[]".to_string()),
        Just("[1,2]".to_string()),
    ]
}

/// A JSON float (always written with a `.` or an exponent).
fn float() -> impl Strategy<Value = String> {
    any::<f64>()
        .prop_filter("finite", |x| x.is_finite())
        .prop_map(|x| serde_json::to_string(&x).unwrap())
}

/// An integer beyond u64 (and so beyond i64).
fn huge() -> impl Strategy<Value = String> {
    any::<u64>().prop_map(|n| (u128::from(u64::MAX) + 1 + u128::from(n)).to_string())
}

fn u64_field() -> BoxedStrategy<Fragment> {
    mostly(
        any::<u64>().prop_map(|n| n.to_string()),
        prop_oneof![
            (i64::MIN..0).prop_map(|n| n.to_string()),
            huge(),
            float(),
            any::<u64>().prop_map(|n| json_str(&n.to_string())),
            not_a_number_or_object(),
            Just("{}".to_string()),
        ],
    )
}

fn i64_field() -> BoxedStrategy<Fragment> {
    mostly(
        any::<i64>().prop_map(|n| n.to_string()),
        prop_oneof![
            ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(|n| n.to_string()),
            huge(),
            float(),
            any::<i64>().prop_map(|n| json_str(&n.to_string())),
            not_a_number_or_object(),
        ],
    )
}

/// A string id: `valid` makes the good ones, of at most `max` bytes; a uid
/// also refuses `@`, `#` and `&`.
fn id_field(valid: &'static str, max: usize, is_uid: bool) -> BoxedStrategy<Fragment> {
    let forbidden = if is_uid { "[@#&\\p{Cc}]" } else { "\\p{Cc}" };
    mostly(
        valid.prop_map(|s| json_str(&s)),
        prop_oneof![
            Just(json_str("")),
            "[a-z]{1,16}".prop_map(move |s| json_str(&s.repeat(max / s.len() + 1))),
            proptest::string::string_regex(&format!("[a-z]{{0,4}}{forbidden}[a-z]{{0,4}}"))
                .unwrap()
                .prop_map(|s| json_str(&s)),
            any::<i64>().prop_map(|n| n.to_string()),
            Just("null".to_string()),
            Just(r#"{"id":"x"}"#.to_string()),
        ],
    )
}

fn channel_type_field() -> BoxedStrategy<Fragment> {
    mostly(
        (1u32..=255).prop_map(|n| n.to_string()),
        prop_oneof![
            Just("0".to_string()),
            (256u32..100_000).prop_map(|n| n.to_string()),
            (i64::MIN..0).prop_map(|n| n.to_string()),
            float(),
            Just(json_str("2")),
            Just("null".to_string()),
        ],
    )
}

/// An unknown field (ignored, so harmless), with some JSON value.
fn extra_field(known: &'static [&'static str]) -> impl Strategy<Value = (String, String)> {
    (
        "[a-z_]{1,10}".prop_filter("unknown", move |k| !known.contains(&k.as_str())),
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            huge(),
            float(),
            not_a_number_or_object(),
            Just(r#"{"message_id":"nested, not a field"}"#.to_string()),
        ],
    )
}

/// An object of `fields` (present or missing) and `extra` unknown fields, in
/// a random order; valid when every one of `required` is present and every
/// present field valid.
fn object(
    fields: Vec<(&'static str, Option<Fragment>)>,
    required: bool,
    extra: Vec<(String, String)>,
) -> impl Strategy<Value = Fragment> {
    let valid = fields.iter().all(|(_, f)| match f {
        Some((_, ok)) => *ok,
        None => !required,
    });
    let entries: Vec<String> = fields
        .into_iter()
        .filter_map(|(k, f)| f.map(|(v, _)| format!("{}:{v}", json_str(k))))
        .chain(
            extra
                .into_iter()
                .map(|(k, v)| format!("{}:{v}", json_str(&k))),
        )
        .collect();
    Just(entries)
        .prop_shuffle()
        .prop_map(move |e| (format!("{{{}}}", e.join(",")), valid))
}

const CHANNEL_FIELDS: &[&str] = &["id", "channel_type"];

fn channel_field() -> BoxedStrategy<Fragment> {
    let as_object = (
        present(id_field("[^\\p{Cc}]{1,32}", MAX_CHANNEL_ID_LEN, false)),
        present(channel_type_field()),
        proptest::collection::vec(extra_field(CHANNEL_FIELDS), 0..2),
    )
        .prop_flat_map(|(id, kind, extra)| {
            object(vec![("id", id), ("channel_type", kind)], true, extra)
        });
    prop_oneof![
        10 => as_object,
        1 => prop_oneof![
            Just("null".to_string()),
            Just("[]".to_string()),
            Just(json_str("g")),
            any::<u8>().prop_map(|n| n.to_string()),
        ]
        .prop_map(|t| (t, false)),
    ]
    .boxed()
}

const FLAG_FIELDS: &[&str] = &["dup", "sync_once", "red_dot", "no_persist"];

fn flags_field() -> BoxedStrategy<Fragment> {
    // Each flag may be missing (it defaults to false), but is a bool if
    // there.
    let flag = present(mostly(
        any::<bool>().prop_map(|b| b.to_string()),
        prop_oneof![
            Just("0".to_string()),
            Just("1".to_string()),
            Just(json_str("true")),
            Just("null".to_string()),
        ],
    ));
    let as_object = (
        proptest::collection::vec(flag, 4),
        proptest::collection::vec(extra_field(FLAG_FIELDS), 0..2),
    )
        .prop_flat_map(|(flags, extra)| {
            object(
                FLAG_FIELDS.iter().copied().zip(flags).collect(),
                false,
                extra,
            )
        });
    prop_oneof![
        10 => as_object,
        // The wire header byte is not the JSON form.
        1 => prop_oneof![
            any::<u8>().prop_map(|n| n.to_string()),
            Just("null".to_string()),
            Just(json_str("red_dot")),
        ]
        .prop_map(|t| (t, false)),
    ]
    .boxed()
}

fn payload_field() -> BoxedStrategy<Fragment> {
    // Bytes: an array of numbers 0 to 255, or a string (its UTF-8 bytes).
    let bytes = proptest::collection::vec(any::<u8>(), 0..16)
        .prop_map(|b| serde_json::to_string(&b).unwrap());
    mostly(
        prop_oneof![2 => bytes, 1 => "[^\\p{Cc}]{0,16}".prop_map(|s| json_str(&s))],
        prop_oneof![
            (256u32..100_000).prop_map(|n| format!("[1,{n},2]")),
            (i64::MIN..0).prop_map(|n| format!("[{n}]")),
            Just("[1.5]".to_string()),
            Just(r#"["a"]"#.to_string()),
            any::<u8>().prop_map(|n| n.to_string()),
            Just("null".to_string()),
            Just("{}".to_string()),
        ],
    )
}

const MESSAGE_FIELDS: &[&str] = &[
    "message_id",
    "message_seq",
    "client_msg_no",
    "from_uid",
    "channel",
    "timestamp_ms",
    "flags",
    "payload",
];

/// A JSON object shaped like a `Message`, and whether it is one.
fn message_json() -> impl Strategy<Value = Fragment> {
    (
        (
            present(u64_field()),
            present(u64_field()),
            present(id_field("[^\\p{Cc}]{1,16}", MAX_ID_LEN, false)),
            present(id_field("[^@#&\\p{Cc}]{1,16}", MAX_ID_LEN, true)),
        ),
        (
            present(channel_field()),
            present(i64_field()),
            present(flags_field()),
            present(payload_field()),
        ),
        proptest::collection::vec(extra_field(MESSAGE_FIELDS), 0..3),
    )
        .prop_flat_map(
            |((id, seq, no, from), (channel, ts, flags, payload), extra)| {
                let values = [id, seq, no, from, channel, ts, flags, payload];
                object(
                    MESSAGE_FIELDS.iter().copied().zip(values).collect(),
                    true,
                    extra,
                )
            },
        )
}

/// Deserializes `text` from the text and from a parsed `Value` (owned
/// strings: another path through the visitors); checks both agree with
/// `valid`, that a message read back round-trips, and that every failure
/// is a data error, never a syntax one: the input reached the fields.
/// Returns the error, if any.
fn check_message_json(text: &str, valid: bool) -> Result<Option<String>, TestCaseError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
    prop_assert!(value.is_object(), "{}", text);
    let from_text = serde_json::from_str::<Message>(text);
    let from_value = serde_json::from_value::<Message>(value);
    prop_assert_eq!(from_text.is_ok(), valid, "{} gave {:?}", text, from_text);
    prop_assert_eq!(from_value.is_ok(), valid, "{} gave {:?}", text, from_value);
    match from_text {
        Ok(m) => {
            prop_assert_eq!(&from_value.unwrap(), &m);
            let again = serde_json::to_string(&m).unwrap();
            prop_assert_eq!(serde_json::from_str::<Message>(&again).unwrap(), m);
            Ok(None)
        }
        Err(e) => {
            prop_assert_eq!(
                e.classify(),
                serde_json::error::Category::Data,
                "{}: {}",
                text,
                e
            );
            Ok(Some(e.to_string()))
        }
    }
}

proptest! {
    #[test]
    fn json_shaped_input_is_accepted_exactly_when_every_field_is_valid(
        (text, valid) in message_json()
    ) {
        check_message_json(&text, valid)?;
    }
}

/// The generator reaches the field-level deserializers, not just the
/// parser: a fixed sample has valid messages and every kind of field error.
#[test]
fn json_shaped_input_reaches_every_kind_of_field_error() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = message_json();
    let (mut accepted, mut errors) = (0, Vec::new());
    for _ in 0..400 {
        let (text, valid) = strategy.new_tree(&mut runner).unwrap().current();
        match check_message_json(&text, valid).unwrap_or_else(|e| panic!("{e}")) {
            None => accepted += 1,
            Some(e) => errors.push(e),
        }
    }
    assert!(accepted >= 10, "only {accepted} of 400 were valid messages");
    for kind in [
        "missing field",
        "invalid type",
        "invalid value",
        "invalid length",
        "invalid input: uid",
        "invalid input: client_msg_no",
        "invalid input: channel id",
        "invalid input: channel type",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(kind)),
            "no {kind:?} among {} errors: {errors:#?}",
            errors.len()
        );
    }
}

// ---------------------------------------------------------------------------
// 5. Message ids
// ---------------------------------------------------------------------------

const T0: i64 = 1_700_000_000_000;

fn generator(node: u16, clock: &Arc<ManualClock>) -> MessageIdGenerator {
    MessageIdGenerator::with_clock(node, clock.clone()).unwrap()
}

fn assert_strictly_increasing(ids: &[MessageId]) {
    for (i, w) in ids.windows(2).enumerate() {
        assert!(
            w[1] > w[0],
            "id {} ({}) <= id {} ({})",
            i + 1,
            w[1],
            i,
            w[0]
        );
    }
}

#[test]
fn ids_increase_within_one_millisecond_and_borrow_the_next() {
    let clock = Arc::new(ManualClock::new(T0));
    let ids = generator(3, &clock);
    let got: Vec<MessageId> = (0..10_000).map(|_| ids.next_id()).collect();
    assert_strictly_increasing(&got);
    assert!(got.iter().all(|id| id.0 < 1 << 63));
    assert!(got.iter().all(|&id| MessageIdGenerator::node_of(id) == 3));
    // 4096 ids per millisecond; past that the next millisecond is borrowed.
    assert_eq!(MessageIdGenerator::time_ms_of(got[0]), T0);
    assert_eq!(MessageIdGenerator::time_ms_of(got[4095]), T0);
    assert_eq!(MessageIdGenerator::time_ms_of(got[4096]), T0 + 1);
    assert_eq!(MessageIdGenerator::time_ms_of(got[9999]), T0 + 2);
    // When the clock reaches a borrowed millisecond, ids keep increasing.
    clock.advance(std::time::Duration::from_millis(1));
    let next = ids.next_id();
    assert!(next > got[9999]);
    // And a millisecond never borrowed starts fresh.
    clock.advance(std::time::Duration::from_millis(10));
    let fresh = ids.next_id();
    assert!(fresh > next);
    assert_eq!(MessageIdGenerator::time_ms_of(fresh), T0 + 11);
}

#[test]
fn ids_increase_when_the_clock_steps_back() {
    let clock = Arc::new(ManualClock::new(T0));
    let ids = generator(0, &clock);
    let mut got = vec![ids.next_id(), ids.next_id()];
    clock.set_ms(T0 - 60_000);
    got.extend((0..100).map(|_| ids.next_id()));
    clock.rewind(std::time::Duration::from_millis(1));
    got.push(ids.next_id());
    // Before the id epoch, and before the Unix epoch.
    clock.set_ms(ID_EPOCH_MS - 5);
    got.push(ids.next_id());
    clock.set_ms(-1_000);
    got.push(ids.next_id());
    assert_strictly_increasing(&got);
    // The generator kept its last time while the clock was behind.
    assert!(got
        .iter()
        .all(|&id| MessageIdGenerator::time_ms_of(id) == T0));
    // Once the clock passes it again, the clock's time is used.
    clock.set_ms(T0 + 5);
    let later = ids.next_id();
    assert!(later > *got.last().unwrap());
    assert_eq!(MessageIdGenerator::time_ms_of(later), T0 + 5);
}

#[test]
fn ids_from_concurrent_threads_are_unique_and_increase_per_thread() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 5_000;
    let clock = Arc::new(ManualClock::new(T0));
    let ids = generator(17, &clock);
    let barrier = Barrier::new(THREADS);
    let per_thread: Vec<Vec<MessageId>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (ids, clock, barrier) = (&ids, &clock, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let mut mine = Vec::with_capacity(PER_THREAD);
                    for i in 0..PER_THREAD {
                        // One thread moves the clock, back and forth, while
                        // the others take ids.
                        if t == 0 && i % 500 == 0 {
                            step(clock, if i % 1000 == 0 { 3 } else { -2 });
                        }
                        mine.push(ids.next_id());
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all = HashSet::new();
    for mine in &per_thread {
        assert_eq!(mine.len(), PER_THREAD);
        assert_strictly_increasing(mine);
        for &id in mine {
            assert_eq!(MessageIdGenerator::node_of(id), 17);
            assert!(all.insert(id), "duplicate id {id}");
        }
    }
    assert_eq!(all.len(), THREADS * PER_THREAD);
}

#[test]
fn node_numbers() {
    let clock = Arc::new(ManualClock::new(T0));
    assert_eq!(MAX_NODE, 1023);
    for node in [0, 1, 2, 511, 1000, 1023] {
        let ids = generator(node, &clock);
        for _ in 0..3 {
            assert_eq!(MessageIdGenerator::node_of(ids.next_id()), node);
        }
    }
    for node in [1024, 2047, u16::MAX] {
        assert!(
            matches!(
                MessageIdGenerator::with_clock(node, clock.clone()),
                Err(Error::Validation(ValidationError::OutOfRange(_)))
            ),
            "node {node} accepted"
        );
    }
    assert!(MessageIdGenerator::new(1024).is_err());
    assert!(MessageIdGenerator::new(1023).is_ok());
}

#[test]
fn first_id_of_a_fresh_millisecond_carries_the_clock_time() {
    let clock = Arc::new(ManualClock::new(T0));
    let ids = generator(5, &clock);
    for ms in [1, 7, 1_000, 86_400_000] {
        step(&clock, ms);
        let id = ids.next_id();
        assert_eq!(MessageIdGenerator::time_ms_of(id), clock_now(&clock));
        // Later ids of the same millisecond too.
        assert_eq!(
            MessageIdGenerator::time_ms_of(ids.next_id()),
            clock_now(&clock)
        );
    }
    // At the epoch itself.
    let at_epoch = generator(5, &Arc::new(ManualClock::new(ID_EPOCH_MS)));
    assert_eq!(
        MessageIdGenerator::time_ms_of(at_epoch.next_id()),
        ID_EPOCH_MS
    );
}

fn clock_now(clock: &ManualClock) -> i64 {
    use imcore::Clock;
    clock.now_ms()
}

#[test]
fn ids_of_two_nodes_never_collide() {
    let clock = Arc::new(ManualClock::new(T0));
    let (one, two) = (generator(1, &clock), generator(2, &clock));
    let mut seen = HashSet::new();
    for i in 0..6_000 {
        if i % 1_000 == 999 {
            clock.advance(std::time::Duration::from_millis(1));
        }
        let (a, b) = (one.next_id(), two.next_id());
        assert_eq!(MessageIdGenerator::node_of(a), 1);
        assert_eq!(MessageIdGenerator::node_of(b), 2);
        assert!(seen.insert(a), "duplicate {a}");
        assert!(seen.insert(b), "duplicate {b}");
    }
    // The largest node number and node 0 do not collide either.
    let (low, high) = (generator(0, &clock), generator(MAX_NODE, &clock));
    for _ in 0..5_000 {
        assert!(seen.insert(low.next_id()));
        assert!(seen.insert(high.next_id()));
    }
}

/// Ids stay below 2^63 (documented on `MessageId`), even when a generator
/// whose clock is at the end of the 41-bit time range borrows milliseconds:
/// it saturates instead of overflowing into the sign bit.
#[test]
fn ids_stay_below_2_pow_63_at_the_end_of_time() {
    let clock = Arc::new(ManualClock::new(i64::MAX));
    let ids = generator(MAX_NODE, &clock);
    let got: Vec<MessageId> = (0..4_097).map(|_| ids.next_id()).collect();
    assert!(got.iter().all(|id| id.0 < 1 << 63), "{:?}", got.last());
    // The range is exhausted: ids never go back, and the last one repeats
    // (as documented on `MessageIdGenerator`).
    assert!(got.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(got[4_096], got[4_095]);
    assert_strictly_increasing(&got[..4_095]);
}

/// Moves a manual clock by `ms`, forward or (negative) back.
fn step(clock: &ManualClock, ms: i64) {
    let by = std::time::Duration::from_millis(ms.unsigned_abs());
    match ms >= 0 {
        true => clock.advance(by),
        false => clock.rewind(by),
    }
}
