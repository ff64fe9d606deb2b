//! The tables, and creating or checking them when a store opens.
//!
//! The schema is versioned in `imcore_schema`: a database without it gets
//! the current tables; one at the current version is used as it is; one
//! that names another schema, or a newer version, is refused with
//! [`Error::UnsupportedFormat`] and left unchanged. Opening takes an
//! advisory lock, so that hub processes starting together create the
//! tables once.

use deadpool_postgres::Object;

use super::pg_error;
use crate::error::{Error, Result};

/// The name `imcore_schema` holds for this crate's tables.
const SCHEMA_NAME: &str = "imcore-pg";
/// The schema version this version of the crate writes and reads.
pub(super) const SCHEMA_VERSION: i32 = 11;
/// Key of the advisory lock held while the schema is checked or created
/// (the bytes of "imcore" as a number).
const SCHEMA_LOCK: i64 = 0x696d_636f_7265;

/// The version-1 tables.
///
/// - `imcore_counter` is the store-wide version of heads and read
///   positions. Every append batch and every read-position move locks its
///   one row first and sets it before committing, so versions commit in
///   order and its committed value is the stable version. The same lock
///   orders appends from every hub process on the database, which is what
///   gives each channel gap-free seqs: a channel's next seq is its head's
///   plus one, read under the lock.
/// - `imcore_messages` is the channel logs; each row keeps the channel's
///   red-dot count up to it, so that a read position is a seq and a count.
/// - `imcore_heads` is one row per channel: its newest message.
/// - `imcore_positions` is one row per user and channel the user has read
///   or sent to, and `imcore_person_channels` the person channels of each
///   party. Nothing is written per member of a group.
const CREATE_V1: &str = "
CREATE TABLE imcore_counter (
    id int2 PRIMARY KEY CHECK (id = 1),
    version int8 NOT NULL
);
INSERT INTO imcore_counter VALUES (1, 0);

CREATE TABLE imcore_messages (
    ctype int2 NOT NULL,
    cid text NOT NULL,
    seq int8 NOT NULL,
    message_id int8 NOT NULL UNIQUE,
    from_uid text NOT NULL,
    client_msg_no text NOT NULL,
    ts int8 NOT NULL,
    flags int2 NOT NULL,
    red_dots int8 NOT NULL,
    payload bytea NOT NULL,
    PRIMARY KEY (ctype, cid, seq),
    UNIQUE (from_uid, client_msg_no)
);

CREATE TABLE imcore_heads (
    ctype int2 NOT NULL,
    cid text NOT NULL,
    last_seq int8 NOT NULL,
    last_message_id int8 NOT NULL,
    last_ts int8 NOT NULL,
    red_dots int8 NOT NULL,
    version int8 NOT NULL,
    PRIMARY KEY (ctype, cid)
);

CREATE TABLE imcore_positions (
    uid text NOT NULL,
    ctype int2 NOT NULL,
    cid text NOT NULL,
    read_seq int8 NOT NULL,
    red_dots int8 NOT NULL,
    version int8 NOT NULL,
    PRIMARY KEY (uid, ctype, cid)
);

CREATE TABLE imcore_person_channels (
    uid text NOT NULL,
    ctype int2 NOT NULL,
    cid text NOT NULL,
    PRIMARY KEY (uid, ctype, cid)
);

CREATE TABLE imcore_commands (
    message_id int8 PRIMARY KEY,
    from_uid text NOT NULL,
    client_msg_no text NOT NULL,
    ctype int2 NOT NULL,
    cid text NOT NULL,
    ts int8 NOT NULL,
    flags int2 NOT NULL,
    payload bytea NOT NULL,
    UNIQUE (from_uid, client_msg_no)
);

CREATE TABLE imcore_command_cursors (
    uid text PRIMARY KEY,
    last_cursor int8 NOT NULL
);

CREATE TABLE imcore_command_queue (
    uid text NOT NULL,
    cursor int8 NOT NULL,
    message_id int8 NOT NULL,
    PRIMARY KEY (uid, cursor)
);
CREATE INDEX imcore_command_queue_ids ON imcore_command_queue (uid, message_id);

CREATE TABLE imcore_revocation_versions (
    ctype int2 NOT NULL,
    cid text NOT NULL,
    version int8 NOT NULL,
    PRIMARY KEY (ctype, cid)
);

CREATE TABLE imcore_revocations (
    message_id int8 PRIMARY KEY,
    ctype int2 NOT NULL,
    cid text NOT NULL,
    seq int8 NOT NULL,
    revoker text NOT NULL,
    revoked_at int8 NOT NULL,
    extra_version int8 NOT NULL,
    UNIQUE (ctype, cid, extra_version)
);
CREATE INDEX imcore_revocations_seq ON imcore_revocations (ctype, cid, seq);
";

/// Version 2: messages and commands keep their setting byte and topic;
/// `imcore_hidden` holds the conversations users have hidden.
/// A version-1 database is brought to version 2 when a store opens it
/// (the new columns default to none).
const MIGRATE_V2: &str = "
ALTER TABLE imcore_messages ADD COLUMN setting int2 NOT NULL DEFAULT 0, ADD COLUMN topic text;
ALTER TABLE imcore_commands ADD COLUMN setting int2 NOT NULL DEFAULT 0, ADD COLUMN topic text;
CREATE TABLE imcore_outbox (
    id bigserial PRIMARY KEY,
    message_id int8 NOT NULL
);
CREATE TABLE imcore_hidden (
    uid text NOT NULL,
    ctype int2 NOT NULL,
    cid text NOT NULL,
    up_to int8 NOT NULL,
    PRIMARY KEY (uid, ctype, cid)
);
UPDATE imcore_schema SET version = 2;
";

/// Version 3: a resend is known by its sender, channel and number (the
/// same number in another channel is another message), in messages and
/// commands alike. A version-2 database is brought to version 3 when a
/// store opens it; no stored row changes.
const MIGRATE_V3: &str = "
ALTER TABLE imcore_messages DROP CONSTRAINT imcore_messages_from_uid_client_msg_no_key,
    ADD CONSTRAINT imcore_messages_resend_key UNIQUE (from_uid, ctype, cid, client_msg_no);
ALTER TABLE imcore_commands DROP CONSTRAINT imcore_commands_from_uid_client_msg_no_key,
    ADD CONSTRAINT imcore_commands_resend_key UNIQUE (from_uid, ctype, cid, client_msg_no);
UPDATE imcore_schema SET version = 3;
";

/// Version 4: the directory (`directory.rs`): tokens, channel records,
/// subscribers and list entries a row each, system uids, and a version per
/// channel (`ctype` 0 is the system uids'). Uids sort bytewise (`COLLATE
/// "C"`), as the crate's other stores sort them. A version-3 database gets
/// the new, empty tables when a store opens it.
const MIGRATE_V4: &str = r#"
CREATE TABLE imcore_dir_tokens (
    uid text NOT NULL,
    device_flag int2 NOT NULL,
    token text NOT NULL,
    level int2 NOT NULL,
    PRIMARY KEY (uid, device_flag)
);
CREATE TABLE imcore_dir_channels (
    ctype int2 NOT NULL,
    cid text NOT NULL,
    owner text,
    ban bool NOT NULL,
    send_ban bool NOT NULL,
    disband bool NOT NULL,
    PRIMARY KEY (ctype, cid)
);
CREATE TABLE imcore_dir_members (
    ctype int2 NOT NULL,
    cid text NOT NULL,
    uid text COLLATE "C" NOT NULL,
    PRIMARY KEY (ctype, cid, uid)
);
CREATE INDEX imcore_dir_members_uid ON imcore_dir_members (uid);
CREATE TABLE imcore_dir_lists (
    list int2 NOT NULL,
    ctype int2 NOT NULL,
    cid text NOT NULL,
    uid text COLLATE "C" NOT NULL,
    PRIMARY KEY (list, ctype, cid, uid)
);
CREATE TABLE imcore_dir_system (
    uid text COLLATE "C" PRIMARY KEY
);
CREATE TABLE imcore_dir_versions (
    ctype int2 NOT NULL,
    cid text NOT NULL,
    version int8 NOT NULL,
    PRIMARY KEY (ctype, cid)
);
UPDATE imcore_schema SET version = 4;
"#;

/// Version 5: outbox entries are claimed in batches (`outbox.rs`): `batch`
/// is the batch's first entry number (none until claimed), `lease_until`
/// when its claim runs out (ms since the epoch). A version-4 database gets
/// the columns, empty, when a store opens it: its entries are unclaimed.
const MIGRATE_V5: &str = "
ALTER TABLE imcore_outbox ADD COLUMN batch int8, ADD COLUMN lease_until int8;
CREATE INDEX imcore_outbox_batch ON imcore_outbox (batch) WHERE batch IS NOT NULL;
UPDATE imcore_schema SET version = 5;
";

/// Version 6: message events (`events.rs`). A version-5 database gets the
/// new, empty tables when a store opens it.
const MIGRATE_V6: &str = "
CREATE TABLE imcore_events (
    ctype int2 NOT NULL,
    cid text NOT NULL,
    client_msg_no text NOT NULL,
    seq int8 NOT NULL,
    event_id text NOT NULL,
    event bytea NOT NULL,
    PRIMARY KEY (ctype, cid, client_msg_no, seq),
    UNIQUE (ctype, cid, client_msg_no, event_id)
);
CREATE TABLE imcore_event_records (
    ctype int2 NOT NULL,
    cid text NOT NULL,
    client_msg_no text NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (ctype, cid, client_msg_no)
);
CREATE TABLE imcore_open_streams (
    ctype int2 NOT NULL,
    cid text NOT NULL,
    client_msg_no text NOT NULL,
    event_key text NOT NULL,
    updated_at int8 NOT NULL,
    PRIMARY KEY (ctype, cid, client_msg_no, event_key)
);
CREATE INDEX imcore_open_streams_updated ON imcore_open_streams (updated_at);
UPDATE imcore_schema SET version = 6;
";

/// Version 7: message extras (`extras.rs`). `imcore_extras` is one row
/// per message edited or sent with receipts on: its latest edit (the three
/// `edit` columns, all null while unedited), its receipt's audience (null
/// without a receipt) and readers, and the version of its last change,
/// taken from `imcore_revocation_versions` (0 while unchanged: a receipt
/// just opened). `imcore_reads` is one row per reader and message read.
/// A version-6 database gets the new, empty tables when a store opens it.
const MIGRATE_V7: &str = "
CREATE TABLE imcore_extras (
    message_id int8 PRIMARY KEY,
    ctype int2 NOT NULL,
    cid text NOT NULL,
    seq int8 NOT NULL,
    edit_content bytea,
    editor text,
    edited_at int8,
    audience int8,
    readers int8 NOT NULL DEFAULT 0,
    extra_version int8 NOT NULL
);
CREATE INDEX imcore_extras_version ON imcore_extras (ctype, cid, extra_version);
CREATE INDEX imcore_extras_seq ON imcore_extras (ctype, cid, seq);
CREATE TABLE imcore_reads (
    message_id int8 NOT NULL,
    uid text NOT NULL,
    read_at int8 NOT NULL,
    PRIMARY KEY (message_id, uid)
);
UPDATE imcore_schema SET version = 7;
";

/// Version 8: retention (`retention.rs`). `imcore_floors` is each
/// channel's history floor once anything was deleted from it (the last
/// seq deleted and the red-dot count up to it); `imcore_tombstones` the
/// resend keys of deleted messages, with their ids and seqs, until purged;
/// `imcore_leases` the leases that keep a retention pass to one process at
/// a time. A database of an earlier version gets the new, empty tables
/// when a store opens it. (Version 7 is another feature's step; this one
/// needs nothing of it.)
pub(super) const MIGRATE_V8: &str = "
CREATE TABLE imcore_floors (
    ctype int2 NOT NULL,
    cid text NOT NULL,
    floor_seq int8 NOT NULL,
    red_dots int8 NOT NULL,
    PRIMARY KEY (ctype, cid)
);
CREATE TABLE imcore_tombstones (
    from_uid text NOT NULL,
    ctype int2 NOT NULL,
    cid text NOT NULL,
    client_msg_no text NOT NULL,
    message_id int8 NOT NULL,
    seq int8 NOT NULL,
    deleted_at int8 NOT NULL,
    PRIMARY KEY (from_uid, ctype, cid, client_msg_no)
);
CREATE INDEX imcore_tombstones_deleted ON imcore_tombstones (deleted_at);
CREATE TABLE imcore_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    until int8 NOT NULL
);
UPDATE imcore_schema SET version = 8;
";

/// Version 11: heads and read positions by version, so that an incremental
/// conversation sync finds what changed after a version without looking
/// at each of the user's channels (`ConversationStore::changed_after`).
/// `IF NOT EXISTS`: a database whose version was set back (as tests do to
/// stand for an older one) keeps its indexes.
const MIGRATE_V11: &str = "
CREATE INDEX IF NOT EXISTS imcore_heads_version ON imcore_heads (version);
CREATE INDEX IF NOT EXISTS imcore_positions_version ON imcore_positions (uid, version);
UPDATE imcore_schema SET version = 11;
";

/// Each step with the version it brings a database to, in order.
const STEPS: &[(i32, &str)] = &[
    (2, MIGRATE_V2),
    (3, MIGRATE_V3),
    (4, MIGRATE_V4),
    (5, MIGRATE_V5),
    (6, MIGRATE_V6),
    (7, MIGRATE_V7),
    (8, MIGRATE_V8),
    (9, super::append_function::MIGRATE_V9),
    (10, super::append_function::MIGRATE_V10),
    (11, MIGRATE_V11),
];

/// Creates the tables in an empty database, brings those of an older
/// version up to date, or checks the version of those there.
pub(super) async fn migrate(client: &mut Object) -> Result<()> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(pg_error)?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('imcore_schema') IS NOT NULL", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    if !exists {
        let ours: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_tables \
                 WHERE tablename LIKE 'imcore\\_%' AND schemaname = current_schema()",
                &[],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        if ours > 0 {
            return Err(Error::UnsupportedFormat {
                found: "imcore tables without imcore_schema".into(),
                why: "the database holds imcore_ tables that no version of this crate created",
            });
        }
        let mut create = format!(
            "CREATE TABLE imcore_schema (name text PRIMARY KEY, version int4 NOT NULL);
             INSERT INTO imcore_schema VALUES ('{SCHEMA_NAME}', 1);
             {CREATE_V1}"
        );
        for (_, step) in STEPS {
            create.push_str(step);
        }
        tx.batch_execute(&create).await.map_err(pg_error)?;
        return tx.commit().await.map_err(pg_error);
    }
    let rows = tx
        .query("SELECT name, version FROM imcore_schema", &[])
        .await
        .map_err(pg_error)?;
    let found: Vec<(String, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    match found.as_slice() {
        [(name, version)] if name == SCHEMA_NAME && *version == SCHEMA_VERSION => Ok(()),
        [(name, version)] if name == SCHEMA_NAME && (1..SCHEMA_VERSION).contains(version) => {
            for (_, step) in STEPS.iter().filter(|(to, _)| to > version) {
                tx.batch_execute(step).await.map_err(pg_error)?;
            }
            tx.commit().await.map_err(pg_error)
        }
        [(name, version)] if name == SCHEMA_NAME && *version > SCHEMA_VERSION => {
            Err(Error::UnsupportedFormat {
                found: format!("{name} {version}"),
                why: "it was written by a newer version of imcore",
            })
        }
        other => Err(Error::UnsupportedFormat {
            found: format!("{other:?}"),
            why: "imcore_schema does not name a schema of this crate",
        }),
    }
}
