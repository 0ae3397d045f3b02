"""In-cluster image builds with Kaniko: the build context, context stores (S3, GCS, Azure blob, a
PVC), the registry existence check, the build Job.

    from agent.build.settings import kaniko_settings
    from agent.build.builder import Builder
    settings = kaniko_settings(agent_config, os.environ)        # None for the noop builder
    builder = Builder(settings, manifest_settings, kube, Clouds.create(http), workdir, log)
    prepared = await builder.prepare(BuildSource(...))         # ready, or the build Job's name
    state, message, packages = await builder.outcome(job)       # when the (watched) Job changes

Modules: ``source`` (what a build starts from), ``dockerfile`` (choose or generate),
``context`` (archive, tag), ``stores`` (S3/GCS/Azure/PVC uploads), ``aws`` / ``gcp`` / ``azure``
(the REST calls and identities, no cloud SDKs), ``registry`` (OCI existence check), ``uris``
(registry and store URIs; the generator imports them), ``job`` (the build Job), ``status``
(its outcome), ``settings`` (config -> settings, start-up refusals), ``builder`` (all of it).
Importing this package imports nothing else, so the generator can use ``uris`` alone.
"""
