//! The session cipher, as the WuKongIM clients do it.
//!
//! CONNECT carries the client's Curve25519 public key; CONNACK answers with
//! the server's and a salt. Both sides compute the X25519 shared secret and
//! derive:
//!
//! - the AES-128 key: the first 16 characters of the lowercase hex MD5 of
//!   the base64 of the shared secret;
//! - the IV: the first 16 characters of the salt.
//!
//! Payloads travel as the base64 text of their AES-128-CBC (PKCS#7)
//! ciphertext, all with the same IV. A packet's message key is the hex MD5
//! of the base64 ciphertext of its verification string, and proves the
//! sender holds the session key.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use md5::{Digest, Md5};
use rand_core::{OsRng, RngCore};
use x25519_dalek::{EphemeralSecret, PublicKey};

use crate::wire::packet::{RecvPacket, SendPacket};
use crate::wire::WireError;

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;
type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

/// Length of the salt a server makes, and of the IV taken from it.
pub const SALT_LEN: usize = 16;

/// One side's half of the key exchange: a fresh Curve25519 key pair, used
/// once.
///
/// ```
/// use imcore::wire::KeyExchange;
///
/// let (server, client) = (KeyExchange::new(), KeyExchange::new());
/// let (server_pub, client_pub) = (server.public_base64(), client.public_base64());
/// let salt = imcore::wire::new_salt();
/// let on_server = server.agree(&client_pub, &salt)?;
/// let on_client = client.agree(&server_pub, &salt)?;
///
/// let sealed = on_client.encrypt(b"{\"type\":1,\"content\":\"hi\"}");
/// assert_eq!(on_server.decrypt(sealed.as_bytes())?, b"{\"type\":1,\"content\":\"hi\"}");
/// # Ok::<(), imcore::wire::WireError>(())
/// ```
pub struct KeyExchange {
    secret: EphemeralSecret,
    public: PublicKey,
}

impl std::fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyExchange")
            .field("public", &self.public_base64())
            .finish_non_exhaustive()
    }
}

impl Default for KeyExchange {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyExchange {
    /// A fresh key pair from the operating system's random source.
    pub fn new() -> Self {
        let secret = EphemeralSecret::random_from_rng(OsRng);
        let public = PublicKey::from(&secret);
        KeyExchange { secret, public }
    }

    /// The public key, base64, as CONNECT and CONNACK carry it.
    pub fn public_base64(&self) -> String {
        BASE64.encode(self.public.as_bytes())
    }

    /// Completes the exchange with the peer's base64 public key and the
    /// session's salt. A key that is not 32 bytes of base64, or one that
    /// gives a non-contributory (all-zero) secret, is refused.
    pub fn agree(self, peer_base64: &str, salt: &str) -> Result<SessionCipher, WireError> {
        let raw = BASE64
            .decode(peer_base64.trim())
            .map_err(|_| WireError::Key("the peer's key is not base64"))?;
        let peer: [u8; 32] = raw
            .try_into()
            .map_err(|_| WireError::Key("the peer's key is not 32 bytes"))?;
        let shared = self.secret.diffie_hellman(&PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(WireError::Key("the peer's key is a low-order point"));
        }
        SessionCipher::derive(shared.as_bytes(), salt)
    }
}

/// A fresh salt: 16 random alphanumeric characters.
pub fn new_salt() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut raw);
    raw.iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// The lowercase hex MD5 of `data`.
fn md5_hex(data: &[u8]) -> String {
    format!("{:x}", Md5::digest(data))
}

/// A session's AES key and IV.
#[derive(Clone)]
pub struct SessionCipher {
    key: [u8; 16],
    iv: [u8; 16],
}

impl std::fmt::Debug for SessionCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCipher { .. }")
    }
}

impl SessionCipher {
    /// The cipher for a shared secret and salt, derived as the clients do.
    /// The salt must be at least 16 bytes; its first 16 are the IV.
    pub fn derive(shared_secret: &[u8], salt: &str) -> Result<Self, WireError> {
        let iv: [u8; 16] = salt
            .as_bytes()
            .get(..SALT_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(WireError::Key("the salt is shorter than 16 bytes"))?;
        let hex = md5_hex(BASE64.encode(shared_secret).as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&hex.as_bytes()[..16]);
        Ok(SessionCipher { key, iv })
    }

    /// Encrypts `plain` and returns the base64 text of the ciphertext, the
    /// form payloads travel in.
    pub fn encrypt(&self, plain: &[u8]) -> String {
        let sealed = Aes128CbcEnc::new(&self.key.into(), &self.iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(plain);
        BASE64.encode(sealed)
    }

    /// Decrypts the base64 text of a ciphertext.
    pub fn decrypt(&self, sealed_base64: &[u8]) -> Result<Vec<u8>, WireError> {
        let sealed = BASE64
            .decode(sealed_base64)
            .map_err(|_| WireError::Cipher("the payload is not base64"))?;
        Aes128CbcDec::new(&self.key.into(), &self.iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(&sealed)
            .map_err(|_| WireError::Cipher("the payload does not decrypt"))
    }

    /// The message key of a verification string: the hex MD5 of its base64
    /// ciphertext.
    pub fn msg_key(&self, verification: &str) -> String {
        md5_hex(self.encrypt(verification.as_bytes()).as_bytes())
    }

    /// The message key a SEND must carry: over its client seq, client msg
    /// no, channel id, channel type and (encrypted) payload.
    pub fn send_msg_key(&self, send: &SendPacket) -> Result<String, WireError> {
        Ok(self.msg_key(&format!(
            "{}{}{}{}{}",
            send.client_seq,
            send.client_msg_no,
            send.channel_id,
            send.channel_type,
            payload_text(&send.payload)?
        )))
    }

    /// The message key a RECV must carry: over its message id, seq, client
    /// msg no, timestamp, sender, channel id, channel type and (encrypted)
    /// payload.
    pub fn recv_msg_key(&self, recv: &RecvPacket) -> Result<String, WireError> {
        Ok(self.msg_key(&format!(
            "{}{}{}{}{}{}{}{}",
            recv.message_id,
            recv.message_seq,
            recv.client_msg_no,
            recv.timestamp as u32,
            recv.from_uid,
            recv.channel_id,
            recv.channel_type,
            payload_text(&recv.payload)?
        )))
    }
}

/// An encrypted payload is base64 text; the clients hash it as a string.
fn payload_text(payload: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(payload).map_err(|_| WireError::Cipher("the payload is not text"))
}
