//! The send and read rules both ready-made directories apply, in one place:
//! each directory gathers the facts from its own data and asks here.

use super::Permission::{self, Allowed, Denied};
use crate::model::{Channel, ChannelId, ChannelType, Uid};
use crate::reason::ReasonCode;

/// Whom `sender` writes to in a person channel: `Ok` with the peer and the
/// peer's own person channel (whose lists say who may message the peer),
/// or `Err` with the refusal for someone who is not a party (3). `None`
/// when `channel` is not a person channel.
pub(crate) fn person_peer(
    sender: &Uid,
    channel: &Channel,
) -> Option<Result<(Uid, Channel), Permission>> {
    let (a, b) = channel.person_parties()?;
    let peer = if &a == sender {
        b
    } else if &b == sender {
        a
    } else {
        return Some(Err(Denied(ReasonCode::SUBSCRIBER_NOT_EXIST)));
    };
    let own = Channel::new(ChannelId::from(peer.clone()), ChannelType::PERSON);
    Some(Ok((peer, own)))
}

/// May `reader` read a person channel (only its two parties may)? `None`
/// when `channel` is not a person channel.
pub(crate) fn person_read(reader: &Uid, channel: &Channel) -> Option<Permission> {
    let (a, b) = channel.person_parties()?;
    Some(if &a == reader || &b == reader {
        Allowed
    } else {
        Denied(ReasonCode::SUBSCRIBER_NOT_EXIST)
    })
}

/// What a channel's black- and whitelist say of one sender.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lists {
    /// The sender is blacklisted.
    pub blacklisted: bool,
    /// The whitelist has anyone at all.
    pub whitelist_in_force: bool,
    /// The sender is whitelisted.
    pub whitelisted: bool,
}

impl Lists {
    /// Blacklisted (4), or not in a whitelist that has anyone (13).
    pub(crate) fn refusal(self) -> Option<ReasonCode> {
        if self.blacklisted {
            Some(ReasonCode::IN_BLACKLIST)
        } else if self.whitelist_in_force && !self.whitelisted {
            Some(ReasonCode::NOT_IN_WHITELIST)
        } else {
            None
        }
    }
}

/// What a send to a channel that is not a person channel depends on.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GroupFacts {
    pub disbanded: bool,
    pub banned: bool,
    /// Everyone but the owner and managers is muted (WuKongIM's `send_ban`).
    pub all_muted: bool,
    pub member: bool,
    /// The owner or a manager.
    pub privileged: bool,
    /// This member alone is muted.
    pub muted: bool,
    /// A system account (may send to any channel there is).
    pub system: bool,
    pub lists: Lists,
}

/// The answer for a channel that does not exist: 5, or 23 for a channel
/// type WuKongIM does not name.
pub(crate) fn missing(kind: ChannelType) -> Permission {
    Denied(if kind.name().is_some() {
        ReasonCode::CHANNEL_NOT_EXIST
    } else {
        ReasonCode::NOT_SUPPORT_CHANNEL_TYPE
    })
}

/// May this sender send to this (existing) group-like channel?
pub(crate) fn group_send(f: GroupFacts) -> Permission {
    if f.disbanded {
        Denied(ReasonCode::DISBAND)
    } else if f.system {
        Allowed
    } else if f.banned {
        Denied(ReasonCode::BAN)
    } else if !f.member {
        Denied(ReasonCode::SUBSCRIBER_NOT_EXIST)
    } else if let Some(refusal) = f.lists.refusal() {
        Denied(refusal)
    } else if f.muted {
        Denied(ReasonCode::IN_BLACKLIST)
    } else if f.all_muted && !f.privileged {
        Denied(ReasonCode::SEND_BAN)
    } else {
        Allowed
    }
}

/// May this sender message its peer in a person channel? `peer_lists` is
/// what the peer's own lists say of the sender; `friends` whether a
/// friends-only rule (if any) lets them.
pub(crate) fn person_send(
    system: bool,
    to_self: bool,
    peer_lists: Lists,
    friends: bool,
) -> Permission {
    if system || to_self {
        return Allowed;
    }
    if let Some(refusal) = peer_lists.refusal() {
        return Denied(refusal);
    }
    if !friends {
        return Denied(ReasonCode::NOT_IN_WHITELIST);
    }
    Allowed
}

/// May a reader read a group-like channel's history? `None`: it does not
/// exist.
pub(crate) fn group_read(member: Option<bool>) -> Permission {
    match member {
        None => Denied(ReasonCode::CHANNEL_NOT_EXIST),
        Some(true) => Allowed,
        Some(false) => Denied(ReasonCode::SUBSCRIBER_NOT_EXIST),
    }
}
