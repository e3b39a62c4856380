/*
 * Encoding of the on-disk structures (docs/FORMAT.md is the reference):
 * little-endian, explicit widths, CRC32C over every metadata block.
 */
#include "internal.h"
#include <string.h>

/* A file's record in a checkpoint: id, size, modification time, extent
   count and its name (ckpt.c writes it; the namespace counts it against
   md_cap).  The time is there on every volume a read-write mount writes
   (DIO_INCOMPAT_MTIME). */
uint64_t md_inode_bytes(size_t namelen) { return 34 + namelen; }

void sb_encode(const struct dio_sb *sb, uint8_t *b)
{
	memset(b, 0, SB_BYTES);
	put_le64(b + 0, DIO_MAGIC_SB);
	put_le32(b + 8, sb->version);
	put_le32(b + 12, sb->incompat);
	put_le32(b + 16, sb->compat);
	put_le32(b + 20, sb->ro_compat);
	put_le32(b + 24, sb->block_size);
	put_le32(b + 28, sb->ckpt_slot);
	put_le64(b + 32, sb->uuid);
	put_le64(b + 40, sb->total_blocks);
	put_le64(b + 48, sb->journal_start);
	put_le64(b + 56, sb->journal_blocks);
	put_le64(b + 64, sb->ckpt_start[0]);
	put_le64(b + 72, sb->ckpt_start[1]);
	put_le64(b + 80, sb->ckpt_blocks);
	put_le64(b + 88, sb->data_start);
	put_le64(b + 96, sb->gen);
	put_le64(b + 104, sb->ckpt_nblocks);
	put_le64(b + 112, sb->ckpt_seq);
	put_le64(b + 120, sb->jstart_pos);
	put_le64(b + 128, sb->jstart_bseq);
	memcpy(b + 136, sb->label, 64);
	put_le32(b + 252, dio_crc32c(0, b, 252));
}

/* The fields are decoded even when the checksum fails (-EUCLEAN), so
   that dio dump can show what a damaged slot holds; nobody else looks. */
int sb_decode(const uint8_t *b, struct dio_sb *sb)
{
	if (get_le64(b) != DIO_MAGIC_SB)
		return -EINVAL;
	memset(sb, 0, sizeof(*sb));
	sb->version = get_le32(b + 8);
	sb->incompat = get_le32(b + 12);
	sb->compat = get_le32(b + 16);
	sb->ro_compat = get_le32(b + 20);
	sb->block_size = get_le32(b + 24);
	sb->ckpt_slot = get_le32(b + 28);
	sb->uuid = get_le64(b + 32);
	sb->total_blocks = get_le64(b + 40);
	sb->journal_start = get_le64(b + 48);
	sb->journal_blocks = get_le64(b + 56);
	sb->ckpt_start[0] = get_le64(b + 64);
	sb->ckpt_start[1] = get_le64(b + 72);
	sb->ckpt_blocks = get_le64(b + 80);
	sb->data_start = get_le64(b + 88);
	sb->gen = get_le64(b + 96);
	sb->ckpt_nblocks = get_le64(b + 104);
	sb->ckpt_seq = get_le64(b + 112);
	sb->jstart_pos = get_le64(b + 120);
	sb->jstart_bseq = get_le64(b + 128);
	memcpy(sb->label, b + 136, 64);
	sb->label[63] = 0;
	return get_le32(b + 252) == dio_crc32c(0, b, 252) ? 0 : -EUCLEAN;
}

/* Every field checked against every other and against the device, so a
   damaged superblock can never point an I/O outside the volume. */
int sb_validate(const struct dio_sb *sb, uint64_t dev_size)
{
	uint32_t bs = sb->block_size;
	if (sb->version != DIO_FORMAT_VERSION || (sb->incompat & ~DIO_INCOMPAT_SUPPORTED))
		return -EUCLEAN;
	if (bs < 512 || bs > 65536 || (bs & (bs - 1)))
		return -EUCLEAN;
	if (!sb->total_blocks || sb->total_blocks > dev_size / bs)
		return -EUCLEAN;
	uint64_t t = sb->total_blocks;
	if (sb->journal_start != 2 || sb->journal_blocks < 4 || sb->journal_blocks > t)
		return -EUCLEAN;
	if (sb->ckpt_blocks < 2 || sb->ckpt_blocks > t ||
	    sb->ckpt_start[0] != sb->journal_start + sb->journal_blocks ||
	    sb->ckpt_start[1] != sb->ckpt_start[0] + sb->ckpt_blocks ||
	    sb->data_start != sb->ckpt_start[1] + sb->ckpt_blocks || sb->data_start >= t)
		return -EUCLEAN;
	if (sb->ckpt_slot > 1 || !sb->ckpt_nblocks || sb->ckpt_nblocks > sb->ckpt_blocks)
		return -EUCLEAN;
	if (sb->jstart_pos >= sb->journal_blocks)
		return -EUCLEAN;
	return 0;
}

void mblk_seal(uint8_t *blk, uint32_t bs, const struct dio_mblk_hdr *h)
{
	put_le32(blk + 0, h->magic);
	put_le32(blk + 4, 0);
	put_le64(blk + 8, h->uuid);
	put_le64(blk + 16, h->seq);
	put_le64(blk + 24, h->aux);
	put_le32(blk + 32, h->count);
	put_le32(blk + 36, h->used);
	put_le32(blk + 4, dio_crc32c(0, blk, bs));
}

/* CRC of a metadata block with its crc field read as zero. */
static uint32_t mblk_crc(const uint8_t *blk, uint32_t bs)
{
	static const uint8_t zero4[4];
	uint32_t c = dio_crc32c(0, blk, 4);
	c = dio_crc32c(c, zero4, 4);
	return dio_crc32c(c, blk + 8, bs - 8);
}

const char *mblk_problem(const uint8_t *blk, uint32_t bs, uint32_t magic, uint64_t uuid)
{
	if (get_le32(blk) != magic)
		return "not a block of this kind (magic)";
	if (get_le64(blk + 8) != uuid)
		return "belongs to another volume (uuid)";
	if (mblk_crc(blk, bs) != get_le32(blk + 4))
		return "checksum mismatch";
	if (get_le32(blk + 36) > bs - MBLK_HDR)
		return "payload length out of range";
	return NULL;
}

int mblk_check(const uint8_t *blk, uint32_t bs, uint32_t magic, uint64_t uuid, struct dio_mblk_hdr *h)
{
	if (mblk_problem(blk, bs, magic, uuid))
		return -EUCLEAN;
	h->magic = magic;
	h->crc = get_le32(blk + 4);
	h->uuid = uuid;
	h->seq = get_le64(blk + 16);
	h->aux = get_le64(blk + 24);
	h->count = get_le32(blk + 32);
	h->used = get_le32(blk + 36);
	return 0;
}
