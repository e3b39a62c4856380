/*
 * Volumes: mkfs, mount (superblock choice, checkpoint load, journal
 * replay, free-space rebuild, a fresh checkpoint), umount, and the
 * volume-wide calls.
 */
#include "internal.h"
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

DIO_API const char *dio_version(void) { return DIO_VERSION_STRING; }
DIO_API int dio_version_number(void) { return DIO_VERSION_NUMBER; }

/* ---- layout ----------------------------------------------------------- */

static int fail(int e)
{
	errno = e < 0 ? -e : e;
	return -1;
}

static int layout(struct dio_sb *sb, uint64_t size, uint32_t bs, uint64_t journal_size)
{
	uint64_t t = size / bs;
	uint64_t jbytes = journal_size ? journal_size : MIN(MAX(size / 128, UINT64_C(1) << 20), UINT64_C(64) << 20);
	uint64_t cbytes = MAX(size / 128, UINT64_C(256) << 10);
	sb->block_size = bs;
	sb->total_blocks = t;
	sb->journal_start = 2;
	sb->journal_blocks = MAX(jbytes / bs, UINT64_C(16));
	sb->ckpt_blocks = MAX(cbytes / bs, UINT64_C(4));
	sb->ckpt_start[0] = sb->journal_start + sb->journal_blocks;
	sb->ckpt_start[1] = sb->ckpt_start[0] + sb->ckpt_blocks;
	sb->data_start = sb->ckpt_start[1] + sb->ckpt_blocks;
	if (sb->data_start + 16 > t)
		return -EINVAL;   /* too small to hold any data */
	return 0;
}

/* The SB_BYTES at byte off of the device (any offset: the aligned
   block around it is read).  0 or -errno. */
int read_sb_at(struct dio_vol *v, uint64_t off, uint8_t *raw)
{
	uint32_t rd = MAX(v->dev.geom.logical_bs, 4096u);
	uint64_t at = off - off % rd;
	uint8_t *buf;
	if (at + rd > v->dev.geom.size)
		return -ENXIO;
	if (posix_memalign((void **)&buf, MAX(v->dev.geom.mem_align, 4096u), rd))
		return -ENOMEM;
	int e = dev_rw(v, DIO_BIO_READ, 0, at, buf, rd);
	if (!e)
		memcpy(raw, buf + (off - at), SB_BYTES);
	free(buf);
	return e;
}

/* Look for a superblock; 0 with the newest valid one, -EINVAL if none is
   ours at all, -EUCLEAN if ours but damaged. */
int read_sb(struct dio_vol *v, struct dio_sb *out)
{
	uint8_t raw[SB_BYTES];
	struct dio_sb best = { 0 }, cand;
	bool found = false, ours = false;
	int e = 0;
	/* slot 0 at byte 0; slot 1 one block later, block size unknown yet */
	for (uint32_t off = 0; off <= 65536; off = off ? off * 2 : 512) {
		e = read_sb_at(v, off, raw);
		if (e == -ENXIO) {
			e = 0;
			break;
		}
		if (e)
			break;
		int d = sb_decode(raw, &cand);
		if (d == -EINVAL)
			continue;
		ours = true;
		if (d || (off && cand.block_size != off))
			continue;
		if (sb_validate(&cand, v->dev.geom.size)) {
			dio_log(DIO_LOG_WARN, "superblock at byte %u fails validation", off);
			continue;
		}
		if (!found || cand.gen > best.gen)
			best = cand;
		found = true;
	}
	if (e)
		return e;
	if (!found)
		return ours ? -EUCLEAN : -EINVAL;
	*out = best;
	return 0;
}

/* ---- volume lifetime -------------------------------------------------- */

void vol_release(struct dio_vol *v)
{
	plog_close(v, false);
	devctx_release(v);
	vol_free_inodes(v);
	em_free(&v->bad);
	alloc_destroy(&v->alloc);
	if (v->bounce.mem)
		bounce_destroy(&v->bounce);
	free(v->j.buf);
	free(v->j.io);
	free(v->clean.zbuf);
	free(v->dev.path);
	dev_target_close(v);   /* after its last context */
	if (v->dev.fd >= 0) {
		/* Unlock explicitly: a backend may still hold a reference to
		   the open file for a moment after its context is gone. */
		dio_dev_release(v->dev.fd);
		close(v->dev.fd);
	}
	pthread_mutex_destroy(&v->md_lock);
	pthread_mutex_destroy(&v->j.commit_lock);
	pthread_mutex_destroy(&v->clean.lock);
	pthread_mutex_destroy(&v->j.flush_lock);
	pthread_cond_destroy(&v->j.flush_cv);
	free(v);
}

struct dio_vol *vol_new(const char *path, bool rdonly, const char *backend, unsigned depth,
			       bool create, uint64_t create_size, int *err)
{
	return vol_new_ops(path, rdonly, backend, NULL, depth, create, create_size, err);
}

struct dio_vol *vol_new_ops(const char *path, bool rdonly, const char *backend,
			    const struct dio_backend_ops *ops, unsigned depth,
			    bool create, uint64_t create_size, int *err)
{
	struct dio_vol *v;   /* its device contexts and counters are cache-line aligned */
	if (posix_memalign((void **)&v, _Alignof(struct dio_vol), sizeof(*v))) {
		*err = -ENOMEM;
		return NULL;
	}
	memset(v, 0, sizeof(*v));
	v->dev.fd = -1;
	v->rdonly = rdonly;
	pthread_mutex_init(&v->md_lock, NULL);
	pthread_mutex_init(&v->j.commit_lock, NULL);
	pthread_mutex_init(&v->clean.lock, NULL);
	pthread_mutex_init(&v->j.flush_lock, NULL);
	pthread_cond_init(&v->j.flush_cv, NULL);
	v->dev.path = strdup(path);
	v->recovering = true;   /* until dio_mount hands it out (fsck, dump: for good) */
	int bes = 0;
	/* a target named by URI picks its backend (ABI 7); mkfs (create)
	   of a local path always writes with psync: one-shot, no env
	   override */
	const struct dio_backend_ops *tops = dio_backend_for_target(path, &bes);
	if (tops && ops && ops != tops) {
		dio_log(DIO_LOG_ERR, "%s: served by backend %s, not %s", path, tops->name, ops->name ? ops->name : "?");
		bes = EINVAL;
	} else if (tops)
		v->dev.ops = tops;
	else if (bes)
		;
	else if (ops && (ops->abi < 1 || ops->abi > DIO_BACKEND_ABI || !ops->name || !ops->probe || !ops->open ||
		    !ops->submit || !ops->flush || !ops->close))
		bes = EINVAL;
	else if (ops)
		v->dev.ops = ops;
	else
		v->dev.ops = create ? dio_backend_find_exact("psync", &bes) : dio_backend_find(backend, &bes);
	int e = !v->dev.path ? -ENOMEM : !v->dev.ops ? -bes : 0;
	v->dev.plain_single = v->dev.ops && dio_backend_builtin(v->dev.ops);
	if (!e && tops)
		e = dev_target_open(v, path, rdonly);
	else if (!e)
		e = dio_dev_open(path, rdonly, create, create_size, &v->dev.fd, &v->dev.created);
	if (!e && !tops)
		e = dio_dev_probe(v->dev.fd, &v->dev.geom);
	if (!e) {
		v->dev.depth = depth ? depth : 64;
		e = devctx_init(v);   /* opens one context now, to fail early */
		if (e)
			dio_log(DIO_LOG_ERR, "backend %s: cannot open a context: %s", v->dev.ops->name, strerror(-e));
	}
	if (!e)
		e = bounce_init(&v->bounce, v->dev.geom.mem_align);
	if (e) {
		bool created = v->dev.created;
		vol_release(v);
		if (created)
			unlink(path);   /* a failed mkfs leaves no file it made */
		*err = e;
		return NULL;
	}
	return v;
}

DIO_API int dio_mkfs(const char *path, const struct dio_mkfs_opts *opts)
{
	struct dio_mkfs_opts def = { 0 };
	if (!path)
		return fail(EINVAL);
	if (!opts)
		opts = &def;
	if (opts->flags & ~DIO_MKFS_FORCE)
		return fail(EINVAL);
	int e = 0;
	struct dio_vol *v = vol_new(path, false, "psync", 4, true, opts->size, &e);
	if (!v)
		return fail(e);
	uint64_t size = opts->size ? opts->size : v->dev.geom.size;
	uint32_t bs = opts->block_size ? opts->block_size : MAX(4096u, v->dev.geom.logical_bs);
	struct dio_sb sb = { 0 }, old;
	if (size > v->dev.geom.size || bs < v->dev.geom.logical_bs || bs < 512 || bs > 65536 || (bs & (bs - 1)))
		e = -EINVAL;
	if (!e) {
		e = read_sb(v, &old);
		if (e == 0 && !(opts->flags & DIO_MKFS_FORCE))
			e = -EEXIST;
		else if (e == -EINVAL || e == -EUCLEAN || e == 0)
			e = 0;
	}
	if (!e)
		e = layout(&sb, size, bs, opts->journal_size);
	if (!e) {
		sb.version = DIO_FORMAT_VERSION;
		sb.incompat = DIO_INCOMPAT_MTIME;
		dio_random(&sb.uuid, sizeof(sb.uuid));
		if (opts->label)
			strncpy(sb.label, opts->label, sizeof(sb.label) - 1);
		/* an empty checkpoint in slot 0 under generation 1 */
		sb.gen = 0;
		sb.ckpt_slot = 1;     /* the checkpoint below flips it to 0 */
		sb.ckpt_nblocks = 1;
		sb.jstart_pos = 0;
		sb.jstart_bseq = 1;
		v->sb = sb;
		v->bs = bs;
		v->bshift = (unsigned)__builtin_ctz(bs);
		v->ns.next_ino = 1;
		v->md_cap = sb.ckpt_blocks * (bs - MBLK_HDR) - CKPT_HDR_BYTES;
		v->j.head_pos = 0;
		v->j.head_bseq = 1;
		pthread_mutex_lock(&v->j.commit_lock);
		e = j_checkpoint_locked(v);    /* gen 1: sb slot 1 */
		if (!e)
			e = j_checkpoint_locked(v);    /* gen 2: sb slot 0, both slots valid */
		pthread_mutex_unlock(&v->j.commit_lock);
	}
	bool created = v->dev.created;
	vol_release(v);
	if (e && created)
		unlink(path);   /* a failed mkfs leaves no file it made */
	return e ? fail(e) : 0;
}

static const char *owner_name(struct dio_vol *v, uint64_t ino)
{
	struct dio_inode *in = ino ? ino_lookup(v, ino) : NULL;
	return !ino ? "the bad-block list" : in && in->name ? in->name : "an unlinked file";
}

/* Build free space from the maps; a block owned twice (a forged or
   damaged map: two files would show each other's bytes) is damage, and
   the message names both owners. */
static int build_alloc(struct dio_vol *v)
{
	int e = alloc_init(&v->alloc, v->sb.data_start, v->sb.total_blocks);
	struct em_cur c;
	for (size_t h = 0; h < v->ns.ihash_size && !e; h++)
		for (struct dio_inode *in = v->ns.ihash[h]; in && !e; in = in->hnext)
			for (bool ok = em_first(&in->map, &c); ok && !e; ok = em_next(&in->map, &c))
				e = alloc_mark_used(&v->alloc, em_rec(&c)->pblk, em_rec(&c)->len, in->ino);
	for (bool ok = em_first(&v->bad, &c); ok && !e; ok = em_next(&v->bad, &c))
		e = alloc_mark_used(&v->alloc, em_rec(&c)->pblk, em_rec(&c)->len, 0);
	if (e)
		return e;
	uint64_t o1, o2, pblk;
	if (alloc_check_overlap(&v->alloc, &o1, &o2, &pblk)) {
		if (o1 == o2)
			dio_log(DIO_LOG_ERR, "\"%s\" maps block %llu outside the data area", owner_name(v, o1),
				(unsigned long long)pblk);
		else
			dio_log(DIO_LOG_ERR, "block %llu is owned by both \"%s\" and \"%s\"", (unsigned long long)pblk,
				owner_name(v, o1), owner_name(v, o2));
		return -EUCLEAN;
	}
	alloc_finish_build(&v->alloc);
	return 0;
}

/* A written block past a file's size would show old bytes if the file
   grew again: no sequence of operations leaves one, so it is damage. */
static int check_sizes(struct dio_vol *v)
{
	struct ns_iter it;
	ns_iter_start(v, &it);
	for (struct dio_inode *in; (in = ns_iter_next(&it));) {
		uint64_t last = DIV_UP(in->size, v->bs);
		struct em_cur c;
		for (bool ok = em_last(&in->map, &c); ok; ok = em_prev(&in->map, &c)) {
			const struct dio_extent *x = em_rec(&c);
			if (x->lblk + x->len <= last)
				break;
			if (!(x->flags & EXT_UNWRITTEN)) {
				dio_log(DIO_LOG_ERR, "file \"%s\" has written blocks past its size", in->name);
				return -EUCLEAN;
			}
		}
	}
	return 0;
}

/* Unlinked files that were open at the crash: gone now. */
void drop_orphans(struct dio_vol *v)
{
	for (size_t h = 0; h < v->ns.ihash_size; h++) {
		struct dio_inode *in = v->ns.ihash[h];
		while (in) {
			struct dio_inode *nx = in->hnext;
			if (!in->name) {
				struct em_cur c;
				for (bool ok = em_first(&in->map, &c); ok; ok = em_next(&in->map, &c))
					release_blocks_cb(v, em_rec(&c)->pblk, em_rec(&c)->len, em_rec(&c)->flags);
				ino_destroy(v, in);
			}
			in = nx;
		}
	}
}

void recount_md(struct dio_vol *v)
{
	v->md_bytes = (uint64_t)em_count(&v->bad) * MD_EXTENT_BYTES;
	struct ns_iter it;
	ns_iter_start(v, &it);
	for (struct dio_inode *in; (in = ns_iter_next(&it));)
		v->md_bytes += md_inode_bytes(in->namelen) + (uint64_t)em_count(&in->map) * MD_EXTENT_BYTES;
}

/*
 * What the device holds, in memory: checkpoint, journal, and with ring
 * the process-death log's calls after them (*applied: its records);
 * then the checks and free space.  0, or why not (-EUCLEAN: damage).
 */
static int vol_load(struct dio_vol *v, bool ring, uint64_t *applied)
{
	*applied = 0;
	int e = ckpt_load(v);
	if (!e)
		e = j_replay(v);
	if (!e && ring)
		e = plog_recover(v, j_apply_encoded, false, applied);   /* what a killed process left */
	if (!e) {
		drop_orphans(v);
		recount_md(v);
		e = check_sizes(v);
		if (!e)
			e = build_alloc(v);
	}
	return e;
}

/* Forget what vol_load loaded, to load again. */
static void vol_unload(struct dio_vol *v)
{
	vol_free_inodes(v);
	em_free(&v->bad);
	memset(&v->bad, 0, sizeof(v->bad));
	alloc_destroy(&v->alloc);
	memset(&v->alloc, 0, sizeof(v->alloc));
	v->md_bytes = 0;
}

DIO_API struct dio_vol *dio_mount(const char *path, const struct dio_mount_opts *opts)
{
	struct dio_mount_opts def = { 0 };
	if (!opts)
		opts = &def;
	if (!path || (opts->flags & ~DIO_MOUNT_RDONLY) || opts->queue_depth > 4096) {
		fail(EINVAL);
		return NULL;
	}
	int e = 0;
	bool ro = opts->flags & DIO_MOUNT_RDONLY;
	/* a URI names its backend: naming another is a mistake, said so
	   (DIO_BACKEND, a setting for local devices, does not apply) */
	const struct dio_backend_ops *tops = dio_backend_for_target(path, &e);
	if (tops && opts->backend && *opts->backend && strcmp(opts->backend, "auto") &&
	    strcmp(opts->backend, tops->name)) {
		dio_log(DIO_LOG_ERR, "%s: served by backend %s, not %s", path, tops->name, opts->backend);
		fail(EINVAL);
		return NULL;
	}
	struct dio_vol *v = vol_new_ops(path, ro, opts->backend, opts->ops, opts->queue_depth, false, 0, &e);
	if (!v) {
		fail(e);
		return NULL;
	}
	e = read_sb(v, &v->sb);
	if (e == -EINVAL)
		dio_log(DIO_LOG_ERR, "%s: not a libdio volume", path);
	else if (e == -EUCLEAN)
		dio_log(DIO_LOG_ERR, "%s: superblocks damaged or of an unknown version", path);
	if (!e && v->sb.block_size < v->dev.geom.logical_bs) {
		dio_log(DIO_LOG_ERR, "%s: block size %u is below the device's %u", path,
			v->sb.block_size, v->dev.geom.logical_bs);
		e = -EUCLEAN;
	}
	if (!e) {
		v->bs = v->sb.block_size;
		v->bshift = (unsigned)__builtin_ctz(v->bs);
		v->md_cap = v->sb.ckpt_blocks * (v->bs - MBLK_HDR) - CKPT_HDR_BYTES;
		uint64_t applied;
		e = vol_load(v, true, &applied);
		if (e == -EUCLEAN && applied) {
			/* the process-death log's calls left a state the checks
			   refuse: never let the log fail a mount that the
			   journal alone would pass */
			dio_log(DIO_LOG_WARN, "%s: the volume with the process-death log's %llu records fails its "
				"checks: mounting it as the journal left it", path, (unsigned long long)applied);
			vol_unload(v);
			e = vol_load(v, false, &applied);
		}
		v->plog_applied = applied;
	}
	v->recovering = false;
	if (!e && !ro) {
		/* Start a new journal era past every block the old one may have
		   left behind, so a stale block can never pass for a new one. */
		pthread_mutex_lock(&v->j.commit_lock);
		v->j.head_bseq = v->sb.jstart_bseq + v->sb.journal_blocks + 1;
		/* a volume made before modification times gets them here: this
		   checkpoint is the first with them, and the superblocks that
		   point to it say so (an older libdio then refuses the volume) */
		v->sb.incompat |= DIO_INCOMPAT_MTIME;
		e = j_checkpoint_locked(v);
		pthread_mutex_unlock(&v->j.commit_lock);
		if (!e)
			e = plog_start(v);   /* everything recovered is in that checkpoint */
	}
	if (e) {
		if (e == -EUCLEAN)
			dio_log(DIO_LOG_ERR, "%s: volume is damaged", path);
		vol_release(v);
		fail(e);
		return NULL;
	}
	return v;
}

DIO_API int dio_umount(struct dio_vol *v)
{
	if (!v)
		return fail(EINVAL);
	pthread_mutex_lock(&v->md_lock);
	bool busy = v->ns.nopen_total > 0 || v->nqueues > 0;
	bool broken = v->j.broken;
	md_unlock(v);
	if (busy)
		return fail(EBUSY);
	int e = 0;
	if (!v->rdonly && !broken) {
		pthread_mutex_lock(&v->j.commit_lock);
		e = j_checkpoint_locked(v);
		pthread_mutex_unlock(&v->j.commit_lock);
	} else if (broken) {
		e = -EIO;
	}
	/* the volume is released even if the last checkpoint failed: the
	   journal still holds every committed change, and the process-death
	   log what came after (kept for the next mount then) */
	plog_close(v, !e && !broken);
	vol_release(v);
	return e ? fail(e) : 0;
}

DIO_API int dio_syncfs(struct dio_vol *v)
{
	if (!v)
		return fail(EINVAL);
	if (v->rdonly)
		return 0;
	pthread_mutex_lock(&v->md_lock);
	uint64_t seq = v->j.last_seq;
	md_unlock(v);
	int e = j_commit(v, seq, true, false);
	return e ? fail(e) : 0;
}

DIO_API int dio_statvfs(struct dio_vol *v, struct dio_statvfs *st)
{
	if (!v || !st)
		return fail(EINVAL);
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&v->md_lock);
	st->block_size = v->bs;
	st->dev_logical_block_size = v->dev.geom.logical_bs;
	/* what files can have: vol_reserve() blocks stay for the copies
	   of truncates and punches (md_spare_take), so that a full volume
	   can still shrink its files; neither count includes them */
	uint64_t keep = vol_reserve(v);
	st->total_blocks = v->sb.total_blocks - v->sb.data_start - keep;
	/* blocks freed by calls whose commit is still to come count as free:
	   an allocation that needs them commits first (md_commit_for_space) */
	uint64_t avail = v->alloc.free_blocks + v->alloc.pend_blocks;
	st->free_blocks = avail > keep ? avail - keep : 0;
	st->nfiles = v->ns.nnames;
	uint64_t names = v->ns.nnames ? v->ns.name_bytes / v->ns.nnames : 32;
	st->files_free = v->md_cap > v->md_bytes ? (v->md_cap - v->md_bytes) / md_inode_bytes((size_t)names) : 0;
	md_unlock(v);
	snprintf(st->backend, sizeof(st->backend), "%s", v->dev.ops->name);
	return 0;
}

DIO_API int dio_counters(struct dio_vol *v, struct dio_counters *c)
{
	if (!v || !c)
		return fail(EINVAL);
	memset(c, 0, sizeof(*c));
	for (unsigned i = 0; i < CNT_SHARDS; i++) {
		const struct dio_counters_atomic *k = &v->cnt[i];
		c->reads += atomic_load_explicit(&k->reads, memory_order_relaxed);
		c->writes += atomic_load_explicit(&k->writes, memory_order_relaxed);
		c->bytes_read += atomic_load_explicit(&k->bytes_read, memory_order_relaxed);
		c->bytes_written += atomic_load_explicit(&k->bytes_written, memory_order_relaxed);
		c->device_ios += atomic_load_explicit(&k->device_ios, memory_order_relaxed);
		c->bounced += atomic_load_explicit(&k->bounced, memory_order_relaxed);
		c->rmw_blocks += atomic_load_explicit(&k->rmw_blocks, memory_order_relaxed);
		c->journal_commits += atomic_load_explicit(&k->journal_commits, memory_order_relaxed);
		c->flushes += atomic_load_explicit(&k->flushes, memory_order_relaxed);
	}
	return 0;
}
