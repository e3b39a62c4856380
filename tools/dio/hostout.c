/*
 * dio get's host side: a host file changes only when the whole copy
 * succeeded, as put's NAME changes only then inside the volume.
 *
 * A regular file, new or existing, is written under a temporary name in
 * its own directory (".BASE.dio-get-XXXXXX": same file system, so the
 * rename is atomic), synced, given the old file's mode (and owner, for
 * root), renamed over the destination, and the directory is synced.  A
 * failure, or SIGINT, SIGTERM, SIGHUP or SIGPIPE during the copy, removes
 * the temporary file: the destination is as it was, or still absent.
 * The price of the rename: hard links to the old file keep its old
 * content, as with any atomic replace.
 *
 * A device, FIFO or socket is written in place: there is nothing to
 * rename, and what reached it cannot be taken back.  The volume's own
 * image or device is refused before anything is opened for writing.
 */
#include "tool.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

_Static_assert(sizeof(((struct hostout *)0)->path) >= PATH_MAX, "realpath writes PATH_MAX bytes");

/* The temporary file a signal must remove; empty when there is none.
   Written only while the handlers are not installed. */
static char g_tmp[PATH_MAX];
static const int g_sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE };
static struct sigaction g_old[sizeof(g_sigs) / sizeof(g_sigs[0])];

static void on_signal(int sig)
{
	unlink(g_tmp);   /* async-signal-safe; then die of the signal as before */
	signal(sig, SIG_DFL);
	raise(sig);
}

static void handlers(bool on)
{
	for (size_t i = 0; i < sizeof(g_sigs) / sizeof(g_sigs[0]); i++) {
		if (on) {
			struct sigaction sa;
			memset(&sa, 0, sizeof(sa));
			sa.sa_handler = on_signal;
			sigfillset(&sa.sa_mask);
			sigaction(g_sigs[i], &sa, &g_old[i]);
		} else {
			sigaction(g_sigs[i], &g_old[i], NULL);
		}
	}
}

/* One file: the same inode, or the same block device by either node. */
static bool same_file(const struct stat *a, const struct stat *b)
{
	if (S_ISBLK(a->st_mode) && S_ISBLK(b->st_mode))
		return a->st_rdev == b->st_rdev;
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

int hostout_check(const char *target, const char *path)
{
	struct stat ts, ps;
	if (stat(path, &ps) == 0 && stat(target, &ts) == 0 && same_file(&ts, &ps))
		return failmsg(path, NULL, "is the volume itself: refusing to write over it");
	return 0;
}

/* Where a regular destination really is: a symbolic link is followed, so
   the rename replaces the file it points to, not the link. */
static int resolve(const char *path, char *out)
{
	struct stat ls;
	if (lstat(path, &ls) == 0 && S_ISLNK(ls.st_mode) && realpath(path, out))
		return 0;
	if (strlen(path) >= PATH_MAX)
		return -ENAMETOOLONG;
	strcpy(out, path);
	return 0;
}

static int temp_open(struct hostout *o)
{
	const char *slash = strrchr(o->path, '/');
	const char *base = slash ? slash + 1 : o->path;
	int dirlen = slash ? (int)(slash - o->path) + 1 : 0;
	if (snprintf(o->tmp, sizeof(o->tmp), "%.*s.%s.dio-get-XXXXXX", dirlen, o->path, base) >= (int)sizeof(o->tmp))
		return -ENAMETOOLONG;
	/* direct where the host file system takes it: see write_all in copy.c */
	char keep[PATH_MAX];
	strcpy(keep, o->tmp);
	o->fd = mkostemp(o->tmp, O_CLOEXEC | O_DIRECT);
	if (o->fd < 0 && errno == EINVAL) {
		strcpy(o->tmp, keep);
		o->fd = mkostemp(o->tmp, O_CLOEXEC);
	}
	if (o->fd < 0) {
		o->tmp[0] = 0;
		return -errno;
	}
	return 0;
}

int hostout_open(struct hostout *o, const char *path)
{
	memset(o, 0, sizeof(*o));
	o->fd = -1;
	o->shown = path;
	struct stat st;
	bool exists = stat(path, &st) == 0;
	if (exists && !S_ISREG(st.st_mode)) {
		if (S_ISDIR(st.st_mode))
			return failmsg(path, NULL, "%s", errstr(EISDIR));
		o->fd = open(path, O_WRONLY | O_CLOEXEC);
		return o->fd < 0 ? fail(path, NULL, errno) : 0;
	}
	int e = resolve(path, o->path);
	if (!e) {
		mode_t mask = umask(0);
		umask(mask);
		o->mode = exists ? st.st_mode & 07777 : 0666 & ~mask;
		o->owner = exists && geteuid() == 0;
		if (o->owner) {
			o->uid = st.st_uid;
			o->gid = st.st_gid;
		}
		e = temp_open(o);
	}
	if (e)
		return failmsg(path, NULL, "cannot write a temporary file beside it: %s", errstr(-e));
	memcpy(g_tmp, o->tmp, sizeof(g_tmp));
	handlers(true);
	return 0;
}

static int sync_dir(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) + (slash == path) : 1, slash ? path : ".");
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int e = fsync(fd) && errno != EINVAL ? -errno : 0;
	close(fd);
	return e;
}

void hostout_abort(struct hostout *o)
{
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	if (o->tmp[0]) {
		unlink(o->tmp);
		handlers(false);
		o->tmp[0] = 0;
	}
}

int hostout_commit(struct hostout *o)
{
	int e = 0;
	if (!o->tmp[0]) {   /* written in place */
		e = close(o->fd) ? -errno : 0;
		o->fd = -1;
		return e ? fail(o->shown, NULL, -e) : 0;
	}
	if (fdatasync(o->fd) || fchmod(o->fd, o->mode))
		e = -errno;
	if (!e && o->owner && fchown(o->fd, o->uid, o->gid))
		e = -errno;
	if (!e && close(o->fd))
		e = -errno;
	o->fd = -1;
	if (!e && rename(o->tmp, o->path))
		e = -errno;
	if (e) {
		hostout_abort(o);
		return fail(o->shown, NULL, -e);
	}
	handlers(false);
	o->tmp[0] = 0;
	/* the rename durable too: the copy is on stable storage, as put's is */
	e = sync_dir(o->path);
	return e ? fail(o->shown, NULL, -e) : 0;
}
