//! Message ids: a snowflake-style generator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::error::{Result, ValidationError};
use crate::model::MessageId;

/// The generator's epoch: 2020-01-01T00:00:00Z, in Unix milliseconds.
pub const ID_EPOCH_MS: i64 = 1_577_836_800_000;

const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;
const TIME_BITS: u32 = 63 - NODE_BITS - SEQ_BITS;

/// The last `(time, seq)` state: the end of the 41 bits of time.
const MAX_STATE: u64 = (1 << (TIME_BITS + SEQ_BITS)) - 1;

/// The largest node number a [`MessageIdGenerator`] accepts (1023).
pub const MAX_NODE: u16 = (1 << NODE_BITS) - 1;

/// Makes message ids that are unique and increase with time.
///
/// Layout of the 63 bits used (the sign bit of WuKongIM's `int64` is always
/// 0): 41 bits of milliseconds since [`ID_EPOCH_MS`] (about 69 years), 10
/// bits of node number (so up to 1024 processes can share one id space), 12
/// bits of sequence within the millisecond (4096 ids per millisecond per
/// node).
///
/// Ids from one generator strictly increase, even when the clock steps back
/// (the generator keeps its last time until the clock catches up) or more
/// than 4096 ids are asked for in one millisecond (it borrows the next
/// millisecond). Ids from different nodes never collide. Lock-free: one
/// compare-and-swap per id.
///
/// The range ends in September 2089: from then on the generator keeps
/// returning its last id, which is always below 2^63.
///
/// ```
/// use imcore::MessageIdGenerator;
/// let ids = MessageIdGenerator::new(1).unwrap();
/// let (a, b) = (ids.next_id(), ids.next_id());
/// assert!(b > a);
/// assert_eq!(MessageIdGenerator::node_of(a), 1);
/// ```
#[derive(Debug)]
pub struct MessageIdGenerator {
    node: u64,
    clock: Arc<dyn Clock>,
    /// `(ms since epoch) << SEQ_BITS | seq` of the last id handed out.
    last: AtomicU64,
}

impl MessageIdGenerator {
    /// A generator for node `node` (at most [`MAX_NODE`]) on the system
    /// clock.
    pub fn new(node: u16) -> Result<Self> {
        Self::with_clock(node, Arc::new(SystemClock))
    }

    /// A generator for node `node` on `clock`.
    pub fn with_clock(node: u16, clock: Arc<dyn Clock>) -> Result<Self> {
        if node > MAX_NODE {
            return Err(ValidationError::OutOfRange("node_id above 1023").into());
        }
        Ok(MessageIdGenerator {
            node: u64::from(node),
            clock,
            last: AtomicU64::new(0),
        })
    }

    /// The next id.
    pub fn next_id(&self) -> MessageId {
        let now = self.clock.now_ms().saturating_sub(ID_EPOCH_MS).max(0) as u64;
        let now = now.min((1 << TIME_BITS) - 1) << SEQ_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            // Never go back: at least one past the last id's (time, seq),
            // within the 41 bits of time (the scheme ends in 2089).
            let next = now.max(last + 1).min(MAX_STATE);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    let time = next >> SEQ_BITS;
                    let seq = next & ((1 << SEQ_BITS) - 1);
                    return MessageId(
                        (time << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | seq,
                    );
                }
                Err(actual) => last = actual,
            }
        }
    }

    /// The node number inside an id made by this scheme.
    pub fn node_of(id: MessageId) -> u16 {
        ((id.0 >> SEQ_BITS) & u64::from(MAX_NODE)) as u16
    }

    /// The time inside an id made by this scheme, in Unix milliseconds.
    pub fn time_ms_of(id: MessageId) -> i64 {
        (id.0 >> (NODE_BITS + SEQ_BITS)) as i64 + ID_EPOCH_MS
    }
}
