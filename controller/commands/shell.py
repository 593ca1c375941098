"""``p4ft shell``: p4runtime-shell attached to the running switch, with the pipeline's P4Info.

p4runtime-shell pins protobuf 3.20 (pure Python), which cannot share a venv with the
controller's protobuf 6, so it runs in its own process from ``.venv-shell`` (scripts/setup.sh
creates it). It is given ``--config P4INFO,JSON`` only when the switch has no pipeline yet (or
with ``--push``): pushing one commits a new pipeline, which wipes every table, offloaded flows
included. Otherwise the shell reads the P4Info the switch runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import grpc
from finsy.proto import p4r, p4r_grpc

from controller.edges.pipeline_files import NoPipeline, pipeline_files
from ndo.p4runtime.schema import REPO, Pipeline

SHELL_VENV = REPO / ".venv-shell"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("shell", help="p4runtime-shell on the running switch",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, metavar="ROUTER.TOML",
                        help="take the switch address and device id from a router config")
    parser.add_argument("--grpc-addr", metavar="HOST:PORT",
                        help="P4Runtime address (default: the config's, else 127.0.0.1:9559)")
    parser.add_argument("--device-id", type=int,
                        help="device id (default: the config's, else 0 as BMv2)")
    parser.add_argument("--election-id", default="0,2", metavar="HI,LO",
                        help="the shell's election id (default 0,2: above a controller at 1, "
                             "so the shell is primary while it runs; 0,0 only watches)")
    parser.add_argument("--p4info", type=Path, help="flowtable.p4's P4Info (default: the tree's)")
    parser.add_argument("--json", type=Path, help="flowtable.p4's BMv2 JSON (default: the tree's)")
    parser.add_argument("--push", action="store_true",
                        help="push the pipeline even if one runs (wipes every table)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        argv = shell_command(args)
    except ShellError as exc:
        print(f"p4ft shell: {exc}", file=sys.stderr)
        return 1
    return subprocess.run(argv, check=False).returncode


class ShellError(Exception):
    """Why the shell cannot start; printed as is."""


def shell_command(args: argparse.Namespace) -> list[str]:
    """The p4runtime-shell command line for ``args`` (asks the switch whether it has a pipeline)."""
    python = SHELL_VENV / "bin" / "python"
    if not python.exists():
        raise ShellError(f"p4runtime-shell's venv {SHELL_VENV} is missing: run scripts/setup.sh")
    address, device_id = _switch(args)
    hi, sep, lo = args.election_id.partition(",")
    if not (sep and hi.isdigit() and lo.isdigit()):
        raise ShellError(f"--election-id must be HI,LO (two integers), not {args.election_id!r}")
    argv = [str(python), "-m", "p4runtime_sh", "--grpc-addr", address, "--device-id",
            str(device_id), "--election-id", args.election_id]
    loaded = _pipeline_cookie(address, device_id)
    if args.push or loaded is None:
        p4info, device_config = _pipeline_files(args)
        argv += ["--config", f"{p4info},{device_config}"]
    elif args.p4info and args.json and loaded != Pipeline.load(args.p4info, args.json).cookie:
        print("p4ft shell: the switch runs another pipeline than the files given; attaching to "
              "it (use --push to replace it)", file=sys.stderr)
    return argv


def _switch(args: argparse.Namespace) -> tuple[str, int]:
    address, device_id = "127.0.0.1:9559", 0
    if args.config is not None:
        from controller.config import ConfigError, load_config

        try:
            switch = load_config(args.config).switch
        except ConfigError as exc:
            raise ShellError(str(exc)) from exc
        address, device_id = switch.address, switch.device_id
    return args.grpc_addr or address, device_id if args.device_id is None else args.device_id


def _pipeline_files(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.p4info and args.json:
        files = (args.p4info, args.json)
    else:
        try:
            found = pipeline_files()
        except NoPipeline as exc:
            raise ShellError(f"{exc}, or give --p4info and --json") from exc
        files = (args.p4info or found[0], args.json or found[1])
    for path in files:
        if not path.exists():
            raise ShellError(f"{path}: no such file")
    return files


def _pipeline_cookie(address: str, device_id: int) -> int | None:
    """The loaded pipeline's cookie (0 if it has none), None when the switch has no pipeline."""
    request = p4r.GetForwardingPipelineConfigRequest(
        device_id=device_id,
        response_type=p4r.GetForwardingPipelineConfigRequest.P4INFO_AND_COOKIE)
    with grpc.insecure_channel(address) as channel:
        try:
            reply = p4r_grpc.P4RuntimeStub(channel).GetForwardingPipelineConfig(request,
                                                                                timeout=5)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            if code == grpc.StatusCode.FAILED_PRECONDITION:  # PI: no pipeline config set
                return None
            raise ShellError(f"cannot reach the switch at {address} (device {device_id}): "
                             f"{code.name}: {exc.details()}") from None  # type: ignore[attr-defined]
    return reply.config.cookie.cookie if reply.config.HasField("p4info") else None
