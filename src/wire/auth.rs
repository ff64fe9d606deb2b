//! Checking who connects: the host's [`Authenticator`].

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::RwLock;

use async_trait::async_trait;
use subtle::ConstantTimeEq;

use crate::directory::StoredDirectory;
use crate::model::{DeviceId, Uid};
use crate::reason::ReasonCode;
use crate::session::{DeviceFlag, DeviceLevel};

/// What a CONNECT claims, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    /// The user.
    pub uid: Uid,
    /// The token the client presented.
    pub token: String,
    /// The device's id.
    pub device_id: DeviceId,
    /// The device kind.
    pub device_flag: DeviceFlag,
    /// The protocol version the client speaks.
    pub version: u8,
}

/// The host's check of a CONNECT's uid and token.
///
/// Return the device's level on success. A refusal is answered with a
/// CONNACK carrying the reason code ([`ReasonCode::AUTH_FAIL`] is
/// WuKongIM's for a bad token), and the connection is closed.
#[async_trait]
pub trait Authenticator: Send + Sync + Debug + 'static {
    /// Checks `info`; `Ok` with the device level, or `Err` with a reason.
    async fn authenticate(&self, info: &ConnectInfo) -> Result<DeviceLevel, ReasonCode>;
}

/// Tokens kept in memory, per user and device flag, as WuKongIM's
/// `/user/token` keeps them.
///
/// ```
/// use imcore::wire::{Authenticator, ConnectInfo, TokenTable};
/// use imcore::{DeviceFlag, DeviceId, DeviceLevel, ReasonCode, Uid};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> imcore::Result<()> {
/// let tokens = TokenTable::new();
/// tokens.set(Uid::new("alice")?, DeviceFlag::Web, "s3cret", DeviceLevel::Master);
/// let mut info = ConnectInfo {
///     uid: Uid::new("alice")?,
///     token: "s3cret".into(),
///     device_id: DeviceId::new("tab-1")?,
///     device_flag: DeviceFlag::Web,
///     version: 2,
/// };
/// assert_eq!(tokens.authenticate(&info).await, Ok(DeviceLevel::Master));
/// info.token = "guess".into();
/// assert_eq!(tokens.authenticate(&info).await, Err(ReasonCode::AUTH_FAIL));
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct TokenTable {
    tokens: RwLock<HashMap<(Uid, DeviceFlag), (String, DeviceLevel)>>,
}

impl TokenTable {
    /// An empty table: every CONNECT is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the token (and the level it logs in at) for a user's devices
    /// of one kind, replacing any earlier one.
    pub fn set(&self, uid: Uid, flag: DeviceFlag, token: impl Into<String>, level: DeviceLevel) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((uid, flag), (token.into(), level));
    }

    /// Forgets the token of a user's devices of one kind: they can no
    /// longer log in (connections already open stay; see
    /// [`Hub::kick`](crate::Hub::kick)). Returns whether there was one.
    pub fn remove(&self, uid: &Uid, flag: DeviceFlag) -> bool {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(uid.clone(), flag))
            .is_some()
    }
}

#[async_trait]
impl Authenticator for TokenTable {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<DeviceLevel, ReasonCode> {
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        match tokens.get(&(info.uid.clone(), info.device_flag)) {
            // Constant time: how long the check takes does not tell how
            // much of a guessed token was right.
            Some((token, level)) if bool::from(token.as_bytes().ct_eq(info.token.as_bytes())) => {
                Ok(*level)
            }
            _ => Err(ReasonCode::AUTH_FAIL),
        }
    }
}

/// Logins checked against the tokens a [`StoredDirectory`] keeps (one
/// store read per CONNECT, so that a token set or removed through any node
/// is in force on every node at once).
///
/// ```
/// use std::sync::Arc;
/// use imcore::wire::{Authenticator, ConnectInfo};
/// use imcore::{DeviceFlag, DeviceId, DeviceLevel, MemoryStore, ReasonCode, StoredDirectory, Uid};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> imcore::Result<()> {
/// let dir = StoredDirectory::new(Arc::new(MemoryStore::new()));
/// let alice = Uid::new("alice")?;
/// dir.set_token(&alice, DeviceFlag::Web, "s3cret", DeviceLevel::Master).await?;
/// let info = ConnectInfo {
///     uid: alice,
///     token: "s3cret".into(),
///     device_id: DeviceId::new("tab-1")?,
///     device_flag: DeviceFlag::Web,
///     version: 2,
/// };
/// assert_eq!(dir.authenticate(&info).await, Ok(DeviceLevel::Master));
/// # Ok(()) }
/// ```
#[async_trait]
impl Authenticator for StoredDirectory {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<DeviceLevel, ReasonCode> {
        match self.token(&info.uid, info.device_flag).await {
            Ok(Some(stored))
                if bool::from(stored.token.as_bytes().ct_eq(info.token.as_bytes())) =>
            {
                Ok(stored.level)
            }
            Ok(_) => Err(ReasonCode::AUTH_FAIL),
            Err(e) => {
                tracing::warn!("login of {} not checked: {e}", info.uid);
                Err(ReasonCode::SYSTEM_ERROR)
            }
        }
    }
}
