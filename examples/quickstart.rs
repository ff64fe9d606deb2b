//! Quickstart: the embedded sled store, a normal message and a command.
//!
//! Run with `cargo run --example quickstart`.

use imcore::store::{CommandQueue, ConversationStore, ConversationUpdate, MessageLog, Page};
use imcore::{
    Channel, ClientMsgNo, Flags, Message, MessageIdGenerator, Persistence, PersistencePolicy,
    SledStore, Uid, WuKongPolicy,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(dir.path())?;
    println!("opened the embedded sled store in {}", dir.path().display());

    let ids = MessageIdGenerator::new(1)?;
    let (alice, bob) = (Uid::new("alice")?, Uid::new("bob")?);
    let chat = Channel::person(&alice, &bob);
    println!("alice and bob share person channel {:?}", chat.id.as_str());

    let make = |no: &str, flags: Flags, payload: &str| -> imcore::Result<Message> {
        Ok(Message {
            message_id: ids.next_id(),
            message_seq: 0,
            client_msg_no: ClientMsgNo::new(no)?,
            from_uid: alice.clone(),
            channel: chat.clone(),
            timestamp_ms: 1_700_000_000_000,
            flags,
            payload: payload.as_bytes().to_vec().into(),
        })
    };
    let hello = make("c-1", Flags::normal(), r#"{"type":1,"content":"hi bob"}"#)?;
    let typing = make(
        "c-2",
        Flags::command(),
        r#"{"type":99,"cmd":"typing","param":{}}"#,
    )?;

    for message in [hello, typing] {
        match WuKongPolicy.classify(&message) {
            Persistence::History => {
                let out = store.append(vec![message.clone()]).await?;
                store
                    .update_conversations(&[ConversationUpdate {
                        uid: bob.clone(),
                        channel: chat.clone(),
                        message_id: out[0].message_id,
                        message_seq: out[0].message_seq,
                        timestamp_ms: message.timestamp_ms,
                        raise_unread: message.flags.red_dot,
                    }])
                    .await?;
                println!(
                    "normal message {} stored in history at seq {}",
                    out[0].message_id, out[0].message_seq
                );
            }
            Persistence::Command => {
                store
                    .push_command(&message, std::slice::from_ref(&bob))
                    .await?;
                println!(
                    "command {} queued for bob (no channel seq used)",
                    message.message_id
                );
            }
            Persistence::Transient => println!("transient: stored nowhere"),
        }
    }

    let history = store.read(&chat, Page::forward(1, 50)).await?;
    println!("history of the channel: {} message(s)", history.len());
    for m in &history {
        println!(
            "  seq {} from {}: {}",
            m.message_seq,
            m.from_uid,
            String::from_utf8_lossy(&m.payload)
        );
    }
    let conv = store.conversation(&bob, &chat).await?;
    if let Some(c) = conv {
        println!(
            "bob's conversation with {}: last seq {}, unread {}",
            c.channel.as_seen_by(&bob).id,
            c.last_seq,
            c.unread
        );
    }
    let pending = store.pending_commands(&bob, 0, 50).await?;
    println!("bob's command queue: {} pending", pending.len());
    for q in &pending {
        println!(
            "  cursor {}: {}",
            q.cursor,
            String::from_utf8_lossy(&q.message.payload)
        );
    }
    let acked = store
        .ack_commands(&bob, pending.last().map_or(0, |q| q.cursor))
        .await?;
    let left = store.pending_commands(&bob, 0, 50).await?.len();
    println!("bob acknowledged {acked} command(s); {left} left: synced once");
    Ok(())
}
