//! `GET /metrics`: the hub's and the wire server's counters in Prometheus'
//! text format, read at each scrape (prometheus-client's `Collector`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use imcore::wire::WireServer;
use imcore::{Hub, NatsRouter, StoredDirectory};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::limits::Limits;
use crate::App;

/// Reads the counters when scraped.
#[derive(Debug)]
struct Counters {
    hub: Hub,
    wire: WireServer,
    limits: Arc<Limits>,
    directory: Arc<StoredDirectory>,
    cluster: Option<NatsRouter>,
}

/// One counter.
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, n: u64) -> std::fmt::Result {
    let c = ConstCounter::new(n);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// One gauge.
fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, n: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for Counters {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let hub = self.hub.stats();
        let wire = self.wire.stats();
        let sends = ConstCounter::new(0u64);
        let mut family = e.encode_descriptor(
            "imcore_sends",
            "Sends by class (history, command, transient) and result",
            None,
            sends.metric_type(),
        )?;
        for (class, c) in [
            ("history", hub.history),
            ("command", hub.commands),
            ("transient", hub.transient),
        ] {
            for (result, n) in [
                ("accepted", c.accepted),
                ("duplicate", c.duplicates),
                ("refused", c.refused),
                ("failed", c.failed),
            ] {
                let labels = [("class", class), ("result", result)];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        let labels = [("class", "none"), ("result", "refused")];
        ConstCounter::new(hub.refused_unclassified).encode(family.encode_family(&labels)?)?;
        counter(
            &mut e,
            "imcore_sends_rate_limited",
            "Sends refused (reason 22) for coming faster than their sender's send rate; \
             also in imcore_sends{class=\"none\",result=\"refused\"}",
            hub.rate_limited,
        )?;
        counter(
            &mut e,
            "imcore_store_timeouts",
            "Store calls on the send path that missed the store deadline \
             (--store-deadline-ms); their sends failed, retryable (reason 15, HTTP 503)",
            hub.store_timeouts,
        )?;
        gauge(
            &mut e,
            "imcore_send_rate_senders",
            "Senders the send-rate limiter remembers now (those that sent lately)",
            hub.rate_tracked_senders,
        )?;
        counter(
            &mut e,
            "imcore_deliveries",
            "Messages handed to devices",
            hub.deliveries,
        )?;
        counter(
            &mut e,
            "imcore_late_dropped",
            "In a cluster: messages that reached this node after a later seq of their channel \
             had been delivered here, so not delivered live (devices find them by sync)",
            hub.late_deliveries,
        )?;
        counter(
            &mut e,
            "imcore_presence_notices_dropped",
            "In a cluster: this node's presence changes not published because its queue to NATS \
             was full; the other nodes see the gap and ask for a snapshot",
            self.cluster
                .as_ref()
                .map_or(0, |c| c.stats().presence_dropped),
        )?;
        counter(
            &mut e,
            "imcore_slow_consumer_closes",
            "Devices disconnected because their queue was full",
            hub.slow_consumers,
        )?;
        gauge(
            &mut e,
            "imcore_online_devices",
            "Devices online now",
            hub.online_devices,
        )?;
        gauge(
            &mut e,
            "imcore_queued_deliveries",
            "Messages waiting in devices' queues now",
            hub.queued_deliveries,
        )?;
        gauge(
            &mut e,
            "imcore_deepest_queue",
            "The most messages waiting in one device's queue now",
            hub.deepest_queue,
        )?;
        counter(
            &mut e,
            "imcore_store_writes",
            "Writes of history and commands to the store",
            hub.store_writes,
        )?;
        let seconds = ConstCounter::new(hub.store_write_time.as_secs_f64());
        seconds.encode(e.encode_descriptor(
            "imcore_store_write_seconds",
            "Time spent in those writes",
            None,
            seconds.metric_type(),
        )?)?;
        gauge(
            &mut e,
            "imcore_connections",
            "Logged-in connections now",
            wire.connections,
        )?;
        counter(&mut e, "imcore_logins", "Logins accepted", wire.logins)?;
        let refusals = ConstCounter::new(0u64);
        let mut family = e.encode_descriptor(
            "imcore_login_refusals",
            "Logins refused, by the reason code sent",
            None,
            refusals.metric_type(),
        )?;
        for (reason, n) in &wire.refusals {
            let labels = [("reason", reason.as_u8().to_string())];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
        counter(
            &mut e,
            "imcore_connect_timeouts",
            "Connections that did not log in, or stayed silent, in time",
            wire.timeouts,
        )?;
        counter(
            &mut e,
            "imcore_write_timeouts",
            "Connections given up because a write did not finish in time",
            wire.write_timeouts,
        )?;
        self.encode_limits(&mut e)?;
        self.encode_directory(&mut e)
    }
}

impl Counters {
    /// The directory's cache: how often a send's checks needed the store.
    fn encode_directory(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let stats = self.directory.stats();
        gauge(
            e,
            "imcore_directory_cached_channels",
            "Channels the directory cache holds now",
            stats.cached as u64,
        )?;
        for (name, help, n) in [
            (
                "imcore_directory_hits",
                "Directory answers from the cache, with no store call",
                stats.hits,
            ),
            (
                "imcore_directory_loads",
                "Channels read from the store into the directory cache",
                stats.loads,
            ),
            (
                "imcore_directory_revalidations",
                "Version checks of cached channels past the revalidation bound",
                stats.revalidations,
            ),
            (
                "imcore_directory_invalidations",
                "Cached channels dropped because the store moved past them",
                stats.invalidations,
            ),
        ] {
            counter(e, name, help, n)?;
        }
        Ok(())
    }

    /// The abuse limits as configured (0: off), and what they refused.
    /// Refused logins are also in `imcore_login_refusals{reason="22"}`.
    fn encode_limits(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let limits = &self.limits;
        let stats = limits.stats();
        let rate = self.hub.config().send_rate;
        for (name, help, n) in [
            (
                "imcore_limit_send_rate",
                "Sends allowed per sender per second (0: no limit)",
                rate.map_or(0, |r| u64::from(r.per_second.get())),
            ),
            (
                "imcore_limit_send_burst",
                "The most sends a sender may make at once (0: no limit)",
                rate.map_or(0, |r| u64::from(r.burst.get())),
            ),
            (
                "imcore_limit_logins_per_second",
                "Logins allowed per source address per second, as a burst of as many (0: no limit)",
                u64::from(limits.logins_per_second),
            ),
            (
                "imcore_limit_connections_per_address",
                "Connections allowed open at once per source address (0: no limit)",
                u64::from(limits.connections_per_address),
            ),
            (
                "imcore_limit_max_list",
                "The most items an HTTP answer lists",
                limits.max_list as u64,
            ),
            (
                "imcore_open_connections",
                "TCP connections open now, on every listener, logged in or not",
                stats.open,
            ),
            (
                "imcore_limited_addresses",
                "Source addresses the login limiter remembers now",
                stats.tracked_addresses,
            ),
        ] {
            gauge(e, name, help, n)?;
        }
        counter(
            e,
            "imcore_connections_refused",
            "Connections closed as they were accepted: their address had too many open",
            stats.refused_connections,
        )?;
        counter(
            e,
            "imcore_logins_rate_limited",
            "Logins refused (reason 22) for coming too fast from their address",
            stats.refused_logins,
        )
    }
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<App>) -> Response {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Counters {
        hub: app.hub.clone(),
        wire: app.wire.clone(),
        limits: app.limits.clone(),
        directory: app.directory.clone(),
        cluster: app.cluster.clone(),
    }));
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
