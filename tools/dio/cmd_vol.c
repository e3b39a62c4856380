/*
 * dio(1) volume commands: mkfs, info, df, fsck.
 */
#include "tool.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- mkfs ------------------------------------------------------------------ */

int cmd_mkfs(int argc, char **argv)
{
	G.usage = "dio mkfs [--size SIZE] [--block-size N] [--journal-size SIZE] [--label L] [--force] TARGET";
	enum { O_SIZE, O_BS, O_JSIZE, O_LABEL, O_FORCE };
	static const struct optspec spec[] = {
		{ "size", 0, true, false }, { "block-size", 0, true, false }, { "journal-size", 0, true, false },
		{ "label", 0, true, false }, { "force", 'f', false, false }, { 0 } };
	struct args a;
	int r = parse_cmd(argc, argv, spec, &a, 1, 1, "one TARGET is needed");
	if (r)
		return r;
	const char *target = a.pos[0];
	struct dio_mkfs_opts mk = { 0 };
	uint64_t bs = 0;
	if (a.val[O_SIZE] && parse_size(a.val[O_SIZE], &mk.size))
		return usage_error("bad size \"%s\"", a.val[O_SIZE]);
	if (a.val[O_JSIZE] && parse_size(a.val[O_JSIZE], &mk.journal_size))
		return usage_error("bad journal size \"%s\"", a.val[O_JSIZE]);
	if (a.val[O_BS] && (parse_size(a.val[O_BS], &bs) || bs < 512 || bs > 65536 || (bs & (bs - 1))))
		return usage_error("block size must be a power of two from 512 to 64k");
	if (a.val[O_LABEL] && strlen(a.val[O_LABEL]) > 63)
		return usage_error("a label holds at most 63 bytes");
	mk.block_size = (uint32_t)bs;
	mk.label = a.val[O_LABEL];
	mk.flags = a.val[O_FORCE] ? DIO_MKFS_FORCE : 0;
	struct stat st;
	if (!strstr(target, "://") && stat(target, &st) < 0 && errno == ENOENT && !mk.size)   /* not a URI */
		return usage_error("%s does not exist: --size makes an image file of that size", target);
	struct progress *p = progress_start("mkfs", 0);
	r = dio_mkfs(target, &mk);
	int e = errno;
	progress_end(p);
	if (r) {
		if (e == EEXIST)
			return failmsg(target, NULL, "%s (a libdio volume is there: --force overwrites it)", errstr(e));
		if (e == EBUSY)
			return failmsg(target, NULL, "%s (the volume is mounted by another process)", errstr(e));
		if (e == EINVAL && tool_last_log()[0] == 0)
			return failmsg(target, NULL, "%s (too small, or a size or block size the device cannot take)",
				       errstr(e));
		return fail(target, NULL, e);
	}
	struct dio_vol *v = tool_mount(target, true);
	if (!v)
		return 1;
	struct dio_statvfs sv;
	struct tool_volinfo vi;
	dio_statvfs(v, &sv);
	tool_volinfo(v, &vi);
	tool_umount(target, v);
	char h1[32], h2[32];
	if (G.json) {
		json_begin();
		json_str("target", target);
		json_u64("size", vi.device_size);
		json_u64("block_size", sv.block_size);
		json_u64("data_blocks", sv.total_blocks);
		json_u64("journal_bytes", vi.journal_bytes);
		json_str("label", vi.label);
		json_end();
	} else if (!G.quiet) {
		printf("%s: libdio volume of %s, block size %u, %llu data blocks, journal %s%s%s\n", target,
		       human((uint64_t)sv.total_blocks * sv.block_size + vi.data_start_bytes, h1, sizeof(h1)),
		       sv.block_size, (unsigned long long)sv.total_blocks, human(vi.journal_bytes, h2, sizeof(h2)),
		       vi.label[0] ? ", label " : "", vi.label);
	}
	return 0;
}

/* ---- info ------------------------------------------------------------------ */

static void info_flags(uint32_t f, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s", (f & DIO_INFO_FALLBACK) ? " FALLBACK" : "",
		 (f & DIO_INFO_VOLATILE_CACHE) ? " VOLATILE_CACHE" : "", (f & DIO_INFO_MEMORY) ? " MEMORY" : "");
	if (*buf)
		memmove(buf, buf + 1, strlen(buf));   /* no leading space */
}

int cmd_info(int argc, char **argv)
{
	G.usage = "dio info TARGET";
	struct args a;
	int r = parse_cmd(argc, argv, NULL, &a, 1, 1, "one TARGET is needed");
	if (r)
		return r;
	const char *target = a.pos[0];
	struct dio_vol *v = tool_mount(target, true);
	if (!v)
		return 1;
	struct dio_statvfs sv;
	struct tool_volinfo vi;
	dio_statvfs(v, &sv);
	tool_volinfo(v, &vi);
	const struct dio_info *i = &vi.info;
	char fl[64];
	info_flags(i->flags, fl, sizeof(fl));
	if (G.json) {
		json_begin();
		json_str("target", target);
		json_str("label", vi.label);
		json_u64("format_version", vi.format_version);
		char uuid[20];
		snprintf(uuid, sizeof(uuid), "%016llx", (unsigned long long)vi.uuid);
		json_str("uuid", uuid);
		json_u64("block_size", sv.block_size);
		json_u64("total_blocks", sv.total_blocks);
		json_u64("free_blocks", sv.free_blocks);
		json_u64("total_bytes", sv.total_blocks * sv.block_size);
		json_u64("free_bytes", sv.free_blocks * sv.block_size);
		json_u64("nfiles", sv.nfiles);
		json_u64("journal_bytes", vi.journal_bytes);
		json_u64("journal_used_bytes", vi.journal_used_bytes);
		json_u64("pending_log_records", vi.log_records);
		json_u64("checkpoint_bytes", vi.checkpoint_bytes);
		json_u64("data_start", vi.data_start_bytes);
		json_str("backend", sv.backend);
		json_obj("device");
		json_u64("size", vi.device_size);
		json_bool("block_device", vi.is_block_device);
		json_bool("remote_target", vi.is_target);
		json_u64("logical_block_size", sv.dev_logical_block_size);
		json_u64("physical_block_size", vi.physical_block_size);
		json_obj_end();
		json_obj("dio_info");
		json_u64("mem_align", i->mem_align);
		json_u64("offset_align", i->offset_align);
		json_u64("block_size", i->block_size);
		json_u64("opt_io", i->opt_io);
		json_u64("max_io", i->max_io);
		json_u64("atomic_write_min", i->atomic_write_min);
		json_u64("atomic_write_max", i->atomic_write_max);
		json_bool("fallback", (i->flags & DIO_INFO_FALLBACK) != 0);
		json_bool("volatile_cache", (i->flags & DIO_INFO_VOLATILE_CACHE) != 0);
		json_bool("memory", (i->flags & DIO_INFO_MEMORY) != 0);
		json_obj_end();
		json_end();
	} else {
		char h1[32], h2[32], h3[32];
		printf("volume      %s\n", target);
		printf("label       %s\n", vi.label[0] ? vi.label : "(none)");
		printf("format      version %u, uuid %016llx\n", vi.format_version, (unsigned long long)vi.uuid);
		printf("block size  %u\n", sv.block_size);
		printf("data        %s in %llu blocks, %llu free (%s)\n",
		       human(sv.total_blocks * sv.block_size, h1, sizeof(h1)), (unsigned long long)sv.total_blocks,
		       (unsigned long long)sv.free_blocks, human(sv.free_blocks * sv.block_size, h2, sizeof(h2)));
		printf("files       %llu\n", (unsigned long long)sv.nfiles);
		printf("journal     %s, %s in use\n", human(vi.journal_bytes, h1, sizeof(h1)),
		       human(vi.journal_used_bytes, h2, sizeof(h2)));
		if (vi.log_records)
			printf("pending     %llu records of a killed process's calls (process-death log), "
			       "applied at the next read-write mount\n", (unsigned long long)vi.log_records);
		printf("checkpoint  2 x %s\n", human(vi.checkpoint_bytes, h3, sizeof(h3)));
		printf("backend     %s\n", sv.backend);
		printf("device      %s, %llu bytes, logical block %u, physical block %u\n",
		       vi.is_target ? "remote target" : vi.is_block_device ? "block device" : "image file",
		       (unsigned long long)vi.device_size,
		       sv.dev_logical_block_size, vi.physical_block_size);
		printf("dio_info    mem_align %u offset_align %u block_size %u opt_io %u max_io %llu atomic %u..%u\n"
		       "            flags %s\n",
		       i->mem_align, i->offset_align, i->block_size, i->opt_io, (unsigned long long)i->max_io,
		       i->atomic_write_min, i->atomic_write_max, fl[0] ? fl : "(none)");
	}
	return tool_umount(target, v);
}

/* ---- df -------------------------------------------------------------------- */

int cmd_df(int argc, char **argv)
{
	G.usage = "dio df TARGET";
	struct args a;
	int r = parse_cmd(argc, argv, NULL, &a, 1, 1, "one TARGET is needed");
	if (r)
		return r;
	const char *target = a.pos[0];
	struct dio_vol *v = tool_mount(target, true);
	if (!v)
		return 1;
	struct dio_statvfs sv;
	dio_statvfs(v, &sv);
	uint64_t bs = sv.block_size, used = sv.total_blocks - sv.free_blocks;
	if (G.json) {
		json_begin();
		json_str("target", target);
		json_u64("block_size", bs);
		json_u64("total_blocks", sv.total_blocks);
		json_u64("used_blocks", used);
		json_u64("free_blocks", sv.free_blocks);
		json_u64("total_bytes", sv.total_blocks * bs);
		json_u64("used_bytes", used * bs);
		json_u64("free_bytes", sv.free_blocks * bs);
		json_u64("nfiles", sv.nfiles);
		json_u64("files_free", sv.files_free);
		json_end();
	} else {
		char h1[32], h2[32], h3[32];
		unsigned pct = sv.total_blocks ? (unsigned)((used * 100 + sv.total_blocks - 1) / sv.total_blocks) : 0;
		printf("%-10s %-10s %-10s %4s %8s  %s\n", "Size", "Used", "Avail", "Use%", "Files", "Volume");
		printf("%-10s %-10s %-10s %3u%% %8llu  %s\n", human(sv.total_blocks * bs, h1, sizeof(h1)),
		       human(used * bs, h2, sizeof(h2)), human(sv.free_blocks * bs, h3, sizeof(h3)), pct,
		       (unsigned long long)sv.nfiles, target);
	}
	return tool_umount(target, v);
}

/* ---- fsck ------------------------------------------------------------------ */

struct problems {
	struct { int sev; char *msg; } *v;
	size_t n, cap;
};

static void report(int sev, const char *msg, void *arg)
{
	struct problems *p = arg;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		void *nv = realloc(p->v, cap * sizeof(p->v[0]));
		if (!nv)
			return;
		p->v = nv;
		p->cap = cap;
	}
	p->v[p->n].sev = sev;
	p->v[p->n++].msg = strdup(msg);
}

#define FSCK_CLEAN 0
#define FSCK_PROBLEMS 1
#define FSCK_CANNOT 8   /* fsck(8): operational error */

int cmd_fsck(int argc, char **argv)
{
	G.usage = "dio fsck TARGET";
	struct args a;
	int r = parse_cmd(argc, argv, NULL, &a, 1, 1, "one TARGET is needed");
	if (r)
		return r;
	const char *target = a.pos[0];
	struct problems pr = { 0 };
	struct progress *p = progress_start("fsck", 0);
	r = dio_fsck(target, 0, report, &pr);
	int e = errno;
	progress_end(p);
	if (r < 0) {
		if (e == EBUSY)
			failmsg(target, NULL, "%s (the volume is mounted by another process)", errstr(e));
		else if (e == EINVAL)
			failmsg(target, NULL, "%s (not a libdio volume: nothing to check)", errstr(e));
		else
			fail(target, NULL, e);
		return FSCK_CANNOT;
	}
	size_t errors = 0;
	for (size_t i = 0; i < pr.n; i++)
		errors += pr.v[i].sev == DIO_FSCK_ERROR;
	if (G.json) {
		json_begin();
		json_str("target", target);
		json_bool("clean", r == 0);
		json_u64("errors", errors);
		json_u64("warnings", pr.n - errors);
		json_arr("problems");
		for (size_t i = 0; i < pr.n; i++) {
			json_obj(NULL);
			json_str("severity", pr.v[i].sev == DIO_FSCK_ERROR ? "error" : "warning");
			json_str("message", pr.v[i].msg);
			json_obj_end();
		}
		json_arr_end();
		json_end();
	} else {
		for (size_t i = 0; i < pr.n; i++)
			printf("%s: %s\n", pr.v[i].sev == DIO_FSCK_ERROR ? "error" : "warning", pr.v[i].msg);
		if (!G.quiet)
			printf("%s: %s\n", target, r == 0 ? "clean" : "problems found");
	}
	for (size_t i = 0; i < pr.n; i++)
		free(pr.v[i].msg);
	free(pr.v);
	return r == 0 ? FSCK_CLEAN : FSCK_PROBLEMS;
}
