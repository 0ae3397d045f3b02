"""Certificates and keys for a local control plane, made with ``cryptography``.

One self-signed CA signs the API server's serving certificate and the client certificates of
the admin and of each component; a separate key pair signs ServiceAccount tokens. ECDSA P-256
keeps generation fast.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)
# The identity the API server uses towards aggregated API servers (request-header auth).
FRONT_PROXY_NAME = "front-proxy-client"
# The API server's identity towards kubelets (logs, exec): bound to system:kubelet-api-admin only.
KUBELET_CLIENT_NAME = "localenv-apiserver-kubelet-client"


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPKI:
    ca: CertPair
    apiserver: CertPair
    admin: CertPair
    controller_manager: CertPair
    scheduler: CertPair
    kwok: CertPair
    front_proxy: CertPair
    kubelet_client: CertPair
    service_account_key: Path
    service_account_pub: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _make_ca(directory: Path) -> tuple[CertPair, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _new_key()
    name = _name("launch-agent-localenv-ca")
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pair = CertPair(directory / "ca.crt", directory / "ca.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pair.key)
    return pair, key, cert


def _issue(
    directory: Path,
    stem: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    organization: str | None = None,
    server_names: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
) -> CertPair:
    key = _new_key()
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if (server_names or server_ips) else [ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (
        _builder(_name(common_name, organization), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=False, key_cert_sign=False, crl_sign=False,
                content_commitment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server_names or server_ips:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    pair = CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pair.key)
    return pair


def create(directory: Path, service_ip: str = "10.96.0.1") -> ClusterPKI:
    """Write a fresh CA, serving and client certificates and the ServiceAccount key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca, ca_key, ca_cert = _make_ca(directory)
    names = (
        "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    )
    apiserver = _issue(directory, "apiserver", ca_key, ca_cert, "kube-apiserver",
                       server_names=names, server_ips=("127.0.0.1", service_ip))
    admin = _issue(directory, "admin", ca_key, ca_cert, "localenv-admin", "system:masters")
    cm = _issue(directory, "controller-manager", ca_key, ca_cert, "system:kube-controller-manager")
    sched = _issue(directory, "scheduler", ca_key, ca_cert, "system:kube-scheduler")
    kwok = _issue(directory, "kwok", ca_key, ca_cert, "localenv-kwok", "system:masters")
    front_proxy = _issue(directory, "front-proxy-client", ca_key, ca_cert, FRONT_PROXY_NAME)
    kubelet_client = _issue(directory, "apiserver-kubelet-client", ca_key, ca_cert, KUBELET_CLIENT_NAME)

    sa_key = _new_key()
    sa_key_path = directory / "sa.key"
    sa_pub_path = directory / "sa.pub"
    _write_key(sa_key, sa_key_path)
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ClusterPKI(ca, apiserver, admin, cm, sched, kwok, front_proxy, kubelet_client, sa_key_path, sa_pub_path)


def server_certificate(directory: Path, stem: str, names: tuple[str, ...] = (),
                       ips: tuple[str, ...] = ()) -> tuple[CertPair, CertPair]:
    """A fresh CA and one serving certificate it signed (for a test server speaking HTTPS)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key, ca_cert = _make_ca(directory)
    return ca, _issue(directory, stem, ca_key, ca_cert, stem, server_names=names, server_ips=ips)


def load(directory: Path) -> ClusterPKI:
    """The paths of a PKI written by :func:`create` (files are not re-read)."""

    def pair(stem: str) -> CertPair:
        return CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")

    return ClusterPKI(
        pair("ca"), pair("apiserver"), pair("admin"), pair("controller-manager"), pair("scheduler"),
        pair("kwok"), pair("front-proxy-client"), pair("apiserver-kubelet-client"),
        directory / "sa.key", directory / "sa.pub",
    )


def create_serving(directory: Path, common_name: str, server_names: tuple[str, ...] = ("localhost",),
                   server_ips: tuple[str, ...] = ("127.0.0.1",)) -> tuple[CertPair, CertPair]:
    """A fresh CA and one serving certificate it signs (for loopback servers that speak TLS)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key, ca_cert = _make_ca(directory)
    return ca, _issue(directory, "server", ca_key, ca_cert, common_name, server_names=server_names,
                      server_ips=server_ips)


def issue(ca_dir: Path, out_dir: Path, stem: str, common_name: str, organization: str | None = None,
          server_ips: tuple[str, ...] = ()) -> CertPair:
    """One more certificate signed by the CA in *ca_dir* (a client one unless *server_ips*)."""
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _issue(out_dir, stem, ca_key, ca_cert, common_name, organization, server_ips=server_ips)
