//! Channel history: appends through the writer, reads by the primary key.

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio_postgres::types::{ToSql, Type};

use super::writer::Request;
use super::{channel_key, id_to_i64, message_from, pg_error, to_i64, to_u64, within};
use super::{PgStore, BACKEND};
use crate::error::{Error, Result};
use crate::model::{Channel, ClientMsgNo, Message, MessageId, Uid};
use crate::store::{Appended, Direction, MessageLog, Page};

impl PgStore {
    /// Runs one read statement (cached per connection) within the timeout.
    pub(super) async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        let client = self.client().await?;
        within(self.timeout, async {
            let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
            client.query(&statement, params).await.map_err(pg_error)
        })
        .await
    }

    /// [`rows`](Self::rows) for a look-up of many keys at once: an unnamed
    /// statement, which PostgreSQL plans at every run for the tables as
    /// they are. A prepared one caches, after its fifth run, a generic plan
    /// made for the tables of that moment: one made while a table was
    /// small kept scanning it whole as it grew.
    pub(super) async fn rows_planned(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        let client = self.client().await?;
        within(self.timeout, async {
            client.query_typed(sql, params).await.map_err(pg_error)
        })
        .await
    }

    async fn one_message(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<Message>> {
        self.rows(sql, params)
            .await?
            .first()
            .map(|row| message_from(row, None))
            .transpose()
    }
}

#[async_trait]
impl MessageLog for PgStore {
    async fn append(&self, messages: Vec<Message>) -> Result<Vec<Appended>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let gone = || Error::Storage {
            backend: BACKEND,
            source: "the store's writer has stopped".into(),
        };
        let (reply, answer) = oneshot::channel();
        within(self.timeout, async {
            let request = Request { messages, reply };
            self.appends.send(request).await.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        })
        .await
    }

    async fn read(&self, channel: &Channel, page: Page) -> Result<Vec<Message>> {
        page.validate()?;
        let (ctype, cid) = channel_key(channel);
        let (from, limit) = (to_i64(page.from), to_i64(page.limit as u64));
        let sql = match page.direction {
            Direction::Forward => FORWARD,
            Direction::Backward => BACKWARD,
        };
        let rows = self.rows(sql, &[&ctype, &cid, &from, &limit]).await?;
        rows.iter()
            .map(|row| message_from(row, Some(channel)))
            .collect()
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>> {
        self.one_message(BY_ID, &[&id_to_i64(id)]).await
    }

    async fn get_by_client_msg_no(
        &self,
        from_uid: &Uid,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
    ) -> Result<Option<Message>> {
        let (uid, no) = (from_uid.as_str(), client_msg_no.as_str());
        let (ctype, cid) = channel_key(channel);
        self.one_message(BY_CLIENT_MSG_NO, &[&uid, &ctype, &cid, &no])
            .await
    }

    async fn last_seq(&self, channel: &Channel) -> Result<u64> {
        let (ctype, cid) = channel_key(channel);
        let rows = self.rows(LAST_SEQ, &[&ctype, &cid]).await?;
        rows.first().map_or(Ok(0), |r| to_u64(r.get(0), "seq"))
    }
}

/// `SELECT` of a message row's columns (see [`message_from`]), then `$tail`.
macro_rules! select_messages {
    ($tail:literal) => {
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM imcore_messages ",
            $tail
        )
    };
}

const FORWARD: &str =
    select_messages!("WHERE ctype = $1 AND cid = $2 AND seq >= $3 ORDER BY seq LIMIT $4");
const BACKWARD: &str =
    select_messages!("WHERE ctype = $1 AND cid = $2 AND seq <= $3 ORDER BY seq DESC LIMIT $4");
const BY_ID: &str = select_messages!("WHERE message_id = $1");
const BY_CLIENT_MSG_NO: &str =
    select_messages!("WHERE from_uid = $1 AND ctype = $2 AND cid = $3 AND client_msg_no = $4");
const LAST_SEQ: &str = "SELECT last_seq FROM imcore_heads WHERE ctype = $1 AND cid = $2";
