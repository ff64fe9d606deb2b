//! The outbox on PostgreSQL: `imcore_outbox`, written in the transaction
//! that stores the messages.

use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::{message_from, to_i64, to_u64, PgStore};
use crate::error::Result;
use crate::model::Message;
use crate::store::{check_limit, Outbox};

#[async_trait]
impl Outbox for PgStore {
    fn enable_outbox(&self) {
        self.outbox.store(true, Ordering::Release);
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<(u64, Message)>> {
        check_limit(limit)?;
        let limit = to_i64(limit as u64);
        let rows = self.rows(PENDING, &[&limit]).await?;
        rows.iter()
            .map(|r| Ok((to_u64(r.get(11), "outbox entry")?, message_from(r, None)?)))
            .collect()
    }

    async fn outbox_done(&self, entries: &[u64]) -> Result<()> {
        let entries: Vec<i64> = entries.iter().map(|n| to_i64(*n)).collect();
        self.rows(DONE, &[&entries]).await.map(drop)
    }
}

/// The oldest entries with their messages: the message columns, then the
/// entry's number. (Messages are written in the entry's transaction, so
/// every entry has one.)
const PENDING: &str = concat!(
    "SELECT ",
    message_columns!(),
    ", o.id FROM imcore_outbox o JOIN imcore_messages m USING (message_id) \
     ORDER BY o.id LIMIT $1"
);
const DONE: &str = "DELETE FROM imcore_outbox WHERE id = ANY($1) RETURNING 1";
