//! `Message`'s deserializer on JSON-shaped input: objects with the real
//! field names, each field valid, wrong or missing, plus unknown fields,
//! accepted exactly when every field is valid.

use imcore::model::{MAX_CHANNEL_ID_LEN, MAX_ID_LEN};
use imcore::Message;
use proptest::prelude::*;

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
