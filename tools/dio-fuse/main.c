/*
 * dio-fuse: a libdio volume as a directory tree, through FUSE, so that
 * every ordinary tool (cp -r, tar, rsync, sha256sum, fio) reaches its
 * files.  A user of the public API only.
 *
 *   dio-fuse [-o ro] [-f] [-s] [-d] [-o FUSE-OPTION...] TARGET MOUNTPOINT
 *
 * Starting.  Everything that can fail is done before the command
 * returns, in the process that will serve the mount, so that its error
 * reaches the terminal and the exit status: the volume is mounted first
 * (libdio allows one process), then the FUSE mount is made; only then
 * does the server leave the terminal (without -f).  A mount point that
 * is the volume's image, or a directory that holds it, is refused: the
 * server would look itself up.
 *
 * Stopping.  fusermount3 -u, umount, SIGTERM, SIGINT or SIGHUP: the
 * files the kernel still holds open are closed, the volume is unmounted
 * consistent, and dio-fuse exits 0.
 */
#include "dfuse.h"
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>   /* fuse_parse_cmdline */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct dfs fs = { .lock = PTHREAD_MUTEX_INITIALIZER };

static struct {
	int show_help, show_version;
	char why[512];          /* the last error libdio logged */
	int ready_fd;           /* the waiting parent's pipe, or -1 */
} run = { .ready_fd = -1 };

/* ---- starting ------------------------------------------------------------------- */

static void keep_reason(int level, const char *msg, void *arg)
{
	(void)arg;
	if (level <= DIO_LOG_ERR)
		snprintf(run.why, sizeof(run.why), "%s", msg);
}

/* Without -f: fork now; the parent waits for the server's verdict (one
   byte, the exit status) and exits with it. */
static void server_start(void)
{
	int p[2];
	if (pipe(p)) {
		perror("dio-fuse: pipe");
		exit(1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("dio-fuse: fork");
		exit(1);
	}
	if (pid > 0) {
		close(p[1]);
		unsigned char status = 1;
		if (read(p[0], &status, 1) != 1)
			status = 1;   /* the server died before it could say */
		_exit(status);
	}
	close(p[0]);
	run.ready_fd = p[1];
	setsid();
}

/* The server's verdict: 0 serving (the terminal is let go), else the
   exit status, its error already printed. */
static void server_ready(unsigned char status)
{
	if (run.ready_fd < 0)
		return;
	if (!status) {
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
			if (null > 2)
				close(null);
		}
	}
	if (write(run.ready_fd, &status, 1) != 1)
		status = 1;
	close(run.ready_fd);
	run.ready_fd = -1;
}

static int mount_volume(void)
{
	dio_set_log(keep_reason, NULL);
	fs.vol = dio_mount(fs.target, &(struct dio_mount_opts){ .flags = fs.rdonly ? DIO_MOUNT_RDONLY : 0 });
	if (fs.vol)
		return 0;
	int e = errno;
	const char *t = fs.target;
	size_t n = strlen(t);
	/* the library names the path itself; once is enough */
	const char *why = !strncmp(run.why, t, n) && !strncmp(run.why + n, ": ", 2) ? run.why + n + 2 : run.why;
	if (e == EBUSY)
		fprintf(stderr, "dio-fuse: %s: in use by another process (a libdio volume belongs to "
			"one process at a time)\n", t);
	else if ((e == EACCES || e == EROFS || e == EPERM) && !fs.rdonly)
		fprintf(stderr, "dio-fuse: %s: %s (mount it read-only: -o ro)\n", t, strerror(e));
	else if (*why && e != ENOENT)
		fprintf(stderr, "dio-fuse: %s: %s (%s)\n", t, strerror(e), why);
	else
		fprintf(stderr, "dio-fuse: %s: %s\n", t, strerror(e));
	return 1;
}

/* The mount point is the volume's image, or a directory above it. */
static int refuse_self(const char *mountpoint)
{
	char *mp = realpath(mountpoint, NULL);
	if (!mp) {
		fprintf(stderr, "dio-fuse: %s: %s\n", mountpoint, strerror(errno));
		return 1;
	}
	size_t n = strlen(mp);
	struct stat a, b;
	bool same = stat(mp, &a) == 0 && stat(fs.target, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
	bool above = !strncmp(fs.target, mp, n) && (fs.target[n] == '/' || !strcmp(mp, "/"));
	free(mp);
	if (!same && !above)
		return 0;
	fprintf(stderr, "dio-fuse: %s: %s the volume %s: mount it elsewhere\n", mountpoint,
		same ? "is" : "holds", fs.target);
	return 1;
}

/* ---- command line ------------------------------------------------------------- */

enum { KEY_RO, KEY_HELP, KEY_VERSION };

static const struct fuse_opt opts[] = {
	FUSE_OPT_KEY("ro", KEY_RO),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_END
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *out)
{
	(void)data, (void)out;
	switch (key) {
	case KEY_RO:
		fs.rdonly = 1;
		return 1;   /* the kernel mounts read-only too */
	case KEY_HELP:
		run.show_help = 1;
		return 0;
	case KEY_VERSION:
		run.show_version = 1;
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (!fs.target) {
			/* absolute: the server runs in / (a URI as it is) */
			fs.target = strstr(arg, "://") ? strdup(arg) : realpath(arg, NULL);
			if (!fs.target) {
				fprintf(stderr, "dio-fuse: %s: %s\n", arg, strerror(errno));
				exit(1);
			}
			return 0;
		}
		return 1;   /* the mount point: fuse_parse_cmdline's */
	default:
		return 1;
	}
}

static void usage(FILE *to)
{
	fprintf(to, "usage: dio-fuse [-o ro] [-f] [-s] [-d] [-o FUSE-OPTION...] TARGET MOUNTPOINT\n"
		    "  TARGET      a libdio volume: an image file or a block device\n"
		    "  -o ro       read-only (the volume is mounted read-only)\n"
		    "  -f          stay in the foreground\n"
		    "  -s          one thread (default: multi-threaded)\n"
		    "  -d          debug output (implies -f)\n"
		    "unmount with: fusermount3 -u MOUNTPOINT (or SIGTERM)\n");
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	if (fuse_opt_parse(&args, NULL, opts, opt_proc))
		return 2;
	if (run.show_version) {
		printf("dio-fuse (libdio %s), FUSE library %s\n", dio_version(), fuse_pkgversion());
		return 0;
	}
	if (run.show_help) {
		usage(stdout);
		return 0;
	}
	struct fuse_cmdline_opts co;
	memset(&co, 0, sizeof(co));
	if (!fs.target || fuse_parse_cmdline(&args, &co) || !co.mountpoint) {
		usage(stderr);
		return 2;
	}
	int r = refuse_self(co.mountpoint);
	if (r)
		goto out;
	clock_gettime(CLOCK_REALTIME, &fs.mounted);
	fs.uid = getuid();
	fs.gid = getgid();
	if (!co.foreground)
		server_start();
	r = mount_volume();
	if (r)
		goto out;
	struct fuse *fu = fuse_new(&args, &dfuse_ops, sizeof(dfuse_ops), NULL);
	if (!fu) {
		r = 2;   /* an option libfuse does not know: it said which */
		goto out;
	}
	r = 1;
	if (fuse_mount(fu, co.mountpoint))
		goto destroy;
	if (fuse_set_signal_handlers(fuse_get_session(fu)))
		goto unmount;
	server_ready(0);
	if (chdir("/"))
		(void)0;   /* the paths held are absolute */
	int lr = co.singlethread ? fuse_loop(fu) : fuse_loop_mt(fu, co.clone_fd);
	/* a stop by signal is a clean stop: the loop reports the signal */
	r = lr == 0 || lr == SIGTERM || lr == SIGINT || lr == SIGHUP ? 0 : 1;
	fuse_remove_signal_handlers(fuse_get_session(fu));
unmount:
	fuse_unmount(fu);
destroy:
	fuse_destroy(fu);   /* op_destroy, if the mount began */
out:
	if (fs.vol) {
		handles_close_all();
		if (dio_umount(fs.vol)) {
			fprintf(stderr, "dio-fuse: %s: unmount: %s\n", fs.target, strerror(errno));
			r = 1;
		}
	}
	server_ready((unsigned char)r);
	free(co.mountpoint);
	fuse_opt_free_args(&args);
	free(fs.target);
	return r;
}
