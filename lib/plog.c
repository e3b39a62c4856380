/*
 * The process-death log: rule 8 of the contract, "every call that
 * returned survives kill -9 of the program that made it".
 *
 * A metadata call changes memory and appends a redo record to the
 * pending journal buffer; the record reaches the device at the next
 * commit.  A process killed before that loses the change although the
 * call returned -- an unlink, a rename, the size of an append.  Power
 * loss may take such changes (rule 3), the death of the process may not.
 *
 * So every record also goes, at no more cost than a memcpy, into a ring
 * in POSIX shared memory named after the volume: it survives the
 * process, not a reboot.  The next mount of the volume in the same boot
 * finds it and, after replaying the journal, applies the records the
 * journal does not hold (their sequence numbers follow its last one).
 * A reboot loses the ring with the volatile state it stood for: then the
 * journal alone decides, as for power loss.
 *
 * The ring is published at the end of each md_lock section (md_unlock),
 * and a metadata call makes all its records in one section: the last
 * record of a section carries PLOG_END, and a mount applies a call's
 * records together or none of them, as it does a journal transaction.
 * A call whose records do not fit leaves none of them in the ring (its
 * section's records are taken back); the ring is then "overflowed", and
 * while it is, every call commits before it returns (j_due), so that
 * what returned is on the device instead.  Records leave the ring once
 * on the device: after a journal write or a checkpoint (plog_trim).
 * Everything in the header is one aligned 64-bit word written with a
 * release store, so a process killed at any instruction leaves a ring
 * the next mount can read: start only moves forward over records the
 * device has, tail only after the records it covers are written.
 *
 * A ring belongs to one state of the volume: the superblock generation
 * and checkpoint sequence it was made for (or of the checkpoint being
 * written when the process died).  A volume mounted elsewhere since has
 * another one, and its ring is ignored.  A ring whose volume is gone
 * (the image deleted, the device given to another volume) would stay
 * until reboot: each read-write mount sweeps those of its user away
 * (plog_sweep), knowing where each volume lived from its header.
 */
#include "internal.h"
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PLOG_MAGIC  UINT64_C(0x32474f4c504f4944)   /* "DIOPLOG2": calls marked, the path kept */
#define PLOG_MAGIC1 UINT64_C(0x31474f4c504f4944)   /* "DIOPLOG1": a record per call, no path */
#define PLOG_HDR    4096u
#define PLOG_PAD    UINT64_MAX                     /* rest of the ring is empty: wrap */
#define PLOG_END    (UINT64_C(1) << 63)            /* in a record's word: the last of its call */
#define PLOG_MIN    (1u << 20)
#define PLOG_MAX    (16u << 20)
#define NO_REC      UINT64_MAX

struct plog_hdr {
	uint64_t magic, uuid, dev, ino;
	uint64_t gen, ckpt_seq;            /* the volume state the ring follows */
	uint64_t next_gen, next_ckpt_seq;  /* ... or the checkpoint being written */
	uint64_t start, tail;              /* byte counters; position = counter % cap */
	uint64_t cap;
	uint64_t overflow;                 /* a call was left out: the ring is a prefix */
	char path[PLOG_HDR - 96];          /* DIOPLOG2: where the volume lives (absolute) */
};

struct dio_plog {
	struct plog_hdr *h;
	uint8_t *ring;
	size_t map_len;
	uint64_t cap;
	uint64_t tail;                     /* appended, not yet published */
	uint64_t pub;                      /* published (h->tail) */
	uint64_t last;                     /* ring offset of this section's last record, or NO_REC */
	bool overflow;
	char name[96];
};

static void st_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static uint64_t ld_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/* The ring's name for a device: the volume's uuid and where it lives. */
static void name_for(uint64_t uuid, uint64_t dev, uint64_t ino, char *buf, size_t len)
{
	snprintf(buf, len, "/libdio-%016llx-%llx-%llx", (unsigned long long)uuid, (unsigned long long)dev,
		 (unsigned long long)ino);
}

/* The (dev, ino) a ring is keyed by: a block device's number, an image
   file's device and inode. */
static void key_of(const struct stat *st, uint64_t *dev, uint64_t *ino)
{
	*dev = S_ISBLK(st->st_mode) ? (uint64_t)st->st_rdev : (uint64_t)st->st_dev;
	*ino = S_ISBLK(st->st_mode) ? 0 : (uint64_t)st->st_ino;
}

/* A target named by URI (backend ABI 7) has no device number: its ring
   is keyed by its identity (the backend's dio_target.id: export and
   server, image and cluster), hashed (FNV-1a), and never swept (its
   header keeps no path).  ino 1 keeps it apart from any block device. */
static void key_of_target(const char *id, uint64_t *dev, uint64_t *ino)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);
	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		h = (h ^ *p) * UINT64_C(0x100000001b3);
	*dev = h;
	*ino = 1;
}

static int plog_name(struct dio_vol *v, char *buf, size_t len, uint64_t *dev, uint64_t *ino)
{
	struct stat st;
	if (v->dev.tdev)
		key_of_target(v->dev.tid, dev, ino);
	else if (fstat(v->dev.fd, &st) < 0)
		return -errno;
	else
		key_of(&st, dev, ino);
	name_for(v->sb.uuid, *dev, *ino, buf, len);
	return 0;
}

/* ---- reading a ring (mount, fsck, dio info) --------------------------------- */

/* A ring mapped read-only: only one this user made, of this volume in
   this state.  Records from anyone else could map blocks holding another
   file's bytes. */
struct ring_view {
	void *m;
	size_t len;
	const struct plog_hdr *h;
	const uint8_t *ring;
	uint64_t start, tail, cap;
	bool v1;                           /* DIOPLOG1: every record is a call */
};

static bool view_open(struct dio_vol *v, struct ring_view *rv)
{
	char name[96];
	uint64_t dev, ino;
	memset(rv, 0, sizeof(*rv));
	if (plog_name(v, name, sizeof(name), &dev, &ino))
		return false;
	int fd = shm_open(name, O_RDONLY, 0);
	if (fd < 0)
		return false;   /* nothing left behind */
	struct stat st;
	void *m = MAP_FAILED;
	if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && (uint64_t)st.st_size > PLOG_HDR)
		m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return false;
	const struct plog_hdr *h = m;
	uint64_t start = ld_u64(&h->start), tail = ld_u64(&h->tail), cap = h->cap;
	bool ours = (h->magic == PLOG_MAGIC || h->magic == PLOG_MAGIC1) && h->uuid == v->sb.uuid &&
		    h->dev == dev && h->ino == ino &&
		    ((h->gen == v->sb.gen && h->ckpt_seq == v->sb.ckpt_seq) ||
		     (h->next_gen == v->sb.gen && h->next_ckpt_seq == v->sb.ckpt_seq)) &&
		    cap && cap <= (uint64_t)st.st_size - PLOG_HDR && start <= tail && tail - start <= cap;
	if (!ours) {
		munmap(m, (size_t)st.st_size);
		return false;
	}
	*rv = (struct ring_view){ m, (size_t)st.st_size, h, (const uint8_t *)m + PLOG_HDR, start, tail, cap,
				  h->magic == PLOG_MAGIC1 };
	return true;
}

static void view_close(struct ring_view *rv)
{
	if (rv->m)
		munmap(rv->m, rv->len);
	rv->m = NULL;
}

/* The record at *pos (past any wrap): its sequence, whether it ends its
   call, its bytes.  False at the tail, or at a record that is not whole
   (cannot happen: published records are). */
static bool view_next(const struct ring_view *rv, uint64_t *pos, uint64_t *seq, bool *end, const uint8_t **rec,
		      size_t *len)
{
	while (*pos < rv->tail) {
		uint64_t off = *pos % rv->cap, room = rv->cap - off, w;
		if (room < 12 || (memcpy(&w, rv->ring + off, 8), w == PLOG_PAD)) {
			*pos += room;   /* wrapped */
			continue;
		}
		size_t rlen = get_le16(rv->ring + off + 8 + 2);
		if (rlen < 4 || 8 + rlen > room || *pos + 8 + rlen > rv->tail)
			return false;
		*seq = w & ~PLOG_END;
		*end = rv->v1 || (w & PLOG_END);
		*rec = rv->ring + off + 8;
		*len = rlen;
		*pos += 8 + rlen;
		return true;
	}
	return false;
}

/*
 * Apply what a killed process left in the ring beyond the journal's last
 * record, a call at a time: every record of a call is checked (`apply`
 * with dry true: the journal's, as this file knows the ring, not the
 * records) before any of it is applied, so a call goes in whole or not
 * at all.  A call that does not continue the journal's sequence, or
 * does not apply, ends the replay there with a warning: the volume
 * mounts as the journal and the calls before it leave it.  0, or
 * apply's error (-ENOMEM).  *applied: the records applied.  peek (fsck,
 * dio info): the words say what a mount would do.
 */
int plog_recover(struct dio_vol *v, plog_apply_fn apply, bool peek, uint64_t *applied)
{
	struct ring_view rv;
	*applied = 0;
	if (!view_open(v, &rv))
		return 0;
	uint64_t pos = rv.start, calls = 0, seq = 0, first = 0;
	const uint8_t *rec;
	size_t len;
	bool end = false;
	const char *stop = NULL;
	int e = 0;
	while (!e && !stop && pos < rv.tail) {
		/* one call: check every record, then apply them */
		uint64_t at = pos, n = 0, want = v->j.last_seq + 1;
		bool whole = false;
		while (view_next(&rv, &pos, &seq, &end, &rec, &len)) {
			if (n == 0)
				first = seq;
			if (seq != first + n) {
				stop = "its records are out of sequence";
				break;
			}
			if (first == want && apply(v, seq, rec, len, true)) {
				stop = "a record does not apply to the volume";
				break;
			}
			n++;
			if (end) {
				whole = true;
				break;
			}
		}
		if (stop)
			break;
		if (!whole) {
			if (n)
				stop = "its last call is not whole";
			break;
		}
		if (first + n - 1 <= v->j.last_seq)
			continue;   /* the journal has it */
		if (first != want) {
			stop = "it does not continue the journal";
			break;
		}
		for (uint64_t i = 0; i < n && !e; i++) {
			view_next(&rv, &at, &seq, &end, &rec, &len);
			e = apply(v, seq, rec, len, false);
			if (!e)
				v->j.last_seq = seq;
		}
		*applied += n;
		calls++;
	}
	if (stop)
		dio_log(DIO_LOG_WARN, "process-death log: %s after record %llu; %s the journal and the %llu calls "
			"before", stop, (unsigned long long)v->j.last_seq, peek ? "a mount would keep" : "kept",
			(unsigned long long)calls);
	if (rv.h->overflow)
		dio_log(DIO_LOG_WARN, "process-death log overflowed: calls after record %llu were committed "
			"before they returned, or never returned", (unsigned long long)v->j.last_seq);
	if (calls)   /* fsck hears warnings only: there it is one */
		dio_log(peek ? DIO_LOG_WARN : DIO_LOG_INFO, "%s %llu metadata calls (%llu records) a killed process made after its last "
			"commit", peek ? "a mount would apply" : "applied", (unsigned long long)calls,
			(unsigned long long)*applied);
	v->j.durable_seq = v->j.written_seq = v->j.last_seq;   /* a read-write mount checkpoints them next */
	view_close(&rv);
	return e;
}

/* ---- the live ring ------------------------------------------------------------ */

int plog_start(struct dio_vol *v)
{
	const char *env = getenv("DIO_PLOG");
	if (env && !strcmp(env, "off"))
		return 0;   /* measuring what the ring costs (bench/rule8.sh) */
	plog_sweep(v);
	struct dio_plog *p = calloc(1, sizeof(*p));
	uint64_t dev, ino;
	if (!p)
		return -ENOMEM;
	int e = plog_name(v, p->name, sizeof(p->name), &dev, &ino);
	uint64_t jbytes = v->sb.journal_blocks * v->bs;
	p->cap = MIN(MAX(2 * jbytes, (uint64_t)PLOG_MIN), (uint64_t)PLOG_MAX);
	p->map_len = PLOG_HDR + (size_t)p->cap;
	p->last = NO_REC;
	/* a ring of its own, made anew (the old one, replayed already, goes;
	   a reader of it keeps its pages): never one cut short under a
	   reader, which would be SIGBUS there */
	if (!e)
		shm_unlink(p->name);
	int fd = e ? -1 : shm_open(p->name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)p->map_len) < 0 ||
	    (p->h = mmap(NULL, p->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
		e = fd < 0 && !e ? -errno : e ? e : -errno;
		dio_log(DIO_LOG_WARN, "no process-death log (shared memory %s: %s): metadata changes since the "
			"last commit die with the process", p->name, strerror(-e));
		if (fd >= 0) {
			close(fd);
			shm_unlink(p->name);
		}
		free(p);
		return 0;   /* the volume works; rule 8 is not kept (documented) */
	}
	close(fd);
	p->ring = (uint8_t *)p->h + PLOG_HDR;
	struct plog_hdr *h = p->h;
	h->uuid = v->sb.uuid;
	h->dev = dev;
	h->ino = ino;
	h->gen = h->next_gen = v->sb.gen;
	h->ckpt_seq = h->next_ckpt_seq = v->sb.ckpt_seq;
	h->cap = p->cap;
	/* where the volume lives, for the sweep of another mount; an
	   unknown path (too long) keeps the ring until reboot */
	char real[PATH_MAX];
	if (!v->dev.tdev && realpath(v->dev.path, real) && strlen(real) < sizeof(h->path))
		memcpy(h->path, real, strlen(real) + 1);
	st_u64(&h->magic, PLOG_MAGIC);
	v->plog = p;
	return 0;
}

void plog_close(struct dio_vol *v, bool remove)
{
	struct dio_plog *p = v->plog;
	if (!p)
		return;
	munmap(p->h, p->map_len);
	if (remove)
		shm_unlink(p->name);
	free(p);
	v->plog = NULL;
}

/* Under md_lock: one record (its journal encoding) with its sequence.
   If it does not fit, the section's records are taken back: a call is in
   the ring whole or not at all. */
void plog_append(struct dio_vol *v, const uint8_t *rec, size_t len, uint64_t seq)
{
	DIO_MD_HELD(v);
	struct dio_plog *p = v->plog;
	if (!p || p->overflow)
		return;
	uint64_t need = 8 + len, off = p->tail % p->cap, room = p->cap - off;
	uint64_t pad = need > room ? room : 0;   /* a record never wraps */
	if (p->tail + pad + need - ld_u64(&p->h->start) > p->cap) {
		/* the commit it asked for was too slow, or the call is larger
		   than the ring: none of it stays, and every call commits
		   before it returns until a commit has all of them */
		p->tail = p->pub;
		p->last = NO_REC;
		p->overflow = true;
		st_u64(&p->h->overflow, 1);
		return;
	}
	if (pad) {
		if (room >= 8)
			memcpy(p->ring + off, &(uint64_t){ PLOG_PAD }, 8);
		p->tail += pad;
		off = 0;
	}
	memcpy(p->ring + off, &seq, 8);
	memcpy(p->ring + off + 8, rec, len);
	p->last = off;
	p->tail += need;
}

/* md_lock is being released: the section's records, the last one marked
   as the end of its call, become visible at once. */
void plog_publish(struct dio_vol *v)
{
	DIO_MD_HELD(v);
	struct dio_plog *p = v->plog;
	if (!p || p->pub == p->tail)
		return;
	if (p->last != NO_REC) {
		uint64_t w;
		memcpy(&w, p->ring + p->last, 8);
		w |= PLOG_END;
		memcpy(p->ring + p->last, &w, 8);
		p->last = NO_REC;
	}
	p->pub = p->tail;
	st_u64(&p->h->tail, p->tail);
}

/* Under md_lock: was a call left out of the ring (it must commit before
   it returns)? */
bool plog_overflowed(const struct dio_vol *v)
{
	return v->plog && v->plog->overflow;
}

/* Under md_lock: records up to seq are on the device (a journal write,
   a checkpoint): they leave the ring.  seq always ends a call: commits
   take whole md_lock sections. */
void plog_trim(struct dio_vol *v, uint64_t seq)
{
	DIO_MD_HELD(v);
	struct dio_plog *p = v->plog;
	if (!p)
		return;
	uint64_t start = ld_u64(&p->h->start), tail = p->tail;
	while (start < tail) {
		uint64_t off = start % p->cap, room = p->cap - off, w;
		if (room < 12 || (memcpy(&w, p->ring + off, 8), w == PLOG_PAD)) {
			start += room;
			continue;
		}
		if ((w & ~PLOG_END) > seq)
			break;
		start += 8 + get_le16(p->ring + off + 8 + 2);
	}
	st_u64(&p->h->start, start);
	/* whole again only once the device has every call made so far:
	   records left out after this commit's snapshot would be a gap */
	if (p->overflow && start == tail && seq >= v->j.last_seq) {
		p->overflow = false;
		st_u64(&p->h->overflow, 0);
	}
}

/* Under md_lock: the checkpoint (gen, seq) is about to be written (done
   false), or was (done true). */
void plog_checkpoint(struct dio_vol *v, uint64_t gen, uint64_t seq, bool done)
{
	DIO_MD_HELD(v);
	struct dio_plog *p = v->plog;
	if (!p)
		return;
	if (!done) {
		st_u64(&p->h->next_ckpt_seq, seq);
		st_u64(&p->h->next_gen, gen);
		return;
	}
	st_u64(&p->h->ckpt_seq, seq);
	st_u64(&p->h->gen, gen);
	plog_trim(v, seq);
}

/* How full the ring is, for j_due: 0..100 (100 once overflowed). */
unsigned plog_fill(const struct dio_vol *v)
{
	const struct dio_plog *p = v->plog;
	if (!p)
		return 0;
	return p->overflow ? 100 : (unsigned)((p->tail - ld_u64(&p->h->start)) * 100 / p->cap);
}

/* ---- rings of volumes that are gone -------------------------------------------- */

/* Does the image or device at path still hold the volume uuid, at the
   (dev, ino) the ring was made for?  Unsure (unreadable): yes. */
static bool still_there(const char *path, uint64_t uuid, uint64_t dev, uint64_t ino)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return errno != ENOENT && errno != ENOTDIR;
	uint64_t d, i;
	key_of(&st, &d, &i);
	if (d != dev || i != ino)
		return false;   /* another file or device there now */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	/* the superblock slots, where read_sb looks: at 0 and one block in */
	uint8_t raw[SB_BYTES];
	bool found = false, read_any = false;
	for (uint32_t off = 0; off <= 65536 && !found; off = off ? off * 2 : 512) {
		struct dio_sb sb;
		if (pread(fd, raw, SB_BYTES, off) != SB_BYTES)
			continue;
		read_any = true;
		found = sb_decode(raw, &sb) == 0 && sb.uuid == uuid;
	}
	close(fd);
	return found || !read_any;
}

static void sweep_one(const char *name, void *arg)
{
	const char *mine = arg;
	char full[128];
	if (snprintf(full, sizeof(full), "/%s", name) >= (int)sizeof(full) || !strcmp(full, mine))
		return;
	int fd = shm_open(full, O_RDONLY, 0);
	if (fd < 0)
		return;
	/* read, not mapped: another process may be making its ring under
	   this name right now, and a mapped page past a file being cut
	   short is SIGBUS */
	struct stat st;
	struct plog_hdr h;
	bool got = fstat(fd, &st) == 0 && st.st_uid == geteuid() && pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h);
	close(fd);
	if (!got)
		return;
	char want[96];
	name_for(h.uuid, h.dev, h.ino, want, sizeof(want));
	h.path[sizeof(h.path) - 1] = 0;
	/* only a ring of ours whose own name says what it holds, and that
	   knows its volume's place (a DIOPLOG1 ring does not: kept) */
	if (h.magic == PLOG_MAGIC && !strcmp(want, full) && h.path[0] == '/' &&
	    !still_there(h.path, h.uuid, h.dev, h.ino) && !shm_unlink(full))
		dio_log(DIO_LOG_INFO, "removed the process-death log %s: its volume is no longer at %s", full, h.path);
}

/* At a read-write mount: remove this user's rings whose volume is gone.
   At most once a minute in a process: a program that mounts again and
   again (a test of crash states mounts 100,000 times) reads the
   directory once a minute, not at every mount. */
void plog_sweep(struct dio_vol *v)
{
	static _Atomic int64_t last = -1;
	int64_t now = dio_deadline(0) / 1000, was = atomic_load(&last);
	if ((was >= 0 && now - was < 60) || !atomic_compare_exchange_strong(&last, &was, now))
		return;
	char mine[96];
	uint64_t dev, ino;
	if (plog_name(v, mine, sizeof(mine), &dev, &ino))
		return;
	dio_shm_list("libdio-", sweep_one, mine);
}

