/*
 * probe: runs inside a container and prints, as one JSON object, what the
 * process sees of its environment.  The conformance tests compare this with
 * the config.json the container was created from.
 *
 * Usage: probe [-o FILE] [-r PATH]... [-s PATH]... [-w PATH]... [-l DIR]...
 *   -o FILE  write the JSON to FILE instead of stdout
 *   -r PATH  include the content of PATH (first 64 KiB) under "files"
 *   -s PATH  include lstat() of PATH under "stat"
 *   -w PATH  try to open PATH for writing (O_WRONLY, no create), or when PATH
 *            ends in '/', to create a file in that directory; report errno
 *            under "writable" (0 = it worked)
 *   -l DIR   list DIR's entries with their lstat() under "dirs"
 *
 * Always reported: ids and groups, capabilities and other /proc/self/status
 * fields, rlimits, namespace inodes, uname, domainname, mountinfo, /dev
 * nodes, /proc/self/cgroup, open fds, cwd, env, umask, personality,
 * oom_score_adj, no_new_privs, seccomp mode, pid/ppid/sid/pgid, ioprio,
 * cpu affinity and argv.
 *
 * Built statically with `gcc -static -O2` by tests/conformance/conftest.py.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static FILE *out;
static int first;

static void jstr(const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\t': fputs("\\t", out); break;
        case '\r': fputs("\\r", out); break;
        default:
            if (*p < 0x20 || *p >= 0x7f)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

static void sep(void)
{
    if (!first)
        fputc(',', out);
    first = 0;
}

static void key(const char *k)
{
    sep();
    jstr(k);
    fputc(':', out);
}

static void open_obj(const char *k) { if (k) key(k); else sep(); fputc('{', out); first = 1; }
static void close_obj(void) { fputc('}', out); first = 0; }
static void open_arr(const char *k) { if (k) key(k); else sep(); fputc('[', out); first = 1; }
static void close_arr(void) { fputc(']', out); first = 0; }
static void kv_str(const char *k, const char *v) { key(k); if (v) jstr(v); else fputs("null", out); }
static void kv_ll(const char *k, long long v) { key(k); fprintf(out, "%lld", v); }
static void kv_ull(const char *k, unsigned long long v) { key(k); fprintf(out, "%llu", v); }

/* Read a whole (small) file; returns malloc'd NUL-terminated text or NULL. */
static char *slurp(const char *path, int *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (err)
            *err = errno;
        return NULL;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (err)
                *err = errno;
            close(fd);
            free(buf);
            return NULL;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == cap)
            break;
    }
    close(fd);
    buf[len] = 0;
    if (err)
        *err = 0;
    return buf;
}

static void stat_obj(const char *k, const char *path)
{
    struct stat st;
    open_obj(k);
    if (lstat(path, &st) < 0) {
        kv_ll("errno", errno);
        close_obj();
        return;
    }
    const char *t = S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" :
                    S_ISLNK(st.st_mode) ? "symlink" : S_ISCHR(st.st_mode) ? "c" :
                    S_ISBLK(st.st_mode) ? "b" : S_ISFIFO(st.st_mode) ? "p" :
                    S_ISSOCK(st.st_mode) ? "socket" : "?";
    kv_str("type", t);
    kv_ll("mode", st.st_mode & 07777);
    kv_ll("uid", st.st_uid);
    kv_ll("gid", st.st_gid);
    kv_ll("ino", (long long)st.st_ino);
    kv_ll("size", (long long)st.st_size);
    kv_ll("dev_major", major(st.st_dev));
    kv_ll("dev_minor", minor(st.st_dev));
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
        kv_ll("major", major(st.st_rdev));
        kv_ll("minor", minor(st.st_rdev));
    }
    if (S_ISLNK(st.st_mode)) {
        char buf[PATH_MAX];
        ssize_t n = readlink(path, buf, sizeof(buf) - 1);
        if (n >= 0) {
            buf[n] = 0;
            kv_str("target", buf);
        }
    }
    close_obj();
}

static void list_dir(const char *k, const char *dir)
{
    DIR *d = opendir(dir);
    open_obj(k);
    if (!d) {
        kv_ll("errno", errno);
        close_obj();
        return;
    }
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        stat_obj(e->d_name, path);
    }
    closedir(d);
    close_obj();
}

static const char *rlimit_names[] = {
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
    "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
    "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
    "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
};

static const char *ns_names[] = {
    "cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time",
    "time_for_children", "user", "uts",
};

/* status fields copied verbatim (as strings) from /proc/self/status */
static const char *status_fields[] = {
    "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
    "Seccomp_filters", "Umask", "Groups", "Uid", "Gid", "NSpid",
};

static void status(void)
{
    char *s = slurp("/proc/self/status", NULL);
    open_obj("status");
    if (s) {
        for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
            char *colon = strchr(line, ':');
            if (!colon)
                continue;
            *colon = 0;
            for (size_t i = 0; i < sizeof(status_fields) / sizeof(*status_fields); i++) {
                if (!strcmp(line, status_fields[i])) {
                    char *v = colon + 1;
                    while (*v == ' ' || *v == '\t')
                        v++;
                    size_t n = strlen(v);
                    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
                        v[--n] = 0;
                    kv_str(line, v);
                }
            }
        }
        free(s);
    }
    close_obj();
}

int main(int argc, char **argv)
{
    out = stdout;
    const char *reads[64], *stats[64], *writes[64], *dirs[16];
    int nr = 0, ns = 0, nw = 0, nd = 0, opt;
    while ((opt = getopt(argc, argv, "o:r:s:w:l:")) != -1) {
        switch (opt) {
        case 'o':
            out = fopen(optarg, "w");
            if (!out) {
                perror(optarg);
                return 2;
            }
            break;
        case 'r': if (nr < 64) reads[nr++] = optarg; break;
        case 's': if (ns < 64) stats[ns++] = optarg; break;
        case 'w': if (nw < 64) writes[nw++] = optarg; break;
        case 'l': if (nd < 16) dirs[nd++] = optarg; break;
        default:
            fprintf(stderr, "usage: probe [-o FILE] [-r PATH] [-s PATH] [-w PATH] [-l DIR]\n");
            return 2;
        }
    }

    first = 1;
    fputc('{', out);

    open_arr("argv");
    for (int i = 0; i < argc; i++) { sep(); jstr(argv[i]); }
    close_arr();

    kv_ll("pid", getpid());
    kv_ll("ppid", getppid());
    kv_ll("sid", getsid(0));
    kv_ll("pgid", getpgid(0));
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    getresuid(&ru, &eu, &su);
    getresgid(&rg, &eg, &sg);
    kv_ll("uid", ru); kv_ll("euid", eu); kv_ll("suid", su);
    kv_ll("gid", rg); kv_ll("egid", eg); kv_ll("sgid", sg);
    gid_t groups[256];
    int ng = getgroups(256, groups);
    open_arr("groups");
    for (int i = 0; i < ng; i++) { sep(); fprintf(out, "%u", groups[i]); }
    close_arr();

    mode_t um = umask(0);
    umask(um);
    kv_ll("umask", um);

    char cwd[PATH_MAX];
    kv_str("cwd", getcwd(cwd, sizeof(cwd)) ? cwd : NULL);

    open_arr("env");
    for (char **e = environ; *e; e++) { sep(); jstr(*e); }
    close_arr();

    struct utsname u;
    uname(&u);
    kv_str("hostname", u.nodename);
    kv_str("domainname", u.domainname);

    kv_ll("personality", personality(0xffffffff));
    kv_ll("no_new_privs", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    kv_ll("dumpable", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    long prio = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, 0);
    kv_ll("ioprio", prio);
    kv_ll("sched_policy", sched_getscheduler(0));

    cpu_set_t cs;
    CPU_ZERO(&cs);
    open_arr("cpus");
    if (sched_getaffinity(0, sizeof(cs), &cs) == 0)
        for (int i = 0; i < CPU_SETSIZE; i++)
            if (CPU_ISSET(i, &cs)) { sep(); fprintf(out, "%d", i); }
    close_arr();

    {
        int err;
        char *s = slurp("/proc/self/oom_score_adj", &err);
        kv_ll("oom_score_adj", s ? atoll(s) : -100000);
        free(s);
    }

    status();

    open_obj("rlimits");
    for (int i = 0; i < (int)(sizeof(rlimit_names) / sizeof(*rlimit_names)); i++) {
        struct rlimit rl;
        if (getrlimit(i, &rl) == 0) {
            open_obj(rlimit_names[i]);
            kv_ull("soft", (unsigned long long)rl.rlim_cur);
            kv_ull("hard", (unsigned long long)rl.rlim_max);
            close_obj();
        }
    }
    close_obj();

    open_obj("ns");
    for (size_t i = 0; i < sizeof(ns_names) / sizeof(*ns_names); i++) {
        char path[64];
        struct stat st;
        snprintf(path, sizeof(path), "/proc/self/ns/%s", ns_names[i]);
        if (stat(path, &st) == 0)
            kv_ll(ns_names[i], (long long)st.st_ino);
    }
    close_obj();

    {
        char *s = slurp("/proc/self/mountinfo", NULL);
        kv_str("mountinfo", s ? s : "");
        free(s);
        s = slurp("/proc/self/cgroup", NULL);
        kv_str("cgroup", s ? s : "");
        free(s);
        s = slurp("/proc/self/uid_map", NULL);
        kv_str("uid_map", s ? s : "");
        free(s);
        s = slurp("/proc/self/gid_map", NULL);
        kv_str("gid_map", s ? s : "");
        free(s);
        s = slurp("/proc/self/timens_offsets", NULL);
        kv_str("timens_offsets", s);
        free(s);
    }

    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    kv_ll("monotonic_s", ts.tv_sec);
    clock_gettime(CLOCK_BOOTTIME, &ts);
    kv_ll("boottime_s", ts.tv_sec);

    /* open fds, listed before we open anything else of our own */
    open_obj("fds");
    {
        DIR *d = opendir("/proc/self/fd");
        if (d) {
            int self = dirfd(d);
            struct dirent *e;
            while ((e = readdir(d))) {
                if (e->d_name[0] == '.' || atoi(e->d_name) == self)
                    continue;
                if (out != stdout && atoi(e->d_name) == fileno(out))
                    continue;
                char p[300], t[PATH_MAX];
                snprintf(p, sizeof(p), "/proc/self/fd/%s", e->d_name);
                ssize_t n = readlink(p, t, sizeof(t) - 1);
                t[n < 0 ? 0 : n] = 0;
                kv_str(e->d_name, t);
            }
            closedir(d);
        }
    }
    close_obj();

    list_dir("dev", "/dev");

    open_obj("files");
    for (int i = 0; i < nr; i++) {
        int err;
        char *s = slurp(reads[i], &err);
        open_obj(reads[i]);
        if (s) kv_str("content", s); else kv_ll("errno", err);
        close_obj();
        free(s);
    }
    close_obj();

    open_obj("stat");
    for (int i = 0; i < ns; i++)
        stat_obj(stats[i], stats[i]);
    close_obj();

    open_obj("writable");
    for (int i = 0; i < nw; i++) {
        const char *p = writes[i];
        size_t n = strlen(p);
        int fd, err = 0;
        if (n && p[n - 1] == '/') {
            char f[PATH_MAX];
            snprintf(f, sizeof(f), "%s.probe-%d", p, getpid());
            fd = open(f, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (fd < 0) err = errno; else { close(fd); unlink(f); }
        } else {
            fd = open(p, O_WRONLY | O_CLOEXEC);
            if (fd < 0) err = errno; else close(fd);
        }
        kv_ll(p, err);
    }
    close_obj();

    open_obj("dirs");
    for (int i = 0; i < nd; i++)
        list_dir(dirs[i], dirs[i]);
    close_obj();

    fputs("}\n", out);
    fflush(out);
    return ferror(out) ? 1 : 0;
}
