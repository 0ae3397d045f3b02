"""The servers image builds talk to, real implementations started on one address: an OCI registry
(CNCF distribution), S3/STS/ECR (moto), GCS (fake-gcs-server), Azure blob (Azurite). See
``servers`` (start/stop), ``install`` (pinned, cached installs), ``oci`` (pushing test images),
``pytest_plugin`` (session fixtures)."""
