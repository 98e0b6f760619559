"""TLS and the fleet's secrets, as pure functions: URLs, the CA's certificates, the aclfile,
Redis's configuration, the fleet directory's layout and modes."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from oodida_core.protocol.errors import OodidaError
from oodida_core.protocol.keys import Keys
from oodida_core.security import acl
from oodida_core.security.tls import TlsFiles, plain_url, tls_url
from oodida_core.settings import Settings, check_tls
from oodida_ops import fleet
from oodida_ops.certs import Authority


def _files(tmp_path: Path) -> TlsFiles:
    for name in ("ca.pem", "c.pem", "c.key"):
        (tmp_path / name).write_text("x")
    return TlsFiles(str(tmp_path / "ca.pem"), str(tmp_path / "c.pem"), str(tmp_path / "c.key"))


def test_tls_url_verifies_the_server_and_presents_the_certificate(tmp_path: Path) -> None:
    files = _files(tmp_path)
    url = tls_url("redis://u:p@h:6380/2?socket_timeout=5&ssl_cert_reqs=none", files)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("rediss", "u:p@h:6380", "/2")
    assert dict(parse_qsl(parts.query)) == {
        "socket_timeout": "5",
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": files.ca,
        "ssl_certfile": files.cert,
        "ssl_keyfile": files.key,
    }
    assert Settings(redis_url=url).redis_url == url
    assert plain_url(url) == "redis://u:p@h:6380/2?socket_timeout=5"


def test_a_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="both"):
        TlsFiles("ca.pem", cert="c.pem")


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("", "ssl_cert_reqs=required"),
        ("ssl_cert_reqs=none", "got none"),
        ("ssl_cert_reqs=optional", "got optional"),
        ("ssl_cert_reqs=required&ssl_check_hostname=false", "host name"),
        ("ssl_cert_reqs=required&ssl_ca_certs=/no/such/ca.pem", "no such file"),
        # found by a red team: what redis-py or kombu read differently from a plain reading
        ("ssl_cert_reqs=none&ssl_cert_reqs=required", "given twice"),
        ("ssl_cert_reqs=required&ssl_check_hostname=f", "host name"),
        ("ssl_cert_reqs=required&ssl_check_hostname=F", "host name"),
        ("ssl_cert_reqs=required&ssl_check_hostname=false&ssl_check_hostname=true", "given twice"),
        ("ssl_cert_reqs=required&ssl_ca_path=/etc/ssl/certs", "ssl_ca_path: not accepted"),
        ("ssl_cert_reqs=required&ssl_ca_data=x", "ssl_ca_data: not accepted"),
    ],
)
def test_a_rediss_url_that_would_not_verify_the_server_is_refused(query: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_tls(f"rediss://h:1/0?{query}")


def test_tls_options_on_a_plaintext_url_are_refused() -> None:
    with pytest.raises(ValueError, match="need a rediss"):
        check_tls("redis://h:1/0?ssl_cert_reqs=required")
    check_tls("redis://h:1/0?socket_timeout=1")  # other options are fine


def test_the_ca_issues_server_and_client_certificates_it_signed(tmp_path: Path) -> None:
    ca = Authority.create(tmp_path / "ca")
    assert ca.key.stat().st_mode & 0o777 == 0o600
    server = ca.issue_server(
        tmp_path / "s.pem", tmp_path / "s.key", ["127.0.0.1", "redis.example", "127.0.0.1"]
    )
    client = ca.issue_client(tmp_path / "c.pem", tmp_path / "c.key", "vehicle-7")
    root = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    for issued, usage in (
        (server, ExtendedKeyUsageOID.SERVER_AUTH),
        (client, ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        cert = x509.load_pem_x509_certificate(issued.cert.read_bytes())
        cert.verify_directly_issued_by(root)
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [usage]
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert issued.key.stat().st_mode & 0o777 == 0o600
    names = x509.load_pem_x509_certificate(server.cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.value.get_values_for_type(x509.DNSName) == ["redis.example"]
    with pytest.raises(OodidaError, match="already has a CA"):
        Authority.create(tmp_path / "ca")
    with pytest.raises(OodidaError, match="at least one host"):
        ca.issue_server(tmp_path / "x.pem", tmp_path / "x.key", [])


def test_the_aclfile_holds_password_hashes_only() -> None:
    role = acl.Role("analyst", ("cloud",), (), "+lpush")
    (default, line) = acl.acl_lines([role], {"analyst": "s3cret"}, "oodida")
    rules = default.split()
    assert rules[:3] == ["user", "default", "on"] and rules[-3:] == ["allkeys", "allchannels", "allcommands"]
    assert rules[4].startswith("#") and len(rules[4]) == 65  # a hash of a password nobody keeps
    assert not any(r.startswith(">") for r in rules)
    assert "s3cret" not in line
    assert f"#{hashlib.sha256(b's3cret').hexdigest()}" in line.split()
    assert line.startswith("user oodida-analyst reset resetchannels on #")


def test_redis_config_is_tls_only_append_only_with_an_aclfile() -> None:
    conf = dict(line.split(" ", 1) for line in fleet.redis_conf(fleet.FleetPlan(port=7000)).splitlines())
    assert conf["port"] == "0" and conf["tls-port"] == "7000"
    assert conf["tls-auth-clients"] == "yes" and conf["appendonly"] == "yes"
    assert conf["aclfile"] == "/data/users.acl" and conf["bind"] == "127.0.0.1"


def test_the_fleet_directory_gives_each_container_only_its_own_secrets(tmp_path: Path) -> None:
    plan = fleet.FleetPlan(vehicles={"1": [1], "fleet": [101, 102]}, port=7001)
    root = fleet.init(tmp_path / "f", plan)
    assert root.stat().st_mode & 0o777 == 0o700
    services = {"cloud", "flower", "setup", "vehicle-1", "vehicle-fleet"}
    assert {p.name for p in root.iterdir()} == {"ca", "redis", "host", "fleet.json", "compose.env", *services}
    users = set()
    for service in ("cloud", "flower", "setup", "vehicle-1", "vehicle-fleet"):
        d = root / service
        assert {"ca.pem", "client.pem", "client.key", "oodida.env"} <= {p.name for p in d.iterdir()}
        assert not list(d.glob("ca.key"))
        (line,) = [
            x for x in (d / "oodida.env").read_text().splitlines() if x.startswith("OODIDA_REDIS_URL=")
        ]
        url = line.split("=", 1)[1].strip("'")  # quoted: a shell, compose and systemd read it alike
        assert url.startswith("rediss://") and "ssl_certfile=/run/oodida/client.pem" in url
        users.add(urlsplit(url).username)
        if os.geteuid() == 0:
            assert (d / "client.key").stat().st_uid == fleet.CONTAINER_UID
            assert (d / "client.key").stat().st_mode & 0o777 == 0o400
    assert users == {
        "oodida-cloud",
        "oodida-flower",
        "oodida-admin",
        "oodida-vehicle-1",
        "oodida-vehicle-fleet",
    }
    acl_text = (root / "redis" / "users.acl").read_text()
    (flower,) = [line for line in acl_text.splitlines() if line.startswith("user oodida-flower ")]
    assert flower.endswith(" (~cloud ~client.* +llen)")  # Redis 7: queue lengths, nothing else on them
    root_rules = flower.split(" (", 1)[0]
    assert "~cloud" not in root_rules and "~client" not in root_rules and "+@" not in root_rules
    assert (
        "user oodida-vehicle-1 " in acl_text and "~client.1 " in acl_text and "%R~oodida:code:*" in acl_text
    )
    assert fleet.read_plan(root / "setup" / "fleet.json") == {"1": [1], "fleet": [101, 102]}
    assert "OODIDA_REDIS_PORT='7001'" in (root / "compose.env").read_text()
    for env in (root / "compose.env", root / "host" / "admin.env", root / "host" / "analyst.env"):
        assert env.stat().st_mode & 0o777 == 0o600, env
    with pytest.raises(OodidaError, match="already holds a fleet"):
        fleet.init(root, plan)


@pytest.mark.parametrize(
    "text", ['{"vehicles": {"1": [0]}}', '{"vehicles": {"a b": [1]}}', '{"vehicles": []}', "{", "{}"]
)
def test_a_bad_fleet_file_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fleet.json"
    path.write_text(text)
    with pytest.raises(OodidaError, match="bad fleet file"):
        fleet.read_plan(path)


def test_keys_prefix_reaches_the_fleet_users(tmp_path: Path) -> None:
    root = fleet.init(tmp_path / "g", fleet.FleetPlan(vehicles={"2": [2]}, prefix="acme"))
    assert "user acme-vehicle-2 " in (root / "redis" / "users.acl").read_text()
    assert Keys("acme").prefix == "acme"


def test_an_env_file_reads_the_same_in_a_shell_and_refuses_quotes(tmp_path: Path) -> None:
    url = "rediss://u:p@h:1/0?ssl_cert_reqs=required&ssl_ca_certs=/x/ca.pem"
    fleet.write_env(tmp_path / "a.env", {"OODIDA_REDIS_URL": url})
    assert (tmp_path / "a.env").stat().st_mode & 0o777 == 0o600
    shell = subprocess.run(
        ["bash", "-c", f'set -a; . {tmp_path / "a.env"}; printf %s "$OODIDA_REDIS_URL"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == url
    with pytest.raises(OodidaError, match="quote"):
        fleet.write_env(tmp_path / "b.env", {"X": "it's"})


def test_messages_show_urls_without_their_passwords() -> None:
    from oodida_core.settings import masked_url

    url = "rediss://oodida-analyst:s3cret@h:1/0?ssl_cert_reqs=required"
    assert masked_url(url) == "rediss://oodida-analyst:**@h:1/0?ssl_cert_reqs=required"
    assert masked_url("redis://h:1/0") == "redis://h:1/0"
    # "#", "/" and "?" in a password: urlsplit finds no password there (red team)
    assert masked_url("redis://u:Sec#ret@h:1/0") == "redis://u:**@h:1/0"
    assert masked_url("redis://u:Sec/r?et@h:1/0") == "redis://u:**@h:1/0"
    with pytest.raises(ValueError) as refused:
        check_tls_via_settings("rediss://u:s3cret@h:1/0?ssl_cert_reqs=none")
    assert "s3cret" not in str(refused.value)


def check_tls_via_settings(url: str) -> None:
    Settings(redis_url=url)
