/*
 * kvlog: a small but real key-value store on libdio, the pattern of
 * Bitcask and of every write-ahead log.
 *
 *   kvlog [-s SIZE] VOLUME put KEY VALUE | get KEY | del KEY | dump |
 *                          compact | stats | load N [-t THREADS] [--ack]
 *
 * - One append-only log file, "kvlog.log".  A record is
 *     u32 magic, u32 crc32c, u32 klen, u32 vlen (0xffffffff: deleted),
 *     u64 seq, key, value, zero padding to 8 bytes;
 *   the crc covers the record with the crc field zero.
 * - Writers never touch the device.  They append their record to the
 *   pending batch and sleep; one committer thread takes the whole batch,
 *   writes it with the log's partial last block in front (one aligned
 *   write from a block boundary: zero copy) and an fdatasync after it,
 *   both through one dio_queue, then wakes every writer of the batch:
 *   group commit, one fdatasync per batch however many writers.  A put
 *   returns only once its record is durable.
 * - The index (key -> where its value is) lives in memory and is rebuilt
 *   at open by scanning the log; the scan stops at the first record whose
 *   magic, length, crc or sequence is wrong (a torn tail: a batch the
 *   crash cut short was never acknowledged), and the file is truncated
 *   there so that nothing after it can ever be taken for a record.
 * - compact writes the live records to "kvlog.log.compact", fdatasyncs
 *   it, renames it over the log and syncs the rename (dio_syncfs).
 *
 * The volume is made if missing (dio_mount -> ENOENT -> dio_mkfs).
 */
#include <dio/dio.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG_NAME "kvlog.log"
#define COMPACT_NAME "kvlog.log.compact"
#define MAGIC 0x3152564bu   /* "KVR1" */
#define HDR 24u
#define TOMB 0xffffffffu
#define MAX_KEY 1024u
#define MAX_VAL (1u << 20)

/* ---- records --------------------------------------------------------------- */

static uint32_t crc_tab[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_tab[i] = c;
	}
}

static uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--)
		crc = crc_tab[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static size_t rec_len(uint32_t klen, uint32_t vlen)
{
	return (HDR + klen + (vlen == TOMB ? 0 : vlen) + 7) & ~(size_t)7;
}

/* Encode at p (rec_len bytes, zeroed by the caller). */
static void rec_encode(uint8_t *p, uint64_t seq, const char *k, uint32_t kl, const char *v, uint32_t vl)
{
	put32(p, MAGIC);
	put32(p + 8, kl);
	put32(p + 12, vl);
	put64(p + 16, seq);
	memcpy(p + HDR, k, kl);
	if (vl != TOMB)
		memcpy(p + HDR + kl, v, vl);
	put32(p + 4, crc32c(0, p, rec_len(kl, vl)));
}

/* Length of the sound record at p with sequence seq, or 0. */
static size_t rec_check(uint8_t *p, size_t avail, uint64_t seq)
{
	if (avail < HDR || get32(p) != MAGIC || get64(p + 16) != seq)
		return 0;
	uint32_t kl = get32(p + 8), vl = get32(p + 12);
	if (kl == 0 || kl > MAX_KEY || (vl != TOMB && vl > MAX_VAL))
		return 0;
	size_t n = rec_len(kl, vl);
	if (n > avail)
		return 0;
	uint32_t want = get32(p + 4);
	put32(p + 4, 0);
	uint32_t got = crc32c(0, p, n);
	put32(p + 4, want);
	return got == want ? n : 0;
}

/* ---- the index: key -> value's place in the log ---------------------------------- */

struct ent {
	struct ent *next;
	uint64_t off;               /* of the value */
	uint32_t vlen, klen;
	char key[];
};

struct index {
	struct ent **tab;
	size_t cap, n;
	uint64_t live;              /* bytes of live records */
};

static uint64_t hash(const char *k, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	while (n--)
		h = (h ^ (uint8_t)*k++) * 0x100000001b3ull;
	return h;
}

static struct ent **idx_find(struct index *x, const char *k, size_t n)
{
	struct ent **pp = &x->tab[hash(k, n) & (x->cap - 1)];
	while (*pp && ((*pp)->klen != n || memcmp((*pp)->key, k, n)))
		pp = &(*pp)->next;
	return pp;
}

static void idx_grow(struct index *x)
{
	size_t cap = x->cap ? x->cap * 2 : 1024;
	struct ent **t = calloc(cap, sizeof(*t));
	if (!t)
		abort();
	for (size_t i = 0; i < x->cap; i++)
		for (struct ent *e = x->tab[i], *nx; e; e = nx) {
			nx = e->next;
			struct ent **h = &t[hash(e->key, e->klen) & (cap - 1)];
			e->next = *h;
			*h = e;
		}
	free(x->tab);
	x->tab = t;
	x->cap = cap;
}

/* The record at off (key k, value vlen or TOMB) is now the key's latest. */
static void idx_apply(struct index *x, const char *k, uint32_t kl, uint32_t vl, uint64_t off)
{
	if (x->n >= x->cap * 3 / 4)
		idx_grow(x);
	struct ent **pp = idx_find(x, k, kl), *e = *pp;
	if (e) {
		x->live -= rec_len(e->klen, e->vlen);
		if (vl == TOMB) {
			*pp = e->next;
			free(e);
			x->n--;
			return;
		}
	} else if (vl == TOMB) {
		return;
	} else {
		e = malloc(sizeof(*e) + kl);
		if (!e)
			abort();
		memcpy(e->key, k, kl);
		e->klen = kl;
		e->next = NULL;
		*pp = e;
		x->n++;
	}
	e->off = off + HDR + kl;
	e->vlen = vl;
	x->live += rec_len(kl, vl);
}

/* ---- the store ------------------------------------------------------------------ */

struct kv {
	struct dio_vol *vol;
	struct dio_file *log;
	struct dio_queue *q;        /* the committer's */
	uint32_t bs, align;
	uint64_t end;               /* bytes of sound records in the log */
	uint64_t seq;               /* of the next record */
	struct index idx;
	/* group commit, under mu */
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	uint8_t *pend;              /* encoded records not yet handed to the committer */
	size_t plen, pcap;
	uint64_t filling, durable;  /* batch numbers */
	int err;                    /* sticky: a failed commit fails every later put */
	bool stop;
	pthread_t committer;
	uint8_t *io;                /* aligned: the log's partial last block + a batch */
	size_t iocap;
	uint64_t commits, puts;
};

static int io_reserve(struct kv *s, size_t n)
{
	if (n <= s->iocap)
		return 0;
	size_t cap = s->iocap ? s->iocap : 1 << 20;
	while (cap < n)
		cap *= 2;
	uint8_t *p;
	if (posix_memalign((void **)&p, s->align, cap))
		return -ENOMEM;
	if (s->io)
		memcpy(p, s->io, s->iocap);
	free(s->io);
	s->io = p;
	s->iocap = cap;
	return 0;
}

/* Call fn for each sound record of file f from offset 0, with the
   record and its offset; returns the end of the last sound record and
   the next sequence number. */
static uint64_t scan(struct dio_file *f, uint32_t align, uint64_t *seq,
		     void (*fn)(void *, uint8_t *, uint64_t), void *arg)
{
	struct dio_stat st;
	dio_fstat(f, &st);
	size_t size = (size_t)st.size, cap = (size + align - 1) / align * align;
	uint8_t *img;
	if (posix_memalign((void **)&img, align, cap ? cap : align))
		abort();
	if (size && dio_pread(f, img, cap, 0) != (ssize_t)size)
		abort();
	uint64_t pos = 0;
	*seq = 1;
	size_t n;
	while ((n = rec_check(img + pos, size - pos, *seq))) {
		fn(arg, img + pos, pos);
		pos += n;
		(*seq)++;
	}
	free(img);
	return pos;
}

static void index_rec(void *arg, uint8_t *r, uint64_t off)
{
	struct kv *s = arg;
	idx_apply(&s->idx, (const char *)r + HDR, get32(r + 8), get32(r + 12), off);
}

/*
 * Write one batch: from the block boundary at or before the log's end,
 * the bytes of that partial block (already on the device) then the
 * batch, padded with zeros to a block boundary.  One aligned write and
 * one fdatasync, through the queue.
 */
static int commit_batch(struct kv *s, const uint8_t *batch, size_t len)
{
	uint64_t start = s->end / s->bs * s->bs;
	size_t head = (size_t)(s->end - start);
	size_t total = (head + len + s->bs - 1) / s->bs * s->bs;
	if (io_reserve(s, total))
		return -ENOMEM;
	/* io holds the partial block from the last commit (or the scan) */
	memcpy(s->io + head, batch, len);
	memset(s->io + head + len, 0, total - head - len);
	struct dio_req rq[2] = {
		{ .op = DIO_OP_WRITE, .file = s->log, .buf = s->io, .len = total, .offset = (off_t)start, .user_data = 0 },
		{ .op = DIO_OP_FDATASYNC, .file = s->log, .user_data = 1 },
	};
	if (dio_submit(s->q, rq, 2) != 2)
		return -errno;
	struct dio_cqe c[2];
	int got = 0, err = 0;
	while (got < 2) {
		int n = dio_reap(s->q, c + got, 1, (unsigned)(2 - got), -1);
		if (n < 0)
			return -errno;
		got += n;
	}
	for (int i = 0; i < 2; i++)
		if (c[i].res < 0 && !err)
			err = (int)c[i].res;
	if (!err && c[c[0].user_data == 0 ? 0 : 1].res != (ssize_t)total)
		err = -EIO;
	if (err)
		return err;
	/* keep the new partial last block at the front of io */
	uint64_t nend = s->end + len, nstart = nend / s->bs * s->bs;
	memmove(s->io, s->io + (nstart - start), (size_t)(nend - nstart));
	s->end = nend;
	return 0;
}

static void *committer(void *arg)
{
	struct kv *s = arg;
	uint8_t *batch = NULL;
	size_t bcap = 0;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->plen && !s->stop)
			pthread_cond_wait(&s->work, &s->mu);
		if (!s->plen)
			break;
		/* take the whole pending batch; writers fill a fresh one */
		uint8_t *tmp = batch;
		size_t len = s->plen, tcap = bcap, base = s->end;
		batch = s->pend;
		bcap = s->pcap;
		s->pend = tmp;
		s->pcap = tcap;
		s->plen = 0;
		uint64_t no = s->filling++;
		int err = s->err;
		pthread_mutex_unlock(&s->mu);
		if (!err)
			err = commit_batch(s, batch, len);
		pthread_mutex_lock(&s->mu);
		if (err) {
			s->err = err;
		} else {
			for (size_t p = 0; p < len; p += rec_len(get32(batch + p + 8), get32(batch + p + 12)))
				index_rec(s, batch + p, base + p);
			s->commits++;
		}
		s->durable = no;
		pthread_cond_broadcast(&s->done);
	}
	pthread_mutex_unlock(&s->mu);
	free(batch);
	return NULL;
}

/* Append a record and wait until it is durable: 0 or -errno. */
static int kv_write(struct kv *s, const char *k, uint32_t kl, const char *v, uint32_t vl)
{
	if (!kl || kl > MAX_KEY || (vl != TOMB && vl > MAX_VAL))
		return -EINVAL;
	size_t n = rec_len(kl, vl);
	pthread_mutex_lock(&s->mu);
	if (s->plen + n > s->pcap) {
		size_t cap = s->pcap ? s->pcap : 1 << 16;
		while (cap < s->plen + n)
			cap *= 2;
		uint8_t *p = realloc(s->pend, cap);
		if (!p) {
			pthread_mutex_unlock(&s->mu);
			return -ENOMEM;
		}
		s->pend = p;
		s->pcap = cap;
	}
	memset(s->pend + s->plen, 0, n);
	rec_encode(s->pend + s->plen, s->seq++, k, kl, v, vl);
	s->plen += n;
	uint64_t mine = s->filling;
	s->puts++;
	pthread_cond_signal(&s->work);
	while (s->durable < mine)
		pthread_cond_wait(&s->done, &s->mu);
	int e = s->err;
	pthread_mutex_unlock(&s->mu);
	return e;
}

static struct dio_vol *mount_or_make(const char *path, uint64_t size)
{
	struct dio_vol *v = dio_mount(path, NULL);
	if (!v && errno == ENOENT) {
		struct dio_mkfs_opts mk = { .size = size };
		if (dio_mkfs(path, &mk) == 0)
			v = dio_mount(path, NULL);
	}
	return v;
}

static int kv_open(struct kv *s, const char *path, uint64_t size)
{
	memset(s, 0, sizeof(*s));
	crc_init();
	if (!(s->vol = mount_or_make(path, size)) || !(s->log = dio_open(s->vol, LOG_NAME, O_RDWR | O_CREAT)))
		return -errno;
	struct dio_info info;
	dio_info(s->log, &info);
	s->bs = info.block_size;
	s->align = info.mem_align < 4096 ? 4096 : info.mem_align;
	s->end = scan(s->log, s->align, &s->seq, index_rec, s);
	/* a torn tail or the last batch's padding: cut it off, so that no
	   stale byte past the end can ever pass for a record */
	struct dio_stat st;
	dio_fstat(s->log, &st);
	if (st.size > s->end && (dio_ftruncate(s->log, (off_t)s->end) || dio_fdatasync(s->log)))
		return -errno;
	if (io_reserve(s, 1 << 20))
		return -ENOMEM;
	uint64_t start = s->end / s->bs * s->bs;
	if (s->end > start && dio_pread(s->log, s->io, s->bs, (off_t)start) != (ssize_t)(s->end - start))
		return -EIO;
	if (!(s->q = dio_queue_create(s->vol, 4)))
		return -errno;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->work, NULL);
	pthread_cond_init(&s->done, NULL);
	s->filling = 1;
	s->durable = 0;
	return pthread_create(&s->committer, NULL, committer, s) ? -EAGAIN : 0;
}

static int kv_close(struct kv *s)
{
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_signal(&s->work);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->committer, NULL);
	dio_queue_destroy(s->q);
	dio_close(s->log);
	for (size_t i = 0; i < s->idx.cap; i++)
		for (struct ent *e = s->idx.tab[i], *nx; e; e = nx) {
			nx = e->next;
			free(e);
		}
	free(s->idx.tab);
	free(s->pend);
	free(s->io);
	return dio_umount(s->vol) ? -errno : s->err;
}

/* The value of k into a malloc'd buffer: its length, or -ENOENT. */
static long kv_get(struct kv *s, const char *k, char **out)
{
	pthread_mutex_lock(&s->mu);
	struct ent *e = *idx_find(&s->idx, k, strlen(k));
	uint64_t off = e ? e->off : 0;
	uint32_t n = e ? e->vlen : 0;
	pthread_mutex_unlock(&s->mu);
	if (!e)
		return -ENOENT;
	*out = malloc(n + 1);
	if (!*out || dio_pread(s->log, *out, n, (off_t)off) != (ssize_t)n)
		return -EIO;
	(*out)[n] = 0;
	return (long)n;
}

/* ---- compaction ------------------------------------------------------------------- */

struct compact {
	struct kv *s;
	uint8_t *img;
	size_t len, cap;
	uint64_t seq;
};

static void keep_live(void *arg, uint8_t *r, uint64_t off)
{
	struct compact *c = arg;
	uint32_t kl = get32(r + 8), vl = get32(r + 12);
	struct ent *e = vl == TOMB ? NULL : *idx_find(&c->s->idx, (const char *)r + HDR, kl);
	if (!e || e->off != off + HDR + kl)
		return;   /* overwritten or deleted later */
	size_t n = rec_len(kl, vl);
	memset(c->img + c->len, 0, n);
	rec_encode(c->img + c->len, c->seq++, (const char *)r + HDR, kl, (const char *)r + HDR + kl, vl);
	c->len += n;
}

static int kv_compact(struct kv *s, const char *path, uint64_t size)
{
	struct compact c = { s, NULL, 0, 0, 1 };
	c.cap = (size_t)((s->idx.live + s->bs) / s->bs * s->bs);
	if (posix_memalign((void **)&c.img, s->align, c.cap))
		return -ENOMEM;
	uint64_t seq;
	scan(s->log, s->align, &seq, keep_live, &c);
	size_t total = (c.len + s->bs - 1) / s->bs * s->bs;
	memset(c.img + c.len, 0, total - c.len);
	struct dio_file *nf = dio_open(s->vol, COMPACT_NAME, O_RDWR | O_CREAT | O_TRUNC);
	int e = nf ? 0 : -errno;
	if (!e && total && dio_pwrite(nf, c.img, total, 0) != (ssize_t)total)
		e = -errno;
	if (!e && (dio_ftruncate(nf, (off_t)c.len) || dio_fdatasync(nf)))
		e = -errno;
	if (nf)
		dio_close(nf);
	free(c.img);
	if (!e && dio_rename(s->vol, COMPACT_NAME, LOG_NAME))
		e = -errno;
	if (!e && dio_syncfs(s->vol))   /* the rename is durable */
		e = -errno;
	int ce = kv_close(s);
	if (e || ce)
		return e ? e : ce;
	return kv_open(s, path, size);   /* re-read the new log */
}

/* ---- load: many writers, group commit --------------------------------------------------- */

struct loader {
	struct kv *s;
	unsigned id, nthreads;
	long n;
	bool ack;
	int err;
};

static void load_value(long i, char *v, size_t cap)
{
	snprintf(v, cap, "value-%ld-%08lx-padding-to-make-a-record-of-about-a-hundred-bytes", i,
		 (unsigned long)(hash((const char *)&i, sizeof(i)) & 0xffffffffu));
}

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void *load_thread(void *arg)
{
	struct loader *l = arg;
	char k[32], v[128];
	for (long i = l->id; i < l->n && !l->err; i += l->nthreads) {
		snprintf(k, sizeof(k), "key%ld", i);
		load_value(i, v, sizeof(v));
		l->err = kv_write(l->s, k, (uint32_t)strlen(k), v, (uint32_t)strlen(v));
		if (!l->err && l->ack) {
			/* acknowledged: durable now; the kill tests hold us to it */
			pthread_mutex_lock(&out_lock);
			printf("%s\t%s\n", k, v);
			fflush(stdout);
			pthread_mutex_unlock(&out_lock);
		}
	}
	return NULL;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int load(struct kv *s, long n, unsigned threads, bool ack)
{
	struct loader *l = calloc(threads, sizeof(*l));
	pthread_t *th = calloc(threads, sizeof(*th));
	uint64_t c0 = s->commits;
	double t0 = now();
	for (unsigned i = 0; i < threads; i++) {
		l[i] = (struct loader){ s, i, threads, n, ack, 0 };
		pthread_create(&th[i], NULL, load_thread, &l[i]);
	}
	int err = 0;
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		if (l[i].err)
			err = l[i].err;
	}
	double t = now() - t0;
	uint64_t commits = s->commits - c0;
	if (!ack)
		printf("%ld puts by %u threads in %.2f s: %.0f puts/s, %llu commits (%.1f puts each)\n", n, threads, t,
		       (double)n / t, (unsigned long long)commits, commits ? (double)n / (double)commits : 0.0);
	free(l);
	free(th);
	return err;
}

/* ---- command line ------------------------------------------------------------------- */

static void dump_rec(void *arg, uint8_t *r, uint64_t off)
{
	struct kv *s = arg;
	uint32_t kl = get32(r + 8), vl = get32(r + 12);
	struct ent *e = vl == TOMB ? NULL : *idx_find(&s->idx, (const char *)r + HDR, kl);
	if (e && e->off == off + HDR + kl)
		printf("%.*s\t%.*s\n", (int)kl, (const char *)r + HDR, (int)vl, (const char *)r + HDR + kl);
}

static int usage(void)
{
	fprintf(stderr, "usage: kvlog [-s SIZE_MIB] VOLUME put KEY VALUE | get KEY | del KEY | dump | compact |\n"
			"                              stats | load N [-t THREADS] [--ack]\n");
	return 2;
}

int main(int argc, char **argv)
{
	uint64_t size = 256ull << 20;
	int i = 1;
	if (i + 1 < argc && !strcmp(argv[i], "-s")) {
		size = strtoull(argv[i + 1], NULL, 10) << 20;
		i += 2;
	}
	if (argc - i < 2)
		return usage();
	const char *path = argv[i], *cmd = argv[i + 1];
	char **arg = argv + i + 2;
	int nargs = argc - i - 2;
	struct kv s;
	int e = kv_open(&s, path, size);
	if (e) {
		fprintf(stderr, "kvlog: %s: %s\n", path, strerror(-e));
		return 1;
	}
	int rc = 0;
	if (!strcmp(cmd, "put") && nargs == 2) {
		e = kv_write(&s, arg[0], (uint32_t)strlen(arg[0]), arg[1], (uint32_t)strlen(arg[1]));
	} else if (!strcmp(cmd, "del") && nargs == 1) {
		e = kv_write(&s, arg[0], (uint32_t)strlen(arg[0]), NULL, TOMB);
	} else if (!strcmp(cmd, "get") && nargs == 1) {
		char *v = NULL;
		long n = kv_get(&s, arg[0], &v);
		if (n >= 0)
			printf("%s\n", v);
		else
			e = (int)n;
		free(v);
	} else if (!strcmp(cmd, "dump") && !nargs) {
		uint64_t seq;
		scan(s.log, s.align, &seq, dump_rec, &s);
	} else if (!strcmp(cmd, "stats") && !nargs) {
		struct dio_stat st;
		dio_fstat(s.log, &st);
		printf("keys %zu records %llu log_bytes %llu live_bytes %llu file_size %llu\n", s.idx.n,
		       (unsigned long long)(s.seq - 1), (unsigned long long)s.end, (unsigned long long)s.idx.live,
		       (unsigned long long)st.size);
	} else if (!strcmp(cmd, "compact") && !nargs) {
		e = kv_compact(&s, path, size);
	} else if (!strcmp(cmd, "load") && nargs >= 1) {
		unsigned threads = 4;
		bool ack = false;
		for (int k = 1; k < nargs; k++) {
			if (!strcmp(arg[k], "-t") && k + 1 < nargs)
				threads = (unsigned)atoi(arg[++k]);
			else if (!strcmp(arg[k], "--ack"))
				ack = true;
			else
				rc = 2;
		}
		if (!rc && threads)
			e = load(&s, atol(arg[0]), threads, ack);
	} else {
		rc = 2;
	}
	int ce = kv_close(&s);
	if (rc == 2)
		return usage();
	if (e || ce) {
		fprintf(stderr, "kvlog: %s: %s: %s\n", path, cmd, strerror(-(e ? e : ce)));
		return e == -ENOENT ? 3 : 1;
	}
	return 0;
}
