//! TLS for the wss and TLS-over-TCP listeners: a certificate chain and key
//! from PEM files (rustls with ring; no OpenSSL), and the self-signed
//! certificate the `self-signed-cert` tool writes for trying them.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The acceptor for `cert` (a PEM chain, the server's own certificate
/// first) and `key` (a PEM private key: PKCS#8, PKCS#1 or SEC1). Every
/// failure says which file and why.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {}: no CERTIFICATE in the file",
            cert.display()
        ));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!(
                "TLS certificate {} and key {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    // The HTTP listener speaks HTTP/1.1 only (WebSocket upgrades).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Writes a self-signed certificate for `names` (DNS names or IP
/// addresses) to `cert` and its private key to `key`, both PEM.
pub fn write_self_signed(cert: &Path, key: &Path, names: Vec<String>) -> Result<(), String> {
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    std::fs::write(cert, made.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    std::fs::write(key, made.signing_key.serialize_pem())
        .map_err(|e| format!("{}: {e}", key.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    /// A certificate for 127.0.0.1 in a fresh directory.
    fn files() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        write_self_signed(&cert, &key, vec!["127.0.0.1".into()]).unwrap();
        (dir, cert, key)
    }

    #[tokio::test]
    async fn a_client_that_trusts_the_certificate_completes_a_handshake() {
        let (_dir, cert, key) = files();
        let acceptor = acceptor(&cert, &key).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(&buf).await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&cert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = "127.0.0.1".try_into().unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        tls.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
        server.await.unwrap();
    }

    #[test]
    fn missing_or_wrong_files_are_errors_that_name_the_file() {
        let (dir, cert, key) = files();
        let missing = dir.path().join("missing.pem");
        let e = acceptor(&missing, &key).err().unwrap();
        assert!(e.contains("missing.pem"), "{e}");
        // The key where the certificate should be, and the other way round.
        let e = acceptor(&key, &key).err().unwrap();
        assert!(e.contains("no CERTIFICATE"), "{e}");
        let e = acceptor(&cert, &cert).err().unwrap();
        assert!(e.contains("TLS key"), "{e}");
    }
}
