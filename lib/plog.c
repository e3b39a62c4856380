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
 * The ring is published at the end of each md_lock section (md_unlock):
 * the records of one call appear together or not at all, as they do in
 * a journal transaction.  Records leave it once on the device: after a
 * journal write or a checkpoint (plog_trim).  Everything in the header
 * is one aligned 64-bit word written with a release store, so a process
 * killed at any instruction leaves a ring the next mount can read: start
 * only moves forward over records the device has, tail only after the
 * records it covers are written.
 *
 * A ring belongs to one state of the volume: the superblock generation
 * and checkpoint sequence it was made for (or of the checkpoint being
 * written when the process died).  A volume mounted elsewhere since has
 * another one, and its ring is ignored.
 */
#include "internal.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PLOG_MAGIC UINT64_C(0x31474f4c504f4944)   /* "DIOPLOG1" */
#define PLOG_HDR   4096u
#define PLOG_PAD   UINT64_MAX                     /* rest of the ring is empty: wrap */
#define PLOG_MIN   (1u << 20)
#define PLOG_MAX   (16u << 20)

struct plog_hdr {
	uint64_t magic, uuid, dev, ino;
	uint64_t gen, ckpt_seq;            /* the volume state the ring follows */
	uint64_t next_gen, next_ckpt_seq;  /* ... or the checkpoint being written */
	uint64_t start, tail;              /* byte counters; position = counter % cap */
	uint64_t cap;
	uint64_t overflow;                 /* records were dropped: the ring is a prefix */
};

struct dio_plog {
	struct plog_hdr *h;
	uint8_t *ring;
	size_t map_len;
	uint64_t cap;
	uint64_t tail;                     /* appended, not yet published */
	bool overflow;
	char name[96];
};

static void st_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static uint64_t ld_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/* The ring's name: the volume's uuid and where it lives. */
static int plog_name(struct dio_vol *v, char *buf, size_t len, uint64_t *dev, uint64_t *ino)
{
	struct stat st;
	if (fstat(v->dev.fd, &st) < 0)
		return -errno;
	*dev = S_ISBLK(st.st_mode) ? (uint64_t)st.st_rdev : (uint64_t)st.st_dev;
	*ino = S_ISBLK(st.st_mode) ? 0 : (uint64_t)st.st_ino;
	snprintf(buf, len, "/libdio-%016llx-%llx-%llx", (unsigned long long)v->sb.uuid, (unsigned long long)*dev,
		 (unsigned long long)*ino);
	return 0;
}

/* ---- recovery (mount) ------------------------------------------------------- */

/*
 * After the journal's replay: apply what a killed process left in the
 * ring beyond the journal's last record, each record (its journal
 * encoding) through `apply` (the journal's: this file knows the ring, not
 * the records).  0, or apply's error (-EUCLEAN if a record does not
 * apply: the mount fails as for a bad journal record).
 */
int plog_recover(struct dio_vol *v, int (*apply)(struct dio_vol *v, uint64_t seq, const uint8_t *rec, size_t len))
{
	char name[96];
	uint64_t dev, ino;
	if (plog_name(v, name, sizeof(name), &dev, &ino))
		return 0;
	int fd = shm_open(name, O_RDONLY, 0);
	if (fd < 0)
		return 0;   /* nothing left behind */
	struct stat st;
	void *m = MAP_FAILED;
	/* only a ring this user made: records from anyone else could map
	   blocks holding another file's bytes */
	if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && (uint64_t)st.st_size > PLOG_HDR)
		m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return 0;
	const struct plog_hdr *h = m;
	const uint8_t *ring = (const uint8_t *)m + PLOG_HDR;
	uint64_t start = ld_u64(&h->start), tail = ld_u64(&h->tail), cap = h->cap, applied = 0;
	bool ours = h->magic == PLOG_MAGIC && h->uuid == v->sb.uuid && h->dev == dev && h->ino == ino &&
		    ((h->gen == v->sb.gen && h->ckpt_seq == v->sb.ckpt_seq) ||
		     (h->next_gen == v->sb.gen && h->next_ckpt_seq == v->sb.ckpt_seq)) &&
		    cap && cap <= (uint64_t)st.st_size - PLOG_HDR && start <= tail && tail - start <= cap;
	int e = 0;
	while (ours && start < tail && !e) {
		uint64_t off = start % cap, room = cap - off, seq;
		if (room < 12 || (memcpy(&seq, ring + off, 8), seq == PLOG_PAD)) {
			start += room;   /* wrapped */
			continue;
		}
		size_t rlen = get_le16(ring + off + 8 + 2);
		if (rlen < 4 || 8 + rlen > room || start + 8 + rlen > tail)
			break;   /* cannot happen: published records are whole */
		if (seq > v->j.last_seq + 1)
			break;   /* a gap: not ours to fill */
		if (seq == v->j.last_seq + 1) {
			e = apply(v, seq, ring + off + 8, rlen);
			if (!e) {
				v->j.last_seq = seq;
				applied++;
			}
		}
		start += 8 + rlen;
	}
	if (ours && h->overflow)
		dio_log(DIO_LOG_WARN, "process-death log overflowed: calls after record %llu were not kept",
			(unsigned long long)v->j.last_seq);
	if (applied)
		dio_log(DIO_LOG_INFO, "applied %llu metadata changes a killed process made after its last commit",
			(unsigned long long)applied);
	v->j.durable_seq = v->j.written_seq = v->j.last_seq;   /* a read-write mount checkpoints them next */
	munmap(m, (size_t)st.st_size);
	return e;
}

/* ---- the live ring ------------------------------------------------------------ */

int plog_start(struct dio_vol *v)
{
	const char *env = getenv("DIO_PLOG");
	if (env && !strcmp(env, "off"))
		return 0;   /* measuring what the ring costs (bench/rule8.sh) */
	struct dio_plog *p = calloc(1, sizeof(*p));
	uint64_t dev, ino;
	if (!p)
		return -ENOMEM;
	int e = plog_name(v, p->name, sizeof(p->name), &dev, &ino);
	uint64_t jbytes = v->sb.journal_blocks * v->bs;
	p->cap = MIN(MAX(2 * jbytes, (uint64_t)PLOG_MIN), (uint64_t)PLOG_MAX);
	p->map_len = PLOG_HDR + (size_t)p->cap;
	int fd = e ? -1 : shm_open(p->name, O_RDWR | O_CREAT | O_TRUNC, 0600);
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

/* Under md_lock: one record (its journal encoding) with its sequence. */
void plog_append(struct dio_vol *v, const uint8_t *rec, size_t len, uint64_t seq)
{
	DIO_MD_HELD(v);
	struct dio_plog *p = v->plog;
	if (!p || p->overflow)
		return;
	uint64_t need = 8 + len, off = p->tail % p->cap, room = p->cap - off;
	uint64_t pad = need > room ? room : 0;   /* a record never wraps */
	if (p->tail + pad + need - ld_u64(&p->h->start) > p->cap) {
		p->overflow = true;   /* the commit it asked for was too slow */
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
	p->tail += need;
}

/* md_lock is being released: the section's records become visible. */
void plog_publish(struct dio_vol *v)
{
	DIO_MD_HELD(v);
	struct dio_plog *p = v->plog;
	if (p && ld_u64(&p->h->tail) != p->tail)
		st_u64(&p->h->tail, p->tail);
}

/* Under md_lock: records up to seq are on the device (a journal write,
   a checkpoint): they leave the ring. */
void plog_trim(struct dio_vol *v, uint64_t seq)
{
	DIO_MD_HELD(v);
	struct dio_plog *p = v->plog;
	if (!p)
		return;
	uint64_t start = ld_u64(&p->h->start), tail = p->tail;
	while (start < tail) {
		uint64_t off = start % p->cap, room = p->cap - off, rseq;
		if (room < 12 || (memcpy(&rseq, p->ring + off, 8), rseq == PLOG_PAD)) {
			start += room;
			continue;
		}
		if (rseq > seq)
			break;
		start += 8 + get_le16(p->ring + off + 8 + 2);
	}
	st_u64(&p->h->start, start);
	if (p->overflow && start == tail) {
		/* everything it missed is on the device now: whole again */
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

/* How full the ring is, for j_maybe_commit: 0..100. */
unsigned plog_fill(const struct dio_vol *v)
{
	const struct dio_plog *p = v->plog;
	return p ? (unsigned)((p->tail - ld_u64(&p->h->start)) * 100 / p->cap) : 0;
}
