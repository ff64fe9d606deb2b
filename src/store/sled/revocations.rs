//! Revocation records on sled, with per-channel versions.

use async_trait::async_trait;

use super::keys::{be_u64, channel_key, counter_key, decode, encode, key, next_counter, seq_key};
use super::{abort, storage, tx_error, SledStore, TAG_REVOCATION_VERSION};
use crate::error::{Error, Result};
use crate::model::{Channel, MessageId};
use crate::store::{check_limit, NewRevocation, Recorded, Revocation, RevocationStore};
use sled::Transactional;

#[async_trait]
impl RevocationStore for SledStore {
    async fn record_revocation(&self, r: NewRevocation) -> Result<Recorded> {
        let id = r.message_id.0.to_be_bytes();
        let chan = key(|k| channel_key(k, &r.channel));
        let counter = counter_key(TAG_REVOCATION_VERSION, |k| k.extend_from_slice(&chan));
        let trees = (
            self.revocations.clone(),
            self.revocations_by_channel.clone(),
            self.revocations_by_seq.clone(),
            self.counters.clone(),
        );
        // On the store's write thread.
        let record = move || {
            let (revocations, by_channel, by_seq, counters) = &trees;
            (revocations, by_channel, by_seq, counters)
                .transaction(|(revs, by_channel, by_seq, counters)| {
                    if let Some(v) = revs.get(id)? {
                        return match decode::<Revocation>(&v, "revocation") {
                            Ok(existing) => Ok(Recorded::Existing(existing)),
                            Err(e) => abort(e),
                        };
                    }
                    let extra_version = next_counter(counters, &counter)?;
                    let record = Revocation {
                        message_id: r.message_id,
                        channel: r.channel.clone(),
                        message_seq: r.message_seq,
                        revoker: r.revoker.clone(),
                        revoked_at_ms: r.revoked_at_ms,
                        extra_version,
                    };
                    let value = match encode(&record) {
                        Ok(v) => v,
                        Err(e) => return abort(e),
                    };
                    revs.insert(&id, value)?;
                    by_channel.insert(seq_key(&chan, extra_version), &id)?;
                    by_seq.insert(seq_key(&chan, r.message_seq), &id)?;
                    Ok(Recorded::New(record))
                })
                .map_err(tx_error)
        };
        let recorded = self.thread.run(record).await?;
        if let Recorded::New(_) = &recorded {
            self.settle().await?;
        }
        Ok(recorded)
    }

    async fn lookup_revocations(&self, ids: &[MessageId]) -> Result<Vec<Option<Revocation>>> {
        ids.iter()
            .map(
                |id| match self.revocations.get(id.0.to_be_bytes()).map_err(storage)? {
                    Some(v) => decode(&v, "revocation").map(Some),
                    None => Ok(None),
                },
            )
            .collect()
    }

    async fn revocations_between(
        &self,
        channel: &Channel,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<Revocation>> {
        if from_seq > to_seq {
            return Ok(Vec::new());
        }
        let chan = key(|k| channel_key(k, channel));
        self.revocations_by_seq
            .range(seq_key(&chan, from_seq)..=seq_key(&chan, to_seq))
            .map(|kv| {
                let (_, id) = kv.map_err(storage)?;
                self.revocation(be_u64(&id, "revocation index")?)
            })
            .collect()
    }

    async fn revocations_after(
        &self,
        channel: &Channel,
        version: u64,
        limit: usize,
    ) -> Result<Vec<Revocation>> {
        check_limit(limit)?;
        let chan = key(|k| channel_key(k, channel));
        let Some(first) = version.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.revocations_by_channel
            .range(seq_key(&chan, first)..=seq_key(&chan, u64::MAX))
            .take(limit)
            .map(|kv| {
                let (_, id) = kv.map_err(storage)?;
                self.revocation(be_u64(&id, "revocation index")?)
            })
            .collect()
    }
}

impl SledStore {
    /// The record an index names.
    fn revocation(&self, id: u64) -> Result<Revocation> {
        match self.revocations.get(id.to_be_bytes()).map_err(storage)? {
            Some(v) => decode(&v, "revocation"),
            None => Err(Error::corrupt(format!(
                "revocation index points at a missing record ({id})"
            ))),
        }
    }
}
