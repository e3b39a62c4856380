/*
 * CRC32C (Castagnoli), the checksum of every metadata block.
 *
 * x86-64 with SSE4.2 uses the crc32 instruction, aarch64 with the ARMv8
 * CRC extension its crc32c instructions; everything else (s390x, i686,
 * older CPUs) a table built once.  All give the same value (tested).
 */
#include "internal.h"
#include <stdlib.h>
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#endif

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
#if defined(__x86_64__) || (defined(__aarch64__) && defined(__linux__))
#define CRC_HW 1
static bool crc_hw;
#endif

static void crc_setup(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[i] = c;
	}
#if defined(__x86_64__)
	__builtin_cpu_init();
	crc_hw = __builtin_cpu_supports("sse4.2");
#elif defined(CRC_HW)
	crc_hw = (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#endif
}

uint32_t dio_crc32c_soft(uint32_t crc, const void *buf, size_t len);
uint32_t dio_crc32c_soft(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	pthread_once(&crc_once, crc_setup);
	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t c = ~crc;
	while (len >= 8) {
		uint64_t w;
		__builtin_memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
		p += 8;
		len -= 8;
	}
	uint32_t c32 = (uint32_t)c;
	while (len--)
		c32 = __builtin_ia32_crc32qi(c32, *p++);
	return ~c32;
}
#elif defined(CRC_HW)
/* The ARMv8 CRC32C instructions take the bytes little-endian, as the
   reflected algorithm wants: no swapping. */
__attribute__((target("+crc")))
static uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;
	while (len >= 8) {
		uint64_t w;
		__builtin_memcpy(&w, p, 8);
		c = __builtin_aarch64_crc32cx(c, w);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = __builtin_aarch64_crc32cb(c, *p++);
	return ~c;
}
#endif

uint32_t dio_crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_setup);
#ifdef CRC_HW
	if (crc_hw)
		return crc32c_hw(crc, buf, len);
#endif
	return dio_crc32c_soft(crc, buf, len);
}
