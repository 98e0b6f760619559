"""A private certificate authority for the system's TLS: the CA, Redis's server certificate and
one client certificate per process role or vehicle.

Built on ``cryptography`` (the ``tls`` extra: ``pip install 'oodida[tls]'``), imported only
here. Keys are ECDSA P-256; certificates are X.509 v3 with the usual extensions: the CA is a
CA (path length 0), a server certificate names its hosts and IP addresses (redis-py checks the
host name by default), a client certificate is for client authentication only. The CA's
private key is written once, mode 0600, and is needed only to issue more certificates: keep it
off the machines that run the system (docs/OPERATORS.md, "A vehicle on another network").
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oodida_core.protocol.errors import OodidaError

CA_DAYS = 3650
LEAF_DAYS = 825  # the longest a public CA may issue; renew with `oodida fleet add-vehicle`


def _crypto() -> Any:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise OodidaError(
            "TLS certificates need the 'cryptography' package: pip install 'oodida[tls]'"
        ) from None
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    """Paths of one certificate and its private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    """A CA on disk: ``ca.pem`` (public, given to every process) and ``ca.key`` (secret)."""

    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: str | os.PathLike[str], name: str = "OODIDA private CA") -> Authority:
        """A new CA in ``directory`` (refused if one is there: it would orphan the issued ones)."""
        x509, hashes, serialization, ec, _eku, NameOID = _crypto()
        root = Path(directory)
        cert_path, key_path = root / "ca.pem", root / "ca.key"
        if cert_path.exists() or key_path.exists():
            raise OodidaError(f"{root} already has a CA (ca.pem/ca.key); use it or remove it first")
        root.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_key(key_path, key, serialization)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(cert_path, key_path)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Authority:
        root = Path(directory)
        found = cls(root / "ca.pem", root / "ca.key")
        if not (found.cert.is_file() and found.key.is_file()):
            raise OodidaError(f"no CA in {root} (ca.pem and ca.key): make one first")
        return found

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> Authority:
        """The CA in ``directory``, made there first if there is none."""
        root = Path(directory)
        return cls.load(root) if (root / "ca.pem").exists() else cls.create(root)

    def issue_server(
        self, cert: str | os.PathLike[str], key: str | os.PathLike[str], hosts: Iterable[str]
    ) -> Issued:
        """A server certificate for ``hosts`` (DNS names and IP addresses)."""
        names = list(dict.fromkeys(hosts))
        if not names:
            raise OodidaError("a server certificate needs at least one host name or IP address")
        return self._issue(Path(cert), Path(key), names[0], names, server=True)

    def issue_client(self, cert: str | os.PathLike[str], key: str | os.PathLike[str], name: str) -> Issued:
        """A client certificate whose subject is ``name`` (a role or a vehicle)."""
        return self._issue(Path(cert), Path(key), name, [], server=False)

    def _issue(
        self, cert_path: Path, key_path: Path, common_name: str, hosts: list[str], server: bool
    ) -> Issued:
        x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID = _crypto()
        ca_key = serialization.load_pem_private_key(self.key.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
            )
        )
        if hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(_alt_names(x509, hosts)), critical=False
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        key_path.parent.mkdir(parents=True, exist_ok=True)
        _write_key(key_path, key, serialization)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return Issued(cert_path, key_path)


def private_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as a directory only this user may enter (made 0700 if missing); OodidaError when
    it exists but belongs to another user or others may write to it: a CA planted there by
    someone else would be trusted (found by a red team)."""
    root = Path(path)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = root.stat()
    if info.st_uid != os.geteuid():
        raise OodidaError(f"{root} belongs to uid {info.st_uid}, not to this user: refusing its keys")
    if info.st_mode & 0o022:
        raise OodidaError(f"{root} is writable by others (mode {info.st_mode & 0o777:o}): refusing its keys")
    root.chmod(0o700)
    return root


def _alt_names(x509: Any, hosts: list[str]) -> list[Any]:
    out: list[Any] = []
    for host in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def _write_key(path: Path, key: Any, serialization: Any) -> None:
    """A private key, unencrypted PEM, created with mode 0600 (never readable by others on the
    way; a later chmod may widen it for a container's user)."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
