/*
 * Bounce buffers for misaligned requests: BOUNCE_COUNT aligned buffers of
 * BOUNCE_SIZE, allocated at mount, handed out under a short mutex.  A
 * request holds one buffer and walks its range through it in pieces.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

int bounce_init(struct dio_bounce *b, uint32_t align)
{
	if (align < 4096)
		align = 4096;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cv, NULL);
	if (posix_memalign(&b->mem, align, (size_t)BOUNCE_SIZE * BOUNCE_COUNT))
		return -ENOMEM;
	if (posix_memalign(&b->zero, align, BOUNCE_SIZE)) {
		free(b->mem);
		return -ENOMEM;
	}
	memset(b->zero, 0, BOUNCE_SIZE);
	b->freemask = (1u << BOUNCE_COUNT) - 1;
	return 0;
}

void bounce_destroy(struct dio_bounce *b)
{
	free(b->mem);
	free(b->zero);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cv);
}

void *bounce_get(struct dio_bounce *b)
{
	pthread_mutex_lock(&b->lock);
	while (!b->freemask)
		pthread_cond_wait(&b->cv, &b->lock);
	unsigned i = (unsigned)__builtin_ctz(b->freemask);
	b->freemask &= ~(1u << i);
	pthread_mutex_unlock(&b->lock);
	return (char *)b->mem + (size_t)i * BOUNCE_SIZE;
}

void bounce_put(struct dio_bounce *b, void *p)
{
	unsigned i = (unsigned)(((char *)p - (char *)b->mem) / BOUNCE_SIZE);
	pthread_mutex_lock(&b->lock);
	b->freemask |= 1u << i;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->lock);
}
