/*
 * Files, the public calls: open, close, stat, unlink, rename, list,
 * truncate, fallocate, lseek, fsync.  The namespace and inode table they
 * work on are in inode.c, the journalled changes to a file's map and size
 * in md.c.
 *
 * A metadata change is: take md_lock, change memory, append the journal
 * record that redoes it, release.  Nothing is durable until a commit
 * (fsync, fdatasync, O_DSYNC, syncfs, or a checkpoint).
 */
#include "internal.h"
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- handles ---------------------------------------------------------- */

static int name_check(const char *name, size_t *len)
{
	if (!name)
		return -EINVAL;
	size_t l = strnlen(name, DIO_NAME_MAX + 1);
	if (l == 0)
		return -ENOENT;
	if (l > DIO_NAME_MAX)
		return -ENAMETOOLONG;
	*len = l;
	return 0;
}

static int fail(int e)
{
	errno = e < 0 ? -e : e;
	return -1;
}

static int do_truncate(struct dio_file *f, off_t length);

#define OPEN_FLAGS (O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_DSYNC | O_SYNC | DIO_O_STRICT | DIO_O_CONCURRENT)

DIO_API struct dio_file *dio_open(struct dio_vol *v, const char *name, int flags)
{
	size_t len = 0;
	int e = v ? name_check(name, &len) : -EINVAL;
	if (!e && ((flags & ~OPEN_FLAGS) || (flags & O_ACCMODE) == O_ACCMODE))
		e = -EINVAL;
	bool wr = (flags & O_ACCMODE) != O_RDONLY;
	if (!e && v->rdonly && (wr || (flags & O_TRUNC)))
		e = -EROFS;
	if (e) {
		fail(e);
		return NULL;
	}
	/* the range lock is made here, outside md_lock, and kept if this is
	   the inode's first handle */
	struct dio_file *f = dio_calloc(1, sizeof(*f));
	struct dio_rangelock *spare = rl_new();
	if (!f || !spare) {
		free(f);
		rl_free(spare);
		fail(ENOMEM);
		return NULL;
	}
	pthread_mutex_lock(&v->md_lock);
	struct dio_inode *in = ns_lookup(v, name, len);
	if (in && (flags & O_CREAT) && (flags & O_EXCL))
		e = -EEXIST;
	else if (!in && !(flags & O_CREAT))
		e = -ENOENT;
	else if (!in && v->rdonly)
		e = -EROFS;
	else if (!in) {
		/* every allocation before the first change: a create that
		   fails leaves nothing behind */
		char *copy = NULL;
		e = md_room(v, 0, len);
		if (!e)
			e = md_ready(v, MD_CALL_JBYTES, &(unsigned){ 0 });
		if (!e)
			e = ns_reserve(v, name, len, &copy);
		if (!e && !(in = ino_new(v, v->ns.next_ino)))
			e = -ENOMEM;
		if (!e) {
			/* exposes no data: needs no flush before it */
			struct dio_rec r = { .type = R_CREATE, .ino = in->ino, .n1 = name, .l1 = len };
			j_append(v, &r, false);   /* reserved */
			v->ns.next_ino++;
			ns_insert_reserved(v, in, copy, len);
			md_times(v, in, dio_clock_coarse_ns());   /* reserved too */
		} else {
			free(copy);
		}
	}
	if (!e && !in->rl) {
		in->rl = spare;
		spare = NULL;
	}
	struct j_due due = j_due(v);
	if (!e) {
		in->nopen++;
		v->ns.nopen_total++;
		f->vol = v;
		f->ino = in;
		f->flags = flags;
		atomic_init(&f->err_seen, atomic_load(&in->err_seq));
		atomic_init(&f->refs, 1);
		f->magic = DIO_FILE_MAGIC;
	}
	md_unlock(v);
	rl_free(spare);
	if (!e)
		e = j_commit_due(v, due);
	if (e) {
		if (f->magic)
			dio_close(f);
		else
			free(f);
		fail(e);
		return NULL;
	}
	if ((flags & O_TRUNC) && in->size && do_truncate(f, 0) < 0) {
		e = errno;
		dio_close(f);
		fail(e);
		return NULL;
	}
	return f;
}

DIO_API int dio_close(struct dio_file *f)
{
	if (file_check(f) < 0)
		return -1;
	f->magic = 0;   /* no new call or request on it from here */
	file_put(f);
	return 0;
}

static void fill_stat(const struct dio_vol *v, struct dio_inode *in, struct dio_stat *st)
{
	pthread_rwlock_rdlock(&in->map_lock);
	memset(st, 0, sizeof(*st));
	st->id = in->ino;
	st->size = in->size;
	st->allocated = em_blocks(&in->map) * v->bs;
	st->nextents = em_count(&in->map);
	st->block_size = v->bs;
	st->mtime_ns = atomic_load_explicit(&in->mtime, memory_order_relaxed);
	pthread_rwlock_unlock(&in->map_lock);
}

DIO_API int dio_fstat(struct dio_file *f, struct dio_stat *st)
{
	if (file_check(f) < 0)
		return -1;
	if (!st)
		return fail(EINVAL);
	fill_stat(f->vol, f->ino, st);
	return 0;
}

DIO_API int dio_stat(struct dio_vol *v, const char *name, struct dio_stat *st)
{
	size_t len = 0;
	int e = (v && st) ? name_check(name, &len) : -EINVAL;
	if (e)
		return fail(e);
	pthread_mutex_lock(&v->md_lock);
	struct dio_inode *in = ns_lookup(v, name, len);
	if (in)
		fill_stat(v, in, st);
	md_unlock(v);
	return in ? 0 : fail(ENOENT);
}

DIO_API int dio_unlink(struct dio_vol *v, const char *name)
{
	size_t len = 0;
	int e = v ? name_check(name, &len) : -EINVAL;
	if (!e && v->rdonly)
		e = -EROFS;
	if (e)
		return fail(e);
	pthread_mutex_lock(&v->md_lock);
	struct dio_inode *in = ns_lookup(v, name, len);
	if (!in)
		e = -ENOENT;
	else if (v->j.broken)
		e = -EIO;
	else
		e = md_ready(v, MD_CALL_JBYTES, &(unsigned){ 0 });
	if (!e) {
		/* exposes no data (its blocks wait for the record's
		   durability before reuse): needs no flush before it */
		struct dio_rec r = { .type = R_UNLINK, .n1 = name, .l1 = len };
		e = j_append(v, &r, false);
	}
	if (!e) {
		ns_remove(v, in);
		if (!in->nopen) {
			ino_free_blocks(v, in);
			ino_destroy(v, in);
		}
	}
	struct j_due due = j_due(v);
	md_unlock(v);
	if (!e)
		e = j_commit_due(v, due);
	return e ? fail(e) : 0;
}

DIO_API int dio_rename(struct dio_vol *v, const char *oldname, const char *newname)
{
	size_t l1 = 0, l2 = 0;
	int e = v ? name_check(oldname, &l1) : -EINVAL;
	if (!e)
		e = name_check(newname, &l2);
	if (!e && v->rdonly)
		e = -EROFS;
	if (e)
		return fail(e);
	pthread_mutex_lock(&v->md_lock);
	struct dio_inode *in = ns_lookup(v, oldname, l1);
	struct dio_inode *target = ns_lookup(v, newname, l2);
	if (!in)
		e = -ENOENT;
	else if (in == target)
		e = 0;   /* rename to itself: nothing to do, as rename(2) */
	else if (!(e = md_room(v, 0, l2)) && !(e = md_ready(v, MD_CALL_JBYTES, &(unsigned){ 0 }))) {
		/* the new name's memory first: from the record on nothing fails */
		char *copy;
		e = ns_reserve(v, newname, l2, &copy);
		if (!e) {
			struct dio_rec r = { .type = R_RENAME, .n1 = oldname, .l1 = l1, .n2 = newname, .l2 = l2 };
			j_append(v, &r, true);   /* reserved; before the names change (oldname may be in->name) */
			if (target)
				ns_remove(v, target);
			ns_remove(v, in);
			ns_insert_reserved(v, in, copy, l2);
			if (target && !target->nopen) {
				ino_free_blocks(v, target);
				ino_destroy(v, target);
			}
		}
	}
	struct j_due due = j_due(v);
	md_unlock(v);
	if (!e)
		e = j_commit_due(v, due);
	return e ? fail(e) : 0;
}

DIO_API int dio_list(struct dio_vol *v, const char *prefix,
		     int (*cb)(const char *name, const struct dio_stat *st, void *arg), void *arg)
{
	if (!v || !cb)
		return fail(EINVAL);
	size_t plen = prefix ? strnlen(prefix, DIO_NAME_MAX + 1) : 0;
	if (plen > DIO_NAME_MAX)
		return fail(ENAMETOOLONG);
	char last[DIO_NAME_MAX + 1];
	size_t lastlen = 0;
	bool first = true;
	for (;;) {
		struct dio_stat st;
		pthread_mutex_lock(&v->md_lock);
		struct dio_inode *in = first ? ns_seek(v, prefix ? prefix : "", plen, false)
					     : ns_seek(v, last, lastlen, true);
		if (in && plen && (in->namelen < plen || memcmp(in->name, prefix, plen)))
			in = NULL;
		if (in) {
			memcpy(last, in->name, in->namelen);
			lastlen = in->namelen;
			last[lastlen] = 0;
			fill_stat(v, in, &st);
		}
		md_unlock(v);
		if (!in)
			return 0;
		first = false;
		int r = cb(last, &st, arg);
		if (r)
			return r;
	}
}

/*
 * One level of the tree the names make when '/' separates directories:
 * the names in `dir` with no further '/', and each subdirectory once, as
 * "DIR/SUB/" with st NULL.  The walk steps over a subdirectory's names
 * with one lookup: its key is "DIR/SUB0", and '0' is the byte after '/',
 * so the first name at or after it is the first not under DIR/SUB/.  A
 * level costs the entries it shows, not the names below them.
 */
DIO_API int dio_listdir(struct dio_vol *v, const char *dir,
			int (*cb)(const char *name, const struct dio_stat *st, void *arg), void *arg)
{
	if (!v || !cb)
		return fail(EINVAL);
	size_t plen = dir ? strnlen(dir, DIO_NAME_MAX + 1) : 0;
	if (plen > DIO_NAME_MAX)
		return fail(ENAMETOOLONG);
	if (plen && dir[plen - 1] != '/')
		return fail(EINVAL);
	char key[DIO_NAME_MAX + 1], out[DIO_NAME_MAX + 1];
	size_t klen = plen;
	bool past = false;   /* start after key (it was reported), or at it */
	memcpy(key, dir ? dir : "", plen);
	for (;;) {
		struct dio_stat st;
		bool sub = false;
		size_t n = 0;
		pthread_mutex_lock(&v->md_lock);
		struct dio_inode *in = ns_seek(v, key, klen, past);
		if (in && plen && (in->namelen < plen || memcmp(in->name, dir, plen)))
			in = NULL;
		if (in) {
			const char *slash = memchr(in->name + plen, '/', in->namelen - plen);
			n = slash ? (size_t)(slash - in->name) + 1 : in->namelen;
			sub = slash != NULL;
			memcpy(out, in->name, n);
			out[n] = 0;
			if (!sub)
				fill_stat(v, in, &st);
		}
		md_unlock(v);
		if (!in)
			return 0;
		memcpy(key, out, n);
		klen = n;
		past = !sub;
		if (sub)
			key[n - 1] = '0';
		if (n == plen)
			continue;   /* DIR/ itself: the directory, not an entry of it */
		int r = cb(out, sub ? NULL : &st, arg);
		if (r)
			return r;
	}
}

/* ---- size and allocation changes --------------------------------------- */

static int writable(struct dio_file *f)
{
	if (file_check(f) < 0)
		return -1;
	if (f->vol->rdonly)
		return fail(EROFS);
	if ((f->flags & O_ACCMODE) == O_RDONLY)
		return fail(EBADF);
	return 0;
}

/*
 * A partial block a call zeroes (truncate's new last block, the edges of
 * a punch or a zero range) is never zeroed in place: a copy with the
 * bytes zeroed goes to a spare block (md_spare_take), and the call's
 * transaction maps it in place of the old one.  Until that transaction
 * is durable the old block keeps its bytes, so a call that fails, or is
 * cut by kill -9 or power loss, changes no byte (contract rules 3, 8).
 */
struct edge {
	uint64_t blk, pblk;
	bool used;                 /* a copy is on the device at pblk, not mapped yet */
};

/* Copy block blk with [from, to) zeroed, if those bytes hold anything:
   the block is written and they lie before EOF (past it, they are zeros
   already). */
static int edge_copy(struct dio_file *f, uint64_t blk, uint64_t from, uint64_t to, struct edge *ed)
{
	struct dio_vol *v = f->vol;
	uint64_t base = blk << v->bshift;
	ed->used = false;
	if (from >= to || base + from >= __atomic_load_n(&f->ino->size, __ATOMIC_ACQUIRE) ||
	    !block_is_written(f->ino, blk))
		return 0;
	int e = md_spare_take(v, f->ino, blk, &ed->pblk);
	if (e)
		return e;
	e = rw_copy_zeroed(f, blk, (uint32_t)from, (uint32_t)to, ed->pblk);
	if (e) {
		md_spare_put(v, ed->pblk, e == -EIO);
		return e;
	}
	ed->blk = blk;
	ed->used = true;
	return 0;
}

/* In the call's transaction (md_begin): the copy replaces the block. */
static int edge_map(struct dio_vol *v, struct dio_inode *in, struct edge *ed)
{
	if (!ed->used)
		return 0;
	int e = md_unmap(v, in, ed->blk, 1);
	if (!e)
		e = md_map(v, in, ed->blk, ed->pblk, 1, 0, true);
	if (!e)
		ed->used = false;   /* the file's now */
	return e;
}

/* After the call: a copy it did not map is free again. */
static void edge_drop(struct dio_vol *v, struct edge *ed)
{
	if (ed->used)
		md_spare_put(v, ed->pblk, false);
	ed->used = false;
}

static void md_begin(struct dio_vol *v, struct dio_inode *in)
{
	pthread_mutex_lock(&v->md_lock);
	pthread_rwlock_wrlock(&in->map_lock);
}

static void md_end(struct dio_vol *v, struct dio_inode *in)
{
	pthread_rwlock_unlock(&in->map_lock);
	md_unlock(v);
}

DIO_API int dio_ftruncate(struct dio_file *f, off_t length)
{
	if (writable(f) < 0)
		return -1;
	if (length < 0)
		return fail(EINVAL);
	if ((uint64_t)length > DIO_MAX_FILE_SIZE)
		return fail(EFBIG);
	return do_truncate(f, length);
}

static int do_truncate(struct dio_file *f, off_t length)
{
	struct dio_vol *v = f->vol;
	struct dio_inode *in = f->ino;
	uint64_t nsz = (uint64_t)length, bs = v->bs;
	struct dio_range r;
	if (rl_lock(in->rl, &r, 0, UINT64_MAX, true))
		return fail(EDEADLK);   /* this thread's own queued request holds part of it */
	uint64_t osz = in->size;   /* stable: the whole file is locked */
	struct edge ed = { 0, 0, false };
	struct j_due due = { 0, false };
	int e = 0;
	if (nsz < osz && nsz % bs)
		e = edge_copy(f, nsz / bs, nsz % bs, bs, &ed);   /* no old bytes reappear past EOF */
	if (!e) {
		md_begin(v, in);
		/* every check and allocation before the first change */
		unsigned nodes = bt_insert_nodes(&in->map.t, 4);
		e = md_room(v, 3, 0);
		if (!e && nsz < osz)
			e = em_prepare(&in->map, nsz / bs, DIO_MAX_FILE_SIZE / bs);
		if (!e)
			e = md_ready(v, MD_CALL_JBYTES, &nodes);
		else
			nodes = 0;
		uint64_t from = DIV_UP(nsz, bs);
		if (!e && nsz < osz)
			e = md_unmap(v, in, from, DIO_MAX_FILE_SIZE / bs - from);
		if (!e)
			e = edge_map(v, in, &ed);
		if (!e && nsz != osz)
			e = md_set_size(v, in, nsz, true);
		if (!e)
			e = md_times(v, in, dio_clock_coarse_ns());
		due = j_due(v);
		md_end(v, in);
		bt_unreserve(nodes);
	}
	edge_drop(v, &ed);
	rl_unlock(in->rl, &r);
	int ec = j_commit_due(v, due);
	if (!e)
		e = ec;
	return e ? fail(e) : 0;
}

/* Turn written blocks of [b0, b1) back into unwritten ones (zero range). */
static int md_unwrite(struct dio_vol *v, struct dio_inode *in, uint64_t b0, uint64_t b1)
{
	struct dio_extent x;
	for (uint64_t at = b0; em_get(&in->map, at, &x) && x.lblk < b1;) {
		uint64_t s = MAX(x.lblk, b0), e2 = MIN(x.lblk + x.len, b1);
		if (!(x.flags & EXT_UNWRITTEN)) {
			int e = md_map(v, in, s, x.pblk + (s - x.lblk), e2 - s, EXT_UNWRITTEN, true);
			if (e)
				return e;
		}
		if (e2 >= b1)
			break;
		at = e2;
	}
	return 0;
}

/* dio_fallocate's call, its arguments checked: 0 or -errno. */
static int falloc_call(struct dio_file *f, int mode, uint64_t off, uint64_t end)
{
	struct dio_vol *v = f->vol;
	struct dio_inode *in = f->ino;
	uint64_t bs = v->bs;
	uint64_t b0 = off / bs, b1 = DIV_UP(end, bs);
	uint64_t f0 = DIV_UP(off, bs), f1 = end / bs;       /* fully covered blocks */
	struct dio_range r;
	struct edge ed[2] = { { 0, 0, false }, { 0, 0, false } };
	struct j_due due = { 0, false };
	int e = 0;
	if (rl_lock(in->rl, &r, b0, b1, true))
		return -EDEADLK;   /* this thread's own queued request holds part of it */
	if (mode & (DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_ZERO_RANGE)) {
		/* partial edge blocks keep their other bytes: zeroed copies */
		if (f0 > f1) {
			e = edge_copy(f, b0, off - b0 * bs, end - b0 * bs, &ed[0]);
		} else {
			e = edge_copy(f, b0, off - b0 * bs, f0 * bs - b0 * bs, &ed[0]);
			if (!e)
				e = edge_copy(f, f1, 0, end - f1 * bs, &ed[1]);
		}
	}
	unsigned nodes = 0;
	if (!e) {
		md_begin(v, in);
		/* every check and allocation before the first change: a call
		   that fails changes nothing */
		e = md_room(v, 6, 0);
		if (!e && (mode & (DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_ZERO_RANGE)))
			e = em_prepare(&in->map, b0, b1);
		/* a zero range turns each written extent of the range back
		   into unwritten blocks: a record each, and a split at most */
		size_t each = mode & DIO_FALLOC_ZERO_RANGE ? md_extents_in(in, f0, f1) : 0;
		nodes = bt_insert_nodes(&in->map.t, 8 + 2 * each);
		if (!e)
			e = md_ready(v, MD_CALL_JBYTES + 48 * each, &nodes);
		else
			nodes = 0;
		if (mode & DIO_FALLOC_PUNCH_HOLE) {
			if (!e && f1 > f0)
				e = md_unmap(v, in, f0, f1 - f0);
		} else {
			if (!e)
				e = md_alloc_range(v, in, b0, b1 - b0, MA_JOURNAL, NULL);
			if (!e && (mode & DIO_FALLOC_ZERO_RANGE) && f1 > f0)
				e = md_unwrite(v, in, f0, f1);
			if (!e && !(mode & DIO_FALLOC_KEEP_SIZE) && end > in->size)
				e = md_set_size(v, in, end, true);
		}
		for (int k = 0; k < 2 && !e; k++)
			e = edge_map(v, in, &ed[k]);
		/* a preallocation that keeps the size changes no byte: as
		   Linux, it leaves the time */
		if (!e && mode != DIO_FALLOC_KEEP_SIZE)
			e = md_times(v, in, dio_clock_coarse_ns());
		due = j_due(v);
		md_end(v, in);
		bt_unreserve(nodes);
	}
	edge_drop(v, &ed[0]);
	edge_drop(v, &ed[1]);
	rl_unlock(in->rl, &r);
	int ec = j_commit_due(v, due);
	return e ? e : ec;
}

DIO_API int dio_fallocate(struct dio_file *f, int mode, off_t offset, off_t len)
{
	if (writable(f) < 0)
		return -1;
	const int known = DIO_FALLOC_KEEP_SIZE | DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_ZERO_RANGE;
	if ((mode & ~known) || ((mode & DIO_FALLOC_PUNCH_HOLE) && mode != (DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE)) ||
	    ((mode & DIO_FALLOC_ZERO_RANGE) && (mode & DIO_FALLOC_PUNCH_HOLE)))
		return fail(EOPNOTSUPP);
	if (offset < 0 || len <= 0)
		return fail(EINVAL);
	if ((uint64_t)offset > DIO_MAX_FILE_SIZE || (uint64_t)len > DIO_MAX_FILE_SIZE - (uint64_t)offset)
		return fail(EFBIG);
	uint64_t off = (uint64_t)offset, end = off + (uint64_t)len;
	int e = falloc_call(f, mode, off, end);
	/* a call that fails changes nothing: after the commit that frees
	   what earlier calls freed, it runs again whole */
	if (e == -ENOSPC && md_commit_for_space(f->vol))
		e = falloc_call(f, mode, off, end);
	return e ? fail(-e) : 0;
}

DIO_API off_t dio_lseek(struct dio_file *f, off_t offset, int whence)
{
	if (file_check(f) < 0)
		return -1;
	struct dio_inode *in = f->ino;
	uint64_t bs = f->vol->bs;
	pthread_rwlock_rdlock(&in->map_lock);
	uint64_t size = in->size;
	off_t res = -1;
	int e = 0;
	if (whence == SEEK_SET) {
		res = offset;
	} else if (whence == SEEK_END) {
		/* size <= DIO_MAX_FILE_SIZE: only a large positive offset can
		   overflow, and off_t overflow is undefined: check first */
		if (offset > 0 && (uint64_t)offset > (uint64_t)INT64_MAX - size)
			e = EOVERFLOW;
		else
			res = (off_t)size + offset;
	} else if (whence == SEEK_DATA || whence == SEEK_HOLE) {
		if (offset < 0)
			e = EINVAL;
		else if ((uint64_t)offset >= size)
			e = ENXIO;
		else {
			/* unwritten blocks read as zeros: they count as holes */
			uint64_t pos = (uint64_t)offset, found = size;
			struct em_cur c;
			bool more = em_find(&in->map, pos / bs, &c);
			if (whence == SEEK_DATA) {
				for (; more; more = em_next(&in->map, &c)) {
					const struct dio_extent *x = em_rec(&c);
					if (x->flags & EXT_UNWRITTEN)
						continue;
					found = MAX(x->lblk * bs, pos);
					break;
				}
			} else {
				for (; more; more = em_next(&in->map, &c)) {
					const struct dio_extent *x = em_rec(&c);
					if ((x->flags & EXT_UNWRITTEN) || x->lblk * bs > pos)
						break;    /* pos is in a hole */
					pos = (x->lblk + x->len) * bs;
				}
			}
			if (whence == SEEK_HOLE)
				found = pos;
			if (found >= size)
				found = size;
			if (whence == SEEK_DATA && found >= size)
				e = ENXIO;
			res = (off_t)found;
		}
	} else {
		e = EINVAL;
	}
	pthread_rwlock_unlock(&in->map_lock);
	if (!e && res < 0)
		e = EINVAL;
	return e ? (off_t)fail(e) : res;
}

/* fsync (all): also the modification time writes set, when it is newer
   than the one the journal has; fdatasync leaves it, as POSIX allows. */
static int file_sync(struct dio_file *f, bool all)
{
	if (file_check(f) < 0)
		return -1;
	struct dio_vol *v = f->vol;
	struct dio_inode *in = f->ino;
	int e = 0;
	if (!v->rdonly) {
		/* clear before flushing: a write finishing after this point is
		   not covered and sets the flag again */
		int dirty = atomic_exchange(&in->data_dirty, 0);
		pthread_mutex_lock(&v->md_lock);
		/* cleared first: a write finishing meanwhile sets it again */
		if (all && atomic_exchange(&in->mtime_dirty, false)) {
			e = md_ready_small(v, 64);
			if (!e)
				e = md_times(v, in, atomic_load_explicit(&in->mtime, memory_order_relaxed));
			if (e)
				atomic_store(&in->mtime_dirty, true);
		}
		uint64_t seq = v->j.last_seq;
		md_unlock(v);
		if (!e)
			e = j_commit(v, seq, dirty != 0, false);
		if (e && dirty)
			atomic_store(&in->data_dirty, 1);
	}
	unsigned cur = atomic_load(&in->err_seq);
	unsigned seen = atomic_load(&f->err_seen);
	/* a write failed since this handle last looked: say so once */
	if (cur != seen && atomic_compare_exchange_strong(&f->err_seen, &seen, cur))
		e = -EIO;
	return e ? fail(e) : 0;
}

DIO_API int dio_fsync(struct dio_file *f) { return file_sync(f, true); }
DIO_API int dio_fdatasync(struct dio_file *f) { return file_sync(f, false); }

/* A metadata call: the time journalled in one record, committed as any
   metadata call's (durable at the next sync; whole under kill -9). */
DIO_API int dio_set_mtime(struct dio_file *f, int64_t mtime_ns)
{
	if (file_check(f) < 0)
		return -1;
	if (f->vol->rdonly)
		return fail(EROFS);
	struct dio_vol *v = f->vol;
	pthread_mutex_lock(&v->md_lock);
	int e = md_ready_small(v, 64);
	if (!e)
		e = md_times(v, f->ino, mtime_ns);
	struct j_due due = j_due(v);
	md_unlock(v);
	int ec = j_commit_due(v, due);
	return e || ec ? fail(e ? e : ec) : 0;
}
