//! Revocation: a message is recalled, every device of every member is told
//! (a `messageRevoke` command and a type-1006 tip), history shows it revoked
//! with its content removed, and a client catches up by `extra_version`.
//! Also the refusals: not permitted, window expired; and a repeat revocation.
//! Then the other extras, versioned with revocations: an edit (the
//! original kept), a read receipt counted once, and one extra sync with
//! all of them.
//!
//! Run with `cargo run --example revoke`.

use std::sync::Arc;

use imcore::extra::EditRequest;
use imcore::session::InProcessConnection;
use imcore::store::Page;
use imcore::{
    Channel, Device, DeviceFlag, DeviceId, Error, Hub, HubConfig, ManualClock, MemoryDirectory,
    Message, MessageId, RevokeOutcome, RevokeRefusal, RevokeRequest, RevokeTarget, SendRequest,
    Setting, SledStore, Uid,
};

/// One line for a delivered or stored message: its kind and content.
fn describe(m: &Message) -> String {
    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
    let s = |key: &str| v[key].as_str().unwrap_or("").to_string();
    match v["type"].as_i64() {
        Some(99) => format!(
            "command {} ({})",
            s("cmd"),
            match m.flags.no_persist {
                true => "transient",
                false => "sync_once",
            }
        ),
        Some(1006) => {
            let name = v["extra"][0]["name"].as_str().unwrap_or("?");
            format!(
                "tip 1006 '{}' for {}",
                s("content").replace("{0}", name),
                s("message_id")
            )
        }
        _ if m.payload.is_empty() => "(payload removed)".to_string(),
        _ => format!("text '{}'", s("content")),
    }
}

/// Drains each device's queue, prints what it got and returns it.
fn show(devices: &mut [(&str, &mut InProcessConnection)]) -> Vec<Vec<Arc<Message>>> {
    let mut all = Vec::new();
    for (name, conn) in devices.iter_mut() {
        let got = conn.drain();
        let kinds: Vec<String> = got.iter().map(|m| describe(m)).collect();
        println!("  {name:<11} got {}: [{}]", got.len(), kinds.join(", "));
        all.push(got);
    }
    all
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SledStore::open(dir.path())?);
    let directory = Arc::new(MemoryDirectory::new());
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let hub = Hub::builder()
        .store(store)
        .directory(directory.clone())
        .clock(clock.clone())
        .config(HubConfig::default().revoke_tip(true))
        .build()?;

    let (owner, alice, bob) = (Uid::new("owner")?, Uid::new("alice")?, Uid::new("bob")?);
    let group = Channel::group("team")?;
    directory.create_channel(&group, &owner, [alice.clone(), bob.clone()]);
    for (uid, name) in [(&owner, "Owner"), (&alice, "Alice"), (&bob, "Bob")] {
        directory.set_display_name(uid, name);
    }
    println!("group 'team': owner, alice, bob; revoke window 120 s; tip on");

    let id = |s: &str| DeviceId::new(s);
    let alice_phone = Device::master(alice.clone(), id("alice-phone")?, DeviceFlag::App);
    let alice_web = Device::slave(alice.clone(), id("alice-web")?, DeviceFlag::Web);
    let bob_phone = Device::master(bob.clone(), id("bob-phone")?, DeviceFlag::App);
    let (phone_id, mut alice_phone) = hub.connect_in_process(alice_phone, 64);
    let (_, mut alice_web) = hub.connect_in_process(alice_web, 64);
    let (_, mut bob_phone) = hub.connect_in_process(bob_phone, 64);
    let say = |text: &str| {
        SendRequest::new(
            alice.clone(),
            group.clone(),
            format!(r#"{{"type":1,"content":"{text}"}}"#),
        )
        .from_connection(phone_id)
    };

    println!("\n1. alice sends from her phone");
    let first = hub.send(say("meet at 5, password is hunter2")).await?;
    println!(
        "  ack: message {} at seq {}",
        first.message_id, first.message_seq
    );
    let mut all = [
        ("alice phone", &mut alice_phone),
        ("alice web", &mut alice_web),
        ("bob phone", &mut bob_phone),
    ];
    show(&mut all); // the sending phone has its ack, not a copy

    println!("\n2. alice revokes it");
    let revoke =
        |requester: &Uid, id: MessageId| hub.revoke(RevokeRequest::by_id(requester.clone(), id));
    let outcome = revoke(&alice, first.message_id).await?;
    let RevokeOutcome::Revoked(record) = &outcome else {
        return Err(format!("expected a fresh revocation, got {outcome:?}").into());
    };
    println!(
        "  recorded: extra_version {}, revoker {}, at {} ms",
        record.extra_version, record.revoker, record.revoked_at_ms
    );
    // Every device of every member is told, the revoker's own too.
    let got = show(&mut all);
    let command = got[0].first().ok_or("alice's phone got no command")?;
    println!(
        "  the command's payload: {}",
        String::from_utf8_lossy(&command.payload)
    );

    println!("\n3. bob reads the history");
    for h in hub.sync_channel(&bob, &group, Page::forward(1, 50)).await? {
        let state = match &h.revoked {
            Some(r) => format!("REVOKED by {} (v{})", r.revoker, r.extra_version),
            None => "ok".to_string(),
        };
        println!(
            "  seq {} from {}: {state}, {}",
            h.message_seq,
            h.from_uid,
            describe(&h)
        );
    }

    println!("\n4. bob tries to revoke alice's second message");
    let second = hub.send(say("see you there")).await?;
    match revoke(&bob, second.message_id).await {
        Err(Error::RevokeRefused(why @ RevokeRefusal::NotPermitted)) => {
            println!("  refused as expected: {why}")
        }
        other => return Err(format!("expected NotPermitted, got {other:?}").into()),
    }

    println!("\n5. alice waits too long to revoke her third message");
    let third = hub.send(say("running late")).await?;
    clock.advance(std::time::Duration::from_millis(121_000));
    match revoke(&alice, third.message_id).await {
        Err(Error::RevokeRefused(why @ RevokeRefusal::WindowExpired { .. })) => {
            println!("  refused as expected: {why}")
        }
        other => return Err(format!("expected WindowExpired, got {other:?}").into()),
    }
    show(&mut all); // messages 2 and 3; no revocation traffic

    println!("\n6. alice revokes the first message again");
    match revoke(&alice, first.message_id).await? {
        RevokeOutcome::AlreadyRevoked(r) => {
            println!(
                "  already revoked: the first record, extra_version {}",
                r.extra_version
            )
        }
        other => return Err(format!("expected AlreadyRevoked, got {other:?}").into()),
    }
    show(&mut all); // nothing sent again

    println!("\n7. bob's client syncs revocations after extra_version 0");
    for r in hub.sync_revocations(&bob, &group, 0, 100).await? {
        println!(
            "  v{}: message {} (seq {}) revoked by {}",
            r.extra_version, r.message_id, r.message_seq, r.revoker
        );
    }

    println!("\n8. alice fixes a typo in her second message (edit window 24 h)");
    let edit = EditRequest::new(
        alice.clone(),
        RevokeTarget::MessageId(second.message_id),
        r#"{"type":1,"content":"see you there!"}"#,
    );
    let edited = hub.edit(edit).await?;
    println!("  edited: extra_version {}", edited.extra().extra_version);
    show(&mut all); // a transient syncMessageExtra to every online device
    let late = EditRequest::new(bob.clone(), RevokeTarget::MessageId(second.message_id), "x");
    match hub.edit(late).await {
        Err(Error::EditRefused(why)) => println!("  bob may not edit it: {}", why.code()),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }

    println!("\n9. alice asks for read receipts; bob reads it, twice");
    let asked = hub
        .send(say("did everyone read this?").setting(Setting(Setting::RECEIPT)))
        .await?;
    show(&mut all);
    for _ in 0..2 {
        let read = hub.mark_read(&bob, &group, &[asked.message_id]).await?;
        match read.counted.first().and_then(|x| x.receipt) {
            Some(r) => println!("  counted: {} read, {} unread", r.readers, r.unread()),
            None => println!("  counted nothing: bob had read it"),
        }
    }
    show(&mut all); // alice's devices and bob's are told

    println!("\n10. bob's client syncs every extra after extra_version 0");
    for x in hub.sync_extras(&bob, &group, 0, 100).await? {
        let edit = x.edit.as_ref().map(|e| String::from_utf8_lossy(&e.content));
        println!(
            "  v{}: seq {} revoked {} edit {:?} receipt {:?} read by bob {}",
            x.extra_version,
            x.message_seq,
            x.revocation.is_some(),
            edit,
            x.receipt.map(|r| (r.readers, r.unread())),
            x.read_at_ms.is_some(),
        );
    }
    Ok(())
}
