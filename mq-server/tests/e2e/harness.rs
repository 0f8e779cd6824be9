//! Starts the real `mq-server` binary on 127.0.0.1:0 and stops it when dropped; raw-frame
//! helpers for the bad-input tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mq_client::{Client, ClientConfig};
use mq_transport::{
    ClientMsg, DEFAULT_MAX_FRAME, Frame, PROTOCOL_VERSION, RequestId, ServerMsg, decode_frame,
    encode_frame,
};

/// A running `mq-server` process.
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) addr: String,
    /// The HTTP endpoint's address, when started with `--http`.
    pub(crate) http: Option<String>,
}

impl Server {
    /// Starts `mq-server --listen 127.0.0.1:0 --storage memory` plus `extra` flags and waits
    /// for its `listening on` line.
    pub(crate) fn start(extra: &[&str]) -> Self {
        Self::start_with(&[&["--storage", "memory"], extra].concat())
    }

    /// Starts `mq-server --listen ADDR` plus exactly `args`: a restart on the address a
    /// server that stopped had.
    pub(crate) fn start_on(addr: &str, args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mq-server"));
        command.args(["--listen", addr]).args(args);
        Self::spawn(command)
    }

    /// Starts `mq-server --listen 127.0.0.1:0` plus exactly `args`.
    pub(crate) fn start_with(args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mq-server"));
        command.args(["--listen", "127.0.0.1:0"]).args(args);
        Self::spawn(command)
    }

    /// Starts the server like [`Server::start_with`], with no file it writes allowed past
    /// `bytes` (`ulimit -f`), SIGXFSZ ignored: writes past it come up short, then fail
    /// with EFBIG, as on a full disk.
    pub(crate) fn start_with_file_limit(bytes: u64, args: &[&str]) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "trap '' XFSZ; ulimit -f {}; exec \"$0\" \"$@\"",
                bytes / 512
            ))
            .arg(env!("CARGO_BIN_EXE_mq-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args);
        Self::spawn(command)
    }

    /// Starts `mq-server --listen 127.0.0.1:0` plus `args`, with environment variables
    /// `env` set.
    pub(crate) fn start_with_env(env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mq-server"));
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied());
        Self::spawn(command)
    }

    /// Starts `program args` (a wrapper that execs `mq-server`).
    pub(crate) fn start_command(program: &str, args: &[&str]) -> Self {
        let mut command = Command::new(program);
        command.args(args);
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Self {
        let http = command
            .get_args()
            .zip(command.get_args().skip(1))
            .any(|(flag, value)| flag == "--http" && value != "off");
        // No HTTP endpoint unless the test asks for one (`--http 127.0.0.1:0`): parallel
        // servers never fight over its default port.
        let mut child = command
            .env("RUST_LOG", "warn")
            .env("MQ_HTTP", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mq-server starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        reader
            .read_line(&mut line)
            .expect("mq-server prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let http = http.then(|| {
            line.clear();
            reader
                .read_line(&mut line)
                .expect("mq-server prints its HTTP address");
            line.trim()
                .strip_prefix("http on ")
                .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
                .to_owned()
        });
        Self {
            child: Some(child),
            addr,
            http,
        }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Resident memory of the server process, in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("proc status readable");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS present")
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub(crate) fn crash(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL delivered");
        child.wait().expect("reaped");
    }

    /// Sends SIGTERM and waits for the exit.
    pub(crate) fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        child.wait().expect("mq-server exits")
    }

    /// A client connected to this server (reconnecting, as by default).
    pub(crate) async fn client(&self) -> Client {
        Client::connect(&self.addr).await.expect("client connects")
    }

    /// A client that does not reconnect: the server's end is its end.
    pub(crate) async fn client_without_reconnect(&self) -> Client {
        let config = ClientConfig {
            reconnect: mq_client::Reconnect::disabled(),
            ..ClientConfig::default()
        };
        Client::connect_with(&self.addr, config)
            .await
            .expect("client connects")
    }

    /// A client with a token.
    pub(crate) async fn client_with_token(
        &self,
        token: Option<&str>,
    ) -> Result<Client, mq_client::ClientError> {
        let config = ClientConfig {
            token: token.map(str::to_owned),
            ..ClientConfig::default()
        };
        Client::connect_with(&self.addr, config).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking raw connection that speaks frames by hand.
pub(crate) struct Raw {
    pub(crate) stream: TcpStream,
}

impl Raw {
    pub(crate) fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).expect("raw connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout set");
        Self { stream }
    }

    /// Connects and completes the handshake with `token` in the newest protocol version.
    pub(crate) fn handshaken(addr: &str, token: Option<&str>) -> Self {
        Self::speaking(addr, token, PROTOCOL_VERSION).0
    }

    /// Connects and completes the handshake offering protocol `version`; returns the
    /// Welcome too.
    pub(crate) fn speaking(addr: &str, token: Option<&str>, version: u16) -> (Self, ServerMsg) {
        let mut raw = Self::connect(addr);
        raw.send(
            1,
            ClientMsg::Hello {
                version,
                client: "raw".into(),
                token: token.map(str::to_owned),
            },
        );
        let welcome = raw.recv().msg;
        assert!(matches!(welcome, ServerMsg::Welcome { .. }), "{welcome:?}");
        (raw, welcome)
    }

    pub(crate) fn send(&mut self, id: u32, msg: ClientMsg) {
        let mut buf = BytesMut::new();
        encode_frame(&Frame::new(RequestId(id), msg), DEFAULT_MAX_FRAME, &mut buf)
            .expect("encodes");
        self.write(&buf);
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("raw write");
    }

    /// Reads one frame; panics on EOF.
    pub(crate) fn recv(&mut self) -> Frame<ServerMsg> {
        self.try_recv().expect("a frame before EOF")
    }

    /// Reads one frame, or `None` at EOF.
    pub(crate) fn try_recv(&mut self) -> Option<Frame<ServerMsg>> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("raw read failed: {e}"),
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).expect("frame body");
        Some(decode_frame(Bytes::from(body)).expect("server frames decode"))
    }

    /// Whether the server closed the connection (EOF after any remaining frames).
    pub(crate) fn closed_by_server(&mut self) -> bool {
        while self.try_recv().is_some() {}
        true
    }
}

/// A reply of the HTTP endpoint.
pub(crate) struct HttpReply {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: String,
}

/// `GET path` over HTTP/1.1 on `stream`, with a bearer `token` if given.
pub(crate) fn http_get_over(
    stream: impl Read + Write,
    path: &str,
    token: Option<&str>,
) -> HttpReply {
    match token {
        Some(t) => http_get_with(stream, path, &format!("Bearer {t}")),
        None => http_request(stream, path, ""),
    }
}

/// `GET path` with `Authorization: <authorization>`.
pub(crate) fn http_get_with(
    stream: impl Read + Write,
    path: &str,
    authorization: &str,
) -> HttpReply {
    http_request(stream, path, &format!("Authorization: {authorization}\r\n"))
}

fn http_request(mut stream: impl Read + Write, path: &str, auth: &str) -> HttpReply {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: mq\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("request written");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("reply read");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    HttpReply {
        status,
        content_type,
        body: body.to_owned(),
    }
}

/// `GET path` on the HTTP endpoint at `addr`.
pub(crate) fn http_get(addr: &str, path: &str, token: Option<&str>) -> HttpReply {
    let stream = TcpStream::connect(addr).expect("http connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout set");
    http_get_over(stream, path, token)
}
