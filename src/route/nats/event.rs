//! What nodes say to each other, and its encoding: a version byte, then
//! the event in postcard.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::StoredEvent;
use crate::model::{Message, Uid};
use crate::route::UserPresence;
use crate::session::{Device, DeviceFlag};

/// The encoding's version: a node refuses events of another version
/// (nodes of one cluster run one version of the crate's event format).
/// Version 2: messages carry their setting and topic. Version 3: message
/// events.
const VERSION: u8 = 3;

/// Which node said it, in which of its lives, after how many presence
/// changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Mark {
    pub(super) node: u16,
    /// Random per start: a restarted node is a new life, whose presence
    /// replaces its old life's.
    pub(super) incarnation: u64,
    /// Presence changes this life has published.
    pub(super) counter: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Event {
    /// Messages, in order, each for the devices of its recipients on the
    /// receiving node. (Shared with the sending node's own deliveries:
    /// encoded without a copy.)
    Deliver(Vec<(Arc<Message>, Vec<Uid>)>),
    /// A message event for the devices of its recipients on the receiving
    /// node.
    Stream(Arc<StoredEvent>, Vec<Uid>),
    /// A node is alive. `hello`: it has just (re)joined, and asks every
    /// node to say it is alive too.
    Beat { mark: Mark, hello: bool },
    /// A user's devices on `mark.node` are now `presence`; `login` is the
    /// device that logged in, if that is the change.
    Presence {
        mark: Mark,
        uid: Uid,
        presence: UserPresence,
        login: Option<Device>,
    },
    /// Close the user's connections (of one flag, or all).
    Kick {
        node: u16,
        uid: Uid,
        flag: Option<DeviceFlag>,
    },
    /// Part `part` of `parts` of every user on `mark.node`, as of
    /// `mark.counter`: the answer to a snapshot request.
    Snapshot {
        mark: Mark,
        part: u32,
        parts: u32,
        users: Vec<(Uid, UserPresence)>,
    },
}

impl Event {
    pub(super) fn encode(&self) -> Result<bytes::Bytes> {
        let mut buffer = Vec::with_capacity(self.size_hint());
        buffer.push(VERSION);
        postcard::to_extend(self, buffer)
            .map(Into::into)
            .map_err(|e| Error::corrupt(format!("encoding a node event: {e}")))
    }

    /// About the encoded size, so that encoding a batch of messages does
    /// not grow its buffer step by step.
    fn size_hint(&self) -> usize {
        const FIELDS: usize = 160;
        match self {
            Event::Deliver(batch) => batch
                .iter()
                .map(|(m, to)| FIELDS + m.payload.len() + to.len() * 24)
                .sum::<usize>()
                .saturating_add(8),
            Event::Stream(e, to) => FIELDS + e.event.payload.len() + to.len() * 24,
            _ => FIELDS,
        }
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Event> {
        match bytes.split_first() {
            Some((&VERSION, rest)) => postcard::from_bytes(rest)
                .map_err(|e| Error::corrupt(format!("a node event that does not decode: {e}"))),
            Some((v, _)) => Err(Error::corrupt(format!(
                "a node event of format {v}; this node reads {VERSION}"
            ))),
            None => Err(Error::corrupt("an empty node event")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Channel, ClientMsgNo, Flags, MessageId};
    use crate::DeviceId;

    #[test]
    fn events_read_back_as_written() {
        let uid = Uid::new("alice").unwrap();
        let mark = Mark {
            node: 3,
            incarnation: 9,
            counter: 2,
        };
        let events = [
            Event::Deliver(vec![(
                Arc::new(Message {
                    message_id: MessageId(7),
                    message_seq: 4,
                    client_msg_no: ClientMsgNo::new("c").unwrap(),
                    from_uid: uid.clone(),
                    channel: Channel::group("g").unwrap(),
                    timestamp_ms: 1,
                    flags: Flags::normal(),
                    setting: Default::default(),
                    topic: None,
                    payload: "hi".into(),
                }),
                vec![uid.clone()],
            )]),
            Event::Beat { mark, hello: true },
            Event::Presence {
                mark,
                uid: uid.clone(),
                presence: UserPresence {
                    devices: 2,
                    masters: 1,
                },
                login: Some(Device::master(
                    uid.clone(),
                    DeviceId::new("d").unwrap(),
                    DeviceFlag::Web,
                )),
            },
            Event::Kick {
                node: 1,
                uid: uid.clone(),
                flag: None,
            },
        ];
        for event in events {
            let bytes = event.encode().unwrap();
            assert_eq!(Event::decode(&bytes).unwrap(), event);
        }
    }

    #[test]
    fn garbage_and_other_versions_are_typed_errors() {
        assert!(Event::decode(&[]).is_err());
        assert!(Event::decode(&[VERSION + 1, 0, 0]).is_err());
        assert!(Event::decode(&[VERSION - 1, 0, 0]).is_err());
        assert!(Event::decode(&[VERSION, 0xff, 0xff, 0xff]).is_err());
    }
}
