"""Our request signing against the official SDKs' (the same request must get the same signature):
AWS Signature V4 (botocore), RS256 (cryptography), Azure Shared Key (azure-storage-blob)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from unittest import mock

import pytest

from agent.build import aws, azure, gcp


@pytest.mark.parametrize(("method", "url", "service", "body"), [
    ("PUT", "https://bkt.s3.eu-west-1.amazonaws.com/builds/a%20b%2Bc.tgz", "s3", b"data"),
    ("PUT", "http://127.0.0.1:9000/bkt/builds/x.tgz", "s3", b""),
    ("HEAD", "https://bkt.s3.eu-west-1.amazonaws.com/", "s3", b""),
    ("POST", "https://api.ecr.eu-west-1.amazonaws.com/", "ecr", b"{}"),
    ("GET", "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", "sts", b""),
])
@pytest.mark.parametrize("token", ["", "session-token"])
def test_sigv4_matches_botocore(method: str, url: str, service: str, body: bytes, token: str) -> None:
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    now = dt.datetime(2026, 11, 30, 12, 34, 56, tzinfo=dt.UTC)
    payload = hashlib.sha256(body).hexdigest()
    headers = {"Content-Type": "application/octet-stream"}
    ours = aws.sign(method, url, headers, payload, aws.Credentials("AKIDEXAMPLE", "secret/key", token), "eu-west-1",
                    service, now=now)
    request = AWSRequest(method=method, url=url, data=body, headers={**headers,
                                                                   "x-amz-content-sha256": payload})
    signer_cls = S3SigV4Auth if service == "s3" else SigV4Auth
    signer = signer_cls(Credentials("AKIDEXAMPLE", "secret/key", token or None), service, "eu-west-1")
    with mock.patch("botocore.auth.get_current_datetime", lambda: now.replace(tzinfo=None)):
        signer.add_auth(request)
    assert ours["Authorization"] == request.headers["Authorization"]


def test_rs256_verifies_with_cryptography() -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()
        signature = gcp.rs256(b"header.claims", pem)
        key.public_key().verify(signature, b"header.claims", padding.PKCS1v15(), hashes.SHA256())


def test_service_account_assertion_is_a_jwt_for_the_token_uri() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    jwt = gcp.service_account_assertion({"client_email": "b@p.iam.gserviceaccount.com", "private_key": pem,
                                         "private_key_id": "k1"}, now=1_700_000_000)
    header, claims, _ = (json.loads(base64.urlsafe_b64decode(p + "==")) if i < 2 else p
                         for i, p in enumerate(jwt.split(".")))
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "k1"}
    assert claims["aud"] == gcp.TOKEN_URI and claims["exp"] - claims["iat"] == 3600


def test_azure_shared_key_matches_the_sdk() -> None:
    from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

    key = base64.b64encode(b"k" * 64).decode()
    url = "https://acct.blob.core.windows.net/ctr/builds/a%20b.tgz?comp=block&blockid=AA%3D%3D"
    headers = {"x-ms-version": azure.API_VERSION, "x-ms-date": "Mon, 30 Nov 2026 12:00:00 GMT",
               "x-ms-blob-type": "BlockBlob", "Content-Type": "application/gzip", "Content-Length": "12"}
    ours = azure.shared_key_authorization("PUT", url, headers, "acct", key)

    class Request:
        def __init__(self) -> None:
            self.method, self.url, self.headers = "PUT", url, dict(headers)
            self.query = {"comp": "block", "blockid": "AA=="}

    class Context:
        transport = None

    class Pipeline:
        http_request = Request()
        context = Context()

    policy = SharedKeyCredentialPolicy("acct", key)
    policy.on_request(Pipeline())  # type: ignore[arg-type]
    assert ours == Pipeline.http_request.headers["Authorization"]
