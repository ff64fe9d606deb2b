//! Message extras beyond revocation: edited content and read receipts.
//!
//! The hub does the work ([`crate::Hub::edit`], [`crate::Hub::mark_read`],
//! [`crate::Hub::sync_extras`]); this module holds the requests, the edit
//! rules and the command that tells devices to sync. An edit or a read is
//! the same kind of versioned change as a revocation: it takes the
//! channel's next `extra_version`, and a device that was offline finds it
//! by syncing extras from the last version it saw.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::directory::Role;
use crate::error::Result;
use crate::model::{Channel, Message, MessageId, Uid};
use crate::revoke::{Decision, RevokeTarget, CMD_CONTENT_TYPE};
use crate::store::{Edit, MessageExtra, Receipt, Revocation};

/// The `cmd` of the command that tells devices a channel's extras changed
/// (an edit, or reads of a message with receipts), as TangSengDaoDao's
/// clients expect: they answer it by syncing the channel's extras.
pub const SYNC_MESSAGE_EXTRA_CMD: &str = "syncMessageExtra";

/// Why an edit was refused (defined with the errors, which carry it).
pub use crate::error::EditRefusal;

/// A request to edit a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EditRequest {
    /// Who asks: authenticated by the host, never read from a payload.
    pub requester: Uid,
    /// Which message (by id, by the sender's number, or by seq).
    pub target: RevokeTarget,
    /// The new content; limited like a payload
    /// ([`Limits::max_payload`](crate::Limits)).
    pub content: Bytes,
}

impl EditRequest {
    /// `requester` replaces the content of the message `target` names.
    pub fn new(requester: Uid, target: RevokeTarget, content: impl Into<Bytes>) -> Self {
        EditRequest {
            requester,
            target,
            content: content.into(),
        }
    }
}

/// What a successful edit did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EditOutcome {
    /// Recorded with a new version; every member's online devices were
    /// told.
    Edited(MessageExtra),
    /// The message already showed this content: nothing changed, nobody
    /// was told again (a retry).
    Unchanged(MessageExtra),
}

impl EditOutcome {
    /// The message's extra after the call.
    pub fn extra(&self) -> &MessageExtra {
        match self {
            EditOutcome::Edited(x) | EditOutcome::Unchanged(x) => x,
        }
    }
}

/// What [`EditRules`] see.
#[derive(Debug, Clone, Copy)]
pub struct EditContext<'a> {
    /// Who asks.
    pub requester: &'a Uid,
    /// The message, as sent.
    pub message: &'a Message,
    /// The requester's role in the message's channel (`None`: not a member,
    /// or a person channel).
    pub requester_role: Option<Role>,
}

/// Decides who may edit what. [`Decision::Allow`] is within
/// [`HubConfig::edit_window`](crate::HubConfig::edit_window);
/// [`Decision::AllowAnyTime`] ignores it.
///
/// A host that lets a channel's owner correct anyone's message:
///
/// ```
/// use async_trait::async_trait;
/// use imcore::directory::Role;
/// use imcore::extra::{DefaultEditRules, EditContext, EditRules};
/// use imcore::revoke::Decision;
///
/// #[derive(Debug)]
/// struct OwnersToo;
///
/// #[async_trait]
/// impl EditRules for OwnersToo {
///     async fn authorize_edit(&self, ctx: &EditContext<'_>) -> imcore::Result<Decision> {
///         if ctx.requester_role == Some(Role::Owner) {
///             return Ok(Decision::Allow);
///         }
///         DefaultEditRules.authorize_edit(ctx).await
///     }
/// }
/// ```
#[async_trait]
pub trait EditRules: Send + Sync + Debug + 'static {
    /// May `ctx.requester` edit `ctx.message`?
    async fn authorize_edit(&self, ctx: &EditContext<'_>) -> Result<Decision>;
}

/// The default rule: only the sender edits, within the window.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultEditRules;

#[async_trait]
impl EditRules for DefaultEditRules {
    async fn authorize_edit(&self, ctx: &EditContext<'_>) -> Result<Decision> {
        Ok(if ctx.requester == &ctx.message.from_uid {
            Decision::Allow
        } else {
            Decision::Deny
        })
    }
}

/// What happened to one of the messages of [`crate::Hub::mark_read`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOutcome {
    /// The messages whose receipts counted this read (first reads of
    /// messages sent with receipts), with their new versions.
    pub counted: Vec<MessageExtra>,
}

/// Everything a device knows about a message besides its content, as
/// [`crate::Hub::sync_extras`] gives it to one reader: the fields
/// `wukongimjssdk`'s `MessageExtra` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExtraView {
    /// The message.
    pub message_id: MessageId,
    /// Its seq.
    pub message_seq: u64,
    /// Its revocation, if revoked.
    pub revocation: Option<Revocation>,
    /// Its latest edit, if edited (never for a revoked message's view: the
    /// revocation hides it).
    pub edit: Option<Edit>,
    /// Its receipt counts, if sent with receipts.
    pub receipt: Option<Receipt>,
    /// When this reader read it (Unix ms), if they did.
    pub read_at_ms: Option<i64>,
    /// The highest version of its changes.
    pub extra_version: u64,
}

/// The payload of the `syncMessageExtra` command:
/// `{"type":99,"cmd":"syncMessageExtra","param":{channel_id, channel_type,
/// message_id, message_seq, extra_version}}`. `channel_id` is the stored
/// form (a person channel's `a@b`), as in the revocation command.
pub fn sync_extra_command_payload(channel: &Channel, extra: &MessageExtra) -> Vec<u8> {
    serde_json::json!({
        "type": CMD_CONTENT_TYPE,
        "cmd": SYNC_MESSAGE_EXTRA_CMD,
        "param": {
            "channel_id": channel.id.as_str(),
            "channel_type": channel.kind.as_u8(),
            "message_id": extra.message_id.to_string(),
            "message_seq": extra.message_seq,
            "extra_version": extra.extra_version,
        }
    })
    .to_string()
    .into_bytes()
}
