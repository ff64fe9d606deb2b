//! The directory on sled: one tree, `directory`, one key per token,
//! channel record, subscriber, list entry and system uid.
//!
//! | key | value |
//! |---|---|
//! | `t` ++ uid ++ device flag | token |
//! | `c` ++ channel | channel record |
//! | `m` ++ channel ++ uid bytes | (empty): a subscriber |
//! | `o` ++ uid ++ channel | (empty): the same, from the user's side |
//! | `l` ++ list (0 black, 1 white) ++ channel ++ uid bytes | (empty) |
//! | `s` ++ uid bytes | (empty): a system uid |
//!
//! (uid bytes: the uid unprefixed, last in its key, so that a channel's
//! subscribers come out in uid order).
//! | `v` ++ channel | the channel's version |
//! | `V` | the system uids' version |
//!
//! A change is one atomic batch, its version included. Changes take turns
//! (one lock per store): a version is read, then written, and a scan (a
//! list replaced, a channel deleted) sees no concurrent change.

use async_trait::async_trait;
use sled::Batch;

use super::keys::{be_u64, channel_key, decode, decode_channel_key, encode, key, uid_key};
use super::{storage, SledStore};
use crate::directory::{AccessList, ChannelInfo, DirectoryCounts, DirectoryStore, StoredToken};
use crate::error::{Error, Result};
use crate::model::{Channel, Uid};
use crate::session::DeviceFlag;

const TOKEN: u8 = b't';
const CHANNEL: u8 = b'c';
const MEMBER: u8 = b'm';
const MEMBER_OF: u8 = b'o';
const LIST: u8 = b'l';
const SYSTEM: u8 = b's';
const VERSION: u8 = b'v';
const SYSTEM_VERSION: &[u8] = b"V";

fn token_key(uid: &Uid, flag: DeviceFlag) -> Vec<u8> {
    key(|k| {
        k.push(TOKEN);
        uid_key(k, uid);
        k.push(u8::from(flag));
    })
}

fn channel_prefixed(tag: u8, channel: &Channel) -> Vec<u8> {
    key(|k| {
        k.push(tag);
        channel_key(k, channel);
    })
}

fn list_prefix(list: AccessList, channel: &Channel) -> Vec<u8> {
    key(|k| {
        k.push(LIST);
        k.push(match list {
            AccessList::Black => 0,
            AccessList::White => 1,
        });
        channel_key(k, channel);
    })
}

/// `prefix` ++ the uid's bytes, unprefixed: the uid ends the key, so keys
/// under one prefix sort as their uids do.
fn with_uid(prefix: &[u8], uid: &Uid) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(uid.as_str().as_bytes());
    k
}

fn member_of_key(uid: &Uid, channel: &Channel) -> Vec<u8> {
    key(|k| {
        k.push(MEMBER_OF);
        uid_key(k, uid);
        channel_key(k, channel);
    })
}

/// The uid at the end of a key that starts with `prefix`.
fn uid_after(prefix: &[u8], key: &[u8]) -> Result<Uid> {
    let bad = || Error::corrupt("directory key");
    let rest = key.get(prefix.len()..).ok_or_else(bad)?;
    let s = std::str::from_utf8(rest).map_err(|_| bad())?;
    Uid::new(s).map_err(|_| bad())
}

impl SledStore {
    fn dir_get(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        self.directory.get(key).map_err(storage)
    }

    /// The uids of the keys under `prefix`, in key (uid) order, after
    /// `after`, at most `limit`.
    fn uids_under(&self, prefix: &[u8], after: Option<&Uid>, limit: usize) -> Result<Vec<Uid>> {
        let scan = match after {
            Some(after) => {
                let mut from = with_uid(prefix, after);
                from.push(0);
                self.directory.range(from..)
            }
            None => self.directory.range(prefix.to_vec()..),
        };
        let mut out = Vec::new();
        for kv in scan {
            let (k, _) = kv.map_err(storage)?;
            if !k.starts_with(prefix) || out.len() == limit {
                break;
            }
            out.push(uid_after(prefix, &k)?);
        }
        Ok(out)
    }

    /// Adds the version bump of `version_key` to `batch`, applies it
    /// atomically, and waits for it to be durable. Returns the version.
    async fn commit(&self, mut batch: Batch, version_key: &[u8]) -> Result<u64> {
        let version = match self.dir_get(version_key)? {
            Some(v) => be_u64(&v, "directory version")? + 1,
            None => 1,
        };
        batch.insert(version_key, &version.to_be_bytes());
        self.write_alone(batch).await?;
        Ok(version)
    }

    /// Applies `batch` on the store's write thread and waits for it to be
    /// durable.
    async fn write_alone(&self, batch: Batch) -> Result<()> {
        let tree = self.directory.clone();
        self.thread
            .run(move || tree.apply_batch(batch).map_err(storage))
            .await?;
        self.settle().await
    }
}

#[async_trait]
impl DirectoryStore for SledStore {
    /// A scan of the channel and subscriber keys, off the async threads.
    async fn counts(&self) -> Result<Option<DirectoryCounts>> {
        let tree = self.directory.clone();
        let count = move |tag: u8| -> Result<u64> {
            let mut n = 0;
            for k in tree.scan_prefix([tag]).keys() {
                k.map_err(storage)?;
                n += 1;
            }
            Ok(n)
        };
        let counted = tokio::task::spawn_blocking(move || {
            Ok::<_, Error>(DirectoryCounts::new(count(CHANNEL)?, count(MEMBER)?))
        })
        .await
        .map_err(|e| Error::Storage {
            backend: super::BACKEND,
            source: Box::new(e),
        })??;
        Ok(Some(counted))
    }

    async fn set_token(&self, uid: &Uid, flag: DeviceFlag, token: &StoredToken) -> Result<()> {
        let _turn = self.directory_turn.lock().await;
        let mut batch = Batch::default();
        batch.insert(token_key(uid, flag), encode(token)?);
        self.write_alone(batch).await
    }

    async fn token(&self, uid: &Uid, flag: DeviceFlag) -> Result<Option<StoredToken>> {
        self.dir_get(&token_key(uid, flag))?
            .map(|v| decode(&v, "token"))
            .transpose()
    }

    async fn remove_token(&self, uid: &Uid, flag: DeviceFlag) -> Result<bool> {
        let _turn = self.directory_turn.lock().await;
        let key = token_key(uid, flag);
        let had = self.dir_get(&key)?.is_some();
        let mut batch = Batch::default();
        batch.remove(key);
        self.write_alone(batch).await?;
        Ok(had)
    }

    async fn put_channel(&self, channel: &Channel, info: &ChannelInfo) -> Result<u64> {
        let _turn = self.directory_turn.lock().await;
        let mut batch = Batch::default();
        batch.insert(channel_prefixed(CHANNEL, channel), encode(info)?);
        self.commit(batch, &channel_prefixed(VERSION, channel))
            .await
    }

    async fn channel(&self, channel: &Channel) -> Result<Option<ChannelInfo>> {
        self.dir_get(&channel_prefixed(CHANNEL, channel))?
            .map(|v| decode(&v, "channel record"))
            .transpose()
    }

    async fn delete_channel(&self, channel: &Channel) -> Result<Option<u64>> {
        let _turn = self.directory_turn.lock().await;
        let record = channel_prefixed(CHANNEL, channel);
        if self.dir_get(&record)?.is_none() {
            return Ok(None);
        }
        let mut batch = Batch::default();
        batch.remove(record);
        let members = channel_prefixed(MEMBER, channel);
        for uid in self.uids_under(&members, None, usize::MAX)? {
            batch.remove(with_uid(&members, &uid));
            batch.remove(member_of_key(&uid, channel));
        }
        for list in [AccessList::Black, AccessList::White] {
            let prefix = list_prefix(list, channel);
            for uid in self.uids_under(&prefix, None, usize::MAX)? {
                batch.remove(with_uid(&prefix, &uid));
            }
        }
        let version = self
            .commit(batch, &channel_prefixed(VERSION, channel))
            .await?;
        Ok(Some(version))
    }

    async fn add_subscribers(&self, channel: &Channel, uids: &[Uid]) -> Result<u64> {
        let _turn = self.directory_turn.lock().await;
        let members = channel_prefixed(MEMBER, channel);
        let mut batch = Batch::default();
        for uid in uids {
            batch.insert(with_uid(&members, uid), &[]);
            batch.insert(member_of_key(uid, channel), &[]);
        }
        self.commit(batch, &channel_prefixed(VERSION, channel))
            .await
    }

    async fn remove_subscribers(&self, channel: &Channel, uids: &[Uid]) -> Result<u64> {
        let _turn = self.directory_turn.lock().await;
        let members = channel_prefixed(MEMBER, channel);
        let mut batch = Batch::default();
        for uid in uids {
            batch.remove(with_uid(&members, uid));
            batch.remove(member_of_key(uid, channel));
        }
        self.commit(batch, &channel_prefixed(VERSION, channel))
            .await
    }

    async fn is_subscriber(&self, channel: &Channel, uid: &Uid) -> Result<bool> {
        let k = with_uid(&channel_prefixed(MEMBER, channel), uid);
        Ok(self.dir_get(&k)?.is_some())
    }

    async fn subscribers(
        &self,
        channel: &Channel,
        after: Option<&Uid>,
        limit: usize,
    ) -> Result<Vec<Uid>> {
        crate::store::check_limit(limit)?;
        let prefix = channel_prefixed(MEMBER, channel);
        self.uids_under(&prefix, after, limit)
    }

    async fn channels_of(&self, uid: &Uid) -> Result<Vec<Channel>> {
        let prefix = key(|k| {
            k.push(MEMBER_OF);
            uid_key(k, uid);
        });
        let mut out = Vec::new();
        for kv in self.directory.scan_prefix(&prefix) {
            let (k, _) = kv.map_err(storage)?;
            out.push(decode_channel_key(&k[prefix.len()..])?);
        }
        Ok(out)
    }

    async fn add_to_list(&self, list: AccessList, channel: &Channel, uids: &[Uid]) -> Result<u64> {
        let _turn = self.directory_turn.lock().await;
        let prefix = list_prefix(list, channel);
        let mut batch = Batch::default();
        for uid in uids {
            batch.insert(with_uid(&prefix, uid), &[]);
        }
        self.commit(batch, &channel_prefixed(VERSION, channel))
            .await
    }

    async fn remove_from_list(
        &self,
        list: AccessList,
        channel: &Channel,
        uids: &[Uid],
    ) -> Result<u64> {
        let _turn = self.directory_turn.lock().await;
        let prefix = list_prefix(list, channel);
        let mut batch = Batch::default();
        for uid in uids {
            batch.remove(with_uid(&prefix, uid));
        }
        self.commit(batch, &channel_prefixed(VERSION, channel))
            .await
    }

    async fn set_list(&self, list: AccessList, channel: &Channel, uids: &[Uid]) -> Result<u64> {
        let _turn = self.directory_turn.lock().await;
        let prefix = list_prefix(list, channel);
        let mut batch = Batch::default();
        for uid in self.uids_under(&prefix, None, usize::MAX)? {
            batch.remove(with_uid(&prefix, &uid));
        }
        for uid in uids {
            batch.insert(with_uid(&prefix, uid), &[]);
        }
        self.commit(batch, &channel_prefixed(VERSION, channel))
            .await
    }

    async fn list(&self, list: AccessList, channel: &Channel) -> Result<Vec<Uid>> {
        let prefix = list_prefix(list, channel);
        self.uids_under(&prefix, None, usize::MAX)
    }

    async fn set_system(&self, uids: &[Uid], system: bool) -> Result<u64> {
        let _turn = self.directory_turn.lock().await;
        let mut batch = Batch::default();
        for uid in uids {
            let k = with_uid(&[SYSTEM], uid);
            match system {
                true => batch.insert(k, &[]),
                false => batch.remove(k),
            }
        }
        self.commit(batch, SYSTEM_VERSION).await
    }

    async fn system_uids(&self) -> Result<Vec<Uid>> {
        self.uids_under(&[SYSTEM], None, usize::MAX)
    }

    async fn channel_version(&self, channel: &Channel) -> Result<u64> {
        match self.dir_get(&channel_prefixed(VERSION, channel))? {
            Some(v) => be_u64(&v, "directory version"),
            None => Ok(0),
        }
    }

    async fn system_version(&self) -> Result<u64> {
        match self.dir_get(SYSTEM_VERSION)? {
            Some(v) => be_u64(&v, "directory version"),
            None => Ok(0),
        }
    }
}
