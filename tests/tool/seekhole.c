/* seekhole FILE OFFSET: SEEK_DATA and SEEK_HOLE from OFFSET, as
   "data D hole H" (-1 and the errno name where lseek fails); for the FUSE
   test, which has no other tool that asks. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	int fd = open(argv[1], O_RDONLY);
	if (fd < 0)
		return perror(argv[1]), 1;
	off_t off = (off_t)strtoll(argv[2], NULL, 0);
	off_t d = lseek(fd, off, SEEK_DATA);
	int de = errno;
	off_t h = lseek(fd, off, SEEK_HOLE);
	int he = errno;
	printf("data %lld%s hole %lld%s\n", (long long)d, d < 0 && de == ENXIO ? " ENXIO" : "",
	       (long long)h, h < 0 && he == ENXIO ? " ENXIO" : "");
	close(fd);
	return 0;
}
