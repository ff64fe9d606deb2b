//! Edits and read receipts on sled (not yet written: every call fails).

use async_trait::async_trait;

use super::SledStore;
use crate::error::{Error, Result};
use crate::model::{Channel, MessageId, Uid};
use crate::store::{EditRecorded, ExtraStore, MessageExtra, NewEdit, NewReads};

fn missing() -> Error {
    Error::corrupt("extras are not implemented on this backend yet")
}

#[async_trait]
impl ExtraStore for SledStore {
    async fn record_edit(&self, _: NewEdit) -> Result<EditRecorded> {
        Err(missing())
    }
    async fn open_receipt(&self, _: MessageId, _: &Channel, _: u64, _: u64) -> Result<()> {
        Err(missing())
    }
    async fn record_reads(&self, _: NewReads) -> Result<Vec<MessageExtra>> {
        Err(missing())
    }
    async fn reads_by(&self, _: &Uid, _: &[MessageId]) -> Result<Vec<Option<i64>>> {
        Err(missing())
    }
    async fn lookup_extras(&self, _: &[MessageId]) -> Result<Vec<Option<MessageExtra>>> {
        Err(missing())
    }
    async fn extras_between(&self, _: &Channel, _: u64, _: u64) -> Result<Vec<MessageExtra>> {
        Err(missing())
    }
    async fn extras_after(&self, _: &Channel, _: u64, _: usize) -> Result<Vec<MessageExtra>> {
        Err(missing())
    }
}
