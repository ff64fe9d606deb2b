//! Quickstart: the whole flow in one process, on the embedded sled store.
//!
//! alice is online on two devices (a master phone and a slave web client),
//! bob on his phone, carol is offline. In a group and a person channel:
//! a normal message, a command, a transient message; carol catching up when
//! she comes back; two refused sends; a resend after a lost
//! acknowledgement, and one that is not a resend; then a restart on the
//! same directory, where the group and its blacklist are still there.
//!
//! Run with `cargo run --example quickstart`.

use std::sync::Arc;

use imcore::directory::ChannelInfo;
use imcore::session::InProcessConnection;
use imcore::store::Page;
use imcore::{
    AccessList, Channel, ChannelType, ClientMsgNo, Device, DeviceFlag, DeviceId, Error, Flags, Hub,
    Message, SendRequest, SledStore, StoredDirectory, Uid,
};

/// One message as `viewer` sees it: seq, channel (a person channel by the
/// other party's uid), sender and payload.
fn describe(m: &Message, viewer: &Uid) -> String {
    format!(
        "seq {} in {} from {}: {}",
        m.message_seq,
        m.channel.as_seen_by(viewer),
        m.from_uid,
        String::from_utf8_lossy(&m.payload)
    )
}

/// Prints what one device has received since the last call.
fn show(label: &str, owner: &Uid, conn: &mut InProcessConnection) {
    let got = conn.drain();
    if got.is_empty() {
        println!("   {label:<11} got nothing");
    }
    for m in got {
        println!("   {label:<11} got [{}]", describe(&m, owner));
    }
}

/// Prints the seqs of a channel's history as `reader` reads it.
async fn show_history(hub: &Hub, reader: &Uid, channel: &Channel) -> imcore::Result<()> {
    let history = hub
        .sync_channel(reader, channel, Page::forward(1, 100))
        .await?;
    let seqs: Vec<u64> = history.iter().map(|m| m.message_seq).collect();
    println!("   history of {channel} is still seqs {seqs:?}");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SledStore::open(dir.path())?);
    // The directory (groups, members, lists, tokens) in the same store.
    let directory = Arc::new(StoredDirectory::new(store.clone()));
    let hub = Hub::builder()
        .store(store.clone())
        .directory(directory.clone())
        .build()?;
    println!("hub on sled in {}", dir.path().display());

    let (alice, bob, carol) = (Uid::new("alice")?, Uid::new("bob")?, Uid::new("carol")?);
    let group = Channel::group("team")?;
    let members = [alice.clone(), bob.clone(), carol.clone()];
    directory
        .create_channel(&group, ChannelInfo::default(), &members)
        .await?;
    println!("group {group}: alice (owner), bob, carol");

    let id = DeviceId::new;
    let (alice_phone_id, mut alice_phone) = hub.connect_in_process(
        Device::master(alice.clone(), id("alice-phone")?, DeviceFlag::App),
        64,
    );
    let (_, mut alice_web) = hub.connect_in_process(
        Device::slave(alice.clone(), id("alice-web")?, DeviceFlag::Web),
        64,
    );
    let (bob_phone_id, mut bob_phone) = hub.connect_in_process(
        Device::master(bob.clone(), id("bob-phone")?, DeviceFlag::App),
        64,
    );
    println!("online: alice (phone master, web slave), bob (phone); carol offline");

    println!("\n1. alice sends to the group from her phone");
    let hello = r#"{"type":1,"content":"hi team"}"#;
    let ack = hub
        .send(SendRequest::new(alice.clone(), group.clone(), hello).from_connection(alice_phone_id))
        .await?;
    println!("   ack: id {}, seq {}", ack.message_id, ack.message_seq);
    show("bob phone", &bob, &mut bob_phone);
    show("alice web", &alice, &mut alice_web);
    show("alice phone", &alice, &mut alice_phone);
    println!("   (the sending device is not sent its own message)");

    println!("\n2. alice writes to bob in their person channel, addressed as \"bob\"");
    let to_bob = Channel::new(bob.clone().into(), ChannelType::PERSON);
    let lunch = r#"{"type":1,"content":"lunch?"}"#;
    let ack = hub
        .send(SendRequest::new(alice.clone(), to_bob, lunch).from_connection(alice_phone_id))
        .await?;
    println!("   ack: id {}, seq {}", ack.message_id, ack.message_seq);
    for (label, owner, conn) in [
        ("bob phone", &bob, &mut bob_phone),
        ("alice web", &alice, &mut alice_web),
    ] {
        for m in conn.drain() {
            println!(
                "   {label:<11} got it: stored in {}, {owner} sees channel {}",
                m.channel,
                m.channel.as_seen_by(owner)
            );
        }
    }

    println!("\n3. a command (sync_once): delivered, but not history");
    let typing = r#"{"type":99,"cmd":"typing","param":{}}"#;
    let ack = hub
        .send(
            SendRequest::new(alice.clone(), group.clone(), typing)
                .flags(Flags::command())
                .from_connection(alice_phone_id),
        )
        .await?;
    println!("   ack: id {}, seq {}", ack.message_id, ack.message_seq);
    show("bob phone", &bob, &mut bob_phone);
    show("alice web", &alice, &mut alice_web);
    show_history(&hub, &bob, &group).await?;
    let consumed = hub.ack(&bob, bob_phone_id, ack.message_id, 0).await?;
    println!("   bob's master phone acks it: consumed for bob = {consumed}");

    println!("\n4. a transient message (no_persist): online only, stored nowhere");
    let brb = r#"{"type":1,"content":"brb"}"#;
    let ack = hub
        .send(
            SendRequest::new(alice.clone(), group.clone(), brb)
                .flags(Flags::transient())
                .from_connection(alice_phone_id),
        )
        .await?;
    println!("   ack: id {}, seq {}", ack.message_id, ack.message_seq);
    show("bob phone", &bob, &mut bob_phone);
    show("alice web", &alice, &mut alice_web);
    show_history(&hub, &bob, &group).await?;

    println!("\n5. carol reconnects and catches up");
    let (_, mut carol_phone) = hub.connect_in_process(
        Device::master(carol.clone(), id("carol-phone")?, DeviceFlag::App),
        64,
    );
    show("carol phone", &carol, &mut carol_phone);
    for view in hub.sync_conversations(&carol, 0, 100).await? {
        println!(
            "   conversation {}: last seq {}, unread {}",
            view.channel, view.conversation.last_seq, view.conversation.unread
        );
    }
    for m in hub
        .sync_channel(&carol, &group, Page::forward(1, 100))
        .await?
    {
        println!("   history [{}]", describe(&m, &carol));
    }
    let pending = hub.sync_commands(&carol, 0, 100).await?;
    for c in &pending {
        println!(
            "   command #{} [{}]",
            c.cursor,
            describe(&c.message, &carol)
        );
    }
    println!("   (the transient 'brb' is nowhere: carol was offline)");
    if let Some(last) = pending.last() {
        let n = hub.ack_commands(&carol, last.cursor).await?;
        println!("   carol acks up to cursor {}: {n} consumed", last.cursor);
    }
    let left = hub.sync_commands(&carol, 0, 100).await?.len();
    println!("   commands pending after the ack: {left}");

    println!("\n6. refused sends");
    let eve = Uid::new("eve")?;
    directory
        .add_to_list(AccessList::Black, &group, std::slice::from_ref(&bob))
        .await?;
    for (who, why) in [(&eve, "not a member"), (&bob, "blacklisted")] {
        let request = SendRequest::new(who.clone(), group.clone(), r#"{"type":1,"content":"?"}"#);
        match hub.send(request).await {
            Err(Error::Rejected { reason, .. }) => println!(
                "   {who} ({why}): rejected, reason {} {}",
                reason.as_u8(),
                reason.name().unwrap_or("?")
            ),
            Err(e) => return Err(e.into()),
            Ok(ack) => println!(
                "   {who} ({why}): unexpectedly sent, seq {}",
                ack.message_seq
            ),
        }
    }
    show_history(&hub, &alice, &group).await?;

    println!("\n7. resends: a message is known by sender, channel and client_msg_no");
    let note = |payload: &'static str| {
        SendRequest::new(alice.clone(), group.clone(), payload)
            .client_msg_no(ClientMsgNo::new("alice-7").expect("a valid number"))
    };
    let first = hub.send(note(r#"{"type":1,"content":"lunch?"}"#)).await?;
    let again = hub.send(note(r#"{"type":1,"content":"lunch?"}"#)).await?;
    println!(
        "   sent: seq {}; the same again (its ack was lost): duplicate {}, seq {}",
        first.message_seq, again.duplicate, again.message_seq
    );
    match hub.send(note(r#"{"type":1,"content":"dinner?"}"#)).await {
        Err(e @ Error::Conflict { .. }) => println!("   another payload, same number: {e}"),
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }
    show_history(&hub, &alice, &group).await?;

    println!("\n8. a restart on the same directory: nothing set up again");
    hub.shutdown().await?;
    drop((hub, directory, store, alice_phone, alice_web, bob_phone));
    let store = Arc::new(SledStore::open(dir.path())?);
    let directory = Arc::new(StoredDirectory::new(store.clone()));
    let hub = Hub::builder()
        .store(store)
        .directory(directory.clone())
        .build()?;
    let hello = SendRequest::new(
        carol.clone(),
        group.clone(),
        r#"{"type":1,"content":"back"}"#,
    );
    let ack = hub.send(hello).await?;
    println!(
        "   carol (a member, as before): sent, seq {}",
        ack.message_seq
    );
    let again = SendRequest::new(bob.clone(), group.clone(), r#"{"type":1,"content":"?"}"#);
    match hub.send(again).await {
        Err(Error::Rejected { reason, .. }) => {
            println!(
                "   bob (still blacklisted): rejected, reason {}",
                reason.as_u8()
            )
        }
        other => return Err(format!("expected bob refused, got {other:?}").into()),
    }
    Ok(())
}
