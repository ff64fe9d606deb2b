//! The world of the `hub_*` tests: a hub on a memory store (or one given),
//! with a memory directory and a notifier that records every offline push;
//! devices connected in process; and short constructors for ids.

// Each test file uses a part of this.
#![allow(dead_code)]

use std::sync::Arc;

use async_trait::async_trait;
use imcore::session::{ConnectionId, InProcessConnection};
use imcore::store::Store;
use imcore::{
    Channel, ChannelType, ClientMsgNo, Device, DeviceFlag, DeviceId, Hub, HubConfig,
    MemoryDirectory, MemoryStore, Message, OfflineNotifier, Uid,
};
use tokio::sync::mpsc;

pub fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

pub fn dev(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

pub fn no(s: &str) -> ClientMsgNo {
    ClientMsgNo::new(s).unwrap()
}

pub fn person(peer: &str) -> Channel {
    Channel::new(uid(peer).into(), ChannelType::PERSON)
}

/// Records every offline notification.
#[derive(Debug)]
struct Recorder(mpsc::UnboundedSender<(Arc<Message>, Vec<Uid>)>);

#[async_trait]
impl OfflineNotifier for Recorder {
    async fn notify(&self, message: Arc<Message>, offline: Vec<Uid>) {
        let _ = self.0.send((message, offline));
    }
}

pub struct World {
    pub hub: Hub,
    pub directory: Arc<MemoryDirectory>,
    pub pushes: mpsc::UnboundedReceiver<(Arc<Message>, Vec<Uid>)>,
}

pub fn world_on(store: Arc<dyn Store>) -> World {
    world_configured(store, HubConfig::default())
}

/// A world on `store` whose hub has `config`.
pub fn world_configured(store: Arc<dyn Store>, config: HubConfig) -> World {
    let directory = Arc::new(MemoryDirectory::new());
    let (tx, pushes) = mpsc::unbounded_channel();
    let hub = Hub::builder()
        .config(config)
        .store(store)
        .directory(directory.clone())
        .notifier(Arc::new(Recorder(tx)))
        .build()
        .unwrap();
    World {
        hub,
        directory,
        pushes,
    }
}

pub fn world() -> World {
    world_on(Arc::new(MemoryStore::new()))
}

impl World {
    pub fn phone(&self, who: &str) -> (ConnectionId, InProcessConnection) {
        self.hub.connect_in_process(
            Device::master(uid(who), dev(&format!("{who}-phone")), DeviceFlag::App),
            1024,
        )
    }

    pub fn web(&self, who: &str) -> (ConnectionId, InProcessConnection) {
        self.hub.connect_in_process(
            Device::slave(uid(who), dev(&format!("{who}-web")), DeviceFlag::Web),
            1024,
        )
    }

    pub fn group(&self, id: &str, owner: &str, members: &[&str]) -> Channel {
        let g = Channel::group(id).unwrap();
        self.directory
            .create_channel(&g, &uid(owner), members.iter().map(|m| uid(m)));
        g
    }
}

pub fn payloads(conn: &mut InProcessConnection) -> Vec<String> {
    conn.drain()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}
