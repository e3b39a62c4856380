/*
 * The on-disk format (docs/FORMAT.md): the superblock, the header of
 * every checkpoint and journal block, the journal's records, and the
 * little-endian fields they are made of.  Included by internal.h.
 */
#ifndef DIO_FORMAT_H
#define DIO_FORMAT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- the on-disk layout (format.c) ---- */
#define DIO_MAGIC_SB   UINT64_C(0x31304c4f564f4944)  /* "DIOVOL01" */
#define DIO_FORMAT_VERSION 1
/* a file's modification time: in the checkpoint's file records, and
   R_TIMES records in the journal (set by mkfs, and by the first
   read-write mount of a volume made before) */
#define DIO_INCOMPAT_MTIME 0x1u
#define DIO_INCOMPAT_SUPPORTED DIO_INCOMPAT_MTIME
#define DIO_MAGIC_CKPT 0x544b4344u   /* "DCKT" */
#define DIO_MAGIC_JRNL 0x4c4e4a44u   /* "DJNL" */

struct dio_sb {
	uint32_t version, incompat, compat, ro_compat;
	uint32_t block_size;
	uint64_t uuid;
	uint64_t total_blocks;         /* volume size in blocks */
	uint64_t journal_start, journal_blocks;
	uint64_t ckpt_start[2], ckpt_blocks;
	uint64_t data_start;
	uint64_t gen;
	uint32_t ckpt_slot;
	uint64_t ckpt_nblocks;         /* blocks the current checkpoint uses */
	uint64_t ckpt_seq;             /* last record seq in the checkpoint */
	uint64_t jstart_pos;           /* journal block index to replay from */
	uint64_t jstart_bseq;          /* block sequence expected there */
	char label[64];
};
#define SB_BYTES 256
void sb_encode(const struct dio_sb *sb, uint8_t *buf);            /* SB_BYTES, with CRC */
int  sb_decode(const uint8_t *buf, struct dio_sb *sb);            /* 0, -EINVAL not ours, -EUCLEAN */
int  sb_validate(const struct dio_sb *sb, uint64_t dev_size);

/* Every checkpoint and journal block starts with this header. */
struct dio_mblk_hdr {
	uint32_t magic;
	uint32_t crc;              /* CRC32C of the block with this field zero */
	uint64_t uuid;             /* volume uuid: blocks of older volumes never match */
	uint64_t seq;              /* checkpoint: generation; journal: block sequence */
	uint64_t aux;              /* checkpoint: block index; journal: first block of the txn */
	uint32_t count;            /* checkpoint: blocks in all; journal: blocks in the txn */
	uint32_t used;             /* payload bytes used in this block */
};
#define MBLK_HDR 40
void mblk_seal(uint8_t *blk, uint32_t bs, const struct dio_mblk_hdr *h);
/* NULL if blk is a sound block of this kind and volume, else why not */
const char *mblk_problem(const uint8_t *blk, uint32_t bs, uint32_t magic, uint64_t uuid);
int  mblk_check(const uint8_t *blk, uint32_t bs, uint32_t magic, uint64_t uuid, struct dio_mblk_hdr *h);

/* ---- journal records (journal.c) ---- */
enum {
	R_CREATE = 1,  /* ino, name */
	R_UNLINK = 2,  /* name */
	R_RENAME = 3,  /* old name, new name */
	R_SIZE   = 4,  /* ino, size */
	R_MAP    = 5,  /* ino, lblk, pblk, len, flags: map (replacing) */
	R_UNMAP  = 6,  /* ino, lblk, len */
	R_TIMES  = 7,  /* ino, mtime (ns since the epoch): volumes with DIO_INCOMPAT_MTIME */
};

struct dio_rec {
	int type;
	uint64_t ino, a, b, c;     /* SIZE: a=size; MAP: a=lblk b=pblk c=len; UNMAP a=lblk c=len */
	uint32_t flags;
	const char *n1, *n2;
	size_t l1, l2;
};

/*
 * Little-endian fields of the on-disk format (docs/FORMAT.md).  The byte
 * by byte form is the definition, and what a big-endian host runs; a
 * little-endian one copies (compilers do not merge the byte stores, and
 * every journal record and checkpoint extent goes through these).
 */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline void put_le16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void put_le32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put_le64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint16_t get_le16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t get_le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t get_le64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
#else
static inline void put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void put_le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void put_le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline uint16_t get_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get_le64(const uint8_t *p) { return get_le32(p) | (uint64_t)get_le32(p + 4) << 32; }
#endif

#endif
