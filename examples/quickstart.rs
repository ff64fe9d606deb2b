//! Quickstart: the whole flow in one process, on the embedded sled store.
//!
//! Two users online (alice on a phone and the web, bob on a phone), carol
//! offline; a group; a normal message, a person-channel message, a command
//! and a transient message; a refused send; carol catching up after she
//! reconnects.
//!
//! Run with `cargo run --example quickstart`.

use std::sync::Arc;

use imcore::session::InProcessConnection;
use imcore::store::Page;
use imcore::{
    Channel, ChannelType, Device, DeviceFlag, DeviceId, Error, Flags, Hub, MemoryDirectory,
    Message, SendRequest, SledStore, Uid,
};

/// Prints what a device received, each message as its owner sees it.
fn show(label: &str, owner: &Uid, conn: &mut InProcessConnection) {
    let got: Vec<String> = conn.drain().iter().map(|m| describe(m, owner)).collect();
    println!("    {label:<11} got {}: {}", got.len(), got.join(", "));
}

fn describe(m: &Message, viewer: &Uid) -> String {
    format!(
        "[seq {} in {} from {}: {}]",
        m.message_seq,
        m.channel.as_seen_by(viewer),
        m.from_uid,
        String::from_utf8_lossy(&m.payload)
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(dir.path())?;
    let directory = Arc::new(MemoryDirectory::new());
    let hub = Hub::builder()
        .store(Arc::new(store))
        .directory(directory.clone())
        .build()?;
    println!("hub on the embedded sled store in {}", dir.path().display());

    let (alice, bob, carol) = (Uid::new("alice")?, Uid::new("bob")?, Uid::new("carol")?);
    let team = Channel::group("team")?;
    directory.create_channel(&team, &alice, [bob.clone(), carol.clone()]);
    println!("group 'team': alice (owner), bob, carol");

    let device = |uid: &Uid, id: &str, flag, master: bool| -> imcore::Result<Device> {
        let id = DeviceId::new(id)?;
        Ok(match master {
            true => Device::master(uid.clone(), id, flag),
            false => Device::slave(uid.clone(), id, flag),
        })
    };
    let (alice_phone_id, mut alice_phone) =
        hub.connect_in_process(device(&alice, "alice-phone", DeviceFlag::App, true)?, 64);
    let (_, mut alice_web) =
        hub.connect_in_process(device(&alice, "alice-web", DeviceFlag::Web, false)?, 64);
    let (_, mut bob_phone) =
        hub.connect_in_process(device(&bob, "bob-phone", DeviceFlag::App, true)?, 64);
    println!("online: alice (phone, web), bob (phone); carol is offline\n");

    println!("1. alice sends to the group from her phone");
    let ack = hub
        .send(
            SendRequest::new(
                alice.clone(),
                team.clone(),
                r#"{"type":1,"content":"hi team"}"#,
            )
            .from_connection(alice_phone_id),
        )
        .await?;
    println!("    ack: id {}, seq {}", ack.message_id, ack.message_seq);
    show("alice phone", &alice, &mut alice_phone);
    show("alice web", &alice, &mut alice_web);
    show("bob phone", &bob, &mut bob_phone);

    println!("\n2. alice writes to bob in their person channel");
    let to_bob = Channel::new(bob.clone().into(), ChannelType::PERSON);
    let ack = hub
        .send(
            SendRequest::new(alice.clone(), to_bob, r#"{"type":1,"content":"lunch?"}"#)
                .from_connection(alice_phone_id),
        )
        .await?;
    println!(
        "    ack: seq {} (each side sees the other's uid)",
        ack.message_seq
    );
    show("alice web", &alice, &mut alice_web);
    show("bob phone", &bob, &mut bob_phone);

    println!("\n3. a command (sync_once): delivered, not history");
    let ack = hub
        .send(
            SendRequest::new(
                alice.clone(),
                team.clone(),
                r#"{"type":99,"cmd":"typing","param":{}}"#,
            )
            .flags(Flags::command())
            .from_connection(alice_phone_id),
        )
        .await?;
    println!(
        "    ack: id {}, seq {} (no channel seq)",
        ack.message_id, ack.message_seq
    );
    show("bob phone", &bob, &mut bob_phone);
    alice_web.drain();

    println!("\n4. a transient message (no_persist): online only, stored nowhere");
    let ack = hub
        .send(
            SendRequest::new(alice.clone(), team.clone(), r#"{"type":1,"content":"brb"}"#)
                .flags(Flags::transient())
                .from_connection(alice_phone_id),
        )
        .await?;
    println!("    ack: id {}, seq {}", ack.message_id, ack.message_seq);
    show("bob phone", &bob, &mut bob_phone);
    alice_web.drain();

    println!("\n5. a refused send");
    directory.set_muted(&team, &bob, true);
    match hub
        .send(SendRequest::new(bob.clone(), team.clone(), "can I talk?"))
        .await
    {
        Err(e @ Error::Rejected { .. }) => {
            println!(
                "    bob is muted: {e} (WuKongIM reason {})",
                e.reason_code().as_u8()
            )
        }
        other => println!("    unexpected: {other:?}"),
    }

    println!("\n6. carol connects later and catches up");
    let (_, mut carol_phone) =
        hub.connect_in_process(device(&carol, "carol-phone", DeviceFlag::App, true)?, 64);
    println!("    live deliveries waiting: {}", carol_phone.drain().len());
    for view in hub.sync_conversations(&carol, 0, 100).await? {
        println!(
            "    conversation {}: last seq {}, unread {}",
            view.channel, view.conversation.last_seq, view.conversation.unread
        );
    }
    for m in hub
        .sync_channel(&carol, &team, Page::forward(1, 100))
        .await?
    {
        println!("    history {}", describe(&m, &carol));
    }
    let pending = hub.sync_commands(&carol, 0, 100).await?;
    println!("    pending commands: {}", pending.len());
    if let Some(last) = pending.last() {
        hub.ack_commands(&carol, last.cursor).await?;
    }
    let left = hub.sync_commands(&carol, 0, 100).await?.len();
    println!("    after her ack: {left} pending (a command reaches each user once)");
    Ok(())
}
