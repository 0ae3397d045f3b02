"""Differential test: the generator against the official agent on a corpus of agent configs.

Every config of tests/fixtures/launch-config-corpus.yaml (the W&B docs' examples for each cloud,
the official chart's default, the quirks users hit) goes to both:

- the official agent's own start-up code (official_agent_config.official_verdict: config
  resolution, the pydantic AgentConfig, the LaunchAgent constructor), and
- our generator, as a user runs it: `python -m generator values -c FILE --no-identity` and
  `python -m generator validate FILE`.

Both must agree on accept or refuse. The generator may refuse a config the official agent starts
with only for a reason listed in ALLOWED (every run, or every build, of such an agent fails);
it never accepts a config the official agent refuses. Where the official agent warns at
start-up, the generator warns too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from generator_helpers import REPO, run, write
from official_agent_config import Verdict, official_job_loader_error, official_verdict

CORPUS = yaml.safe_load((REPO / "tests" / "fixtures" / "launch-config-corpus.yaml").read_text())["configs"]


@dataclass(frozen=True)
class Allowed:
    """A refusal of ours for configs the official agent starts with, and why."""

    pattern: str  # matches the generator's error message
    why: str
    loader_fails: bool = False  # the official per-job loaders fail for every run (checked)


ALLOWED = {
    "placeholder": Allowed(
        r"is a placeholder; write the name of your launch queue",
        "a queue named like `<queue-name>` (the docs' and the official chart's placeholder) is left in by "
        "mistake; the official agent starts and then finds no such queue"),
    "environment-type": Allowed(
        r"environment needs a type",
        "environment_from_config raises 'Environment type not specified' before every run", loader_fails=True),
    "builder-type": Allowed(
        r"builder needs a type",
        "builder_from_config raises 'Builder type not specified' before every run", loader_fails=True),
    "region": Allowed(
        r"environment.type (aws|gcp) needs a region",
        "GcpEnvironment.from_config raises 'Missing region' before every run; AwsEnvironment takes the "
        "string 'None' as its region, so every AWS call fails"),
    "kaniko-context": Allowed(
        r"a kaniko builder needs builder.build-context-store",
        "KanikoBuilder takes '' as the store when the key is missing (its own check is dead code), so every "
        "build fails uploading the context; the chart refuses the same values"),
    "kaniko-destination": Allowed(
        r"a kaniko builder needs builder.destination",
        "with no destination and no registry the kaniko builder has a LocalRegistry, which cannot be pushed "
        "to: every build fails"),
    "context-without-environment": Allowed(
        r"uploading a build context needs environment.type",
        "the build context is uploaded through the environment; LocalEnvironment cannot upload, so every "
        "build fails"),
    "store-cloud": Allowed(
        r"store, which needs environment.type",
        "each environment uploads to its own store only (S3 for aws, GCS for gcp, blob for azure): every "
        "build fails"),
    "secret-pair": Allowed(
        r"secret-name and secret-key must be given together",
        "the kaniko builder mounts secret-key of secret-name; with one of them missing every build Job is "
        "invalid"),
    "registry-type": Allowed(
        r"which registry.type \w+ needs",
        "the registry client of registry.type cannot parse a URI of another registry: every run that needs "
        "the registry fails"),
}


def _ours(tmp_path: Path, text: str) -> tuple[bool, list[str], list[str]]:
    """(accepted, error lines, warning lines) of `values` on this config; `validate` must agree."""
    path = write(tmp_path, "launch-config.yaml", text)
    res = run(["values", "-c", path, "--no-identity", "-o", str(tmp_path / "values.yaml")])
    assert "Traceback" not in res.err
    assert res.code in (0, 2), res.err
    checked = run(["validate", "--as", "launch-config", path])
    assert (checked.code == 0) == (res.code == 0), (res.err, checked.err)
    warnings = [line for line in res.lines if ": warning: " in line]
    errors = [line for line in res.lines if ": warning: " not in line and not line.startswith(("wrote ", "note: "))]
    return res.code == 0, errors, warnings


def _reasons(errors: list[str]) -> set[str] | None:
    """The ALLOWED keys that explain every error line, or None if one line is unexplained."""
    found: set[str] = set()
    for line in errors:
        keys = [k for k, a in ALLOWED.items() if re.search(a.pattern, line)]
        if not keys:
            return None
        found.update(keys)
    return found


def test_corpus_is_large_and_covers_each_cloud() -> None:
    assert len(CORPUS) >= 100
    assert len({c["id"] for c in CORPUS}) == len(CORPUS)
    for cloud in ("type: aws", "type: gcp", "type: azure"):
        assert sum(cloud in c["config"] for c in CORPUS) >= 10, cloud
    assert sum(c["source"].startswith("docs") for c in CORPUS) >= 20


@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
def test_generator_agrees_with_the_official_agent(tmp_path: Path, case: dict[str, str]) -> None:
    text = case["config"]
    official: Verdict = official_verdict(text)
    accepted, errors, warnings = _ours(tmp_path, text)
    if official.accepted and official.warnings and accepted:
        assert warnings, f"the official agent warns ({official.warnings}), the generator does not"
    if accepted == official.accepted:
        return
    assert not accepted, f"the generator accepts what the official agent refuses: {official.error}"
    reasons = _reasons(errors)
    assert reasons, f"refused for a reason not listed in ALLOWED: {errors}"
    if any(ALLOWED[k].loader_fails for k in reasons):
        assert official_job_loader_error(yaml.safe_load(text)), "the official loaders accept this config"


def test_agreement_figures() -> None:
    """Most of the corpus is agreed on; the listed disagreements are each used (none is dead)."""
    import tempfile

    agree = 0
    used: set[str] = set()
    verdicts = {True: 0, False: 0}
    with tempfile.TemporaryDirectory() as tmp:
        for case in CORPUS:
            official = official_verdict(case["config"]).accepted
            verdicts[official] += 1
            accepted, errors, _ = _ours(Path(tmp), case["config"])
            if accepted == official:
                agree += 1
            else:
                used |= _reasons(errors) or set()
    assert verdicts[True] >= 40 and verdicts[False] >= 20, verdicts
    assert agree >= 0.8 * len(CORPUS), (agree, len(CORPUS))
    assert used == set(ALLOWED), f"ALLOWED entries no corpus config needs: {set(ALLOWED) - used}"
