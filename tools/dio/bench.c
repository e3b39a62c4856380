/*
 * dio bench: fio-style workloads on a libdio volume, or (--raw) the same
 * workload on the bare image/device with the same kind of engine.
 *
 *   dio bench TARGET [--rw read|write|randread|randwrite|randrw]
 *             [--bs 4k] [--iodepth 1] [--numjobs 1] [--size 256m]
 *             [--runtime 10] [--backend auto|uring|aio|psync] [--fsync N]
 *             [--append] [--fixedbufs] [--spin] [--norandommap]
 *             [--iodepth_batch_submit N] [--fallocate] [--raw] [--json]
 *
 * libdio mode: PATH is formatted if it is not a volume (an image file is
 * created of the needed size), each job gets its own file of --size bytes,
 * written first for reads and overwrites (--fallocate: preallocated
 * afresh instead, so writes land on unwritten blocks).  iodepth 1 uses the synchronous
 * calls; more uses a dio_queue per job.  --append: each job appends bs
 * blocks to its own new file (with --fsync 1: fdatasync after each).
 * --fixedbufs (fio's io_uring option): register the job's buffers
 * (dio_queue_register_buffers; --raw: io_uring_register_buffers).
 * Queues are driven the way fio's io_uring and libaio loops drive them:
 * one submission per request (fio's iodepth_batch_submit=1; the option of
 * that name changes it), a wait for at least one completion when none is
 * ready (fio sleeps in io_uring_enter / io_getevents; --spin asks again
 * without sleeping, which buys IOPS with a whole CPU and is matched by
 * fio's own polling options, not by its default), and for random I/O
 * fio's random map: every block once per pass (--norandommap: independent
 * random blocks).
 * Prints IOPS, MB/s, CPU time per I/O (user + system of the job threads,
 * getrusage RUSAGE_THREAD, as fio counts a job's; the whole process's,
 * which adds the kernel's io-wq workers on tmpfs, as cpu_process_us_per_io
 * in --json) and p50/p99/p99.9 completion latency.
 */
#include "tool.h"
#include <sys/param.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#ifdef DIO_HAVE_URING
#include <liburing.h>
#endif
#ifdef DIO_HAVE_AIO
#include <libaio.h>
#endif

static struct {
	const char *target, *rw, *backend;
	size_t bs;
	unsigned iodepth, numjobs, fsync_every;
	uint64_t size;
	double runtime;
	bool raw, json, append, fixedbufs, spin, norandommap, prealloc;
	bool random, reads, mixed;  /* --rw, parsed once: not per I/O */
	unsigned batch;            /* --iodepth_batch_submit */
} O = { .rw = "randread", .backend = "auto", .bs = 4096, .iodepth = 1, .numjobs = 1, .size = 256 << 20,
	.runtime = 10, .batch = 1 };

#define now now_sec

/* latency histogram: log-linear buckets of 1/16 octave over ns */
#define NB (64 * 16)
struct job {
	int id;
	uint64_t ios, bytes;
	uint64_t hist[NB];
	uint64_t seed;
	struct dio_vol *vol;
	int fd;
	int err;
	uint64_t *map, mapped;     /* fio's random map: blocks used this pass */
	double cpu;                /* the job thread's own CPU seconds */
};

static void lat_add(struct job *j, double sec)
{
	uint64_t ns = (uint64_t)(sec * 1e9) + 1;
	int o = 63 - __builtin_clzll(ns);
	int sub = o >= 4 ? (int)((ns >> (o - 4)) & 15) : 0;
	int b = o * 16 + sub;
	j->hist[b < NB ? b : NB - 1]++;
}

static double lat_pct(const uint64_t *h, uint64_t total, double p)
{
	uint64_t want = (uint64_t)(p * (double)total), acc = 0;
	for (int b = 0; b < NB; b++) {
		acc += h[b];
		if (acc > want && h[b]) {
			int o = b / 16, sub = b % 16;
			double lo = (double)(1ull << o) * (1 + sub / 16.0);
			return lo / 1000.0;   /* usec */
		}
	}
	return 0;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static bool is_read(uint64_t *seed)
{
	return O.mixed ? rnd(seed) % 2 : O.reads;
}

/*
 * fio's default random map: every block once per pass, in random order
 * (a random block, or the next unused one after it), then a new pass.
 * Without it (--norandommap) the same block can be hit twice in a row,
 * which on the virtio disk of RESULTS.md costs fio itself 20 %.
 */
static uint64_t map_pick(struct job *j, uint64_t nblk)
{
	uint64_t words = (nblk + 63) / 64;
	if (!j->map && !(j->map = calloc(words, 8)))
		abort();
	if (j->mapped == nblk) {
		memset(j->map, 0, words * 8);
		j->mapped = 0;
	}
	uint64_t b = rnd(&j->seed) % nblk, w = b / 64;
	uint64_t free_bits = ~j->map[w] & (~0ull << (b % 64));
	while (!free_bits) {
		w = (w + 1) % words;
		free_bits = ~j->map[w];
		if (w == words - 1 && nblk % 64)
			free_bits &= (1ull << (nblk % 64)) - 1;
	}
	b = w * 64 + (uint64_t)__builtin_ctzll(free_bits);
	j->map[w] |= 1ull << (b % 64);
	j->mapped++;
	return b;
}

static uint64_t next_off(struct job *j, uint64_t *seq)
{
	uint64_t nblk = O.size / O.bs;
	if (O.append)
		return (*seq)++ * O.bs;
	if (O.random && O.norandommap)
		return (rnd(&j->seed) % nblk) * O.bs;
	if (O.random)
		return map_pick(j, nblk) * O.bs;
	uint64_t o = (*seq % nblk) * O.bs;
	(*seq)++;
	return o;
}

/* ---- libdio -------------------------------------------------------- */

static void *dio_job(void *arg)
{
	struct job *j = arg;
	char name[32];
	snprintf(name, sizeof(name), O.append ? "append-%d" : "job-%d", j->id);
	struct dio_file *f = dio_open(j->vol, name, O_RDWR | O_CREAT);
	if (!f) {
		j->err = errno;
		return NULL;
	}
	void *buf;
	if (posix_memalign(&buf, 4096, O.bs * O.iodepth))
		abort();
	memset(buf, 0xab, O.bs * O.iodepth);
	uint64_t seq = 0;
	double end = now() + O.runtime;
	if (O.iodepth <= 1) {
		/* two clock reads per I/O, as fio's loop makes: the end of one
		   I/O is also the check against the run's end */
		for (double t1 = now(); t1 < end;) {
			uint64_t off = next_off(j, &seq);
			bool rd = is_read(&j->seed);
			double t0 = now();
			ssize_t r = rd ? dio_pread(f, buf, O.bs, (off_t)off) : dio_pwrite(f, buf, O.bs, (off_t)off);
			if (r != (ssize_t)O.bs) {
				j->err = r < 0 ? errno : EIO;
				break;
			}
			if (!rd && O.fsync_every && (j->ios + 1) % O.fsync_every == 0 && dio_fdatasync(f)) {
				j->err = errno;
				break;
			}
			t1 = now();
			lat_add(j, t1 - t0);
			j->ios++;
			__atomic_fetch_add(&j->bytes, O.bs, __ATOMIC_RELAXED);
		}
	} else {
		/* the queue never leaves this thread: let io_uring bind it */
		struct dio_queue *q = dio_queue_create_flags(j->vol, O.iodepth, DIO_QUEUE_SINGLE_THREAD);
		struct iovec all = { buf, O.bs * O.iodepth };
		if (O.fixedbufs && dio_queue_register_buffers(q, &all, 1))
			j->err = errno;
		struct dio_req *reqs = calloc(O.iodepth, sizeof(*reqs));
		struct dio_cqe *cq = calloc(O.iodepth, sizeof(*cq));
		double *t0 = calloc(O.iodepth, sizeof(double));
		unsigned inflight = 0;
		for (unsigned i = 0; i < O.iodepth; i++) {
			reqs[i] = (struct dio_req){ .file = f, .buf = (char *)buf + i * O.bs, .len = O.bs,
						    .user_data = i };
		}
		bool stop = false;
		while (!stop || inflight) {
			unsigned n = 0;
			struct dio_req batch[256];
			if (!stop) {
				for (unsigned i = 0; i < O.iodepth && inflight + n < O.iodepth; i++) {
					if (t0[i] != 0)
						continue;
					struct dio_req r = reqs[i];
					r.op = is_read(&j->seed) ? DIO_OP_READ : DIO_OP_WRITE;
					r.offset = (off_t)next_off(j, &seq);
					t0[i] = now();
					batch[n++] = r;
				}
			}
			/* fio's default iodepth_batch_submit=1: one submission
			   per request, so the device sees a steady stream instead
			   of a convoy of 30 at once */
			for (unsigned k = 0; k < n; k += O.batch) {
				int got = dio_submit(q, batch + k, MIN(O.batch, n - k));
				if (got < 0) {
					j->err = errno;
					break;
				}
				inflight += (unsigned)got;
			}
			if (j->err)
				break;
			/* the queue is full: sleep until a completion, as fio
			   does (--spin: ask again without sleeping) */
			int c = dio_reap(q, cq, O.spin ? 0 : 1, O.iodepth, O.spin ? 0 : -1);
			if (c < 0) {
				j->err = errno;
				break;
			}
			double t = now();
			for (int k = 0; k < c; k++) {
				unsigned i = (unsigned)cq[k].user_data;
				if (cq[k].res != (ssize_t)O.bs)
					j->err = cq[k].res < 0 ? (int)-cq[k].res : EIO;
				lat_add(j, t - t0[i]);
				t0[i] = 0;
				j->ios++;
				__atomic_fetch_add(&j->bytes, O.bs, __ATOMIC_RELAXED);
			}
			inflight -= (unsigned)c;
			if (t >= end || j->err)
				stop = true;
		}
		dio_queue_destroy(q);
		free(reqs);
		free(cq);
		free(t0);
	}
	dio_close(f);
	free(buf);
	return NULL;
}

static void prepare_volume(void)
{
	struct stat st;
	uint64_t need = O.size * O.numjobs + (O.size * O.numjobs) / 8 + (64 << 20);
	if (O.append)
		need = (24ull << 30);   /* sparse: appends must not run out */
	struct dio_vol *v = NULL;
	bool uri = strstr(O.target, "://") != NULL;   /* an NBD export: a device */
	bool exists = uri || stat(O.target, &st) == 0;
	if (exists)
		v = dio_mount(O.target, &(struct dio_mount_opts){ .backend = O.backend });
	if (!v) {
		/* a device as it is; an image file (new or not a volume) sized */
		bool dev = uri || (exists && S_ISBLK(st.st_mode));
		struct dio_mkfs_opts mk = { .size = dev ? 0 : need, .flags = DIO_MKFS_FORCE };
		if (dio_mkfs(O.target, &mk)) {
			perror("dio_mkfs");
			exit(1);
		}
		v = dio_mount(O.target, &(struct dio_mount_opts){ .backend = O.backend });
	}
	if (!v) {
		perror("dio_mount");
		exit(1);
	}
	/* lay the files down so reads and overwrites hit written blocks, or
	   with --fallocate preallocate them afresh (every block unwritten) */
	void *buf;
	if (posix_memalign(&buf, 4096, 1 << 20))
		abort();
	memset(buf, 0xcd, 1 << 20);
	for (unsigned i = 0; i < O.numjobs && !O.append; i++) {
		char name[32];
		snprintf(name, sizeof(name), "job-%u", i);
		struct dio_file *f = dio_open(v, name, O_RDWR | O_CREAT);
		struct dio_stat fs;
		if (O.prealloc && (dio_ftruncate(f, 0) || dio_fsync(f) || dio_fallocate(f, 0, 0, (off_t)O.size))) {
			perror("dio_fallocate");
			exit(1);
		}
		dio_fstat(f, &fs);
		for (uint64_t off = fs.size; off < O.size; off += 1 << 20)
			dio_pwrite(f, buf, 1 << 20, (off_t)off);
		dio_fsync(f);
		dio_close(f);
	}
	for (unsigned i = 0; i < O.numjobs && O.append; i++) {
		char name[32];
		snprintf(name, sizeof(name), "append-%u", i);
		dio_unlink(v, name);
	}
	dio_syncfs(v);
	free(buf);
	dio_umount(v);
}

/* ---- raw: the same workload on the bare file/device ----------------- */

static void *raw_job(void *arg)
{
	struct job *j = arg;
	void *buf;
	if (posix_memalign(&buf, 4096, O.bs * O.iodepth))
		abort();
	memset(buf, 0xab, O.bs * O.iodepth);
	uint64_t seq = 0, base = (uint64_t)j->id * O.size;
	double end = now() + O.runtime;
	bool use_uring = !strcmp(O.backend, "uring") || !strcmp(O.backend, "auto");
	bool use_aio = !strcmp(O.backend, "aio");
	if (O.iodepth <= 1 || (!use_uring && !use_aio)) {
		for (double t1 = now(); t1 < end;) {
			uint64_t off = base + next_off(j, &seq);
			bool rd = is_read(&j->seed);
			double t0 = now();
			ssize_t r = rd ? pread(j->fd, buf, O.bs, (off_t)off) : pwrite(j->fd, buf, O.bs, (off_t)off);
			if (r != (ssize_t)O.bs) {
				j->err = r < 0 ? errno : EIO;
				break;
			}
			if (!rd && O.fsync_every && (j->ios + 1) % O.fsync_every == 0 && fdatasync(j->fd)) {
				j->err = errno;
				break;
			}
			t1 = now();
			lat_add(j, t1 - t0);
			j->ios++;
			__atomic_fetch_add(&j->bytes, O.bs, __ATOMIC_RELAXED);
		}
		free(buf);
		return NULL;
	}
	double *t0 = calloc(O.iodepth, sizeof(double));
#ifdef DIO_HAVE_URING
	if (use_uring) {
		struct io_uring ring;
		/* the ring flags fio 3.33 uses, where the kernel takes them */
		if (io_uring_queue_init(O.iodepth, &ring, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
							 IORING_SETUP_COOP_TASKRUN) < 0 &&
		    io_uring_queue_init(O.iodepth, &ring, 0) < 0)
			abort();
		struct iovec all = { buf, O.bs * O.iodepth };
		if (O.fixedbufs && io_uring_register_buffers(&ring, &all, 1))
			j->err = EINVAL;
		unsigned inflight = 0;
		bool stop = false;
		unsigned long queued = 0;
		while (!stop || inflight) {
			for (unsigned i = 0; !stop && i < O.iodepth; i++) {
				if (t0[i] != 0)
					continue;
				struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
				uint64_t off = base + next_off(j, &seq);
				char *p = (char *)buf + i * O.bs;
				bool rd = is_read(&j->seed);
				if (O.fixedbufs && rd)
					io_uring_prep_read_fixed(sqe, j->fd, p, (unsigned)O.bs, off, 0);
				else if (O.fixedbufs)
					io_uring_prep_write_fixed(sqe, j->fd, p, (unsigned)O.bs, off, 0);
				else if (rd)
					io_uring_prep_read(sqe, j->fd, p, (unsigned)O.bs, off);
				else
					io_uring_prep_write(sqe, j->fd, p, (unsigned)O.bs, off);
				io_uring_sqe_set_data64(sqe, i);
				t0[i] = now();
				inflight++;
				if (++queued % O.batch == 0)
					io_uring_submit(&ring);   /* as fio: one enter per batch */
			}
			if (!O.spin)
				io_uring_submit_and_wait(&ring, 1);
			else
				io_uring_submit_and_get_events(&ring);
			struct io_uring_cqe *cqe;
			unsigned head, c = 0;
			double t = now();
			io_uring_for_each_cqe(&ring, head, cqe) {
				unsigned i = (unsigned)io_uring_cqe_get_data64(cqe);
				if (cqe->res != (int)O.bs)
					j->err = EIO;
				lat_add(j, t - t0[i]);
				t0[i] = 0;
				j->ios++;
				__atomic_fetch_add(&j->bytes, O.bs, __ATOMIC_RELAXED);
				c++;
			}
			io_uring_cq_advance(&ring, c);
			inflight -= c;
			if (t >= end || j->err)
				stop = true;
		}
		io_uring_queue_exit(&ring);
	}
#endif
#ifdef DIO_HAVE_AIO
	if (use_aio) {
		io_context_t ctx = 0;
		io_setup((int)O.iodepth, &ctx);
		struct iocb *cbs = calloc(O.iodepth, sizeof(*cbs)), **cbp = calloc(O.iodepth, sizeof(*cbp));
		struct io_event *ev = calloc(O.iodepth, sizeof(*ev));
		unsigned inflight = 0;
		bool stop = false;
		while (!stop || inflight) {
			unsigned n = 0;
			for (unsigned i = 0; !stop && i < O.iodepth; i++) {
				if (t0[i] != 0)
					continue;
				uint64_t off = base + next_off(j, &seq);
				if (is_read(&j->seed))
					io_prep_pread(&cbs[i], j->fd, (char *)buf + i * O.bs, O.bs, (long long)off);
				else
					io_prep_pwrite(&cbs[i], j->fd, (char *)buf + i * O.bs, O.bs, (long long)off);
				cbs[i].data = (void *)(uintptr_t)i;
				cbp[n++] = &cbs[i];
				t0[i] = now();
			}
			for (unsigned k = 0; k < n; k += O.batch)
				if (io_submit(ctx, (long)MIN(O.batch, n - k), cbp + k) != (long)MIN(O.batch, n - k))
					j->err = EIO;
			inflight += n;
			struct timespec zero = { 0, 0 };
			int c = io_getevents(ctx, O.spin ? 0 : 1, (long)O.iodepth, ev, O.spin ? &zero : NULL);
			double t = now();
			for (int k = 0; k < c; k++) {
				unsigned i = (unsigned)(uintptr_t)ev[k].data;
				if ((long)ev[k].res != (long)O.bs)
					j->err = EIO;
				lat_add(j, t - t0[i]);
				t0[i] = 0;
				j->ios++;
				__atomic_fetch_add(&j->bytes, O.bs, __ATOMIC_RELAXED);
			}
			inflight -= (unsigned)(c > 0 ? c : 0);
			if (t >= end || j->err)
				stop = true;
		}
		io_destroy(ctx);
		free(cbs);
		free(cbp);
		free(ev);
	}
#endif
	free(t0);
	free(buf);
	return NULL;
}

static int usage(void)
{
	return usage_error("bad or missing option");
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}

/* This thread's CPU time (user + system), as fio measures a job's:
   work the kernel does in other threads for it (io_uring's io-wq
   workers on tmpfs) is not in it, on either side. */
static double thread_cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_THREAD, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}

static void *job_main(void *arg)
{
	struct job *j = arg;
	double c0 = thread_cpu_seconds();
	void *r = O.raw ? raw_job(arg) : dio_job(arg);
	j->cpu = thread_cpu_seconds() - c0;
	return r;
}

static struct job *g_jobs;
static uint64_t bytes_so_far(void *arg)
{
	(void)arg;
	uint64_t t = 0;
	for (unsigned i = 0; i < O.numjobs; i++)
		t += __atomic_load_n(&g_jobs[i].bytes, __ATOMIC_RELAXED);
	return t;
}

int cmd_bench(int argc, char **argv)
{
	G.usage = "dio bench TARGET [--rw MODE] [--bs N] [--iodepth N] [--numjobs N] [--size N] [--runtime S]\n"
		  "       [--backend B] [--fsync N] [--append] [--fixedbufs] [--spin] [--norandommap]\n"
		  "       [--iodepth_batch_submit N] [--fallocate] [--raw] [--json]";
	if (G.backend)
		O.backend = G.backend;
	O.json = G.json;
	for (int i = 1; i < argc; i++) {
		char *a = argv[i], *v = strchr(a, '=');
		char key[64];
		if (a[0] != '-') {
			if (O.target)
				return usage_error("one TARGET only");
			O.target = a;
			continue;
		}
		if (v) {
			snprintf(key, sizeof(key), "%.*s", (int)(v - a), a);
			v++;
		} else {
			snprintf(key, sizeof(key), "%s", a);
			if (strcmp(a, "--raw") && strcmp(a, "--json") && strcmp(a, "--append") && strcmp(a, "--fixedbufs") &&
			    strcmp(a, "--spin") && strcmp(a, "--norandommap") && strcmp(a, "-q") && strcmp(a, "--help") &&
			    strcmp(a, "--fallocate"))
				v = ++i < argc ? argv[i] : NULL;
		}
		if (!strcmp(key, "--raw")) O.raw = true;
		else if (!strcmp(key, "--json")) O.json = G.json = true;
		else if (!strcmp(key, "-q")) G.quiet = true;
		else if (!strcmp(key, "--help")) { printf("usage: %s\n", G.usage); return 0; }
		else if (!strcmp(key, "--append")) O.append = true;
		else if (!strcmp(key, "--fixedbufs")) O.fixedbufs = true;
		else if (!strcmp(key, "--spin")) O.spin = true;
		else if (!strcmp(key, "--norandommap")) O.norandommap = true;
		else if (!strcmp(key, "--fallocate")) O.prealloc = true;
		else if (!v) return usage();
		else if (!strcmp(key, "--target")) O.target = v;
		else if (!strcmp(key, "--rw")) O.rw = v;
		else if (!strcmp(key, "--bs")) { uint64_t x; if (parse_size(v, &x)) return usage(); O.bs = x; }
		else if (!strcmp(key, "--iodepth")) O.iodepth = (unsigned)atoi(v);
		else if (!strcmp(key, "--numjobs")) O.numjobs = (unsigned)atoi(v);
		else if (!strcmp(key, "--size")) { if (parse_size(v, &O.size)) return usage(); }
		else if (!strcmp(key, "--runtime")) O.runtime = atof(v);
		else if (!strcmp(key, "--backend")) O.backend = v;
		else if (!strcmp(key, "--fsync")) O.fsync_every = (unsigned)atoi(v);
		else if (!strcmp(key, "--iodepth_batch_submit")) O.batch = (unsigned)atoi(v);
		else return usage();
	}
	if (!O.target || !O.bs || !O.iodepth || !O.numjobs || O.iodepth > 256 || !O.batch || !O.size ||
	    O.size < O.bs)
		return usage();
	static const char *modes[] = { "read", "write", "randread", "randwrite", "randrw" };
	bool known = false;
	for (size_t i = 0; i < 5; i++)
		known |= !strcmp(O.rw, modes[i]);
	if (!known)
		return usage_error("--rw is one of read, write, randread, randwrite, randrw");
	O.random = !strncmp(O.rw, "rand", 4);
	O.mixed = !strcmp(O.rw, "randrw");
	O.reads = !strcmp(O.rw, "read") || !strcmp(O.rw, "randread");
	struct job *jobs = calloc(O.numjobs, sizeof(*jobs));
	pthread_t *th = calloc(O.numjobs, sizeof(*th));
	struct dio_vol *vol = NULL;
	int fd = -1;
	if (O.raw) {
		fd = open(O.target, O.append ? O_RDWR | O_CREAT | O_DIRECT | O_TRUNC : O_RDWR | O_CREAT | O_DIRECT, 0644);
		if (fd < 0) {
			perror(O.target);
			return 1;
		}
		struct stat st;
		fstat(fd, &st);
		if (S_ISREG(st.st_mode) && !O.append && (uint64_t)st.st_size < O.size * O.numjobs) {
			/* lay the file down so reads hit allocated blocks */
			void *b;
			if (posix_memalign(&b, 4096, 1 << 20))
				abort();
			memset(b, 0xcd, 1 << 20);
			for (uint64_t off = 0; off < O.size * O.numjobs; off += 1 << 20)
				if (pwrite(fd, b, 1 << 20, (off_t)off) < 0)
					break;
			fdatasync(fd);
			free(b);
		}
	} else {
		prepare_volume();
		vol = dio_mount(O.target, &(struct dio_mount_opts){ .backend = O.backend });
		if (!vol) {
			perror("dio_mount");
			return 1;
		}
	}
	struct dio_counters c0 = { 0 }, c1 = { 0 };
	if (vol)
		dio_counters(vol, &c0);
	g_jobs = jobs;
	struct progress *prog = progress_start("bench", 0);
	progress_set_fn(prog, bytes_so_far, NULL);
	progress_deadline(prog, O.runtime);
	double cpu0 = cpu_seconds();
	double t0 = now();
	for (unsigned i = 0; i < O.numjobs; i++) {
		jobs[i] = (struct job){ .id = (int)i, .seed = 0x9E3779B97F4A7C15ull * (i + 1), .vol = vol, .fd = fd };
		pthread_create(&th[i], NULL, job_main, &jobs[i]);
	}
	uint64_t ios = 0, bytes = 0;
	static uint64_t hist[NB];
	int err = 0;
	double jobs_cpu = 0;
	for (unsigned i = 0; i < O.numjobs; i++) {
		pthread_join(th[i], NULL);
		jobs_cpu += jobs[i].cpu;
		ios += jobs[i].ios;
		bytes += jobs[i].bytes;
		for (int b = 0; b < NB; b++)
			hist[b] += jobs[i].hist[b];
		if (jobs[i].err)
			err = jobs[i].err;
		free(jobs[i].map);
	}
	double el = now() - t0;
	double cpu = cpu_seconds() - cpu0;
	progress_end(prog);
	char backend[16] = "";
	if (vol) {
		dio_counters(vol, &c1);
		struct dio_statvfs sv;
		dio_statvfs(vol, &sv);
		snprintf(backend, sizeof(backend), "%s", sv.backend);
		dio_umount(vol);
	} else {
		snprintf(backend, sizeof(backend), "%s", O.backend);
		close(fd);
	}
	double iops = (double)ios / el, mbs = (double)bytes / el / 1e6;
	double cpu_us = ios ? jobs_cpu * 1e6 / (double)ios : 0, cpu_proc_us = ios ? cpu * 1e6 / (double)ios : 0;
	double p50 = lat_pct(hist, ios, 0.50), p99 = lat_pct(hist, ios, 0.99), p999 = lat_pct(hist, ios, 0.999);
	if (O.json)
		printf("{\"mode\":\"%s\",\"rw\":\"%s\",\"bs\":%zu,\"iodepth\":%u,\"numjobs\":%u,\"backend\":\"%s\","
		       "\"iops\":%.0f,\"mbps\":%.1f,\"cpu_s\":%.3f,\"cpu_us_per_io\":%.2f,\"cpu_process_us_per_io\":%.2f,"
		       "\"wait\":\"%s\","
		       "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
		       "\"device_ios\":%llu,\"flushes\":%llu,\"journal_commits\":%llu,\"error\":%d}\n",
		       O.raw ? "raw" : "libdio", O.rw, O.bs, O.iodepth, O.numjobs, backend, iops, mbs, jobs_cpu, cpu_us,
		       cpu_proc_us, O.spin ? "spin" : "sleep", p50, p99, p999, (unsigned long long)(c1.device_ios - c0.device_ios),
		       (unsigned long long)(c1.flushes - c0.flushes), (unsigned long long)(c1.journal_commits - c0.journal_commits), err);
	else
		printf("%s %s bs=%zu qd=%u jobs=%u backend=%s%s: %.0f IOPS, %.1f MB/s, %.2f us CPU/IO, lat p50 %.1f us, "
		       "p99 %.1f us, p99.9 %.1f us%s%s\n", O.raw ? "raw" : "libdio", O.rw, O.bs, O.iodepth, O.numjobs,
		       backend, O.spin ? " spin" : "", iops, mbs, cpu_us, p50, p99, p999, err ? ", error: " : "",
		       err ? errstr(err) : "");
	free(jobs);
	free(th);
	return err ? 1 : 0;
}
