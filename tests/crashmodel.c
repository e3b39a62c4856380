#include "crashmodel.h"

static const char *cm_name(int fid)
{
	static const char *n[CM_FILES] = { "log/0", "db/a", "db/b" };
	return n[fid];
}

void cm_gen(struct cm_op *ops, int n, uint64_t seed)
{
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
		else if (r < 97) {
			static const int modes[] = { 0, DIO_FALLOC_KEEP_SIZE,
				DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE, DIO_FALLOC_ZERO_RANGE };
			o->type = OP_FALLOC;
			o->mode = modes[t_rand() % 4];
		} else
			o->type = OP_SYNCFS;
	}
}

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
}

void cm_apply(struct cm_model *m, const struct cm_op *op)
{
	struct cm_file *f = &m->f[op->fid];
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
	struct cm_file *f = &m->f[op->fid];
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
	if (op->type == OP_FSYNC || op->type == OP_FDATASYNC) {
		sync_file(&m->f[op->fid]);
	} else if (op->type == OP_SYNCFS) {
		for (int i = 0; i < CM_FILES; i++)
			if (m->f[i].exists)
				sync_file(&m->f[i]);
	} else if (op->type == OP_DSYNC_WRITE) {
		/* O_DSYNC: this write's data and the metadata to reach it */
		struct cm_file *f = &m->f[op->fid];
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

void cm_check(struct dio_vol *v, struct cm_model *m)
{
	uint8_t *buf;
	ck_assert(posix_memalign((void **)&buf, 4096, CM_MAX + 65536) == 0);
	for (int i = 0; i < CM_FILES; i++) {
		struct cm_file *f = &m->f[i];
		struct dio_file *h = dio_open(v, cm_name(i), O_RDONLY);
		if (!h) {
			ck_assert_msg(!f->durable, "file %s was synced but is gone", cm_name(i));
			continue;
		}
		struct dio_stat st;
		ck_assert_int_eq(dio_fstat(h, &st), 0);
		if (f->durable)
			ck_assert_msg(st.size >= f->lo && st.size <= f->hi,
				      "%s: size %llu outside [%llu, %llu]", cm_name(i),
				      (unsigned long long)st.size, (unsigned long long)f->lo,
				      (unsigned long long)f->hi);
		ck_assert_uint_le(st.size, CM_MAX);
		ssize_t n = dio_pread(h, buf, CM_MAX, 0);
		ck_assert_int_eq(n, (ssize_t)st.size);
		for (uint64_t p = 0; p < st.size; p++) {
			uint8_t val = buf[p];
			if (f->durable && !f->touched[p]) {
				if (val != f->synced[p])
					ck_abort_msg("%s: byte %llu is %u, synced %u", cm_name(i),
						     (unsigned long long)p, val, f->synced[p]);
				continue;
			}
			if (val == 0 || (f->durable && val == f->synced[p]) || written_at(f, i, p, val))
				continue;
			ck_abort_msg("%s: byte %llu holds %u, never written there (stale or foreign)",
				     cm_name(i), (unsigned long long)p, val);
		}
		dio_close(h);
	}
	free(buf);
}
