//! Races between a caller and the hub's own work: a revoke whose caller
//! stops waiting, and a logout that lands in the middle of a login.

use std::sync::Arc;
use std::time::Duration;

use imcore::hub::HubConfig;
use imcore::store::{Durability, SledStore};
use imcore::wire::{Authenticator, ConnectInfo, TokenTable};
use imcore::{
    Channel, Device, DeviceFlag, DeviceId, DeviceLevel, Hub, MemoryDirectory, MessageId,
    RevokeRequest, SendRequest, Uid,
};

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

/// The JSON `type` and the revoked message's id of a revocation command or
/// tip, `None` for anything else.
fn revocation_of(payload: &[u8]) -> Option<(i64, MessageId)> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let kind = v["type"].as_i64()?;
    let id = match kind {
        99 => v["param"]["message_id"].as_str()?,
        1006 => v["message_id"].as_str()?,
        _ => return None,
    };
    Some((kind, MessageId(id.parse().ok()?)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_whose_caller_stops_waiting_is_still_told_exactly_once() {
    let directory = Arc::new(MemoryDirectory::new());
    let store = SledStore::temporary_with(Durability::Flush).unwrap();
    let hub = Hub::builder()
        .store(Arc::new(store))
        .directory(directory.clone())
        .config(HubConfig::default().revoke_tip(true))
        .build()
        .unwrap();
    let (alice, bob) = (uid("alice"), uid("bob"));
    let group = Channel::group("g-cancel").unwrap();
    directory.create_channel(&group, &alice, [bob.clone()]);
    let device = Device::master(
        bob.clone(),
        DeviceId::new("phone").unwrap(),
        DeviceFlag::App,
    );
    let (_, mut bob_conn) = hub.connect_in_process(device, 4096);
    let bound = Duration::from_secs(10);
    for attempt in 0..300u64 {
        let ack = hub
            .send(SendRequest::new(alice.clone(), group.clone(), "hi"))
            .await
            .unwrap();
        let got = bob_conn.recv().await.unwrap();
        assert_eq!(got.message_id, ack.message_id);
        // The caller gives up somewhere between before the record and
        // after the telling.
        let wait = Duration::from_micros(50 + (attempt * 37) % 1950);
        let request = RevokeRequest::by_id(alice.clone(), ack.message_id);
        let _ = tokio::time::timeout(wait, hub.revoke(request.clone())).await;
        // The retry answers; by then the command and the tip have been
        // handed to bob's device by whichever call stored them.
        hub.revoke(request).await.unwrap();
        let mut told = Vec::new();
        for _ in 0..2 {
            let m = tokio::time::timeout(bound, bob_conn.recv())
                .await
                .unwrap_or_else(|_| panic!("attempt {attempt}: bob was never told"))
                .unwrap();
            told.push(revocation_of(&m.payload).expect("a revocation command or tip"));
        }
        told.sort();
        assert_eq!(told, [(99, ack.message_id), (1006, ack.message_id)]);
        assert!(
            bob_conn.try_recv().is_none(),
            "attempt {attempt}: told twice"
        );
    }
}

/// An authenticator that awaits, as one backed by a database does.
#[derive(Debug)]
struct Slow(TokenTable);

#[async_trait::async_trait]
impl Authenticator for Slow {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<DeviceLevel, imcore::ReasonCode> {
        tokio::task::yield_now().await;
        let level = self.0.authenticate(info).await;
        tokio::task::yield_now().await;
        level
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_never_loses_to_a_login_in_progress() {
    let hub = Hub::builder().build().unwrap();
    let auth = Arc::new(Slow(TokenTable::new()));
    let alice = uid("alice");
    let info = ConnectInfo {
        uid: alice.clone(),
        token: "t".into(),
        device_id: DeviceId::new("tab").unwrap(),
        device_flag: DeviceFlag::Web,
        version: 2,
    };
    let (mut registered, mut survived) = (0, 0);
    for i in 0..3_000u32 {
        auth.0
            .set(alice.clone(), DeviceFlag::Web, "t", DeviceLevel::Master);
        let login = {
            let (hub, auth, info) = (hub.clone(), auth.clone(), info.clone());
            tokio::spawn(async move {
                // What the wire server does: a ticket, the check, then the
                // checked registration; checked again if a kick intervened.
                for _ in 0..3 {
                    let ticket = hub.login_ticket(&info.uid);
                    let level = auth.authenticate(&info).await.ok()?;
                    let device = Device {
                        uid: info.uid.clone(),
                        device_id: info.device_id.clone(),
                        flag: info.device_flag,
                        level,
                    };
                    let (sink, conn) = imcore::session::in_process(4);
                    if let Some(id) = hub.connect_checked(ticket, device, sink) {
                        return Some((id, conn));
                    }
                }
                None
            })
        };
        let logout = {
            let (hub, auth, alice) = (hub.clone(), auth.clone(), alice.clone());
            tokio::spawn(async move {
                for _ in 0..i % 7 {
                    tokio::task::yield_now().await;
                }
                auth.0.remove(&alice, DeviceFlag::Web);
                hub.kick(&alice, None);
            })
        };
        logout.await.unwrap();
        let connected = login.await.unwrap();
        registered += usize::from(connected.is_some());
        if !hub.online_devices(&alice).is_empty() {
            survived += 1;
            hub.kick(&alice, None);
        }
    }
    assert_eq!(survived, 0, "logins that outlived their logout");
    // The race was run both ways: some logins registered before the kick.
    assert!(registered > 0, "no login ever registered before its logout");
}
