//! The directory in PostgreSQL: a row per token, channel record,
//! subscriber, list entry and system uid (see `schema.rs`, version 4).
//!
//! Every change is one transaction that first moves its scope's row in
//! `imcore_dir_versions` (which also makes concurrent changes of one
//! channel take turns), then changes the data.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::writer::query;
use super::{channel_from, channel_key, pg_error, to_u64, within, PgStore};
use crate::directory::{
    AccessList, ChannelInfo, ChannelSnapshot, DirectoryCounts, DirectoryStore, StoredToken,
};
use crate::error::{Error, Result};
use crate::model::{Channel, Uid};
use crate::session::{DeviceFlag, DeviceLevel};

type Params<'a> = [&'a (dyn ToSql + Sync)];

/// The version row of the system uids.
const SYSTEM_SCOPE: (i16, &str) = (0, "");

const BUMP: &str = "INSERT INTO imcore_dir_versions AS v VALUES ($1, $2, 1) \
    ON CONFLICT (ctype, cid) DO UPDATE SET version = v.version + 1 RETURNING version";

fn list_code(list: AccessList) -> i16 {
    match list {
        AccessList::Black => 0,
        AccessList::White => 1,
    }
}

fn uid_strs(uids: &[Uid]) -> Vec<&str> {
    uids.iter().map(Uid::as_str).collect()
}

fn uid_from(row: &Row) -> Result<Uid> {
    let s: &str = row.get(0);
    Uid::new(s).map_err(|_| Error::corrupt(format!("directory uid {s:?}")))
}

fn uids_from(rows: &[Row]) -> Result<Vec<Uid>> {
    rows.iter().map(uid_from).collect()
}

impl PgStore {
    /// Runs `statements` in order in one transaction, after moving the
    /// version of `scope`; returns the new version.
    async fn change(&self, scope: (i16, &str), statements: &[(&str, &Params<'_>)]) -> Result<u64> {
        let mut client = self.client().await?;
        within(self.timeout, async {
            let tx = client.transaction().await.map_err(pg_error)?;
            let rows = query(&tx, BUMP, &[&scope.0, &scope.1]).await?;
            let version = rows
                .first()
                .ok_or_else(|| Error::corrupt("directory version not returned"))?
                .get::<_, i64>(0);
            for (sql, params) in statements {
                query(&tx, sql, params).await?;
            }
            tx.commit().await.map_err(pg_error)?;
            to_u64(version, "directory version")
        })
        .await
    }

    /// One read, outside any transaction.
    async fn read(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        let client = self.client().await?;
        within(self.timeout, async {
            let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
            client.query(&statement, params).await.map_err(pg_error)
        })
        .await
    }

    /// One statement on its own (its own transaction).
    async fn write(&self, sql: &str, params: &Params<'_>) -> Result<u64> {
        let client = self.client().await?;
        within(self.timeout, async {
            let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
            client.execute(&statement, params).await.map_err(pg_error)
        })
        .await
    }

    async fn version_of(&self, scope: (i16, &str)) -> Result<u64> {
        let rows = self
            .read(
                "SELECT version FROM imcore_dir_versions WHERE ctype = $1 AND cid = $2",
                &[&scope.0, &scope.1],
            )
            .await?;
        match rows.first() {
            Some(row) => to_u64(row.get(0), "directory version"),
            None => Ok(0),
        }
    }
}

const ADD_MEMBERS: &str = "INSERT INTO imcore_dir_members \
    SELECT $1, $2, u FROM unnest($3::text[]) AS u ON CONFLICT DO NOTHING";
const REMOVE_MEMBERS: &str =
    "DELETE FROM imcore_dir_members WHERE ctype = $1 AND cid = $2 AND uid = ANY($3)";
const ADD_LISTED: &str = "INSERT INTO imcore_dir_lists \
    SELECT $1, $2, $3, u FROM unnest($4::text[]) AS u ON CONFLICT DO NOTHING";

/// Channels and subscriptions, counted in one statement (one snapshot).
const COUNTS: &str = "SELECT (SELECT count(*) FROM imcore_dir_channels), \
    (SELECT count(*) FROM imcore_dir_members)";

#[async_trait]
impl DirectoryStore for PgStore {
    async fn counts(&self) -> Result<Option<DirectoryCounts>> {
        let rows = self.read(COUNTS, &[]).await?;
        let row = rows
            .first()
            .ok_or_else(|| Error::corrupt("directory counts not returned"))?;
        let count = |i: usize| to_u64(row.get::<_, i64>(i), "directory count");
        Ok(Some(DirectoryCounts::new(count(0)?, count(1)?)))
    }

    async fn set_token(&self, uid: &Uid, flag: DeviceFlag, token: &StoredToken) -> Result<()> {
        let flag = i16::from(u8::from(flag));
        let level = i16::from(u8::from(token.level));
        self.write(
            "INSERT INTO imcore_dir_tokens VALUES ($1, $2, $3, $4) \
             ON CONFLICT (uid, device_flag) DO UPDATE SET token = $3, level = $4",
            &[&uid.as_str(), &flag, &token.token.as_str(), &level],
        )
        .await?;
        Ok(())
    }

    async fn token(&self, uid: &Uid, flag: DeviceFlag) -> Result<Option<StoredToken>> {
        let flag = i16::from(u8::from(flag));
        let rows = self
            .read(
                "SELECT token, level FROM imcore_dir_tokens WHERE uid = $1 AND device_flag = $2",
                &[&uid.as_str(), &flag],
            )
            .await?;
        rows.first()
            .map(|row| {
                let level = u8::try_from(row.get::<_, i16>(1))
                    .ok()
                    .and_then(|l| DeviceLevel::try_from(l).ok())
                    .ok_or_else(|| Error::corrupt("token level"))?;
                Ok(StoredToken {
                    token: row.get(0),
                    level,
                })
            })
            .transpose()
    }

    async fn remove_token(&self, uid: &Uid, flag: DeviceFlag) -> Result<bool> {
        let flag = i16::from(u8::from(flag));
        let n = self
            .write(
                "DELETE FROM imcore_dir_tokens WHERE uid = $1 AND device_flag = $2",
                &[&uid.as_str(), &flag],
            )
            .await?;
        Ok(n > 0)
    }

    async fn put_channel(&self, channel: &Channel, info: &ChannelInfo) -> Result<u64> {
        let (ctype, cid) = channel_key(channel);
        let owner = info.owner.as_ref().map(Uid::as_str);
        let sql = "INSERT INTO imcore_dir_channels VALUES ($1, $2, $3, $4, $5, $6) \
            ON CONFLICT (ctype, cid) DO UPDATE SET owner = $3, ban = $4, send_ban = $5, disband = $6";
        let params: &Params = &[
            &ctype,
            &cid,
            &owner,
            &info.ban,
            &info.send_ban,
            &info.disband,
        ];
        self.change((ctype, cid), &[(sql, params)]).await
    }

    async fn channel(&self, channel: &Channel) -> Result<Option<ChannelInfo>> {
        let (ctype, cid) = channel_key(channel);
        let rows = self
            .read(
                "SELECT owner, ban, send_ban, disband FROM imcore_dir_channels \
                 WHERE ctype = $1 AND cid = $2",
                &[&ctype, &cid],
            )
            .await?;
        rows.first()
            .map(|row| {
                let owner = row
                    .get::<_, Option<&str>>(0)
                    .map(|s| Uid::new(s).map_err(|_| Error::corrupt("channel owner")))
                    .transpose()?;
                Ok(ChannelInfo {
                    owner,
                    ban: row.get(1),
                    send_ban: row.get(2),
                    disband: row.get(3),
                })
            })
            .transpose()
    }

    async fn delete_channel(&self, channel: &Channel) -> Result<Option<u64>> {
        let (ctype, cid) = channel_key(channel);
        let mut client = self.client().await?;
        within(self.timeout, async {
            let tx = client.transaction().await.map_err(pg_error)?;
            let deleted = query(
                &tx,
                "DELETE FROM imcore_dir_channels WHERE ctype = $1 AND cid = $2 RETURNING 1",
                &[&ctype, &cid],
            )
            .await?;
            if deleted.is_empty() {
                return Ok(None);
            }
            let version: i64 = query(&tx, BUMP, &[&ctype, &cid])
                .await?
                .first()
                .ok_or_else(|| Error::corrupt("directory version not returned"))?
                .get(0);
            for table in ["imcore_dir_members", "imcore_dir_lists"] {
                let sql = format!("DELETE FROM {table} WHERE ctype = $1 AND cid = $2");
                tx.execute(sql.as_str(), &[&ctype, &cid])
                    .await
                    .map_err(pg_error)?;
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(Some(to_u64(version, "directory version")?))
        })
        .await
    }

    async fn add_subscribers(&self, channel: &Channel, uids: &[Uid]) -> Result<u64> {
        let (ctype, cid) = channel_key(channel);
        let uids = uid_strs(uids);
        self.change((ctype, cid), &[(ADD_MEMBERS, &[&ctype, &cid, &uids])])
            .await
    }

    async fn remove_subscribers(&self, channel: &Channel, uids: &[Uid]) -> Result<u64> {
        let (ctype, cid) = channel_key(channel);
        let uids = uid_strs(uids);
        self.change((ctype, cid), &[(REMOVE_MEMBERS, &[&ctype, &cid, &uids])])
            .await
    }

    async fn is_subscriber(&self, channel: &Channel, uid: &Uid) -> Result<bool> {
        let (ctype, cid) = channel_key(channel);
        let rows = self
            .read(
                "SELECT 1 FROM imcore_dir_members WHERE ctype = $1 AND cid = $2 AND uid = $3",
                &[&ctype, &cid, &uid.as_str()],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn subscribers(
        &self,
        channel: &Channel,
        after: Option<&Uid>,
        limit: usize,
    ) -> Result<Vec<Uid>> {
        crate::store::check_limit(limit)?;
        let (ctype, cid) = channel_key(channel);
        let after = after.map(Uid::as_str);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .read(
                "SELECT uid FROM imcore_dir_members WHERE ctype = $1 AND cid = $2 \
                 AND ($3::text IS NULL OR uid > $3) ORDER BY uid LIMIT $4",
                &[&ctype, &cid, &after, &limit],
            )
            .await?;
        uids_from(&rows)
    }

    async fn channels_of(&self, uid: &Uid) -> Result<Vec<Channel>> {
        let rows = self
            .read(
                "SELECT ctype, cid FROM imcore_dir_members WHERE uid = $1",
                &[&uid.as_str()],
            )
            .await?;
        rows.into_iter()
            .map(|row| channel_from(row.get(0), row.get(1)))
            .collect()
    }

    async fn add_to_list(&self, list: AccessList, channel: &Channel, uids: &[Uid]) -> Result<u64> {
        let (ctype, cid) = channel_key(channel);
        let (list, uids) = (list_code(list), uid_strs(uids));
        self.change((ctype, cid), &[(ADD_LISTED, &[&list, &ctype, &cid, &uids])])
            .await
    }

    async fn remove_from_list(
        &self,
        list: AccessList,
        channel: &Channel,
        uids: &[Uid],
    ) -> Result<u64> {
        let (ctype, cid) = channel_key(channel);
        let (list, uids) = (list_code(list), uid_strs(uids));
        let sql = "DELETE FROM imcore_dir_lists \
            WHERE list = $1 AND ctype = $2 AND cid = $3 AND uid = ANY($4)";
        self.change((ctype, cid), &[(sql, &[&list, &ctype, &cid, &uids])])
            .await
    }

    async fn set_list(&self, list: AccessList, channel: &Channel, uids: &[Uid]) -> Result<u64> {
        let (ctype, cid) = channel_key(channel);
        let (list, uids) = (list_code(list), uid_strs(uids));
        let clear = "DELETE FROM imcore_dir_lists \
            WHERE list = $1 AND ctype = $2 AND cid = $3 AND uid <> ALL($4)";
        let params: &Params = &[&list, &ctype, &cid, &uids];
        self.change((ctype, cid), &[(clear, params), (ADD_LISTED, params)])
            .await
    }

    async fn list(&self, list: AccessList, channel: &Channel) -> Result<Vec<Uid>> {
        let (ctype, cid) = channel_key(channel);
        let list = list_code(list);
        let rows = self
            .read(
                "SELECT uid FROM imcore_dir_lists WHERE list = $1 AND ctype = $2 AND cid = $3 \
                 ORDER BY uid",
                &[&list, &ctype, &cid],
            )
            .await?;
        uids_from(&rows)
    }

    async fn set_system(&self, uids: &[Uid], system: bool) -> Result<u64> {
        let uids = uid_strs(uids);
        let sql = match system {
            true => {
                "INSERT INTO imcore_dir_system SELECT u FROM unnest($1::text[]) AS u \
                 ON CONFLICT DO NOTHING"
            }
            false => "DELETE FROM imcore_dir_system WHERE uid = ANY($1)",
        };
        self.change(SYSTEM_SCOPE, &[(sql, &[&uids])]).await
    }

    async fn system_uids(&self) -> Result<Vec<Uid>> {
        let rows = self
            .read("SELECT uid FROM imcore_dir_system ORDER BY uid", &[])
            .await?;
        uids_from(&rows)
    }

    async fn channel_version(&self, channel: &Channel) -> Result<u64> {
        self.version_of(channel_key(channel)).await
    }

    async fn system_version(&self) -> Result<u64> {
        self.version_of(SYSTEM_SCOPE).await
    }

    /// One statement: one round trip, and one snapshot of the database.
    async fn channel_snapshot(&self, channel: &Channel, limit: usize) -> Result<ChannelSnapshot> {
        crate::store::check_limit(limit)?;
        let (ctype, cid) = channel_key(channel);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.read(SNAPSHOT, &[&ctype, &cid, &limit]).await?;
        let row = rows
            .first()
            .ok_or_else(|| Error::corrupt("channel snapshot returned no row"))?;
        let uids = |i: usize| -> Result<Vec<Uid>> {
            row.get::<_, Vec<&str>>(i)
                .into_iter()
                .map(|s| Uid::new(s).map_err(|_| Error::corrupt(format!("directory uid {s:?}"))))
                .collect()
        };
        let info = match row.get::<_, Option<bool>>(2) {
            None => None,
            Some(ban) => Some(ChannelInfo {
                owner: row
                    .get::<_, Option<&str>>(1)
                    .map(|s| Uid::new(s).map_err(|_| Error::corrupt("channel owner")))
                    .transpose()?,
                ban,
                send_ban: row.get(3),
                disband: row.get(4),
            }),
        };
        Ok(ChannelSnapshot {
            version: to_u64(
                row.get::<_, Option<i64>>(0).unwrap_or(0),
                "directory version",
            )?,
            info,
            subscribers: uids(5)?,
            black: uids(6)?,
            white: uids(7)?,
        })
    }
}

/// A channel's version, record, first subscribers and lists in one row.
const SNAPSHOT: &str = "SELECT v.version, c.owner, c.ban, c.send_ban, c.disband, \
    ARRAY(SELECT uid FROM imcore_dir_members WHERE ctype = $1 AND cid = $2 \
          ORDER BY uid LIMIT $3), \
    ARRAY(SELECT uid FROM imcore_dir_lists WHERE list = 0 AND ctype = $1 AND cid = $2 \
          ORDER BY uid), \
    ARRAY(SELECT uid FROM imcore_dir_lists WHERE list = 1 AND ctype = $1 AND cid = $2 \
          ORDER BY uid) \
    FROM (SELECT 1) AS one \
    LEFT JOIN imcore_dir_versions v ON v.ctype = $1 AND v.cid = $2 \
    LEFT JOIN imcore_dir_channels c ON c.ctype = $1 AND c.cid = $2";
