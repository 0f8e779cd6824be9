//! TLS (rustls) around the TCP stream: the whole protocol runs inside it, nothing changes
//! in the frames. [`ServerTls`] holds the server's certificate and key (and, for mutual
//! TLS, the CA its clients' certificates must chain to), reloadable while the server runs;
//! [`ClientTls`] says what a client trusts and how it presents itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The common name (CN) in the subject of `cert`, when it has one.
pub(crate) fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// The first byte of every TLS connection (a handshake record).
pub(crate) const TLS_HANDSHAKE: u8 = 0x16;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds no certificate or no private key.
    #[error("{path} holds no {what} in PEM form")]
    Missing {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
    },
    /// rustls refused the certificates or keys.
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA cannot verify certificates.
    #[error("the client CA {path} cannot verify client certificates: {reason}")]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The name to check the server's certificate against is not a DNS name or IP.
    #[error("{0:?} is not a valid server name for TLS")]
    ServerName(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Missing {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|_| TlsError::Missing {
        path: path.to_path_buf(),
        what: "private key",
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store.add(cert)?;
    }
    Ok(store)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The files of a server's TLS setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The certificate chain, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// For mutual TLS: the CA (PEM) every client certificate must chain to.
    pub client_ca: Option<PathBuf>,
}

/// A server's TLS setup, reloadable from its files while connections go on.
#[derive(Debug)]
pub struct ServerTls {
    files: ServerTlsFiles,
    config: RwLock<Arc<rustls::ServerConfig>>,
}

impl ServerTls {
    /// Loads the certificate, key and client CA from `files`.
    ///
    /// # Errors
    /// [`TlsError`] when a file cannot be read or does not hold what it should.
    pub fn load(files: ServerTlsFiles) -> Result<Arc<Self>, TlsError> {
        let config = Self::build(&files)?;
        Ok(Arc::new(Self {
            files,
            config: RwLock::new(config),
        }))
    }

    /// Reads the files again: new connections get the new certificate, established ones
    /// keep theirs. On error the running setup stays.
    ///
    /// # Errors
    /// As [`ServerTls::load`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Self::build(&self.files)?;
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    fn build(files: &ServerTlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match &files.client_ca {
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                        .build()
                        .map_err(|e| TlsError::ClientCa {
                            path: ca.clone(),
                            reason: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config =
            builder.with_single_cert(certificates(&files.cert)?, private_key(&files.key)?)?;
        Ok(Arc::new(config))
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self.config.read().unwrap_or_else(PoisonError::into_inner);
        TlsAcceptor::from(Arc::clone(&config))
    }
}

/// What a client trusts and presents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA (PEM) the server's certificate must chain to; `None`: the public web roots.
    pub ca: Option<PathBuf>,
    /// For mutual TLS: this client's certificate chain and private key (PEM).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must carry; `None`: the host of the address.
    pub server_name: Option<String>,
}

/// A client's TLS setup, ready to connect.
#[derive(Clone)]
pub(crate) struct ClientTlsReady {
    pub(crate) connector: TlsConnector,
    pub(crate) server_name: Option<String>,
}

impl std::fmt::Debug for ClientTlsReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTlsReady")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Reads the files and builds the connector.
    pub(crate) fn ready(&self) -> Result<ClientTlsReady, TlsError> {
        let roots = match &self.ca {
            Some(ca) => roots(ca)?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match &self.identity {
            Some((cert, key)) => {
                builder.with_client_auth_cert(certificates(cert)?, private_key(key)?)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(ClientTlsReady {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: self.server_name.clone(),
        })
    }
}

/// The name to verify the server at `addr` (`host:port`) by.
pub(crate) fn server_name(
    addr: &str,
    configured: Option<&str>,
) -> Result<ServerName<'static>, TlsError> {
    let host = configured.unwrap_or_else(|| {
        addr.rsplit_once(':')
            .map_or(addr, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']')
    });
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))
}
