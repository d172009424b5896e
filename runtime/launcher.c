/* The `pyrunc` and `pyimg` commands that `pip install` puts in a venv's bin/.
 *
 * Every call of either program is a fresh interpreter, so how it starts
 * counts (docs/performance.md, "Launchers that run Python with -I -S -X
 * utf8"). The interpreter runs as
 *
 *   BIN/python3 -I -S -X utf8 -c BOOT ARG...
 *
 *   -I -S     isolated, and no site processing: site.py imports os and runs
 *             the import lines of every .pth file (a setuptools editable
 *             finder among them), milliseconds per call;
 *   -X utf8   UTF-8 mode, which Python picks by itself in the C locale
 *             containerd runs the runtime in; set always, it also spares
 *             every call the locale's codec set-up.
 *
 * A script cannot carry those flags: pip rewrites a script's "#!python"
 * line to the venv's interpreter and drops whatever follows it. So each
 * command is this small program, built with no C library (nothing to load
 * or initialise before the execve). BIN is the directory of /proc/self/exe,
 * so a symlink to the command (/usr/local/bin/pyrunc) still finds its venv.
 *
 * BOOT (below) puts the venv's site-packages at the end of sys.path, where
 * site.py would have put it, and runs MAIN's main(). Built for an editable
 * install, it also puts the checkout first: the installer's own editable
 * hook is an import finder that only site processing runs.
 *
 * Built by setup.py (build_scripts) with -DPROG='"pyrunc"' and
 * -DMAIN='"runtime.cli"' (pyimg: imagetool.cli), and -DCHECKOUT for an
 * editable install. A failure to start the interpreter is one line on
 * stderr and exit 1.
 */

#include "nolibc.h"

NOLIBC_START(launcher_main);

#if !defined(PROG) || !defined(MAIN)
#error "launcher: build with -DPROG and -DMAIN (setup.py)"
#endif


#define AT_FDCWD -100
#define PATH_MAX 4096
#define MAX_ARGS 131072 /* far more than a call passes; more is refused */

/* The program the interpreter runs: the venv's site-packages (sys.executable
 * is BIN/python3, so the venv is its grandparent) at the end of sys.path,
 * and for an editable install the checkout first. CHECKOUT is a Python
 * string literal. */
static const char BOOT[] =
    "import sys\n"
#ifdef CHECKOUT
    "sys.path.insert(0, " CHECKOUT ")\n"
#endif
    "d = sys.executable.rpartition('/')[0].rpartition('/')[0]\n"
    "sys.path.append(d + '/lib/python%d.%d/site-packages' % sys.version_info[:2])\n"
    "from " MAIN " import main\n"
    "main()\n";

static size_t slen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static void say(const char *s)
{
    sys3(NR_write, 2, (long)s, (long)slen(s));
}

/* "PROG: WHAT PATH: REASON", exit 1. */
static __attribute__((noreturn)) void fail(const char *what, const char *path, const char *reason)
{
    say(PROG ": ");
    say(what);
    say(path);
    say(": ");
    say(reason);
    say("\n");
    for (;;)
        sys3(NR_exit_group, 1, 0, 0);
}

static const char *reason(long err)
{
    return err == -2 ? "no such file or directory" : err == -13 ? "permission denied" : "failed";
}

__attribute__((used, noreturn)) void launcher_main(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    static const char suffix[] = "/python3";
    static char interp[PATH_MAX + sizeof suffix];
    static const char *args[MAX_ARGS + 8];

    long n = sys4(NR_readlinkat, AT_FDCWD, (long)"/proc/self/exe", (long)interp, PATH_MAX);
    if (n <= 0 || n >= PATH_MAX)
        fail("cannot read ", "/proc/self/exe", n < 0 ? reason(n) : "name too long");
    while (n > 0 && interp[n - 1] != '/')
        n--;
    if (n > 0)
        n--; /* the slash: interp is BIN */
    for (size_t i = 0; i < sizeof suffix; i++)
        interp[n + i] = suffix[i];
    if (argc > MAX_ARGS)
        fail("cannot run ", interp, "too many arguments");

    const char **a = args;
    *a++ = interp; /* argv[0]: Python takes sys.executable, and so the venv, from it */
    *a++ = "-I";
    *a++ = "-S";
    *a++ = "-X";
    *a++ = "utf8";
    *a++ = "-c";
    *a++ = BOOT;
    for (long i = 1; i < argc; i++)
        *a++ = argv[i];
    *a = 0;
    long err = sys3(NR_execve, interp, args, envp);
    fail("cannot run ", interp, reason(err));
}
