/*
 * The metadata journal: logical redo records, committed in transactions.
 *
 * Every metadata change is made in memory under md_lock and appended, in
 * the same critical section, as a record to the pending buffer; so the
 * order of records is the order of the changes.  A commit takes the whole
 * pending buffer as one transaction:
 *
 *   1. flush the device cache: the data that the records make reachable
 *      (an unwritten->written conversion, a size change) is durable first
 *      (ordered mode; no record ever exposes blocks whose data is not);
 *   2. write the transaction's journal blocks with FUA.
 *
 * Unless every record of the transaction only exposes clean blocks
 * (zeroed and flushed during this mount, see alloc.c) and grows sizes,
 * or exposes no data at all (a create, an unlink): then nothing stale can
 * show if the record lands before the data, and the commit writes the
 * journal blocks and flushes once, which also makes the data durable.
 * Small appends with fdatasync commit that way, and so does SQLite's
 * rollback journal: created, written into clean blocks, synced, deleted.
 *
 * Journal blocks carry a block sequence number and the volume uuid.
 * Replay starts at the position the superblock names and stops at the
 * first block that is absent, torn or old, discarding a partial
 * transaction.  When the journal would overflow, a checkpoint (ckpt.c)
 * replaces it: recovery never reads more than one journal's worth.
 *
 * Concurrent fsyncs share commits: each caller waits on commit_lock and
 * finds its records already durable if another caller's commit took them
 * (group commit).
 */
#include "internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t rec_size(const struct dio_rec *r)
{
	switch (r->type) {
	case R_CREATE: return 4 + 8 + 2 + r->l1;
	case R_UNLINK: return 4 + 2 + r->l1;
	case R_RENAME: return 4 + 2 + r->l1 + 2 + r->l2;
	case R_SIZE:   return 4 + 16;
	case R_TIMES:  return 4 + 16;
	case R_MAP:    return 4 + 36;
	case R_UNMAP:  return 4 + 24;
	}
	return 0;
}

/* The pending buffer grown to hold `bytes` more. */
static int j_grow(struct dio_vol *v, size_t bytes)
{
	if (v->j.len + bytes <= v->j.cap)
		return 0;
	size_t cap = v->j.cap ? v->j.cap * 2 : 4096;
	while (cap < v->j.len + bytes)
		cap *= 2;
	uint8_t *n = dio_realloc(v->j.buf, cap);
	if (!n)
		return -ENOMEM;
	v->j.buf = n;
	v->j.cap = cap;
	return 0;
}

/* Room in the pending buffer for `bytes` more of records (under
   md_lock), on top of the room reserved already: a metadata call asks
   before its first change, so that its records never fail to fit once
   it has begun.  0 or -ENOMEM. */
int j_reserve(struct dio_vol *v, size_t bytes)
{
	DIO_MD_HELD(v);
	size_t base = MAX(v->j.room, v->j.len);   /* on top of what is reserved and unused */
	int e = j_grow(v, base - v->j.len + bytes);
	if (!e)
		v->j.room = base + bytes;
	return e;
}

int j_append(struct dio_vol *v, const struct dio_rec *r, bool ordered)
{
	DIO_MD_HELD(v);
	size_t need = rec_size(r);
	/* past what was reserved it is an allocation, which may fail (a
	   test makes it one every time: dio_alloc_tight) */
	bool beyond = v->j.len + need > v->j.room;
	if (beyond && atomic_load_explicit(&dio_alloc_tight, memory_order_relaxed) && dio_alloc_fails())
		return -ENOMEM;
	int e = j_grow(v, need);
	if (e)
		return e;
	uint8_t *p = v->j.buf + v->j.len;
	p[0] = (uint8_t)r->type;
	p[1] = 0;
	put_le16(p + 2, (uint16_t)need);
	p += 4;
	switch (r->type) {
	case R_CREATE:
		put_le64(p, r->ino);
		put_le16(p + 8, (uint16_t)r->l1);
		memcpy(p + 10, r->n1, r->l1);
		break;
	case R_UNLINK:
		put_le16(p, (uint16_t)r->l1);
		memcpy(p + 2, r->n1, r->l1);
		break;
	case R_RENAME:
		put_le16(p, (uint16_t)r->l1);
		memcpy(p + 2, r->n1, r->l1);
		put_le16(p + 2 + r->l1, (uint16_t)r->l2);
		memcpy(p + 4 + r->l1, r->n2, r->l2);
		break;
	case R_SIZE:
	case R_TIMES:
		put_le64(p, r->ino);
		put_le64(p + 8, r->a);
		break;
	case R_MAP:
		put_le64(p, r->ino);
		put_le64(p + 8, r->a);
		put_le64(p + 16, r->b);
		put_le64(p + 24, r->c);
		put_le32(p + 32, r->flags);
		break;
	case R_UNMAP:
		put_le64(p, r->ino);
		put_le64(p + 8, r->a);
		put_le64(p + 16, r->c);
		break;
	}
	v->j.len += need;
	v->j.last_seq++;
	plog_append(v, v->j.buf + v->j.len - need, need, v->j.last_seq);
	if (ordered)
		v->j.need_order = true;
	return 0;
}

/* Parse one record at p (avail bytes); 0 and *used, or -EUCLEAN. */
int rec_parse(const uint8_t *p, size_t avail, struct dio_rec *r, size_t *used)
{
	if (avail < 4)
		return -EUCLEAN;
	size_t len = get_le16(p + 2);
	if (len < 4 || len > avail)
		return -EUCLEAN;
	memset(r, 0, sizeof(*r));
	r->type = p[0];
	const uint8_t *q = p + 4;
	size_t body = len - 4;
	switch (r->type) {
	case R_CREATE:
		if (body < 10)
			return -EUCLEAN;
		r->ino = get_le64(q);
		r->l1 = get_le16(q + 8);
		r->n1 = (const char *)q + 10;
		if (body != 10 + r->l1)
			return -EUCLEAN;
		break;
	case R_UNLINK:
		if (body < 2)
			return -EUCLEAN;
		r->l1 = get_le16(q);
		r->n1 = (const char *)q + 2;
		if (body != 2 + r->l1)
			return -EUCLEAN;
		break;
	case R_RENAME:
		if (body < 4)
			return -EUCLEAN;
		r->l1 = get_le16(q);
		if (body < 4 + r->l1)
			return -EUCLEAN;
		r->n1 = (const char *)q + 2;
		r->l2 = get_le16(q + 2 + r->l1);
		r->n2 = (const char *)q + 4 + r->l1;
		if (body != 4 + r->l1 + r->l2)
			return -EUCLEAN;
		break;
	case R_SIZE:
	case R_TIMES:
		if (body != 16)
			return -EUCLEAN;
		r->ino = get_le64(q);
		r->a = get_le64(q + 8);
		break;
	case R_MAP:
		if (body != 36)
			return -EUCLEAN;
		r->ino = get_le64(q);
		r->a = get_le64(q + 8);
		r->b = get_le64(q + 16);
		r->c = get_le64(q + 24);
		r->flags = get_le32(q + 32);
		break;
	case R_UNMAP:
		if (body != 24)
			return -EUCLEAN;
		r->ino = get_le64(q);
		r->a = get_le64(q + 8);
		r->c = get_le64(q + 16);
		break;
	default:
		return -EUCLEAN;
	}
	*used = len;
	return 0;
}

static bool name_ok(const char *n, size_t l)
{
	return l >= 1 && l <= DIO_NAME_MAX && !memchr(n, 0, l);
}

/* Apply a replayed record to the in-memory state (mount only).  dry:
   only check that it would apply (every check comes before any change;
   -ENOMEM, the one failure left, cannot be checked for). */
int rec_apply(struct dio_vol *v, const struct dio_rec *r, bool dry)
{
	struct dio_inode *in;
	const uint64_t maxblk = DIO_MAX_FILE_SIZE / v->bs;
	switch (r->type) {
	case R_CREATE:
		if (!name_ok(r->n1, r->l1) || !r->ino || ino_lookup(v, r->ino) ||
		    ns_lookup(v, r->n1, r->l1))
			return -EUCLEAN;
		if (dry)
			return 0;
		in = ino_new(v, r->ino);
		if (!in)
			return -ENOMEM;
		if (r->ino >= v->ns.next_ino)
			v->ns.next_ino = r->ino + 1;
		return ns_insert(v, in, r->n1, r->l1);
	case R_UNLINK:
		if (!name_ok(r->n1, r->l1) || !(in = ns_lookup(v, r->n1, r->l1)))
			return -EUCLEAN;
		if (!dry)
			ns_remove(v, in);
		return 0;
	case R_RENAME: {
		if (!name_ok(r->n1, r->l1) || !name_ok(r->n2, r->l2) ||
		    !(in = ns_lookup(v, r->n1, r->l1)))
			return -EUCLEAN;
		struct dio_inode *t = ns_lookup(v, r->n2, r->l2);
		if (t == in || dry)
			return 0;
		if (t)
			ns_remove(v, t);
		ns_remove(v, in);
		return ns_insert(v, in, r->n2, r->l2);
	}
	case R_SIZE:
		if (r->a > DIO_MAX_FILE_SIZE)
			return -EUCLEAN;
		if ((in = ino_lookup(v, r->ino)) && !dry)
			in->size = r->a;
		return 0;
	case R_TIMES:
		if ((in = ino_lookup(v, r->ino)) && !dry)
			ino_set_mtime(in, (int64_t)r->a, true);
		return 0;
	case R_MAP:
		if (!r->c || r->a >= maxblk || r->c > maxblk - r->a || r->b < v->sb.data_start ||
		    r->b >= v->sb.total_blocks || r->c > v->sb.total_blocks - r->b ||
		    (r->flags & ~EXT_FLAGS))
			return -EUCLEAN;
		if (!(in = ino_lookup(v, r->ino)) || dry)
			return 0;
		bool had_written;
		return em_set(&in->map, r->a, r->b, r->c, r->flags, &had_written) < 0 ? -ENOMEM : 0;
	case R_UNMAP:
		if (r->a >= maxblk || r->c > maxblk - r->a)
			return -EUCLEAN;
		if ((in = ino_lookup(v, r->ino)) && !dry)
			return em_remove(&in->map, r->a, r->c, release_blocks_cb, v) < 0 ? -ENOMEM : 0;
		return 0;
	}
	return -EUCLEAN;
}

static uint32_t jpayload(const struct dio_vol *v) { return v->bs - MBLK_HDR; }

static int jio_reserve(struct dio_vol *v, size_t bytes)
{
	if (bytes <= v->j.io_cap)
		return 0;
	void *p;
	size_t cap = MAX(bytes, v->j.io_cap * 2);
	if (dio_memalign(&p, MAX(v->dev.geom.mem_align, 4096u), cap))
		return -ENOMEM;
	free(v->j.io);
	v->j.io = p;
	v->j.io_cap = cap;
	return 0;
}

/*
 * A cache flush started after `mark` (a value of flush_started read
 * once the writes it must cover had completed); j_flush: one that starts
 * after the call.  Callers that arrive while such a flush is in flight
 * share it, the others share the next one.  Flushes go one at a time;
 * a failed one fails every caller that was counting on it.
 */
static int flush_after(struct dio_vol *v, uint64_t mark)
{
	pthread_mutex_lock(&v->j.flush_lock);
	uint64_t need = mark + 1;   /* any flush started after the mark */
	int e = 0;
	while (atomic_load(&v->j.flush_done) < need && !e) {
		if (v->j.flush_failed >= need) {
			e = -EIO;
		} else if (v->j.flush_busy) {
			pthread_cond_wait(&v->j.flush_cv, &v->j.flush_lock);
		} else {
			v->j.flush_busy = true;
			uint64_t mine = atomic_fetch_add(&v->j.flush_started, 1) + 1;
			pthread_mutex_unlock(&v->j.flush_lock);
			e = dev_flush(v);
			pthread_mutex_lock(&v->j.flush_lock);
			v->j.flush_busy = false;
			if (e)
				v->j.flush_failed = mine;
			else
				atomic_store(&v->j.flush_done, mine);
			pthread_cond_broadcast(&v->j.flush_cv);
		}
	}
	pthread_mutex_unlock(&v->j.flush_lock);
	return e;
}

int j_flush(struct dio_vol *v)
{
	return flush_after(v, atomic_load(&v->j.flush_started));
}

/* Write one transaction of `len` bytes from buf at the journal head
   (flags: DIO_BIO_FUA, or 0 when the caller flushes after it). */
static int j_write_txn(struct dio_vol *v, const uint8_t *buf, size_t len, unsigned flags)
{
	uint32_t pl = jpayload(v), bs = v->bs;
	uint64_t n = DIV_UP(len, pl), J = v->sb.journal_blocks;
	size_t bytes;
	if (!size_mul(n, bs, &bytes))
		return -ENOMEM;
	int e = jio_reserve(v, bytes);
	if (e)
		return e;
	for (uint64_t i = 0; i < n; i++) {
		uint8_t *blk = v->j.io + i * bs;
		size_t used = MIN((size_t)pl, len - (size_t)i * pl);   /* i < n: i * pl < len */
		memset(blk, 0, bs);
		memcpy(blk + MBLK_HDR, buf + i * pl, used);
		struct dio_mblk_hdr h = { DIO_MAGIC_JRNL, 0, v->sb.uuid, v->j.head_bseq + i,
					  v->j.head_bseq, (uint32_t)n, (uint32_t)used };
		mblk_seal(blk, bs, &h);
	}
	uint64_t first = MIN(n, J - v->j.head_pos);
	e = dev_rw(v, DIO_BIO_WRITE, flags, (v->sb.journal_start + v->j.head_pos) * bs,
		   v->j.io, (size_t)first * bs);
	if (!e && n > first)
		e = dev_rw(v, DIO_BIO_WRITE, flags, v->sb.journal_start * bs,
			   v->j.io + (size_t)first * bs, (size_t)(n - first) * bs);
	if (e)
		return e;
	v->j.head_pos = (v->j.head_pos + n) % J;
	v->j.head_bseq += n;
	cnt_add(&CNT(v)->journal_commits, 1);
	return 0;
}

static void mark_durable(struct dio_vol *v, uint64_t seq)
{
	pthread_mutex_lock(&v->md_lock);
	if (seq > v->j.durable_seq)
		v->j.durable_seq = seq;
	alloc_release_durable(&v->alloc, v->j.durable_seq);
	md_unlock(v);
}

/* Checkpoint; called with commit_lock and md_lock held, returns with
   md_lock released. */
static int checkpoint_locked(struct dio_vol *v)
{
	DIO_HELD(&v->j.commit_lock);
	DIO_MD_HELD(v);
	uint8_t *img = NULL;
	size_t img_len = 0;
	uint64_t nblocks = 0, seq = v->j.last_seq;
	int e = ckpt_write(v, &nblocks, &img, &img_len);
	if (!e) {
		v->j.len = v->j.room = 0;   /* the checkpoint holds every pending record */
		v->j.need_order = false;   /* and is written after a flush */
	}
	md_unlock(v);
	if (e)
		return e;
	struct dio_sb nsb = v->sb;
	nsb.gen++;
	nsb.ckpt_slot ^= 1;
	nsb.ckpt_nblocks = nblocks;
	nsb.ckpt_seq = seq;
	nsb.jstart_pos = v->j.head_pos;
	nsb.jstart_bseq = v->j.head_bseq;
	/* re-seal the image with the new generation */
	for (uint64_t i = 0; i < nblocks; i++) {
		uint8_t *blk = img + i * v->bs;
		struct dio_mblk_hdr h = { DIO_MAGIC_CKPT, 0, v->sb.uuid, nsb.gen, i,
					  (uint32_t)nblocks, get_le32(blk + 36) };
		mblk_seal(blk, v->bs, &h);
	}
	pthread_mutex_lock(&v->md_lock);
	plog_checkpoint(v, nsb.gen, seq, false);
	md_unlock(v);
	e = j_flush(v);
	if (!e)
		e = dev_rw(v, DIO_BIO_WRITE, 0, nsb.ckpt_start[nsb.ckpt_slot] * v->bs, img, img_len);
	if (!e)
		e = j_flush(v);
	if (!e) {
		e = jio_reserve(v, v->bs);
		if (!e) {
			memset(v->j.io, 0, v->bs);
			sb_encode(&nsb, v->j.io);
			e = dev_rw(v, DIO_BIO_WRITE, 0, (nsb.gen % 2) * v->bs, v->j.io, v->bs);
		}
	}
	if (!e)
		e = j_flush(v);
	free(img);
	if (e)
		return e;
	/* readers of the superblock's fields hold md_lock (writers hold both) */
	pthread_mutex_lock(&v->md_lock);
	v->sb = nsb;
	plog_checkpoint(v, nsb.gen, seq, true);
	if (seq > v->j.written_seq) {
		v->j.written_seq = seq;
		v->j.written_mark = atomic_load(&v->j.flush_started);
	}
	md_unlock(v);
	cnt_add(&CNT(v)->journal_commits, 1);
	mark_durable(v, seq);
	return 0;
}

static void set_broken(struct dio_vol *v, int e)
{
	pthread_mutex_lock(&v->md_lock);
	v->j.broken = true;
	md_unlock(v);
	dio_log(DIO_LOG_ERR, "journal commit failed (%s): volume refuses further metadata changes",
		strerror(-e));
}

int j_checkpoint_locked(struct dio_vol *v)
{
	DIO_HELD(&v->j.commit_lock);
	pthread_mutex_lock(&v->md_lock);
	int e = checkpoint_locked(v);
	if (e)
		set_broken(v, e);
	return e;
}

/* Records up to seq are in the journal: one flush makes them durable
   (and every data write completed before it).  No lock held. */
static int flush_written(struct dio_vol *v, uint64_t seq, uint64_t mark)
{
	int e = flush_after(v, mark);
	if (e)
		set_broken(v, e);   /* records and data of unknown fate */
	else
		mark_durable(v, seq);
	return e;
}

/*
 * Make every record up to target_seq durable and, if need_flush, make
 * sure a cache flush started after the caller's writes completed.
 *
 * commit_lock orders the journal writes.  An ordered transaction keeps it
 * through flush + FUA write.  An unordered one (clean blocks only) keeps
 * it for the journal write alone and flushes after releasing it, so the
 * next transaction's journal write overlaps this one's flush: replay
 * stops at the first missing block, so a later transaction can never be
 * replayed without this one, and its own flush covers this one's write.
 * A caller whose records another caller's journal write already took
 * only needs a flush started after that write completed.
 */
int j_commit(struct dio_vol *v, uint64_t target_seq, bool need_flush, bool force_ckpt)
{
	uint64_t flush_mark = atomic_load(&v->j.flush_started);
	int e = 0;
	pthread_mutex_lock(&v->j.commit_lock);
	pthread_mutex_lock(&v->md_lock);
	if (v->j.broken) {
		md_unlock(v);
		pthread_mutex_unlock(&v->j.commit_lock);
		return -EIO;
	}
	bool recs_done = v->j.durable_seq >= target_seq;
	bool flush_done = !need_flush || atomic_load(&v->j.flush_done) > flush_mark;
	if (!force_ckpt && recs_done && flush_done) {
		md_unlock(v);
		pthread_mutex_unlock(&v->j.commit_lock);
		return 0;
	}
	if (!force_ckpt && (v->j.written_seq >= target_seq || !v->j.len)) {
		/* in the journal already, or nothing to journal: a flush
		   started now covers the records and the caller's data */
		uint64_t seq = v->j.written_seq, mark = MAX(flush_mark, v->j.written_mark);
		bool at_stake = seq > v->j.durable_seq;
		md_unlock(v);
		pthread_mutex_unlock(&v->j.commit_lock);
		return at_stake ? flush_written(v, seq, mark) : flush_after(v, mark);
	}
	uint64_t J = v->sb.journal_blocks;
	uint64_t used = v->j.head_bseq - v->sb.jstart_bseq;
	uint64_t need = DIV_UP(v->j.len, jpayload(v));
	if (force_ckpt || used + need > J) {
		e = checkpoint_locked(v);
		pthread_mutex_unlock(&v->j.commit_lock);
		if (e)
			set_broken(v, e);
		return e;
	}
	uint8_t *buf = v->j.buf;
	size_t len = v->j.len;
	uint64_t seq = v->j.last_seq;
	bool ordered = v->j.need_order;
	v->j.buf = NULL;
	v->j.len = v->j.cap = v->j.room = 0;
	v->j.need_order = false;
	md_unlock(v);
	if (ordered) {
		e = j_flush(v);
		if (!e)
			e = j_write_txn(v, buf, len, DIO_BIO_FUA);
	} else {
		e = j_write_txn(v, buf, len, 0);
	}
	free(buf);
	uint64_t mark = atomic_load(&v->j.flush_started);
	if (!e) {
		pthread_mutex_lock(&v->md_lock);
		v->j.written_seq = seq;
		v->j.written_mark = mark;
		plog_trim(v, seq);   /* on the device: a killed process loses none of it */
		md_unlock(v);
		if (ordered)
			mark_durable(v, seq);
	}
	pthread_mutex_unlock(&v->j.commit_lock);
	if (e) {
		set_broken(v, e);
		return e;
	}
	return ordered ? 0 : flush_written(v, seq, mark);
}

/*
 * Is the block at journal position pos the one replay expects next
 * (block sequence want, first block of its transaction first)?  NULL if
 * so, with its header in *h; else why not, in words (dio dump shows them).
 */
static const char *jblock_problem(const struct dio_vol *v, const uint8_t *blk, uint64_t want, uint64_t first,
				  struct dio_mblk_hdr *h, char *buf, size_t len)
{
	const char *p = mblk_problem(blk, v->bs, DIO_MAGIC_JRNL, v->sb.uuid);
	if (p)
		return p;
	mblk_check(blk, v->bs, DIO_MAGIC_JRNL, v->sb.uuid, h);
	if (h->seq != want)
		snprintf(buf, len, "block sequence %llu where %llu was expected (older or never written)",
			 (unsigned long long)h->seq, (unsigned long long)want);
	else if (h->aux != first)
		snprintf(buf, len, "belongs to the transaction starting at block sequence %llu, not %llu",
			 (unsigned long long)h->aux, (unsigned long long)first);
	else
		return NULL;
	return buf;
}

/* Keep the pending journal small: commit when it holds a quarter of the
   journal, so it never has to be checkpointed in one huge piece, or half
   of the process-death log, so that it never overflows; and at once
   while the log is overflowed, so that a call left out of it is on the
   device before it returns.  Every metadata call asks once it has made
   its change (under md_lock) and commits after releasing it
   (j_commit_due): the sequence to commit up to (0: none), and whether
   the call's records are missing from the log (the commit's error is
   then the call's). */
struct j_due j_due(struct dio_vol *v)
{
	DIO_MD_HELD(v);
	bool must = plog_overflowed(v);
	bool big = must || v->j.len > v->sb.journal_blocks * (v->bs - MBLK_HDR) / 4 || plog_fill(v) > 50;
	return (struct j_due){ big ? v->j.last_seq : 0, must };
}

/* The commit j_due asked for (no locks held).  Its error is the call's
   only if the call's records are not in the process-death log. */
int j_commit_due(struct dio_vol *v, struct j_due d)
{
	if (!d.seq)
		return 0;
	int e = j_commit(v, d.seq, false, false);
	return d.must ? e : 0;
}

/* One record of the process-death log (its journal encoding), at mount:
   applied, or with dry only checked (plog_recover checks a whole call
   first).  An inconsistent record is logged only when applied: a dry
   check that fails ends the log's replay, which plog_recover says. */
int j_apply_encoded(struct dio_vol *v, uint64_t seq, const uint8_t *rec, size_t len, bool dry)
{
	struct dio_rec r = { 0 };
	size_t used;
	int e = rec_parse(rec, len, &r, &used);
	if (!e && used != len)
		e = -EUCLEAN;
	if (!e)
		e = rec_apply(v, &r, dry);
	if (e == -EUCLEAN && !dry)
		dio_log(DIO_LOG_ERR, "process-death log: record %llu (type %d) is inconsistent",
			(unsigned long long)seq, r.type);
	return e;
}

/*
 * Replay the journal after the checkpoint.  One read of the area, then
 * whole transactions in order, up to the first block that is not the
 * expected one; a transaction with such a block inside is torn (it never
 * committed) and is discarded.  v->replay_tap, if set, sees every
 * transaction and the reason replay stopped (dio dump).
 */
int j_replay(struct dio_vol *v)
{
	const struct j_replay_tap *tap = v->replay_tap;
	uint64_t J = v->sb.journal_blocks, bs = v->bs;
	uint8_t *area;
	size_t jbytes;
	if (!size_mul(J, bs, &jbytes) || dio_memalign((void **)&area, MAX(v->dev.geom.mem_align, 4096u), jbytes))
		return -ENOMEM;
	int e = dev_rw(v, DIO_BIO_READ, 0, v->sb.journal_start * bs, area, jbytes);
	if (e) {
		free(area);
		return e;
	}
	uint64_t pos = v->sb.jstart_pos, bseq = v->sb.jstart_bseq, seen = 0, nrec = 0;
	uint8_t *txn = NULL;
	size_t tcap = 0;
	char why[160];
	const char *stop = "the whole journal area was read";
	while (seen < J && !e) {
		struct dio_mblk_hdr h;
		stop = jblock_problem(v, area + pos * bs, bseq, bseq, &h, why, sizeof(why));
		if (stop && stop != why) {
			/* the usual end of the log: a block never written, or
			   one left by a transaction of an earlier era */
			snprintf(why, sizeof(why), "end of the log: %s", stop);
			stop = why;
		} else if (!stop && (!h.count || h.count > J - seen)) {
			snprintf(why, sizeof(why), "transaction length %u does not fit the journal", h.count);
			stop = why;
		}
		if (stop)
			break;
		uint32_t n = h.count;
		size_t tlen = 0;
		if (tcap < (size_t)n * (size_t)bs) {   /* n <= J, and J * bs fits */
			free(txn);
			tcap = (size_t)n * (size_t)bs;
			txn = dio_malloc(tcap);
			if (!txn) {
				e = -ENOMEM;
				break;
			}
		}
		for (uint32_t i = 0; i < n && !stop; i++) {
			struct dio_mblk_hdr hi;
			const uint8_t *blk = area + ((pos + i) % J) * bs;
			char inner[120];
			const char *p = jblock_problem(v, blk, bseq + i, bseq, &hi, inner, sizeof(inner));
			if (!p && hi.count != n)
				p = "block count differs from the first block's";
			if (p) {
				snprintf(why, sizeof(why), "transaction at block sequence %llu is torn: block %u of %u: %s",
					 (unsigned long long)bseq, i + 1, n, p);
				stop = why;
				break;
			}
			memcpy(txn + tlen, blk + MBLK_HDR, hi.used);
			tlen += hi.used;
		}
		if (stop)
			break;   /* torn transaction: it never committed */
		if (tap)
			tap->txn(tap->arg, pos, bseq, n, txn, tlen);
		for (size_t off = 0; off < tlen && !e;) {
			struct dio_rec r = { 0 };
			size_t used = 0;
			e = rec_parse(txn + off, tlen - off, &r, &used);
			if (!e)
				e = rec_apply(v, &r, false);
			if (e == -EUCLEAN) {
				snprintf(why, sizeof(why), "journal record %llu (type %d) is inconsistent",
					 (unsigned long long)nrec, r.type);
				stop = why;
				dio_log(DIO_LOG_ERR, "%s", why);
			}
			off += used;
			nrec++;
		}
		pos = (pos + n) % J;
		bseq += n;
		seen += n;
	}
	if (tap)
		tap->stop(tap->arg, pos, bseq, e && e != -EUCLEAN ? strerror(-e) : stop, e);
	free(txn);
	free(area);
	v->j.head_pos = pos;
	v->j.head_bseq = bseq;
	v->j.last_seq = v->j.durable_seq = v->j.written_seq = v->sb.ckpt_seq + nrec;
	return e;
}
