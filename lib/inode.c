/*
 * The namespace (an AVL tree of names, so dio_list walks in order and a
 * create, lookup or unlink costs O(log n)), the inode table (a hash by file id), the
 * bad-block list, and handles' reference counts: the in-memory tables at
 * the bottom of the metadata layer, all under md_lock.  Nothing here
 * writes the journal; replay and checkpoint loading fill these tables too.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

/* ---- namespace -------------------------------------------------------- */

/*
 * An AVL tree of the named inodes, ordered by name bytes, its links in
 * the inodes themselves: a create, unlink or rename costs O(log n)
 * compares and no allocation but the name's copy (a sorted array's
 * memmove cost 45 us a create at 400,000 files), and a walk in order is
 * a stack of at most NS_DEPTH nodes.
 */

static int name_cmp(const char *a, size_t la, const char *b, size_t lb)
{
	int c = memcmp(a, b, MIN(la, lb));
	return c ? c : (la < lb ? -1 : la > lb);
}

static int ht(const struct dio_inode *n) { return n ? n->ns_height : 0; }

static void refit(struct dio_inode *n)
{
	n->ns_height = 1 + MAX(ht(n->ns_left), ht(n->ns_right));
}

static struct dio_inode *rot_right(struct dio_inode *n)
{
	struct dio_inode *l = n->ns_left;
	n->ns_left = l->ns_right;
	l->ns_right = n;
	refit(n);
	refit(l);
	return l;
}

static struct dio_inode *rot_left(struct dio_inode *n)
{
	struct dio_inode *r = n->ns_right;
	n->ns_right = r->ns_left;
	r->ns_left = n;
	refit(n);
	refit(r);
	return r;
}

/* n's subtrees differ in height by at most 2: n's subtree balanced again */
static struct dio_inode *rebalance(struct dio_inode *n)
{
	refit(n);
	int b = ht(n->ns_left) - ht(n->ns_right);
	if (b > 1) {
		if (ht(n->ns_left->ns_left) < ht(n->ns_left->ns_right))
			n->ns_left = rot_left(n->ns_left);
		return rot_right(n);
	}
	if (b < -1) {
		if (ht(n->ns_right->ns_right) < ht(n->ns_right->ns_left))
			n->ns_right = rot_right(n->ns_right);
		return rot_left(n);
	}
	return n;
}

static struct dio_inode *avl_insert(struct dio_inode *t, struct dio_inode *in)
{
	if (!t) {
		in->ns_left = in->ns_right = NULL;
		in->ns_height = 1;
		return in;
	}
	if (name_cmp(in->name, in->namelen, t->name, t->namelen) < 0)
		t->ns_left = avl_insert(t->ns_left, in);
	else
		t->ns_right = avl_insert(t->ns_right, in);
	return rebalance(t);
}

static struct dio_inode *avl_pop_min(struct dio_inode *t, struct dio_inode **min)
{
	if (!t->ns_left) {
		*min = t;
		return t->ns_right;
	}
	t->ns_left = avl_pop_min(t->ns_left, min);
	return rebalance(t);
}

/* in (in the tree, its name still set) taken out of t */
static struct dio_inode *avl_remove(struct dio_inode *t, struct dio_inode *in)
{
	if (t == in) {
		if (!t->ns_left || !t->ns_right)
			return t->ns_left ? t->ns_left : t->ns_right;
		struct dio_inode *m, *r = avl_pop_min(t->ns_right, &m);
		m->ns_left = t->ns_left;
		m->ns_right = r;
		return rebalance(m);
	}
	if (name_cmp(in->name, in->namelen, t->name, t->namelen) < 0)
		t->ns_left = avl_remove(t->ns_left, in);
	else
		t->ns_right = avl_remove(t->ns_right, in);
	return rebalance(t);
}

/* The inode named (name, len), or NULL. */
struct dio_inode *ns_lookup(struct dio_vol *v, const char *name, size_t len)
{
	for (struct dio_inode *t = v->ns.root; t;) {
		int c = name_cmp(t->name, t->namelen, name, len);
		if (!c)
			return t;
		t = c > 0 ? t->ns_left : t->ns_right;
	}
	return NULL;
}

/* The first inode whose name is at or (after) past key, or NULL. */
struct dio_inode *ns_seek(struct dio_vol *v, const char *key, size_t len, bool after)
{
	struct dio_inode *best = NULL;
	for (struct dio_inode *t = v->ns.root; t;) {
		int c = name_cmp(t->name, t->namelen, key, len);
		if (c > 0 || (!c && !after)) {
			best = t;
			if (!c)
				break;
			t = t->ns_left;
		} else {
			t = t->ns_right;
		}
	}
	return best;
}

static void iter_push_left(struct ns_iter *it, struct dio_inode *t)
{
	for (; t; t = t->ns_left) {
		DIO_ASSERT(it->n < NS_DEPTH);
		it->stack[it->n++] = t;
	}
}

void ns_iter_start(struct dio_vol *v, struct ns_iter *it)
{
	it->n = 0;
	iter_push_left(it, v->ns.root);
}

/* The next inode in name order, or NULL; the tree must not change. */
struct dio_inode *ns_iter_next(struct ns_iter *it)
{
	if (!it->n)
		return NULL;
	struct dio_inode *t = it->stack[--it->n];
	iter_push_left(it, t->ns_right);
	return t;
}

/* The memory one more name needs, before anything changes: *copy, the
   name's own copy for ns_insert_reserved (free it if it is not used).
   0 or -ENOMEM. */
int ns_reserve(struct dio_vol *v, const char *name, size_t len, char **copy)
{
	DIO_MD_HELD(v);
	(void)v;   /* the tree's links are in the inode: nothing to grow */
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
	DIO_ASSERT(!ns_lookup(v, copy, len));
	in->name = copy;
	in->namelen = len;
	v->ns.root = avl_insert(v->ns.root, in);
	v->ns.nnames++;
	v->ns.name_bytes += len;
	v->md_bytes += md_inode_bytes(len);
}

int ns_insert(struct dio_vol *v, struct dio_inode *in, const char *name, size_t len)
{
	DIO_MD_HELD(v);
	if (ns_lookup(v, name, len))
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
	if (!in->name || ns_lookup(v, in->name, in->namelen) != in)
		return;
	v->ns.root = avl_remove(v->ns.root, in);
	in->ns_left = in->ns_right = NULL;
	v->ns.nnames--;
	v->ns.name_bytes -= in->namelen;
	v->md_bytes -= md_inode_bytes(in->namelen);
	free(in->name);
	in->name = NULL;
	in->namelen = 0;
}

/* A checkpoint's names come in order: ns_load_add appends each (one that
   does not sort after the last is damage), ns_load_end makes the tree
   from them, balanced, in one pass: a mount of a million names does no
   compare but one per name. */
int ns_load_add(struct dio_vol *v, struct ns_loader *L, struct dio_inode *in, const char *name, size_t len)
{
	if (L->n) {
		const struct dio_inode *last = L->a[L->n - 1];
		if (name_cmp(last->name, last->namelen, name, len) >= 0)
			return -EUCLEAN;
	}
	if (L->n == L->cap) {
		size_t cap = L->cap ? L->cap * 2 : 256;
		struct dio_inode **a = dio_realloc(L->a, cap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		L->a = a;
		L->cap = cap;
	}
	char *copy;
	int e = ns_reserve(v, name, len, &copy);
	if (e)
		return e;
	in->name = copy;
	in->namelen = len;
	L->a[L->n++] = in;
	return 0;
}

static struct dio_inode *build(struct dio_inode **a, size_t n)
{
	if (!n)
		return NULL;
	size_t mid = n / 2;
	struct dio_inode *t = a[mid];
	t->ns_left = build(a, mid);
	t->ns_right = build(a + mid + 1, n - mid - 1);
	refit(t);
	return t;
}

/* ok: the load went through; else the names stay out of the tree (the
   inodes, and their names, go with the volume's teardown) */
void ns_load_end(struct dio_vol *v, struct ns_loader *L, bool ok)
{
	DIO_ASSERT(!ok || !v->ns.root);
	if (ok) {
		v->ns.root = build(L->a, L->n);
		v->ns.nnames = L->n;
		for (size_t i = 0; i < L->n; i++) {
			v->ns.name_bytes += L->a[i]->namelen;
			v->md_bytes += md_inode_bytes(L->a[i]->namelen);
		}
	}
	free(L->a);
	*L = (struct ns_loader){ 0 };
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

void ino_set_mtime(struct dio_inode *in, int64_t t, bool logged)
{
	atomic_store_explicit(&in->mtime, t, memory_order_relaxed);
	if (!logged && !atomic_load_explicit(&in->mtime_dirty, memory_order_relaxed))
		atomic_store_explicit(&in->mtime_dirty, true, memory_order_relaxed);
}

/* Room for n inodes in all: a checkpoint load sizes the table once
   instead of growing it (and moving every inode) twenty times. */
int ino_reserve(struct dio_vol *v, uint64_t n)
{
	while (n > v->ns.ihash_size / 2)
		if (ihash_grow(v) < 0)
			return -ENOMEM;
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
	v->ns.ihash = NULL;
	v->ns.root = NULL;
	v->ns.ihash_size = v->ns.nnames = v->ns.ninodes = 0;
	v->ns.name_bytes = 0;
}

/* ---- handles ---------------------------------------------------------- */

/* The last reference to a handle is gone (file_put): it closes. */
void file_close_last(struct dio_file *f)
{
	struct dio_vol *v = f->vol;
	struct dio_inode *in = f->ino;
	struct dio_rangelock *rl = NULL;
	pthread_mutex_lock(&v->md_lock);
	in->nopen--;
	v->ns.nopen_total--;
	if (!in->nopen && !in->name) {
		/* last handle of an unlinked file: its blocks go now */
		ino_free_blocks(v, in);
		ino_destroy(v, in);
	} else if (!in->nopen) {
		/* only handles lock ranges: a closed file keeps no lock
		   table (a million files opened once kept 2 KB each) */
		rl = in->rl;
		in->rl = NULL;
	}
	md_unlock(v);
	rl_free(rl);
	free(f);
}
