"""The live feed's UDP socket, read by a thread of its own, many datagrams per system call.

A national feed arrives in bursts (1,488 datagrams in 20 ms was seen, 20,000 in a second is the goal). asyncio's
datagram transport reads one datagram per turn of the event loop, and the kernel drops what does not fit the
socket's receive buffer (212 KB by default: some 250 datagrams): a burst was lost without a trace. Here:

- the socket asks for a large receive buffer (RCVBUF; the kernel grants up to net.core.rmem_max, twice over);
- a thread waits on it and takes what is queued with `recvmmsg` (up to VLEN datagrams per call, through ctypes,
  which releases the GIL during the call), so the thread needs the GIL once per batch, not per datagram, and
  keeps up even while the event loop is busy; where `recvmmsg` is missing it reads one by one;
- datagrams go to the event loop in batches: one wake-up for whatever gathered meanwhile;
- what the kernel still drops is read from the socket's own drop counter (the `drops` column of /proc/net/udp
  for its inode, Linux) so the feed can count it (`watchfloor_ais_sentences_total{outcome="dropped"}`).
"""
from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import select
import socket
import threading
from collections.abc import Callable

log = logging.getLogger("watchfloor.ais")

RCVBUF = 32 * 1024 * 1024  # asked for; Linux caps it at net.core.rmem_max (4 MB here: 8 MB, ~10,000 datagrams)
VLEN = 1024                # datagrams per recvmmsg call at most
SIZE = 4096                # bytes kept of one datagram (an NMEA datagram is one sentence or a few)
_MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0x40)


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(_IoVec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


def _recvmmsg():
    try:
        fn = ctypes.CDLL(None, use_errno=True).recvmmsg
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


class _Batches:
    """recvmmsg's buffers: VLEN slots of SIZE bytes, described once."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.buf = ctypes.create_string_buffer(VLEN * SIZE)
        self.view = memoryview(self.buf).cast("B")
        self.iovs = (_IoVec * VLEN)()
        self.msgs = (_MMsgHdr * VLEN)()
        base = ctypes.addressof(self.buf)
        for i in range(VLEN):
            self.iovs[i].base, self.iovs[i].len = base + i * SIZE, SIZE
            self.msgs[i].hdr.iov, self.msgs[i].hdr.iovlen = ctypes.pointer(self.iovs[i]), 1

    def read(self, fd: int) -> list[bytes]:
        """What is queued, up to VLEN datagrams, without waiting."""
        while True:
            n = self.fn(fd, self.msgs, VLEN, _MSG_DONTWAIT, None)
            if n >= 0:
                view, msgs = self.view, self.msgs
                return [view[i * SIZE:i * SIZE + msgs[i].len].tobytes() for i in range(n)]
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                return []
            if err != errno.EINTR:
                raise OSError(err, os.strerror(err))


def kernel_drops(sock: socket.socket) -> int | None:
    """The kernel's count of datagrams it dropped for this socket (receive buffer full), or None where it cannot
    be read (not Linux)."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
        name = "/proc/net/udp6" if sock.family == socket.AF_INET6 else "/proc/net/udp"
        with open(name, encoding="ascii") as f:
            next(f)  # the header
            for line in f:
                fields = line.split()
                if len(fields) >= 13 and fields[9] == inode:
                    return int(fields[-1])
    except (OSError, ValueError, StopIteration):
        return None
    return None


class UdpReceiver:
    """A bound UDP socket whose datagrams reach `on_datagrams(list of bytes)` in the event loop, in batches."""

    def __init__(self, host: str, port: int, on_datagrams: Callable[[list[bytes]], None], rcvbuf: int = RCVBUF):
        self.on_datagrams = on_datagrams
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self.rcvbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.sock.setblocking(False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._inbox: list[bytes] = []
        self._scheduled = False
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        fn = _recvmmsg()
        self._batches = _Batches(fn) if fn is not None else None

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()[:2]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="ais-udp", daemon=True)
        self._thread.start()
        log.info("AIS UDP receive buffer %d bytes (%s)", self.rcvbuf,
                 "recvmmsg" if self._batches is not None else "one datagram per call")

    def _read(self) -> list[bytes]:
        if self._batches is not None:
            return self._batches.read(self.sock.fileno())
        out: list[bytes] = []
        while len(out) < VLEN:
            try:
                out.append(self.sock.recv(SIZE))
            except (BlockingIOError, InterruptedError):
                break
        return out

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            if any(fd == self._wake_r for fd, _ in poller.poll()):
                return
            try:
                while True:
                    got = self._read()
                    if got:
                        self._hand_over(got)
                    if len(got) < VLEN:
                        break
            except OSError as e:  # the socket closed under us (stopping), or something unforeseen: stop reading
                log.warning("AIS UDP reader stopped: %s", e)
                return
            except RuntimeError:  # the event loop is closed: the bot is stopping
                return

    def _hand_over(self, datagrams: list[bytes]) -> None:
        with self._lock:
            self._inbox += datagrams
            if self._scheduled:
                return  # the event loop has not taken the last ones yet: these go with them
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            datagrams, self._inbox, self._scheduled = self._inbox, [], False
        if datagrams:  # (none when `close` took them first)
            self.on_datagrams(datagrams)

    def dropped(self) -> int | None:
        return kernel_drops(self.sock)

    def close(self) -> None:
        """Stop the thread; hand over what it read last; close the socket."""
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(5)
            self._thread = None
        with self._lock:
            left, self._inbox, self._scheduled = self._inbox, [], False
        if left:
            self.on_datagrams(left)
        self.sock.close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
