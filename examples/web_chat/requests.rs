//! Each frame from the page as calls on the crate: [`Hub`] for sends,
//! history, conversations and revocations, the
//! [`StoredDirectory`](imcore::StoredDirectory) for groups and members.
//! Every refusal is the crate's typed error, turned into an error frame
//! by [`refusal`]; only names are checked here first (the page's rule is
//! stricter than the crate's: see [`check_name`]).

use imcore::directory::ChannelInfo;
use imcore::session::ConnectionId;
use imcore::store::Page;
use imcore::{
    Channel, ClientMsgNo, Device, DeviceFlag, DeviceId, Directory, Error, MessageId, RevokeRequest,
    SendRequest, Uid,
};

use crate::protocol::{
    error, refusal, text_payload, ClientFrame, ConversationFrame, MessageView, ServerFrame,
};
use crate::transport::{ws_sink, Inbox};
use crate::App;

/// The most messages a history page holds.
const MAX_HISTORY_PAGE: usize = 50;
/// The most conversations listed at login.
const MAX_CONVERSATIONS: usize = 200;

/// What one socket knows: the shared app and, once logged in, who it is.
pub struct Session {
    app: App,
    me: Option<(Uid, ConnectionId)>,
}

/// The answer to a frame: frames for the page, and the inbox of a login.
type Answer = (Vec<ServerFrame>, Option<(Uid, ConnectionId, Inbox)>);

/// Why a name is refused, if it is: user and group names are 1 to 32 of
/// `A-Z a-z 0-9 _ -`. The crate's own rule is wider (any text but `@`,
/// `#`, `&` and control characters, up to 64 bytes); a page keeps to
/// what it can show and type.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || name.len() > 32 {
        return Err(format!("a {what} is 1 to 32 characters long"));
    }
    if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "{c:?} is not allowed in a {what}: use A-Z, a-z, 0-9, _ and -"
        ));
    }
    Ok(())
}

impl Session {
    /// A session not logged in yet.
    pub fn new(app: App) -> Self {
        Session { app, me: None }
    }

    /// Answers one frame from the page.
    pub async fn handle(&mut self, frame: ClientFrame) -> Answer {
        let kind = frame.kind();
        let channel = frame.channel().map(str::to_owned);
        if let ClientFrame::Login { name, device } = frame {
            return self.login(name, device).await;
        }
        let Some((uid, connection)) = self.me.clone() else {
            return (
                vec![error("not_logged_in", "log in first", Some(kind))],
                None,
            );
        };
        let result = match frame {
            ClientFrame::Login { .. } => Ok(Vec::new()),
            ClientFrame::Join { group } => self.join(&uid, &group).await,
            ClientFrame::Send {
                channel,
                text,
                client_msg_no,
            } => {
                self.send(&uid, connection, &channel, &text, &client_msg_no)
                    .await
            }
            ClientFrame::History {
                channel,
                before,
                limit,
            } => self.history(&uid, &channel, before, limit).await,
            ClientFrame::Read { channel, seq } => self.read(&uid, &channel, seq).await,
            ClientFrame::Revoke { message_id } => self.revoke(&uid, &message_id).await,
        };
        let frames = match result {
            Ok(frames) => frames,
            Err(Refused::Crate(e)) => vec![refusal(&e, kind, channel.as_deref())],
            Err(Refused::Page(code, message)) => vec![ServerFrame::Error {
                code,
                message,
                request: Some(kind),
                channel,
            }],
        };
        (frames, None)
    }

    /// Registers this socket as a master web device of `name`, and lists
    /// the user's groups.
    ///
    /// There is no credential: anyone may be anyone, as suits a demo. A
    /// host that checks one takes [`Hub::login_ticket`](imcore::Hub::login_ticket)
    /// before the check and registers with
    /// [`Hub::connect_checked`](imcore::Hub::connect_checked) after it, so
    /// that a logout between the two is not lost.
    async fn login(&mut self, name: String, device: Option<String>) -> Answer {
        let refused = |code, message: String| (vec![error(code, message, Some("login"))], None);
        if self.me.is_some() {
            return refused("already_logged_in", "this tab is logged in".into());
        }
        if let Err(why) = check_name("name", &name) {
            return refused("bad_name", why);
        }
        let device_id = device.unwrap_or_else(|| format!("web-{name}"));
        let (uid, device_id) = match (Uid::new(&name), DeviceId::new(&device_id)) {
            (Ok(uid), Ok(device_id)) => (uid, device_id),
            (Err(e), _) | (_, Err(e)) => return refused("bad_name", e.to_string()),
        };
        let hub = &self.app.hub;
        // Commands queued while the user was away (revocations) are in
        // history's revocation marks already: consumed, not replayed.
        if let Err(e) = consume_commands(hub, &uid).await {
            return (vec![refusal(&e, "login", None)], None);
        }
        let conversations = match self.conversations(&uid).await {
            Ok(c) => c,
            Err(e) => return (vec![refusal(&e, "login", None)], None),
        };
        let (sink, inbox) = ws_sink();
        // A master web device: another tab logged in as the same user
        // with another device id kicks this one (`closed: kicked`).
        let device = Device::master(uid.clone(), device_id, DeviceFlag::Web);
        let connection = hub.connect(device, sink);
        self.me = Some((uid.clone(), connection));
        let welcome = ServerFrame::Welcome {
            name,
            revoke_window_secs: self.app.revoke_window.as_secs(),
            max_payload: hub.config().limits.max_payload,
            conversations,
        };
        (vec![welcome], Some((uid, connection, inbox)))
    }

    /// The user's groups (from the directory) with their unread counts
    /// (from the hub's conversations).
    async fn conversations(&self, uid: &Uid) -> imcore::Result<Vec<ConversationFrame>> {
        let groups = self.app.directory.channels_of(uid).await?;
        let views = self
            .app
            .hub
            .sync_conversations(uid, 0, MAX_CONVERSATIONS)
            .await?;
        let mut list: Vec<ConversationFrame> = groups
            .iter()
            .map(|group| {
                let view = views.iter().find(|v| &v.channel == group);
                ConversationFrame {
                    channel: group.id.as_str().to_owned(),
                    unread: view.map_or(0, |v| v.conversation.unread),
                    last_seq: view.map_or(0, |v| v.conversation.last_seq),
                }
            })
            .collect();
        list.sort_by(|a, b| a.channel.cmp(&b.channel));
        Ok(list)
    }

    /// Joins `group`, creating it (with the user as its owner) if new.
    async fn join(&self, uid: &Uid, group: &str) -> Result<Vec<ServerFrame>, Refused> {
        check_name("group name", group).map_err(|m| Refused::Page("bad_name", m))?;
        let channel = Channel::group(group)?;
        let directory = &self.app.directory;
        let me = std::slice::from_ref(uid);
        match directory.channel_info(&channel).await? {
            Some(_) => directory.add_subscribers(&channel, me).await?,
            None => {
                directory
                    .create_channel(&channel, ChannelInfo::default(), me)
                    .await?
            }
        }
        let conversation = self.app.hub.conversation(uid, &channel).await?;
        Ok(vec![ServerFrame::Joined {
            conversation: ConversationFrame {
                channel: group.to_owned(),
                unread: conversation.as_ref().map_or(0, |c| c.unread),
                last_seq: conversation.as_ref().map_or(0, |c| c.last_seq),
            },
        }])
    }

    /// Sends `text` to `group` from this device: the hub checks the
    /// membership and the payload's size; its ack is echoed to this tab
    /// as the stored message (the hub does not deliver a device its own
    /// send).
    async fn send(
        &self,
        uid: &Uid,
        connection: ConnectionId,
        group: &str,
        text: &str,
        client_msg_no: &str,
    ) -> Result<Vec<ServerFrame>, Refused> {
        let channel = Channel::group(group)?;
        let request = SendRequest::new(uid.clone(), channel.clone(), text_payload(text))
            .client_msg_no(ClientMsgNo::new(client_msg_no)?)
            .from_connection(connection);
        let ack = self.app.hub.send(request).await?;
        let stored = self
            .app
            .hub
            .sync_channel(uid, &channel, Page::forward(ack.message_seq, 1))
            .await?;
        let message = stored
            .first()
            .filter(|m| m.message_id == ack.message_id)
            .ok_or_else(|| Error::not_found(format!("message {}", ack.message_id)))?;
        Ok(vec![ServerFrame::Sent {
            message: MessageView::history(message),
            duplicate: ack.duplicate,
        }])
    }

    /// A page of `group`'s history older than `before`, oldest first.
    async fn history(
        &self,
        uid: &Uid,
        group: &str,
        before: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<ServerFrame>, Refused> {
        let channel = Channel::group(group)?;
        let limit = limit.unwrap_or(20).clamp(1, MAX_HISTORY_PAGE);
        let from = match before {
            Some(0 | 1) => None,
            Some(seq) => Some(seq - 1),
            None => Some(u64::MAX),
        };
        let mut messages = match from {
            // The hub checks that the user may read the group either way.
            Some(from) => {
                self.app
                    .hub
                    .sync_channel(uid, &channel, Page::backward(from, limit))
                    .await?
            }
            None => Vec::new(),
        };
        messages.reverse();
        let more = messages.first().is_some_and(|m| m.message_seq > 1);
        Ok(vec![ServerFrame::History {
            channel: group.to_owned(),
            messages: messages.iter().map(MessageView::history).collect(),
            more,
        }])
    }

    /// The user has read `group` up to `seq`: the unread count left.
    async fn read(&self, uid: &Uid, group: &str, seq: u64) -> Result<Vec<ServerFrame>, Refused> {
        let channel = Channel::group(group)?;
        let hub = &self.app.hub;
        hub.clear_unread(uid, &channel, seq).await?;
        let unread = hub
            .conversation(uid, &channel)
            .await?
            .map_or(0, |c| c.unread);
        Ok(vec![ServerFrame::Unread {
            channel: group.to_owned(),
            unread,
        }])
    }

    /// Revokes a message: the hub checks who may, and the window, then
    /// tells every member's devices (each socket turns that into a
    /// `revoked` frame), this one included.
    async fn revoke(&self, uid: &Uid, message_id: &str) -> Result<Vec<ServerFrame>, Refused> {
        let id = message_id
            .parse::<u64>()
            .map_err(|_| Refused::Page("invalid", format!("{message_id:?} is not a message id")))?;
        self.app
            .hub
            .revoke(RevokeRequest::by_id(uid.clone(), MessageId(id)))
            .await?;
        Ok(Vec::new())
    }
}

/// Consumes the user's queued commands.
async fn consume_commands(hub: &imcore::Hub, uid: &Uid) -> imcore::Result<()> {
    loop {
        let pending = hub.sync_commands(uid, 0, 500).await?;
        let Some(last) = pending.last() else {
            return Ok(());
        };
        hub.ack_commands(uid, last.cursor).await?;
    }
}

/// A refusal: the crate's, or the page protocol's own.
enum Refused {
    Crate(Error),
    Page(&'static str, String),
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        Refused::Crate(e)
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_are_short_plain_words() {
        for good in ["alice", "Bob_2", "a-b", &"x".repeat(32)] {
            assert_eq!(check_name("name", good), Ok(()), "{good}");
        }
        assert_eq!(
            check_name("name", "bad name!"),
            Err("' ' is not allowed in a name: use A-Z, a-z, 0-9, _ and -".into())
        );
        assert!(check_name("name", "al@ce").is_err());
        assert!(check_name("name", "").is_err());
        assert!(check_name("name", &"x".repeat(33)).is_err());
        assert!(check_name("group name", "é").is_err());
    }
}
