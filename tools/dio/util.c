/*
 * dio(1): argument parsing, sizes, error lines, mounting, JSON output
 * and the progress line.  No getopt: musl's does not let options follow
 * operands, and dio's options may stand anywhere after the subcommand.
 */
#include "tool.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct globals G = { .backend = NULL };

double now_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *time_str(int64_t ns, char *out, size_t len)
{
	time_t t = (time_t)(ns / 1000000000);
	struct tm tm;
	if (!ns || !localtime_r(&t, &tm) || !strftime(out, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(out, len, "-");
	return out;
}

/* ---- arguments ---------------------------------------------------------- */

int usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "dio %s: ", G.cmd ? G.cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: %s\n", G.usage ? G.usage : "dio COMMAND ...");
	return EXIT_USAGE;
}

/* The global options, accepted after the subcommand too. */
static int global_opt(const char *name, char shrt, const char *val)
{
	if ((name && !strcmp(name, "json")) && !val) {
		G.json = true;
		return 1;
	}
	if ((name && !strcmp(name, "quiet")) || shrt == 'q') {
		G.quiet = true;
		return 1;
	}
	if (name && !strcmp(name, "backend"))
		return 2;   /* takes a value */
	return 0;
}

int parse_args(int argc, char **argv, const struct optspec *spec, struct args *a)
{
	memset(a, 0, sizeof(*a));
	bool opts_done = false;
	for (int i = 1; i < argc; i++) {
		char *s = argv[i];
		if (opts_done || s[0] != '-' || !s[1]) {
			if (a->npos == ARGS_MAX)
				return usage_error("too many operands");
			a->pos[a->npos++] = s;
			continue;
		}
		if (!strcmp(s, "--")) {
			opts_done = true;
			continue;
		}
		const char *name = NULL, *val = NULL;
		char shrt = 0, lbuf[64];
		if (s[1] == '-') {
			const char *eq = strchr(s + 2, '=');
			size_t n = eq ? (size_t)(eq - (s + 2)) : strlen(s + 2);
			if (n >= sizeof(lbuf))
				return usage_error("unknown option %s", s);
			memcpy(lbuf, s + 2, n);
			lbuf[n] = 0;
			name = lbuf;
			val = eq ? eq + 1 : NULL;
		} else {
			shrt = s[1];
			val = s[2] ? s + 2 : NULL;   /* -cVALUE */
		}
		int k = -1;
		for (int j = 0; spec && (spec[j].lng || spec[j].shrt); j++)
			if ((name && spec[j].lng && !strcmp(name, spec[j].lng)) || (shrt && spec[j].shrt == shrt))
				k = j;
		bool has_arg;
		if (k >= 0) {
			has_arg = spec[k].has_arg;
		} else if ((name && !strcmp(name, "help")) || shrt == 'h') {
			printf("usage: %s\n", G.usage ? G.usage : "dio COMMAND ...");
			exit(0);
		} else {
			int g = global_opt(name, shrt, val);
			if (!g)
				return usage_error("unknown option %s", s);
			if (g == 1) {
				if (val)
					return usage_error("option %s takes no value", s);
				continue;
			}
			has_arg = true;
		}
		if (has_arg && !val) {
			if (++i >= argc)
				return usage_error("option %s needs a value", s);
			val = argv[i];
		} else if (!has_arg && val) {
			return usage_error("option %s takes no value", s);
		}
		if (k < 0)
			G.backend = val;   /* --backend */
		else if (spec[k].repeat && a->nrep < ARGS_MAX)
			a->rep[a->nrep++] = val;
		else
			a->val[k] = has_arg ? val : "";
	}
	return 0;
}

int parse_cmd(int argc, char **argv, const struct optspec *spec, struct args *a, int min, int max,
	      const char *what)
{
	int r = parse_args(argc, argv, spec, a);
	if (!r && (a->npos < min || a->npos > max))
		r = usage_error("%s", what);
	return r;
}

int parse_size(const char *s, uint64_t *out)
{
	if (!s || !*s || *s == '-' || *s == '+')
		return -1;
	char *end;
	errno = 0;
	bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
	unsigned long long v = strtoull(s, &end, hex ? 16 : 10);
	if (errno || end == s)
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case 0: break;
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default: return -1;
	}
	if (*end && end[1])
		return -1;
	if (shift && v > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

const char *human(uint64_t b, char *buf, size_t len)
{
	static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)b;
	int u = 0;
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (!u)
		snprintf(buf, len, "%llu B", (unsigned long long)b);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
	return buf;
}

/* ---- errors and mounting ------------------------------------------------ */

/* strerror, the same on every C library for the errors dio reports
   (musl has no text for EUCLEAN, and words EBUSY differently) */
const char *errstr(int e)
{
	switch (e) {
	case EUCLEAN: return "Structure needs cleaning";
	case EBUSY: return "Device or resource busy";
	default: return strerror(e);
	}
}

int failmsg(const char *target, const char *name, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "dio: ");
	if (target)
		fprintf(stderr, "%s: ", target);
	if (name)
		fprintf(stderr, "%s: ", name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

int fail(const char *target, const char *name, int err)
{
	return failmsg(target, name, "%s", errstr(err));
}

static char last_log[512];
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void capture(int level, const char *msg, void *arg)
{
	(void)arg;
	if (level > DIO_LOG_ERR)
		return;
	pthread_mutex_lock(&log_mu);
	snprintf(last_log, sizeof(last_log), "%s", msg);
	pthread_mutex_unlock(&log_mu);
}

void tool_log_capture(void)
{
	dio_set_log(capture, NULL);
}

const char *tool_last_log(void)
{
	return last_log;
}

struct dio_vol *tool_mount(const char *target, bool rdonly)
{
	struct dio_mount_opts o = { .backend = G.backend, .flags = rdonly ? DIO_MOUNT_RDONLY : 0 };
	last_log[0] = 0;
	struct dio_vol *v = dio_mount(target, &o);
	if (v)
		return v;
	int e = errno;
	if (e == EBUSY)
		failmsg(target, NULL, "%s (the volume is mounted by another process)", errstr(e));
	else if (last_log[0] && e != ENOENT) {
		/* the library names the path itself; once is enough */
		size_t n = strlen(target);
		const char *why = !strncmp(last_log, target, n) && !strncmp(last_log + n, ": ", 2) ? last_log + n + 2
											: last_log;
		failmsg(target, NULL, "%s (%s)", errstr(e), why);
	}
	else
		fail(target, NULL, e);
	errno = e;
	return NULL;
}

int tool_umount(const char *target, struct dio_vol *v)
{
	return dio_umount(v) ? fail(target, NULL, errno) : 0;
}

/* ---- JSON ------------------------------------------------------------------ */

static struct {
	int depth;
	bool first[64];
} J;

static void put_str(const char *s, size_t n)
{
	fputc('"', stdout);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);   /* names are bytes: each one stands alone */
		else
			fputc(c, stdout);
	}
	fputc('"', stdout);
}

/* The separator, and the key inside an object (NULL inside an array). */
static void json_key(const char *key)
{
	if (!J.first[J.depth])
		fputc(',', stdout);
	J.first[J.depth] = false;
	if (key) {
		put_str(key, strlen(key));
		fputc(':', stdout);
	}
}

static void json_open(const char *key, char c)
{
	json_key(key);
	fputc(c, stdout);
	J.first[++J.depth] = true;
}

void json_begin(void)
{
	J.depth = 0;
	fputc('{', stdout);
	J.first[++J.depth] = true;
}

void json_end(void)
{
	fputs("}\n", stdout);
	J.depth = 0;
}

void json_obj(const char *key) { json_open(key, '{'); }
void json_arr(const char *key) { json_open(key, '['); }
void json_obj_end(void) { J.depth--; fputc('}', stdout); }
void json_arr_end(void) { J.depth--; fputc(']', stdout); }

void json_strn(const char *key, const char *s, size_t n)
{
	json_key(key);
	put_str(s, n);
}

void json_str(const char *key, const char *s)
{
	json_strn(key, s ? s : "", s ? strlen(s) : 0);
}

void json_u64(const char *key, uint64_t v) { json_key(key); printf("%llu", (unsigned long long)v); }
void json_i64(const char *key, int64_t v) { json_key(key); printf("%lld", (long long)v); }
void json_num(const char *key, double v) { json_key(key); printf("%.9g", v); }
void json_bool(const char *key, bool v) { json_key(key); fputs(v ? "true" : "false", stdout); }

/* ---- progress --------------------------------------------------------------- */

struct progress {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop, drawn;
	const char *what;
	uint64_t total;
	uint64_t done;                   /* atomic */
	uint64_t (*fn)(void *);
	void *arg;
	double t0, delay;
	double deadline;                 /* time-bound work: seconds from t0, 0 if none */
};

static void elapsed(double s, char *buf, size_t len)
{
	unsigned long t = (unsigned long)(s + 0.5);
	if (t >= 3600)
		snprintf(buf, len, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, len, "%lu:%02lu", t / 60, t % 60);
}

static void draw(struct progress *p)
{
	double t = now_sec() - p->t0;
	uint64_t done = p->fn ? p->fn(p->arg) : __atomic_load_n(&p->done, __ATOMIC_RELAXED);
	char line[160], a[32], b[32], r[32], left[32], el[32];
	int n;
	elapsed(t, el, sizeof(el));
	if (!done && !p->total) {
		n = snprintf(line, sizeof(line), "%s: %s", p->what, el);
	} else {
		double rate = t > 0 ? (double)done / t : 0;
		human((uint64_t)rate, r, sizeof(r));
		if (p->total) {
			int width = 20, fill = (int)((double)width * (double)(done < p->total ? done : p->total) / (double)p->total);
			char bar[32];
			for (int i = 0; i < width; i++)
				bar[i] = i < fill ? '#' : '.';
			bar[width] = 0;
			if (rate > 0 && done < p->total)
				elapsed((double)(p->total - done) / rate, left, sizeof(left));
			else
				snprintf(left, sizeof(left), "0:00");
			n = snprintf(line, sizeof(line), "%s: [%s] %s / %s  %s/s  %s left", p->what, bar,
				     human(done, a, sizeof(a)), human(p->total, b, sizeof(b)), r, left);
		} else {
			if (p->deadline > 0)
				elapsed(p->deadline > t ? p->deadline - t : 0, left, sizeof(left));
			n = snprintf(line, sizeof(line), p->deadline > 0 ? "%s: %s  %s/s  %s left" : "%s: %s  %s/s  %s",
				     p->what, human(done, a, sizeof(a)), r, p->deadline > 0 ? left : el);
		}
	}
	(void)n;
	fprintf(stderr, "\r\033[K%s", line);
	fflush(stderr);
	p->drawn = true;
}

static void *ticker(void *arg)
{
	struct progress *p = arg;
	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&p->cv, &p->mu, &ts);
		if (!p->stop && now_sec() - p->t0 >= p->delay)
			draw(p);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct progress *progress_start(const char *what, uint64_t total)
{
	if (G.quiet || G.json || !isatty(STDERR_FILENO))
		return NULL;
	struct progress *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	const char *d = getenv("DIO_PROGRESS_DELAY");
	p->delay = d ? atof(d) : 1.0;
	p->what = what;
	p->total = total;
	p->t0 = now_sec();
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (pthread_create(&p->th, NULL, ticker, p)) {
		free(p);
		return NULL;
	}
	return p;
}

void progress_set(struct progress *p, uint64_t done)
{
	if (p)
		__atomic_store_n(&p->done, done, __ATOMIC_RELAXED);
}

void progress_set_fn(struct progress *p, uint64_t (*fn)(void *), void *arg)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->arg = arg;
	pthread_mutex_unlock(&p->mu);
}

void progress_deadline(struct progress *p, double seconds)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->deadline = seconds;
	pthread_mutex_unlock(&p->mu);
}

void progress_end(struct progress *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->th, NULL);
	if (now_sec() - p->t0 >= p->delay)
		draw(p);   /* the final state, as the terminal will briefly show it */
	if (p->drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
}
