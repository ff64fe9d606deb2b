//! The session cipher: both sides of the key exchange agree, bad keys and
//! salts are refused, known answers from the JavaScript client's crypto,
//! bad ciphertext refused, and property tests that never panic.

#[path = "common/codec.rs"]
mod codec;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use codec::{kat_secret, KAT_SALT};
use imcore::wire::{KeyExchange, RecvPacket, SessionCipher, Setting, WireError};
use imcore::Flags;
use proptest::prelude::*;

#[test]
fn key_exchange_sides_agree() {
    let (server, client) = (KeyExchange::new(), KeyExchange::new());
    let (server_pub, client_pub) = (server.public_base64(), client.public_base64());
    assert_ne!(server_pub, client_pub);
    assert_eq!(BASE64.decode(&server_pub).unwrap().len(), 32);
    let salt = imcore::wire::new_salt();
    assert_eq!(salt.len(), imcore::wire::SALT_LEN);
    assert!(salt.bytes().all(|b| b.is_ascii_alphanumeric()));

    let on_server = server.agree(&client_pub, &salt).unwrap();
    let on_client = client.agree(&server_pub, &salt).unwrap();
    let sealed = on_client.encrypt("你好".as_bytes());
    assert_eq!(
        on_server.decrypt(sealed.as_bytes()).unwrap(),
        "你好".as_bytes()
    );
    assert_eq!(on_server.encrypt(b"x"), on_client.encrypt(b"x"));
    assert_eq!(on_server.msg_key("v"), on_client.msg_key("v"));

    // A third party with its own key gets a different session.
    let other = KeyExchange::new()
        .agree(&KeyExchange::new().public_base64(), &salt)
        .unwrap();
    assert_ne!(other.encrypt(b"x"), on_client.encrypt(b"x"));
}

#[test]
fn agree_refuses_bad_keys() {
    let salt = "0123456789abcdef";
    let cases = [
        "not base64!!".to_string(),
        "@@@@".to_string(),
        String::new(),
        BASE64.encode([7u8; 31]),
        BASE64.encode([7u8; 33]),
        BASE64.encode([0u8; 32]), // the all-zero (low-order) point
        BASE64.encode({
            // u = 1, another low-order point
            let mut k = [0u8; 32];
            k[0] = 1;
            k
        }),
    ];
    for key in cases {
        let r = KeyExchange::new().agree(&key, salt);
        assert!(matches!(r, Err(WireError::Key(_))), "{key:?}: {r:?}");
    }
    // A good key with a short salt is refused too.
    let good = KeyExchange::new().public_base64();
    let r = KeyExchange::new().agree(&good, "short");
    assert!(matches!(r, Err(WireError::Key(_))), "{r:?}");
}

#[test]
fn derive_needs_a_16_byte_salt() {
    for salt in ["", "a", "0123456789abcde"] {
        let r = SessionCipher::derive(&kat_secret(), salt);
        assert!(matches!(r, Err(WireError::Key(_))), "{salt:?}: {r:?}");
    }
    // 16 is enough, and only the first 16 count.
    let a = SessionCipher::derive(&kat_secret(), "0123456789abcdef").unwrap();
    let b = SessionCipher::derive(&kat_secret(), "0123456789abcdefXYZ").unwrap();
    let c = SessionCipher::derive(&kat_secret(), "0123456789abcdeX").unwrap();
    assert_eq!(a.encrypt(b"m"), b.encrypt(b"m"));
    assert_ne!(a.encrypt(b"m"), c.encrypt(b"m"));
}

/// Reference values computed independently with node 20 and crypto-js
/// 4.2.0 (installed outside the repository), as the SDK's SecurityManager
/// and ConnectManager do it:
///
/// ```js
/// const secret = Buffer.from(Array.from({length: 32}, (_, i) => i + 1));
/// const aesKey = CryptoJS.MD5(secret.toString('base64')).toString().substring(0, 16);
/// const aesIV = 'abcdefghijklmnop';
/// const enc = m => CryptoJS.AES.encrypt(CryptoJS.enc.Utf8.parse(m),
///     CryptoJS.enc.Utf8.parse(aesKey), { keySize: 128 / 8,
///     iv: CryptoJS.enc.Utf8.parse(aesIV), mode: CryptoJS.mode.CBC,
///     padding: CryptoJS.pad.Pkcs7 }).toString();
/// enc('{"type":1,"content":"你好, wukong"}');
/// enc('');
/// // RECV msg key: md5(enc(messageID + messageSeq + clientMsgNo +
/// //   timestamp + fromUID + channelID + channelType + payload))
/// ```
///
/// aesKey came out as "290e6d8d49d83a7f".
#[test]
fn session_cipher_known_answer() {
    let cipher = SessionCipher::derive(&kat_secret(), KAT_SALT).unwrap();
    let plain = r#"{"type":1,"content":"你好, wukong"}"#;
    let sealed = "h2Y/AerblPXNxC5nyKIF9O97XMzTltiwCLH/G9vtu5WWX8pLRQ7r+ia+s6QXQv9/";
    assert_eq!(cipher.encrypt(plain.as_bytes()), sealed);
    assert_eq!(cipher.decrypt(sealed.as_bytes()).unwrap(), plain.as_bytes());
    assert_eq!(cipher.encrypt(b""), "saFYMuV4nqO9Mb6VmswpPA==");
    assert_eq!(cipher.decrypt(b"saFYMuV4nqO9Mb6VmswpPA==").unwrap(), b"");

    let recv = RecvPacket {
        flags: Flags::normal(),
        setting: Setting(0),
        msg_key: String::new(),
        from_uid: "u1".into(),
        channel_id: "u1".into(),
        channel_type: 1,
        expire: 0,
        client_msg_no: "cmn-2".into(),
        stream: None,
        message_id: 1_234_567_890_123,
        message_seq: 9,
        timestamp: 1_700_000_000,
        topic: None,
        payload: Bytes::from_static(sealed.as_bytes()),
    };
    assert_eq!(
        cipher.recv_msg_key(&recv).unwrap(),
        "66c2a16c3905d013371e03500b74d63e"
    );

    // Another salt or secret gives another ciphertext.
    let other_iv = SessionCipher::derive(&kat_secret(), "ABCDEFGHIJKLMNOP").unwrap();
    assert_ne!(other_iv.encrypt(plain.as_bytes()), sealed);
    let other_key = SessionCipher::derive(&[0u8; 32], KAT_SALT).unwrap();
    assert_ne!(other_key.encrypt(plain.as_bytes()), sealed);
}

#[test]
fn decrypt_refuses_bad_ciphertext() {
    let cipher = SessionCipher::derive(&kat_secret(), KAT_SALT).unwrap();
    let bad: [&[u8]; 6] = [
        b"not base64!",
        b"saFYMuV4nqO9Mb6VmswpPA=", // bad padding
        b"\xFF\xFE",
        &[b'A'; 22], // base64 without padding
        b"AAAA",     // 3 bytes: not a whole block
        b"h2Y/AerblPXNxC5nyKIF9O97XMzTltiwCLH/G9vtu5WWX8pLRQ7r+ia+s6QXQv9/AAAA", // 51 bytes
    ];
    for sealed in bad {
        let r = cipher.decrypt(sealed);
        assert!(matches!(r, Err(WireError::Cipher(_))), "{sealed:?}: {r:?}");
    }
    // The right length but the wrong key: the padding doesn't check out
    // (for this input; a random key could produce valid padding by chance).
    let other = SessionCipher::derive(&[9u8; 32], KAT_SALT).unwrap();
    let r = other.decrypt(b"saFYMuV4nqO9Mb6VmswpPA==");
    assert!(matches!(r, Err(WireError::Cipher(_))), "{r:?}");
}

#[test]
fn decrypt_of_empty_ciphertext_is_an_error() {
    // PKCS#7 always adds at least one block, so no ciphertext is empty.
    let cipher = SessionCipher::derive(&kat_secret(), KAT_SALT).unwrap();
    let r = cipher.decrypt(b"");
    assert!(matches!(r, Err(WireError::Cipher(_))), "{r:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cipher_round_trip(
        secret in prop::collection::vec(any::<u8>(), 0..64),
        salt in "[A-Za-z0-9]{16,24}",
        plain in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let cipher = SessionCipher::derive(&secret, &salt).unwrap();
        let sealed = cipher.encrypt(&plain);
        let raw = BASE64.decode(&sealed).expect("base64 text");
        prop_assert_eq!(raw.len(), (plain.len() / 16 + 1) * 16, "PKCS#7 length");
        prop_assert_eq!(cipher.decrypt(sealed.as_bytes()).unwrap(), plain);
    }

    #[test]
    fn decrypt_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        let cipher = SessionCipher::derive(&kat_secret(), KAT_SALT).unwrap();
        match cipher.decrypt(&bytes) {
            Ok(plain) => {
                // Only a whole number of blocks, in canonical base64, can.
                let raw = BASE64.decode(&bytes).unwrap();
                prop_assert!(!raw.is_empty() && raw.len() % 16 == 0);
                prop_assert!(plain.len() < raw.len());
            }
            Err(e) => prop_assert!(matches!(e, WireError::Cipher(_)), "{:?}", e),
        }
    }

    #[test]
    fn decrypt_base64_of_wrong_length_is_cipher_error(
        raw in prop::collection::vec(any::<u8>(), 0..100)
            .prop_filter("not whole blocks", |r| r.len() % 16 != 0),
    ) {
        let cipher = SessionCipher::derive(&kat_secret(), KAT_SALT).unwrap();
        let r = cipher.decrypt(BASE64.encode(&raw).as_bytes());
        prop_assert!(matches!(r, Err(WireError::Cipher(_))), "{:?}", r);
    }

    #[test]
    fn decrypt_base64_of_whole_blocks_never_panics(
        blocks in prop::collection::vec(any::<[u8; 16]>(), 1..6),
    ) {
        let cipher = SessionCipher::derive(&kat_secret(), KAT_SALT).unwrap();
        let raw: Vec<u8> = blocks.concat();
        match cipher.decrypt(BASE64.encode(&raw).as_bytes()) {
            Ok(plain) => {
                // Then re-encrypting gives the same bytes back.
                prop_assert_eq!(BASE64.decode(cipher.encrypt(&plain)).unwrap(), raw);
            }
            Err(e) => prop_assert!(matches!(e, WireError::Cipher(_)), "{:?}", e),
        }
    }

    #[test]
    fn agree_with_arbitrary_text_never_panics(key in ".{0,64}", salt in ".{0,20}") {
        match KeyExchange::new().agree(&key, &salt) {
            Ok(_) => {
                let raw = BASE64.decode(key.trim()).unwrap();
                prop_assert_eq!(raw.len(), 32);
                prop_assert!(salt.len() >= 16);
            }
            Err(e) => prop_assert!(matches!(e, WireError::Key(_)), "{:?}", e),
        }
    }
}
