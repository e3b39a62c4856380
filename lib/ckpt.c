/*
 * Checkpoints: the whole metadata state (files, names, sizes, extent
 * maps) serialized into the checkpoint area the superblock does not point
 * at, then a new superblock generation pointing at it.  Free space is not
 * stored: mount derives it from the maps, so the two can never disagree.
 *
 * Payload (little-endian), split over blocks of (block_size - 40) bytes:
 *   u64 ninodes, u64 next_ino, u64 seq
 *   per file: u64 ino, u64 size, u64 nextents, u16 namelen, name,
 *             nextents x { u64 lblk, u64 pblk, u32 len, u32 flags }
 *   u64 nbad, nbad x { u64 pblk, u64 len }   (blocks a write failed on)
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

struct sink {
	uint8_t *img;
	uint32_t bs, pl;
	uint64_t blk;      /* current block */
	uint32_t used;     /* payload bytes in it */
	uint64_t cap;      /* blocks available */
};

static void sink_close_block(struct sink *s)
{
	put_le32(s->img + s->blk * s->bs + 36, s->used);
}

static int sink_put(struct sink *s, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (len) {
		if (s->used == s->pl) {
			sink_close_block(s);
			if (++s->blk >= s->cap)
				return -ENOSPC;
			s->used = 0;
		}
		size_t n = MIN(len, (size_t)(s->pl - s->used));
		memcpy(s->img + s->blk * s->bs + MBLK_HDR + s->used, p, n);
		s->used += (uint32_t)n;
		p += n;
		len -= n;
	}
	return 0;
}

static int put64(struct sink *s, uint64_t x) { uint8_t b[8]; put_le64(b, x); return sink_put(s, b, 8); }

/* Serialize under md_lock.  The image is sealed by the caller. */
int ckpt_write(struct dio_vol *v, uint64_t *nblocks_out, uint8_t **image, size_t *image_len)
{
	DIO_MD_HELD(v);
	uint32_t bs = v->bs;
	uint64_t need = DIV_UP(v->md_bytes + CKPT_HDR_BYTES, bs - MBLK_HDR) + 1;
	if (need > v->sb.ckpt_blocks)
		need = v->sb.ckpt_blocks;
	struct sink s = { NULL, bs, bs - MBLK_HDR, 0, 0, need };
	size_t bytes;
	if (!size_mul(need, bs, &bytes) || dio_memalign((void **)&s.img, MAX(v->dev.geom.mem_align, 4096u), bytes))
		return -ENOMEM;
	memset(s.img, 0, bytes);
	int e = put64(&s, v->ns.nnames);
	e = e ? e : put64(&s, v->ns.next_ino);
	e = e ? e : put64(&s, v->j.last_seq);
	struct ns_iter it;
	ns_iter_start(v, &it);
	for (struct dio_inode *in; !e && (in = ns_iter_next(&it));) {
		/* id, size, mtime (DIO_INCOMPAT_MTIME), extents, name length */
		uint8_t h[34];
		bool t = v->sb.incompat & DIO_INCOMPAT_MTIME;
		int64_t mtime = atomic_load_explicit(&in->mtime, memory_order_relaxed);
		put_le64(h, in->ino);
		put_le64(h + 8, in->size);
		if (t)
			put_le64(h + 16, (uint64_t)mtime);
		put_le64(h + 16 + (t ? 8 : 0), em_count(&in->map));
		put_le16(h + 24 + (t ? 8 : 0), (uint16_t)in->namelen);
		e = sink_put(&s, h, t ? 34 : 26);
		e = e ? e : sink_put(&s, in->name, in->namelen);
		struct em_cur c;
		size_t written = 0;
		for (bool ok = em_first(&in->map, &c); ok && !e; ok = em_next(&in->map, &c), written++) {
			const struct dio_extent *x = em_rec(&c);
			uint8_t b[24];
			put_le64(b, x->lblk);
			put_le64(b + 8, x->pblk);
			put_le32(b + 16, x->len);
			put_le32(b + 20, x->flags);
			e = sink_put(&s, b, 24);
		}
		/* the count went first: a walk that disagrees would make the
		   checkpoint unreadable (cannot happen: extent.c keeps it) */
		DIO_ASSERT(e || written == em_count(&in->map));
		if (!e && written != em_count(&in->map))
			e = -EIO;
	}
	e = e ? e : put64(&s, em_count(&v->bad));
	struct em_cur c;
	for (bool ok = em_first(&v->bad, &c); ok && !e; ok = em_next(&v->bad, &c)) {
		e = put64(&s, em_rec(&c)->pblk);
		e = e ? e : put64(&s, em_rec(&c)->len);
	}
	if (e) {
		free(s.img);
		dio_log(DIO_LOG_ERR, e == -EIO ? "checkpoint: a file's extents walked differ from their count"
					       : "metadata does not fit the checkpoint area");
		return e;
	}
	sink_close_block(&s);
	*nblocks_out = s.blk + 1;
	*image = s.img;
	*image_len = (size_t)(s.blk + 1) * bs;   /* <= bytes */
	return 0;
}

struct source {
	const uint8_t *p;
	size_t len, off;
};

static int take(struct source *s, void *out, size_t n)
{
	if (s->len - s->off < n)
		return -EUCLEAN;
	memcpy(out, s->p + s->off, n);
	s->off += n;
	return 0;
}

static int take64(struct source *s, uint64_t *x)
{
	uint8_t b[8];
	if (take(s, b, 8))
		return -EUCLEAN;
	*x = get_le64(b);
	return 0;
}

static int load_inode(struct dio_vol *v, struct source *s, struct ns_loader *names)
{
	uint8_t h[34];
	char name[DIO_NAME_MAX + 1];
	bool t = v->sb.incompat & DIO_INCOMPAT_MTIME;   /* its records carry the time */
	if (take(s, h, t ? 34 : 26))
		return -EUCLEAN;
	uint64_t ino = get_le64(h), size = get_le64(h + 8), n = get_le64(h + 16 + (t ? 8 : 0));
	int64_t mtime = t ? (int64_t)get_le64(h + 16) : 0;
	size_t nl = get_le16(h + 24 + (t ? 8 : 0));
	if (!ino || ino >= v->ns.next_ino || size > DIO_MAX_FILE_SIZE || nl < 1 || nl > DIO_NAME_MAX ||
	    n > (s->len - s->off) / 24 || take(s, name, nl) || memchr(name, 0, nl) || ino_lookup(v, ino))
		return -EUCLEAN;
	struct dio_inode *in = ino_new(v, ino);
	if (!in)
		return -ENOMEM;
	in->size = size;
	ino_set_mtime(in, mtime, true);
	int e = ns_load_add(v, names, in, name, nl);   /* in name order, each once */
	if (e)
		return e;
	const uint64_t maxblk = DIO_MAX_FILE_SIZE / v->bs;
	uint64_t prev_end = 0;
	struct em_loader L = { .m = &in->map };
	for (uint64_t k = 0; k < n; k++) {
		uint8_t b[24];
		if (take(s, b, 24)) {
			em_load_drop(&L);
			return -EUCLEAN;
		}
		struct dio_extent x = { get_le64(b), get_le64(b + 8), get_le32(b + 16), get_le32(b + 20) };
		/* sorted, non-overlapping, inside the file limit and the data area */
		if (!x.len || x.len > EXT_MAX_LEN || x.lblk < prev_end || x.lblk >= maxblk ||
		    x.len > maxblk - x.lblk || x.pblk < v->sb.data_start ||
		    x.pblk >= v->sb.total_blocks || x.len > v->sb.total_blocks - x.pblk ||
		    (x.flags & ~EXT_FLAGS)) {
			em_load_drop(&L);
			return -EUCLEAN;
		}
		/* in order: each one goes at the tree's right edge */
		if (em_load_add(&L, &x))
			return -ENOMEM;
		prev_end = x.lblk + x.len;
	}
	return em_load_end(&L);
}

int ckpt_load(struct dio_vol *v)
{
	uint32_t bs = v->bs;
	uint64_t nb = v->sb.ckpt_nblocks;
	uint8_t *img, *pay;
	size_t bytes, pbytes;
	if (!size_mul(nb, bs, &bytes) || !size_mul(nb, bs - MBLK_HDR, &pbytes) ||
	    dio_memalign((void **)&img, MAX(v->dev.geom.mem_align, 4096u), bytes))
		return -ENOMEM;
	pay = dio_malloc(pbytes);
	int e = pay ? dev_rw(v, DIO_BIO_READ, 0, v->sb.ckpt_start[v->sb.ckpt_slot] * bs, img, bytes) : -ENOMEM;
	size_t plen = 0;
	for (uint64_t i = 0; i < nb && !e; i++) {
		struct dio_mblk_hdr h;
		if (mblk_check(img + (size_t)i * bs, bs, DIO_MAGIC_CKPT, v->sb.uuid, &h) || h.seq != v->sb.gen ||
		    h.aux != i || h.count != nb) {
			dio_log(DIO_LOG_ERR, "checkpoint block %llu is damaged", (unsigned long long)i);
			e = -EUCLEAN;
			break;
		}
		memcpy(pay + plen, img + (size_t)i * bs + MBLK_HDR, h.used);
		plen += h.used;
	}
	free(img);
	struct source s = { pay, plen, 0 };
	uint64_t ninodes = 0, seq = 0;
	if (!e && (take64(&s, &ninodes) || take64(&s, &v->ns.next_ino) || take64(&s, &seq) ||
		   seq != v->sb.ckpt_seq || !v->ns.next_ino))
		e = -EUCLEAN;
	/* each inode takes 26 bytes at least: a count past that is damage */
	if (!e && ninodes > (s.len - s.off) / 26)
		e = -EUCLEAN;
	if (!e)
		e = ino_reserve(v, ninodes);
	struct ns_loader names = { 0 };
	for (uint64_t i = 0; i < ninodes && !e; i++)
		e = load_inode(v, &s, &names);
	ns_load_end(v, &names, !e);
	uint64_t nbad = 0, prev_end = 0;
	if (!e && take64(&s, &nbad))
		e = -EUCLEAN;
	for (uint64_t i = 0; i < nbad && !e; i++) {
		uint64_t p = 0, l = 0;
		if (take64(&s, &p) || take64(&s, &l) || !l || l > EXT_MAX_LEN || p < prev_end ||
		    p < v->sb.data_start || p >= v->sb.total_blocks || l > v->sb.total_blocks - p)
			e = -EUCLEAN;
		else
			e = bad_add(v, p, l);
		prev_end = p + l;
	}
	if (e == -EUCLEAN)
		dio_log(DIO_LOG_ERR, "checkpoint contents are inconsistent");
	free(pay);
	return e;
}
