/*
 * dio(1) put and get: files in and out with large aligned I/Os kept in
 * flight through a dio_queue, so the device works while the host side
 * reads or writes, and one sync at the end.
 *
 * put writes a temporary name (.dio-put.<hash of NAME>) and renames it
 * over NAME only once its data and size are durable, then syncs the
 * rename: a crash or a kill leaves NAME as it was or complete, never
 * half copied.  A temporary file a killed put left behind is replaced by
 * the next put of the same NAME (a mount is exclusive, so no other put
 * can be using it).
 */
#include "tool.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ftw.h>
#include <sys/stat.h>

#define IN_FLIGHT (16u << 20)   /* bytes of requests in flight */
#define MAX_DEPTH 16u

/*
 * Requests of `chunk` bytes, `depth` of them in flight.  A chunk is 4 MiB
 * where the device takes 1/8 of that as one I/O (a queue request of at
 * most 8 device I/Os goes down asynchronously), else 1 MiB: large host
 * reads and writes, few system calls.  Measured in bench/RESULTS.md.
 */
struct ring {
	uint8_t *mem;              /* depth chunks, aligned for the direct path */
	size_t chunk;
	unsigned depth;
	struct dio_queue *q;
	ssize_t res[MAX_DEPTH];
	bool done[MAX_DEPTH];
};

static int ring_open(struct ring *r, struct dio_vol *v, struct dio_file *f)
{
	struct dio_info info;
	memset(r, 0, sizeof(*r));
	if (dio_info(f, &info))
		return -errno;
	r->chunk = info.max_io >= (512u << 10) ? 4u << 20 : 1u << 20;
	r->depth = IN_FLIGHT / (unsigned)r->chunk;
	size_t align = info.mem_align > 4096 ? info.mem_align : 4096;
	if (posix_memalign((void **)&r->mem, align, r->depth * r->chunk))
		return -ENOMEM;
	/* the queue never leaves this thread: io_uring may bind it */
	r->q = dio_queue_create_flags(v, r->depth, DIO_QUEUE_SINGLE_THREAD);
	if (!r->q) {
		int e = errno;
		free(r->mem);
		return -e;
	}
	return 0;
}

static void ring_close(struct ring *r)
{
	if (r->q)
		dio_queue_destroy(r->q);
	free(r->mem);
}

static uint8_t *slot(struct ring *r, uint64_t seq) { return r->mem + (size_t)(seq % r->depth) * r->chunk; }

static int submit(struct ring *r, struct dio_file *f, int op, uint64_t seq, size_t len)
{
	struct dio_req q = { .op = op, .file = f, .buf = slot(r, seq), .len = len,
			     .offset = (off_t)(seq * r->chunk), .user_data = seq };
	r->done[seq % r->depth] = false;
	return dio_submit(r->q, &q, 1) == 1 ? 0 : -errno;
}

/* Wait for at least one completion; record each.  0 or -errno. */
static int reap(struct ring *r)
{
	struct dio_cqe c[MAX_DEPTH];
	int n = dio_reap(r->q, c, 1, r->depth, -1);
	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		r->res[c[i].user_data % r->depth] = c[i].res;
		r->done[c[i].user_data % r->depth] = true;
	}
	return 0;
}

/*
 * A regular host file is written with O_DIRECT where its file system
 * takes it: the chunks are aligned, so each goes to the disk while the
 * next reads are in flight, instead of piling up in the page cache for
 * one long flush at the end.  A tail that is not a multiple of 4096, or
 * a file system that refuses, switches the descriptor back to buffered.
 */
static int write_all(int fd, const uint8_t *p, size_t n)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && (fl & O_DIRECT) && n % 4096) {
		fcntl(fd, F_SETFL, fl & ~O_DIRECT);
		fl &= ~O_DIRECT;
	}
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EINVAL && fl >= 0 && (fl & O_DIRECT)) {
			fcntl(fd, F_SETFL, fl & ~O_DIRECT);
			fl &= ~O_DIRECT;
			continue;
		}
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static size_t read_full(int fd, uint8_t *p, size_t n, int *err)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*err = -errno;
			break;
		}
		if (!r)
			break;
		got += (size_t)r;
	}
	return got;
}

/* ---- out ----------------------------------------------------------------------- */

/* A host file written through the page cache (its file system refused
   O_DIRECT): start writing the new pages back at once, so the disk works
   while the next reads are in flight instead of in one long flush at the
   end.  Where sync_file_range is missing the end's sync does it all. */
static void start_writeback(int fd, uint64_t off, size_t len)
{
#ifdef SYNC_FILE_RANGE_WRITE
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_DIRECT))
		sync_file_range(fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
#else
	(void)fd, (void)off, (void)len;
#endif
}

static uint64_t g_bytes;
static double g_secs;

/* Open file `name` of v for copy_out; NULL with the error printed. */
struct dio_file *open_out(const char *target, struct dio_vol *v, const char *name)
{
	struct dio_file *f = dio_open(v, name, O_RDONLY);
	if (!f)
		fail(target, name, errno);
	return f;
}

/*
 * Copy file f (`name`) of v to fd, in order, with the ring's reads in
 * flight, and close f.  The last read asks for whole offset_align units:
 * the direct path, and the read stops at the file's end.  0, or 1 with
 * the error printed.
 */
int copy_out(const char *target, struct dio_vol *v, struct dio_file *f, const char *name, int fd, const char *what)
{
	struct dio_stat st;
	struct dio_info info;
	if (dio_fstat(f, &st) || dio_info(f, &info)) {
		int e = errno;
		dio_close(f);
		return fail(target, name, e);
	}
	struct ring r;
	int e = ring_open(&r, v, f);
	if (e) {
		dio_close(f);
		return fail(target, name, -e);
	}
	struct progress *p = what ? progress_start(what, st.size) : NULL;
	struct stat hs;
	bool writeback = fstat(fd, &hs) == 0 && S_ISREG(hs.st_mode);
	uint64_t nchunks = (st.size + r.chunk - 1) / r.chunk, sub = 0, out = 0;
	double t0 = now_sec();
	while (!e && out < nchunks) {
		while (!e && sub < nchunks && sub - out < r.depth) {
			uint64_t left = st.size - sub * r.chunk;
			size_t len = left >= r.chunk ? r.chunk : (size_t)((left + info.offset_align - 1) & ~(uint64_t)(info.offset_align - 1));
			e = submit(&r, f, DIO_OP_READ, sub++, len);
		}
		if (!e && !r.done[out % r.depth])
			e = reap(&r);
		while (!e && out < sub && r.done[out % r.depth]) {
			uint64_t left = st.size - out * r.chunk;
			size_t want = left >= r.chunk ? r.chunk : (size_t)left;
			ssize_t got = r.res[out % r.depth];
			if (got < 0)
				e = (int)got;
			else if ((size_t)got != want)
				e = -EIO;   /* the file cannot shrink under an exclusive mount */
			else
				e = write_all(fd, slot(&r, out), want);
			if (!e && writeback)
				start_writeback(fd, out * r.chunk, want);
			out++;
			progress_set(p, out * r.chunk < st.size ? out * r.chunk : st.size);
		}
	}
	g_bytes = st.size;
	g_secs = now_sec() - t0;
	progress_end(p);
	ring_close(&r);   /* drains what is still in flight after an error */
	dio_close(f);
	return e ? fail(target, name, -e) : 0;
}

static void print_rate(const char *verb, const char *name)
{
	double rate = g_secs > 0 ? (double)g_bytes / g_secs : 0;
	if (G.json) {
		json_begin();
		json_str("name", name);
		json_u64("bytes", g_bytes);
		json_num("seconds", g_secs);
		json_num("bytes_per_second", rate);
		json_end();
	} else if (!G.quiet) {
		char h1[32], h2[32];
		fprintf(stderr, "%s %s: %s in %.2f s, %s/s\n", verb, name, human(g_bytes, h1, sizeof(h1)), g_secs,
			human((uint64_t)rate, h2, sizeof(h2)));
	}
}

int cmd_get(int argc, char **argv)
{
	G.usage = "dio get TARGET NAME [HOSTFILE|HOSTDIR]   ('-' or none: standard output)";
	struct args a;
	int r = parse_cmd(argc, argv, NULL, &a, 2, 3, "TARGET, NAME and at most one HOSTFILE");
	if (r)
		return r;
	const char *target = a.pos[0], *name = a.pos[1];
	bool to_stdout = a.npos == 2 || !strcmp(a.pos[2], "-");
	if (to_stdout && G.json)
		return usage_error("--json prints to standard output: name a HOSTFILE");
	/* a directory takes the file under NAME's last component, as cp does */
	const char *dest = to_stdout ? NULL : a.pos[2];
	char in_dir[4096];
	struct stat ds;
	if (dest && stat(dest, &ds) == 0 && S_ISDIR(ds.st_mode)) {
		const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
		if (snprintf(in_dir, sizeof(in_dir), "%s/%s", dest, base) >= (int)sizeof(in_dir))
			return fail(dest, NULL, ENAMETOOLONG);
		dest = in_dir;
	}
	/* nothing on the host changes before the copy can start: the volume
	   itself is refused, then NAME is opened, then the temporary file */
	if (dest && hostout_check(target, dest))
		return 1;
	struct dio_vol *v = tool_mount(target, true);
	if (!v)
		return 1;
	struct dio_file *f = open_out(target, v, name);
	if (!f)
		return tool_umount(target, v) | 1;
	struct hostout o = { .fd = STDOUT_FILENO };
	if (dest && hostout_open(&o, dest)) {
		dio_close(f);
		return tool_umount(target, v) | 1;
	}
	r = copy_out(target, v, f, name, o.fd, "get");
	if (!to_stdout && r)
		hostout_abort(&o);
	else if (!to_stdout)
		r = hostout_commit(&o);
	if (!r && !to_stdout)
		print_rate("get", name);
	return tool_umount(target, v) | r;
}

/* ---- in ------------------------------------------------------------------------ */

static void temp_name(const char *name, char *out, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a */
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
	snprintf(out, len, ".dio-put.%016llx", (unsigned long long)h);
}

/* Copy fd into f with the ring's writes in flight; 0 or -errno. */
static int copy_in(struct ring *r, struct dio_file *f, int fd, struct progress *p, uint64_t *total)
{
	uint64_t sub = 0, acked = 0;
	int e = 0;
	bool eof = false;
	while (!e && (!eof || acked < sub)) {
		if (!eof && sub - acked < r->depth) {
			size_t n = read_full(fd, slot(r, sub), r->chunk, &e);
			if (e)
				break;
			if (n)
				e = submit(r, f, DIO_OP_WRITE, sub, n);
			if (n < r->chunk)
				eof = true;   /* a misaligned tail goes through the fallback path */
			if (n) {
				sub++;
				*total += n;
			}
			continue;
		}
		e = reap(r);
		while (!e && acked < sub && r->done[acked % r->depth]) {
			ssize_t res = r->res[acked % r->depth];
			if (res < 0)
				e = (int)res;
			r->done[acked % r->depth] = false;
			acked++;
			progress_set(p, acked * r->chunk < *total ? acked * r->chunk : *total);
		}
	}
	return e;
}

/* Copy host file `host` ('-': standard input) in as `name`, durable and
   whole or not at all.  0, or 1 with the error printed. */
static int put_one(const char *target, struct dio_vol *v, const char *host, const char *name)
{
	bool from_stdin = !strcmp(host, "-");
	int fd = from_stdin ? STDIN_FILENO : open(host, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(host, NULL, errno);
	struct stat st;
	uint64_t total_hint = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	char tmp[32];
	temp_name(name, tmp, sizeof(tmp));
	struct dio_file *f = dio_open(v, tmp, O_RDWR | O_CREAT | O_TRUNC);
	struct ring ring;
	int e = f ? ring_open(&ring, v, f) : -errno;
	uint64_t total = 0;
	double t0 = now_sec();
	if (!e) {
		struct progress *p = progress_start("put", total_hint);
		e = copy_in(&ring, f, fd, p, &total);
		progress_end(p);
		ring_close(&ring);
	}
	/* data, size and allocation durable; then the name; then the name durable */
	if (!e && dio_fdatasync(f))
		e = -errno;
	if (f && dio_close(f) && !e)
		e = -errno;
	if (!e && dio_rename(v, tmp, name))
		e = -errno;
	if (!e && dio_syncfs(v))
		e = -errno;
	g_bytes = total;
	g_secs = now_sec() - t0;
	if (!from_stdin)
		close(fd);
	if (e) {
		dio_unlink(v, tmp);
		return fail(target, name, -e);
	}
	print_rate("put", name);
	return 0;
}

static const char *base_of(const char *path)
{
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;   /* "src/" is src */
	const char *b = path + n;
	while (b > path && b[-1] != '/')
		b--;
	return b;
}

/* DIR/ + the last part of host (trailing '/' dropped); 0 or -ENAMETOOLONG */
static int name_in(const char *dir, const char *host, const char *rest, char *out)
{
	const char *b = base_of(host);
	size_t bl = strlen(b);
	while (bl && b[bl - 1] == '/')
		bl--;
	int n = snprintf(out, DIO_NAME_MAX + 1, "%s%.*s%s", dir, (int)bl, b, rest);
	return n < 0 || n > DIO_NAME_MAX ? -ENAMETOOLONG : 0;
}

/* -r: every regular file under a host directory (nftw's order), as
   prefix + its path below the directory */
static struct {
	const char *target, *prefix;
	size_t toplen;
	struct dio_vol *v;
	int r;
} walk;

static int put_walked(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type != FTW_F || !S_ISREG(st->st_mode))
		return 0;
	char name[DIO_NAME_MAX + 1];
	int n = snprintf(name, sizeof(name), "%s%s", walk.prefix, path + walk.toplen);
	if (n < 0 || n > DIO_NAME_MAX)
		walk.r |= failmsg(path, NULL, "its name in the volume would pass %d bytes", DIO_NAME_MAX);
	else
		walk.r |= put_one(walk.target, walk.v, path, name);
	return 0;
}

static int put_tree(const char *target, struct dio_vol *v, const char *host, const char *prefix)
{
	char top[4096];
	snprintf(top, sizeof(top), "%s", host);
	size_t n = strlen(top);
	while (n > 1 && top[n - 1] == '/')
		top[--n] = 0;
	walk.target = target, walk.prefix = prefix, walk.toplen = n, walk.v = v, walk.r = 0;
	int r = nftw(top, put_walked, 16, 0) ? fail(host, NULL, errno) : 0;
	return r | walk.r;
}

/*
 * dio put TARGET HOSTFILE [NAME]: one file, as NAME or its base name.
 * dio put TARGET HOSTFILE... DIR/: each under DIR/ by its base name (a
 * last operand ending in '/' is a directory of the volume's tree).
 * -r: a host directory goes in as DIR/BASE/... (or BASE/...).  With
 * two operands, a NAME that is an existing host file other than HOSTFILE
 * is refused: it reads as two files to copy.
 */
int cmd_put(int argc, char **argv)
{
	G.usage = "dio put [-r] TARGET HOSTFILE [NAME]  |  dio put [-r] TARGET HOSTFILE... DIR/   (HOSTFILE '-': standard input, NAME needed)";
	static const struct optspec spec[] = { { "recursive", 'r', false, false }, { 0 } };
	struct args a;
	int r = parse_cmd(argc, argv, spec, &a, 2, ARGS_MAX, "TARGET and a HOSTFILE are needed");
	if (r)
		return r;
	bool recurse = a.val[0] != NULL;
	const char *target = a.pos[0], *last = a.pos[a.npos - 1];
	size_t ll = strlen(last);
	bool to_dir = a.npos >= 3 && last[ll - 1] == '/';
	int nsrc = a.npos == 2 ? 1 : to_dir ? a.npos - 2 : 1;
	if (a.npos > 3 && !to_dir)
		return usage_error("several HOSTFILEs go into a DIR/: end the last operand with '/'");
	struct stat hs, ns;
	if (a.npos == 3 && !to_dir && stat(last, &ns) == 0 && !(stat(a.pos[1], &hs) == 0 && hs.st_ino == ns.st_ino && hs.st_dev == ns.st_dev))
		return usage_error("\"%s\" is also a host file: end it with '/' for a directory, or to store %s under that "
				   "name use: dio put %s - %s < %s", last, a.pos[1], target, last, a.pos[1]);
	for (int i = 1; i <= nsrc; i++) {
		if (!strcmp(a.pos[i], "-") && (a.npos == 2 || to_dir))
			return usage_error("reading standard input needs a NAME");
		if (stat(a.pos[i], &hs) == 0 && S_ISDIR(hs.st_mode) && !recurse)
			return failmsg(a.pos[i], NULL, "is a directory (use -r)");
	}
	struct dio_vol *v = tool_mount(target, false);
	if (!v)
		return 1;
	const char *dir = to_dir ? last : "";
	for (int i = 1; i <= nsrc; i++) {
		const char *host = a.pos[i];
		char name[DIO_NAME_MAX + 1];
		if (recurse && stat(host, &hs) == 0 && S_ISDIR(hs.st_mode)) {
			/* as cp -r: into DIR/BASE/, or as NAME/ when NAME is new */
			if (a.npos == 3 && !to_dir)
				snprintf(name, sizeof(name), "%s", last);
			else if (name_in(dir, host, "", name))
				name[0] = 0;
			r |= *name ? put_tree(target, v, host, name) : fail(target, host, ENAMETOOLONG);
			continue;
		}
		if (a.npos == 3 && !to_dir)
			r |= strlen(last) > DIO_NAME_MAX ? fail(target, last, ENAMETOOLONG) : put_one(target, v, host, last);
		else if (!*base_of(host))
			r |= usage_error("no file name in \"%s\": give a NAME", host);
		else if (name_in(dir, host, "", name))
			r |= fail(target, host, ENAMETOOLONG);
		else
			r |= put_one(target, v, host, name);
	}
	return tool_umount(target, v) | r;
}
