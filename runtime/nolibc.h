/* System calls without a C library, for pyrunc's two small C programs
 * (exechelper.c: pyrunc-exec; launcher.c: the pyrunc and pyimg commands):
 * raw syscall wrappers returning -errno, the numbers they use on x86_64
 * and aarch64, and NOLIBC_START(entry), the _start that hands the initial
 * stack pointer to entry(long *sp) (sp[0] argc, then argv, NULL, envp). */
#ifndef PYRUNC_NOLIBC_H
#define PYRUNC_NOLIBC_H

typedef unsigned long size_t;
typedef long ssize_t;

#if defined(__x86_64__)
#define NR_read 0
#define NR_write 1
#define NR_open 2
#define NR_close 3
#define NR_rt_sigaction 13
#define NR_ioctl 16
#define NR_dup2 33
#define NR_clone 56
#define NR_execve 59
#define NR_exit 60
#define NR_wait4 61
#define NR_kill 62
#define NR_fcntl 72
#define NR_setsid 112
#define NR_clock_gettime 228
#define NR_exit_group 231
#define NR_ppoll 271
#define NR_accept4 288
#define NR_pipe2 293
#define NR_pidfd_open 434
#define NR_readlinkat 267
#define NR_setns 308
#define NR_mount 165

static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

/* _start: the stack pointer (argc, argv, envp) goes to ENTRY(long *sp). */
#define NOLIBC_START(entry)                                                     \
    __asm__(".text\n.global _start\n_start:\n  xor %rbp, %rbp\n  mov %rsp, %rdi\n"   \
            "  and $-16, %rsp\n  call " #entry "\n  hlt\n")
#elif defined(__aarch64__)
#define NR_read 63
#define NR_write 64
#define NR_openat 56
#define NR_close 57
#define NR_rt_sigaction 134
#define NR_ioctl 29
#define NR_dup3 24
#define NR_clone 220
#define NR_execve 221
#define NR_exit 93
#define NR_wait4 260
#define NR_kill 129
#define NR_fcntl 25
#define NR_setsid 157
#define NR_clock_gettime 113
#define NR_exit_group 94
#define NR_ppoll 73
#define NR_accept4 242
#define NR_pipe2 59
#define NR_pidfd_open 434
#define NR_readlinkat 78
#define NR_setns 268
#define NR_mount 40

static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
}

#define NOLIBC_START(entry)                                                     \
    __asm__(".text\n.global _start\n_start:\n  mov x29, #0\n  mov x30, #0\n"      \
            "  mov x0, sp\n  and x1, x0, #-16\n  mov sp, x1\n  bl " #entry "\n")
#else
#error "nolibc.h: unsupported architecture"
#endif

#define sys0(n) sys6(n, 0, 0, 0, 0, 0, 0)
#define sys1(n, a) sys6(n, (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b) sys6(n, (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c) sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

#endif
