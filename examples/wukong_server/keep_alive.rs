//! How long an HTTP connection may sit without a request: its first
//! request's headers must arrive within the connect timeout, and between
//! requests it is kept for the keep-alive timeout, announced in every
//! response (`Keep-Alive: timeout=N`) so that a pooled client drops it
//! first.
//!
//! hyper's own header read timeout cannot say this: it starts again at
//! every request, so it also timed the idle gaps between requests and
//! closed a pooled connection unannounced after 2 s; a business server
//! whose pool handed that connection out just then lost the request
//! ("socket hang up"). It is off; [`Pace`] times the connection instead.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::header::CONNECTION;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The response header announcing the idle time (`http` has no constant
/// for it: HTTP/2 forbids it).
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// The two limits, as the server is configured.
#[derive(Debug, Clone)]
pub struct KeepAlive {
    /// Time for the first request's headers, from the connection's start.
    pub first_request: Duration,
    /// Time an idle connection is kept between requests.
    pub idle: Duration,
    /// `timeout=N`, N the idle time in seconds.
    announce: HeaderValue,
}

impl KeepAlive {
    /// `first_request` for the first request's headers, `idle` between
    /// requests (announced in whole seconds, rounded down).
    pub fn new(first_request: Duration, idle: Duration) -> Self {
        let announce = HeaderValue::from_str(&format!("timeout={}", idle.as_secs()))
            .expect("digits are a header value");
        KeepAlive {
            first_request,
            idle,
            announce,
        }
    }

    /// Says, on a response that leaves its connection open, how long the
    /// connection is kept idle. A response closing its connection (408 for
    /// a slow body) or switching protocols (a WebSocket) says nothing.
    pub fn announce(&self, response: &mut Response) {
        let closing = response
            .headers()
            .get(CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        if !closing && response.status() != StatusCode::SWITCHING_PROTOCOLS {
            response
                .headers_mut()
                .insert(KEEP_ALIVE, self.announce.clone());
        }
    }
}

/// Why a connection's time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Its first request's headers did not arrive in time.
    FirstRequest,
    /// It sat idle between requests for the keep-alive timeout.
    Idle,
}

/// One connection's requests under way and its deadline, shared by its
/// service (which starts and ends requests) and the task serving it
/// (which closes it at [`Pace::expired`]).
pub struct Pace {
    state: Mutex<State>,
    changed: Notify,
    idle: Duration,
}

struct State {
    /// Requests whose headers are in and whose response is not yet made.
    under_way: usize,
    /// Whether a request has come.
    served: bool,
    /// When the connection is closed unless a request comes first; none
    /// while a request is under way (the body timeout bounds its body).
    deadline: Option<Instant>,
}

/// A request under way: the connection's idle time starts again when it
/// is dropped (its response made, or the request given up).
pub struct Visit(Arc<Pace>);

impl Pace {
    /// A connection starting now.
    pub fn new(limits: &KeepAlive) -> Arc<Self> {
        Arc::new(Pace {
            state: Mutex::new(State {
                under_way: 0,
                served: false,
                deadline: Some(Instant::now() + limits.first_request),
            }),
            changed: Notify::new(),
            idle: limits.idle,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request's headers are in: no deadline until its response is made.
    pub fn begin(self: &Arc<Self>) -> Visit {
        let mut state = self.state();
        state.under_way += 1;
        state.served = true;
        state.deadline = None;
        Visit(self.clone())
    }

    /// Resolves when the connection's deadline passes with no request
    /// under way: it is to be closed.
    pub async fn expired(&self) -> Expired {
        loop {
            let deadline = self.state().deadline;
            match deadline {
                // A request under way: its end notifies.
                None => self.changed.notified().await,
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.changed.notified() => {}
                    }
                }
            }
            let state = self.state();
            if state.deadline.is_some_and(|at| at <= Instant::now()) {
                return if state.served {
                    Expired::Idle
                } else {
                    Expired::FirstRequest
                };
            }
        }
    }
}

impl Drop for Visit {
    fn drop(&mut self) {
        let pace = &self.0;
        let mut state = pace.state();
        state.under_way -= 1;
        if state.under_way == 0 {
            state.deadline = Some(Instant::now() + pace.idle);
            drop(state);
            pace.changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::Body;
    use tokio::time::{advance, timeout};

    const FIRST: Duration = Duration::from_secs(2);
    const IDLE: Duration = Duration::from_secs(90);

    fn limits() -> KeepAlive {
        KeepAlive::new(FIRST, IDLE)
    }

    /// Whether `pace` expires within `within` (the paused clock moves on
    /// by itself while every task waits).
    async fn expires_within(pace: &Pace, within: Duration) -> Option<Expired> {
        timeout(within, pace.expired()).await.ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_expires_at_the_first_request_limit() {
        let pace = Pace::new(&limits());
        let started = Instant::now();
        assert_eq!(
            expires_within(&pace, FIRST * 2).await,
            Some(Expired::FirstRequest)
        );
        assert_eq!(started.elapsed(), FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_request_the_idle_gap_is_timed_by_the_keep_alive_limit_only() {
        let pace = Pace::new(&limits());
        advance(FIRST / 2).await;
        drop(pace.begin());
        let answered = Instant::now();
        // Far past the first request's limit, still kept.
        assert_eq!(expires_within(&pace, FIRST * 10).await, None);
        assert_eq!(expires_within(&pace, IDLE).await, Some(Expired::Idle));
        assert_eq!(answered.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_under_way_has_no_deadline_and_its_end_starts_the_idle_time() {
        let pace = Pace::new(&limits());
        let visit = pace.begin();
        let second = pace.begin();
        assert_eq!(expires_within(&pace, IDLE * 3).await, None);
        drop(visit);
        // One still under way.
        assert_eq!(expires_within(&pace, IDLE * 3).await, None);
        drop(second);
        let ended = Instant::now();
        assert_eq!(expires_within(&pace, IDLE * 2).await, Some(Expired::Idle));
        assert_eq!(ended.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_task_sees_the_deadline_move_when_a_request_comes() {
        let pace = Pace::new(&limits());
        let waiting = tokio::spawn({
            let pace = pace.clone();
            async move { pace.expired().await }
        });
        advance(FIRST / 2).await;
        drop(pace.begin());
        let answered = Instant::now();
        assert_eq!(waiting.await.unwrap(), Expired::Idle);
        assert_eq!(answered.elapsed(), IDLE);
    }

    #[test]
    fn responses_announce_the_idle_time_unless_they_close_or_upgrade() {
        let limits = KeepAlive::new(FIRST, Duration::from_millis(90_900));
        let mut ok = Response::new(Body::empty());
        limits.announce(&mut ok);
        assert_eq!(ok.headers()[KEEP_ALIVE], "timeout=90");
        let mut closing = Response::new(Body::empty());
        closing
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("Close"));
        limits.announce(&mut closing);
        assert!(closing.headers().get(KEEP_ALIVE).is_none());
        let mut upgrade = Response::new(Body::empty());
        *upgrade.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        limits.announce(&mut upgrade);
        assert!(upgrade.headers().get(KEEP_ALIVE).is_none());
    }
}
