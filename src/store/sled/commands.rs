//! Each user's command queue on sled (write diffusion: a command is queued
//! for each recipient, who consumes it once).

use async_trait::async_trait;

use super::keys::{
    be_u64, command_id_key, command_sender_key, counter_key, decode, encode, key, key_suffix_u64,
    next_counter, seq_key, uid_key,
};
use super::{abort, storage, tx_error, SledStore, TAG_COMMAND_CURSOR};
use crate::error::Result;
use crate::model::{Message, MessageId, Uid};
use crate::store::{check_limit, CommandQueue, Pushed, QueuedCommand};
use sled::Transactional;

#[async_trait]
impl CommandQueue for SledStore {
    async fn push_command(&self, message: &Message, recipients: &[Uid]) -> Result<Pushed> {
        let value = encode(message)?;
        let sender = command_sender_key(message);
        // The resend entry: the command's id, then its payload, so that a
        // resend with another payload is told apart.
        let mut first = message.message_id.0.to_be_bytes().to_vec();
        first.extend_from_slice(&message.payload);
        let mut seen = std::collections::HashSet::with_capacity(recipients.len());
        // (uid prefix, counter key) per distinct recipient.
        let users: Vec<(Vec<u8>, Vec<u8>)> = recipients
            .iter()
            .filter(|uid| seen.insert(*uid))
            .map(|uid| {
                let prefix = key(|k| uid_key(k, uid));
                let counter = counter_key(TAG_COMMAND_CURSOR, |k| k.extend_from_slice(&prefix));
                (prefix, counter)
            })
            .collect();
        let trees = (
            self.commands.clone(),
            self.command_ids.clone(),
            self.command_dedup.clone(),
            self.counters.clone(),
        );
        let owned = message.clone();
        // On the store's write thread, like every write.
        let push = move || {
            let message = &owned;
            let (commands, command_ids, command_dedup, counters) = &trees;
            (commands, command_ids, command_dedup, counters)
                .transaction(|(queue, ids, dedup, counters)| {
                    if let Some(v) = dedup.get(&sender)? {
                        let (id, payload) = v.split_at(v.len().min(8));
                        return match be_u64(id, "command dedup entry") {
                            Ok(_) if payload != message.payload.as_ref() => {
                                abort(crate::store::conflict(message))
                            }
                            Ok(first) => Ok(Some(MessageId(first))),
                            Err(e) => abort(e),
                        };
                    }
                    for (prefix, counter) in &users {
                        let cursor = next_counter(counters, counter)?;
                        queue.insert(seq_key(prefix, cursor), value.as_slice())?;
                        ids.insert(seq_key(prefix, message.message_id.0), &cursor.to_be_bytes())?;
                    }
                    // The dedup value is the command's id; keyed by id too, so
                    // that `is_command` is one look-up.
                    dedup.insert(sender.as_slice(), first.as_slice())?;
                    dedup.insert(&command_id_key(message.message_id), &[])?;
                    Ok(None)
                })
                .map_err(tx_error)
        };
        let duplicate = self.thread.run(push).await?;
        // A resend is acknowledged only once the first push is durable too
        // (it may still be in the flush another caller is waiting for).
        self.settle().await?;
        Ok(match duplicate {
            Some(message_id) => Pushed {
                message_id,
                duplicate: true,
            },
            None => Pushed {
                message_id: message.message_id,
                duplicate: false,
            },
        })
    }

    async fn pending_commands(
        &self,
        uid: &Uid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<QueuedCommand>> {
        check_limit(limit)?;
        let prefix = key(|k| uid_key(k, uid));
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.commands
            .range(seq_key(&prefix, first)..=seq_key(&prefix, u64::MAX))
            .take(limit)
            .map(|kv| {
                let (k, v) = kv.map_err(storage)?;
                Ok(QueuedCommand {
                    cursor: key_suffix_u64(&k, "command key")?,
                    message: decode(&v, "command")?,
                })
            })
            .collect()
    }

    async fn ack_commands(&self, uid: &Uid, up_to: u64) -> Result<usize> {
        let prefix = key(|k| uid_key(k, uid));
        // Collect the entries first (transactions cannot scan); entries
        // pushed meanwhile get cursors above every existing one.
        let mut doomed = Vec::new();
        for kv in self
            .commands
            .range(seq_key(&prefix, 0)..=seq_key(&prefix, up_to))
        {
            let (k, v) = kv.map_err(storage)?;
            let message: Message = decode(&v, "command")?;
            doomed.push((k, seq_key(&prefix, message.message_id.0)));
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let (commands, command_ids) = (self.commands.clone(), self.command_ids.clone());
        let remove = move || {
            (&commands, &command_ids)
                .transaction(|(queue, ids)| {
                    let mut removed = 0;
                    for (entry, index) in &doomed {
                        if queue.remove(entry)?.is_some() {
                            removed += 1;
                        }
                        ids.remove(index.as_slice())?;
                    }
                    Ok(removed)
                })
                .map_err(tx_error)
        };
        let removed = self.thread.run(remove).await?;
        self.settle().await?;
        Ok(removed)
    }

    async fn is_command(&self, id: MessageId) -> Result<bool> {
        self.command_dedup
            .contains_key(command_id_key(id))
            .map_err(storage)
    }

    async fn remove_commands(&self, uid: &Uid, ids: &[MessageId]) -> Result<usize> {
        let prefix = key(|k| uid_key(k, uid));
        let index_keys: Vec<Vec<u8>> = ids.iter().map(|id| seq_key(&prefix, id.0)).collect();
        let (commands, command_ids) = (self.commands.clone(), self.command_ids.clone());
        let remove = move || {
            (&commands, &command_ids)
                .transaction(|(queue, index)| {
                    let mut removed = 0;
                    for k in &index_keys {
                        if let Some(cursor) = index.remove(k.as_slice())? {
                            let cursor = match be_u64(&cursor, "command index") {
                                Ok(c) => c,
                                Err(e) => return abort(e),
                            };
                            if queue.remove(seq_key(&prefix, cursor))?.is_some() {
                                removed += 1;
                            }
                        }
                    }
                    Ok(removed)
                })
                .map_err(tx_error)
        };
        let removed = self.thread.run(remove).await?;
        if removed > 0 {
            self.settle().await?;
        }
        Ok(removed)
    }
}
