"""``p4ft softswitch``: run the embedded P4 target, with simple_switch_grpc's flag names.

``p4ft softswitch -i 1@veth1 -i 2@veth2 --no-p4 -- --grpc-server-addr 127.0.0.1:9559
--cpu-port 255`` works as it does for BMv2 (without ``--cpu-port`` there is no CPU port: port
255 may then be an interface, ``-i 255@cpu0``, whose frames carry the program's packet_in and
packet_out headers: the netdev punt channel); the target options may also come before ``--``
(``--grpc-addr`` is the short spelling). A JSON program given on the command line runs from the
start; add ``--p4info`` to make its tables writable over P4Runtime without a pipeline push.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from controller.edges import eventloop

DEFAULT_GRPC_ADDR = "0.0.0.0:9559"
log = logging.getLogger("p4ft.softswitch")


def _add_target_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options simple_switch_grpc takes after ``--``; accepted on either side here."""
    default = (lambda value: value) if defaults else (lambda value: None)
    parser.add_argument("--grpc-server-addr", "--grpc-addr", dest="grpc_addr", metavar="ADDR",
                        default=default(DEFAULT_GRPC_ADDR),
                        help=f"P4Runtime listen address (default {DEFAULT_GRPC_ADDR})")
    parser.add_argument("--cpu-port", type=int, default=None, metavar="N",
                        help="port number of the CPU port, whose frames travel as P4Runtime "
                             "PacketIn/PacketOut (default: none, as simple_switch_grpc; a port "
                             "given with -i N@IFNAME is then an ordinary port, e.g. a punt "
                             "netdev)")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("softswitch", help="run the embedded P4 target (softswitch)",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--interface", action="append", default=[], metavar="N@IFNAME",
                        help="attach interface IFNAME as port N (repeatable)")
    parser.add_argument("--device-id", type=int, default=0, help="P4Runtime device id (0)")
    parser.add_argument("--no-p4", action="store_true",
                        help="start without a program; the controller pushes one")
    parser.add_argument("--p4info", type=Path, metavar="FILE",
                        help="P4Info (text or binary) of the JSON program given")
    parser.add_argument("--table-size", type=int, metavar="N",
                        help="give every table N entries instead of its declared size")
    parser.add_argument("-L", "--log-level", default="info",
                        choices=["trace", "debug", "info", "warn", "error", "off"])
    parser.add_argument("--log-file", type=Path, metavar="FILE",
                        help="log to FILE instead of stderr")
    parser.add_argument("--log-console", action="store_true",
                        help="log to stderr (the default; accepted as simple_switch_grpc takes it)")
    for flag, nargs in (("--thrift-port", 1), ("--pcap", "?"), ("--nanolog", 1),
                        ("--notifications-addr", 1)):
        parser.add_argument(flag, nargs=nargs, const="" if nargs == "?" else None,
                            dest=f"unsupported_{flag[2:].replace('-', '_')}",
                            help=argparse.SUPPRESS)
    _add_target_options(parser, defaults=True)
    parser.add_argument("rest", nargs="*", metavar="JSON [-- TARGET-OPTIONS]",
                        help="the BMv2 JSON program, then target options after --")
    parser.set_defaults(func=run)


def _split_rest(parser_args: argparse.Namespace) -> tuple[Path | None, argparse.Namespace]:
    """The JSON program and the options after ``--`` (which override those before it)."""
    rest = list(parser_args.rest)
    programs = []
    while rest and not rest[0].startswith("-"):
        programs.append(rest.pop(0))
    if len(programs) > 1:
        raise ValueError(f"one JSON program expected, got {' '.join(programs)}")
    target = argparse.ArgumentParser(prog="p4ft softswitch ... --", add_help=False,
                                     exit_on_error=False)
    _add_target_options(target, defaults=False)
    target.add_argument("--device-id", type=int)
    try:
        extra, unknown = target.parse_known_args(rest)
    except argparse.ArgumentError as exc:
        raise ValueError(str(exc)) from None
    if unknown:
        raise ValueError(f"unknown target option {unknown[0]}")
    return (Path(programs[0]) if programs else None), extra


def _load_config(program: Path, p4info_path: Path | None):
    """A ForwardingPipelineConfig for a JSON program given on the command line."""
    from finsy.proto import p4i, p4r
    from google.protobuf import text_format
    from google.protobuf.message import DecodeError

    p4info = p4i.P4Info()
    if p4info_path is not None:
        data = p4info_path.read_bytes()
        try:
            text_format.Parse(data.decode(), p4info)
        except (UnicodeDecodeError, text_format.ParseError) as text_error:
            try:
                p4info.ParseFromString(data)
            except DecodeError:
                raise ValueError(f"{p4info_path}: not a P4Info ({text_error})") from None
    return p4r.ForwardingPipelineConfig(p4info=p4info, p4_device_config=program.read_bytes())


def run(args: argparse.Namespace) -> int:
    level = {"trace": logging.DEBUG, "warn": logging.WARNING, "off": logging.CRITICAL + 1}.get(
        args.log_level, getattr(logging, args.log_level.upper(), logging.INFO))
    log_to = {"filename": args.log_file} if args.log_file else {"stream": sys.stderr}
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        **log_to)
    for name, value in vars(args).items():
        if name.startswith("unsupported_") and value is not None:
            flag = "--" + name.removeprefix("unsupported_").replace("_", "-")
            log.warning("%s is a simple_switch_grpc option the softswitch ignores", flag)
    try:
        program, extra = _split_rest(args)
        for name in ("grpc_addr", "cpu_port", "device_id"):
            if getattr(extra, name) is not None:
                setattr(args, name, getattr(extra, name))
        if program is not None and args.no_p4:
            raise ValueError("give either --no-p4 or a JSON program, not both")
        if program is None and args.p4info is not None:
            raise ValueError("--p4info needs a JSON program")
        if args.cpu_port is not None and not 0 < args.cpu_port < 511:
            raise ValueError(f"--cpu-port {args.cpu_port}: must be 1..510 (511 is the drop port)")
        from softswitch.ports import PacketSocketPort, parse_interface

        ports = [PacketSocketPort(*parse_interface(spec)) for spec in args.interface]
        if len({p.port_id for p in ports}) != len(ports):
            raise ValueError("two interfaces share a port number")
        config = _load_config(program, args.p4info) if program is not None else None
    except (ValueError, OSError) as exc:
        print(f"p4ft softswitch: error: {exc}", file=sys.stderr)
        return 2
    try:
        return eventloop.run(_serve(args, ports, config))
    except (ValueError, OSError) as exc:
        print(f"p4ft softswitch: error: {exc}", file=sys.stderr)
        return 1


async def _serve(args: argparse.Namespace, ports: list, config) -> int:
    from finsy.proto import p4r

    from softswitch.p4rt_codec import P4RTError
    from softswitch.switch import SoftSwitch

    softswitch = SoftSwitch(ports, cpu_port=args.cpu_port, device_id=args.device_id,
                            table_size=args.table_size)
    if config is not None:
        try:
            softswitch.device.set_pipeline(
                p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT, config)
        except P4RTError as exc:
            raise ValueError(f"cannot load the program: {exc.message}") from None
    port = await softswitch.start(args.grpc_addr)
    address = f"{args.grpc_addr.rpartition(':')[0]}:{port}"
    names = " ".join(f"{p.port_id}@{p.name}" for p in ports) or "none"
    # The start-up line goes to stderr whatever the logging, as simple_switch_grpc prints its own.
    cpu = args.cpu_port if args.cpu_port is not None else "none"
    print(f"p4ft softswitch: listening on {address} (device id {args.device_id}, cpu port "
          f"{cpu}, ports {names}, "
          f"{'program loaded' if config is not None else 'no program'})", file=sys.stderr,
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await softswitch.stop()
    return 0
