"""`--web-config FILE`: TLS and basic auth for /metrics, in the file format node_exporter and Prometheus use
(the Prometheus exporter-toolkit web config), so one file and one scrape config work for all of them.

    tls_server_config:
      cert_file: server.crt            # relative paths are relative to this file's folder, as for node_exporter
      key_file: server.key
      client_ca_file: clients-ca.crt   # optional: with client_auth_type, clients must show a certificate
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12               # the default, as in the exporter-toolkit
    basic_auth_users:
      prometheus: $2b$12$...           # bcrypt hashes only

Keys of that format vidprof does not implement are refused by name rather than ignored: a file written for
node_exporter must not silently lose a setting someone relies on for security.
"""

from __future__ import annotations

import difflib
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

from vidprof.profiling.errors import RunError, UsageError

FLAG = "--web-config"
FORMAT = "the exporter-toolkit web config format (see docs/security.md)"

TOP_KEYS = ("tls_server_config", "basic_auth_users")
TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version")
# Keys of the exporter-toolkit format that vidprof does not implement; each says what to do instead.
UNSUPPORTED: dict[str, str] = {
    "http_server_config": "vidprof serves HTTP/1.1 with its own headers",
    "rate_limit": "put a reverse proxy in front of vidprof to limit requests",
    "cert": "inline certificates are not supported; put the PEM in a file and name it with cert_file",
    "key": "inline keys are not supported; put the PEM in a file and name it with key_file",
    "client_ca": "inline CAs are not supported; put the PEM in a file and name it with client_ca_file",
    "cipher_suites": "Python's TLS picks the cipher suites; use min_version to rule out old protocols",
    "curve_preferences": "Python's TLS picks the curves",
    "prefer_server_cipher_suites": "Python's TLS decides the cipher order",
    "client_allowed_sans": "use a client CA that only signs the clients you allow",
}

# client_auth_type -> what Python's ssl can enforce. Go's RequestClientCert and RequireAnyClientCert accept a
# certificate without checking it against a CA; Python's ssl has no such mode (and it would authenticate no one).
CLIENT_AUTH: dict[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# $2a$, $2b$ (Python's bcrypt) and $2y$ (htpasswd -B) are the same algorithm; cost 04-31, 22 salt + 31 hash chars.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str | None = None
    source: Path = Path()  # the web config file, named in errors

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context; every file is read now, so a bad one is a RunError naming it, not a failed
        handshake on the first scrape."""
        for key, path in (("cert_file", self.cert_file), ("key_file", self.key_file),
                          ("client_ca_file", self.client_ca_file)):
            if path is not None:
                _check_readable(self.source, key, path)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[self.min_version]
        if self.max_version is not None:
            ctx.maximum_version = TLS_VERSIONS[self.max_version]
        try:
            # An encrypted key would make OpenSSL prompt on the terminal and hang an unattended run: refuse instead.
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file), password=_no_password)
        except (ssl.SSLError, _EncryptedKey) as e:
            raise RunError(f"{FLAG} {self.source}: cert_file {self.cert_file} and key_file {self.key_file} are not "
                           f"a usable pair ({_ssl_reason(e)}); expected a PEM certificate and its unencrypted PEM "
                           "private key; check both paths, or decrypt the key with `openssl pkey -in KEY -out KEY2`"
                           ) from e
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(self.client_ca_file))
            except ssl.SSLError as e:
                raise RunError(f"{FLAG} {self.source}: client_ca_file {self.client_ca_file} holds no usable CA "
                               f"certificate ({_ssl_reason(e)}); expected PEM CA certificates; check the path"
                               ) from e
        ctx.verify_mode = CLIENT_AUTH[self.client_auth_type]
        return ctx


@dataclass(frozen=True)
class WebConfig:
    source: Path
    tls: TLSServerConfig | None = None
    # user -> bcrypt hash; kept out of repr so a hash does not end up in a log
    basic_auth_users: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"


def load_web_config(path: str | Path) -> WebConfig:
    """Parse and check a web config file, certificate and key files included.

    Raises ``UsageError`` for a file that cannot work (bad YAML, unknown or missing keys, a value that is not a
    bcrypt hash), ``RunError`` for a file that cannot be read (the config itself, a certificate, a key)."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        _usage(source, f"not UTF-8 text (byte {e.start})", "expected a YAML file; save it as UTF-8")
    except OSError as e:
        raise RunError(f"{FLAG} {source}: cannot read it ({e.strerror or e}); expected a readable YAML file in "
                       f"{FORMAT}; check the path") from e
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as e:
        _usage(source, f"not valid YAML ({_yaml_problem(e)})", f"expected {FORMAT}; fix the file")
    if doc is None or doc == {}:
        # node_exporter serves plain HTTP for an empty file; someone who passed --web-config wants security.
        _usage(source, "an empty file",
               "expected tls_server_config and/or basic_auth_users; fill it in or drop the flag")
    if not isinstance(doc, dict):
        _usage(source, f"{_kind(doc)} at the top level",
               "expected a mapping with tls_server_config and/or basic_auth_users; write it as `key: value` lines")
    _check_keys(source, doc, TOP_KEYS, "at the top level")

    tls = None
    if "tls_server_config" in doc:
        tls = _tls(source, doc["tls_server_config"])
    users: dict[str, str] = {}
    if "basic_auth_users" in doc:
        users = _users(source, doc["basic_auth_users"])
    config = WebConfig(source, tls, MappingProxyType(users))
    if tls is not None:
        tls.ssl_context()  # read every file now: fail before the run, not at the first scrape
    return config


# ---------------------------------------------------------------- parts
def _tls(source: Path, section: Any) -> TLSServerConfig:
    where = "in tls_server_config"
    if not isinstance(section, dict) or not section:
        _usage(source, f"tls_server_config is {_kind(section)}",
               "expected a mapping with cert_file and key_file (remove tls_server_config to serve plain HTTP)")
    _check_keys(source, section, TLS_KEYS, where)
    for key in ("cert_file", "key_file"):
        if key not in section:
            _usage(source, f"no {key} {where}",
                   f"expected cert_file and key_file, paths to PEM files; add {key}")
    paths = {key: _path(source, section, key) for key in ("cert_file", "key_file", "client_ca_file")
             if section.get(key) is not None}

    auth = section.get("client_auth_type") or "NoClientCert"
    if auth in UNVERIFIED_CLIENT_AUTH:
        _usage(source, f"client_auth_type {auth} {where} would accept any client certificate unchecked",
               "expected VerifyClientCertIfGiven or RequireAndVerifyClientCert with a client_ca_file")
    if auth not in CLIENT_AUTH:
        _usage(source, f"client_auth_type {auth!r} {where}",
               f"expected one of {', '.join(CLIENT_AUTH)}; fix client_auth_type")
    if auth == "NoClientCert" and "client_ca_file" in paths:
        _usage(source, f"client_ca_file but no client_auth_type {where} (a CA that checks no one)",
               "expected client_auth_type: RequireAndVerifyClientCert (or VerifyClientCertIfGiven); add it, or "
               "remove client_ca_file")
    if auth != "NoClientCert" and "client_ca_file" not in paths:
        _usage(source, f"client_auth_type {auth} but no client_ca_file {where}",
               "expected the PEM file of the CA that signs client certificates; add client_ca_file")

    versions: dict[str, str] = {}
    for key in ("min_version", "max_version"):
        value = section.get(key)
        if value is None:
            continue
        if value not in TLS_VERSIONS:
            _usage(source, f"{key} {value!r} {where}", f"expected one of {', '.join(TLS_VERSIONS)}; fix {key}")
        versions[key] = value
    low, high = versions.get("min_version", "TLS12"), versions.get("max_version")
    if high is not None and TLS_VERSIONS[high] < TLS_VERSIONS[low]:
        _usage(source, f"max_version {high} below min_version {low} {where}",
               "expected max_version >= min_version (TLS12 when min_version is not set); raise max_version")
    return TLSServerConfig(paths["cert_file"], paths["key_file"], paths.get("client_ca_file"), auth, low, high,
                           source)


def _users(source: Path, section: Any) -> dict[str, str]:
    if not isinstance(section, dict) or not section:
        _usage(source, f"basic_auth_users is {_kind(section)}",
               "expected a mapping of user names to bcrypt hashes (remove basic_auth_users to serve without "
               "passwords)")
    users = {}
    for user, hashed in section.items():
        if not isinstance(user, str) or not user or ":" in user:
            # Basic auth sends "user:password", so a colon cannot be part of a user name.
            _usage(source, f"user name {user!r} ({_kind(user)}) in basic_auth_users",
                   "expected a non-empty text without ':'; quote it if YAML reads it as a number")
        if not isinstance(hashed, str) or not BCRYPT_HASH.fullmatch(hashed):
            # Never echo the value: it may be a plain-text password pasted by mistake.
            arrived = (f"a {len(hashed)}-character value" if isinstance(hashed, str) else _kind(hashed))
            _usage(source, f"{arrived} for user {user!r} in basic_auth_users, not a bcrypt hash",
                   "expected a bcrypt hash such as $2b$12$... (make one with `htpasswd -nBC 12 USER` or bcrypt.hashpw,"
                   " see docs/security.md); passwords are never written in plain text")
        users[user] = hashed
    return users


def _path(source: Path, section: dict[str, Any], key: str) -> Path:
    value = section[key]
    if not isinstance(value, str) or not value:
        _usage(source, f"{key} is {_kind(value)} in tls_server_config", f"expected a file path; fix {key}")
    path = Path(value).expanduser()
    # Relative to the web config's folder, as node_exporter and Prometheus do: the file works from any cwd.
    return path if path.is_absolute() else source.parent / path


def _check_keys(source: Path, section: dict[Any, Any], known: tuple[str, ...], where: str) -> None:
    for key in section:
        if key in known:
            continue
        if key in UNSUPPORTED:
            _usage(source, f"{key} {where}, which vidprof does not support",
                   f"expected only {', '.join(known)}; remove it ({UNSUPPORTED[key]})")
        hint = difflib.get_close_matches(str(key), known, n=1)
        _usage(source, f"unknown key {key!r} {where}",
               f"expected only {', '.join(known)}; " + (f"did you mean {hint[0]}?" if hint else "remove it"))


def _check_readable(source: Path, key: str, path: Path) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise RunError(f"{FLAG} {source}: {key} {path} cannot be read ({e.strerror or e}); expected a readable PEM "
                       "file; check the path (relative paths are relative to the web config's folder) and its "
                       "permissions") from e


def _usage(source: Path, arrived: str, todo: str) -> NoReturn:
    raise UsageError(f"{FLAG} {source}: {arrived}; {todo}")


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, dict) and not value:
        return "an empty mapping"
    return {dict: "a mapping", list: "a list", str: "a text", bool: "true/false", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark is not None else problem


class _EncryptedKey(Exception):
    pass


def _no_password() -> NoReturn:
    raise _EncryptedKey("the private key is encrypted")


def _ssl_reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError):
        # "[SSL: KEY_VALUES_MISMATCH] key values mismatch (_ssl.c:3926)" -> "key values mismatch"
        text = re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(e.args[1] if len(e.args) > 1 else e))
        return text or str(e.reason or e)
    return str(e)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice: the second of two `admin:` lines would silently replace the first
    password, where Go's strict YAML (node_exporter) refuses the file."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden key by key
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            twice = key in seen
        except TypeError:  # an unhashable key: SafeLoader reports it below
            continue
        if twice:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
