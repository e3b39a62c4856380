/*
 * dio(1): what the public API does not show -- the superblock's label,
 * version and layout, the journal in use, a file's extent map.  The tool
 * links the static library and reads the volume's in-memory state here,
 * and in dump.c, and nowhere else (as xfs_db links libxfs).
 */
#include "../../lib/internal.h"
#include "tool.h"
#include <stdlib.h>
#include <string.h>

void tool_volinfo(struct dio_vol *v, struct tool_volinfo *vi)
{
	memset(vi, 0, sizeof(*vi));
	pthread_mutex_lock(&v->md_lock);
	const struct dio_sb *sb = &v->sb;
	uint64_t bs = sb->block_size;
	memcpy(vi->label, sb->label, sizeof(vi->label));
	vi->label[sizeof(vi->label) - 1] = 0;
	vi->uuid = sb->uuid;
	vi->format_version = sb->version;
	vi->journal_bytes = sb->journal_blocks * bs;
	/* blocks written since the checkpoint the superblock names: what a
	   mount after a crash now would replay */
	vi->journal_used_bytes = (v->j.head_bseq - sb->jstart_bseq) * bs;
	if (vi->journal_used_bytes > vi->journal_bytes)
		vi->journal_used_bytes = vi->journal_bytes;
	vi->checkpoint_bytes = sb->ckpt_blocks * bs;
	vi->data_start_bytes = sb->data_start * bs;
	/* a read-only mount applies a killed process's log in memory and
	   leaves it for the next read-write mount: pending */
	vi->log_records = v->rdonly ? v->plog_applied : 0;
	pthread_mutex_unlock(&v->md_lock);
	vi->device_size = v->dev.geom.size;
	vi->physical_block_size = v->dev.geom.physical_bs;
	vi->is_block_device = v->dev.geom.is_blockdev;
	vi->is_target = v->dev.tdev != NULL;
	vol_info(v, false, &vi->info);
}

int tool_extents(struct dio_file *f, void (*cb)(const struct tool_extent *x, void *arg), void *arg)
{
	struct dio_inode *in = f->ino;
	uint64_t bs = f->vol->bs;
	pthread_rwlock_rdlock(&in->map_lock);
	size_t n = em_count(&in->map), k = 0;
	struct dio_extent *copy = malloc((n ? n : 1) * sizeof(*copy));
	struct em_cur c;
	for (bool ok = copy && em_first(&in->map, &c); ok && k < n; ok = em_next(&in->map, &c))
		copy[k++] = *em_rec(&c);
	pthread_rwlock_unlock(&in->map_lock);
	if (!copy)
		return -ENOMEM;
	for (size_t i = 0; i < k; i++) {
		struct tool_extent x = { copy[i].lblk * bs, copy[i].pblk * bs, (uint64_t)copy[i].len * bs,
					 (copy[i].flags & EXT_UNWRITTEN) != 0, (copy[i].flags & EXT_BAD) != 0 };
		cb(&x, arg);
	}
	free(copy);
	return 0;
}
