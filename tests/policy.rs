//! Persistence policy: WuKongIM's flag table, and a host's own policy
//! plugged in as a trait object.

use std::sync::Arc;

use bytes::Bytes;
use imcore::{
    Channel, ClientMsgNo, Flags, Message, MessageId, Persistence, PersistencePolicy, Uid,
    WuKongPolicy,
};
use proptest::prelude::*;

use Persistence::{Command, History, Transient};

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

fn message(flags: Flags, payload: &[u8]) -> Message {
    let alice = uid("alice");
    Message::new(
        MessageId(1),
        ClientMsgNo::new("c-1").unwrap(),
        alice.clone(),
        Channel::person(&alice, &uid("bob")),
        1_700_000_000_000,
        Bytes::copy_from_slice(payload),
    )
    .flags(flags)
}

/// The flag table (README, "Persistence policy"): every combination of
/// (dup, sync_once, red_dot, no_persist)
/// written out: `no_persist=1` is transient (online-only even with
/// `sync_once=1`), else `sync_once=1` is a command, else history.
const TABLE: [(bool, bool, bool, bool, Persistence); 16] = [
    // dup, sync_once, red_dot, no_persist
    (false, false, false, false, History),
    (false, false, false, true, Transient),
    (false, false, true, false, History),
    (false, false, true, true, Transient),
    (false, true, false, false, Command),
    (false, true, false, true, Transient),
    (false, true, true, false, Command),
    (false, true, true, true, Transient),
    (true, false, false, false, History),
    (true, false, false, true, Transient),
    (true, false, true, false, History),
    (true, false, true, true, Transient),
    (true, true, false, false, Command),
    (true, true, false, true, Transient),
    (true, true, true, false, Command),
    (true, true, true, true, Transient),
];

fn flags_of(row: &(bool, bool, bool, bool, Persistence)) -> Flags {
    Flags {
        dup: row.0,
        sync_once: row.1,
        red_dot: row.2,
        no_persist: row.3,
    }
}

#[test]
fn wukong_policy_classifies_every_row_of_the_flag_table() {
    // The table covers each of the 16 flag combinations once.
    let mut bits: Vec<u8> = TABLE.iter().map(|r| flags_of(r).bits()).collect();
    bits.sort_unstable();
    assert_eq!(bits, (0..16).collect::<Vec<u8>>());

    for row in &TABLE {
        let flags = flags_of(row);
        for payload in [&b""[..], br#"{"type":1,"content":"hi"}"#, br#"{"type":99}"#] {
            assert_eq!(
                WuKongPolicy.classify(&message(flags, payload)),
                row.4,
                "{flags:?} with payload {}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}

#[test]
fn wukong_policy_on_the_named_flag_sets() {
    assert_eq!(
        WuKongPolicy.classify(&message(Flags::normal(), b"x")),
        History
    );
    assert_eq!(
        WuKongPolicy.classify(&message(Flags::command(), b"x")),
        Command
    );
    assert_eq!(
        WuKongPolicy.classify(&message(Flags::transient(), b"x")),
        Transient
    );
    // A header byte straight off the wire: SEND (3) with sync_once and
    // no_persist is online-only.
    let (_, flags) = Flags::from_header_byte(0x35);
    assert_eq!(WuKongPolicy.classify(&message(flags, b"x")), Transient);
}

fn any_flags() -> impl Strategy<Value = Flags> {
    (0u8..16).prop_map(Flags::from_bits)
}

proptest! {
    #[test]
    fn red_dot_and_dup_never_change_the_class(
        flags in any_flags(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let base = WuKongPolicy.classify(&message(flags, &payload));
        for (dup, red_dot) in [(false, false), (false, true), (true, false), (true, true)] {
            let changed = Flags { dup, red_dot, ..flags };
            prop_assert_eq!(WuKongPolicy.classify(&message(changed, &payload)), base);
        }
        // And the answer is the table's.
        let row = TABLE.iter().find(|r| flags_of(r) == flags).unwrap();
        prop_assert_eq!(base, row.4);
    }
}

/// A host's policy: a JSON payload with `"type":99` is a command whatever
/// its flags, unless it is `no_persist`; anything else is WuKongIM's rule.
#[derive(Debug)]
struct Type99IsCommand;

impl PersistencePolicy for Type99IsCommand {
    fn classify(&self, message: &Message) -> Persistence {
        let is_99 = serde_json::from_slice::<serde_json::Value>(&message.payload)
            .ok()
            .and_then(|v| v.get("type").and_then(serde_json::Value::as_i64))
            == Some(99);
        if is_99 && !message.flags.no_persist {
            Command
        } else {
            WuKongPolicy.classify(message)
        }
    }
}

#[test]
fn a_host_policy_works_as_a_trait_object() {
    let policies: Vec<(&str, Arc<dyn PersistencePolicy>)> = vec![
        ("wukong", Arc::new(WuKongPolicy)),
        ("type99", Arc::new(Type99IsCommand)),
    ];
    let revoke = br#"{"type":99,"cmd":"messageRevoke","param":{"message_id":"1"}}"#;
    let text = br#"{"type":1,"content":"hi"}"#;
    // (flags, payload, wukong's class, the host's class)
    let cases: [(Flags, &[u8], Persistence, Persistence); 10] = [
        (Flags::normal(), revoke, History, Command),
        (Flags::default(), br#"{"type":99}"#, History, Command),
        (Flags::command(), revoke, Command, Command),
        (Flags::transient(), revoke, Transient, Transient),
        (
            Flags {
                sync_once: true,
                no_persist: true,
                ..Flags::default()
            },
            revoke,
            Transient,
            Transient,
        ),
        (Flags::normal(), text, History, History),
        (Flags::command(), text, Command, Command),
        // Not JSON, or "type" not the number 99: the fallback decides.
        (Flags::normal(), b"type:99", History, History),
        (Flags::normal(), br#"{"type":"99"}"#, History, History),
        (
            Flags::normal(),
            br#"{"content":{"type":99}}"#,
            History,
            History,
        ),
    ];
    for (flags, payload, wukong, host) in cases {
        let m = message(flags, payload);
        for (name, policy) in &policies {
            let want = if *name == "wukong" { wukong } else { host };
            assert_eq!(
                policy.classify(&m),
                want,
                "{name} on {flags:?} {}",
                String::from_utf8_lossy(payload)
            );
        }
    }
    // Shared across threads, as a hub would.
    let policy: Arc<dyn PersistencePolicy> = Arc::new(Type99IsCommand);
    let m = message(Flags::normal(), revoke);
    let got = std::thread::spawn(move || policy.classify(&m))
        .join()
        .unwrap();
    assert_eq!(got, Command);
}

proptest! {
    #[test]
    fn the_host_policy_only_differs_from_wukong_on_type_99(
        flags in any_flags(),
        kind in prop_oneof![Just(99i64), any::<i64>()],
        content in "[a-z ]{0,16}",
    ) {
        let payload = serde_json::to_vec(&serde_json::json!({ "type": kind, "content": content })).unwrap();
        let m = message(flags, &payload);
        let host = Type99IsCommand.classify(&m);
        let wukong = WuKongPolicy.classify(&m);
        if kind == 99 && !flags.no_persist {
            prop_assert_eq!(host, Command);
        } else {
            prop_assert_eq!(host, wukong);
        }
    }
}

#[test]
fn persistence_serializes_in_snake_case() {
    assert_eq!(serde_json::to_string(&History).unwrap(), r#""history""#);
    assert_eq!(serde_json::to_string(&Command).unwrap(), r#""command""#);
    assert_eq!(serde_json::to_string(&Transient).unwrap(), r#""transient""#);
    assert_eq!(
        serde_json::from_str::<Persistence>(r#""command""#).unwrap(),
        Command
    );
    assert!(serde_json::from_str::<Persistence>(r#""Command""#).is_err());
}
