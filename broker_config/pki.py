"""A small X.509 PKI for the broker: CA, server/client certificates and the CRL.

Everything uses ``cryptography`` (no openssl shell-outs). Keys are EC P-256.
Secret files are created with mode 0600 from the start (``os.open``), never
chmod-ed afterwards, and every file is written to a temporary name then
renamed so that a crash never leaves a half-written key or CRL in place.

Layout of a CA directory (see :class:`CaPaths`)::

    ca.pem  ca.key  crl.pem  issued/<common-name>.pem
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
HMAC_KEY_BYTES = 32


class PkiError(RuntimeError):
    """A CA, certificate or key that cannot be read, or an impossible request."""


def utcnow() -> dt.datetime:
    """The current time, timezone-aware (certificates use UTC)."""
    return dt.datetime.now(dt.UTC)


# --------------------------------------------------------------------------- files


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    # The temp file lives next to the target so os.replace stays on one filesystem;
    # mkstemp creates it with 0600, which is what secret files need from the start.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode != SECRET_MODE:
            os.fchmod(fd, mode)  # widening a fresh, still-empty file leaks nothing
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_secret(path: Path, data: bytes) -> None:
    """Write a private key or secret: mode 0600 from creation, atomically."""
    _atomic_write(path, data, SECRET_MODE)


def write_public(path: Path, data: bytes) -> None:
    """Write a certificate or CRL (world-readable), atomically."""
    _atomic_write(path, data, PUBLIC_MODE)


def new_hmac_key() -> bytes:
    """A fresh per-device HMAC-SHA256 key (32 random bytes)."""
    return secrets.token_bytes(HMAC_KEY_BYTES)


def hmac_key_file_bytes(key: bytes) -> bytes:
    """The on-disk form of an HMAC key: 64 lowercase hex characters and a newline."""
    return key.hex().encode() + b"\n"


# --------------------------------------------------------------------------- keys & certs


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM: devices and Mosquitto start unattended, the file mode protects it."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM encoding of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organization: str = "Vigie") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def common_name(cert: x509.Certificate) -> str:
    """The subject CN of ``cert`` (what Mosquitto uses as the username)."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        raise PkiError("le certificat n'a pas de nom commun (CN)")
    return str(attrs[0].value)


@dataclass(frozen=True)
class Validity:
    """A certificate's validity window (UTC)."""

    not_before: dt.datetime
    not_after: dt.datetime

    @classmethod
    def days(cls, days: int, *, backdate: dt.timedelta = dt.timedelta(minutes=5)) -> Validity:
        """Valid from a few minutes ago (clock skew on devices) for ``days`` days."""
        if days <= 0:
            raise PkiError("la validité doit être d'au moins un jour")
        now = utcnow()
        return cls(now - backdate, now + dt.timedelta(days=days))


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, name: str = "Vigie device CA", validity_days: int = 3650) -> CertificateAuthority:
        """Create a self-signed CA allowed to sign end-entity certificates and CRLs only."""
        key = new_private_key()
        subject = _name(name)
        validity = Validity.days(validity_days)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(validity.not_before)
            .not_valid_after(validity.not_after)
            # path_length 0: this CA cannot mint intermediate CAs.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def from_pem(cls, cert_data: bytes, key_data: bytes) -> CertificateAuthority:
        """Load an existing CA; the key must match the certificate and be EC."""
        try:
            cert = x509.load_pem_x509_certificate(cert_data)
            key = serialization.load_pem_private_key(key_data, password=None)
        except (ValueError, TypeError) as exc:
            raise PkiError(f"certificat ou clé de l'AC illisible : {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError("la clé de l'AC doit être une clé privée EC")
        if key.public_key().public_numbers() != _ec_public(cert).public_numbers():
            raise PkiError("la clé de l'AC ne correspond pas à son certificat")
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            raise PkiError("le certificat de l'AC n'est pas celui d'une AC (basicConstraints ca=false)")
        return cls(cert, key)

    def issue(
        self,
        cn: str,
        *,
        validity: Validity,
        client: bool,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """Issue an end-entity certificate and its new key.

        ``client`` selects the clientAuth EKU (devices, dispatcher) instead of
        serverAuth (the broker): a device certificate can never pose as the
        broker and the broker's certificate can never log in as a client.
        """
        key = new_private_key()
        eku = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(validity.not_before)
            .not_valid_after(validity.not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(self._authority_key_id(), critical=False)
        )
        sans = _subject_alt_names(dns_names, ip_addresses)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key

    def crl(
        self, revoked: Iterable[tuple[int, dt.datetime]], *, number: int, next_update_days: int
    ) -> x509.CertificateRevocationList:
        """Sign a CRL listing ``(serial, revocation time)`` pairs."""
        now = utcnow()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=next_update_days))
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(self._authority_key_id(), critical=False)
        )
        for serial, when in revoked:
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            builder = builder.add_revoked_certificate(entry)
        return builder.sign(self.key, hashes.SHA256())

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())


def _ec_public(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise PkiError("le certificat de l'AC ne porte pas de clé publique EC")
    return public


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _subject_alt_names(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    try:
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    except ValueError as exc:
        raise PkiError(str(exc)) from None
    return names


def split_hosts(hosts: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split broker host names into (DNS names, IP addresses) for the SAN."""
    dns: list[str] = []
    ips: list[str] = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            dns.append(host)
        else:
            ips.append(host)
    return dns, ips


# --------------------------------------------------------------------------- CA directory


@dataclass(frozen=True)
class CaPaths:
    """Where a CA directory keeps its files."""

    root: Path

    @property
    def cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def key(self) -> Path:
        return self.root / "ca.key"

    @property
    def crl(self) -> Path:
        return self.root / "crl.pem"

    @property
    def issued(self) -> Path:
        """Copies of every issued client certificate, by CN: revocation needs their serials."""
        return self.root / "issued"

    def issued_cert(self, cn: str) -> Path:
        return self.issued / f"{cn}.pem"


def load_ca(paths: CaPaths) -> CertificateAuthority:
    """Read the CA certificate and key; any problem is a :class:`PkiError`."""
    try:
        cert_data = paths.cert.read_bytes()
        key_data = paths.key.read_bytes()
    except OSError as exc:
        raise PkiError(
            f"impossible de lire l'AC dans {paths.root} : {exc.strerror} ({exc.filename})"
        ) from None
    return CertificateAuthority.from_pem(cert_data, key_data)


def save_ca(paths: CaPaths, ca: CertificateAuthority, *, next_update_days: int) -> None:
    """Write a new CA directory with an empty CRL (Mosquitto's crlfile must exist)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.issued.mkdir(exist_ok=True)
    write_secret(paths.key, key_pem(ca.key))
    write_public(paths.cert, cert_pem(ca.cert))
    write_crl(paths, ca.crl([], number=1, next_update_days=next_update_days))


def write_crl(paths: CaPaths, crl: x509.CertificateRevocationList) -> None:
    """Write the CRL atomically (Mosquitto may read it at any moment)."""
    write_public(paths.crl, crl.public_bytes(serialization.Encoding.PEM))


def load_crl(paths: CaPaths) -> x509.CertificateRevocationList:
    """Read the CA's current CRL."""
    try:
        return x509.load_pem_x509_crl(paths.crl.read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"impossible de lire la LCR {paths.crl} : {exc}") from None


def crl_number(crl: x509.CertificateRevocationList) -> int:
    """The CRLNumber extension of ``crl`` (0 if absent)."""
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0


def reissue_crl(
    paths: CaPaths, ca: CertificateAuthority, add_serials: Iterable[int], *, next_update_days: int
) -> x509.CertificateRevocationList:
    """Re-sign the CRL with ``add_serials`` added (idempotent) and a fresh nextUpdate.

    Also the way to refresh the CRL before it expires: OpenSSL refuses every
    client once nextUpdate has passed.
    """
    current = load_crl(paths)
    revoked = {r.serial_number: r.revocation_date_utc for r in current}
    now = utcnow()
    for serial in add_serials:
        revoked.setdefault(serial, now)
    crl = ca.crl(sorted(revoked.items()), number=crl_number(current) + 1, next_update_days=next_update_days)
    write_crl(paths, crl)
    return crl


def load_cert(path: Path) -> x509.Certificate:
    """Read a PEM certificate."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"impossible de lire le certificat {path} : {exc}") from None
