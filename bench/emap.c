/*
 * Lookups in a large, cold file map: what a write into preallocated space
 * pays before its I/O can go down (issue 14).  Random 4 KiB writes into a
 * preallocated file leave its map alternating written and unwritten
 * extents, a million records for 4 GiB; each write then finds its extent
 * with a lookup in a tree far larger than the CPU's caches.  This builds
 * such a map (N one-block records, alternating, inserted in random order
 * as the conversions make them) and times em_find at random blocks.
 *
 *   dio-emap-bench [N=1000000] [LOOKUPS=2000000]
 *
 * Prints the map's height and nanoseconds per lookup (the median of five
 * passes).  Not a test: the figure depends on the machine's memory.
 */
#include "../lib/internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 1000000;
	unsigned lookups = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 2000000;
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	uint64_t *order = malloc(n * sizeof(*order));
	if (!n || !lookups || !order) {
		fprintf(stderr, "usage: dio-emap-bench [N] [LOOKUPS]\n");
		return 2;
	}
	for (uint64_t i = 0; i < n; i++)
		order[i] = i;
	for (uint64_t i = n - 1; i > 0; i--) {
		uint64_t j = rnd(&seed) % (i + 1), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	struct dio_emap m = { 0 };
	for (uint64_t i = 0; i < n; i++) {
		uint64_t b = order[i];
		struct dio_extent x = { b, (1ull << 32) + b, 1, (b & 1) ? EXT_UNWRITTEN : 0 };
		if (bt_insert(&m.t, &x)) {
			fprintf(stderr, "out of memory at %llu records\n", (unsigned long long)i);
			return 1;
		}
	}
	free(order);
	double pass[5];
	uint64_t sum = 0;
	for (int p = 0; p < 5; p++) {
		double t0 = now();
		for (unsigned k = 0; k < lookups; k++) {
			struct em_cur c;
			if (em_find(&m, rnd(&seed) % n, &c))
				sum += em_rec(&c)->pblk;
		}
		pass[p] = (now() - t0) / lookups * 1e9;
	}
	qsort(pass, 5, sizeof(pass[0]), cmp_double);
	printf("records %llu height %u: %.1f ns per lookup (passes %.1f-%.1f; checksum %llu)\n",
	       (unsigned long long)n, m.t.height, pass[2], pass[0], pass[4], (unsigned long long)(sum & 0xffff));
	em_free(&m);
	return 0;
}
