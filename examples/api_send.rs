//! The seed article's question: "messages my server sent through the API
//! reach the client, but are gone after a refresh. Why?"
//!
//! WuKongIM's HTTP `/message/send` defaults to `sync_once=1`: a
//! pass-through command, delivered to online devices and never written to
//! the channel's history. This example sends the same server-side message
//! both ways, "refreshes" (closes and reopens the store, as a restarted
//! server and a reloading client would), and shows what the client sees.
//!
//! Run with `cargo run --example api_send`.

use std::path::Path;
use std::sync::Arc;

use imcore::store::Page;
use imcore::{
    Channel, Device, DeviceFlag, DeviceId, Flags, Hub, MemoryDirectory, SendRequest, SledStore, Uid,
};

/// A hub on the sled store in `dir`, with the group set up.
fn hub_on(dir: &Path, group: &Channel, server: &Uid, client: &Uid) -> imcore::Result<Hub> {
    let directory = Arc::new(MemoryDirectory::new());
    // The business server's uid owns the group, so it may send to it.
    directory.create_channel(group, server, [client.clone()]);
    Hub::builder()
        .store(Arc::new(SledStore::open(dir)?))
        .directory(directory)
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (server, client) = (Uid::new("biz-server")?, Uid::new("alice")?);
    let group = Channel::group("project-7")?;
    let invite = r#"{"type":1,"content":"alice was invited to project-7"}"#;

    {
        let hub = hub_on(dir.path(), &group, &server, &client)?;
        let device = Device::master(client.clone(), DeviceId::new("alice-web")?, DeviceFlag::Web);
        let (_, mut alice) = hub.connect_in_process(device, 16);

        let api_default = Flags {
            sync_once: true,
            ..Flags::default()
        };
        let ack = hub
            .send(SendRequest::new(server.clone(), group.clone(), invite).flags(api_default))
            .await?;
        println!(
            "server send with sync_once=1 (the API's default): id {}, seq {} -> {:?}",
            ack.message_id, ack.message_seq, ack.persistence
        );
        let normal = Flags {
            sync_once: false,
            red_dot: true,
            ..Flags::default()
        };
        let ack = hub
            .send(SendRequest::new(server.clone(), group.clone(), invite).flags(normal))
            .await?;
        println!(
            "server send with sync_once=0: id {}, seq {} -> {:?}",
            ack.message_id, ack.message_seq, ack.persistence
        );
        let live = alice.drain();
        println!("alice, online, received both live: {} messages", live.len());
        for m in &live {
            println!("  seq {} sync_once={}", m.message_seq, m.flags.sync_once);
        }
        // The client never acknowledged the command: it stays queued for her.
    }

    println!("\n-- refresh: the store is closed and reopened, the client reloads --\n");
    let hub = hub_on(dir.path(), &group, &server, &client)?;

    let history = hub
        .sync_channel(&client, &group, Page::forward(1, 50))
        .await?;
    println!("channel history: {} message(s)", history.len());
    for m in &history {
        println!(
            "  seq {}: {} (sync_once={})",
            m.message_seq,
            String::from_utf8_lossy(&m.payload),
            m.flags.sync_once
        );
    }
    for view in hub.sync_conversations(&client, 0, 50).await? {
        println!(
            "conversation {}: last seq {}, unread {}",
            view.channel, view.conversation.last_seq, view.conversation.unread
        );
    }
    let pending = hub.sync_commands(&client, 0, 50).await?;
    println!(
        "command queue: {} pending (the sync_once=1 message, once, until acknowledged)",
        pending.len()
    );
    if let Some(last) = pending.last() {
        hub.ack_commands(&client, last.cursor).await?;
    }
    println!(
        "after the client's ack: {} pending",
        hub.sync_commands(&client, 0, 50).await?.len()
    );

    println!(
        "\nThe sync_once=1 message was a pass-through command: it is in no history and\n\
         no conversation, so a client that reloads from history never sees it again.\n\
         Set sync_once=0 for messages clients must keep."
    );
    Ok(())
}
