//! What the benches share: quick mode, the runtime, ids, the payload.

// Each bench uses a part of this.
#![allow(dead_code)]

use imcore::Uid;
use tokio::runtime::Runtime;

/// The payload every bench sends: 200 bytes.
pub const PAYLOAD: [u8; 200] = [b'x'; 200];

/// `IMCORE_BENCH_QUICK=1`: smaller data sets (CI).
pub fn quick() -> bool {
    std::env::var_os("IMCORE_BENCH_QUICK").is_some()
}

/// A runtime of the machine's size: two workers.
pub fn rt() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}
