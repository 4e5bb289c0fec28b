/* ring.h - a fixed-capacity ring buffer of ints */
#ifndef RING_H
#define RING_H

#include <stddef.h>

typedef struct ring ring_t;

ring_t *ring_new(size_t capacity);
void ring_free(ring_t *r);
/* 0, or TB_EFULL when full (ring_push) / TB_EEMPTY when empty (ring_pop) */
int ring_push(ring_t *r, int value);
int ring_pop(ring_t *r, int *value);
size_t ring_count(const ring_t *r);
/* The item AT positions from the oldest (0) or the newest (-1) end */
int ring_peek(const ring_t *r, int from_newest, size_t at, int *value);

#endif
