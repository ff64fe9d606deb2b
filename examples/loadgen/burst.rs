//! Bursts, as a hostile or merely buggy client sends them: four users each
//! write one WebSocket message of 4 MiB packed with small sealed SENDs
//! (about 50,000) to a person channel of their own, and read every
//! SENDACK. The server answers each once, a success or a refusal for the
//! send rate (reason 22), and nothing else.
//!
//! - `burst`: four such rounds; the server's resident memory before them
//!   (after a warm-up), at the peak, and then once a second until it is
//!   back within [`HEADROOM_KIB`] of where it started, which it must be
//!   within [`SETTLE`] of the last round.
//! - `soak`: the burst again and again against one server; after each
//!   round a fifth user's ordinary SEND is acknowledged within
//!   [`SERVED_WITHIN`], and every stored SEND of the round is in its
//!   channel's history exactly once, and nothing else is.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use imcore::wire::{Packet, SendPacket, SessionCipher, Setting};
use imcore::{Flags, ReasonCode};

use crate::client::{handshake, next_frame, write, Socket};
use crate::server::Server;

/// Users bursting at once.
const USERS: usize = 4;

/// One user's burst: one WebSocket message, as large as the server takes
/// (its cap is its wire server's `max_discard`, 4 MiB, and 16 bytes).
const BURST_BYTES: usize = 4 * 1024 * 1024;

/// How far above its pre-burst figure the server's RSS may stay.
const HEADROOM_KIB: u64 = 64 * 1024;

/// How long after the last burst the server has to get there.
const SETTLE: Duration = Duration::from_secs(60);

/// How soon another user's SEND is acknowledged after a burst.
const SERVED_WITHIN: Duration = Duration::from_secs(1);

/// How long a burster waits without a SENDACK before it calls the server
/// stuck.
const STALL: Duration = Duration::from_secs(30);

/// A logged-in user of a person channel.
struct Person {
    uid: String,
    peer: String,
    socket: Socket,
    cipher: SessionCipher,
}

/// What one user's burst came to.
struct Outcome {
    uid: String,
    peer: String,
    sends: usize,
    /// The client_msg_nos of the SENDs acknowledged as a success.
    stored: Vec<String>,
    /// SENDs refused for the send rate.
    refused: usize,
}

impl Person {
    async fn login(server: &Server, uid: String, peer: String) -> Result<Self, String> {
        let (socket, cipher) = handshake(server, &uid).await?;
        Ok(Person {
            uid,
            peer,
            socket,
            cipher,
        })
    }

    /// A SEND to the peer, sealed as the JavaScript client seals it.
    fn seal(&self, client_seq: u32, client_msg_no: String) -> Bytes {
        let mut send = SendPacket {
            flags: Flags::from_bits(0b0010),
            setting: Setting::default(),
            client_seq,
            client_msg_no,
            stream_no: None,
            channel_id: self.peer.clone(),
            channel_type: 1,
            expire: 0,
            msg_key: String::new(),
            topic: None,
            payload: Bytes::from(self.cipher.encrypt(format!("m{client_seq}").as_bytes())),
        };
        send.msg_key = self.cipher.send_msg_key(&send).unwrap_or_default();
        Packet::Send(send)
            .to_bytes()
            .expect("the load generator's own packets encode")
    }

    /// As many SENDs as `bytes` holds, client seqs from 1, back to back:
    /// the message and its client_msg_nos (that of client seq `s` at
    /// `s - 1`).
    fn burst(&self, round: usize, bytes: usize) -> (Bytes, Vec<String>) {
        let mut buf = BytesMut::with_capacity(bytes);
        let mut nos = Vec::new();
        loop {
            let no = format!("r{round}-{}", nos.len() + 1);
            let send = self.seal(nos.len() as u32 + 1, no.clone());
            if buf.len() + send.len() > bytes {
                return (buf.freeze(), nos);
            }
            buf.extend_from_slice(&send);
            nos.push(no);
        }
    }

    /// Writes `message` and reads a SENDACK for each of `nos`: every one
    /// once, a success or a refusal for the send rate.
    async fn answered(&mut self, message: Bytes, nos: Vec<String>) -> Result<Outcome, String> {
        let uid = self.uid.clone();
        let fail = |e: String| format!("{uid}: {e}");
        write(&mut self.socket, message).await.map_err(fail)?;
        let mut answered = vec![false; nos.len()];
        let mut outcome = Outcome {
            uid: self.uid.clone(),
            peer: self.peer.clone(),
            sends: nos.len(),
            stored: Vec::new(),
            refused: 0,
        };
        let mut left = nos.len();
        while left > 0 {
            let frame = tokio::time::timeout(STALL, next_frame(&mut self.socket))
                .await
                .map_err(|_| fail(format!("no SENDACK for {STALL:?}, {left} unanswered")))?
                .map_err(fail)?
                .ok_or_else(|| fail(format!("closed by the server, {left} unanswered")))?;
            let (packet, _) = Packet::decode(&frame, 1 << 20).map_err(|e| fail(e.to_string()))?;
            let ack = match packet {
                Packet::Sendack(ack) => ack,
                Packet::Disconnect(d) => return Err(fail(format!("disconnected: {d:?}"))),
                _ => continue,
            };
            let i = (ack.client_seq as usize).wrapping_sub(1);
            match answered.get_mut(i) {
                None => return Err(fail(format!("a SENDACK for client seq {}", ack.client_seq))),
                Some(true) => return Err(fail(format!("client seq {} answered twice", i + 1))),
                Some(seen) => *seen = true,
            }
            left -= 1;
            match ack.reason {
                ReasonCode::SUCCESS => outcome.stored.push(nos[i].clone()),
                ReasonCode::RATE_LIMIT => outcome.refused += 1,
                other => return Err(fail(format!("client seq {} refused: {other:?}", i + 1))),
            }
        }
        Ok(outcome)
    }

    /// One ordinary SEND, and how long its SENDACK (a success) took.
    async fn send_one(&mut self, client_seq: u32, no: String) -> Result<Duration, String> {
        let send = self.seal(client_seq, no);
        let started = Instant::now();
        write(&mut self.socket, send).await?;
        loop {
            let frame = tokio::time::timeout_at(
                (started + SERVED_WITHIN).into(),
                next_frame(&mut self.socket),
            )
            .await
            .map_err(|_| format!("{}: no SENDACK within {SERVED_WITHIN:?}", self.uid))??
            .ok_or("closed by the server")?;
            match Packet::decode(&frame, 1 << 20)
                .map_err(|e| e.to_string())?
                .0
            {
                Packet::Sendack(ack) if ack.client_seq == client_seq => {
                    return match ack.reason {
                        ReasonCode::SUCCESS => Ok(started.elapsed()),
                        other => Err(format!("{}: SEND refused: {other:?}", self.uid)),
                    };
                }
                Packet::Disconnect(d) => return Err(format!("disconnected: {d:?}")),
                _ => {}
            }
        }
    }
}

fn user(prefix: &str, i: usize) -> (String, String) {
    (format!("{prefix}-u{i}"), format!("{prefix}-p{i}"))
}

/// One round: the users log in, seal their bursts, write them at once,
/// read every answer and leave.
async fn round(
    server: &Server,
    prefix: &str,
    round: usize,
    bytes: usize,
) -> Result<Vec<Outcome>, String> {
    let mut people = Vec::new();
    for i in 0..USERS {
        let (uid, peer) = user(prefix, i);
        people.push(Person::login(server, uid, peer).await?);
    }
    let bursts: Vec<_> = people.iter().map(|p| p.burst(round, bytes)).collect();
    let answers = people
        .iter_mut()
        .zip(bursts)
        .map(|(p, (message, nos))| p.answered(message, nos));
    let outcomes = futures_util::future::join_all(answers).await;
    for p in people {
        let mut socket = p.socket;
        let _ = futures_util::SinkExt::close(&mut socket).await;
    }
    outcomes.into_iter().collect()
}

/// Lets the users (and `extra`) log in.
async fn tokens(server: &Server, prefix: &str, extra: &[&str]) -> Result<(), String> {
    for i in 0..USERS {
        server.token(&user(prefix, i).0).await?;
    }
    for uid in extra {
        server.token(uid).await?;
    }
    Ok(())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn summary(outcomes: &[Outcome]) -> String {
    let sends: usize = outcomes.iter().map(|o| o.sends).sum();
    let stored: usize = outcomes.iter().map(|o| o.stored.len()).sum();
    let refused: usize = outcomes.iter().map(|o| o.refused).sum();
    format!("{sends} SENDs, {stored} stored, {refused} refused for the send rate")
}

/// `run` while the server's RSS is sampled every 100 ms: its outcome and
/// the highest RSS seen.
async fn with_peak<T>(
    server: &Server,
    run: impl std::future::Future<Output = T>,
) -> Result<(T, u64), String> {
    let done = AtomicBool::new(false);
    let peak = AtomicU64::new(server.usage()?.rss_kib);
    let sample = async {
        while !done.load(Ordering::Relaxed) {
            if let Ok(u) = server.usage() {
                peak.fetch_max(u.rss_kib, Ordering::Relaxed);
            }
            // A sampling period, not a wait for anything.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let work = async {
        let out = run.await;
        done.store(true, Ordering::Relaxed);
        out
    };
    let (out, ()) = tokio::join!(work, sample);
    peak.fetch_max(server.usage()?.rss_kib, Ordering::Relaxed);
    Ok((out, peak.into_inner()))
}

/// The `burst` scenario: `rounds` rounds, then memory back within
/// [`HEADROOM_KIB`] of the pre-burst figure within [`SETTLE`]. With
/// `whole`, the server's RSS is followed for all of [`SETTLE`] (a
/// measurement); without, until it is within the bound (a check).
pub async fn memory(server: &Server, rounds: usize, whole: bool) -> Result<(), String> {
    let prefix = "burst";
    tokens(server, prefix, &[]).await?;
    // Warm-up: everything a burst touches, with small bursts.
    round(server, prefix, 0, 64 * 1024).await?;
    let before = server.usage()?.rss_kib;
    println!("burst: server RSS {} after a warm-up", mib(before));
    let all = async {
        let mut highest = 0;
        for r in 1..=rounds {
            let started = Instant::now();
            let outcomes = round(server, prefix, r, BURST_BYTES).await?;
            let rss = server.usage()?.rss_kib;
            highest = rss.max(highest);
            println!(
                "burst: round {r}: {} users, {} in {:.2} s; server RSS {}",
                USERS,
                summary(&outcomes),
                started.elapsed().as_secs_f64(),
                mib(rss),
            );
        }
        Ok::<_, String>(highest)
    };
    let (highest, peak) = with_peak(server, all).await?;
    let peak = peak.max(highest?);
    let bound = before + HEADROOM_KIB;
    println!("burst: server RSS peak {}", mib(peak));
    let started = Instant::now();
    let mut within = None;
    loop {
        let rss = server.usage()?.rss_kib;
        let waited = started.elapsed();
        if rss <= bound && within.is_none() {
            within = Some(waited);
            println!(
                "burst: server RSS {} after {:.0} s: within the bound {} (before {} + {})",
                mib(rss),
                waited.as_secs_f64(),
                mib(bound),
                mib(before),
                mib(HEADROOM_KIB),
            );
        }
        if waited >= SETTLE || (within.is_some() && !whole) {
            if whole {
                println!("burst: server RSS {} after {SETTLE:?}", mib(rss));
            }
            return match rss <= bound {
                true => Ok(()),
                false => Err(format!(
                    "server RSS {} after {:.0} s, over the bound {} (before {}, peak {})",
                    mib(rss),
                    waited.as_secs_f64(),
                    mib(bound),
                    mib(before),
                    mib(peak),
                )),
            };
        }
        // Polled once a second: the server frees memory by itself.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The `soak` scenario: `rounds` rounds against one server, each checked.
pub async fn soak(server: &Server, rounds: usize) -> Result<(), String> {
    let prefix = "soak";
    let (other, other_peer) = ("soak-v".to_string(), "soak-w".to_string());
    tokens(server, prefix, &[&other]).await?;
    let mut fifth = Person::login(server, other.clone(), other_peer).await?;
    // The seq each channel's history was read up to.
    let mut read = vec![0u64; USERS];
    let mut fifth_read = 0;
    let started = Instant::now();
    let before = server.usage()?.rss_kib;
    let mut peak = 0;
    for r in 1..=rounds {
        let round_started = Instant::now();
        let (outcomes, round_peak) =
            with_peak(server, round(server, prefix, r, BURST_BYTES)).await?;
        let outcomes = outcomes.map_err(|e| format!("round {r}: {e}"))?;
        peak = peak.max(round_peak);
        let burst = round_started.elapsed();
        let served = fifth
            .send_one(r as u32, format!("{other}-r{r}"))
            .await
            .map_err(|e| format!("round {r}: {e}"))?;
        let checked = Instant::now();
        for (o, read) in outcomes.iter().zip(&mut read) {
            *read = exactly(server, r, &o.uid, &o.peer, *read, &o.stored).await?;
        }
        fifth_read = exactly(
            server,
            r,
            &fifth.uid,
            &fifth.peer,
            fifth_read,
            &[format!("{other}-r{r}")],
        )
        .await?;
        println!(
            "soak: round {r}: {} in {:.2} s; another user's SEND acked in {} ms; history exact (checked in {} ms); server RSS {}",
            summary(&outcomes),
            burst.as_secs_f64(),
            served.as_millis(),
            checked.elapsed().as_millis(),
            mib(server.usage()?.rss_kib),
        );
    }
    println!(
        "soak: {rounds} rounds in {:.1} s; server RSS {} before, peak {}, {} after",
        started.elapsed().as_secs_f64(),
        mib(before),
        mib(peak),
        mib(server.usage()?.rss_kib),
    );
    Ok(())
}

/// Checks that the history of `uid`'s channel with `peer` after seq `read`
/// is exactly the `stored` client_msg_nos, each once: the seq read up to.
async fn exactly(
    server: &Server,
    round: usize,
    uid: &str,
    peer: &str,
    read: u64,
    stored: &[String],
) -> Result<u64, String> {
    let history = server.history(uid, peer, read + 1).await?;
    let mut found = history.client_msg_nos;
    let mut want = stored.to_vec();
    found.sort_unstable();
    want.sort_unstable();
    if found != want {
        let dup = found.windows(2).find(|w| w[0] == w[1]).map(|w| &w[0]);
        let missing = want.iter().find(|n| found.binary_search(n).is_err());
        let extra = found.iter().find(|n| want.binary_search(n).is_err());
        return Err(format!(
            "round {round}: {uid}'s history holds {} messages for {} stored (first twice: {dup:?}, first missing: {missing:?}, first not stored: {extra:?})",
            found.len(),
            want.len()
        ));
    }
    Ok(history.last_seq)
}
