"""Certificates of the local control plane verify the way the API server checks them."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from localenv import pki


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_every_certificate_is_signed_by_the_ca(tmp_path: Path) -> None:
    p = pki.create(tmp_path / "pki")
    ca = _cert(p.ca.cert)
    for pair in (p.apiserver, p.admin, p.controller_manager, p.scheduler, p.kwok, p.front_proxy):
        cert = _cert(pair.cert)
        cert.verify_directly_issued_by(ca)
        assert (pair.key.stat().st_mode & 0o777) == 0o600


def test_serving_certificate_names_loopback_and_the_service(tmp_path: Path) -> None:
    p = pki.create(tmp_path / "pki", service_ip="10.96.0.1")
    san = _cert(p.apiserver.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("10.96.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc" in san.get_values_for_type(x509.DNSName)
    eku = _cert(p.apiserver.cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku


def test_client_identities(tmp_path: Path) -> None:
    p = pki.create(tmp_path / "pki")
    admin = _cert(p.admin.cert).subject
    assert admin.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    cm = _cert(p.controller_manager.cert).subject
    assert cm.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:kube-controller-manager"
    eku = _cert(p.scheduler.cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku


def test_service_account_key_pair_matches(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    p = pki.create(tmp_path / "pki")
    private = serialization.load_pem_private_key(p.service_account_key.read_bytes(), None)
    public = serialization.load_pem_public_key(p.service_account_pub.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.public_key().public_numbers() == public.public_numbers()
    assert pki.load(tmp_path / "pki") == p
