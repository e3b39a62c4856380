/*
 * The WAL index in process memory.
 *
 * SQLite's unix VFS keeps the WAL index in a file it maps (NAME-shm), so
 * that processes share it.  A libdio volume belongs to one process, so the
 * index lives in memory shared by the connections of this process: the
 * regions SQLite maps, and the eight WAL locks with the unix VFS's
 * rules (many SHARED or one EXCLUSIVE per slot).  When the last connection
 * of a database unmaps it, it goes; the next connection finds an empty
 * index and SQLite rebuilds it from the WAL (recovery), as after a crash.
 */
#include "dsq.h"
#include <stdlib.h>
#include <string.h>

struct dsq_shm {
	struct dsq_shm *next;
	char *name;
	unsigned nconn;
	pthread_mutex_t mu;             /* regions and locks */
	int nregion;
	void **region;
	int nshared[SQLITE_SHM_NLOCK];  /* connections holding each slot SHARED */
	bool excl[SQLITE_SHM_NLOCK];    /* ... or one holding it EXCLUSIVE */
};

struct dsq_shm_conn {
	struct dsq_shm *s;
	uint16_t shared, excl;          /* slots this connection holds */
};

static struct dsq_file *F(sqlite3_file *f)
{
	return (struct dsq_file *)f;
}

/* The connection's link to the index of its database, made on first use. */
static int attach(struct dsq_file *p)
{
	if (p->shm)
		return SQLITE_OK;
	struct dsq_shm_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return SQLITE_NOMEM;
	pthread_mutex_lock(&dsq_lock);
	struct dsq_shm *s;
	for (s = p->m->shms; s && strcmp(s->name, p->name); s = s->next)
		;
	if (!s && (s = calloc(1, sizeof(*s))) && !(s->name = strdup(p->name))) {
		free(s);
		s = NULL;
	}
	if (s && !s->nconn) {
		pthread_mutex_init(&s->mu, NULL);
		s->next = p->m->shms;
		p->m->shms = s;
	}
	if (s)
		s->nconn++;
	pthread_mutex_unlock(&dsq_lock);
	if (!s) {
		free(c);
		return SQLITE_NOMEM;
	}
	c->s = s;
	p->shm = c;
	return SQLITE_OK;
}

int dsq_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **pp)
{
	struct dsq_file *p = F(f);
	int rc = attach(p);
	*pp = NULL;
	if (rc != SQLITE_OK)
		return rc;
	struct dsq_shm *s = p->shm->s;
	pthread_mutex_lock(&s->mu);
	if (region >= s->nregion && extend) {
		void **r = realloc(s->region, (size_t)(region + 1) * sizeof(*r));
		if (!r) {
			rc = SQLITE_NOMEM;
		} else {
			s->region = r;
			for (; s->nregion <= region; s->nregion++)
				if (!(r[s->nregion] = calloc(1, (size_t)size)))
					break;
			if (s->nregion <= region)
				rc = SQLITE_NOMEM;
		}
	}
	if (region < s->nregion)
		*pp = s->region[region];
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int dsq_shm_lock(sqlite3_file *f, int ofst, int n, int flags)
{
	struct dsq_shm_conn *c = F(f)->shm;
	if (!c)
		return SQLITE_IOERR_SHMLOCK;
	struct dsq_shm *s = c->s;
	uint16_t mask = (uint16_t)(((1u << n) - 1) << ofst);
	int rc = SQLITE_OK;
	pthread_mutex_lock(&s->mu);
	if (flags & SQLITE_SHM_UNLOCK) {
		for (int i = ofst; i < ofst + n; i++) {
			if (c->excl & (1u << i))
				s->excl[i] = false;
			if (c->shared & (1u << i))
				s->nshared[i]--;
		}
		c->excl &= (uint16_t)~mask;
		c->shared &= (uint16_t)~mask;
	} else if (flags & SQLITE_SHM_SHARED) {
		/* one slot at a time (SQLite's rule for SHARED) */
		if (!(c->shared & mask)) {
			if (s->excl[ofst]) {
				rc = SQLITE_BUSY;
			} else {
				s->nshared[ofst]++;
				c->shared |= mask;
			}
		}
	} else {
		for (int i = ofst; i < ofst + n && rc == SQLITE_OK; i++)
			if ((s->excl[i] && !(c->excl & (1u << i))) ||
			    s->nshared[i] > ((c->shared & (1u << i)) ? 1 : 0))
				rc = SQLITE_BUSY;
		if (rc == SQLITE_OK) {
			for (int i = ofst; i < ofst + n; i++)
				s->excl[i] = true;
			c->excl |= mask;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* What one connection wrote in the index is seen by the others after
   this (the mutex's barrier, as the unix VFS does). */
void dsq_shm_barrier(sqlite3_file *f)
{
	struct dsq_shm_conn *c = F(f)->shm;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (c) {
		pthread_mutex_lock(&c->s->mu);
		pthread_mutex_unlock(&c->s->mu);
	}
}

int dsq_shm_unmap(sqlite3_file *f, int delete_flag)
{
	(void)delete_flag;   /* memory only: it goes with its last connection either way */
	struct dsq_file *p = F(f);
	struct dsq_shm_conn *c = p->shm;
	if (!c)
		return SQLITE_OK;
	dsq_shm_lock(f, 0, SQLITE_SHM_NLOCK, SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);
	struct dsq_shm *s = c->s;
	pthread_mutex_lock(&dsq_lock);
	bool last = --s->nconn == 0;
	if (last) {
		for (struct dsq_shm **pp = &p->m->shms; *pp; pp = &(*pp)->next) {
			if (*pp == s) {
				*pp = s->next;
				break;
			}
		}
	}
	pthread_mutex_unlock(&dsq_lock);
	if (last) {
		for (int i = 0; i < s->nregion; i++)
			free(s->region[i]);
		free(s->region);
		pthread_mutex_destroy(&s->mu);
		free(s->name);
		free(s);
	}
	free(c);
	p->shm = NULL;
	return SQLITE_OK;
}
