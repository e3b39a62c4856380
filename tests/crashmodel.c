#include "crashmodel.h"

static const char *cm_name(int fid)
{
	static const char *n[CM_FILES] = { "log/0", "db/a", "db/b" };
	return n[fid];
}

void cm_gen(struct cm_op *ops, int n, uint64_t seed)
{
	int gens[CM_FILES] = { 0 };
	t_seed(seed);
	for (int i = 0; i < n; i++) {
		struct cm_op *o = &ops[i];
		memset(o, 0, sizeof(*o));
		o->fid = (int)(t_rand() % CM_FILES);
		o->wid = (uint32_t)i + 1;
		unsigned r = t_rand() % 100;
		bool aligned = t_rand() % 3 != 0;
		o->off = t_rand() % (CM_MAX - 65536);
		o->len = 1 + t_rand() % 40000;
		if (aligned) {
			o->off &= ~4095ull;
			o->len = (o->len + 4095) & ~4095ull;
		} else {
			o->shift = 1 + (unsigned)(t_rand() % 15);
		}
		if (r < 55)
			o->type = OP_WRITE;
		else if (r < 63)
			o->type = OP_DSYNC_WRITE;
		else if (r < 75)
			o->type = OP_FSYNC;
		else if (r < 82)
			o->type = OP_FDATASYNC;
		else if (r < 87)
			o->type = OP_TRUNC;
		else if (r < 95) {
			static const int modes[] = { 0, DIO_FALLOC_KEEP_SIZE,
				DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, DIO_FALLOC_ZERO_RANGE };
			o->type = OP_FALLOC;
			o->mode = modes[t_rand() % 4];
		} else if (r < 97)
			o->type = OP_SYNCFS;
		else if (gens[o->fid] < CM_GENS - 1) {
			o->type = r < 99 ? OP_REPLACE : OP_RECREATE;
			o->off = 0;
			gens[o->fid]++;
		} else
			o->type = OP_WRITE;
	}
}

/*
 * The same kind of workload over preallocated space: each file begins
 * with its whole range preallocated (one unwritten record of 64 blocks,
 * long enough to be kept whole with a bitmap of written blocks: a
 * partial record), then takes scattered one-block and few-block writes
 * inside it, punches and zero ranges that cut those partial records, and
 * syncs; the journal fills, so checkpoints hold such maps too.
 */
void cm_gen_prealloc(struct cm_op *ops, int n, uint64_t seed)
{
	t_seed(seed);
	for (int i = 0; i < n; i++) {
		struct cm_op *o = &ops[i];
		memset(o, 0, sizeof(*o));
		o->fid = i < CM_FILES ? i : (int)(t_rand() % CM_FILES);
		o->wid = (uint32_t)i + 1;
		if (i < CM_FILES) {
			o->type = OP_FALLOC;
			o->mode = i % 2 ? DIO_FALLOC_KEEP_SIZE : 0;
			o->off = 0;
			o->len = CM_MAX;
			continue;
		}
		unsigned r = t_rand() % 100;
		uint64_t blk = 1 + t_rand() % (CM_MAX / 4096 - 2);   /* strictly inside the record */
		o->off = blk * 4096;
		o->len = 4096 * (1 + t_rand() % 3);
		if (o->off + o->len > CM_MAX)
			o->len = CM_MAX - o->off;
		if (r < 60) {
			o->type = r < 52 ? OP_WRITE : OP_DSYNC_WRITE;
			if (r % 5 == 0) {
				o->off += 1 + t_rand() % 4000;   /* now and then a misaligned one */
				o->shift = 1 + (unsigned)(t_rand() % 15);
				if (o->off + o->len > CM_MAX)
					o->len = CM_MAX - o->off;
			}
		} else if (r < 72) {
			o->type = OP_FALLOC;
			o->mode = r < 66 ? (DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE) : DIO_FALLOC_ZERO_RANGE | DIO_FALLOC_KEEP_SIZE;
			o->off -= t_rand() % 2 ? 0 : 1 + t_rand() % 4000;   /* partial edges, half the time */
			o->len += t_rand() % 3 * 4096 + t_rand() % 2 * 1000;
			if (o->off + o->len > CM_MAX)
				o->len = CM_MAX - o->off;
		} else if (r < 84) {
			o->type = OP_FDATASYNC;
		} else if (r < 92) {
			o->type = OP_FSYNC;
		} else if (r < 96) {
			o->type = OP_SYNCFS;
		} else {
			o->type = OP_TRUNC;
			o->off = CM_MAX - t_rand() % (CM_MAX / 4);
		}
	}
}

/* Set by cm_exec when a REPLACE or RECREATE failed before touching the name. */
static bool name_untouched;

static void touch(struct cm_file *f, uint64_t a, uint64_t b)
{
	if (b > CM_MAX)
		b = CM_MAX;
	if (a < b)
		memset(f->touched + a, 1, b - a);
}

static void set_size(struct cm_file *f, uint64_t s)
{
	if (s < f->size)
		memset(f->cur + s, 0, f->size - s);
	touch(f, MIN_SZ(s, f->size), s > f->size ? s : f->size);
	f->size = s;
	if (s < f->lo)
		f->lo = s;
	if (s > f->hi)
		f->hi = s;
}

static void sync_file(struct cm_file *f)
{
	memcpy(f->synced, f->cur, CM_MAX);
	memcpy(f->touched, f->unknown, CM_MAX);
	f->synced_size = f->lo = f->hi = f->size;
	f->durable = true;
	f->exists_sure = true;
}

static struct cm_file *cur_file(struct cm_model *m, int fid)
{
	return &m->g[fid][m->gen[fid]];
}

/* Every metadata operation so far is durable (a successful fsync,
   fdatasync, syncfs or O_DSYNC write): names are bound for good. */
static void sync_point(struct cm_model *m)
{
	for (int i = 0; i < CM_FILES; i++) {
		m->dgen[i] = m->gen[i];
		m->maybe_absent[i] = false;
		if (cur_file(m, i)->exists)
			cur_file(m, i)->exists_sure = true;
	}
}

/* A new incarnation of a name: replaced (synced content) or recreated. */
static void new_gen(struct cm_model *m, const struct cm_op *op)
{
	int fid = op->fid;
	if (m->gen[fid] + 1 >= CM_GENS)
		abort();
	struct cm_file *f = &m->g[fid][++m->gen[fid]];
	memset(f, 0, sizeof(*f));
	f->exists = true;
	if (op->type == OP_RECREATE) {
		m->maybe_absent[fid] = true;   /* unlinked, maybe not recreated */
		return;
	}
	t_fill(f->cur, op->len, (uint32_t)fid, op->wid, 0);
	f->size = op->len;
	f->w[f->nw++] = (struct cm_write){ 0, op->len, op->wid };
	sync_file(f);                          /* fdatasync'ed before the rename */
}

void cm_apply(struct cm_model *m, const struct cm_op *op)
{
	if (op->type == OP_REPLACE || op->type == OP_RECREATE) {
		if (!cur_file(m, op->fid)->exists)
			cur_file(m, op->fid)->exists = true;
		new_gen(m, op);
		return;
	}
	struct cm_file *f = cur_file(m, op->fid);
	if (!f->exists) {
		f->exists = true;
		f->lo = f->hi = 0;
	}
	uint64_t end = op->off + op->len;
	f->prev_size = f->size;
	switch (op->type) {
	case OP_WRITE:
	case OP_DSYNC_WRITE:
		t_fill(f->cur + op->off, op->len, (uint32_t)op->fid, op->wid, op->off);
		memset(f->unknown + op->off, 0, op->len);   /* definite again if this succeeds */
		touch(f, op->off, end);
		if (f->nw < 1024)
			f->w[f->nw++] = (struct cm_write){ op->off, op->len, op->wid };
		if (end > f->size)
			set_size(f, end);
		break;
	case OP_TRUNC:
		set_size(f, op->off);
		break;
	case OP_FALLOC:
		if (op->mode & (DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_ZERO_RANGE)) {
			uint64_t e2 = MIN_SZ(end, f->size);
			if (op->off < e2)
				memset(f->cur + op->off, 0, e2 - op->off);
			touch(f, op->off, end);
		}
		if (!(op->mode & DIO_FALLOC_KEEP_SIZE) && end > f->size)
			set_size(f, end);
		break;
	}
}

/* The op failed: its bytes are unknown for good (until rewritten), and
   libdio changes no size on a failed call. */
void cm_failed(struct cm_model *m, const struct cm_op *op)
{
	if (op->type == OP_REPLACE || op->type == OP_RECREATE) {
		/* failed before the name changed: the new incarnation never was;
		   otherwise it may or may not be visible: both stay candidates */
		if (name_untouched) {
			m->gen[op->fid]--;
			if (op->type == OP_RECREATE)
				m->maybe_absent[op->fid] = m->g[op->fid][m->dgen[op->fid]].exists_sure == false;
		}
		return;
	}
	struct cm_file *f = cur_file(m, op->fid);
	uint64_t a = op->off, b = op->off + op->len;
	if (op->type == OP_TRUNC) {
		a = MIN_SZ(op->off, f->prev_size);
		b = op->off > f->prev_size ? op->off : f->prev_size;
	}
	if (op->type == OP_FSYNC || op->type == OP_FDATASYNC || op->type == OP_SYNCFS)
		return;
	if (b > CM_MAX)
		b = CM_MAX;
	if (a < b) {
		memset(f->unknown + a, 1, b - a);
		memset(f->touched + a, 1, b - a);
	}
	if (f->size != f->prev_size) {
		uint64_t lo = MIN_SZ(f->size, f->prev_size), hi = f->size > f->prev_size ? f->size : f->prev_size;
		memset(f->unknown + lo, 1, hi - lo);
		memset(f->touched + lo, 1, hi - lo);
		f->size = f->prev_size;
	}
}

void cm_synced(struct cm_model *m, const struct cm_op *op)
{
	if (op->type == OP_REPLACE) {
		/* its fdatasync of the temp file was a sync point for all
		   metadata before it; the rename after it is not durable yet */
		m->gen[op->fid]--;
		sync_point(m);
		m->gen[op->fid]++;
	} else if (op->type == OP_FSYNC || op->type == OP_FDATASYNC) {
		sync_point(m);
		sync_file(cur_file(m, op->fid));
	} else if (op->type == OP_SYNCFS) {
		sync_point(m);
		for (int i = 0; i < CM_FILES; i++)
			if (cur_file(m, i)->exists)
				sync_file(cur_file(m, i));
	} else if (op->type == OP_DSYNC_WRITE) {
		/* O_DSYNC: this write's data and the metadata to reach it */
		sync_point(m);
		struct cm_file *f = cur_file(m, op->fid);
		memcpy(f->synced + op->off, f->cur + op->off, op->len);
		memcpy(f->touched + op->off, f->unknown + op->off, op->len);
		if (op->off + op->len > f->synced_size) {
			f->synced_size = op->off + op->len;
			f->durable = true;
		}
		if (f->lo < f->synced_size && f->synced_size <= f->size)
			f->lo = f->synced_size;
	}
}

void cm_open(struct dio_vol *v, struct dio_file **h, struct dio_file **hs)
{
	for (int i = 0; i < CM_FILES; i++) {
		h[i] = dio_open(v, cm_name(i), O_RDWR | O_CREAT);
		hs[i] = h[i] ? dio_open(v, cm_name(i), O_RDWR | O_DSYNC) : NULL;
	}
}

void cm_close(struct dio_file **h, struct dio_file **hs)
{
	for (int i = 0; i < CM_FILES; i++) {
		if (h[i])
			dio_close(h[i]);
		if (hs[i])
			dio_close(hs[i]);
	}
}

static int reopen(struct dio_vol *v, struct dio_file **h, struct dio_file **hs, int fid)
{
	if (h[fid])
		dio_close(h[fid]);
	if (hs[fid])
		dio_close(hs[fid]);
	h[fid] = dio_open(v, cm_name(fid), O_RDWR | O_CREAT);
	hs[fid] = h[fid] ? dio_open(v, cm_name(fid), O_RDWR | O_DSYNC) : NULL;
	return h[fid] && hs[fid] ? 0 : -1;
}

int cm_exec(struct dio_vol *v, struct dio_file **h, struct dio_file **hs, const struct cm_op *op)
{
	static uint8_t *buf;
	if (!buf && posix_memalign((void **)&buf, 4096, 65536))
		abort();
	struct dio_file *f = h[op->fid];
	if (!f || !hs[op->fid])
		return -1;
	switch (op->type) {
	case OP_WRITE:
	case OP_DSYNC_WRITE:
		t_fill(buf + op->shift, op->len, (uint32_t)op->fid, op->wid, op->off);
		return dio_pwrite(op->type == OP_WRITE ? f : hs[op->fid], buf + op->shift, op->len,
				  (off_t)op->off) == (ssize_t)op->len ? 0 : -1;
	case OP_FSYNC:
		return dio_fsync(f);
	case OP_FDATASYNC:
		return dio_fdatasync(f);
	case OP_TRUNC:
		return dio_ftruncate(f, (off_t)op->off);
	case OP_FALLOC: {
		int r = dio_fallocate(f, op->mode, (off_t)op->off, (off_t)op->len);
		return r < 0 && errno == ENOSPC ? 0 : r;
	}
	case OP_SYNCFS:
		return dio_syncfs(v);
	case OP_REPLACE: {
		name_untouched = true;
		char tmp[32];
		snprintf(tmp, sizeof(tmp), "tmp-%u", op->wid);
		struct dio_file *t = dio_open(v, tmp, O_RDWR | O_CREAT | O_EXCL);
		if (!t)
			return -1;
		t_fill(buf + op->shift, op->len, (uint32_t)op->fid, op->wid, 0);
		int r = dio_pwrite(t, buf + op->shift, op->len, 0) == (ssize_t)op->len ? 0 : -1;
		if (!r)
			r = dio_fdatasync(t);
		int saved = errno;
		dio_close(t);
		if (!r) {
			r = dio_rename(v, tmp, cm_name(op->fid));
			name_untouched = r < 0;
		} else {
			errno = saved;
		}
		if (!r)
			r = reopen(v, h, hs, op->fid);
		return r;
	}
	case OP_RECREATE:
		dio_close(h[op->fid]);
		dio_close(hs[op->fid]);
		h[op->fid] = hs[op->fid] = NULL;
		name_untouched = true;
		if (dio_unlink(v, cm_name(op->fid))) {
			int e = errno;
			reopen(v, h, hs, op->fid);   /* the old file is still there */
			errno = e;
			return -1;
		}
		name_untouched = false;
		return reopen(v, h, hs, op->fid);
	}
	return -1;
}

static bool written_at(const struct cm_file *f, int fid, uint64_t pos, uint8_t val)
{
	for (int i = f->nw - 1; i >= 0; i--)
		if (pos >= f->w[i].off && pos < f->w[i].off + f->w[i].len &&
		    val == t_pat((uint32_t)fid, f->w[i].wid, pos))
			return true;
	return false;
}

/* Check one incarnation against what was read; NULL if it fits. */
static const char *check_gen(const struct cm_file *f, int fid, const uint8_t *buf, uint64_t size, char *msg, size_t n)
{
	if (f->durable && (size < f->lo || size > f->hi)) {
		snprintf(msg, n, "size %llu outside [%llu, %llu]", (unsigned long long)size,
			 (unsigned long long)f->lo, (unsigned long long)f->hi);
		return msg;
	}
	for (uint64_t p = 0; p < size; p++) {
		uint8_t val = buf[p];
		if (f->durable && !f->touched[p]) {
			if (val != f->synced[p]) {
				snprintf(msg, n, "byte %llu is %u, synced %u", (unsigned long long)p, val, f->synced[p]);
				return msg;
			}
			continue;
		}
		if (val == 0 || (f->durable && val == f->synced[p]) || written_at(f, fid, p, val))
			continue;
		snprintf(msg, n, "byte %llu holds %u, never written there (stale or foreign)",
			 (unsigned long long)p, val);
		return msg;
	}
	return NULL;
}

void cm_check(struct dio_vol *v, struct cm_model *m)
{
	uint8_t *buf;
	char msg[256];
	ck_assert(posix_memalign((void **)&buf, 4096, CM_MAX + 65536) == 0);
	for (int i = 0; i < CM_FILES; i++) {
		int lo = m->dgen[i], hi = m->gen[i];
		struct dio_file *h = dio_open(v, cm_name(i), O_RDONLY);
		if (!h) {
			ck_assert_msg(m->maybe_absent[i] || !m->g[i][lo].exists_sure,
				      "file %s was synced but is gone", cm_name(i));
			continue;
		}
		struct dio_stat st;
		ck_assert_int_eq(dio_fstat(h, &st), 0);
		ck_assert_uint_le(st.size, CM_MAX);
		ssize_t n = dio_pread(h, buf, CM_MAX, 0);
		ck_assert_int_eq(n, (ssize_t)st.size);
		const char *why = "no incarnation";
		char all[1024] = "";
		for (int g = hi; g >= lo && why; g--) {
			why = check_gen(&m->g[i][g], i, buf, st.size, msg, sizeof(msg));
			if (why)
				snprintf(all + strlen(all), sizeof(all) - strlen(all), " [%d] %s;", g, why);
		}
		if (why)
			ck_abort_msg("%s (incarnations %d..%d):%s", cm_name(i), lo, hi, all);
		dio_close(h);
	}
	free(buf);
}
