/* ring.c - a fixed-capacity ring buffer of ints */
#include "ring.h"

#include <stdlib.h>

#include "errors.h"

struct ring {
    size_t head;  /* index of the oldest item */
    size_t count;
    size_t capacity;
    int items[];
};

ring_t *ring_new(size_t capacity)
{
    if (capacity == 0)
        return NULL;
    ring_t *r = malloc(sizeof *r + capacity * sizeof r->items[0]);
    if (!r)
        return NULL;
    r->head = r->count = 0;
    r->capacity = capacity;
    return r;
}

void ring_free(ring_t *r) { free(r); }

int ring_push(ring_t *r, int value)
{
    if (r->count == r->capacity)
        return TB_EFULL;
    r->items[(r->head + r->count) % r->capacity] = value;
    r->count++;
    return TB_OK;
}

int ring_pop(ring_t *r, int *value)
{
    if (r->count == 0) return TB_EEMPTY;
    *value = r->items[r->head];
    r->head = (r->head + 1) % r->capacity;
    r->count--;
    return TB_OK;
}

size_t ring_count(const ring_t *r)
{
    return r->count;
}

int ring_peek(const ring_t *r, int from_newest, size_t at, int *value)
{
    size_t index;
    if (at >= r->count)
        return TB_ERANGE;
    if (from_newest)
        index = (r->head + r->count - 1 - at) % r->capacity;
    else if (at < r->capacity)
        index = (r->head + at) % r->capacity;
    *value = r->items[index];
    return TB_OK;
}
