/*
 * dio-fuse: a libdio volume as a directory, through FUSE, so that every
 * ordinary tool (cp, sha256sum, fio, rsync) reaches its files.  A user of
 * the public API only.
 *
 *   dio-fuse [-o ro] [-f] [-s] [-d] [-o FUSE-OPTION...] TARGET MOUNTPOINT
 *
 * The namespace.  libdio has one flat namespace in which '/' is an
 * ordinary byte of a name; a directory entry cannot hold one.  So the
 * mount is one flat directory, and a name's '/' shows as "%2F" and its
 * '%' as "%25": "db/a" is listed as "db%2Fa", and creating "db%2Fb"
 * makes the libdio file "db/b".  The mapping is one to one: a name given
 * to the mount with any other '%' sequence is refused (EINVAL), so what
 * is created is always listed under the name it was created with.  There
 * are no subdirectories (mkdir: EPERM).
 *
 * Files have no owner, mode or times in libdio: they show as the
 * mounting user's, mode 0644 (0444 read-only), and every time is the
 * mount's.  chmod, chown and utimens are accepted and change nothing, so
 * that cp -p and rsync -a work (rsync then needs --checksum or
 * --size-only to skip unchanged files).
 *
 * I/O.  direct_io: the kernel's page cache is not used, every read and
 * write of a program reaches libdio as it was made (FUSE splits large
 * ones), at the offset it was made; a write to a file opened O_APPEND
 * goes to the file's end as libdio sees it.  The loop is multi-threaded;
 * libdio serves the threads in parallel.  fsync and fdatasync are
 * dio_fsync and dio_fdatasync: what a program syncs through the mount
 * is durable by libdio's rules (libdio(7)).
 *
 * The volume is mounted (exclusively: libdio allows one process) when
 * the mount starts and unmounted, consistent, when it ends
 * (fusermount3 -u or umount): dio-fuse then exits.
 */
#define FUSE_USE_VERSION 31
#include <dio/dio.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <fuse_lowlevel.h>   /* fuse_parse_cmdline */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct {
	char *target;
	int rdonly;
	int show_help, show_version;
	struct dio_vol *vol;
	struct timespec mounted;
	uid_t uid;
	gid_t gid;
} fs;

/* ---- names ---------------------------------------------------------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The libdio name of the mount's path "/NAME": 0, or -errno. */
static int name_of(const char *path, char *out)
{
	if (*path++ != '/' || !*path)
		return -ENOENT;
	size_t n = 0;
	for (const char *p = path; *p; p++) {
		char c = *p;
		if (c == '/')
			return -ENOENT;   /* no subdirectories */
		if (c == '%') {
			int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
			c = (char)(hi * 16 + lo);
			if (lo < 0 || (c != '/' && c != '%'))
				return -EINVAL;   /* only %2F and %25: one name, one spelling */
			p += 2;
		}
		if (n == DIO_NAME_MAX)
			return -ENAMETOOLONG;
		out[n++] = c;
	}
	out[n] = 0;
	return 0;
}

/* The directory entry of a libdio name; 0, or -ENAMETOOLONG. */
static int entry_of(const char *name, char *out, size_t size)
{
	size_t n = 0;
	for (const char *p = name; *p; p++) {
		const char *s = *p == '/' ? "%2F" : *p == '%' ? "%25" : NULL;
		size_t k = s ? 3 : 1;
		if (n + k >= size)
			return -ENAMETOOLONG;
		if (s)
			memcpy(out + n, s, 3);
		else
			out[n] = *p;
		n += k;
	}
	out[n] = 0;
	return 0;
}

/* ---- attributes ------------------------------------------------------------- */

static void fill_stat(struct stat *st, const struct dio_stat *ds)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = (ino_t)ds->id;
	st->st_mode = S_IFREG | (fs.rdonly ? 0444 : 0644);
	st->st_nlink = 1;
	st->st_uid = fs.uid;
	st->st_gid = fs.gid;
	st->st_size = (off_t)ds->size;
	st->st_blksize = (blksize_t)ds->block_size;
	st->st_blocks = (blkcnt_t)(ds->allocated / 512);
	st->st_atim = st->st_mtim = st->st_ctim = fs.mounted;
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct dio_stat ds;
	if (!strcmp(path, "/")) {
		memset(st, 0, sizeof(*st));
		st->st_ino = 1;
		st->st_mode = S_IFDIR | (fs.rdonly ? 0555 : 0755);
		st->st_nlink = 2;
		st->st_uid = fs.uid;
		st->st_gid = fs.gid;
		st->st_atim = st->st_mtim = st->st_ctim = fs.mounted;
		return 0;
	}
	if (fi && fi->fh) {
		if (dio_fstat((struct dio_file *)(uintptr_t)fi->fh, &ds))
			return -errno;
	} else {
		char name[DIO_NAME_MAX + 1];
		int r = name_of(path, name);
		if (r)
			return r;
		if (dio_stat(fs.vol, name, &ds))
			return -errno;
	}
	fill_stat(st, &ds);
	return 0;
}

struct dir_walk {
	void *buf;
	fuse_fill_dir_t fill;
};

static int dir_one(const char *name, const struct dio_stat *ds, void *arg)
{
	struct dir_walk *w = arg;
	char ent[4 * DIO_NAME_MAX];
	struct stat st;
	if (entry_of(name, ent, sizeof(ent)))
		return 0;
	fill_stat(&st, ds);
	return w->fill(w->buf, ent, &st, 0, FUSE_FILL_DIR_PLUS) ? 1 : 0;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)off;
	(void)fi;
	(void)flags;
	if (strcmp(path, "/"))
		return -ENOTDIR;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	struct dir_walk w = { buf, fill };
	int r = dio_list(fs.vol, NULL, dir_one, &w);
	return r < 0 ? -errno : 0;   /* 1: the buffer is full, as readdir allows */
}

/* ---- files ------------------------------------------------------------------- */

static struct dio_file *F(struct fuse_file_info *fi)
{
	return (struct dio_file *)(uintptr_t)fi->fh;
}

static int open_as(const char *path, int flags, struct fuse_file_info *fi)
{
	char name[DIO_NAME_MAX + 1];
	int r = name_of(path, name);
	if (r)
		return r;
	struct dio_file *f = dio_open(fs.vol, name, flags & (O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC));
	if (!f)
		return -errno;
	fi->fh = (uint64_t)(uintptr_t)f;
	fi->direct_io = 1;
	return 0;
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
	return open_as(path, fi->flags, fi);
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)mode;
	return open_as(path, fi->flags | O_CREAT, fi);
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	return dio_close(F(fi)) ? -errno : 0;
}

static int op_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)path;
	ssize_t n = dio_pread(F(fi), buf, size, off);
	return n < 0 ? -errno : (int)n;
}

static int op_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)path;
	if (fi->flags & O_APPEND) {
		struct dio_stat ds;
		if (dio_fstat(F(fi), &ds))
			return -errno;
		off = (off_t)ds.size;
	}
	ssize_t n = dio_pwrite(F(fi), buf, size, off);
	return n < 0 ? -errno : (int)n;
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	return (datasync ? dio_fdatasync(F(fi)) : dio_fsync(F(fi))) ? -errno : 0;
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	if (fi && fi->fh)
		return dio_ftruncate(F(fi), size) ? -errno : 0;
	struct fuse_file_info tmp = { .flags = O_WRONLY };
	int r = open_as(path, O_WRONLY, &tmp);
	if (r)
		return r;
	r = dio_ftruncate(F(&tmp), size) ? -errno : 0;
	dio_close(F(&tmp));
	return r;
}

static int op_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
	(void)path;
	int m = 0;
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	if (mode & FALLOC_FL_KEEP_SIZE)
		m |= DIO_FALLOC_KEEP_SIZE;
	if (mode & FALLOC_FL_PUNCH_HOLE)
		m |= DIO_FALLOC_PUNCH_HOLE;
	if (mode & FALLOC_FL_ZERO_RANGE)
		m |= DIO_FALLOC_ZERO_RANGE;
	return dio_fallocate(F(fi), m, off, len) ? -errno : 0;
}

static off_t op_lseek(const char *path, off_t off, int whence, struct fuse_file_info *fi)
{
	(void)path;
	off_t r = dio_lseek(F(fi), off, whence);
	return r < 0 ? -errno : r;
}

/* ---- names ------------------------------------------------------------------- */

static int op_unlink(const char *path)
{
	char name[DIO_NAME_MAX + 1];
	int r = name_of(path, name);
	return r ? r : dio_unlink(fs.vol, name) ? -errno : 0;
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
	char a[DIO_NAME_MAX + 1], b[DIO_NAME_MAX + 1];
	int r = name_of(from, a);
	if (!r)
		r = name_of(to, b);
	if (r)
		return r;
	if (flags & RENAME_EXCHANGE)
		return -EINVAL;
	struct dio_stat ds;
	/* NOREPLACE: between this check and the rename only this mount
	   changes names, and renames here are not atomic against each
	   other anyway (as on any FUSE file system) */
	if ((flags & RENAME_NOREPLACE) && dio_stat(fs.vol, b, &ds) == 0)
		return -EEXIST;
	return dio_rename(fs.vol, a, b) ? -errno : 0;
}

static int op_mkdir(const char *path, mode_t mode)
{
	(void)path;
	(void)mode;
	return -EPERM;   /* one flat directory */
}

/* No owners, modes or times in libdio: accepted, nothing to change. */
static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)mode;
	struct stat st;
	return op_getattr(path, &st, fi);
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	(void)uid;
	(void)gid;
	struct stat st;
	return op_getattr(path, &st, fi);
}

static int op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	(void)tv;
	struct stat st;
	return op_getattr(path, &st, fi);
}

static int op_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	struct dio_statvfs ds;
	if (dio_statvfs(fs.vol, &ds))
		return -errno;
	memset(sv, 0, sizeof(*sv));
	sv->f_bsize = sv->f_frsize = ds.block_size;
	sv->f_blocks = (fsblkcnt_t)ds.total_blocks;
	sv->f_bfree = sv->f_bavail = (fsblkcnt_t)ds.free_blocks;
	sv->f_files = (fsfilcnt_t)ds.nfiles;
	sv->f_namemax = DIO_NAME_MAX;
	return 0;
}

/* ---- the mount ---------------------------------------------------------------- */

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->direct_io = 1;
	cfg->use_ino = 1;
	cfg->kernel_cache = 0;
	/* the kernel asks again each time: sizes are libdio's, not a copy */
	cfg->attr_timeout = 0;
	cfg->entry_timeout = 0;
	cfg->negative_timeout = 0;
	/* mounted here, in the serving process (after fuse_main forked) */
	fs.vol = dio_mount(fs.target, &(struct dio_mount_opts){ .flags = fs.rdonly ? DIO_MOUNT_RDONLY : 0 });
	if (!fs.vol) {
		fprintf(stderr, "dio-fuse: %s: %s\n", fs.target, strerror(errno));
		fuse_exit(fuse_get_context()->fuse);
	}
	return NULL;
}

static void op_destroy(void *data)
{
	(void)data;
	if (fs.vol && dio_umount(fs.vol))
		fprintf(stderr, "dio-fuse: %s: unmount: %s\n", fs.target, strerror(errno));
	fs.vol = NULL;
}

static const struct fuse_operations ops = {
	.getattr = op_getattr, .readdir = op_readdir,
	.open = op_open, .create = op_create, .release = op_release,
	.read = op_read, .write = op_write, .fsync = op_fsync,
	.truncate = op_truncate, .fallocate = op_fallocate, .lseek = op_lseek,
	.unlink = op_unlink, .rename = op_rename, .mkdir = op_mkdir,
	.chmod = op_chmod, .chown = op_chown, .utimens = op_utimens,
	.statfs = op_statfs, .init = op_init, .destroy = op_destroy,
};

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
	(void)data;
	(void)out;
	switch (key) {
	case KEY_RO:
		fs.rdonly = 1;
		return 1;   /* the kernel mounts read-only too */
	case KEY_HELP:
		fs.show_help = 1;
		return 0;
	case KEY_VERSION:
		fs.show_version = 1;
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (!fs.target) {
			/* absolute: the serving process runs in / */
			fs.target = realpath(arg, NULL);
			if (!fs.target) {
				fprintf(stderr, "dio-fuse: %s: %s\n", arg, strerror(errno));
				exit(1);
			}
			return 0;
		}
		return 1;   /* the mount point: fuse_main's */
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
		    "unmount with: fusermount3 -u MOUNTPOINT\n");
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	if (fuse_opt_parse(&args, NULL, opts, opt_proc))
		return 2;
	if (fs.show_version) {
		printf("dio-fuse (libdio %s), FUSE library %s\n", dio_version(), fuse_pkgversion());
		return 0;
	}
	if (fs.show_help) {
		usage(stdout);
		return 0;
	}
	if (!fs.target || args.argc < 2) {
		usage(stderr);
		return 2;
	}
	/* mount once here, so that a volume that cannot be mounted (not a
	   volume, held by another process) is reported on the terminal; the
	   serving process mounts it again (op_init) */
	struct dio_vol *v = dio_mount(fs.target, &(struct dio_mount_opts){ .flags = fs.rdonly ? DIO_MOUNT_RDONLY : 0 });
	if (!v) {
		if (errno == EBUSY)
			fprintf(stderr, "dio-fuse: %s: in use by another process (a libdio volume belongs to "
				"one process at a time)\n", fs.target);
		else
			fprintf(stderr, "dio-fuse: %s: %s\n", fs.target, strerror(errno));
		return 1;
	}
	dio_umount(v);
	clock_gettime(CLOCK_REALTIME, &fs.mounted);
	fs.uid = getuid();
	fs.gid = getgid();
	/* fuse_main's steps, so that the loop is configured here */
	struct fuse_cmdline_opts co;
	if (fuse_parse_cmdline(&args, &co)) {
		usage(stderr);
		return 2;
	}
	int r = 1;
	struct fuse *fu = fuse_new(&args, &ops, sizeof(ops), NULL);
	if (!fu)
		goto out;
	if (fuse_mount(fu, co.mountpoint))
		goto destroy;
	if (fuse_daemonize(co.foreground) || fuse_set_signal_handlers(fuse_get_session(fu)))
		goto unmount;
	r = co.singlethread ? fuse_loop(fu) : fuse_loop_mt(fu, co.clone_fd);
	fuse_remove_signal_handlers(fuse_get_session(fu));
unmount:
	fuse_unmount(fu);
destroy:
	fuse_destroy(fu);   /* op_destroy: the volume unmounted */
out:
	free(co.mountpoint);
	fuse_opt_free_args(&args);
	free(fs.target);
	return r ? 1 : 0;
}
