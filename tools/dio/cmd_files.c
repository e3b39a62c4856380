/*
 * dio(1) file commands: ls, stat, rm, mv, truncate, cat.
 */
#include "tool.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- ls ---------------------------------------------------------------------- */

struct ls_ctx {
	bool lng;
	uint64_t n;
};

/* st NULL: a directory, "DIR/" (dio_listdir) */
static int ls_one(const char *name, const struct dio_stat *st, void *arg)
{
	struct ls_ctx *c = arg;
	c->n++;
	if (G.json) {
		json_obj(NULL);
		json_str("name", name);
		if (st) {
			json_u64("size", st->size);
			json_u64("allocated", st->allocated);
			json_u64("extents", st->nextents);
			json_u64("id", st->id);
			json_i64("mtime_ns", st->mtime_ns);
		} else {
			json_bool("directory", true);
		}
		json_obj_end();
	} else if (c->lng && st) {
		char when[64];
		printf("%14llu %14llu %8llu %8llu  %-19s  %s\n", (unsigned long long)st->size,
		       (unsigned long long)st->allocated, (unsigned long long)st->nextents,
		       (unsigned long long)st->id, time_str(st->mtime_ns, when, sizeof(when)), name);
	} else if (c->lng) {
		printf("%14s %14s %8s %8s  %-19s  %s\n", "-", "-", "-", "-", "-", name);
	} else {
		printf("%s\n", name);
	}
	return 0;
}

/*
 * Names are listed in full.  No argument, or a DIR ending in '/': one
 * level of the tree '/' makes, as ls shows a directory and dio-fuse the
 * mount (a subdirectory once, as "DIR/SUB/").  -R, or a PREFIX not
 * ending in '/': every name starting with it.
 */
int cmd_ls(int argc, char **argv)
{
	G.usage = "dio ls [-l] [-R] TARGET [DIR/|PREFIX]";
	static const struct optspec spec[] = { { "long", 'l', false, false }, { "recursive", 'R', false, false },
					       { 0 } };
	struct args a;
	int r = parse_cmd(argc, argv, spec, &a, 1, 2, "TARGET and at most one DIR/ or PREFIX");
	if (r)
		return r;
	const char *target = a.pos[0], *arg = a.npos == 2 ? a.pos[1] : "";
	size_t alen = strlen(arg);
	bool level = !a.val[1] && (!alen || arg[alen - 1] == '/');
	struct dio_vol *v = tool_mount(target, true);
	if (!v)
		return 1;
	struct ls_ctx c = { a.val[0] != NULL, 0 };
	if (G.json) {
		json_begin();
		json_str("target", target);
		json_arr("files");
	} else if (c.lng) {
		printf("%14s %14s %8s %8s  %-19s  %s\n", "size", "allocated", "extents", "id", "modified", "name");
	}
	r = level ? dio_listdir(v, arg, ls_one, &c) : dio_list(v, arg, ls_one, &c);
	int e = errno;
	if (G.json) {
		json_arr_end();
		json_end();
	}
	if (r < 0)
		r = fail(target, a.npos == 2 ? a.pos[1] : NULL, e);
	return tool_umount(target, v) | r;
}

/* ---- stat --------------------------------------------------------------------- */

static void print_extent(const struct tool_extent *x, void *arg)
{
	uint32_t bs = *(uint32_t *)arg;
	const char *state = x->bad ? (x->unwritten ? "unwritten,bad" : "written,bad")
				   : x->unwritten ? "unwritten" : "written";
	if (G.json) {
		json_obj(NULL);
		json_u64("offset", x->offset);
		json_u64("block", x->device_offset / bs);
		json_u64("length", x->length);
		json_bool("unwritten", x->unwritten);
		json_bool("bad", x->bad);
		json_obj_end();
	} else {
		printf("  %16llu %14llu %14llu  %s\n", (unsigned long long)x->offset,
		       (unsigned long long)(x->device_offset / bs), (unsigned long long)x->length, state);
	}
}

int cmd_stat(int argc, char **argv)
{
	G.usage = "dio stat [-v] TARGET NAME";
	static const struct optspec spec[] = { { "verbose", 'v', false, false }, { 0 } };
	struct args a;
	int r = parse_cmd(argc, argv, spec, &a, 2, 2, "TARGET and NAME are needed");
	if (r)
		return r;
	const char *target = a.pos[0], *name = a.pos[1];
	bool verbose = a.val[0] != NULL;
	struct dio_vol *v = tool_mount(target, true);
	if (!v)
		return 1;
	struct dio_file *f = dio_open(v, name, O_RDONLY);
	struct dio_stat st;
	if (!f || dio_fstat(f, &st)) {
		r = fail(target, name, errno);
		if (f)
			dio_close(f);
		return tool_umount(target, v) | r;
	}
	if (G.json) {
		json_begin();
		json_str("name", name);
		json_u64("id", st.id);
		json_u64("size", st.size);
		json_u64("allocated", st.allocated);
		json_u64("extents", st.nextents);
		json_u64("block_size", st.block_size);
		json_i64("mtime_ns", st.mtime_ns);
		if (verbose)
			json_arr("map");
	} else {
		char when[64];
		printf("name        %s\nid          %llu\nsize        %llu\nallocated   %llu\nextents     %llu\n"
		       "block size  %u\nmodified    %s\n", name, (unsigned long long)st.id, (unsigned long long)st.size,
		       (unsigned long long)st.allocated, (unsigned long long)st.nextents, st.block_size,
		       time_str(st.mtime_ns, when, sizeof(when)));
		if (verbose)
			printf("map:\n  %16s %14s %14s  %s\n", "file offset", "device block", "length", "state");
	}
	if (verbose && (r = tool_extents(f, print_extent, &st.block_size)) < 0)
		r = fail(target, name, -r);
	if (G.json) {
		if (verbose)
			json_arr_end();
		json_end();
	}
	dio_close(f);
	return tool_umount(target, v) | r;
}

/* ---- rm, mv, truncate ------------------------------------------------------------ */

int cmd_rm(int argc, char **argv)
{
	G.usage = "dio rm TARGET NAME...";
	struct args a;
	int r = parse_cmd(argc, argv, NULL, &a, 2, ARGS_MAX, "TARGET and at least one NAME are needed");
	if (r)
		return r;
	struct dio_vol *v = tool_mount(a.pos[0], false);
	if (!v)
		return 1;
	for (int i = 1; i < a.npos; i++)
		if (dio_unlink(v, a.pos[i]))
			r = fail(a.pos[0], a.pos[i], errno);
	return tool_umount(a.pos[0], v) | r;
}

int cmd_mv(int argc, char **argv)
{
	G.usage = "dio mv TARGET OLD NEW";
	struct args a;
	int r = parse_cmd(argc, argv, NULL, &a, 3, 3, "TARGET, OLD and NEW are needed");
	if (r)
		return r;
	struct dio_vol *v = tool_mount(a.pos[0], false);
	if (!v)
		return 1;
	if (dio_rename(v, a.pos[1], a.pos[2]))
		r = fail(a.pos[0], a.pos[1], errno);
	return tool_umount(a.pos[0], v) | r;
}

int cmd_truncate(int argc, char **argv)
{
	G.usage = "dio truncate TARGET NAME SIZE";
	struct args a;
	int r = parse_cmd(argc, argv, NULL, &a, 3, 3, "TARGET, NAME and SIZE are needed");
	if (r)
		return r;
	uint64_t size;
	if (parse_size(a.pos[2], &size) || size > DIO_MAX_FILE_SIZE)
		return usage_error("bad size \"%s\"", a.pos[2]);
	struct dio_vol *v = tool_mount(a.pos[0], false);
	if (!v)
		return 1;
	struct dio_file *f = dio_open(v, a.pos[1], O_WRONLY | O_CREAT);
	if (!f || dio_ftruncate(f, (off_t)size) || dio_fsync(f))
		r = fail(a.pos[0], a.pos[1], errno);
	if (f)
		dio_close(f);
	return tool_umount(a.pos[0], v) | r;
}

/* ---- cat ------------------------------------------------------------------------- */

struct dio_file *open_out(const char *target, struct dio_vol *v, const char *name);
int copy_out(const char *target, struct dio_vol *v, struct dio_file *f, const char *name, int fd, const char *what);

int cmd_cat(int argc, char **argv)
{
	G.usage = "dio cat TARGET NAME...";
	struct args a;
	int r = parse_cmd(argc, argv, NULL, &a, 2, ARGS_MAX, "TARGET and at least one NAME are needed");
	if (r)
		return r;
	struct dio_vol *v = tool_mount(a.pos[0], true);
	if (!v)
		return 1;
	for (int i = 1; i < a.npos; i++) {
		struct dio_file *f = open_out(a.pos[0], v, a.pos[i]);
		r |= f ? copy_out(a.pos[0], v, f, a.pos[i], STDOUT_FILENO, NULL) : 1;
	}
	return tool_umount(a.pos[0], v) | r;
}
