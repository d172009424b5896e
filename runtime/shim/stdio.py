"""A process's stdio as containerd hands it over.

containerd names each stream by a path: a fifo its client (ctr, CRI) has
already opened for reading (stdout, stderr) or will open for writing
(stdin); `file:///PATH` for a file to append to; "" for none (/dev/null).

* stdout and stderr without a terminal are passed to the process as they
  are: the fifo is opened read-write (so opening never blocks and a reader
  that goes away blocks the writer rather than killing it with SIGPIPE, as
  under the runc shim), and the process writes to it directly: no copy.
* stdin is copied by the loop from the fifo into a pipe whose read end is
  the process's stdin, so that end-of-input is the shim's to give: when
  the client closes the fifo (read returns 0 once it is readable: a fifo
  opened non-blocking reports no hang-up before a writer came), or calls
  CloseIO, the pipe is closed after what was already read.
* with a terminal, the process gets the pty's slave from runtime's console
  hand-over; the loop copies stdin to the master and the master to the
  stdout fifo; ResizePty sets the master's window size. When the process
  exits, drain() copies what is left in the master before the exit is
  reported, and closes stdout so the client sees its end.

Contract: child_fds() are the process's fds 0, 1, 2 (None with a
terminal), to be dup'ed into the child and closed by spawned(); close()
releases everything and is idempotent.
"""
from __future__ import annotations

import fcntl
import struct
import termios

from runtime.toolkit import os_lite as os


class StdioError(Exception):
    pass


def _open_out(path: str) -> int:
    if not path:
        return os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
    if path.startswith("file://"):
        p = path[len("file://"):]
        os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
        return os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    scheme, sep, _ = path.partition("://")
    if sep and scheme != "fifo":
        raise StdioError(f"unsupported STDIO scheme {scheme}: {path}")
    if sep:
        path = path[len("fifo://"):]
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)


class Stdio:
    def __init__(self, loop, stdin: str, stdout: str, stderr: str, terminal: bool):
        self.loop = loop
        self.paths = (stdin, stdout, stderr)
        self.terminal = terminal
        self.fifo_in = -1      # stdin fifo (ours, read end)
        self.pipe_w = -1       # the process's stdin pipe, our end
        self.child = [None, None, None]
        self.out_fd = -1       # terminal: stdout fifo (ours)
        self.master = -1
        self.pending_in = bytearray()
        self.pending_out = bytearray()
        self.stdin_closing = False
        self.closed = False
        try:
            self._open()
        except OSError as e:
            self.close()
            raise StdioError(f"open {e.filename or 'stdio'}: {e.strerror}") from None

    def _open(self) -> None:
        stdin, stdout, stderr = self.paths
        if stdin:
            self.fifo_in = os.open(stdin, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if self.terminal:
            self.out_fd = _open_out(stdout)
            os.set_blocking(self.out_fd, False)
            return
        if stdin:
            r, self.pipe_w = os.pipe2(os.O_CLOEXEC)
            self.child[0] = r
        else:
            self.child[0] = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        self.child[1] = _open_out(stdout)
        self.child[2] = _open_out(stderr) if stderr != stdout or not stderr else os.dup(self.child[1])
        if self.fifo_in >= 0:
            self.loop.add_reader(self.fifo_in, self._stdin_readable)

    def child_fds(self):
        return tuple(self.child)

    def spawned(self) -> None:
        """The process has its copies: close ours."""
        for i, fd in enumerate(self.child):
            if fd is not None:
                os.close(fd)
                self.child[i] = None

    # --- stdin -------------------------------------------------------------
    def _stdin_target(self) -> int:
        return self.master if self.terminal else self.pipe_w

    def _stdin_readable(self) -> None:
        try:
            data = os.read(self.fifo_in, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close_stdin()
            return
        self.pending_in += data
        self._push_stdin()

    def _push_stdin(self) -> None:
        target = self._stdin_target()
        if target < 0:
            return
        while self.pending_in:
            try:
                n = os.write(target, self.pending_in)
            except BlockingIOError:
                # The process reads slower than the client writes: stop
                # reading the fifo until the pipe (or pty) takes more.
                if self.fifo_in >= 0:
                    self.loop.remove_reader(self.fifo_in)
                self.loop.add_writer(target, self._push_stdin)
                return
            except OSError:
                self.pending_in.clear()
                break
            del self.pending_in[:n]
        self.loop.remove_writer(target)
        if self.stdin_closing:
            self._finish_stdin()
        elif self.fifo_in >= 0:
            self.loop.add_reader(self.fifo_in, self._stdin_readable)

    def close_stdin(self) -> None:
        """End of input: after what was read, the process sees EOF (a
        terminal's stdin stays open: the master is the process's output too)."""
        self.stdin_closing = True
        if self.fifo_in >= 0:
            self.loop.forget(self.fifo_in)
            os.close(self.fifo_in)
            self.fifo_in = -1
        if not self.pending_in:
            self._finish_stdin()

    def _finish_stdin(self) -> None:
        if self.pipe_w >= 0:
            self.loop.forget(self.pipe_w)
            os.close(self.pipe_w)
            self.pipe_w = -1

    # --- terminal ----------------------------------------------------------
    def attach_console(self, master: int) -> None:
        self.master = master
        os.set_blocking(master, False)
        self.loop.add_reader(master, self._master_readable)
        if self.fifo_in >= 0:
            self.loop.add_reader(self.fifo_in, self._stdin_readable)

    def resize(self, width: int, height: int) -> None:
        if self.master >= 0:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def _master_readable(self) -> None:
        self._copy_master()

    def _copy_master(self) -> str:
        """Copy one read of the master to stdout: "data", "empty" (nothing
        now) or "closed" (every slave fd is closed: EIO)."""
        try:
            data = os.read(self.master, 1 << 16)
        except BlockingIOError:
            return "empty"
        except OSError:
            data = b""
        if not data:
            self.loop.forget(self.master)
            os.close(self.master)
            self.master = -1
            self._flush_out(final=True)
            return "closed"
        self.pending_out += data
        self._flush_out()
        return "data"

    def _flush_out(self, final: bool = False) -> None:
        if self.out_fd < 0:
            self.pending_out.clear()
            return
        while self.pending_out:
            try:
                n = os.write(self.out_fd, self.pending_out)
            except BlockingIOError:
                if final:
                    os.set_blocking(self.out_fd, True)
                    continue
                self.loop.add_writer(self.out_fd, self._flush_out)
                return
            except OSError:
                self.pending_out.clear()
                break
            del self.pending_out[:n]
        self.loop.remove_writer(self.out_fd)
        if final or self.master < 0:
            self.loop.forget(self.out_fd)
            os.close(self.out_fd)
            self.out_fd = -1

    def drain(self) -> None:
        """The process exited: copy what its terminal still holds before the
        exit is reported. The slave may stay open in a process that outlives
        it (a daemon it left); the loop then keeps copying until EIO."""
        while self.master >= 0 and self._copy_master() == "data":
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd in (self.fifo_in, self.pipe_w, self.out_fd, self.master, *self.child):
            if fd is not None and fd >= 0:
                self.loop.forget(fd)
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.fifo_in = self.pipe_w = self.out_fd = self.master = -1
        self.child = [None, None, None]
