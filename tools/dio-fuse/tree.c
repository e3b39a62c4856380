/*
 * The mount's paths over libdio's flat names.  '/' in a name separates
 * directories, as object stores' keys are shown: "db/wal/1" is file 1 in
 * directory db/wal, and a directory exists while names lie under it.
 * mkdir makes an empty directory as a marker file, the name with a '/'
 * at its end ("db/old/"), which rmdir removes.
 *
 * One spelling per name, both ways.  A path component shows '%' as
 * "%25".  A name that cannot be a path (an empty component, as in
 * "/db/x" or "a//b", or a component "." or "..") is listed in the deepest
 * directory its valid components reach, as one file entry with its '/'
 * as "%2F" ("%2Fdb%2Fx" at the top), and "." and ".." as whole entries
 * are "%2E" and "%2E%2E".  A path is decoded, then encoded again, and
 * refused (EINVAL) when that does not give it back: lowercase escapes,
 * an escape of anything else, "%2F" in what could be a directory path.
 *
 * A file and a directory of the same name ("a" and "a/b"): the directory
 * is shown; the file stays reachable through dio(1) and the library.
 */
#include "dfuse.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

static bool dot(const char *s, size_t n)
{
	return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

/* A directory's name component: not empty, not "." or "..". */
static bool comp_ok(const char *s, size_t n)
{
	return n && !dot(s, n);
}

/* The entry of r (no '/'), or of a name shown flat (its '/' escaped). */
static int enc(const char *r, size_t n, char *out, size_t size)
{
	size_t k = 0;
	if (dot(r, n)) {
		for (size_t i = 0; i < n; i++, k += 3)
			memcpy(out + k, "%2E", 3);
		out[k] = 0;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		const char *e = r[i] == '/' ? "%2F" : r[i] == '%' ? "%25" : NULL;
		if (k + (e ? 3 : 1) >= size)
			return -ENAMETOOLONG;
		if (e) {
			memcpy(out + k, e, 3);
			k += 3;
		} else {
			out[k++] = r[i];
		}
	}
	out[k] = 0;
	return 0;
}

/* r of n bytes shown flat: its first component cannot be a directory's */
static bool shown_flat(const char *r, size_t n)
{
	const char *slash = memchr(r, '/', n);
	return slash && !comp_ok(r, (size_t)(slash - r));
}

/* One path component c (n bytes) decoded to out; bytes written or -errno. */
static int dec(const char *c, size_t n, char *out, size_t room)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = c[i];
		if (ch == '%') {
			if (i + 2 >= n)
				return -EINVAL;
			if (c[i + 1] != '2' || (c[i + 2] != '5' && c[i + 2] != 'F' && c[i + 2] != 'E'))
				return -EINVAL;
			ch = c[i + 2] == '5' ? '%' : c[i + 2] == 'F' ? '/' : '.';
			i += 2;
		}
		if (k == room)
			return -ENAMETOOLONG;
		out[k++] = ch;
	}
	return (int)k;
}

int name_of(const char *path, char *out)
{
	if (!path)
		return -ESTALE;   /* an unlinked file, without its handle */
	if (*path != '/')
		return -ENOENT;
	size_t k = 0;
	int last_flat = 0;
	for (const char *p = path + 1; *p;) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (k && k + 1 > DIO_NAME_MAX)
			return -ENAMETOOLONG;
		if (k)
			out[k++] = '/';
		int d = dec(p, n, out + k, DIO_NAME_MAX - k);
		if (d < 0)
			return d;
		char again[ENTRY_BUF];
		bool flat = shown_flat(out + k, (size_t)d);
		if ((!flat && memchr(out + k, '/', (size_t)d)) || enc(out + k, (size_t)d, again, sizeof(again)) ||
		    strlen(again) != n || memcmp(again, p, n))
			return -EINVAL;   /* not the one spelling of a name */
		if ((flat || dot(out + k, (size_t)d)) && end)
			return -ENOENT;   /* shown as a file: no directory */
		last_flat = flat || dot(out + k, (size_t)d);
		k += (size_t)d;
		p += n + (end ? 1 : 0);
	}
	out[k] = 0;
	return last_flat;
}

void with_slash(const char *name, char *out)
{
	size_t n = strnlen(name, DIO_NAME_MAX);
	memcpy(out, name, n);
	out[n] = '/';
	out[n + 1] = 0;
}

static int first_other(const char *name, const struct dio_stat *st, void *arg)
{
	(void)st;
	const char *but = arg;
	return !but || strcmp(name, but) ? 1 : 0;
}

bool dir_has(const char *name, const char *but)
{
	char prefix[NAME_BUF];
	with_slash(name, prefix);
	return dio_list(fs.vol, prefix, first_other, (void *)but) == 1;
}

bool is_dir(const char *name)
{
	return !*name || dir_has(name, NULL);
}

int mark_dir(const char *name)
{
	char marker[NAME_BUF];
	with_slash(name, marker);
	if (strlen(marker) > DIO_NAME_MAX)
		return -ENAMETOOLONG;
	struct dio_file *f = dio_open(fs.vol, marker, O_WRONLY | O_CREAT | O_EXCL);
	if (!f)
		return -errno;
	return dio_close(f) ? -errno : 0;
}

void keep_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[ENTRY_BUF], parent[NAME_BUF];
	if (!slash || slash == path || (size_t)(slash - path) >= sizeof(dir))
		return;   /* the top is always there */
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if (name_of(dir, parent) == 0 && !is_dir(parent))
		mark_dir(parent);   /* best effort: the name itself is gone */
}

/* ---- one level ------------------------------------------------------------ */

struct level {
	size_t plen;
	entry_fn fill;
	void *buf;
};

static int flat_one(const char *name, const struct dio_stat *st, void *arg)
{
	struct level *l = arg;
	char ent[ENTRY_BUF];
	if (enc(name + l->plen, strlen(name + l->plen), ent, sizeof(ent)))
		return 0;
	return l->fill(l->buf, ent, name, st);
}

static int level_one(const char *name, const struct dio_stat *st, void *arg)
{
	struct level *l = arg;
	const char *r = name + l->plen;
	size_t n = strlen(r);
	char ent[ENTRY_BUF];
	if (st) {
		if (!dot(r, n) && dir_has(name, NULL))
			return 0;   /* the directory of the same name is shown */
		return enc(r, n, ent, sizeof(ent)) ? 0 : l->fill(l->buf, ent, name, st);
	}
	if (!comp_ok(r, n - 1))   /* its names cannot be paths: each shown flat */
		return dio_list(fs.vol, name, flat_one, l) > 0;
	char dir[NAME_BUF];
	memcpy(dir, name, l->plen + n - 1);
	dir[l->plen + n - 1] = 0;
	return enc(r, n - 1, ent, sizeof(ent)) ? 0 : l->fill(l->buf, ent, dir, NULL);
}

int list_level(const char *name, entry_fn fill, void *buf)
{
	char dir[NAME_BUF];
	if (*name)
		with_slash(name, dir);
	else
		dir[0] = 0;
	struct level l = { strlen(dir), fill, buf };
	int r = dio_listdir(fs.vol, dir, level_one, &l);
	return r < 0 ? -errno : 0;   /* 1: the buffer is full, as readdir allows */
}
