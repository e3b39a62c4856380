/*
 * The smallest complete libdio program: mount (making the volume if it is
 * missing), open a file, take an aligned buffer as dio_info says, write,
 * fsync, read back and compare.
 *
 *   dio-copy IMAGE        (an image file of 64 MiB is made if IMAGE is missing)
 */
#include <dio/dio.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *what)
{
	perror(what);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: dio-copy IMAGE\n");
		return 2;
	}
	struct dio_vol *vol = dio_mount(argv[1], NULL);
	if (!vol && errno == ENOENT) {   /* no volume yet: make one */
		struct dio_mkfs_opts mk = { .size = 64 << 20 };
		if (dio_mkfs(argv[1], &mk))
			return die("dio_mkfs");
		vol = dio_mount(argv[1], NULL);
	}
	if (!vol)
		return die("dio_mount");
	struct dio_file *f = dio_open(vol, "hello", O_RDWR | O_CREAT | O_TRUNC);
	if (!f)
		return die("dio_open");

	struct dio_info info;   /* alignment from the device, never guessed */
	dio_info(f, &info);
	size_t len = 16 * (size_t)info.block_size;   /* whole blocks: zero copy */
	char *out, *in;
	if (posix_memalign((void **)&out, info.mem_align, len) ||
	    posix_memalign((void **)&in, info.mem_align, len))
		return die("posix_memalign");
	for (size_t i = 0; i < len; i++)
		out[i] = (char)('a' + i % 26);

	if (dio_pwrite(f, out, len, 0) != (ssize_t)len)
		return die("dio_pwrite");
	if (dio_fsync(f))   /* data, size and allocation now survive power loss */
		return die("dio_fsync");
	if (dio_pread(f, in, len, 0) != (ssize_t)len)
		return die("dio_pread");
	int same = memcmp(in, out, len) == 0;
	printf("wrote and read back %zu bytes: %s\n", len, same ? "identical" : "DIFFERENT");

	free(out);
	free(in);
	dio_close(f);
	if (dio_umount(vol))
		return die("dio_umount");
	return same ? 0 : 1;
}
