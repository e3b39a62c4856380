/*
 * dio-fuse's operations: each the libdio call that does it, on the name
 * tree.c gives the path.
 *
 * Files have no owner or mode in libdio: they show as the mounting
 * user's, mode 0644 (0444 read-only), directories 0755; chmod and chown
 * are accepted and change nothing, so that cp -p and rsync -a work.
 *
 * I/O.  direct_io: the kernel's page cache is not used, every read and
 * write of a program reaches libdio as it was made (FUSE splits large
 * ones).  A file opened O_DSYNC or O_SYNC is opened so in libdio: each
 * write is durable when it returns.  fsync and fdatasync are dio_fsync
 * and dio_fdatasync, and fsync of a directory is dio_syncfs: the names
 * made and removed are durable (the write-fsync-rename-fsync-directory
 * replace works).
 */
#include "dfuse.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- attributes ------------------------------------------------------------- */

static void file_stat(struct stat *st, const struct dio_stat *ds)
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
	/* libdio keeps the modification time only: access and change
	   times show it too; 0 (a file of an older volume): the mount's */
	st->st_atim = st->st_mtim = st->st_ctim = fs.mounted;
	if (ds->mtime_ns) {
		st->st_mtim.tv_sec = (time_t)(ds->mtime_ns / 1000000000);
		st->st_mtim.tv_nsec = (long)(ds->mtime_ns % 1000000000);
		if (st->st_mtim.tv_nsec < 0) {
			st->st_mtim.tv_sec--;
			st->st_mtim.tv_nsec += 1000000000;
		}
		st->st_atim = st->st_ctim = st->st_mtim;
	}
}

/* A directory's inode number: its name's hash, top bit set (libdio's
   file ids are small), never 0 (a readdir entry of inode 0 is skipped). */
static ino_t dir_ino(const char *name)
{
	uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a */
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
	return *name ? (ino_t)h | (ino_t)1 << (sizeof(ino_t) * 8 - 1) : 1;
}

static void dir_stat(struct stat *st, const char *name)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = dir_ino(name);
	/* a directory made by mkdir: its marker's time */
	char marker[NAME_BUF];
	struct dio_stat ds;
	int64_t t = 0;
	if (*name) {
		with_slash(name, marker);
		if (!dio_stat(fs.vol, marker, &ds))
			t = ds.mtime_ns;
	}
	st->st_mode = S_IFDIR | (fs.rdonly ? 0555 : 0755);
	st->st_nlink = 2;
	st->st_uid = fs.uid;
	st->st_gid = fs.gid;
	st->st_atim = st->st_mtim = st->st_ctim = fs.mounted;
	if (t > 0) {
		st->st_mtim.tv_sec = (time_t)(t / 1000000000);
		st->st_mtim.tv_nsec = (long)(t % 1000000000);
		st->st_atim = st->st_ctim = st->st_mtim;
	}
}

static struct dio_file *F(struct fuse_file_info *fi)
{
	return ((struct handle *)(uintptr_t)fi->fh)->f;
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct dio_stat ds;
	if (fi && fi->fh) {
		if (dio_fstat(F(fi), &ds))
			return -errno;
		file_stat(st, &ds);
		return 0;
	}
	char name[NAME_BUF];
	int r = name_of(path, name);
	if (r < 0)
		return r;
	if (!r && is_dir(name)) {
		dir_stat(st, name);
		return 0;
	}
	if (dio_stat(fs.vol, name, &ds))
		return -errno;
	file_stat(st, &ds);
	return 0;
}

struct fill_ctx {
	void *buf;
	fuse_fill_dir_t fill;
};

static int fill_one(void *arg, const char *entry, const char *name, const struct dio_stat *ds)
{
	struct fill_ctx *c = arg;
	struct stat st;
	if (!ds)
		dir_stat(&st, name);
	else
		file_stat(&st, ds);
	return c->fill(c->buf, entry, &st, 0, FUSE_FILL_DIR_PLUS) ? 1 : 0;
}

/* A directory's handle holds its name: with nullpath_ok readdir may
   come without a path. */
static int op_opendir(const char *path, struct fuse_file_info *fi)
{
	char name[NAME_BUF];
	int r = name_of(path, name);
	if (r < 0)
		return r;
	if (r || !is_dir(name))
		return -ENOTDIR;
	char *copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	fi->fh = (uint64_t)(uintptr_t)copy;
	return 0;
}

static int op_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	free((char *)(uintptr_t)fi->fh);
	return 0;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)path, (void)off, (void)flags;
	const char *name = (const char *)(uintptr_t)fi->fh;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	struct fill_ctx c = { buf, fill };
	return list_level(name, fill_one, &c);
}

/* ---- files ------------------------------------------------------------------- */

static int open_as(const char *path, int flags, struct fuse_file_info *fi)
{
	char name[NAME_BUF];
	int r = name_of(path, name);
	if (r < 0)
		return r;
	if (!*name)
		return -EISDIR;
	struct handle *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->flags = flags;
	h->f = dio_open(fs.vol, name, flags & (O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_DSYNC | O_SYNC));
	if (!h->f) {
		free(h);
		return -errno;
	}
	pthread_mutex_lock(&fs.lock);
	h->next = fs.open;
	if (fs.open)
		fs.open->prev = h;
	fs.open = h;
	pthread_mutex_unlock(&fs.lock);
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = 1;
	return 0;
}

static int close_handle(struct handle *h)
{
	pthread_mutex_lock(&fs.lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		fs.open = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&fs.lock);
	int r = dio_close(h->f) ? -errno : 0;
	free(h);
	return r;
}

/* A stop with files still open (SIGTERM while a program holds one): the
   kernel will not release them, and a volume with open files cannot be
   unmounted cleanly. */
void handles_close_all(void)
{
	while (fs.open)
		close_handle(fs.open);
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
	return close_handle((struct handle *)(uintptr_t)fi->fh);
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

static int op_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path, (void)datasync, (void)fi;
	return dio_syncfs(fs.vol) ? -errno : 0;
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
	close_handle((struct handle *)(uintptr_t)tmp.fh);
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
	char name[NAME_BUF];
	int r = name_of(path, name);
	if (r < 0)
		return r;
	if (!r && is_dir(name))
		return -EISDIR;
	if (dio_unlink(fs.vol, name))
		return -errno;
	keep_parent(path);
	return 0;
}

static int op_mkdir(const char *path, mode_t mode)
{
	(void)mode;
	char name[NAME_BUF];
	struct dio_stat ds;
	int r = name_of(path, name);
	if (r)
		return r < 0 ? r : -EINVAL;   /* a name shown flat cannot be a directory */
	if (is_dir(name) || !dio_stat(fs.vol, name, &ds))
		return -EEXIST;
	return mark_dir(name);
}

static int op_rmdir(const char *path)
{
	char name[NAME_BUF], marker[NAME_BUF];
	struct dio_stat ds;
	int r = name_of(path, name);
	if (r < 0)
		return r;
	if (r || !*name || !is_dir(name))
		return !*name ? -EBUSY : !dio_stat(fs.vol, name, &ds) ? -ENOTDIR : -ENOENT;
	with_slash(name, marker);
	if (dir_has(name, marker))
		return -ENOTEMPTY;
	if (dio_unlink(fs.vol, marker))
		return -errno;
	keep_parent(path);
	return 0;
}

/*
 * A directory is renamed by renaming its marker when it is empty.  One
 * that holds names is refused with EXDEV: libdio renames one name per
 * call, and a directory moved name by name would be half moved after a
 * crash.  mv then copies the tree and removes the old one, as it does
 * between file systems.
 */
static int rename_dir(const char *from, const char *a, const char *b, int rb, unsigned flags)
{
	char ma[NAME_BUF], mb[NAME_BUF];
	struct dio_stat ds;
	if (rb)
		return -EINVAL;
	size_t la = strlen(a);
	if (!strncmp(b, a, la) && b[la] == '/')
		return -EINVAL;   /* into itself */
	with_slash(a, ma);
	with_slash(b, mb);
	bool b_dir = is_dir(b);
	if (!b_dir && !dio_stat(fs.vol, b, &ds))
		return -ENOTDIR;
	if (b_dir && (flags & RENAME_NOREPLACE))
		return -EEXIST;
	if (b_dir && dir_has(b, mb))
		return -ENOTEMPTY;
	if (dir_has(a, ma))
		return -EXDEV;
	if (strlen(mb) > DIO_NAME_MAX)
		return -ENAMETOOLONG;
	if (dio_rename(fs.vol, ma, mb))
		return -errno;
	keep_parent(from);
	return 0;
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
	char a[NAME_BUF], b[NAME_BUF];
	struct dio_stat ds;
	int ra = name_of(from, a), rb = ra < 0 ? ra : name_of(to, b);
	if (ra < 0 || rb < 0)
		return ra < 0 ? ra : rb;
	if (flags & RENAME_EXCHANGE)
		return -EINVAL;
	if (!*a || !*b)
		return -EBUSY;
	if (!ra && is_dir(a))
		return rename_dir(from, a, b, rb, flags);
	if (!rb && is_dir(b))
		return -EISDIR;
	/* NOREPLACE: between this check and the rename only this mount
	   changes names */
	if ((flags & RENAME_NOREPLACE) && dio_stat(fs.vol, b, &ds) == 0)
		return -EEXIST;
	if (dio_rename(fs.vol, a, b))
		return -errno;
	keep_parent(from);
	return 0;
}

/* No owners or modes in libdio: accepted, nothing to change. */
static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)mode;
	struct stat st;
	return op_getattr(path, &st, fi);
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	(void)uid, (void)gid;
	struct stat st;
	return op_getattr(path, &st, fi);
}

/* The modification time is libdio's (dio_set_mtime); the access time is
   not kept.  A directory's time is its marker's, if it has one. */
static int op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	const struct timespec *m = tv ? &tv[1] : &now;
	if (m->tv_nsec == UTIME_OMIT)
		return 0;
	if (m->tv_nsec == UTIME_NOW)
		m = &now;
	int64_t ns = (int64_t)m->tv_sec * 1000000000 + m->tv_nsec;
	if (fi && fi->fh)
		return dio_set_mtime(F(fi), ns) ? -errno : 0;
	char name[NAME_BUF], marker[NAME_BUF];
	int r = name_of(path, name);
	if (r < 0)
		return r;
	struct fuse_file_info tmp = { .flags = O_RDONLY };
	if (!r && is_dir(name)) {
		if (!*name)
			return 0;   /* the top: no marker to hold it */
		with_slash(name, marker);
		struct dio_stat ds;
		if (dio_stat(fs.vol, marker, &ds))
			return 0;   /* a directory without a marker keeps no time */
		struct dio_file *f = dio_open(fs.vol, marker, O_RDONLY);
		if (!f)
			return -errno;
		r = dio_set_mtime(f, ns) ? -errno : 0;
		dio_close(f);
		return r;
	}
	r = open_as(path, O_RDONLY, &tmp);
	if (r)
		return r;
	r = dio_set_mtime(F(&tmp), ns) ? -errno : 0;
	close_handle((struct handle *)(uintptr_t)tmp.fh);
	return r;
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
	sv->f_files = (fsfilcnt_t)(ds.nfiles + ds.files_free);
	sv->f_ffree = sv->f_favail = (fsfilcnt_t)ds.files_free;
	/* an entry with every byte escaped ("%25") is three times a name */
	sv->f_namemax = 3 * DIO_NAME_MAX;
	return 0;
}

/* ---- the mount ---------------------------------------------------------------- */

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->direct_io = 1;
	cfg->use_ino = 1;
	cfg->kernel_cache = 0;
	/* an open file unlinked or renamed over is libdio's to keep until
	   its last close: no .fuse_hidden files, one rename for mv */
	cfg->hard_remove = 1;
	cfg->nullpath_ok = 1;   /* such a file's calls come with its handle only */
	/* the kernel asks again each time: sizes are libdio's, not a copy */
	cfg->attr_timeout = 0;
	cfg->entry_timeout = 0;
	cfg->negative_timeout = 0;
	return NULL;
}

static void op_destroy(void *data)
{
	(void)data;
	handles_close_all();
	if (fs.vol && dio_umount(fs.vol))
		fprintf(stderr, "dio-fuse: %s: unmount: %s\n", fs.target, strerror(errno));
	fs.vol = NULL;
}

const struct fuse_operations dfuse_ops = {
	.getattr = op_getattr, .opendir = op_opendir, .readdir = op_readdir, .releasedir = op_releasedir,
	.open = op_open, .create = op_create, .release = op_release,
	.read = op_read, .write = op_write, .fsync = op_fsync, .fsyncdir = op_fsyncdir,
	.truncate = op_truncate, .fallocate = op_fallocate, .lseek = op_lseek,
	.unlink = op_unlink, .rename = op_rename, .mkdir = op_mkdir, .rmdir = op_rmdir,
	.chmod = op_chmod, .chown = op_chown, .utimens = op_utimens,
	.statfs = op_statfs, .init = op_init, .destroy = op_destroy,
};
