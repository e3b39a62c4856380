/*
 * dio_info(3): what a handle of a volume may do with no copy, from the
 * geometry the platform file (platform_linux.c) read off the device.
 */
#include "internal.h"
#include <string.h>

/* dio_info's values for a handle of volume v (strict: DIO_O_STRICT);
   dio info(1) shows the same without opening a file. */
void vol_info(const struct dio_vol *v, bool strict, struct dio_info *info)
{
	const struct dio_geom *g = &v->dev.geom;
	memset(info, 0, sizeof(*info));
	info->mem_align = g->mem_align;
	info->offset_align = g->logical_bs;
	info->block_size = v->bs;
	info->opt_io = g->opt_io;
	info->max_io = g->max_io;
	/* libdio does not submit RWF_ATOMIC writes yet, so it promises no
	   untorn unit beyond one logical block: report none. */
	info->atomic_write_min = 0;
	info->atomic_write_max = 0;
	if (!strict)
		info->flags |= DIO_INFO_FALLBACK;
	if (g->volatile_cache)
		info->flags |= DIO_INFO_VOLATILE_CACHE;
	if (g->memory)
		info->flags |= DIO_INFO_MEMORY;
}

DIO_API int dio_info(struct dio_file *f, struct dio_info *info)
{
	if (file_check(f) < 0)
		return -1;
	if (!info) {
		errno = EINVAL;
		return -1;
	}
	vol_info(f->vol, (f->flags & DIO_O_STRICT) != 0, info);
	return 0;
}
