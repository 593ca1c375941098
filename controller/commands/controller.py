"""``p4ft controller --config FILE [--config FILE2 ...]``: run the controller daemon.

Each config is one switch with its own router, conntrack and ruleset. The pipeline
(flowtable.p4's compiled JSON and P4Info) is pushed unless ``--no-push`` or the switch already
runs it. SIGINT/SIGTERM stop it cleanly and leave offloaded flows in hardware.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from controller.edges.control import DEFAULT_PATH

if TYPE_CHECKING:
    from controller.config import RouterConfig
    from controller.edges.daemon import SwitchSession

DEFAULT_STATE_DIR = Path("/var/lib/p4ft")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("controller", help="run the controller daemon",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", required=True, type=Path, metavar="FILE",
                        help="router TOML (repeat for several switches)")
    parser.add_argument("--no-push", action="store_true",
                        help="do not push the pipeline (the switch already runs flowtable.p4)")
    parser.add_argument("--control", type=Path, default=DEFAULT_PATH, metavar="PATH",
                        help=f"control socket for the CLI (default {DEFAULT_PATH})")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, metavar="DIR",
                        help="where offloaded entries are recorded across restarts "
                             f"(default {DEFAULT_STATE_DIR})")
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="serve Prometheus metrics on this loopback address")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(func=run)


def _metrics_address(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]") or not port.isdigit():
        raise ValueError(f"--metrics {text}: give a loopback HOST:PORT such as 127.0.0.1:9100")
    return host.strip("[]"), int(port)


def session_class(config: RouterConfig) -> type[SwitchSession]:
    """The one place that knows every kind of session: ``[kernel]`` configs run kernel mode
    (a Linux namespace is the slow path), the others mirror the kernel in the controller."""
    from controller.edges.daemon import SwitchSession

    if config.kernel is None:
        return SwitchSession
    from controller.kernel.session import KernelSession

    return KernelSession


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    from controller.config import ConfigError, load_config
    from controller.edges.daemon import run as run_daemon
    from controller.edges.pipeline_files import NoPipeline, load_pipeline
    from controller.netfilter.ruleset import RulesetError
    from ndo.p4runtime.schema import SchemaError

    try:
        configs = [load_config(path) for path in args.config]
        metrics = _metrics_address(args.metrics)
        pipeline = load_pipeline()
        return run_daemon(configs, pipeline, session_class=session_class,
                          push=not args.no_push, control_path=args.control,
                          state_dir=args.state_dir, metrics=metrics)
    except (ConfigError, RulesetError, SchemaError, NoPipeline, ValueError) as exc:
        print(f"p4ft controller: {exc}", file=sys.stderr)
        return 1
    except (ConnectionError, OSError) as exc:
        print(f"p4ft controller: {exc}", file=sys.stderr)
        return 1
