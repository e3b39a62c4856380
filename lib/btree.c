/*
 * An in-core B+tree of extent records, after XFS's in-core extent tree
 * (xfs_iext_tree.c): every record lives in a leaf, leaves are linked both
 * ways for walking in order, inner nodes hold keys and child pointers.
 * One file's extent map, the bad-block list and free space (by block and
 * by size) are all such trees; what orders a tree is its kind:
 *
 *   BT_LBLK  by lblk        (file maps, the bad list keyed by block)
 *   BT_PBLK  by pblk        (free space by block number)
 *   BT_SIZE  by (len, pblk) (free space by size: best fit)
 *
 * Why these node sizes: a leaf holds 32 records of 24 bytes (768 bytes,
 * 12 cache lines, one binary search), an inner node 32 keys and children.
 * A million extents are four levels deep.  Records appended past the
 * last one (a checkpoint loaded in order, a file written in order) fill
 * their leaf before starting the next, so a loaded map costs about 25
 * bytes per extent; a leaf split elsewhere leaves two half-full leaves.
 *
 * The invariant of inner nodes: for i > 0 the key held for child i is <=
 * every key below child i and > every key below child i-1 (the key of
 * child 0 is never looked at: whatever is below child 1's key goes to
 * child 0).  Deleting leaves keys as they are, still lower bounds; so a
 * key may be lower than anything under its child, and a record's key
 * changes in place only while it stays strictly between two records of
 * its own leaf (bt_may_rekey): raised past its leaf's last record, it
 * could pass the next child's key and be routed to the wrong leaf;
 * lowered below its leaf's first, below its own child's key.
 *
 * Insertion allocates every node it may need before changing anything,
 * so it fails with -ENOMEM with the tree untouched.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

#define LEAF_MAX BT_LEAF_MAX
#define NODE_MAX 32u
#define MAX_HEIGHT 16

struct bt_key {
	uint64_t a, b;
};

struct bt_node {
	unsigned n;
	struct bt_key k[NODE_MAX];
	void *c[NODE_MAX];
};

static struct bt_key key_of(uint8_t kind, const struct dio_extent *x)
{
	switch (kind) {
	case BT_PBLK: return (struct bt_key){ x->pblk, 0 };
	case BT_SIZE: return (struct bt_key){ x->len, x->pblk };
	default: return (struct bt_key){ x->lblk, 0 };
	}
}

static int kcmp(struct bt_key x, struct bt_key y)
{
	if (x.a != y.a)
		return x.a < y.a ? -1 : 1;
	return x.b < y.b ? -1 : x.b > y.b;
}

void bt_init(struct dio_btree *t, uint8_t kind)
{
	memset(t, 0, sizeof(*t));
	t->kind = kind;
}

static void free_sub(void *p, unsigned level)
{
	if (level > 1) {
		struct bt_node *nd = p;
		for (unsigned i = 0; i < nd->n; i++)
			free_sub(nd->c[i], level - 1);
	}
	free(p);
}

void bt_destroy(struct dio_btree *t)
{
	if (t->root)
		free_sub(t->root, t->height);
	uint64_t frees = t->frees;
	bt_init(t, t->kind);
	t->frees = frees + 1;   /* leaves kept from before are gone */
}

/* Largest child whose key is <= k (0 if none).  A file map's keys have
   one field (b is 0), compared alone. */
static unsigned child_index(uint8_t kind, const struct bt_node *nd, struct bt_key k)
{
	unsigned lo = 1, hi = nd->n;   /* answer in [0, n) */
	if (kind == BT_LBLK) {
		while (lo < hi) {
			unsigned mid = (lo + hi) / 2;
			if (nd->k[mid].a <= k.a)
				lo = mid + 1;
			else
				hi = mid;
		}
		return lo - 1;
	}
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (kcmp(nd->k[mid], k) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo - 1;
}

/* First record of the leaf whose key is >= k (n if none).  File maps,
   the trees searched on every I/O, compare one field as child_index. */
static unsigned leaf_lower(uint8_t kind, const struct bt_leaf *l, struct bt_key k)
{
	unsigned lo = 0, hi = l->n;
	if (kind == BT_LBLK) {
		while (lo < hi) {
			unsigned mid = (lo + hi) / 2;
			if (l->r[mid].lblk < k.a)
				lo = mid + 1;
			else
				hi = mid;
		}
		return lo;
	}
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (kcmp(key_of(kind, &l->r[mid]), k) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Ask for every cache line of a node's keys at once.  The probes of a
   binary search each depend on the last, so in a cold node (a large map
   searched at random) they would wait for its lines one after another. */
static inline void prefetch_span(const void *p, size_t len)
{
#if defined(__GNUC__) || defined(__clang__)
	const char *c = p;
	for (size_t o = 0; o < len; o += 64)
		__builtin_prefetch(c + o);
#else
	(void)p, (void)len;
#endif
}

struct path {
	struct bt_node *nd[MAX_HEIGHT];
	unsigned i[MAX_HEIGHT];
	unsigned depth;            /* inner levels walked */
};

/* Walk from the root to the leaf where k belongs. */
static struct bt_leaf *descend(const struct dio_btree *t, struct bt_key k, struct path *p)
{
	void *node = t->root;
	p->depth = 0;
	for (unsigned lvl = t->height; lvl > 1; lvl--) {
		struct bt_node *nd = node;
		prefetch_span(nd->k, nd->n * sizeof(nd->k[0]));
		unsigned i = child_index(t->kind, nd, k);
		p->nd[p->depth] = nd;
		p->i[p->depth++] = i;
		node = nd->c[i];
	}
	struct bt_leaf *l = node;
	if (l)
		prefetch_span(l->r, l->n * sizeof(l->r[0]));
	return l;
}

bool bt_seek_ge(const struct dio_btree *t, const struct dio_extent *key, struct bt_cur *c)
{
	c->leaf = NULL;
	if (!t->root)
		return false;
	struct path p;
	struct bt_key k = key_of(t->kind, key);
	struct bt_leaf *l = descend(t, k, &p);
	unsigned i = leaf_lower(t->kind, l, k);
	if (i == l->n) {
		l = l->next;
		i = 0;
	}
	c->leaf = l;
	c->i = i;
	return l != NULL;
}

bool bt_seek_in_leaf(const struct dio_btree *t, struct bt_leaf *l, uint64_t frees, const struct dio_extent *key,
		     struct bt_cur *c)
{
	if (!l || frees != t->frees || !l->n)
		return false;
	c->leaf = l;
	c->i = leaf_lower(t->kind, l, key_of(t->kind, key));
	return true;
}

bool bt_first(const struct dio_btree *t, struct bt_cur *c)
{
	void *node = t->root;
	for (unsigned lvl = t->height; lvl > 1; lvl--)
		node = ((struct bt_node *)node)->c[0];
	c->leaf = node;
	c->i = 0;
	return node != NULL;
}

bool bt_last(const struct dio_btree *t, struct bt_cur *c)
{
	void *node = t->root;
	for (unsigned lvl = t->height; lvl > 1; lvl--) {
		struct bt_node *nd = node;
		node = nd->c[nd->n - 1];
	}
	c->leaf = node;
	c->i = node ? ((struct bt_leaf *)node)->n - 1 : 0;
	return node != NULL;
}

bool bt_next(struct bt_cur *c)
{
	if (!c->leaf)
		return false;
	if (++c->i < c->leaf->n)
		return true;
	c->leaf = c->leaf->next;
	c->i = 0;
	return c->leaf != NULL;
}

bool bt_prev(struct bt_cur *c)
{
	if (!c->leaf)
		return false;
	if (c->i > 0) {
		c->i--;
		return true;
	}
	c->leaf = c->leaf->prev;
	c->i = c->leaf ? c->leaf->n - 1 : 0;
	return c->leaf != NULL;
}

/* ---- insertion --------------------------------------------------------------- */

/* ---- nodes kept for inserts that must not fail ------------------------------ */

/*
 * A metadata call must change everything or nothing (contract rule 3),
 * and its inserts into a map happen once it has started changing things.
 * So nodes are kept aside: a call that may need more than the standing
 * reserve reserves them before its first change (bt_reserve, which can
 * fail: then the call fails having changed nothing), and an insert whose
 * own allocation fails takes one from here.  Process-wide, behind a
 * mutex taken only to fill the pool or when memory ran out.
 */
#define NODE_BYTES (sizeof(struct bt_leaf) > sizeof(struct bt_node) ? sizeof(struct bt_leaf) : sizeof(struct bt_node))
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static void *pool;                     /* kept nodes, each linked through its first word */
_Atomic unsigned bt_pool_n;            /* how many */
static unsigned pool_reserved;         /* promised beyond the standing reserve */

static void pool_push(void *p)
{
	memcpy(p, &pool, sizeof(pool));
	pool = p;
	atomic_store(&bt_pool_n, atomic_load(&bt_pool_n) + 1);
}

static void *pool_pop(void)
{
	void *p = pool;
	if (p) {
		memcpy(&pool, p, sizeof(pool));
		atomic_store(&bt_pool_n, atomic_load(&bt_pool_n) - 1);
	}
	return p;
}

int bt_reserve(unsigned n)
{
	if (!n && atomic_load_explicit(&bt_pool_n, memory_order_relaxed) >= BT_STANDING)
		return 0;   /* the usual call: nothing to do */
	pthread_mutex_lock(&pool_lock);
	unsigned want = BT_STANDING + pool_reserved + n;
	void *p = NULL;
	while (atomic_load(&bt_pool_n) < want && (p = dio_malloc(NODE_BYTES)))
		pool_push(p);
	int e = atomic_load(&bt_pool_n) < want ? -ENOMEM : 0;
	if (!e)
		pool_reserved += n;
	pthread_mutex_unlock(&pool_lock);
	return e;
}

/* The nodes a big call reserved go back to the allocator, down to the
   standing reserve and what others still hold. */
void bt_unreserve(unsigned n)
{
	if (!n)
		return;
	pthread_mutex_lock(&pool_lock);
	pool_reserved -= n;
	while (atomic_load(&bt_pool_n) > BT_STANDING + pool_reserved)
		free(pool_pop());
	pthread_mutex_unlock(&pool_lock);
}

/*
 * At most the nodes k inserts into t take.  Each insert splits at most
 * one node per level (height + 1, and a new root); and a split leaves two
 * leaves half full, so that k inserts split at most every full leaf they
 * reach once (fewer than n / 32 of them) and one leaf per 15 more, plus
 * the leaves appends start at the right edge (one per 31): with the inner
 * nodes above them (a fifth more) and a new root at each level.
 */
unsigned bt_insert_nodes(const struct dio_btree *t, size_t k)
{
	uint64_t each = (uint64_t)k * (t->height + 2);
	uint64_t leaves = MIN((uint64_t)t->n / 32, (uint64_t)k) + (uint64_t)k / 10 + 2;
	uint64_t all = MIN(each, leaves + leaves / 5 + t->height + 3);
	return all > UINT32_MAX / 2 ? UINT32_MAX / 2 : (unsigned)all;
}

/* A zeroed node of size bytes: the allocator's, else a kept one. */
static void *node_alloc(size_t size)
{
	void *p = dio_calloc(1, size);
	if (p || !atomic_load(&bt_pool_n))
		return p;
	pthread_mutex_lock(&pool_lock);
	p = pool_pop();
	if (p)
		memset(p, 0, size);
	pthread_mutex_unlock(&pool_lock);
	return p;
}

/* Put (k, child) at position at of nd (not full). */
static void node_put(struct bt_node *nd, unsigned at, struct bt_key k, void *child)
{
	memmove(&nd->k[at + 1], &nd->k[at], (nd->n - at) * sizeof(nd->k[0]));
	memmove(&nd->c[at + 1], &nd->c[at], (nd->n - at) * sizeof(nd->c[0]));
	nd->k[at] = k;
	nd->c[at] = child;
	nd->n++;
}

int bt_insert(struct dio_btree *t, const struct dio_extent *x)
{
	struct bt_key k = key_of(t->kind, x);
	if (!t->root) {
		struct bt_leaf *l = node_alloc(sizeof(*l));
		if (!l)
			return -ENOMEM;
		l->r[0] = *x;
		l->n = 1;
		t->root = l;
		t->height = 1;
		t->n = 1;
		return 0;
	}
	struct path p;
	struct bt_leaf *l = descend(t, k, &p);
	/* every node a split may need, before anything changes: one per
	   full level on the path, one more for a new root */
	unsigned need = l->n == LEAF_MAX;
	for (unsigned d = p.depth; need && d-- > 0;) {
		if (p.nd[d]->n < NODE_MAX)
			break;
		need++;
	}
	if (need == p.depth + 1 && need)
		need++;   /* every level is full: the root splits */
	void *spare[MAX_HEIGHT + 1];
	for (unsigned s = 0; s < need; s++) {
		spare[s] = node_alloc(s == 0 ? sizeof(struct bt_leaf) : sizeof(struct bt_node));
		if (!spare[s]) {
			while (s-- > 0)
				free(spare[s]);
			return -ENOMEM;
		}
	}
	/* is the path the tree's right edge from depth d down? */
	bool edge[MAX_HEIGHT];
	for (unsigned d = 0; d < p.depth; d++)
		edge[d] = p.i[d] + 1 == p.nd[d]->n && (d == 0 || edge[d - 1]);
	unsigned used = 0;
	unsigned pos = leaf_lower(t->kind, l, k);
	t->n++;
	if (l->n < LEAF_MAX) {
		memmove(&l->r[pos + 1], &l->r[pos], (l->n - pos) * sizeof(l->r[0]));
		l->r[pos] = *x;
		l->n++;
		return 0;
	}
	/* split the leaf: at the right edge start a new one (an append keeps
	   the leaves full), else share the records half and half */
	struct bt_leaf *r = spare[used++];
	if (pos == LEAF_MAX && !l->next) {
		r->r[0] = *x;
		r->n = 1;
	} else {
		unsigned keep = LEAF_MAX / 2;
		memcpy(r->r, &l->r[keep], (LEAF_MAX - keep) * sizeof(l->r[0]));
		r->n = LEAF_MAX - keep;
		l->n = keep;
		struct bt_leaf *into = pos <= keep ? l : r;
		unsigned at = pos <= keep ? pos : pos - keep;
		memmove(&into->r[at + 1], &into->r[at], (into->n - at) * sizeof(into->r[0]));
		into->r[at] = *x;
		into->n++;
	}
	r->next = l->next;
	r->prev = l;
	if (l->next)
		l->next->prev = r;
	l->next = r;
	/* hand (first key of the new right sibling, sibling) upwards */
	struct bt_key sep = key_of(t->kind, &r->r[0]);
	void *child = r;
	for (unsigned d = p.depth; d-- > 0;) {
		struct bt_node *nd = p.nd[d];
		unsigned at = p.i[d] + 1;
		if (nd->n < NODE_MAX) {
			node_put(nd, at, sep, child);
			return 0;
		}
		struct bt_node *rn = spare[used++];
		if (at == NODE_MAX && edge[d]) {
			/* appending at the tree's right edge: a fresh node */
			rn->k[0] = sep;
			rn->c[0] = child;
			rn->n = 1;
		} else {
			unsigned keep = NODE_MAX / 2;
			memcpy(rn->k, &nd->k[keep], (NODE_MAX - keep) * sizeof(nd->k[0]));
			memcpy(rn->c, &nd->c[keep], (NODE_MAX - keep) * sizeof(nd->c[0]));
			rn->n = NODE_MAX - keep;
			nd->n = keep;
			if (at <= keep)
				node_put(nd, at, sep, child);
			else
				node_put(rn, at - keep, sep, child);
		}
		sep = rn->k[0];
		child = rn;
	}
	/* the root split: a new root above the two halves */
	struct bt_node *root = spare[used++];
	root->k[0] = (struct bt_key){ 0, 0 };   /* never looked at */
	root->c[0] = t->root;
	root->k[1] = sep;
	root->c[1] = child;
	root->n = 2;
	t->root = root;
	t->height++;
	return 0;
}

/*
 * Insert x right after the record at c (x's key lies between that
 * record's and the next one's) and point c at it.  A conversion in the
 * middle of an extent inserts its new pieces where it already stands: in
 * a leaf with room, and not past its last record unless it is the tree's
 * last leaf (past it, the next leaf's key in its parent may be below x's
 * key), that is a move inside the leaf with no descent.  Else a full
 * insertion and a seek.  Fails as bt_insert does, changing nothing.
 */
int bt_insert_after(struct dio_btree *t, struct bt_cur *c, const struct dio_extent *x)
{
	struct bt_leaf *l = c->leaf;
	unsigned at = c->i + 1;
	if (l && l->n < LEAF_MAX && (at < l->n || !l->next)) {
		DIO_ASSERT(kcmp(key_of(t->kind, &l->r[c->i]), key_of(t->kind, x)) < 0);
		DIO_ASSERT(at == l->n || kcmp(key_of(t->kind, x), key_of(t->kind, &l->r[at])) < 0);
		memmove(&l->r[at + 1], &l->r[at], (l->n - at) * sizeof(l->r[0]));
		l->r[at] = *x;
		l->n++;
		t->n++;
		c->i = at;
		return 0;
	}
	int e = bt_insert(t, x);
	if (!e)
		bt_seek_ge(t, x, c);
	return e;
}

/* May the record at c take, in place, a new key that keeps it between its
   neighbours?  Inside its leaf, yes: the parents' keys stay bounds.  Not
   lower for a leaf's first record (its parent's key for the leaf may be
   above the new one), not higher for a leaf's last (the next leaf's key
   may be below it). */
bool bt_may_rekey(const struct bt_cur *c, bool raise)
{
	return raise ? c->i + 1 < c->leaf->n : c->i > 0;
}

/* ---- deletion ------------------------------------------------------------------ */

/* Remove child i of nd. */
static void node_drop(struct bt_node *nd, unsigned i)
{
	memmove(&nd->k[i], &nd->k[i + 1], (nd->n - i - 1) * sizeof(nd->k[0]));
	memmove(&nd->c[i], &nd->c[i + 1], (nd->n - i - 1) * sizeof(nd->c[0]));
	nd->n--;
}

static void unlink_leaf(struct bt_leaf *l)
{
	if (l->prev)
		l->prev->next = l->next;
	if (l->next)
		l->next->prev = l->prev;
}

/*
 * Child ci of nd (at depth d) lost something.  If it is empty it goes;
 * if it is under a quarter full and fits in a neighbour with it, the two
 * become one.  Either way nd loses a child, and the question moves up.
 */
static bool rebalance(struct path *p, unsigned d)
{
	bool freed = false;
	while (d-- > 0) {
		struct bt_node *nd = p->nd[d];
		unsigned ci = p->i[d];
		bool leaves = d + 1 == p->depth;   /* nd's children are leaves */
		void *c = nd->c[ci];
		unsigned cn = leaves ? ((struct bt_leaf *)c)->n : ((struct bt_node *)c)->n;
		unsigned cap = leaves ? LEAF_MAX : NODE_MAX;
		if (cn == 0) {
			if (leaves)
				unlink_leaf(c);
			free(c);
			freed = true;
			node_drop(nd, ci);
		} else if (cn < cap / 4) {
			/* merge the right one of a neighbouring pair into the left */
			unsigned li = ci + 1 < nd->n ? ci : ci > 0 ? ci - 1 : ci;
			if (li + 1 >= nd->n)
				return freed;
			void *a = nd->c[li], *b = nd->c[li + 1];
			if (leaves) {
				struct bt_leaf *la = a, *lb = b;
				if (la->n + lb->n > LEAF_MAX)
					return freed;
				memcpy(&la->r[la->n], lb->r, lb->n * sizeof(lb->r[0]));
				la->n += lb->n;
				unlink_leaf(lb);
			} else {
				struct bt_node *na = a, *nb = b;
				if (na->n + nb->n > NODE_MAX)
					return freed;
				memcpy(&na->k[na->n], nb->k, nb->n * sizeof(nb->k[0]));
				/* nb's first child is now routed by the key nd held
				   for nb: nb's own first key was never looked at */
				na->k[na->n] = nd->k[li + 1];
				memcpy(&na->c[na->n], nb->c, nb->n * sizeof(nb->c[0]));
				na->n += nb->n;
			}
			free(b);
			freed = true;
			node_drop(nd, li + 1);
		} else {
			return freed;
		}
	}
	return freed;
}

int bt_delete(struct dio_btree *t, const struct dio_extent *x)
{
	if (!t->root)
		return -ENOENT;
	struct bt_key k = key_of(t->kind, x);
	struct path p;
	struct bt_leaf *l = descend(t, k, &p);
	unsigned i = leaf_lower(t->kind, l, k);
	if (i == l->n || kcmp(key_of(t->kind, &l->r[i]), k))
		return -ENOENT;
	memmove(&l->r[i], &l->r[i + 1], (l->n - i - 1) * sizeof(l->r[0]));
	l->n--;
	t->n--;
	if (!p.depth) {
		if (!l->n) {
			free(l);
			t->frees++;
			t->root = NULL;
			t->height = 0;
		}
		return 0;
	}
	if (rebalance(&p, p.depth))
		t->frees++;
	/* a root with one child hands the tree to it */
	while (t->height > 1 && ((struct bt_node *)t->root)->n == 1) {
		struct bt_node *old = t->root;
		t->root = old->c[0];
		free(old);
		t->frees++;
		t->height--;
	}
	if (t->height > 1 && ((struct bt_node *)t->root)->n == 0) {
		free(t->root);
		t->frees++;
		t->root = NULL;
		t->height = 0;
	}
	return 0;
}

/*
 * Delete the record at c.  A leaf that stays a quarter full needs nothing
 * but the move inside it, which is all bt_delete would do there; else
 * bt_delete, which rebalances.  True: it was the move, so every cursor
 * before c (in its leaf or an earlier one) is still valid; c never is.
 */
bool bt_delete_at(struct dio_btree *t, struct bt_cur *c)
{
	struct bt_leaf *l = c->leaf;
	if (l->n > 1 && (t->height == 1 || l->n - 1 >= LEAF_MAX / 4)) {
		memmove(&l->r[c->i], &l->r[c->i + 1], (l->n - c->i - 1) * sizeof(l->r[0]));
		l->n--;
		t->n--;
		return true;
	}
	struct dio_extent x = l->r[c->i];
	bt_delete(t, &x);
	return false;
}
