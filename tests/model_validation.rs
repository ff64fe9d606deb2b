//! Identifier and payload validation: empty ids, length limits counted in
//! bytes, the characters a uid may not hold, conversions from strings,
//! channel types and payload limits.

#[path = "common/model_helpers.rs"]
mod model_helpers;

use imcore::model::{DEFAULT_MAX_PAYLOAD, MAX_CHANNEL_ID_LEN, MAX_ID_LEN};
use imcore::{
    Channel, ChannelId, ChannelType, ClientMsgNo, DeviceId, IdKind, Limits, Uid, ValidationError,
};
use model_helpers::{uid, validation};

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
