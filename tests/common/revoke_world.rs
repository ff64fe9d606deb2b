//! The world of the `revoke_*` tests: a hub on a manual clock with group
//! `g` (owner, two managers, alice and bob), devices connected in process,
//! and shorthands to send, revoke and read a refusal.

// Each test file uses a part of this.
#![allow(dead_code)]

use std::sync::Arc;

use imcore::revoke::Authorizer;
use imcore::session::InProcessConnection;
use imcore::store::Store;
use imcore::{
    Channel, Device, DeviceFlag, DeviceId, Error, Hub, HubConfig, ManualClock, MemoryDirectory,
    MemoryStore, MessageId, RevokeOutcome, RevokeRefusal, RevokeRequest, SendRequest, Uid,
};

pub fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

pub const T0: i64 = 1_700_000_000_000;

pub struct World {
    pub hub: Hub,
    pub directory: Arc<MemoryDirectory>,
    pub clock: Arc<ManualClock>,
    pub group: Channel,
}

pub fn world_with(
    store: Arc<dyn Store>,
    config: HubConfig,
    authorizer: Option<Arc<dyn Authorizer>>,
) -> World {
    let directory = Arc::new(MemoryDirectory::new());
    let clock = Arc::new(ManualClock::new(T0));
    let mut builder = Hub::builder()
        .store(store)
        .directory(directory.clone())
        .clock(clock.clone())
        .config(config);
    if let Some(a) = authorizer {
        builder = builder.authorizer(a);
    }
    let group = Channel::group("g").unwrap();
    directory.create_channel(
        &group,
        &uid("owner"),
        ["manager", "manager2", "alice", "bob"].map(uid),
    );
    directory.set_manager(&group, &uid("manager"), true);
    directory.set_manager(&group, &uid("manager2"), true);
    World {
        hub: builder.build().unwrap(),
        directory,
        clock,
        group,
    }
}

pub fn world() -> World {
    world_with(Arc::new(MemoryStore::new()), HubConfig::default(), None)
}

impl World {
    pub fn connect(&self, who: &str, device: &str, flag: DeviceFlag) -> InProcessConnection {
        let d = Device::master(uid(who), DeviceId::new(device).unwrap(), flag);
        self.hub.connect_in_process(d, 256).1
    }

    pub async fn say(&self, from: &str, text: &str) -> MessageId {
        self.hub
            .send(SendRequest::new(
                uid(from),
                self.group.clone(),
                text.to_string(),
            ))
            .await
            .unwrap()
            .message_id
    }

    pub async fn revoke(&self, who: &str, id: MessageId) -> imcore::Result<RevokeOutcome> {
        self.hub.revoke(RevokeRequest::by_id(uid(who), id)).await
    }
}

pub fn refusal(r: imcore::Result<RevokeOutcome>) -> RevokeRefusal {
    match r {
        Err(Error::RevokeRefused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}
