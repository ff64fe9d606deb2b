//! Person channel ids: symmetric and equal to WuKongIM's
//! `GetFakeChannelIDWith` (also on a real CRC32 tie), known values, the
//! stored form only for person channels, and ids that are neither a uid
//! nor the pair in its stored order refused.

#[path = "common/model_helpers.rs"]
mod model_helpers;

use std::collections::HashMap;

use imcore::model::{MAX_CHANNEL_ID_LEN, MAX_ID_LEN};
use imcore::{Channel, ChannelId, ChannelType, Error, Uid, ValidationError};
use model_helpers::{any_uid, uid, validation};
use proptest::prelude::*;

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
