/*
 * dio_fsck: an offline check of an unmounted volume.  It reads what a
 * mount would read (both superblocks, the checkpoint, the journal), never
 * writes, and reports every problem it can see instead of stopping at the
 * first: superblock slots, checkpoint and journal integrity, every extent
 * map (order, bounds, overlap with other files), sizes against extents,
 * names and ids.
 */
#include "internal.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fsck {
	void (*report)(int, const char *, void *);
	void *arg;
	unsigned problems;
};

static void problem(struct fsck *k, int sev, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(struct fsck *k, int sev, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (sev == DIO_FSCK_ERROR)
		k->problems++;
	if (k->report)
		k->report(sev, msg, k->arg);
}

static void tap(int level, const char *msg, void *arg)
{
	problem(arg, level <= DIO_LOG_ERR ? DIO_FSCK_ERROR : DIO_FSCK_WARN, "%s", msg);
}

/* Each slot on its own: a damaged or stale slot is worth a warning. */
static void check_slots(struct dio_vol *v, struct fsck *k)
{
	for (int s = 0; s < 2; s++) {
		struct dio_sb sb;
		uint8_t raw[SB_BYTES];
		if (read_sb_at(v, (uint64_t)s * v->bs, raw)) {
			problem(k, DIO_FSCK_ERROR, "superblock slot %d: read error", s);
			continue;
		}
		int e = sb_decode(raw, &sb);
		if (e)
			problem(k, DIO_FSCK_WARN, "superblock slot %d: %s", s,
				e == -EINVAL ? "no superblock" : "checksum mismatch");
		else if (sb_validate(&sb, v->dev.geom.size))
			problem(k, DIO_FSCK_WARN, "superblock slot %d: fields inconsistent", s);
		else if (sb.uuid != v->sb.uuid)
			problem(k, DIO_FSCK_WARN, "superblock slot %d: belongs to another volume", s);
	}
}

static int cmp_ext(const void *a, const void *b)
{
	const struct dio_extent *x = a, *y = b;
	return x->pblk < y->pblk ? -1 : x->pblk > y->pblk;
}

static void check_files(struct dio_vol *v, struct fsck *k)
{
	size_t total = 0;
	struct ns_iter it;
	ns_iter_start(v, &it);
	for (struct dio_inode *in; (in = ns_iter_next(&it));)
		total += em_count(&in->map);
	total += em_count(&v->bad);
	struct dio_extent *all = malloc((total + 1) * sizeof(*all));
	if (!all) {
		problem(k, DIO_FSCK_ERROR, "out of memory checking %zu extents", total);
		return;
	}
	size_t n = 0;
	ns_iter_start(v, &it);
	for (struct dio_inode *in, *prev = NULL; (in = ns_iter_next(&it)); prev = in) {
		uint64_t prev_end = 0, size_blocks = DIV_UP(in->size, v->bs);
		if (prev && strcmp(prev->name, in->name) >= 0)
			problem(k, DIO_FSCK_ERROR, "names out of order at \"%s\"", in->name);
		struct em_cur c;
		size_t j = 0;
		for (bool ok = em_first(&in->map, &c); ok; ok = em_next(&in->map, &c), j++) {
			const struct dio_extent *x = em_rec(&c);
			if (!x->len || x->lblk < prev_end)
				problem(k, DIO_FSCK_ERROR, "\"%s\": extent %zu overlaps or is empty", in->name, j);
			if (x->pblk < v->sb.data_start || x->pblk + x->len > v->sb.total_blocks)
				problem(k, DIO_FSCK_ERROR, "\"%s\": extent %zu outside the data area", in->name, j);
			if (!(x->flags & EXT_UNWRITTEN) && x->lblk + x->len > size_blocks)
				problem(k, DIO_FSCK_ERROR, "\"%s\": written extent %zu past the size %llu", in->name,
					j, (unsigned long long)in->size);
			prev_end = x->lblk + x->len;
			if (n == total)
				break;   /* more extents than em_count said: cannot happen */
			all[n] = *x;
			all[n].lblk = in->ino;   /* owner, for the message */
			n++;
		}
	}
	struct em_cur c;
	for (bool ok = em_first(&v->bad, &c); ok; ok = em_next(&v->bad, &c)) {
		if (n == total)
			break;
		all[n] = *em_rec(&c);
		all[n++].lblk = 0;   /* owner 0: the bad-block list */
	}
	if (n)
		qsort(all, n, sizeof(*all), cmp_ext);
	for (size_t i = 1; i < n; i++) {
		if (all[i - 1].pblk + all[i - 1].len <= all[i].pblk)
			continue;
		struct dio_inode *a = all[i - 1].lblk ? ino_lookup(v, all[i - 1].lblk) : NULL;
		struct dio_inode *b = all[i].lblk ? ino_lookup(v, all[i].lblk) : NULL;
		problem(k, DIO_FSCK_ERROR, "block %llu owned twice: by \"%s\" (id %llu) and \"%s\" (id %llu)",
			(unsigned long long)all[i].pblk, a ? a->name : "the bad-block list",
			(unsigned long long)all[i - 1].lblk, b ? b->name : "the bad-block list",
			(unsigned long long)all[i].lblk);
	}
	free(all);
}

DIO_API int dio_fsck(const char *path, unsigned flags, void (*report)(int, const char *, void *), void *arg)
{
	return fsck_with_ops(path, flags, NULL, report, arg);
}

/* dio_fsck through a given backend table (the tests' in-memory device). */
int fsck_with_ops(const char *path, unsigned flags, const struct dio_backend_ops *ops,
		  void (*report)(int, const char *, void *), void *arg)
{
	if (!path || flags) {
		errno = EINVAL;
		return -1;
	}
	struct fsck k = { report, arg, 0 };
	int e = 0;
	struct dio_vol *v = vol_new_ops(path, true, "psync", ops, 4, false, 0, &e);
	if (!v) {
		errno = -e;
		return -1;
	}
	dio_log_tap = tap;
	dio_log_tap_arg = &k;
	e = read_sb(v, &v->sb);
	if (e == -EINVAL) {
		/* nothing of ours to check (no superblock slot is a libdio
		   one, damaged or not): the check could not run */
		dio_log_tap = NULL;
		dio_log_tap_arg = NULL;
		dio_log(DIO_LOG_ERR, "%s: not a libdio volume", path);
		vol_release(v);
		errno = EINVAL;
		return -1;
	} else if (e) {
		problem(&k, DIO_FSCK_ERROR, "no valid superblock (%s)", strerror(-e));
	} else {
		v->bs = v->sb.block_size;
		v->bshift = (unsigned)__builtin_ctz(v->bs);
		v->md_cap = v->sb.ckpt_blocks * (v->bs - MBLK_HDR) - CKPT_HDR_BYTES;
		check_slots(v, &k);
		e = ckpt_load(v);
		if (e)
			problem(&k, DIO_FSCK_ERROR, "checkpoint unusable (%s)", strerror(-e));
		else if ((e = j_replay(v)))
			problem(&k, DIO_FSCK_ERROR, "journal replay failed (%s)", strerror(-e));
		if (!e) {
			drop_orphans(v);
			recount_md(v);
			if (v->md_bytes > v->md_cap)
				problem(&k, DIO_FSCK_ERROR, "metadata (%llu bytes) exceeds the checkpoint area",
					(unsigned long long)v->md_bytes);
			check_files(v, &k);
			/* what a mount would add from a killed process's
			   process-death log (said, not judged: the mount
			   checks it and sets it aside if it does not fit) */
			uint64_t n;
			plog_recover(v, j_apply_encoded, true, &n);
		}
	}
	dio_log_tap = NULL;
	dio_log_tap_arg = NULL;
	vol_release(v);
	return k.problems ? 1 : 0;
}
