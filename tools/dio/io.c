/*
 * dio io: xfs_io-style scripted I/O on one file.  Each -c CMD is one
 * command line, run in order; the first that fails stops the script
 * (exit 1).  The file is created if a command writes to it; a script of
 * reads, stat and seek mounts the volume read-only.
 *
 *   pread [-v] OFF LEN      pwrite [-S BYTE] OFF LEN
 *   falloc [-k] OFF LEN     fpunch OFF LEN     fzero [-k] OFF LEN
 *   truncate SIZE           fsync              fdatasync
 *   stat                    seek -d|-h OFF
 */
#include "tool.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IO_USAGE "dio io TARGET NAME -c CMD [-c CMD]...\n" \
	"  CMD: pread [-v] OFF LEN | pwrite [-S BYTE] OFF LEN | falloc [-k] OFF LEN | fpunch OFF LEN |\n" \
	"       fzero [-k] OFF LEN | truncate SIZE | fsync | fdatasync | stat | seek -d|-h OFF"

struct iocmd {
	char *argv[8];
	int argc;
	char flag;                 /* -v, -k, -d, -h, or -S (then pattern) */
	unsigned pattern;
	uint64_t n[2];             /* OFF LEN, or SIZE */
};

static const struct {
	const char *name;
	const char *flags;         /* the one-letter flags it takes */
	int nnum;                  /* numbers it takes */
	bool writes;
} table[] = {
	{ "pread", "v", 2, false }, { "pwrite", "S", 2, true }, { "falloc", "k", 2, true },
	{ "fpunch", "", 2, true }, { "fzero", "k", 2, true }, { "truncate", "", 1, true },
	{ "fsync", "", 0, false }, { "fdatasync", "", 0, false }, { "stat", "", 0, false },
	{ "seek", "dh", 1, false },
};
#define NCMDS (int)(sizeof(table) / sizeof(table[0]))

/* Split and check one command; its table index or -1 (message printed). */
static int io_parse(char *line, struct iocmd *c)
{
	memset(c, 0, sizeof(*c));
	c->pattern = 0xcd;   /* xfs_io's default */
	for (char *t = strtok(line, " \t"); t; t = strtok(NULL, " \t")) {
		if (c->argc == 8)
			return usage_error("too many words in -c \"%s\"", line), -1;
		c->argv[c->argc++] = t;
	}
	if (!c->argc)
		return usage_error("empty -c command"), -1;
	int k = 0;
	while (k < NCMDS && strcmp(table[k].name, c->argv[0]))
		k++;
	if (k == NCMDS)
		return usage_error("unknown io command \"%s\"", c->argv[0]), -1;
	int nn = 0;
	for (int i = 1; i < c->argc; i++) {
		char *w = c->argv[i];
		if (w[0] == '-' && w[1] && !w[2] && strchr(table[k].flags, w[1])) {
			c->flag = w[1];
			if (w[1] == 'S') {
				uint64_t b;
				if (++i >= c->argc || parse_size(c->argv[i], &b) || b > 255)
					return usage_error("%s: -S takes a byte value", c->argv[0]), -1;
				c->pattern = (unsigned)b;
			}
		} else if (nn < table[k].nnum && !parse_size(w, &c->n[nn])) {
			nn++;
		} else {
			return usage_error("%s: bad argument \"%s\"", c->argv[0], w), -1;
		}
	}
	if (nn != table[k].nnum)
		return usage_error("%s needs %d number%s", c->argv[0], table[k].nnum, table[k].nnum == 1 ? "" : "s"), -1;
	if (!strcmp(c->argv[0], "seek") && !c->flag)
		return usage_error("seek needs -d (data) or -h (hole)"), -1;
	if ((c->n[0] > INT64_MAX || c->n[1] > INT64_MAX))
		return usage_error("%s: number too large", c->argv[0]), -1;
	return k;
}

static void hexdump(const uint8_t *p, size_t n, uint64_t base)
{
	for (size_t i = 0; i < n; i += 16) {
		printf("%08llx: ", (unsigned long long)(base + i));
		for (size_t k = 0; k < 16; k++)
			if (i + k < n)
				printf(" %02x", p[i + k]);
			else
				printf("   ");
		printf("  ");
		for (size_t k = 0; k < 16 && i + k < n; k++)
			putchar(p[i + k] >= 0x20 && p[i + k] < 0x7f ? p[i + k] : '.');
		putchar('\n');
	}
}

static void hexstr(const uint8_t *p, size_t n)
{
	static const char d[] = "0123456789abcdef";
	char *s = malloc(2 * n + 1);
	if (!s)
		return;
	for (size_t i = 0; i < n; i++) {
		s[2 * i] = d[p[i] >> 4];
		s[2 * i + 1] = d[p[i] & 15];
	}
	json_strn("data", s, 2 * n);
	free(s);
}

/* Run one command; 0 or -errno. */
static int io_run(struct dio_file *f, const struct iocmd *c)
{
	const char *cmd = c->argv[0];
	uint64_t off = c->n[0], len = c->n[1];
	if (G.json) {
		json_obj(NULL);
		json_str("command", cmd);
	}
	int e = 0;
	if (!strcmp(cmd, "pread") || !strcmp(cmd, "pwrite")) {
		bool rd = cmd[1] == 'r';
		uint8_t *buf;
		if (len > SIZE_MAX / 2 || posix_memalign((void **)&buf, 4096, len ? len : 1))
			return -ENOMEM;
		if (!rd)
			memset(buf, (int)c->pattern, len);
		ssize_t r = rd ? dio_pread(f, buf, len, (off_t)off) : dio_pwrite(f, buf, len, (off_t)off);
		if (r < 0) {
			e = -errno;
		} else if (G.json) {
			json_u64("offset", off);
			json_u64("length", len);
			json_u64("bytes", (uint64_t)r);
			if (rd && c->flag == 'v')
				hexstr(buf, (size_t)r);
		} else if (!G.quiet) {
			printf("%s %lld/%llu bytes at offset %llu\n", rd ? "read" : "wrote", (long long)r,
			       (unsigned long long)len, (unsigned long long)off);
			if (rd && c->flag == 'v')
				hexdump(buf, (size_t)r, off);
		}
		free(buf);
	} else if (!strcmp(cmd, "falloc") || !strcmp(cmd, "fpunch") || !strcmp(cmd, "fzero")) {
		int mode = cmd[1] == 'p' ? DIO_FALLOC_PUNCH_HOLE | DIO_FALLOC_KEEP_SIZE
			 : cmd[1] == 'z' ? DIO_FALLOC_ZERO_RANGE : 0;
		if (c->flag == 'k')
			mode |= DIO_FALLOC_KEEP_SIZE;
		e = dio_fallocate(f, mode, (off_t)off, (off_t)len) ? -errno : 0;
		if (!e && G.json) {
			json_u64("offset", off);
			json_u64("length", len);
		}
	} else if (!strcmp(cmd, "truncate")) {
		e = dio_ftruncate(f, (off_t)off) ? -errno : 0;
		if (!e && G.json)
			json_u64("size", off);
	} else if (!strcmp(cmd, "fsync") || !strcmp(cmd, "fdatasync")) {
		e = (cmd[1] == 's' ? dio_fsync(f) : dio_fdatasync(f)) ? -errno : 0;
	} else if (!strcmp(cmd, "stat")) {
		struct dio_stat st;
		e = dio_fstat(f, &st) ? -errno : 0;
		if (!e && G.json) {
			json_u64("id", st.id);
			json_u64("size", st.size);
			json_u64("allocated", st.allocated);
			json_u64("extents", st.nextents);
		} else if (!e && !G.quiet) {
			printf("id %llu size %llu allocated %llu extents %llu\n", (unsigned long long)st.id,
			       (unsigned long long)st.size, (unsigned long long)st.allocated,
			       (unsigned long long)st.nextents);
		}
	} else {   /* seek */
		bool data = c->flag == 'd';
		off_t r = dio_lseek(f, (off_t)off, data ? SEEK_DATA : SEEK_HOLE);
		if (r < 0 && errno != ENXIO)
			e = -errno;
		else if (G.json) {
			json_str("whence", data ? "data" : "hole");
			json_u64("offset", off);
			if (r < 0)
				json_str("result", "EOF");
			else
				json_u64("result", (uint64_t)r);
		} else if (!G.quiet) {
			if (r < 0)
				printf("%s from %llu: EOF\n", data ? "DATA" : "HOLE", (unsigned long long)off);
			else
				printf("%s from %llu: %lld\n", data ? "DATA" : "HOLE", (unsigned long long)off,
				       (long long)r);
		}
	}
	if (G.json) {
		if (e)
			json_str("error", errstr(-e));
		json_obj_end();
	}
	return e;
}

int cmd_io(int argc, char **argv)
{
	G.usage = IO_USAGE;
	static const struct optspec spec[] = { { "command", 'c', true, true }, { 0 } };
	struct args a;
	int r = parse_cmd(argc, argv, spec, &a, 2, 2, "TARGET and NAME are needed");
	if (r)
		return r;
	if (!a.nrep)
		return usage_error("no -c command");
	const char *target = a.pos[0], *name = a.pos[1];
	struct iocmd *cmds = calloc((size_t)a.nrep, sizeof(*cmds));
	char **lines = calloc((size_t)a.nrep, sizeof(*lines));
	bool writes = false;
	for (int i = 0; i < a.nrep && !r; i++) {
		lines[i] = strdup(a.rep[i]);
		int k = io_parse(lines[i], &cmds[i]);
		if (k < 0)
			r = EXIT_USAGE;
		else
			writes |= table[k].writes;
	}
	struct dio_vol *v = r ? NULL : tool_mount(target, !writes);
	struct dio_file *f = NULL;
	if (!r && !v)
		r = 1;
	if (!r && !(f = dio_open(v, name, writes ? O_RDWR | O_CREAT : O_RDONLY)))
		r = fail(target, name, errno);
	if (!r && G.json) {
		json_begin();
		json_str("name", name);
		json_arr("results");
	}
	for (int i = 0; i < a.nrep && f && !r; i++) {
		int e = io_run(f, &cmds[i]);
		if (e)
			r = failmsg(target, name, "%s: %s", cmds[i].argv[0], errstr(-e));
	}
	if (f && G.json) {
		json_arr_end();
		json_end();
	}
	if (f)
		dio_close(f);
	if (v)
		r |= tool_umount(target, v);
	for (int i = 0; i < a.nrep; i++)
		free(lines[i]);
	free(lines);
	free(cmds);
	return r;
}
