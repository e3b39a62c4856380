/*
 * dio dump: the on-disk structures decoded, read-only, for an engineer
 * looking at a bad volume (as xfs_db and debugfs are): both superblock
 * slots with their generations and checksums, the checkpoint header and
 * its blocks, every journal transaction with its records and where
 * replay stops and why, and the bad-block list.
 *
 * It reads with the library's own decoders and runs the library's own
 * replay (with a tap that watches it), so what it shows is what a mount
 * would see.  Like dio fsck it opens the volume read-only and exclusively.
 */
#include "../../lib/internal.h"
#include "tool.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { S_SB = 1, S_CKPT = 2, S_JOURNAL = 4, S_BAD = 8 };

static void hex64(const char *key, uint64_t x)
{
	char b[20];
	snprintf(b, sizeof(b), "%016llx", (unsigned long long)x);
	json_str(key, b);
}

/* ---- superblock ---------------------------------------------------------------- */

static void sb_fields(const struct dio_sb *s)
{
	if (G.json) {
		json_u64("version", s->version);
		json_u64("incompat", s->incompat);
		json_u64("gen", s->gen);
		hex64("uuid", s->uuid);
		json_u64("block_size", s->block_size);
		json_u64("total_blocks", s->total_blocks);
		json_u64("journal_start", s->journal_start);
		json_u64("journal_blocks", s->journal_blocks);
		json_u64("ckpt_start0", s->ckpt_start[0]);
		json_u64("ckpt_start1", s->ckpt_start[1]);
		json_u64("ckpt_blocks", s->ckpt_blocks);
		json_u64("data_start", s->data_start);
		json_u64("ckpt_slot", s->ckpt_slot);
		json_u64("ckpt_nblocks", s->ckpt_nblocks);
		json_u64("ckpt_seq", s->ckpt_seq);
		json_u64("jstart_pos", s->jstart_pos);
		json_u64("jstart_bseq", s->jstart_bseq);
		json_str("label", s->label);
		return;
	}
	printf("  version %u incompat 0x%x gen %llu uuid %016llx label \"%s\"\n", s->version, s->incompat,
	       (unsigned long long)s->gen, (unsigned long long)s->uuid, s->label);
	printf("  block_size %u total_blocks %llu data_start %llu\n", s->block_size,
	       (unsigned long long)s->total_blocks, (unsigned long long)s->data_start);
	printf("  journal: start %llu blocks %llu; replay from pos %llu block seq %llu\n",
	       (unsigned long long)s->journal_start, (unsigned long long)s->journal_blocks,
	       (unsigned long long)s->jstart_pos, (unsigned long long)s->jstart_bseq);
	printf("  checkpoint areas %llu and %llu of %llu blocks; current: area %u, %llu blocks, record seq %llu\n",
	       (unsigned long long)s->ckpt_start[0], (unsigned long long)s->ckpt_start[1],
	       (unsigned long long)s->ckpt_blocks, s->ckpt_slot, (unsigned long long)s->ckpt_nblocks,
	       (unsigned long long)s->ckpt_seq);
}

/* Slot 1 lies one block after slot 0: the block size comes from the
   valid superblock if there is one, else from slot 0's own field. */
static void dump_sb(struct dio_vol *v, const struct dio_sb *best, bool have_best)
{
	uint8_t raw[SB_BYTES];
	uint32_t bs = have_best ? best->block_size : 0;
	if (!bs && !read_sb_at(v, 0, raw)) {
		struct dio_sb s0;
		if (sb_decode(raw, &s0) != -EINVAL && s0.block_size >= 512 && s0.block_size <= 65536 &&
		    !(s0.block_size & (s0.block_size - 1)))
			bs = s0.block_size;
	}
	if (G.json)
		json_arr("superblocks");
	else
		printf("superblocks%s\n", have_best ? "" : ": no valid one");
	for (int slot = 0; slot < 2; slot++) {
		uint64_t at = slot ? bs : 0;
		if (slot && !bs)
			break;   /* nowhere to look */
		struct dio_sb s;
		int re = read_sb_at(v, at, raw);
		int d = re ? re : sb_decode(raw, &s);
		uint32_t stored = get_le32(raw + 252), computed = dio_crc32c(0, raw, 252);
		bool valid = !d && !sb_validate(&s, v->dev.geom.size);
		bool current = valid && have_best && s.gen == best->gen && s.uuid == best->uuid;
		const char *state = re ? "unreadable" : d == -EINVAL ? "no superblock" : d ? "checksum mismatch"
				  : !valid ? "fields inconsistent" : current ? "valid, current" : "valid, older";
		if (G.json) {
			json_obj(NULL);
			json_u64("slot", (uint64_t)slot);
			json_u64("byte_offset", at);
			json_str("state", state);
			json_bool("valid", valid);
			json_bool("current", current);
			if (!re && d != -EINVAL) {
				json_u64("crc_stored", stored);
				json_u64("crc_computed", computed);
				sb_fields(&s);
			}
			json_obj_end();
		} else {
			printf("slot %d at byte %llu: %s", slot, (unsigned long long)at, state);
			if (!re && d != -EINVAL)
				printf(" (crc stored %08x, computed %08x)\n", stored, computed);
			else
				printf("\n");
			if (!re && d != -EINVAL)
				sb_fields(&s);
		}
	}
	if (G.json)
		json_arr_end();
}

/* ---- checkpoint ------------------------------------------------------------------ */

static void dump_ckpt_blocks(struct dio_vol *v)
{
	const struct dio_sb *sb = &v->sb;
	uint32_t bs = v->bs;
	uint8_t *blk;
	if (posix_memalign((void **)&blk, MAX(v->dev.geom.mem_align, 4096u), bs))
		return;
	uint64_t start = sb->ckpt_start[sb->ckpt_slot], bad = 0;
	if (G.json)
		json_arr("damaged_blocks");
	for (uint64_t i = 0; i < sb->ckpt_nblocks; i++) {
		const char *why = dev_rw(v, DIO_BIO_READ, 0, (start + i) * bs, blk, bs) ? "unreadable"
				: mblk_problem(blk, bs, DIO_MAGIC_CKPT, sb->uuid);
		struct dio_mblk_hdr h;
		if (!why && (mblk_check(blk, bs, DIO_MAGIC_CKPT, sb->uuid, &h), h.seq != sb->gen))
			why = "written for another superblock generation";
		else if (!why && (h.aux != i || h.count != sb->ckpt_nblocks))
			why = "block index or count does not match";
		if (!why)
			continue;
		bad++;
		if (G.json) {
			json_obj(NULL);
			json_u64("index", i);
			json_u64("block", start + i);
			json_str("problem", why);
			json_obj_end();
		} else {
			printf("  block %llu (device block %llu): %s\n", (unsigned long long)i,
			       (unsigned long long)(start + i), why);
		}
	}
	if (G.json)
		json_arr_end();
	else if (!bad)
		printf("  all %llu blocks sound\n", (unsigned long long)sb->ckpt_nblocks);
	free(blk);
}

static void dump_files(struct dio_vol *v)
{
	if (G.json)
		json_arr("files");
	struct ns_iter it;
	ns_iter_start(v, &it);
	for (const struct dio_inode *in; (in = ns_iter_next(&it));) {
		if (G.json) {
			json_obj(NULL);
			json_strn("name", in->name, in->namelen);
			json_u64("id", in->ino);
			json_u64("size", in->size);
			json_u64("extents", em_count(&in->map));
			json_i64("mtime_ns", atomic_load_explicit(&in->mtime, memory_order_relaxed));
			json_obj_end();
		} else {
			printf("  id %-8llu size %-14llu extents %-6zu %s\n", (unsigned long long)in->ino,
			       (unsigned long long)in->size, em_count(&in->map), in->name);
		}
	}
	if (G.json)
		json_arr_end();
}

static bool dump_ckpt(struct dio_vol *v)
{
	const struct dio_sb *sb = &v->sb;
	if (G.json) {
		json_obj("checkpoint");
		json_u64("area", sb->ckpt_slot);
		json_u64("start_block", sb->ckpt_start[sb->ckpt_slot]);
		json_u64("area_blocks", sb->ckpt_blocks);
		json_u64("blocks", sb->ckpt_nblocks);
		json_u64("gen", sb->gen);
		json_u64("record_seq", sb->ckpt_seq);
	} else {
		printf("checkpoint: area %u at block %llu, %llu of %llu blocks, generation %llu, record seq %llu\n",
		       sb->ckpt_slot, (unsigned long long)sb->ckpt_start[sb->ckpt_slot],
		       (unsigned long long)sb->ckpt_nblocks, (unsigned long long)sb->ckpt_blocks,
		       (unsigned long long)sb->gen, (unsigned long long)sb->ckpt_seq);
	}
	dump_ckpt_blocks(v);
	int e = ckpt_load(v);
	if (G.json) {
		json_bool("loads", e == 0);
		if (e)
			json_str("error", tool_last_log()[0] ? tool_last_log() : errstr(-e));
		else {
			json_u64("nfiles", v->ns.nnames);
			json_u64("next_id", v->ns.next_ino);
			json_u64("bad_extents", em_count(&v->bad));
			dump_files(v);
		}
		json_obj_end();
	} else if (e) {
		printf("  does not load: %s\n", tool_last_log()[0] ? tool_last_log() : errstr(-e));
	} else {
		printf("  %zu files, next id %llu, %zu bad-block extents\n", v->ns.nnames,
		       (unsigned long long)v->ns.next_ino, em_count(&v->bad));
		dump_files(v);
	}
	return e == 0;
}

/* ---- journal ------------------------------------------------------------------ */

static const char *rec_name(int t)
{
	static const char *n[] = { "?", "CREATE", "UNLINK", "RENAME", "SIZE", "MAP", "UNMAP", "TIMES" };
	return t >= 1 && t <= 7 ? n[t] : "?";
}

static void print_rec(const struct dio_rec *r)
{
	if (G.json) {
		json_obj(NULL);
		json_str("type", rec_name(r->type));
		if (r->type == R_CREATE || r->type == R_SIZE || r->type == R_MAP || r->type == R_UNMAP ||
		    r->type == R_TIMES)
			json_u64("id", r->ino);
		if (r->type == R_TIMES)
			json_i64("mtime_ns", (int64_t)r->a);
		if (r->type == R_CREATE || r->type == R_UNLINK || r->type == R_RENAME)
			json_strn("name", r->n1, r->l1);
		if (r->type == R_RENAME)
			json_strn("new_name", r->n2, r->l2);
		if (r->type == R_SIZE)
			json_u64("size", r->a);
		if (r->type == R_MAP || r->type == R_UNMAP) {
			json_u64("lblk", r->a);
			json_u64("len", r->c);
		}
		if (r->type == R_MAP) {
			json_u64("pblk", r->b);
			json_bool("unwritten", r->flags & EXT_UNWRITTEN);
			json_bool("bad", r->flags & EXT_BAD);
		}
		json_obj_end();
		return;
	}
	printf("    %-6s", rec_name(r->type));
	switch (r->type) {
	case R_CREATE: printf(" id %llu \"%.*s\"\n", (unsigned long long)r->ino, (int)r->l1, r->n1); break;
	case R_UNLINK: printf(" \"%.*s\"\n", (int)r->l1, r->n1); break;
	case R_RENAME: printf(" \"%.*s\" -> \"%.*s\"\n", (int)r->l1, r->n1, (int)r->l2, r->n2); break;
	case R_SIZE: printf(" id %llu size %llu\n", (unsigned long long)r->ino, (unsigned long long)r->a); break;
	case R_TIMES: printf(" id %llu mtime %lld ns\n", (unsigned long long)r->ino, (long long)r->a); break;
	case R_MAP:
		printf(" id %llu blocks %llu+%llu -> device block %llu%s%s\n", (unsigned long long)r->ino,
		       (unsigned long long)r->a, (unsigned long long)r->c, (unsigned long long)r->b,
		       (r->flags & EXT_UNWRITTEN) ? " unwritten" : "", (r->flags & EXT_BAD) ? " bad" : "");
		break;
	case R_UNMAP: printf(" id %llu blocks %llu+%llu\n", (unsigned long long)r->ino, (unsigned long long)r->a,
			     (unsigned long long)r->c); break;
	}
}

static void tap_txn(void *arg, uint64_t pos, uint64_t bseq, uint32_t n, const uint8_t *p, size_t len)
{
	unsigned *ntxn = arg;
	(*ntxn)++;
	if (G.json) {
		json_obj(NULL);
		json_u64("pos", pos);
		json_u64("block_seq", bseq);
		json_u64("blocks", n);
		json_arr("records");
	} else {
		printf("  transaction at pos %llu, block seq %llu, %u block%s:\n", (unsigned long long)pos,
		       (unsigned long long)bseq, n, n == 1 ? "" : "s");
	}
	for (size_t off = 0; off < len;) {
		struct dio_rec r;
		size_t used;
		if (rec_parse(p + off, len - off, &r, &used)) {
			if (G.json) {
				json_obj(NULL);
				json_str("type", "undecodable");
				json_obj_end();
			} else {
				printf("    (undecodable record at byte %zu)\n", off);
			}
			break;
		}
		print_rec(&r);
		off += used;
	}
	if (G.json) {
		json_arr_end();
		json_obj_end();
	}
}

static void tap_stop(void *arg, uint64_t pos, uint64_t bseq, const char *why, int err)
{
	(void)arg;
	if (G.json) {
		json_arr_end();   /* transactions */
		json_obj("replay_stops");
		json_u64("pos", pos);
		json_u64("block_seq", bseq);
		json_str("reason", why);
		json_bool("fails", err != 0);
		json_obj_end();
	} else {
		printf("  replay %s at pos %llu, block seq %llu: %s\n", err ? "FAILS" : "stops",
		       (unsigned long long)pos, (unsigned long long)bseq, why);
	}
}

static void dump_journal(struct dio_vol *v, bool ckpt_ok)
{
	const struct dio_sb *sb = &v->sb;
	unsigned ntxn = 0;
	struct j_replay_tap tap = { tap_txn, tap_stop, &ntxn };
	if (G.json) {
		json_obj("journal");
		json_u64("start_block", sb->journal_start);
		json_u64("blocks", sb->journal_blocks);
		json_u64("replay_from_pos", sb->jstart_pos);
		json_u64("replay_from_block_seq", sb->jstart_bseq);
		json_bool("checkpoint_loaded", ckpt_ok);
		json_arr("transactions");
	} else {
		printf("journal: %llu blocks at block %llu, replay from pos %llu (block seq %llu)%s\n",
		       (unsigned long long)sb->journal_blocks, (unsigned long long)sb->journal_start,
		       (unsigned long long)sb->jstart_pos, (unsigned long long)sb->jstart_bseq,
		       ckpt_ok ? "" : "; the checkpoint did not load, records apply to an empty volume");
	}
	v->replay_tap = &tap;
	int e = j_replay(v);
	v->replay_tap = NULL;
	if (e == -ENOMEM || e == -EIO) {
		if (G.json)
			json_str("error", errstr(-e));
		else
			printf("  cannot read the journal: %s\n", errstr(-e));
	}
	if (G.json)
		json_obj_end();
	else if (!ntxn)
		printf("  (no transaction to replay)\n");
}

/* ---- bad blocks ------------------------------------------------------------------ */

static void dump_bad(struct dio_vol *v)
{
	if (G.json)
		json_obj("bad");
	if (G.json)
		json_arr("list");
	else
		printf("bad-block list: %zu extent%s\n", em_count(&v->bad), em_count(&v->bad) == 1 ? "" : "s");
	struct em_cur c;
	for (bool ok = em_first(&v->bad, &c); ok; ok = em_next(&v->bad, &c)) {
		const struct dio_extent *x = em_rec(&c);
		if (G.json) {
			json_obj(NULL);
			json_u64("block", x->pblk);
			json_u64("len", x->len);
			json_obj_end();
		} else {
			printf("  device blocks %llu+%u\n", (unsigned long long)x->pblk, x->len);
		}
	}
	if (G.json) {
		json_arr_end();
		json_arr("in_files");
	} else {
		printf("bad extents still mapped by files:\n");
	}
	struct ns_iter it;
	ns_iter_start(v, &it);
	for (const struct dio_inode *in; (in = ns_iter_next(&it));) {
		for (bool ok = em_first(&in->map, &c); ok; ok = em_next(&in->map, &c)) {
			const struct dio_extent *x = em_rec(&c);
			if (!(x->flags & EXT_BAD))
				continue;
			if (G.json) {
				json_obj(NULL);
				json_strn("name", in->name, in->namelen);
				json_u64("lblk", x->lblk);
				json_u64("block", x->pblk);
				json_u64("len", x->len);
				json_bool("unwritten", x->flags & EXT_UNWRITTEN);
				json_obj_end();
			} else {
				printf("  \"%s\" file blocks %llu+%u at device block %llu%s\n", in->name,
				       (unsigned long long)x->lblk, x->len, (unsigned long long)x->pblk,
				       (x->flags & EXT_UNWRITTEN) ? " (unwritten)" : "");
			}
		}
	}
	if (G.json) {
		json_arr_end();
		json_obj_end();
	}
}

int cmd_dump(int argc, char **argv)
{
	G.usage = "dio dump TARGET [superblock|journal|checkpoint|bad]";
	struct args a;
	int r = parse_cmd(argc, argv, NULL, &a, 1, 2, "TARGET and at most one section");
	if (r)
		return r;
	static const struct { const char *name; unsigned bit; } sec[] = {
		{ "superblock", S_SB }, { "checkpoint", S_CKPT }, { "journal", S_JOURNAL }, { "bad", S_BAD } };
	unsigned want = S_SB | S_CKPT | S_JOURNAL | S_BAD;
	if (a.npos == 2) {
		want = 0;
		for (size_t i = 0; i < 4; i++)
			if (!strcmp(a.pos[1], sec[i].name))
				want = sec[i].bit;
		if (!want)
			return usage_error("unknown section \"%s\"", a.pos[1]);
	}
	const char *target = a.pos[0];
	int e = 0;
	struct dio_vol *v = vol_new_ops(target, true, "psync", NULL, 4, false, 0, &e);
	if (!v) {
		if (e == -EBUSY)
			return failmsg(target, NULL, "%s (the volume is mounted by another process)", errstr(-e));
		return fail(target, NULL, -e);
	}
	struct dio_sb best;
	bool have = read_sb(v, &best) == 0;
	if (G.json) {
		json_begin();
		json_str("target", target);
	}
	if (want & S_SB)
		dump_sb(v, &best, have);
	if (have) {
		v->sb = best;
		v->bs = best.block_size;
		v->bshift = (unsigned)__builtin_ctz(v->bs);
		v->md_cap = v->sb.ckpt_blocks * (v->bs - MBLK_HDR) - CKPT_HDR_BYTES;
		bool ok = true;
		if (want & (S_CKPT | S_JOURNAL | S_BAD)) {
			if (want & S_CKPT)
				ok = dump_ckpt(v);
			else
				ok = ckpt_load(v) == 0;
		}
		if (want & (S_JOURNAL | S_BAD)) {
			if (want & S_JOURNAL)
				dump_journal(v, ok);
			else
				j_replay(v);
		}
		if (want & S_BAD)
			dump_bad(v);
	} else {
		if (!G.json && (want & ~S_SB))
			printf("no valid superblock: nothing else can be located\n");
		r = 1;
	}
	if (G.json)
		json_end();
	vol_release(v);
	if (r)
		failmsg(target, NULL, "no valid superblock");
	return r;
}
