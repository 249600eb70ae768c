"""`--web-config`: /metrics over TLS with basic auth and client certificates, judged by real clients.

A CA, a server certificate for 127.0.0.1/localhost and client certificates are made at test time (with the
`cryptography` package), passwords are hashed with bcrypt, and vidprof's exporter serves a registry holding real
vidprof metric families. urllib (trusting only the test CA) checks the answers request by request; a real
Prometheus (Debian's `prometheus` binary, as in test_prometheus_server.py) then scrapes over TLS with basic_auth
and with a client certificate, the way docs/security.md tells users to configure it.

Timing: ~10 s, mostly Prometheus applying its first service-discovery result ~5 s after it starts. Everything
listens on 127.0.0.1.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import CollectorRegistry

from tests.integration.servers import Harness, Prometheus, find_binary, start_prometheus, wait_until
from vidprof.profiling import exporter
from vidprof.profiling.errors import RunError, UsageError, VidprofError
from vidprof.profiling.marks import Marks
from vidprof.profiling.metrics import MetricFamilies, StreamMetrics
from vidprof.profiling.recorder import Recorder, Transfer
from vidprof.profiling.web_config import WebConfig, load_web_config

PIPELINE = "secure"
COMPLETED = 7  # vidprof_frames_total{outcome="completed"} of the served registry
USER, PASSWORD = "prometheus", "scrape-me"
# A second user for the cache check, hashed at a cost where one bcrypt check clearly shows in a request's time.
READER, READER_PASSWORD = "reader", "read-me"
SCRAPE = 1.0


# ---------------------------------------------------------------- a test PKI
@dataclass(frozen=True)
class PKI:
    folder: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate the server's CA did not sign
    stranger_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey,
           *, ca: bool = False, usage: x509.ObjectIdentifier | None = None,
           sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
               # Key identifiers: strict verifiers (Python 3.13's default X509_STRICT among them) want both.
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False), critical=True)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path) -> PKI:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("vidprof test CA", ca_key, _name("vidprof test CA"), ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue("localhost", server_key, ca.subject, ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                    sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue("prometheus", client_key, ca.subject, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _issue("stranger", stranger_key, _name("stranger"), stranger_key,
                      usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return PKI(folder, _write_cert(ca, folder / "ca.crt"),
               _write_cert(server, folder / "server.crt"), _write_key(server_key, folder / "server.key"),
               _write_cert(client, folder / "client.crt"), _write_key(client_key, folder / "client.key"),
               _write_cert(stranger, folder / "stranger.crt"), _write_key(stranger_key, folder / "stranger.key"))


def bcrypt_hash(password: str, rounds: int) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def registry() -> CollectorRegistry:
    """Real vidprof metric families with one stream's recorder, COMPLETED frames recorded."""
    reg = CollectorRegistry()
    rec = Recorder(StreamMetrics(MetricFamilies(reg), PIPELINE, "0"))
    marks = Marks()
    marks.start["decode"], marks.end["decode"] = 0, 1_000_000
    for _ in range(COMPLETED):
        rec.frame_done(marks, Transfer(), failed=False)
    return reg


def write_config(folder: Path, name: str, text: str) -> WebConfig:
    path = folder / name
    path.write_text(text)
    return load_web_config(path)


@contextmanager
def serving(registry: CollectorRegistry, config: WebConfig) -> Iterator[exporter.Exporter]:
    server = exporter.serve(registry, "127.0.0.1", 0, config)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def secure(pki: PKI, registry: CollectorRegistry) -> Iterator[exporter.Exporter]:
    """TLS + basic auth. Relative paths: they resolve against the config's folder, as in node_exporter."""
    config = write_config(pki.folder, "secure.yml", f"""
tls_server_config:
  cert_file: server.crt
  key_file: server.key
basic_auth_users:
  {USER}: {bcrypt_hash(PASSWORD, 4)}
  {READER}: {bcrypt_hash(READER_PASSWORD, 12).replace("$2b$", "$2y$")}  # as htpasswd -B writes it
""")
    with serving(registry, config) as server:
        yield server


@pytest.fixture(scope="module")
def mtls(pki: PKI, registry: CollectorRegistry) -> Iterator[exporter.Exporter]:
    """TLS that requires a client certificate signed by the test CA; no passwords."""
    config = write_config(pki.folder, "mtls.yml", f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  client_ca_file: {pki.ca}
  client_auth_type: RequireAndVerifyClientCert
""")
    with serving(registry, config) as server:
        yield server


def client_context(pki: PKI, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))  # trusts the test CA only
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def get(url: str, ctx: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None) -> tuple[int, str, dict]:
    """(status, body, headers), 4xx included."""
    req = urllib.request.Request(url)
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:  # loopback URLs built here
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


SERIES = f'vidprof_frames_total{{outcome="completed",pipeline="{PIPELINE}",stream="0"}} {COMPLETED:.1f}'


# ---------------------------------------------------------------- basic auth over TLS
def test_url_says_https(secure: exporter.Exporter) -> None:
    assert secure.url == f"https://127.0.0.1:{secure.port}/metrics"


def test_right_password_gets_the_metrics(secure: exporter.Exporter, pki: PKI) -> None:
    status, body, _ = get(secure.url, client_context(pki), (USER, PASSWORD))
    assert status == 200
    assert SERIES in body


@pytest.mark.parametrize("auth", [None, (USER, "wrong"), ("nobody", PASSWORD), (USER, ""), (USER, "x" * 100)],
                         ids=["no credentials", "wrong password", "unknown user", "empty password", "long password"])
def test_anything_else_gets_401(secure: exporter.Exporter, pki: PKI, auth: tuple[str, str] | None) -> None:
    status, body, headers = get(secure.url, client_context(pki), auth)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith('Basic realm="vidprof"')
    assert "vidprof_" not in body


@pytest.mark.parametrize("header", ["Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()])
def test_malformed_authorization_gets_401(secure: exporter.Exporter, pki: PKI, header: str) -> None:
    req = urllib.request.Request(secure.url, headers={"Authorization": header})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10, context=client_context(pki))
    assert e.value.code == 401


def test_a_success_is_cached(secure: exporter.Exporter, pki: PKI) -> None:
    """bcrypt is slow on purpose (the reader's hash: cost 12, ~0.3 s); a scraper must not pay it every time."""
    ctx = client_context(pki)
    times = []
    for _ in range(4):
        t = time.perf_counter()
        assert get(secure.url, ctx, (READER, READER_PASSWORD))[0] == 200
        times.append(time.perf_counter() - t)
    first, later = times[0], max(times[1:])
    assert later < first / 3, f"first request {first:.3f} s, cached ones up to {later:.3f} s"


def test_plain_http_to_the_tls_port_fails(secure: exporter.Exporter, pki: PKI) -> None:
    with pytest.raises((OSError, http.client.HTTPException)):
        get(f"http://127.0.0.1:{secure.port}/metrics", auth=(USER, PASSWORD))
    # ... and costs only that connection
    assert get(secure.url, client_context(pki), (USER, PASSWORD))[0] == 200


def test_an_untrusted_server_certificate_is_refused(secure: exporter.Exporter) -> None:
    """Sanity check of the client side: without the test CA, urllib must not get through."""
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        get(secure.url, ssl.create_default_context(), (USER, PASSWORD))


def test_a_silent_client_does_not_block_others(secure: exporter.Exporter, pki: PKI) -> None:
    """A connection that never starts its TLS handshake must not hold up the next scrape."""
    with socket.create_connection(("127.0.0.1", secure.port), timeout=5):
        t = time.perf_counter()
        assert get(secure.url, client_context(pki), (USER, PASSWORD))[0] == 200
        assert time.perf_counter() - t < 5


def test_basic_auth_without_tls(tmp_path: Path, registry: CollectorRegistry) -> None:
    """Allowed, as in node_exporter (behind a TLS-terminating proxy, say); the URL stays http://."""
    config = write_config(tmp_path, "auth-only.yml", f"basic_auth_users:\n  {USER}: {bcrypt_hash(PASSWORD, 4)}\n")
    with serving(registry, config) as server:
        assert server.url.startswith("http://")
        assert get(server.url)[0] == 401
        status, body, _ = get(server.url, auth=(USER, PASSWORD))
        assert status == 200 and SERIES in body


# ---------------------------------------------------------------- client certificates
def test_client_certificate_required(mtls: exporter.Exporter, pki: PKI) -> None:
    with pytest.raises((OSError, http.client.HTTPException)):
        get(mtls.url, client_context(pki))


def test_client_certificate_from_another_ca_is_refused(mtls: exporter.Exporter, pki: PKI) -> None:
    with pytest.raises((OSError, http.client.HTTPException)):
        get(mtls.url, client_context(pki, pki.stranger_cert, pki.stranger_key))


def test_client_certificate_signed_by_the_ca_gets_in(mtls: exporter.Exporter, pki: PKI) -> None:
    status, body, _ = get(mtls.url, client_context(pki, pki.client_cert, pki.client_key))
    assert status == 200 and SERIES in body


# ---------------------------------------------------------------- malformed files
GOOD_HASH = bcrypt_hash("pw", 4)
TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"


def _encrypted_key(pki: PKI) -> str:
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    path = pki.folder / "encrypted.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"secret")))
    return f"tls_server_config:\n  cert_file: server.crt\n  key_file: {path}\n"


# name -> (file text, or a function of the PKI giving it; None: no file at all), error class, fragments of the message
BAD: dict[str, tuple[str | Callable[[PKI], str] | None, type[VidprofError], tuple[str, ...]]] = {
    "unknown top-level key": ("tls_server_confg:\n  cert_file: a\n", UsageError,
                              ("unknown key 'tls_server_confg' at the top level", "did you mean tls_server_config?")),
    "unknown tls key": (TLS + "  certfile: x\n", UsageError,
                        ("unknown key 'certfile' in tls_server_config", "expected only cert_file, key_file")),
    "supported elsewhere only": (TLS + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", UsageError,
                                 ("cipher_suites in tls_server_config, which vidprof does not support", "remove it")),
    "missing cert_file": ("tls_server_config:\n  key_file: server.key\n", UsageError,
                          ("no cert_file in tls_server_config", "add cert_file")),
    "plain-text password": ("basic_auth_users:\n  admin: hunter2\n", UsageError,
                            ("a 7-character value for user 'admin'", "not a bcrypt hash", "htpasswd -nBC")),
    "sha256 hash": ("basic_auth_users:\n  admin: " + "ab" * 32 + "\n", UsageError, ("not a bcrypt hash",)),
    "user twice": (f"basic_auth_users:\n  admin: {GOOD_HASH}\n  admin: {GOOD_HASH}\n", UsageError,
                   ("not valid YAML (line 3: key 'admin' appears twice)",)),
    "not YAML": ("tls_server_config: [\n", UsageError, ("not valid YAML (line 2:",)),
    "empty": ("", UsageError, ("an empty file",)),
    "a list": ("- cert_file: a\n", UsageError, ("a list at the top level",)),
    "unchecked client certs": (TLS + "  client_auth_type: RequireAnyClientCert\n", UsageError,
                               ("RequireAnyClientCert", "expected VerifyClientCertIfGiven or "
                                                        "RequireAndVerifyClientCert with a client_ca_file")),
    "client CA without policy": (TLS + "  client_ca_file: ca.crt\n", UsageError,
                                 ("client_ca_file but no client_auth_type",)),
    "policy without client CA": (TLS + "  client_auth_type: RequireAndVerifyClientCert\n", UsageError,
                                 ("no client_ca_file",)),
    "bad TLS version": (TLS + "  min_version: TLS1.2\n", UsageError,
                        ("min_version 'TLS1.2'", "expected one of TLS10, TLS11, TLS12, TLS13")),
    "missing web config": (None, RunError, ("cannot read it (No such file or directory)", "check the path")),
    "missing cert file": ("tls_server_config:\n  cert_file: nowhere.crt\n  key_file: server.key\n", RunError,
                          ("cert_file", "nowhere.crt cannot be read (No such file or directory)",
                           "relative to the web config's folder")),
    "key of another cert": (lambda p: f"tls_server_config:\n  cert_file: server.crt\n  key_file: {p.client_key}\n",
                            RunError, ("are not a usable pair", "key values mismatch")),
    "encrypted key": (_encrypted_key, RunError, ("are not a usable pair", "the private key is encrypted")),
}


@pytest.mark.parametrize("case", BAD)
def test_malformed_web_config(case: str, pki: PKI) -> None:
    text, error, fragments = BAD[case]
    path = pki.folder / f"bad-{case.replace(' ', '-')}.yml"
    if text is not None:
        path.write_text(text(pki) if callable(text) else text)
    with pytest.raises(VidprofError) as e:
        load_web_config(path)
    message = str(e.value)
    assert type(e.value) is error, message
    assert "\n" not in message, message
    assert message.startswith(f"--web-config {path}: "), message
    for fragment in fragments:
        assert fragment in message, message
    assert "hunter2" not in message  # a pasted password is never echoed


# ---------------------------------------------------------------- a real Prometheus
@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, pki: PKI, secure: exporter.Exporter,
               mtls: exporter.Exporter) -> Iterator[Prometheus]:
    """One Prometheus scraping, every second: the secured endpoint with the right password and with a wrong
    one, and the client-certificate endpoint with the client certificate. Configured as docs/security.md says."""
    binary = find_binary("prometheus")
    h = Harness(tmp_path_factory.mktemp("prometheus"))
    config = f"""
global:
  scrape_interval: {SCRAPE:g}s
  scrape_timeout: {SCRAPE:g}s
scrape_configs:
  - job_name: secure
    scheme: https
    tls_config:
      ca_file: {pki.ca}
    basic_auth:
      username: {USER}
      password: {PASSWORD}
    static_configs:
      - targets: ["127.0.0.1:{secure.port}"]
  - job_name: wrong_password
    scheme: https
    tls_config:
      ca_file: {pki.ca}
    basic_auth:
      username: {USER}
      password: not-{PASSWORD}
    static_configs:
      - targets: ["127.0.0.1:{secure.port}"]
  - job_name: mtls
    scheme: https
    tls_config:
      ca_file: {pki.ca}
      cert_file: {pki.client_cert}
      key_file: {pki.client_key}
    static_configs:
      - targets: ["127.0.0.1:{mtls.port}"]
"""
    try:
        prom = start_prometheus(h, binary, config)
        # Every target scraped at least once, whatever the outcome.
        wait_until("Prometheus to scrape every target", lambda: len(scraped(prom)) == 3, 30, [prom.proc])
        yield prom
    finally:
        h.stop_all()


def scraped(prom: Prometheus) -> dict[str, dict]:
    """job -> its active target, for the targets scraped at least once."""
    doc = urllib.request.urlopen(f"{prom.url}/api/v1/targets?state=active", timeout=5).read()
    active = json.loads(doc)["data"]["activeTargets"]
    return {t["labels"]["job"]: t for t in active if t["health"] != "unknown"}


def test_prometheus_scrapes_over_tls_with_basic_auth(prometheus: Prometheus) -> None:
    target = scraped(prometheus)["secure"]
    assert target["health"] == "up", target["lastError"]
    now = time.time()
    assert [r["value"][1] for r in prometheus.query('up{job="secure"}', now)] == ["1"]
    series = prometheus.query(f'vidprof_frames_total{{job="secure", pipeline="{PIPELINE}", outcome="completed"}}',
                              now)
    assert [float(r["value"][1]) for r in series] == [COMPLETED]


def test_prometheus_with_a_wrong_password_is_refused(prometheus: Prometheus) -> None:
    target = scraped(prometheus)["wrong_password"]
    assert target["health"] == "down"
    assert "401" in target["lastError"], target["lastError"]
    assert [r["value"][1] for r in prometheus.query('up{job="wrong_password"}', time.time())] == ["0"]


def test_prometheus_scrapes_with_a_client_certificate(prometheus: Prometheus) -> None:
    target = scraped(prometheus)["mtls"]
    assert target["health"] == "up", target["lastError"]
    assert [r["value"][1] for r in prometheus.query('up{job="mtls"}', time.time())] == ["1"]


def test_vidprof_run_serves_its_metrics_with_the_web_config(pki: PKI, vidprof_cmd: list[str], tmp_path: Path) -> None:
    """End to end: `vidprof run --web-config` prints an https URL that answers only with the password."""
    import re
    import subprocess

    config = tmp_path / "web.yml"
    config.write_text(f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
basic_auth_users:
  {USER}: {bcrypt_hash(PASSWORD, 4)}
""")
    proc = subprocess.Popen([*vidprof_cmd, "run", "--source", "synthetic:160x120@30", "--frames", "30", "--quiet",
                             "--metrics-port", "0", "--web-config", str(config), "--linger", "20"],
                            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:  # the URL, then (after the run) the linger line: scrape the final values
            if (m := re.search(r"metrics at (https://127\.0\.0\.1:\d+/metrics)", line)):
                url = m.group(1)
            if "serving final metrics" in line:
                break
        assert url is not None, "vidprof did not print an https metrics URL"
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        ok = urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Basic {token}"}),
                                    context=ctx, timeout=10)
        assert ok.status == 200 and b"vidprof_frames_total" in ok.read()
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(url, context=ctx, timeout=10)
        assert denied.value.code == 401
    finally:
        proc.send_signal(2)
        proc.wait(30)
