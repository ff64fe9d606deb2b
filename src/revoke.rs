//! Message revocation (recall): who may revoke what and until when, and
//! the command and tip messages that tell everyone.
//!
//! The hub does the work ([`crate::Hub::revoke`]); this module holds the
//! request, the rules and the messages.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::directory::Role;
use crate::error::Result;
use crate::model::{Channel, ClientMsgNo, Message, MessageId, Uid};
use crate::store::Revocation;

/// The `cmd` of the revocation command, as TangSengDaoDao's clients expect.
pub const REVOKE_CMD: &str = "messageRevoke";

/// The content type of a command payload (`{"type":99,…}`).
pub const CMD_CONTENT_TYPE: i64 = 99;

/// The content type of the revocation tip message.
pub const REVOKE_TIP_CONTENT_TYPE: i64 = 1006;

/// Which message to revoke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RevokeTarget {
    /// By server message id.
    MessageId(MessageId),
    /// By the sender's own number for it, in its channel (a number is
    /// unique per sender and channel).
    ClientMsgNo {
        /// Who sent it.
        from_uid: Uid,
        /// The channel, addressed as the requester addresses it.
        channel: Channel,
        /// The sender's number for it.
        client_msg_no: ClientMsgNo,
    },
    /// By its place in a channel (addressed as the requester addresses it).
    Seq {
        /// The channel.
        channel: Channel,
        /// The message's seq.
        seq: u64,
    },
}

impl std::fmt::Display for RevokeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RevokeTarget::MessageId(id) => write!(f, "message {id}"),
            RevokeTarget::ClientMsgNo {
                from_uid,
                channel,
                client_msg_no,
            } => write!(
                f,
                "message {client_msg_no} from {from_uid} in {} channel {}",
                channel.kind, channel.id
            ),
            RevokeTarget::Seq { channel, seq } => {
                write!(
                    f,
                    "message {seq} of {} channel {}",
                    channel.kind, channel.id
                )
            }
        }
    }
}

/// A request to revoke a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RevokeRequest {
    /// Who asks: authenticated by the host, never read from a payload.
    pub requester: Uid,
    /// What to revoke.
    pub target: RevokeTarget,
}

impl RevokeRequest {
    /// `requester` revokes the message `target` names.
    pub fn new(requester: Uid, target: RevokeTarget) -> Self {
        RevokeRequest { requester, target }
    }

    /// `requester` revokes the message with id `message_id`.
    pub fn by_id(requester: Uid, message_id: MessageId) -> Self {
        RevokeRequest {
            requester,
            target: RevokeTarget::MessageId(message_id),
        }
    }
}

/// What a successful revocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RevokeOutcome {
    /// Revoked now: the record is durable and every member's devices were
    /// told.
    Revoked(Revocation),
    /// It had been revoked before: the first record, unchanged; nothing was
    /// sent again.
    AlreadyRevoked(Revocation),
}

impl RevokeOutcome {
    /// The record, new or first.
    pub fn revocation(&self) -> &Revocation {
        match self {
            RevokeOutcome::Revoked(r) | RevokeOutcome::AlreadyRevoked(r) => r,
        }
    }
}

/// Why a revocation was refused (defined with the errors, which carry it).
pub use crate::error::RevokeRefusal;

/// What an [`Authorizer`] sees.
#[derive(Debug, Clone, Copy)]
pub struct RevokeContext<'a> {
    /// Who asks.
    pub requester: &'a Uid,
    /// The message, as stored.
    pub message: &'a Message,
    /// The requester's role in the message's channel (`None`: not a member).
    pub requester_role: Option<Role>,
    /// The sender's role in the channel now (`None`: no longer a member).
    pub sender_role: Option<Role>,
}

/// An [`Authorizer`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Allowed within the revocation window.
    Allow,
    /// Allowed whatever the message's age (an admin bypass).
    AllowAnyTime,
    /// Refused.
    Deny,
}

/// Decides who may revoke what. The hub asks it with the roles from the
/// [`Directory`](crate::Directory); hosts replace or wrap
/// [`DefaultRevokeRules`].
///
/// A host whose admins may revoke anything at any time:
///
/// ```
/// use async_trait::async_trait;
/// use imcore::revoke::{Authorizer, Decision, DefaultRevokeRules, RevokeContext};
///
/// #[derive(Debug)]
/// struct WithAdmins(Vec<String>);
///
/// #[async_trait]
/// impl Authorizer for WithAdmins {
///     async fn authorize(&self, ctx: &RevokeContext<'_>) -> imcore::Result<Decision> {
///         if self.0.iter().any(|a| a == ctx.requester.as_str()) {
///             return Ok(Decision::AllowAnyTime);
///         }
///         DefaultRevokeRules.authorize(ctx).await
///     }
/// }
/// ```
#[async_trait]
pub trait Authorizer: Send + Sync + Debug + 'static {
    /// May `ctx.requester` revoke `ctx.message`?
    async fn authorize(&self, ctx: &RevokeContext<'_>) -> Result<Decision>;
}

/// The default rules: the sender may revoke their own message; in a channel
/// with roles, the owner may revoke anyone's, and a manager an ordinary
/// member's (not the owner's, not another manager's); nobody else.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRevokeRules;

#[async_trait]
impl Authorizer for DefaultRevokeRules {
    async fn authorize(&self, ctx: &RevokeContext<'_>) -> Result<Decision> {
        if ctx.requester == &ctx.message.from_uid {
            return Ok(Decision::Allow);
        }
        Ok(match (ctx.requester_role, ctx.sender_role) {
            (Some(Role::Owner), _) => Decision::Allow,
            (Some(Role::Manager), Some(Role::Member) | None) => Decision::Allow,
            _ => Decision::Deny,
        })
    }
}

/// The payload of the revocation command: `{"type":99,"cmd":"messageRevoke",
/// "param":{…}}`. `message_id` is a string, as TangSengDaoDao's clients
/// read it; `channel_id` is the stored form (a person channel's `a@b`).
pub fn revoke_command_payload(r: &Revocation, client_msg_no: &ClientMsgNo) -> Vec<u8> {
    serde_json::json!({
        "type": CMD_CONTENT_TYPE,
        "cmd": REVOKE_CMD,
        "param": {
            "message_id": r.message_id.to_string(),
            "client_msg_no": client_msg_no.as_str(),
            "channel_id": r.channel.id.as_str(),
            "channel_type": r.channel.kind.as_u8(),
            "message_seq": r.message_seq,
            "revoker": r.revoker.as_str(),
            "extra_version": r.extra_version,
        }
    })
    .to_string()
    .into_bytes()
}

/// The payload of the tip message: `{"type":1006,"message_id":"…",
/// "content":"{0}撤回了一条消息","extra":[{"uid":"…","name":"…"}]}`.
pub fn revoke_tip_payload(r: &Revocation, revoker_name: &str) -> Vec<u8> {
    serde_json::json!({
        "type": REVOKE_TIP_CONTENT_TYPE,
        "message_id": r.message_id.to_string(),
        "content": "{0}撤回了一条消息",
        "extra": [{ "uid": r.revoker.as_str(), "name": revoker_name }],
    })
    .to_string()
    .into_bytes()
}
