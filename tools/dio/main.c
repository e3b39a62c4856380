/*
 * dio(1): look inside a libdio volume, move files in and out, check it,
 * script I/O on a file and benchmark it.  One program, subcommands; see
 * man/man1/dio.1.
 *
 *   dio [--backend NAME] [--json] [-q] COMMAND [ARG]...
 */
#include "tool.h"
#include <string.h>

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *what;
} cmds[] = {
	{ "mkfs", cmd_mkfs, "make a volume on an image file or a block device" },
	{ "info", cmd_info, "volume and device geometry" },
	{ "df", cmd_df, "space used and free" },
	{ "ls", cmd_ls, "list files" },
	{ "stat", cmd_stat, "one file, with -v its extent map" },
	{ "put", cmd_put, "copy a host file in" },
	{ "get", cmd_get, "copy a file out" },
	{ "cat", cmd_cat, "write files to standard output" },
	{ "rm", cmd_rm, "remove files" },
	{ "mv", cmd_mv, "rename a file" },
	{ "truncate", cmd_truncate, "set a file's size" },
	{ "fsck", cmd_fsck, "check an unmounted volume" },
	{ "dump", cmd_dump, "decode the on-disk structures" },
	{ "io", cmd_io, "scripted I/O on one file (xfs_io style)" },
	{ "bench", cmd_bench, "fio-style benchmark" },
};

static int usage(FILE *out, int status)
{
	fprintf(out, "usage: dio [--backend NAME] [--json] [-q] COMMAND [ARG]...\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(out, "  %-9s %s\n", cmds[i].name, cmds[i].what);
	fprintf(out, "\n`dio COMMAND --help` shows a command's usage; man dio has the rest\n(before installation: man -l man/man1/dio.1 in the source tree).\n");
	return status;
}

int main(int argc, char **argv)
{
	int i = 1;
	/* global options before the command */
	while (i < argc && argv[i][0] == '-') {
		const char *a = argv[i];
		if (!strcmp(a, "--json"))
			G.json = true;
		else if (!strcmp(a, "-q") || !strcmp(a, "--quiet"))
			G.quiet = true;
		else if (!strncmp(a, "--backend=", 10))
			G.backend = a + 10;
		else if (!strcmp(a, "--backend") && i + 1 < argc)
			G.backend = argv[++i];
		else if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return usage(stdout, 0);
		else if (!strcmp(a, "--version")) {
			printf("dio (libdio) %d.%d\n", DIO_VERSION_MAJOR, DIO_VERSION_MINOR);
			return 0;
		} else {
			fprintf(stderr, "dio: unknown option %s\n", a);
			return usage(stderr, EXIT_USAGE);
		}
		i++;
	}
	if (i >= argc)
		return usage(stderr, EXIT_USAGE);
	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		if (strcmp(argv[i], cmds[k].name))
			continue;
		G.cmd = cmds[k].name;
		tool_log_capture();
		return cmds[k].fn(argc - i, argv + i);
	}
	fprintf(stderr, "dio: unknown command \"%s\"\n", argv[i]);
	return usage(stderr, EXIT_USAGE);
}
