//! The bare substrate of the HTTP API, for the `http` scenario to measure
//! beside `wukong_server` in the same run: a hyper HTTP/1.1 server, on the
//! same runtime and allocator, that reads each request's body whole,
//! parses it as `/message/send`'s JSON into a struct of the same fields
//! (serde_json) and answers 200 with a JSON body of the same shape and
//! about the same size (`message_id`, `message_idstr`, `message_seq`,
//! `client_msg_no`). It does what any server of this API must do for a
//! request, and nothing else: no routing layers, no hub, no store.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

/// The first message id: as many digits as the server's (node id and
/// milliseconds in the high bits).
const FIRST_ID: u64 = 1 << 60;

/// `/message/send`'s body, as `wukong_server` reads it (its `send.rs`).
#[derive(Deserialize)]
#[allow(dead_code)] // read, as the server reads them, and not used
struct SendBody {
    #[serde(default)]
    header: Header,
    from_uid: String,
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    channel_type: u8,
    #[serde(default)]
    subscribers: Vec<String>,
    client_msg_no: Option<String>,
    payload: String,
}

#[derive(Deserialize, Default)]
#[allow(dead_code)]
struct Header {
    #[serde(default)]
    no_persist: u8,
    #[serde(default)]
    red_dot: u8,
    #[serde(default)]
    sync_once: Option<u8>,
}

/// Serves on a free 127.0.0.1 port, printing `listening on 127.0.0.1:PORT`
/// as `wukong_server` does, until killed.
pub async fn serve() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    let ids = Arc::new(AtomicU64::new(FIRST_ID));
    loop {
        let (tcp, _) = listener.accept().await?;
        let ids = ids.clone();
        tokio::spawn(async move {
            // A seq per connection: each client of the scenario sends on
            // channels of its own.
            let seq = Arc::new(AtomicU64::new(0));
            let service = hyper::service::service_fn(move |request| {
                answer(request, ids.clone(), seq.clone())
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    ids: Arc<AtomicU64>,
    seq: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return Ok(refuse(&e.to_string())),
    };
    let send: SendBody = match serde_json::from_slice(&body) {
        Ok(send) => send,
        Err(e) => return Ok(refuse(&e.to_string())),
    };
    let id = ids.fetch_add(1, Ordering::Relaxed);
    let answer = json!({
        "message_id": id,
        "message_idstr": id.to_string(),
        "message_seq": seq.fetch_add(1, Ordering::Relaxed) + 1,
        "client_msg_no": send.client_msg_no.unwrap_or_default(),
    });
    Ok(json_response(StatusCode::OK, answer.to_string()))
}

fn refuse(msg: &str) -> Response<Full<Bytes>> {
    let body = json!({"status": 400, "msg": msg, "reason_code": 0});
    json_response(StatusCode::BAD_REQUEST, body.to_string())
}

fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
