/*
 * arrow_chain.h - build an option chain as Arrow C data by hand (no Arrow library).
 *
 * A chain is a struct array with the canonical columns underlying (utf8), strike,
 * option_type (utf8 "C"/"P"), implied_vol, time_to_expiry and open_interest (float64).
 * Everything lives inside one ArrowChain value; the release callbacks only mark the
 * structs released, so the caller keeps ownership of the memory.
 */
#ifndef ARROW_CHAIN_H
#define ARROW_CHAIN_H

#include <stdint.h>
#include <string.h>

#include "fastgex.h"

#define ARROW_CHAIN_MAX_ROWS 64
#define ARROW_CHAIN_COLUMNS 6
#define ARROW_CHAIN_NAME_BYTES 16

typedef struct ArrowChain {
  struct ArrowSchema schema;
  struct ArrowSchema column_schemas[ARROW_CHAIN_COLUMNS];
  struct ArrowSchema* column_schema_pointers[ARROW_CHAIN_COLUMNS];
  struct ArrowArray array;
  struct ArrowArray columns[ARROW_CHAIN_COLUMNS];
  struct ArrowArray* column_pointers[ARROW_CHAIN_COLUMNS];
  const void* parent_buffers[1];
  const void* column_buffers[ARROW_CHAIN_COLUMNS][3];
  int32_t underlying_offsets[ARROW_CHAIN_MAX_ROWS + 1];
  char underlying_bytes[ARROW_CHAIN_MAX_ROWS * ARROW_CHAIN_NAME_BYTES];
  int32_t type_offsets[ARROW_CHAIN_MAX_ROWS + 1];
  char type_bytes[ARROW_CHAIN_MAX_ROWS];
  double strike[ARROW_CHAIN_MAX_ROWS];
  double implied_vol[ARROW_CHAIN_MAX_ROWS];
  double time_to_expiry[ARROW_CHAIN_MAX_ROWS];
  double open_interest[ARROW_CHAIN_MAX_ROWS];
} ArrowChain;

static const char* const arrow_chain_names[ARROW_CHAIN_COLUMNS] = {
    "underlying", "strike", "option_type", "implied_vol", "time_to_expiry", "open_interest"};
static const char* const arrow_chain_formats[ARROW_CHAIN_COLUMNS] = {"u", "g", "u",
                                                                     "g", "g", "g"};

static inline void arrow_chain_release_schema(struct ArrowSchema* schema) {
  for (int64_t index = 0; index < schema->n_children; index++) {
    struct ArrowSchema* child = schema->children[index];
    if (child->release != NULL) child->release(child);
  }
  schema->release = NULL;
}

static inline void arrow_chain_release_array(struct ArrowArray* array) {
  for (int64_t index = 0; index < array->n_children; index++) {
    struct ArrowArray* child = array->children[index];
    if (child->release != NULL) child->release(child);
  }
  array->release = NULL;
}

/* Fill `chain` with n rows (n <= ARROW_CHAIN_MAX_ROWS; names shorter than 16 bytes).
 * option_type[i] is 'C' or 'P'. Returns 0, or -1 if the rows do not fit. */
static inline int arrow_chain_make(ArrowChain* chain, int n, const char* const* underlying,
                            const double* strike, const char* option_type,
                            const double* implied_vol, const double* time_to_expiry,
                            const double* open_interest) {
  if (n < 0 || n > ARROW_CHAIN_MAX_ROWS) return -1;
  memset(chain, 0, sizeof(*chain));
  int32_t used = 0;
  for (int row = 0; row < n; row++) {
    size_t length = strlen(underlying[row]);
    if (length >= ARROW_CHAIN_NAME_BYTES) return -1;
    chain->underlying_offsets[row] = used;
    memcpy(chain->underlying_bytes + used, underlying[row], length);
    used += (int32_t)length;
    chain->type_offsets[row] = row;
    chain->type_bytes[row] = option_type[row];
    chain->strike[row] = strike[row];
    chain->implied_vol[row] = implied_vol[row];
    chain->time_to_expiry[row] = time_to_expiry[row];
    chain->open_interest[row] = open_interest[row];
  }
  chain->underlying_offsets[n] = used;
  chain->type_offsets[n] = n;

  const void* values[ARROW_CHAIN_COLUMNS] = {NULL, chain->strike, NULL,
                                             chain->implied_vol, chain->time_to_expiry,
                                             chain->open_interest};
  for (int column = 0; column < ARROW_CHAIN_COLUMNS; column++) {
    struct ArrowSchema* schema = &chain->column_schemas[column];
    schema->format = arrow_chain_formats[column];
    schema->name = arrow_chain_names[column];
    schema->release = arrow_chain_release_schema;
    chain->column_schema_pointers[column] = schema;

    struct ArrowArray* array = &chain->columns[column];
    const void** buffers = chain->column_buffers[column];
    buffers[0] = NULL; /* no validity bitmap: no nulls */
    if (column == 0) {
      buffers[1] = chain->underlying_offsets;
      buffers[2] = chain->underlying_bytes;
      array->n_buffers = 3;
    } else if (column == 2) {
      buffers[1] = chain->type_offsets;
      buffers[2] = chain->type_bytes;
      array->n_buffers = 3;
    } else {
      buffers[1] = values[column];
      array->n_buffers = 2;
    }
    array->length = n;
    array->buffers = buffers;
    array->release = arrow_chain_release_array;
    chain->column_pointers[column] = array;
  }
  chain->schema.format = "+s";
  chain->schema.name = "";
  chain->schema.n_children = ARROW_CHAIN_COLUMNS;
  chain->schema.children = chain->column_schema_pointers;
  chain->schema.release = arrow_chain_release_schema;

  chain->parent_buffers[0] = NULL;
  chain->array.length = n;
  chain->array.n_buffers = 1;
  chain->array.buffers = chain->parent_buffers;
  chain->array.n_children = ARROW_CHAIN_COLUMNS;
  chain->array.children = chain->column_pointers;
  chain->array.release = arrow_chain_release_array;
  return 0;
}

/* A one-batch ArrowArrayStream over a chain (the chain must outlive the stream). */
static inline int arrow_chain_stream_schema(struct ArrowArrayStream* stream, struct ArrowSchema* out) {
  ArrowChain* chain = (ArrowChain*)stream->private_data;
  *out = chain->schema; /* moved: the chain's own copy is marked released */
  chain->schema.release = NULL;
  return out->release == NULL ? 22 /* EINVAL */ : 0;
}

static inline int arrow_chain_stream_next(struct ArrowArrayStream* stream, struct ArrowArray* out) {
  ArrowChain* chain = (ArrowChain*)stream->private_data;
  *out = chain->array; /* the first call moves the batch; then out->release == NULL: end */
  chain->array.release = NULL;
  return 0;
}

static inline const char* arrow_chain_stream_error(struct ArrowArrayStream* stream) {
  (void)stream;
  return "arrow_chain: schema requested twice";
}

static inline void arrow_chain_stream_release(struct ArrowArrayStream* stream) {
  stream->release = NULL;
}

static inline void arrow_chain_stream(ArrowChain* chain, struct ArrowArrayStream* stream) {
  stream->get_schema = arrow_chain_stream_schema;
  stream->get_next = arrow_chain_stream_next;
  stream->get_last_error = arrow_chain_stream_error;
  stream->release = arrow_chain_stream_release;
  stream->private_data = chain;
}

/* Index of the child named `name` in a struct schema, or -1. */
static inline int arrow_column_index(const struct ArrowSchema* schema, const char* name) {
  for (int64_t index = 0; index < schema->n_children; index++) {
    if (strcmp(schema->children[index]->name, name) == 0) return (int)index;
  }
  return -1;
}

/* Value `row` of a float64 column (offset-aware). */
static inline double arrow_float64(const struct ArrowArray* column, int64_t row) {
  return ((const double*)column->buffers[1])[column->offset + row];
}

/* Value `row` of an int64 column (offset-aware). */
static inline int64_t arrow_int64(const struct ArrowArray* column, int64_t row) {
  return ((const int64_t*)column->buffers[1])[column->offset + row];
}

/* Copy value `row` of a utf8 column into `out` (NUL-terminated, truncated to size). */
static inline void arrow_utf8(const struct ArrowArray* column, int64_t row, char* out, size_t size) {
  const int32_t* offsets = (const int32_t*)column->buffers[1];
  const char* bytes = (const char*)column->buffers[2];
  int64_t start = offsets[column->offset + row];
  size_t length = (size_t)(offsets[column->offset + row + 1] - start);
  if (length >= size) length = size - 1;
  memcpy(out, bytes + start, length);
  out[length] = '\0';
}

#endif /* ARROW_CHAIN_H */
