"""Job resolution: a run spec's `job` (``entity/project/name:alias``) -> `agent.jobspec.ResolvedJob`,
with the GraphQL operations and fields the official client sends, plain GETs of the direct URLs
W&B hands out, and a cache by artifact id and digest (`JobResolver`)."""

from agent.backend.jobs.document import JobError, parse_job_document, parse_job_name
from agent.backend.jobs.files import DirectUrls
from agent.backend.jobs.prepare import JobStep, builder_type, names_a_job, prepare_job
from agent.backend.jobs.resolver import JobResolver, ResolverStats

__all__ = ["DirectUrls", "JobError", "JobResolver", "JobStep", "ResolverStats", "builder_type", "names_a_job",
           "parse_job_document", "parse_job_name", "prepare_job"]
