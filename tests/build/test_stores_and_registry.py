"""The agent's own REST calls (no cloud SDK in the agent) against real servers, read back with the
official SDKs: S3 uploads with static keys and with a web identity (moto's STS), ECR's token,
GCS uploads (fake-gcs-server), Azure blob uploads with the account key and a user-delegation
SAS (Azurite, HTTPS + OAuth), and the registry existence check (CNCF distribution)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from agent.build import aws, azure, gcp, registry
from agent.build.uris import image_ref
from localenv.buildservers import oci, servers

pytestmark = pytest.mark.buildservers
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _archive(tmp_path: Path, size: int = 70_000) -> tuple[Path, str]:
    import hashlib
    import os

    data = os.urandom(size)
    path = tmp_path / "ctx.tgz"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _boto(buildservers: servers.BuildServers, service: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client(service, endpoint_url=buildservers["s3"].url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_s3_upload_with_static_keys_reads_back_with_boto3(buildservers: servers.BuildServers,
                                                           tmp_path: Path) -> None:
    s3 = _boto(buildservers, "s3")
    s3.create_bucket(Bucket="contexts")
    file, digest = _archive(tmp_path)
    env = {**AWS_ENV, "AWS_ENDPOINT_URL_S3": buildservers["s3"].url}

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            chain = aws.CredentialChain(http, env, home=tmp_path)
            await aws.s3_put(http, chain, "contexts", "builds/a b+c.tgz", file, digest, "us-east-1")

    asyncio.run(scenario())
    assert s3.get_object(Bucket="contexts", Key="builds/a b+c.tgz")["Body"].read() == file.read_bytes()


def test_s3_upload_with_a_web_identity_goes_through_sts(buildservers: servers.BuildServers, tmp_path: Path) -> None:
    s3 = _boto(buildservers, "s3")
    s3.create_bucket(Bucket="irsa")
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    env = {"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/launch-agent", "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
           "AWS_ENDPOINT_URL": buildservers["s3"].url}
    file, digest = _archive(tmp_path)

    async def scenario() -> aws.Credentials:
        async with httpx.AsyncClient() as http:
            chain = aws.CredentialChain(http, env, home=tmp_path)
            await aws.s3_put(http, chain, "irsa", "ctx.tgz", file, digest, "us-east-1")
            return await chain.get("us-east-1")

    creds = asyncio.run(scenario())
    assert creds.token and creds.expires > time.time()
    assert s3.get_object(Bucket="irsa", Key="ctx.tgz")["Body"].read() == file.read_bytes()


def test_ecr_authorization_token(buildservers: servers.BuildServers, tmp_path: Path) -> None:
    env = {**AWS_ENV, "AWS_ENDPOINT_URL_ECR": buildservers["s3"].url}

    async def scenario() -> tuple[str, str]:
        async with httpx.AsyncClient() as http:
            return await aws.ecr_login(http, aws.CredentialChain(http, env, home=tmp_path), "us-east-1")

    user, password = asyncio.run(scenario())
    assert user == "AWS" and password


def test_gcs_upload_reads_back_with_google_cloud_storage(buildservers: servers.BuildServers, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", buildservers["gcs"].url)
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    client.create_bucket("gcs-contexts")
    file, _ = _archive(tmp_path)
    env = {"STORAGE_EMULATOR_HOST": buildservers["gcs"].url}

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            await gcp.gcs_upload(http, gcp.TokenSource(http, env), "gcs-contexts", "builds/ctx.tgz", file)

    asyncio.run(scenario())
    assert client.bucket("gcs-contexts").blob("builds/ctx.tgz").download_as_bytes() == file.read_bytes()


def _azure_client(buildservers: servers.BuildServers):  # type: ignore[no-untyped-def]
    from azure.storage.blob import BlobServiceClient

    server = buildservers["azure"]
    return BlobServiceClient(server.url, credential={"account_name": servers.AZURITE_ACCOUNT,
                                                     "account_key": servers.AZURITE_KEY},
                             connection_verify=server.extra["ca"])


def test_azure_upload_with_the_account_key(buildservers: servers.BuildServers, tmp_path: Path) -> None:
    client = _azure_client(buildservers)
    client.create_container("keyed")
    file, _ = _archive(tmp_path)
    server = buildservers["azure"]
    env = {"LAUNCH_AGENT_AZURE_BLOB_ENDPOINT": server.url, "AZURE_STORAGE_ACCESS_KEY": servers.AZURITE_KEY}

    async def scenario() -> None:
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=server.extra["ca"])) as http:
            await azure.put_blob(http, azure.AzureIdentity(http, env), "ignored", "keyed", "b/ctx.tgz", file)

    asyncio.run(scenario())
    assert client.get_blob_client("keyed", "b/ctx.tgz").download_blob().readall() == file.read_bytes()


def _unsigned_jwt() -> str:
    """A token Azurite's OAuth ``basic`` mode accepts (it checks audience, issuer and times, not keys)."""
    now = int(time.time())
    claims = {"aud": "https://storage.azure.com", "iss": "https://sts.windows.net/ab1f708d-50f6-404c-a006-d71b2ac7a606/",
              "iat": now - 60, "nbf": now - 60, "exp": now + 3600, "oid": "0b7a7d46-0c6b-4a4c-9b1b-1c4d6c0a9d11",
              "tid": "ab1f708d-50f6-404c-a006-d71b2ac7a606"}

    def enc(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'RS256', 'typ': 'JWT'})}.{enc(claims)}.c2lnbmF0dXJl"


def test_azure_upload_with_a_token_and_a_read_only_user_delegation_sas(buildservers: servers.BuildServers,
                                                                       tmp_path: Path) -> None:
    client = _azure_client(buildservers)
    client.create_container("sas")
    file, _ = _archive(tmp_path)
    server = buildservers["azure"]
    env = {"LAUNCH_AGENT_AZURE_BLOB_ENDPOINT": server.url}

    async def scenario() -> tuple[str, int, int]:
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=server.extra["ca"])) as http:
            identity = azure.AzureIdentity(http, env)
            identity._token, identity._expires = _unsigned_jwt(), time.time() + 3600  # the token exchange is Entra's
            await azure.put_blob(http, identity, "acct", "sas", "ctx.tgz", file)
            url = await azure.read_sas_url(http, identity, "acct", "sas", "ctx.tgz", lifetime=600)
            async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=server.extra["ca"])) as anonymous:
                got = await anonymous.get(url)
                write = await anonymous.put(url, content=b"x", headers={"x-ms-blob-type": "BlockBlob"})
                tampered = await anonymous.get(url.replace("sp=r", "sp=rw"))
            assert got.content == file.read_bytes()
            return url, write.status_code, tampered.status_code

    url, write_status, tampered_status = asyncio.run(scenario())
    assert "sig=" in url and "sp=r" in url
    assert write_status == 403  # read-only
    assert tampered_status == 403  # the signature covers the permissions


def test_registry_existence_for_anonymous_and_basic_auth_registries(buildservers: servers.BuildServers,
                                                                    auth_registry: servers.Server) -> None:
    layer = oci.layer_from_files({"hello.txt": b"hi\n"})
    oci.push(buildservers["registry"].url, "team/app", "abc12345", layer)
    oci.push(auth_registry.url, "team/private", "v1", layer, auth=("pusher", "s3cret"))
    plain = registry.Transport(plain_http=True)
    open_host = buildservers["registry"].url.removeprefix("http://")
    auth_host = auth_registry.url.removeprefix("http://")
    config = {"auths": {auth_host: {"auth": base64.b64encode(b"pusher:s3cret").decode()}}}
    wrong = {"auths": {auth_host: {"username": "pusher", "password": "nope"}}}

    async def scenario() -> list[object]:
        async with httpx.AsyncClient() as http:
            out: list[object] = [
                await registry.image_exists(http, image_ref(f"{open_host}/team/app", "abc12345"), None, plain),
                await registry.image_exists(http, image_ref(f"{open_host}/team/app", "missing0"), None, plain),
                await registry.image_exists(http, image_ref(f"{auth_host}/team/private", "v1"),
                                            registry.docker_config_login(config), plain),
                await registry.image_exists(http, image_ref(f"{auth_host}/team/private", "v2"),
                                            registry.docker_config_login(config), plain),
            ]
            for login in (None, registry.docker_config_login(wrong)):
                try:
                    await registry.image_exists(http, image_ref(f"{auth_host}/team/private", "v1"), login, plain)
                    out.append("no error")
                except registry.RegistryError as exc:
                    out.append(str(exc))
            return out

    found, missing, private, private_missing, no_creds, bad_creds = asyncio.run(scenario())
    assert (found, missing, private, private_missing) == (True, False, True, False)
    assert "asks for credentials" in str(no_creds)
    assert "401" in str(bad_creds)
