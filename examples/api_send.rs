//! "I sent a message through the API, the client got it, but after a
//! refresh it is gone": WuKongIM's HTTP `/message/send` defaults to
//! `sync_once=1`, which makes the message a pass-through command. It is
//! delivered, but it is not channel history and touches no conversation, so
//! a client that reloads its history never sees it again. With
//! `sync_once=0` it is an ordinary message.
//!
//! A business server sends the same system notice to a group twice, from
//! the server side (no connection): once with `sync_once=1`, once with
//! `sync_once=0, red_dot=1`. alice's phone is online and receives both.
//! Then the client refreshes: the hub and the sled store are dropped, the
//! store is reopened from the same directory, and alice syncs again.
//!
//! Run with `cargo run --example api_send`.

use std::path::Path;
use std::sync::Arc;

use imcore::store::Page;
use imcore::{
    Channel, Device, DeviceFlag, DeviceId, Flags, Hub, MemoryDirectory, Message, SendRequest,
    SledStore, Uid,
};

/// A hub on the sled store at `path` (created, or reopened).
fn open_hub(path: &Path, directory: &Arc<MemoryDirectory>) -> imcore::Result<Hub> {
    Hub::builder()
        .store(Arc::new(SledStore::open(path)?))
        .directory(directory.clone())
        .build()
}

/// The header bits that matter here, WuKongIM style.
fn flags(f: Flags) -> String {
    format!(
        "sync_once={} red_dot={}",
        u8::from(f.sync_once),
        u8::from(f.red_dot)
    )
}

fn describe(m: &Message) -> String {
    format!(
        "id {} seq {} [{}] {}",
        m.message_id,
        m.message_seq,
        flags(m.flags),
        String::from_utf8_lossy(&m.payload)
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_path_buf();
    // The host's directory lives outside the hub and survives the refresh.
    let directory = Arc::new(MemoryDirectory::new());
    let (system, alice) = (Uid::new("system")?, Uid::new("alice")?);
    let group = Channel::group("project-42")?;
    // The sender must pass the permission check: the system user owns the
    // group, alice is a member.
    directory.create_channel(&group, &system, [alice.clone()]);
    let phone = || -> imcore::Result<Device> {
        Ok(Device::master(
            alice.clone(),
            DeviceId::new("alice-phone")?,
            DeviceFlag::App,
        ))
    };
    let notice = r#"{"type":1,"content":"alice was invited to project-42"}"#;

    println!("== before the refresh: alice's phone is online ==");
    let hub = open_hub(&path, &directory)?;
    let (_, mut alice_phone) = hub.connect_in_process(phone()?, 16);
    let sends = [
        (
            "/message/send default",
            Flags {
                sync_once: true,
                ..Flags::default()
            },
        ),
        (
            "explicit sync_once=0",
            Flags {
                sync_once: false,
                red_dot: true,
                ..Flags::default()
            },
        ),
    ];
    let mut ids = Vec::new();
    for (what, f) in sends {
        let request = SendRequest::new(system.clone(), group.clone(), notice).flags(f);
        let ack = hub.send(request).await?;
        println!(
            "server sends [{}] ({what}): ack id {}, seq {}, kept as {:?}",
            flags(f),
            ack.message_id,
            ack.message_seq,
            ack.persistence
        );
        ids.push(ack.message_id);
    }
    let (once_id, normal_id) = (ids[0], ids[1]);
    for m in alice_phone.drain() {
        println!("alice phone got: {}", describe(&m));
    }
    println!("alice sees both; her client does not acknowledge the command yet");

    println!("\n== alice refreshes: hub and store dropped, sled reopened ==");
    drop(alice_phone);
    drop(hub);
    let hub = open_hub(&path, &directory)?;
    let (_, mut alice_phone) = hub.connect_in_process(phone()?, 16);
    println!(
        "reopened {}; live deliveries waiting: {}",
        path.display(),
        alice_phone.drain().len()
    );

    let history = hub
        .sync_channel(&alice, &group, Page::forward(1, 100))
        .await?;
    println!("channel history of {group}: {} message(s)", history.len());
    for m in &history {
        println!("  {}", describe(m));
    }
    let in_history = |id| history.iter().any(|m| m.message_id == id);
    println!(
        "  sync_once=1 copy in history: {}; sync_once=0 copy: {}",
        in_history(once_id),
        in_history(normal_id)
    );
    let conversations = hub.sync_conversations(&alice, 0, 100).await?;
    println!("conversation list: {} conversation(s)", conversations.len());
    for view in &conversations {
        let last = view.last_message.as_ref().map(|m| describe(m));
        println!(
            "  {}: last seq {}, unread {}, last message {}",
            view.channel,
            view.conversation.last_seq,
            view.conversation.unread,
            last.as_deref().unwrap_or("(none)")
        );
    }
    let is_last = |id| {
        conversations
            .iter()
            .any(|v| v.conversation.last_message_id == id)
    };
    println!(
        "  sync_once=1 copy shown in the list: {}; sync_once=0 copy: {}",
        is_last(once_id),
        is_last(normal_id)
    );

    let pending = hub.sync_commands(&alice, 0, 100).await?;
    println!(
        "command queue: {} pending (delivered live, but never acked)",
        pending.len()
    );
    for c in &pending {
        println!("  cursor {}: {}", c.cursor, describe(&c.message));
    }
    if let Some(last) = pending.last() {
        let n = hub.ack_commands(&alice, last.cursor).await?;
        println!("alice acks up to cursor {}: {n} consumed", last.cursor);
    }
    let left = hub.sync_commands(&alice, 0, 100).await?.len();
    println!("command queue after the ack: {left} pending: the command is gone for good");

    println!("\n== why ==");
    println!("sync_once=1 is a pass-through command: delivered (and synced once), never history.");
    println!("sync_once=0 is a normal message: it has a channel seq, a conversation, unread.");
    println!("Set sync_once=0 for messages clients must keep.");
    Ok(())
}
