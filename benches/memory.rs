//! W5: the hub's own memory per online device, measured with a counting
//! allocator, against the bare substrate (a `HashMap<Uid, Vec<sink>>`).
//!
//! The ids and the sinks are made before measuring: they belong to the
//! caller and the transport. What is counted is what `Hub::connect` itself
//! allocates and keeps.
//!
//! Run: `cargo bench --bench memory` (`IMCORE_BENCH_QUICK=1` for 10,000
//! devices instead of 100,000).

use std::alloc::System;
use std::collections::HashMap;
use std::sync::Arc;

use imcore::session::SinkError;
use imcore::{Device, DeviceFlag, DeviceId, DeviceSink, DisconnectReason, Hub, Message, Uid};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A transport that keeps nothing: the hub's memory alone is measured.
#[derive(Debug)]
struct NullSink;

impl DeviceSink for NullSink {
    fn deliver(&self, _: Arc<Message>) -> Result<(), SinkError> {
        Ok(())
    }
    fn close(&self, _: DisconnectReason) {}
}

fn net_bytes(region: &Region<'_, System>) -> isize {
    let s = region.change();
    s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is ignored.
    let n: usize = if std::env::var_os("IMCORE_BENCH_QUICK").is_some() {
        10_000
    } else {
        100_000
    };
    let devices: Vec<Device> = (0..n)
        .map(|i| {
            Device::master(
                Uid::new(format!("user{i}")).unwrap(),
                DeviceId::new(format!("device{i}")).unwrap(),
                DeviceFlag::App,
            )
        })
        .collect();
    let sinks: Vec<Arc<dyn DeviceSink>> = (0..n).map(|_| Arc::new(NullSink) as _).collect();

    let hub = Hub::builder().config(unlimited()).build().unwrap();
    let region = Region::new(GLOBAL);
    for (device, sink) in devices.iter().cloned().zip(sinks.iter().cloned()) {
        hub.connect(device, sink);
    }
    let hub_bytes = net_bytes(&region);
    assert_eq!(hub.connection_count(), n);

    // The bare substrate: a map from uid to its sinks.
    let region = Region::new(GLOBAL);
    let mut raw: HashMap<Uid, Vec<Arc<dyn DeviceSink>>> = HashMap::new();
    for (device, sink) in devices.iter().zip(sinks.iter()) {
        raw.entry(device.uid.clone())
            .or_default()
            .push(sink.clone());
    }
    let raw_bytes = net_bytes(&region);
    assert_eq!(raw.len(), n);

    let per = |b: isize| b as f64 / n as f64;
    println!("w5_memory devices={n}");
    println!("w5_memory crate/hub_per_device_bytes {:.1}", per(hub_bytes));
    println!("w5_memory raw_map_per_device_bytes {:.1}", per(raw_bytes));
    println!(
        "w5_memory ratio crate/raw {:.2}",
        hub_bytes as f64 / raw_bytes as f64
    );
    drop(hub);
}

/// The hub's settings here: no send rate (these measure the hub, and send
/// from one uid as fast as it goes).
fn unlimited() -> imcore::HubConfig {
    imcore::HubConfig::default().send_rate(None)
}
