"""Command line of the generator (argparse). Bad input: one line per problem on stderr, exit 2."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from generator.problems import InputError

EXIT_BAD_INPUT = 2


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, metavar="LAUNCH_CONFIG",
                   help="the agent config (launch-config.yaml)")
    p.add_argument("-q", "--queue-config", dest="queues", action="append", default=[], metavar="QUEUE_CONFIG",
                   help="a queue's Kubernetes resource config (repeat for each queue)")
    p.add_argument("--namespace", help="namespace of the agent (default: the release namespace); queues without "
                                       "a namespace launch here")
    p.add_argument("--plural", action="append", default=[], metavar="KIND=PLURAL",
                   help="resource plural of a custom resource kind the built-in table does not know "
                        "(KIND or KIND.GROUP)")
    p.add_argument("--agent-image", metavar="IMAGE",
                   help="agent image; wandb/launch-agent[:tag] selects the official agent's needs")


def _config_keys() -> str:
    """The agent config keys and their meaning, from schemas/launch-config.schema.json."""
    import textwrap

    import schemas

    lines = ["agent config keys (launch-config.yaml):"]
    for key, sub in schemas.load("launch-config")["properties"].items():
        text = f"{key}: {sub.get('description', '')}"
        lines.extend(textwrap.wrap(text, width=100, initial_indent="  ", subsequent_indent="      "))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m generator",
        description="Derive a least-privilege values.yaml for charts/launch-agent from a W&B launch agent "
                    "config and queue configs, and check such files.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("values", help="write values.yaml from an agent config and queue configs",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_config_keys(),
                       description="Write a complete, commented values.yaml: the agent config as launchConfig, "
                                   "target namespaces and RBAC from the queue configs, workload identity for "
                                   "environment.type, and references to the secrets it needs.")
    _add_common(v)
    v.add_argument("--release", default="launch-agent", help="Helm release name (default: launch-agent)")
    key = v.add_mutually_exclusive_group()
    key.add_argument("--api-key-secret", metavar="NAME",
                     help="existing Secret (key `password`) with the W&B API key (default: wandb-api-key)")
    key.add_argument("--api-key-env", metavar="VAR",
                     help="read the W&B API key from this environment variable (needs --inline-secrets)")
    v.add_argument("--base-url", metavar="URL", help="W&B API URL of a dedicated or self-hosted server")
    ident = v.add_mutually_exclusive_group()
    ident.add_argument("--identity", metavar="VALUE",
                       help="workload identity: aws role ARN, gcp service-account email or azure client id")
    ident.add_argument("--no-identity", action="store_true",
                       help="no workload identity: cloud credentials come from secrets")
    v.add_argument("--security-level", choices=("baseline", "restricted", "privileged"),
                   help="Pod Security Standard the agent enforces on runs (chart default: baseline); queue "
                        "configs that break it are refused now")
    v.add_argument("--per-user-keys", action="store_true",
                   help="give runs that carry their own W&B API key a Secret of their own (agent.perUserApiKeys; "
                        "grants secrets create in target namespaces)")
    v.add_argument("--inline-secrets", action="store_true",
                   help="allow writing secrets read from environment variables into values.yaml")
    v.add_argument("--kaniko-pvc", metavar="NAME", help="PersistentVolumeClaim for kaniko build contexts")
    v.add_argument("--kaniko-docker-config-secret", metavar="NAME",
                   help="Secret with a docker config.json kaniko pushes with")
    git = v.add_mutually_exclusive_group()
    git.add_argument("--git-creds-secret", metavar="NAME",
                     help="existing Secret with .git-credentials and .gitconfig")
    git.add_argument("--git-creds-env", metavar="VAR",
                     help="read git credentials from this environment variable (needs --inline-secrets)")
    v.add_argument("--azure-storage-key-env", metavar="VAR",
                   help="read the Azure storage key for kaniko contexts from this variable (needs --inline-secrets)")
    out = v.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", metavar="FILE", help="write values to FILE (default: stdout)")
    out.add_argument("--update", metavar="FILE",
                     help="rewrite only the generated keys of an existing values file, keeping the rest")

    val = sub.add_parser("validate", help="check agent configs, queue configs and values files",
                         description="Check files against schemas/ and each other; print every problem as "
                                     "FILE:LINE:COL: key.path: message.")
    val.add_argument("files", nargs="+", metavar="FILE")
    val.add_argument("--as", dest="kind", choices=("launch-config", "queue-config", "values"),
                     help="treat every FILE as this kind (default: detected from its keys)")

    q = sub.add_parser("queue", help="print the Kubernetes objects the agent would submit for a queue",
                       description="Print the exact objects the agent creates for one run on this queue, "
                                   "built by the agent's own manifest code.")
    q.add_argument("-q", "--queue-config", dest="queue", required=True, metavar="QUEUE_CONFIG")
    q.add_argument("-c", "--config", metavar="LAUNCH_CONFIG", help="agent config (entity, secure_mode)")
    q.add_argument("--image", default="registry.example.com/launch/run:latest", help="the run's image")
    q.add_argument("--run-id", default="preview1", help="the run id")
    q.add_argument("--entity", help="the run's entity (default: the config's, else 'entity')")
    q.add_argument("--project", default="project", help="the run's project")
    q.add_argument("--run-name", default="", help="the run's name")
    q.add_argument("--author", default="", help="the run's author")
    q.add_argument("--item-id", default="preview-item", help="the run-queue item id")
    q.add_argument("--queue-name", help="the queue's name (default: the file name)")
    q.add_argument("--namespace", default="default", help="namespace of the agent (default: default)")
    q.add_argument("--release", default="launch-agent", help="Helm release name, the agent's identity")
    q.add_argument("--api-key-secret", default="wandb-api-key", help="Secret with the W&B API key")
    q.add_argument("--security-level", default="baseline", choices=("baseline", "restricted", "privileged"),
                   help="Pod Security Standard the agent enforces (default: baseline)")

    r = sub.add_parser("rbac", help="print the verbs and resources the agent holds per namespace, and why",
                       description="Print, per namespace, the RBAC the chart and the generated values grant "
                                   "the agent, with the queue or builder that needs each rule.")
    _add_common(r)
    r.add_argument("--format", choices=("text", "json"), default="text", help="output format")

    s = sub.add_parser("schema", help="write the chart's values.schema.json and README table from schemas/",
                       description="Regenerate charts/launch-agent/values.schema.json and the README values "
                                   "table from schemas/values.schema.json.")
    s.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files are out of date")
    return parser


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        if args.command == "values":
            from generator.commands import cmd_values
            return cmd_values(args, env, out, err, argv if argv is not None else sys.argv[1:])
        if args.command == "validate":
            from generator.commands import cmd_validate
            return cmd_validate(args, out, err)
        if args.command == "queue":
            from generator.commands import cmd_queue
            return cmd_queue(args, out, err)
        if args.command == "rbac":
            from generator.commands import cmd_rbac
            return cmd_rbac(args, out, err)
        from generator.commands import cmd_schema
        return cmd_schema(args, out, err)
    except InputError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        return EXIT_BAD_INPUT


def command_line(argv: Sequence[str]) -> str:
    return "python -m generator " + " ".join(shlex.quote(a) for a in argv)
