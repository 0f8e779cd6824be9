"""Tokens, per-user permissions and TLS from Python, against a real mq-server."""

import hashlib
import secrets
import shutil
import subprocess

import pytest

import mq
from mq_server import mq_server


def test_a_user_is_held_to_its_permissions_and_a_wrong_token_is_refused(tmp_path):
    token = secrets.token_hex(32)
    config = tmp_path / "mq.toml"
    config.write_text(
        "[[users]]\n"
        'name = "app"\n'
        f'token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
        'permissions = [{ topics = "allowed", actions = ["publish", "consume", "stats"] }]\n'
    )
    with mq_server("--config", str(config)) as addr:
        with mq.Client.connect(addr, token=token) as client:
            assert client.producer("allowed").send(b"ok") == 0
            with pytest.raises(mq.PermissionDenied) as denied:
                client.producer("secret").send(b"no")
            assert denied.value.code == "permission_denied"
            assert "secret" in str(denied.value)
        with pytest.raises(mq.Unauthorized):
            mq.Client.connect(addr, token="not-the-token", reconnect=False)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def issue(dir, name, subject, extension):
    """A certificate `name`.pem (key `name`.key) for `subject`, signed by the test CA."""
    openssl("req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
            cwd=dir)
    (dir / f"{name}.cnf").write_text(extension + "\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.cnf",
            cwd=dir)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_and_mutual_tls_and_clear_errors_without_them(tmp_path):
    openssl("req", "-x509", *EC, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=mq test CA", cwd=tmp_path)
    issue(tmp_path, "server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1")
    flags = ("--tls-cert", str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.key"))
    with mq_server(*flags) as addr:
        with mq.Client.connect(addr, tls_ca=str(tmp_path / "ca.pem")) as client:
            assert client.producer("secure").send(b"over TLS") == 0
        with pytest.raises(mq.ConnectionClosed, match="speaks TLS"):
            mq.Client.connect(addr, reconnect=False, request_timeout=5)

    issue(tmp_path, "client", "/CN=python-client", "extendedKeyUsage=clientAuth")
    mutual = (*flags, "--tls-client-ca", str(tmp_path / "ca.pem"))
    with mq_server(*mutual) as addr:
        ca = str(tmp_path / "ca.pem")
        identity = {"tls_cert": str(tmp_path / "client.pem"), "tls_key": str(tmp_path / "client.key")}
        with mq.Client.connect(addr, tls_ca=ca, **identity) as client:
            assert client.producer("mutual").send(b"with a certificate") == 0
        with pytest.raises(mq.Error):
            mq.Client.connect(addr, tls_ca=ca, reconnect=False, request_timeout=5)
        with pytest.raises(ValueError, match="go together"):
            mq.Client.connect(addr, tls_ca=ca, tls_cert=identity["tls_cert"])
