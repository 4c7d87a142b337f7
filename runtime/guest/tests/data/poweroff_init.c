/* Tiny static /init for guest-asset tests (written for this crate).
 * Mounts /proc, loads every module listed in /lib/modules/load-order with finit_module,
 * prints a summary and GUEST-INIT-OK to the console, then powers the VM off. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    int con = open("/dev/console", O_WRONLY | O_NOCTTY);
    if (con < 0) con = 1;
    mount("proc", "/proc", "proc", 0, NULL);
    char buf[64] = {0};
    int up = open("/proc/uptime", O_RDONLY);
    if (up >= 0 && read(up, buf, sizeof buf - 1) > 0) dprintf(con, "INIT-UPTIME %s", buf);
    static char order[8192];
    int loaded = 0, failed = 0;
    int lo = open("/lib/modules/load-order", O_RDONLY);
    ssize_t n = lo >= 0 ? read(lo, order, sizeof order - 1) : -1;
    if (n < 0) { dprintf(con, "NO-LOAD-ORDER errno=%d\n", errno); failed++; n = 0; }
    order[n] = 0;
    for (char *name = strtok(order, "\n"); name; name = strtok(NULL, "\n")) {
        char path[256];
        snprintf(path, sizeof path, "/lib/modules/%s.ko", name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) != 0) {
            dprintf(con, "MODULE-FAIL %s errno=%d\n", name, errno);
            failed++;
        } else {
            loaded++;
        }
        if (fd >= 0) close(fd);
    }
    dprintf(con, "MODULES-LOADED %d FAILED %d\n", loaded, failed);
    dprintf(con, "GUEST-INIT-OK pid=%d\n", (int)getpid());
    sync();
    reboot(RB_POWER_OFF);
    return 1;
}
