/* A static test program, the only file of the tests' no-shell image: what the exec contract
 * tests ask a command to do, without a shell or any other tool. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

static void status_line(const char *name) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    if (!f) { perror("/proc/self/status"); exit(2); }
    while (fgets(line, sizeof line, f))
        if (strncmp(line, name, strlen(name)) == 0) fputs(line, stdout);
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: probe out|err|exit|raise|sigs|env|pwd|args|stdin|tree|write|big ...\n"); return 2; }
    const char *what = argv[1];
    if (!strcmp(what, "out")) { for (int i = 2; i < argc; i++) printf("%s\n", argv[i]); return 0; }
    if (!strcmp(what, "err")) { for (int i = 2; i < argc; i++) fprintf(stderr, "%s\n", argv[i]); return 0; }
    if (!strcmp(what, "exit")) return atoi(argv[2]);
    if (!strcmp(what, "raise")) { fflush(stdout); raise(atoi(argv[2])); return 99; }
    if (!strcmp(what, "sigs")) { status_line("SigIgn:"); status_line("SigBlk:"); return 0; }
    if (!strcmp(what, "env")) { const char *v = getenv(argv[2]); printf("%s\n", v ? v : "(unset)"); return 0; }
    if (!strcmp(what, "pwd")) { char d[4096]; if (!getcwd(d, sizeof d)) return 3; printf("%s\n", d); return 0; }
    if (!strcmp(what, "args")) { for (int i = 2; i < argc; i++) { fwrite(argv[i], 1, strlen(argv[i]), stdout); putchar('\n'); } return 0; }
    if (!strcmp(what, "stdin")) { char b[4096]; ssize_t n, t = 0; while ((n = read(0, b, sizeof b)) > 0) t += n; printf("%zd\n", t); return 0; }
    if (!strcmp(what, "tree")) {
        /* A child and a grandchild that sleep (argv[3] marks them), and this one too. */
        if (fork() == 0) { if (fork() == 0) { execl("/proc/self/exe", argv[0], "sleep", argv[2], argv[3], (char *)0); _exit(4); } pause(); _exit(0); }
        printf("started\n"); fflush(stdout);
        sleep(atoi(argv[2]));
        return 0;
    }
    if (!strcmp(what, "sleep")) { sleep(atoi(argv[2])); return 0; }
    if (!strcmp(what, "write")) { int fd = open(argv[2], O_CREAT | O_WRONLY | O_TRUNC, 0644); if (fd < 0) { perror(argv[2]); return 3; } write(fd, "made\n", 5); close(fd); return 0; }
    if (!strcmp(what, "big")) {
        /* argv[2] MiB of a known pattern on stdout. */
        static char buf[1 << 20];
        for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)(i * 7 + 3);
        for (int m = atoi(argv[2]); m > 0; m--) fwrite(buf, 1, sizeof buf, stdout);
        return 0;
    }
    fprintf(stderr, "probe: unknown %s\n", what);
    return 2;
}
