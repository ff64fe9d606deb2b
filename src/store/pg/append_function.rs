//! `imcore_append`, the server-side function that decides and writes a
//! batch of appends (schema versions 9 and 10; the writer in `writer.rs` calls it).

/// Version 9: `imcore_append`, the append writer's one statement per
/// batch (`writer.rs`). Its arguments are the batch's messages as column
/// arrays, each with its call's number (`p_call`), and whether new
/// messages go into the outbox. It takes the counter row's lock, then, in
/// one statement (so one snapshot, taken after the lock), decides each
/// call against what is stored, as every backend does (a batch of one
/// message, statement by statement, cheaper; its resend look-up is still
/// one statement over messages and tombstones, as retention needs):
///
/// - a message whose resend key (sender, channel, number) is stored, or
///   tombstoned by retention, is a duplicate answered with the stored id
///   and seq; one repeated within its call, a duplicate of the first;
/// - a call is refused, all of it, at its first message that repeats a
///   stored or earlier key with another payload (verdict 2), or that is
///   new with an id already stored or new earlier in the call (3);
/// - the new messages of accepted calls get, in order, their channel's
///   next seqs and red-dot counts and the next versions, and are written
///   with their heads, their senders' read positions, the person
///   channels of a first message and the outbox entries.
///
/// Calls are decided independently of each other: the writer never sends
/// two calls that share a resend key or an id in one batch. Plans are
/// generic, made once per connection, and kept to index probes
/// (`enable_seqscan = off`), so that a plan made while the tables were
/// small does not scan them whole once they have grown. `CREATE OR
/// REPLACE`: a database taken back to an older version by hand keeps the
/// function. A database of an earlier version gets it when a store opens
/// it; nothing stored changes.
pub(super) const MIGRATE_V9: &str = "
CREATE OR REPLACE FUNCTION imcore_append(
    p_call int4[], p_ctype int2[], p_cid text[], p_id int8[], p_from text[], p_no text[],
    p_ts int8[], p_flags int2[], p_dot bool[], p_payload bytea[], p_setting int2[],
    p_topic text[], p_party_a text[], p_party_b text[], p_outbox bool)
RETURNS TABLE (r_ord int8, r_verdict int2, r_id int8, r_seq int8)
LANGUAGE plpgsql
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    v int8;
    k_kind int4;
    k_id int8;
    k_seq int8;
    k_payload bytea;
    h_seq int8;
    h_dots int8;
BEGIN
    SELECT c.version INTO v FROM imcore_counter c WHERE c.id = 1 FOR UPDATE;
    IF cardinality(p_id) = 1 THEN
        -- One message: the same verdicts, statement by statement (the set
        -- below costs several times more to run for one row).
        SELECT s.kind, s.message_id, s.seq, s.payload INTO k_kind, k_id, k_seq, k_payload
        FROM (
            SELECT 2 AS kind, t.message_id, t.seq, NULL::bytea AS payload
            FROM imcore_tombstones t WHERE t.from_uid = p_from[1] AND t.ctype = p_ctype[1]
                AND t.cid = p_cid[1] AND t.client_msg_no = p_no[1]
            UNION ALL
            SELECT 1, x.message_id, x.seq, x.payload
            FROM imcore_messages x WHERE x.from_uid = p_from[1] AND x.ctype = p_ctype[1]
                AND x.cid = p_cid[1] AND x.client_msg_no = p_no[1]
            ORDER BY 1 DESC LIMIT 1) s;
        IF k_kind = 2 OR (k_kind = 1 AND k_payload = p_payload[1]) THEN
            RETURN QUERY SELECT 1::int8, 1::int2, k_id, k_seq;
            RETURN;
        ELSIF k_kind = 1 THEN
            RETURN QUERY SELECT 1::int8, 2::int2, NULL::int8, NULL::int8;
            RETURN;
        ELSIF EXISTS (SELECT 1 FROM imcore_messages x WHERE x.message_id = p_id[1]) THEN
            RETURN QUERY SELECT 1::int8, 3::int2, NULL::int8, NULL::int8;
            RETURN;
        END IF;
        SELECT x.last_seq, x.red_dots INTO h_seq, h_dots FROM imcore_heads x
        WHERE x.ctype = p_ctype[1] AND x.cid = p_cid[1];
        h_seq := coalesce(h_seq, 0) + 1;
        h_dots := coalesce(h_dots, 0) + CASE WHEN p_dot[1] THEN 1 ELSE 0 END;
        v := v + 1;
        INSERT INTO imcore_messages (ctype, cid, seq, message_id, from_uid, client_msg_no, ts,
            flags, red_dots, payload, setting, topic)
        VALUES (p_ctype[1], p_cid[1], h_seq, p_id[1], p_from[1], p_no[1], p_ts[1], p_flags[1],
            h_dots, p_payload[1], p_setting[1], p_topic[1]);
        IF p_outbox THEN
            INSERT INTO imcore_outbox (message_id) VALUES (p_id[1]);
        END IF;
        INSERT INTO imcore_heads AS x
            (ctype, cid, last_seq, last_message_id, last_ts, red_dots, version)
        VALUES (p_ctype[1], p_cid[1], h_seq, p_id[1], p_ts[1], h_dots, v)
        ON CONFLICT (ctype, cid) DO UPDATE SET last_seq = excluded.last_seq,
            last_message_id = excluded.last_message_id, last_ts = excluded.last_ts,
            red_dots = excluded.red_dots, version = excluded.version;
        INSERT INTO imcore_positions AS x (uid, ctype, cid, read_seq, red_dots, version)
        VALUES (p_from[1], p_ctype[1], p_cid[1], h_seq, h_dots, v)
        ON CONFLICT (uid, ctype, cid) DO UPDATE SET read_seq = excluded.read_seq,
            red_dots = excluded.red_dots, version = excluded.version;
        IF h_seq = 1 AND p_party_a[1] IS NOT NULL THEN
            INSERT INTO imcore_person_channels (uid, ctype, cid)
            VALUES (p_party_a[1], p_ctype[1], p_cid[1]), (p_party_b[1], p_ctype[1], p_cid[1])
            ON CONFLICT DO NOTHING;
        END IF;
        UPDATE imcore_counter x SET version = v WHERE x.id = 1;
        RETURN QUERY SELECT 1::int8, 0::int2, p_id[1], h_seq;
        RETURN;
    END IF;
    RETURN QUERY
    WITH m AS (
        SELECT * FROM unnest(p_call, p_ctype, p_cid, p_id, p_from, p_no, p_ts, p_flags, p_dot,
            p_payload, p_setting, p_topic, p_party_a, p_party_b) WITH ORDINALITY
            AS m(call, ctype, cid, id, from_uid, no, ts, flags, dot, payload, setting, topic,
                 party_a, party_b, ord)
    ), k AS (
        SELECT m.*, s.kind AS db, s.message_id AS db_id, s.seq AS db_seq,
            s.payload AS db_payload, u.used IS NOT NULL AS used,
            first_value(m.ord) OVER w AS first_ord,
            first_value(m.payload) OVER w AS first_payload
        FROM m
        LEFT JOIN LATERAL (
            SELECT 2 AS kind, t.message_id, t.seq, NULL::bytea AS payload
            FROM imcore_tombstones t WHERE t.from_uid = m.from_uid AND t.ctype = m.ctype
                AND t.cid = m.cid AND t.client_msg_no = m.no
            UNION ALL
            SELECT 1, x.message_id, x.seq, x.payload
            FROM imcore_messages x WHERE x.from_uid = m.from_uid AND x.ctype = m.ctype
                AND x.cid = m.cid AND x.client_msg_no = m.no
            ORDER BY 1 DESC LIMIT 1) s ON true
        LEFT JOIN LATERAL (
            SELECT true AS used FROM imcore_messages x WHERE x.message_id = m.id OFFSET 0
        ) u ON true
        WINDOW w AS (PARTITION BY m.call, m.from_uid, m.ctype, m.cid, m.no ORDER BY m.ord)
    ), e AS (
        SELECT k.*, CASE
            WHEN k.db = 2 THEN 0
            WHEN k.db = 1 THEN CASE WHEN k.payload = k.db_payload THEN 0 ELSE 2 END
            WHEN k.ord <> k.first_ord THEN CASE WHEN k.payload = k.first_payload THEN 0 ELSE 2 END
            WHEN k.used OR count(*) FILTER (WHERE k.db IS NULL AND k.ord = k.first_ord)
                OVER (PARTITION BY k.call, k.id ORDER BY k.ord
                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) > 0 THEN 3
            ELSE 0 END AS err
        FROM k
    ), c AS (
        SELECT e.call, min(e.ord) FILTER (WHERE e.err > 0) AS bad FROM e GROUP BY e.call
    ), n AS (
        SELECT e.* FROM e JOIN c ON c.call = e.call
        WHERE c.bad IS NULL AND e.db IS NULL AND e.ord = e.first_ord
    ), h AS (
        SELECT ch.ctype, ch.cid, coalesce(hd.last_seq, 0) AS last_seq,
            coalesce(hd.red_dots, 0) AS red_dots
        FROM (SELECT DISTINCT n.ctype, n.cid FROM n) ch
        LEFT JOIN LATERAL (
            SELECT x.last_seq, x.red_dots FROM imcore_heads x
            WHERE x.ctype = ch.ctype AND x.cid = ch.cid OFFSET 0) hd ON true
    ), s AS (
        SELECT n.*,
            h.last_seq + row_number() OVER (PARTITION BY n.ctype, n.cid ORDER BY n.ord) AS seq,
            h.red_dots + count(*) FILTER (WHERE n.dot)
                OVER (PARTITION BY n.ctype, n.cid ORDER BY n.ord) AS dots,
            v + row_number() OVER (ORDER BY n.ord) AS version
        FROM n JOIN h ON h.ctype = n.ctype AND h.cid = n.cid
    ), messages AS (
        INSERT INTO imcore_messages (ctype, cid, seq, message_id, from_uid, client_msg_no, ts,
            flags, red_dots, payload, setting, topic)
        SELECT s.ctype, s.cid, s.seq, s.id, s.from_uid, s.no, s.ts, s.flags, s.dots,
            s.payload, s.setting, s.topic FROM s
    ), outbox AS (
        INSERT INTO imcore_outbox (message_id) SELECT s.id FROM s WHERE p_outbox ORDER BY s.ord
    ), heads AS (
        INSERT INTO imcore_heads AS x
            (ctype, cid, last_seq, last_message_id, last_ts, red_dots, version)
        SELECT DISTINCT ON (s.ctype, s.cid) s.ctype, s.cid, s.seq, s.id, s.ts, s.dots, s.version
        FROM s ORDER BY s.ctype, s.cid, s.ord DESC
        ON CONFLICT (ctype, cid) DO UPDATE SET last_seq = excluded.last_seq,
            last_message_id = excluded.last_message_id, last_ts = excluded.last_ts,
            red_dots = excluded.red_dots, version = excluded.version
    ), positions AS (
        INSERT INTO imcore_positions AS x (uid, ctype, cid, read_seq, red_dots, version)
        SELECT DISTINCT ON (s.from_uid, s.ctype, s.cid) s.from_uid, s.ctype, s.cid, s.seq,
            s.dots, s.version
        FROM s ORDER BY s.from_uid, s.ctype, s.cid, s.ord DESC
        ON CONFLICT (uid, ctype, cid) DO UPDATE SET read_seq = excluded.read_seq,
            red_dots = excluded.red_dots, version = excluded.version
    ), persons AS (
        INSERT INTO imcore_person_channels (uid, ctype, cid)
        SELECT DISTINCT p.uid, s.ctype, s.cid FROM s, LATERAL (VALUES (s.party_a), (s.party_b)) p(uid)
        WHERE s.seq = 1 AND p.uid IS NOT NULL
        ON CONFLICT DO NOTHING
    ), counter AS (
        UPDATE imcore_counter x SET version = (SELECT max(s.version) FROM s)
        WHERE x.id = 1 AND EXISTS (SELECT 1 FROM s)
    )
    SELECT s.ord, 0::int2, s.id, s.seq FROM s
    UNION ALL
    SELECT e.ord, 1::int2, coalesce(e.db_id, f.id), coalesce(e.db_seq, f.seq)
    FROM e JOIN c ON c.call = e.call LEFT JOIN s f ON f.ord = e.first_ord AND e.db IS NULL
    WHERE c.bad IS NULL AND (e.db IS NOT NULL OR e.ord <> e.first_ord)
    UNION ALL
    SELECT e.ord, e.err::int2, NULL, NULL FROM e JOIN c ON c.bad = e.ord;
END
$fn$;
UPDATE imcore_schema SET version = 9;
";

/// Version 10: `imcore_append` with a deadline, so that the writer can
/// send a batch as one autocommitted statement (one round trip) and still
/// never have a batch stored that its caller gave up on.
///
/// `p_deadline` is a time on the database's clock, in microseconds since
/// the epoch, by which the caller still waits for the answer (see
/// `deadline.rs`). The version-9 function decides and writes the batch;
/// then, if the database's clock has passed the deadline (the server was
/// stalled, or the lock was held long), the statement fails with
/// SQLSTATE 57014 (`query_canceled`) and so does its transaction: nothing
/// of the batch is stored. A batch that ends in time commits. That its
/// answer still arrives after the caller gave up is the same doubt as a
/// `COMMIT` whose answer is lost, and is answered the same way (a resend
/// with the same client number is a duplicate, not a second message).
pub(super) const MIGRATE_V10: &str = "
CREATE OR REPLACE FUNCTION imcore_append(
    p_call int4[], p_ctype int2[], p_cid text[], p_id int8[], p_from text[], p_no text[],
    p_ts int8[], p_flags int2[], p_dot bool[], p_payload bytea[], p_setting int2[],
    p_topic text[], p_party_a text[], p_party_b text[], p_outbox bool, p_deadline int8)
RETURNS TABLE (r_ord int8, r_verdict int2, r_id int8, r_seq int8)
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM imcore_append(p_call, p_ctype, p_cid, p_id, p_from, p_no,
        p_ts, p_flags, p_dot, p_payload, p_setting, p_topic, p_party_a, p_party_b, p_outbox);
    IF (extract(epoch FROM clock_timestamp()) * 1000000)::int8 > p_deadline THEN
        RAISE EXCEPTION 'imcore_append: past the caller''s deadline'
            USING ERRCODE = 'query_canceled';
    END IF;
END
$fn$;
UPDATE imcore_schema SET version = 10;
";
