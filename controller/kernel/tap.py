"""Port representors: one TAP device per switch data port, inside the router's namespace.

A frame the switch punted from port N is written to representor N and enters the kernel
there; a frame the kernel transmits on representor M is read here and sent to port M as
packet-out. The TAP's MAC and MTU are the port's from the router TOML, so what the kernel
puts on the wire is what the switch's hardware rules put there too.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from collections import Counter

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFMTU = 0x8922
SIOCSIFHWADDR = 0x8924
ARPHRD_ETHER = 1
IFF_UP = 0x1
MAX_FRAME = 65536


class Tap:
    """One representor. Create it inside the namespace (:func:`controller.kernel.netns.entered`)."""

    def __init__(self, name: str, mac: bytes, mtu: int) -> None:
        self.name = name
        self.counters: Counter[str] = Counter()
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise OSError(exc.errno, f"representor {name}: /dev/net/tun: {exc.strerror}") from None
        try:
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ctl:
                ifname = name.encode()
                fcntl.ioctl(ctl, SIOCSIFHWADDR, struct.pack("16sH6s", ifname, ARPHRD_ETHER, mac))
                fcntl.ioctl(ctl, SIOCSIFMTU, struct.pack("16si", ifname, mtu))
                flags = struct.unpack_from("H", fcntl.ioctl(ctl, SIOCGIFFLAGS,
                                                            struct.pack("16sH", ifname, 0)), 16)[0]
                fcntl.ioctl(ctl, SIOCSIFFLAGS, struct.pack("16sH", ifname, flags | IFF_UP))
            self.index = socket.if_nametoindex(name)
        except OSError as exc:
            os.close(self.fd)
            raise OSError(exc.errno, f"representor {name}: {exc.strerror} (a device of that "
                          "name that is not a TAP already exists?)") from None

    def write(self, frame: bytes) -> bool:
        """Hand a frame to the kernel; a full queue or a down device costs the frame, counted."""
        try:
            os.write(self.fd, frame)
        except OSError as exc:
            self.counters[f"rx_dropped_{errno.errorcode.get(exc.errno, exc.errno)}"] += 1
            return False
        self.counters["rx"] += 1
        return True

    def read(self) -> bytes | None:
        """The next frame the kernel transmitted, or None when there is none."""
        try:
            frame = os.read(self.fd, MAX_FRAME)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:  # EIO while the device is down
            self.counters[f"tx_error_{errno.errorcode.get(exc.errno, exc.errno)}"] += 1
            return None
        self.counters["tx"] += 1
        return frame

    def close(self) -> None:
        os.close(self.fd)
