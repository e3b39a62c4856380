/*
 * The namespace (a sorted array of names, so dio_list walks in order and
 * lookups are binary searches), the inode table (a hash by file id), the
 * bad-block list, and handles' reference counts: the in-memory tables at
 * the bottom of the metadata layer, all under md_lock.  Nothing here
 * writes the journal; replay and checkpoint loading fill these tables too.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

/* ---- namespace -------------------------------------------------------- */

static int name_cmp(const char *a, size_t la, const char *b, size_t lb)
{
	int c = memcmp(a, b, MIN(la, lb));
	return c ? c : (la < lb ? -1 : la > lb);
}

/* The inode named (name, len), or NULL; *pos is where it is or would go. */
struct dio_inode *ns_lookup(struct dio_vol *v, const char *name, size_t len, size_t *pos)
{
	size_t lo = 0, hi = v->ns.nnames;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = name_cmp(v->ns.names[mid]->name, v->ns.names[mid]->namelen, name, len);
		if (c < 0)
			lo = mid + 1;
		else if (c > 0)
			hi = mid;
		else {
			if (pos)
				*pos = mid;
			return v->ns.names[mid];
		}
	}
	if (pos)
		*pos = lo;
	return NULL;
}

/* The memory one more name needs, before anything changes: room in the
   sorted array, and *copy, the name's own copy for ns_insert_reserved
   (free it if it is not used).  0 or -ENOMEM. */
int ns_reserve(struct dio_vol *v, const char *name, size_t len, char **copy)
{
	DIO_MD_HELD(v);
	if (v->ns.nnames == v->ns.names_cap) {
		size_t cap = v->ns.names_cap ? v->ns.names_cap * 2 : 64;
		struct dio_inode **n = dio_realloc(v->ns.names, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		v->ns.names = n;
		v->ns.names_cap = cap;
	}
	*copy = dio_malloc(len + 1);
	if (!*copy)
		return -ENOMEM;
	memcpy(*copy, name, len);
	(*copy)[len] = 0;
	return 0;
}

/* Give in the name copy (ns_reserve's): cannot fail.  The name must be
   free. */
void ns_insert_reserved(struct dio_vol *v, struct dio_inode *in, char *copy, size_t len)
{
	DIO_MD_HELD(v);
	size_t pos;
	struct dio_inode *there = ns_lookup(v, copy, len, &pos);
	DIO_ASSERT(!there && v->ns.nnames < v->ns.names_cap);
	(void)there;
	memmove(&v->ns.names[pos + 1], &v->ns.names[pos], (v->ns.nnames - pos) * sizeof(v->ns.names[0]));
	v->ns.names[pos] = in;
	v->ns.nnames++;
	in->name = copy;
	in->namelen = len;
	v->md_bytes += md_inode_bytes(len);
}

int ns_insert(struct dio_vol *v, struct dio_inode *in, const char *name, size_t len)
{
	DIO_MD_HELD(v);
	if (ns_lookup(v, name, len, NULL))
		return -EEXIST;
	char *copy;
	int e = ns_reserve(v, name, len, &copy);
	if (!e)
		ns_insert_reserved(v, in, copy, len);
	return e;
}

void ns_remove(struct dio_vol *v, struct dio_inode *in)
{
	DIO_MD_HELD(v);
	size_t pos;
	if (!in->name || ns_lookup(v, in->name, in->namelen, &pos) != in)
		return;
	memmove(&v->ns.names[pos], &v->ns.names[pos + 1], (v->ns.nnames - pos - 1) * sizeof(v->ns.names[0]));
	v->ns.nnames--;
	v->md_bytes -= md_inode_bytes(in->namelen);
	free(in->name);
	in->name = NULL;
	in->namelen = 0;
}

/* ---- inode table ------------------------------------------------------ */

static size_t ihash(const struct dio_vol *v, uint64_t ino)
{
	return (size_t)((ino * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (v->ns.ihash_size - 1);
}

struct dio_inode *ino_lookup(struct dio_vol *v, uint64_t ino)
{
	if (!v->ns.ihash_size)
		return NULL;
	for (struct dio_inode *in = v->ns.ihash[ihash(v, ino)]; in; in = in->hnext)
		if (in->ino == ino)
			return in;
	return NULL;
}

static int ihash_grow(struct dio_vol *v)
{
	size_t ns = v->ns.ihash_size ? v->ns.ihash_size * 2 : 256;
	struct dio_inode **t = dio_calloc(ns, sizeof(*t));
	if (!t)
		return -ENOMEM;
	struct dio_inode **old = v->ns.ihash;
	size_t os = v->ns.ihash_size;
	v->ns.ihash = t;
	v->ns.ihash_size = ns;
	for (size_t i = 0; i < os; i++) {
		for (struct dio_inode *in = old[i], *nx; in; in = nx) {
			nx = in->hnext;
			size_t h = ihash(v, in->ino);
			in->hnext = t[h];
			t[h] = in;
		}
	}
	free(old);
	return 0;
}

struct dio_inode *ino_new(struct dio_vol *v, uint64_t ino)
{
	if (v->ns.ninodes + 1 > v->ns.ihash_size / 2 && ihash_grow(v) < 0)
		return NULL;
	struct dio_inode *in = dio_calloc(1, sizeof(*in));
	if (!in)
		return NULL;
	in->ino = ino;
	pthread_rwlock_init(&in->map_lock, NULL);
	size_t h = ihash(v, ino);
	in->hnext = v->ns.ihash[h];
	v->ns.ihash[h] = in;
	v->ns.ninodes++;
	return in;
}

/* Blocks a write failed on join the bad list (never reused); the others
   are freed, or deferred until the operation that freed them is durable.
   Replay uses the same rule, so both agree on where bad blocks go. */
int bad_add(struct dio_vol *v, uint64_t pblk, uint64_t len)
{
	uint64_t before = em_count(&v->bad);
	int e = em_remove(&v->bad, pblk, len, NULL, NULL);
	if (!e)
		e = em_insert(&v->bad, pblk, pblk, len, 0);
	md_account(v, before, em_count(&v->bad));
	return e;
}

/* Blocks freed by the change whose journal record has sequence `seq`: to
   the bad list, free now if that change is already durable (an unlinked
   file's last close), else free once it is. */
void blocks_freed(struct dio_vol *v, uint64_t seq, uint64_t pblk, uint64_t len, uint32_t flags)
{
	if (flags & EXT_BAD)
		bad_add(v, pblk, len);
	else if (seq <= v->j.durable_seq)
		alloc_give(&v->alloc, pblk, len);
	else
		alloc_defer(&v->alloc, pblk, len, seq);
}

/* em_remove's callback: blocks_freed with its sequence (struct freed). */
void freed_cb(void *arg, uint64_t pblk, uint64_t len, uint32_t flags)
{
	const struct freed *f = arg;
	blocks_freed(f->v, f->seq, pblk, len, flags);
}

/* Release an inode's blocks (reusable once the unlink is durable). */
void ino_free_blocks(struct dio_vol *v, struct dio_inode *in)
{
	struct em_cur c;
	for (bool ok = em_first(&in->map, &c); ok; ok = em_next(&in->map, &c))
		blocks_freed(v, v->j.last_seq, em_rec(&c)->pblk, em_rec(&c)->len, em_rec(&c)->flags);
	v->md_bytes -= (uint64_t)em_count(&in->map) * MD_EXTENT_BYTES;
	em_free(&in->map);
}

/* Replay and mount: only bad blocks need routing; free space is rebuilt. */
void release_blocks_cb(void *arg, uint64_t pblk, uint64_t len, uint32_t flags)
{
	if (flags & EXT_BAD)
		bad_add(arg, pblk, len);
}

void ino_destroy(struct dio_vol *v, struct dio_inode *in)
{
	struct dio_inode **pp = &v->ns.ihash[ihash(v, in->ino)];
	while (*pp && *pp != in)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = in->hnext;
	v->ns.ninodes--;
	ns_remove(v, in);
	em_free(&in->map);
	pthread_rwlock_destroy(&in->map_lock);
	rl_free(in->rl);
	tail_free(in);
	free(in);
}

void vol_free_inodes(struct dio_vol *v)
{
	for (size_t i = 0; i < v->ns.ihash_size; i++) {
		for (struct dio_inode *in = v->ns.ihash[i], *nx; in; in = nx) {
			nx = in->hnext;
			free(in->name);
			em_free(&in->map);
			pthread_rwlock_destroy(&in->map_lock);
			rl_free(in->rl);
			tail_free(in);
			free(in);
		}
	}
	free(v->ns.ihash);
	free(v->ns.names);
	v->ns.ihash = NULL;
	v->ns.names = NULL;
	v->ns.ihash_size = v->ns.nnames = v->ns.names_cap = v->ns.ninodes = 0;
}

/* ---- handles ---------------------------------------------------------- */

/* The last reference to a handle is gone (file_put): it closes. */
void file_close_last(struct dio_file *f)
{
	struct dio_vol *v = f->vol;
	struct dio_inode *in = f->ino;
	pthread_mutex_lock(&v->md_lock);
	in->nopen--;
	v->ns.nopen_total--;
	if (!in->nopen && !in->name) {
		/* last handle of an unlinked file: its blocks go now */
		ino_free_blocks(v, in);
		ino_destroy(v, in);
	}
	md_unlock(v);
	free(f);
}
