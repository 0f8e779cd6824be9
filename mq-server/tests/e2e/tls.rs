//! TLS through the real server, with certificates made for each test (never committed
//! keys): it works, untrusted, expired and misnamed certificates fail clearly, TLS on one
//! side only fails clearly on both, mutual TLS requires a client certificate and maps its
//! subject to a user, and SIGHUP reloads the server's certificate without dropping
//! connections.

use std::path::{Path, PathBuf};

use mq_client::{
    Client, ClientConfig, ClientError, ClientTls, NewMessage, Subscription, TopicConfig,
};
use mq_transport::ErrorCode;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

use super::harness::{Server, http_get_over};
use super::topic;

/// A CA and the files of certificates it signed, in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
    ca: Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "mq test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        Self {
            dir: tempfile::tempdir().unwrap(),
            ca,
            ca_key,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the CA certificate; returns its path.
    fn ca_file(&self, name: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, self.ca.pem()).unwrap();
        path
    }

    /// Writes a certificate for `names` and its key as `<stem>.pem` and `<stem>.key`.
    fn issue(&self, stem: &str, names: &[&str], client: bool, expired: bool) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, stem);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (cert_path, key_path) = (
            self.path(&format!("{stem}.pem")),
            self.path(&format!("{stem}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

fn tls_server(cert: &Path, key: &Path, extra: &[&str]) -> Server {
    let args = [
        &["--storage", "memory", "--tls-cert", cert.to_str().unwrap()][..],
        &["--tls-key", key.to_str().unwrap()],
        extra,
    ]
    .concat();
    Server::start_with(&args)
}

async fn connect(server: &Server, tls: ClientTls) -> Result<Client, ClientError> {
    let config = ClientConfig {
        tls: Some(tls),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(&server.addr, config).await?;
    client.ping().await?;
    Ok(client)
}

fn trusting(ca: &Path) -> ClientTls {
    ClientTls {
        ca: Some(ca.to_path_buf()),
        ..ClientTls::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_carries_the_protocol_and_refuses_what_it_should() {
    let pki = Pki::new();
    let ca = pki.ca_file("ca.pem");
    let (cert, key) = pki.issue("server", &["localhost", "127.0.0.1"], false, false);
    let server = tls_server(&cert, &key, &[]);

    let client = connect(&server, trusting(&ca)).await.unwrap();
    let t = topic("secret");
    let mut c = client
        .subscribe(Subscription::new(t.clone()))
        .await
        .unwrap();
    client
        .producer(t)
        .send(NewMessage::new("over TLS"))
        .await
        .unwrap();
    assert_eq!(&c.recv().await.unwrap().payload()[..], b"over TLS");

    // A client that does not trust the server's CA.
    let other = Pki::new();
    let err = connect(&server, trusting(&other.ca_file("other.pem")))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");

    // A name the certificate does not carry.
    let misnamed = ClientTls {
        server_name: Some("elsewhere.example".into()),
        ..trusting(&ca)
    };
    let err = connect(&server, misnamed).await.unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err}");

    // A client speaking in clear on the TLS port is told so.
    let err = Client::connect(&server.addr).await.unwrap_err();
    assert!(err.to_string().contains("speaks TLS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_fails_clearly() {
    let pki = Pki::new();
    let ca = pki.ca_file("ca.pem");
    let (cert, key) = pki.issue("server", &["127.0.0.1"], false, true);
    let server = tls_server(&cert, &key, &[]);
    let err = connect(&server, trusting(&ca)).await.unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err}");
    assert!(err.to_string().to_lowercase().contains("expired"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_on_a_plaintext_port_fails_clearly() {
    let pki = Pki::new();
    let ca = pki.ca_file("ca.pem");
    let server = Server::start(&[]);
    let err = connect(&server, trusting(&ca)).await.unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err}");
    assert!(
        err.to_string().contains("does the server speak TLS"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let ca = pki.ca_file("ca.pem");
    let (cert, key) = pki.issue("server", &["127.0.0.1"], false, false);
    let server = tls_server(&cert, &key, &["--tls-client-ca", ca.to_str().unwrap()]);
    assert!(
        connect(&server, trusting(&ca)).await.is_err(),
        "no client certificate"
    );
    let (client_cert, client_key) = pki.issue("alice", &[], true, false);
    let with_identity = ClientTls {
        identity: Some((client_cert, client_key)),
        ..trusting(&ca)
    };
    connect(&server, with_identity).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_logs_in_as_the_user_with_its_common_name() {
    let pki = Pki::new();
    let ca = pki.ca_file("ca.pem");
    let (cert, key) = pki.issue("server", &["127.0.0.1"], false, false);
    let config = pki.path("mq.toml");
    std::fs::write(
        &config,
        r#"
[[users]]
name = "orders-app"
certificate_cn = "orders-service"
permissions = [{ topics = "orders.*", actions = ["publish", "admin"] }]
"#,
    )
    .unwrap();
    let server = tls_server(
        &cert,
        &key,
        &[
            "--tls-client-ca",
            ca.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let identity = |stem: &str| ClientTls {
        identity: Some(pki.issue(stem, &[], true, false)),
        ..trusting(&ca)
    };

    let app = connect(&server, identity("orders-service")).await.unwrap();
    let orders = topic("orders.eu");
    app.create_topic(&orders, TopicConfig::default())
        .await
        .unwrap();
    app.producer(orders)
        .send(NewMessage::new("o"))
        .await
        .unwrap();
    let refused = app
        .producer(topic("payments"))
        .send(NewMessage::new("p"))
        .await
        .unwrap_err();
    let ClientError::Server { code, message } = &refused else {
        panic!("{refused}")
    };
    assert_eq!(*code, ErrorCode::PermissionDenied, "{message}");
    assert!(message.contains("user \"orders-app\""), "{message}");

    let stranger = connect(&server, identity("stranger")).await.unwrap_err();
    let ClientError::Server { code, message } = &stranger else {
        panic!("{stranger}")
    };
    assert_eq!(*code, ErrorCode::Unauthorized, "{message}");
    assert!(message.contains("\"stranger\""), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_keeps_connections() {
    let first = Pki::new();
    let first_ca = first.ca_file("ca.pem");
    let (cert, key) = first.issue("server", &["127.0.0.1"], false, false);
    let server = tls_server(&cert, &key, &[]);
    let old = connect(&server, trusting(&first_ca)).await.unwrap();

    let second = Pki::new();
    let second_ca = second.ca_file("ca.pem");
    let (new_cert, new_key) = second.issue("server", &["127.0.0.1"], false, false);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The reload is done when a client trusting only the new CA gets in.
    let reloaded = async {
        loop {
            if connect(&server, trusting(&second_ca)).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), reloaded)
        .await
        .expect("the new certificate is served after SIGHUP");
    old.ping().await.expect("an established connection goes on");
    assert!(connect(&server, trusting(&first_ca)).await.is_err());
}

#[test]
fn the_http_endpoint_serves_tls_with_the_same_certificate() {
    let pki = Pki::new();
    let ca = pki.ca_file("ca.pem");
    let (cert, key) = pki.issue("server", &["localhost"], false, false);
    let server = tls_server(&cert, &key, &["--http", "127.0.0.1:0"]);
    let http = server.http.clone().unwrap();

    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&ca).unwrap();
    for der in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(der.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(&http).unwrap();
    let reply = http_get_over(rustls::StreamOwned::new(conn, tcp), "/healthz", None);
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));

    // Plain HTTP on the TLS port gets no HTTP answer.
    let stream = std::net::TcpStream::connect(&http).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut stream = stream;
    std::io::Write::write_all(&mut stream, b"GET /healthz HTTP/1.1\r\nHost: mq\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut got);
    assert!(
        !got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}
