/* In-process A/B of ways to write one buffer to many loopback TCP viewers, with a reader
 * thread draining them through epoll (so the writer pays for waking it, as a server does).
 * The variants alternate frame by frame in one process, so the shared VM's drift hits both;
 * only the writer thread's CPU time is counted.
 *
 *   cc -O2 -o /tmp/write_ab perf/write_ab.c -lpthread
 *   /tmp/write_ab calls    SIZE FRAMES VIEWERS   # sendmsg (one iovec) / sendto / write
 *   /tmp/write_ab sendfile SIZE FRAMES VIEWERS   # sendto / sendfile from a memfd
 *
 * BENCHMARKS.md, "One buffer, one sendto" and "What bounds (d)", has its results. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int n, *wfd, *rfd;

static void *reader(void *unused) {
    (void)unused;
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, rfd[i], &e);
    }
    static char b[1 << 16];
    struct epoll_event ev[256];
    for (;;) {
        int k = epoll_wait(ep, ev, 256, -1);
        for (int j = 0; j < k; j++)
            while (read(rfd[ev[j].data.u32], b, sizeof b) > 0) {
            }
    }
    return NULL;
}

static double cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s calls|sendfile SIZE FRAMES VIEWERS\n", argv[0]);
        return 2;
    }
    int files = strcmp(argv[1], "sendfile") == 0;
    int sz = atoi(argv[2]), frames = atoi(argv[3]);
    n = atoi(argv[4]);
    int kinds = files ? 2 : 3;
    const char *names[] = {"sendmsg", "sendto", "write"};
    if (files) names[0] = "sendto", names[1] = "sendfile";
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);
    wfd = calloc(n, sizeof *wfd);
    rfd = calloc(n, sizeof *rfd);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t al = sizeof a;
    if (bind(l, (void *)&a, sizeof a) || getsockname(l, (void *)&a, &al) || listen(l, 4096)) {
        perror("listen");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        wfd[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(wfd[i], (void *)&a, sizeof a)) {
            perror("connect");
            return 1;
        }
        rfd[i] = accept4(l, 0, 0, SOCK_NONBLOCK);
        int one = 1;
        setsockopt(wfd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    pthread_t t;
    pthread_create(&t, 0, reader, 0);
    char *buf = malloc(sz);
    memset(buf, 7, sz);
    int mfd = memfd_create("write_ab", 0);
    long span = (sz + 4095) / 4096 * 4096;
    double c[3] = {0};
    long cnt[3] = {0};
    for (int f = 0; f < frames; f++) {
        int m = f % kinds;
        if (files && m == 1 && pwrite(mfd, buf, sz, 0) != sz) return 1;
        double t0 = cpu();
        for (int i = 0; i < n; i++) {
            struct iovec v = {buf, sz};
            struct msghdr h = {.msg_iov = &v, .msg_iovlen = 1};
            off_t off = 0;
            if (files && m == 1)
                sendfile(wfd[i], mfd, &off, sz);
            else if (files || m == 1)
                syscall(SYS_sendto, wfd[i], buf, sz, MSG_DONTWAIT | MSG_NOSIGNAL, 0, 0);
            else if (m == 0)
                syscall(SYS_sendmsg, wfd[i], &h, MSG_DONTWAIT | MSG_NOSIGNAL);
            else
                syscall(SYS_write, wfd[i], buf, sz);
        }
        c[m] += cpu() - t0;
        cnt[m] += n;
        /* The pages a socket may still reference are punched out, never rewritten. */
        if (files && m == 1) fallocate(mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, span);
        usleep(15000);
    }
    printf("%d B to %d viewers:", sz, n);
    for (int m = 0; m < kinds; m++)
        printf("  %s %.3f us (%+.1f %%)", names[m], c[m] / cnt[m] * 1e6,
               (c[m] / cnt[m]) / (c[0] / cnt[0]) * 100 - 100);
    printf("\n");
    return 0;
}
