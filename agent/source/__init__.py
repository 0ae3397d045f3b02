"""A job's source, materialized into a directory: the files of its code artifact or the tree of
its git commit, and the job artifact's own files under `.job/` (`materialize`). Used by
``python -m agent fetch-source`` (the init container of code jobs), by the agent itself for the
code PVC, and by image builds for their context."""

from agent.source.git import GitError, GitRemote, read_credentials
from agent.source.materialize import SourceError, materialize, parse_artifact_ref

__all__ = ["GitError", "GitRemote", "SourceError", "materialize", "parse_artifact_ref", "read_credentials"]
