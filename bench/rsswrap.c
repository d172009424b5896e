/* rsswrap: run a command and report its wall time and peak RSS.
 *
 * usage: rsswrap REPORT_FD MNTNS_FD PROG [ARG...]
 *
 * Why: Linux keeps the highest RSS a process ever had across execve(), and a
 * child forked from the ~13 MB Python harness starts with that as its
 * ru_maxrss. This small static program is the parent instead, so the child's
 * ru_maxrss starts near zero and measures the runtime alone.
 *
 * If MNTNS_FD >= 0, setns() into that mount namespace first (crun runs in a
 * namespace without the hybrid cgroup2 mount). Writes one line to REPORT_FD:
 *   "<wall_ns> <maxrss_kb> <utime_us> <stime_us>\n"
 * and exits with the child's status (128+signal if it was killed).
 * The container init a runtime leaves behind is reparented to the harness,
 * which is a child subreaper; this wrapper is not.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: rsswrap REPORT_FD MNTNS_FD PROG [ARG...]\n");
        return 125;
    }
    int rfd = atoi(argv[1]);
    int nsfd = atoi(argv[2]);
    if (nsfd >= 0) {
        if (setns(nsfd, CLONE_NEWNS) != 0) {
            perror("rsswrap: setns");
            return 125;
        }
        close(nsfd);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("rsswrap: fork");
        return 125;
    }
    if (pid == 0) {
        close(rfd);
        execvp(argv[3], argv + 3);
        perror("rsswrap: exec");
        _exit(127);
    }
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("rsswrap: wait4");
            return 125;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long long ns = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    dprintf(rfd, "%lld %ld %lld %lld\n", ns, ru.ru_maxrss,
            (long long)ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec,
            (long long)ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec);
    close(rfd);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}
