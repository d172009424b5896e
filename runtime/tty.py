"""The terminal side of a foreground `pyrunc run` with process.terminal:
our terminal in raw mode, bytes copied both ways, window size followed."""
from runtime.toolkit import os_lite as os
import select
import _signal as signal  # the C module: `signal` imports enum
import fcntl
import termios
import tty

from runtime.lifecycle import exit_code


def proxy(master: int, init_pid: int, forward) -> int:
    """Copy stdin -> master and master -> stdout until init exits; returns
    its exit code. Restores the terminal mode; closes `master`."""
    stdin_tty = os.isatty(0)
    saved = termios.tcgetattr(0) if stdin_tty else None
    rd, wr = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = signal.set_wakeup_fd(wr)
    signal.signal(signal.SIGCHLD, lambda *_: None)

    def resize(*_):
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
        except OSError:
            pass
    if stdin_tty:
        resize()
        tty.setraw(0)
    signal.signal(signal.SIGWINCH, resize)
    status = None
    inputs = [master, rd, 0]
    try:
        while status is None:
            try:
                r, _, _ = select.select(inputs, [], [])
            except InterruptedError:
                r = []
            if rd in r:
                try:
                    os.read(rd, 4096)
                except BlockingIOError:
                    pass
            if 0 in r:
                data = os.read(0, 4096)
                if data:
                    os.write(master, data)
                else:
                    inputs.remove(0)
                    os.write(master, b"\x04")
            if master in r:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if data:
                    os.write(1, data)
            while status is None:
                try:
                    p, s = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    status = 255  # init is gone and was not ours to reap
                    break
                if p == 0:
                    break
                if p == init_pid:
                    status = exit_code(s)
        # Drain what the container wrote before exiting.
        while True:
            r, _, _ = select.select([master], [], [], 0)
            if not r:
                break
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            os.write(1, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        signal.set_wakeup_fd(old_wakeup)
        os.close(rd)
        os.close(wr)
        os.close(master)
    return status
