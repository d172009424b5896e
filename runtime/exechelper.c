/* pyrunc-exec: the last step into a container, run from a sealed memfd.
 *
 * Why it exists. pyrunc's processes are Python, and the interpreter is a
 * host binary. A process in the container that holds CAP_SYS_PTRACE can
 * open /proc/PID/exe of any process it sees in its pid namespace, even a
 * non-dumpable one, keep that read-only handle, and reopen it for writing
 * through /proc/self/fd once nothing runs the file any more: it would then
 * overwrite the host's interpreter (CVE-2019-5736). So no Python process
 * ever stands in a pid namespace that container processes can see:
 *
 *   - create: init is cloned into a new pid namespace, where nothing else
 *     exists until create returns, and before READY it execs this helper;
 *     `start` finds it waiting (mode "start").
 *   - exec: the Python process that joins the container's namespaces
 *     stays in the host's pid namespace, sets up the process's identity,
 *     and execs this helper, which forks the process itself into the
 *     container's pid namespace (mode "spawn").
 *
 * The helper is run from a memfd sealed against writes (runtime/exechelper.py
 * makes it), so /proc/PID/exe of a helper process names an anonymous sealed
 * copy, never a file on the host. It is built with no C library (startup
 * makes no system calls) so that a container's seccomp profile, already in
 * force, need only allow what the process itself needs: execve(at), accept,
 * read, write, close, fcntl, clone, setsid, ioctl, exit.
 *
 * A container that joins another's pid namespace (by path) is set up by a
 * Python process that never joins it (runtime/init.py, "outside" mode):
 * what must happen inside that namespace, this helper does there, after
 * setns(PIDNS_FD) — a proc mount, the createContainer hooks, and init.
 *
 * Usage (argv[0] is a label):
 *   start LISTEN_FD FORK CHAN_FD TTY APPARMOR STATE NHOOKS [HOOK ...] -- PATH ARG...
 *     Accept one connection on LISTEN_FD (the start socket), write "0",
 *     run the startContainer hooks, then execve(PATH, ARG..., environ).
 *     On failure the connection gets "E" and a message, and the helper
 *     exits 127 (exec: not found or denied) or 1.
 *     HOOK is PATH TIMEOUT NARGS ARG... NENV ENV...; TIMEOUT in seconds, 0
 *     for none. Each hook gets STATE on stdin.
 *     With FORK 1, first fork init as the caller's sibling (CLONE_PARENT)
 *     into the pid namespace the caller joined for its children (it did so
 *     while it still had the privilege); the caller reports init's pid on
 *     CHAN_FD as an init-pid sync message and exits. init starts its own
 *     session, with fd 0 as controlling terminal when TTY is 1.
 *   spawn CHAN_FD ERR_FD APPARMOR TTY -- PATH ARG...
 *     Fork the process as the caller's sibling (CLONE_PARENT: a child of
 *     `pyrunc exec`), report its pid on CHAN_FD as an init-pid sync
 *     message and exit 0. The process starts its own session (with fd 0
 *     as controlling terminal when TTY is 1), waits for one message on
 *     CHAN_FD (the parent's "applied") and execs; an exec failure is
 *     written to ERR_FD, exit 127.
 *   mount PIDNS_FD SOURCE TARGET FSTYPE FLAGS DATA
 *     mount(2) from a child in that pid namespace (proc shows the pid
 *     namespace of the process that mounts it); exits 0 or the errno.
 *   hooks PIDNS_FD KIND STATE NHOOKS [HOOK ...]
 *     Run the KIND hooks from children in that pid namespace; the first
 *     failure is written to stderr, exit 1.
 *   APPARMOR is "-" or a profile to change to at that exec.
 * The environment of the helper is the process's environment.
 */

#include "nolibc.h"

NOLIBC_START(helper_main);

#define EINTR 4
#define EAGAIN 11
#define ENOENT 2
#define EACCES 13
#define O_WRONLY 1
#define O_CLOEXEC 02000000
#define F_SETFD 2
#define FD_CLOEXEC 1
#define SOCK_CLOEXEC 02000000
#define SIGCHLD 17
#define SIGKILL 9
#define SIGPIPE 13
#define SIG_IGN 1L
#define CLONE_PARENT 0x00008000
#define CLONE_NEWPID 0x20000000
#define TIOCSCTTY 0x540E
#define POLLIN 1
#define POLLHUP 0x10
#define CLOCK_MONOTONIC 1
#define AT_FDCWD -100

/* Compilers may emit calls to these for struct copies and zeroing. */
void *memset(void *d, int c, size_t n)
{
    unsigned char *p = d;
    while (n--)
        *p++ = (unsigned char)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

static size_t slen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static int streq(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

static long num(const char *s)
{
    long v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (*s++ - '0');
    return v;
}

static __attribute__((noreturn)) void die(int code)
{
    for (;;)
        sys1(NR_exit_group, code);
}

/* A message buffer: error text and JSON are built in one of these. */
struct buf {
    char s[4096];
    size_t n;
};

static void put(struct buf *b, const char *s)
{
    while (*s && b->n < sizeof b->s - 1)
        b->s[b->n++] = *s++;
    b->s[b->n] = 0;
}

static void putn(struct buf *b, const char *s, size_t n)
{
    while (n-- && b->n < sizeof b->s - 1)
        b->s[b->n++] = *s++;
    b->s[b->n] = 0;
}

static void putnum(struct buf *b, long v)
{
    char t[24];
    int i = 0;
    if (v < 0) {
        put(b, "-");
        v = -v;
    }
    do
        t[i++] = (char)('0' + v % 10);
    while ((v /= 10) && i < 23);
    while (i)
        putn(b, &t[--i], 1);
}

static const char *errname(long e)
{
    switch (e) {
    case 1: return "operation not permitted";
    case 2: return "no such file or directory";
    case 7: return "argument list too long";
    case 8: return "exec format error";
    case 12: return "cannot allocate memory";
    case 13: return "permission denied";
    case 20: return "not a directory";
    case 21: return "is a directory";
    case 22: return "invalid argument";
    case 24: return "too many open files";
    case 26: return "text file busy";
    case 36: return "file name too long";
    case 38: return "function not implemented";
    case 40: return "too many levels of symbolic links";
    default: return "error";
    }
}

/* Go's words for a death by signal (runtime/hooks.py has the same table). */
static const char *const signame[] = {
    "", "hangup", "interrupt", "quit", "illegal instruction", "trace/breakpoint trap", "aborted",
    "bus error", "floating point exception", "killed", "user defined signal 1", "segmentation fault",
    "user defined signal 2", "broken pipe", "alarm clock", "terminated", "stack fault", "child exited",
    "continued", "stopped (signal)", "stopped", "stopped (tty input)", "stopped (tty output)",
    "urgent I/O condition", "CPU time limit exceeded", "file size limit exceeded",
    "virtual timer expired", "profiling timer expired", "window changed", "I/O possible",
    "power failure", "bad system call"};

static void put_errno(struct buf *b, long e)
{
    put(b, errname(e));
    put(b, " (errno ");
    putnum(b, e);
    put(b, ")");
}

static void write_all(int fd, const char *s, size_t n)
{
    while (n) {
        long r = sys3(NR_write, fd, s, n);
        if (r == -EINTR)
            continue;
        if (r <= 0)
            return;
        s += r;
        n -= (size_t)r;
    }
}

/* AppArmor applies a profile at the next execve: the one to the process. */
static long change_profile(const char *profile)
{
    if (streq(profile, "-"))
        return 0;
#if defined(__x86_64__)
    long fd = sys3(NR_open, "/proc/self/attr/apparmor/exec", O_WRONLY | O_CLOEXEC, 0);
#else
    long fd = sys4(NR_openat, AT_FDCWD, "/proc/self/attr/apparmor/exec", O_WRONLY | O_CLOEXEC, 0);
#endif
    if (fd < 0)
        return fd;
    struct buf b = {.n = 0};
    put(&b, "exec ");
    put(&b, profile);
    long r = sys3(NR_write, fd, b.s, b.n);
    sys1(NR_close, fd);
    return r < 0 ? r : 0;
}

static int exec_failure_status(long e)
{
    return (e == -ENOENT || e == -EACCES) ? 127 : 1;
}

struct kernel_sigaction {
    long handler;
    unsigned long flags;
    long restorer;
    unsigned long mask;
};

static void set_sigpipe(long handler)
{
    struct kernel_sigaction sa = {.handler = handler, .flags = 0, .restorer = 0, .mask = 0};
    sys4(NR_rt_sigaction, SIGPIPE, &sa, 0, sizeof sa.mask);
}

static long now_ms(void)
{
    long ts[2];
    sys2(NR_clock_gettime, CLOCK_MONOTONIC, ts);
    return ts[0] * 1000 + ts[1] / 1000000;
}

struct pollfd {
    int fd;
    short events;
    short revents;
};

/* Read what a pipe has into b (the rest is read and dropped); 0 at EOF. */
static int drain(int fd, struct buf *b)
{
    char t[1024];
    long r = sys3(NR_read, fd, t, sizeof t);
    if (r == -EINTR || r == -EAGAIN)
        return 1;
    if (r <= 0)
        return 0;
    putn(b, t, (size_t)r);
    return 1;
}

static void trim_put(struct buf *b, struct buf *from)
{
    size_t i = 0, n = from->n;
    while (i < n && (from->s[i] == ' ' || from->s[i] == '\n' || from->s[i] == '\t'))
        i++;
    while (n > i && (from->s[n - 1] == ' ' || from->s[n - 1] == '\n' || from->s[n - 1] == '\t'))
        n--;
    putn(b, from->s + i, n - i);
}

/* Run one hook of `kind` with the state on stdin; on failure the
 * reason goes into err and the result is nonzero. The wording follows
 * runtime/hooks.py, which runs every other kind of hook. */
static int run_hook(const char *kind, int index, char *path, long timeout, char **args, char **env,
                    const char *state, struct buf *err)
{
    int in[2], out[2], errp[2], fail[2];
    struct buf o = {.n = 0}, e = {.n = 0};
    put(err, "error running hook #");
    putnum(err, index);
    put(err, ": ");
    put(err, kind);
    put(err, " ");
    put(err, path);
    put(err, ": ");
    if (sys2(NR_pipe2, in, O_CLOEXEC) || sys2(NR_pipe2, out, O_CLOEXEC) ||
        sys2(NR_pipe2, errp, O_CLOEXEC) || sys2(NR_pipe2, fail, O_CLOEXEC)) {
        put(err, "cannot make pipes");
        return 1;
    }
    long pid = sys6(NR_clone, SIGCHLD, 0, 0, 0, 0, 0);
    if (pid == 0) {
#if defined(__x86_64__)
        sys2(NR_dup2, in[0], 0);
        sys2(NR_dup2, out[1], 1);
        sys2(NR_dup2, errp[1], 2);
#else
        sys3(NR_dup3, in[0], 0, 0);
        sys3(NR_dup3, out[1], 1, 0);
        sys3(NR_dup3, errp[1], 2, 0);
#endif
        set_sigpipe(0);
        long r = sys3(NR_execve, path, args, env); /* in the process's cwd, as runc's init runs them */
        int code = (int)-r;
        write_all(fail[1], (const char *)&code, sizeof code);
        die(127);
    }
    sys1(NR_close, in[0]);
    sys1(NR_close, out[1]);
    sys1(NR_close, errp[1]);
    sys1(NR_close, fail[1]);
    if (pid < 0) {
        put_errno(err, -pid);
        return 1;
    }
    write_all(in[1], state, slen(state)); /* a hook need not read it (SIGPIPE is ignored) */
    sys1(NR_close, in[1]);
    int code = 0;
    long got = sys3(NR_read, fail[0], &code, sizeof code);
    sys1(NR_close, fail[0]);
    if (got == sizeof code) {
        int st;
        sys4(NR_wait4, pid, &st, 0, 0);
        sys1(NR_close, out[0]);
        sys1(NR_close, errp[0]);
        put(err, errname(code));
        return 1;
    }
    long pidfd = sys2(NR_pidfd_open, pid, 0);
    long deadline = timeout > 0 ? now_ms() + timeout * 1000 : 0;
    int open_out = 1, open_err = 1, exited = 0, timed_out = 0;
    while (open_out || open_err || !exited) {
        struct pollfd p[3] = {{open_out ? out[0] : -1, POLLIN, 0},
                              {open_err ? errp[0] : -1, POLLIN, 0},
                              {exited ? -1 : (int)pidfd, POLLIN, 0}};
        long ts[2], *tsp = 0;
        if (deadline) {
            long left = deadline - now_ms();
            if (left < 0)
                left = 0;
            ts[0] = left / 1000;
            ts[1] = (left % 1000) * 1000000;
            tsp = ts;
        }
        long r = sys4(NR_ppoll, p, 3, tsp, 0);
        if (r == -EINTR)
            continue;
        if (r == 0 || (r < 0 && pidfd < 0)) {
            timed_out = r == 0;
            sys2(NR_kill, pid, SIGKILL);
            break;
        }
        if (open_out && (p[0].revents & (POLLIN | POLLHUP)))
            open_out = drain(out[0], &o);
        if (open_err && (p[1].revents & (POLLIN | POLLHUP)))
            open_err = drain(errp[0], &e);
        if (p[2].revents & POLLIN)
            exited = 1;
    }
    int st = 0;
    while (sys4(NR_wait4, pid, &st, 0, 0) == -EINTR)
        ;
    sys1(NR_close, out[0]);
    sys1(NR_close, errp[0]);
    if (pidfd >= 0)
        sys1(NR_close, pidfd);
    if (timed_out) {
        put(err, "hook ran past specified timeout of ");
        putnum(err, timeout);
        put(err, ".0s");
        return 1;
    }
    if ((st & 0x7f) == 0 && ((st >> 8) & 0xff) == 0)
        return 0;
    if ((st & 0x7f) == 0) {
        put(err, "exit status ");
        putnum(err, (st >> 8) & 0xff);
    } else if ((st & 0x7f) < (int)(sizeof signame / sizeof signame[0])) {
        put(err, "signal: ");
        put(err, signame[st & 0x7f]);
    } else {
        put(err, "signal: signal ");
        putnum(err, st & 0x7f);
    }
    put(err, ", stdout: ");
    trim_put(err, &o);
    put(err, ", stderr: ");
    trim_put(err, &e);
    return 1;
}

static int find_sep(int argc, char **argv, int from)
{
    for (int i = from; i < argc; i++)
        if (streq(argv[i], "--"))
            return i;
    return -1;
}

static void put_exec_failure(struct buf *b, const char *path, long e)
{
    put(b, "exec ");
    put(b, path);
    put(b, ": ");
    put_errno(b, -e);
}

/* Run NHOOKS hooks laid out from argv[*i] on; advances *i past them.
 * 0, or 1 with the failure in b. */
static int run_hooks(const char *kind, char **argv, int *i, long nhooks, const char *state, struct buf *b)
{
    int failed = 0;
    set_sigpipe(SIG_IGN);
    for (long h = 0; h < nhooks && !failed; h++) {
        char *path = argv[(*i)++];
        long timeout = num(argv[(*i)++]);
        long na = num(argv[(*i)++]);
        char **args = &argv[*i];
        *i += (int)na;
        long ne = num(argv[*i]);
        argv[*i] = 0; /* ends args */
        (*i)++;
        char **env = &argv[*i];
        *i += (int)ne;
        char *after = argv[*i];
        argv[*i] = 0; /* ends env */
        failed = run_hook(kind, (int)h, path, timeout, args, env, state, b);
        argv[*i] = after;
    }
    set_sigpipe(0);
    return failed;
}

static void join_pidns(int fd)
{
    if (sys2(NR_setns, fd, CLONE_NEWPID) < 0)
        die(1);
    sys1(NR_close, fd);
}

static __attribute__((noreturn)) void mode_start(int argc, char **argv, char **envp)
{
    int lfd = (int)num(argv[2]);
    int fork_init = streq(argv[3], "1");
    int chan = (int)num(argv[4]);
    int tty = streq(argv[5], "1");
    const char *apparmor = argv[6];
    const char *state = argv[7];
    long nhooks = num(argv[8]);
    int sep = find_sep(argc, argv, 9);
    if (sep < 0 || sep + 1 >= argc)
        die(2);
    if (fork_init) {
        long pid = sys6(NR_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0, 0);
        if (pid < 0)
            die(1);
        if (pid > 0) {
            struct buf m = {.n = 0};
            put(&m, "{\"type\": \"init-pid\", \"pid\": ");
            putnum(&m, pid);
            put(&m, "}");
            write_all(chan, m.s, m.n);
            die(0);
        }
        sys1(NR_close, chan);
        sys0(NR_setsid);
        if (tty)
            sys3(NR_ioctl, 0, TIOCSCTTY, 0);
    }
    long conn;
    do
        conn = sys4(NR_accept4, lfd, 0, 0, SOCK_CLOEXEC);
    while (conn == -EINTR);
    if (conn < 0)
        die(1);
    sys1(NR_close, lfd);
    write_all((int)conn, "0", 1);
    struct buf b = {.n = 0};
    put(&b, "E");
    int i = 9;
    if (run_hooks("startContainer", argv, &i, nhooks, state, &b)) {
        write_all((int)conn, b.s, b.n);
        die(1);
    }
    char *path = argv[sep + 1];
    long r = change_profile(apparmor);
    if (r < 0) {
        put(&b, "process.apparmorProfile ");
        put(&b, apparmor);
        put(&b, ": ");
        put_errno(&b, -r);
        write_all((int)conn, b.s, b.n);
        die(1);
    }
    r = sys3(NR_execve, path, &argv[sep + 2], envp);
    put_exec_failure(&b, path, r);
    write_all((int)conn, b.s, b.n);
    die(exec_failure_status(r));
}

static int wait_child(long pid)
{
    int st = 0;
    while (sys4(NR_wait4, pid, &st, 0, 0) == -EINTR)
        ;
    return (st & 0x7f) ? 1 : (st >> 8) & 0xff;
}

static __attribute__((noreturn)) void mode_mount(char **argv)
{
    join_pidns((int)num(argv[2]));
    long pid = sys6(NR_clone, SIGCHLD, 0, 0, 0, 0, 0);
    if (pid < 0)
        die((int)-pid);
    if (pid == 0) {
        const char *data = argv[7][0] ? argv[7] : 0;
        long r = sys6(NR_mount, (long)argv[3], (long)argv[4], (long)argv[5], num(argv[6]), (long)data, 0);
        die(r < 0 ? (int)-r : 0);
    }
    die(wait_child(pid));
}

static __attribute__((noreturn)) void mode_hooks(int argc, char **argv)
{
    join_pidns((int)num(argv[2]));
    struct buf b = {.n = 0};
    int i = 6;
    (void)argc;
    if (run_hooks(argv[3], argv, &i, num(argv[5]), argv[4], &b)) {
        write_all(2, b.s, b.n);
        die(1);
    }
    die(0);
}

static __attribute__((noreturn)) void mode_spawn(int argc, char **argv, char **envp)
{
    int chan = (int)num(argv[2]);
    int errfd = (int)num(argv[3]);
    const char *apparmor = argv[4];
    int tty = streq(argv[5], "1");
    int sep = find_sep(argc, argv, 6);
    if (sep < 0 || sep + 1 >= argc)
        die(2);
    char *path = argv[sep + 1];
    struct buf b = {.n = 0};
    long pid = sys6(NR_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0, 0);
    if (pid < 0) {
        put(&b, "exec: cannot fork the process: ");
        put_errno(&b, -pid);
        write_all(errfd, b.s, b.n);
        die(1);
    }
    if (pid > 0) {
        put(&b, "{\"type\": \"init-pid\", \"pid\": ");
        putnum(&b, pid);
        put(&b, "}");
        write_all(chan, b.s, b.n);
        die(0);
    }
    sys0(NR_setsid);
    if (tty && sys3(NR_ioctl, 0, TIOCSCTTY, 0) < 0) {
        put(&b, "exec: cannot make the terminal the controlling one");
        write_all(errfd, b.s, b.n);
        die(1);
    }
    char m[512];
    long r;
    do
        r = sys3(NR_read, chan, m, sizeof m);
    while (r == -EINTR);
    if (r <= 0)
        die(1); /* the parent is gone: it reports why */
    sys1(NR_close, chan);
    sys3(NR_fcntl, errfd, F_SETFD, FD_CLOEXEC);
    r = change_profile(apparmor);
    if (r < 0) {
        put(&b, "process.apparmorProfile ");
        put(&b, apparmor);
        put(&b, ": ");
        put_errno(&b, -r);
        write_all(errfd, b.s, b.n);
        die(1);
    }
    r = sys3(NR_execve, path, &argv[sep + 2], envp);
    put_exec_failure(&b, path, r);
    write_all(errfd, b.s, b.n);
    die(127);
}

__attribute__((used, noreturn)) void helper_main(long *sp)
{
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    if (argc >= 9 && streq(argv[1], "start"))
        mode_start(argc, argv, envp);
    if (argc == 8 && streq(argv[1], "mount"))
        mode_mount(argv);
    if (argc >= 6 && streq(argv[1], "hooks"))
        mode_hooks(argc, argv);
    if (argc >= 6 && streq(argv[1], "spawn"))
        mode_spawn(argc, argv, envp);
    write_all(2, "pyrunc-exec: run by pyrunc only\n", 32);
    die(2);
}
